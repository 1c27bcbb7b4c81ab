package datapath

import (
	"fmt"
	"net/netip"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// Path events: the structured form of a traced packet's way through
// the engine, for pictures (package picture draws them on the Layout).
// A Tracer with Record set collects them in Path; they cost nothing
// without it. Each event names its packet by trace id: the host's
// answers (REJECT, RST, ICMP errors), a packet looped back through lo
// and each copy a bridge sends out have their own, and their PathStart
// names the packet that caused them.

// PathKind is what a PathEvent reports.
type PathKind uint8

const (
	// PathStart: a packet starts its way (Cause, Parent, Text: the
	// packet).
	PathStart PathKind = iota
	// PathHook: the packet enters a hook (Bridge, Hook, In, Out).
	PathHook
	// PathStage: a stage of the hook ran (Stage); Gone: the packet did
	// not go on past it (Text says what became of it).
	PathStage
	// PathRule: a rule matched (Table, Chain, Rule, Verdict); Rule 0
	// is the chain's policy.
	PathRule
	// PathRewrite: the stage before it changed the packet's addresses
	// or ports (Before, After): NAT, IPVS.
	PathRewrite
	// PathRoute: a routing decision (Route).
	PathRoute
	// PathEnd: the packet's fate (Text).
	PathEnd
)

var pathKindNames = [...]string{"start", "hook", "stage", "rule", "rewrite", "route", "end"}

func (k PathKind) String() string {
	if int(k) < len(pathKindNames) {
		return pathKindNames[k]
	}
	return fmt.Sprintf("PathKind(%d)", k)
}

// Endpoints are a packet's addresses and ports (ports 0 for a protocol
// without).
type Endpoints struct {
	Proto        uint8
	Src, Dst     netip.Addr
	SPort, DPort uint16
}

func (a Endpoints) String() string {
	if a.SPort == 0 && a.DPort == 0 {
		return a.Src.String() + " > " + a.Dst.String()
	}
	return netip.AddrPortFrom(a.Src, a.SPort).String() + " > " + netip.AddrPortFrom(a.Dst, a.DPort).String()
}

// RouteStep is a routing decision.
type RouteStep struct {
	// Kind is "input" (ip_route_input after PREROUTING), "output" (a
	// local packet's route) or "reroute" (ip_route_me_harder after
	// OUTPUT's mangle or nat changed it).
	Kind string
	// Type is the route's type (local, unicast, ...), Err its error
	// ("" for none).
	Type string
	Err  string
	// Dev is the device the route leads to, Gateway its next hop
	// (invalid: on link), Table the table that decided.
	Dev     string
	Gateway netip.Addr
	Table   uint32
}

func (r RouteStep) String() string {
	if r.Err != "" {
		return r.Kind + " route: " + r.Err
	}
	s := r.Kind + " route: " + r.Type
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s
}

// PathEvent is one step of a packet's way.
type PathEvent struct {
	Kind PathKind
	// ID is the trace id of the packet the event is about; Parent, on
	// a PathStart, the id of the packet that caused it (0: none), and
	// Cause how ("received", "sent", "frame", "answer", "loopback",
	// "bridged copy").
	ID, Parent uint32
	Cause      string
	// Bridge: a bridge hook (Hook is an ebtables.Hook), else an IPv4
	// hook (a netfilter.Hook).
	Bridge  bool
	Hook    uint8
	In, Out string
	// Stage is the LayoutStage.Key of PathStage; Gone says the packet
	// did not go past it.
	Stage string
	Gone  bool
	// Table, Chain, Rule and Verdict are PathRule's ("JUMP:X" and
	// "GOTO:X" for a jump).
	Table, Chain string
	Rule         int
	Verdict      string
	// Before and After are PathRewrite's.
	Before, After Endpoints
	Route         RouteStep
	// Text: PathStart's packet, PathEnd's fate, a gone PathStage's end.
	Text string
}

// HookName is the event's hook's name (PREROUTING, ...).
func (ev *PathEvent) HookName() string {
	if ev.Bridge {
		return ebtables.Hook(ev.Hook).String()
	}
	return netfilter.Hook(ev.Hook).String()
}

// recording reports whether k's events are collected.
func (k *pkt) recording() bool { return k.tr != nil && k.tr.Record }

func (k *pkt) note(ev PathEvent) {
	if k.p.Trace {
		k.tr.keep = true
	}
	ev.ID = k.trace
	k.tr.Path = append(k.tr.Path, ev)
}

func endpoints(p *packet.Packet) Endpoints {
	e := Endpoints{Proto: p.Proto, Src: addr4(p.Src), Dst: addr4(p.Dst)}
	if p.HasL4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP || p.Proto == packet.ProtoUDPLite || p.Proto == packet.ProtoSCTP || p.Proto == packet.ProtoDCCP) {
		e.SPort, e.DPort = p.SrcPort, p.DstPort
	}
	return e
}

// PacketText describes a packet for a picture: protocol, endpoints,
// TCP flags or ICMP type.
func PacketText(p *packet.Packet) string {
	e := endpoints(p)
	var proto string
	switch p.Proto {
	case packet.ProtoTCP:
		proto = "tcp"
	case packet.ProtoUDP:
		proto = "udp"
	case packet.ProtoICMP:
		proto = "icmp"
	default:
		proto = fmt.Sprintf("proto %d", p.Proto)
	}
	s := proto + " " + e.String()
	switch {
	case p.Proto == packet.ProtoTCP && p.HasL4:
		s += " " + tcpFlags(p.TCPFlags)
	case p.Proto == packet.ProtoICMP && p.HasL4:
		s += fmt.Sprintf(" type %d code %d", p.ICMPType, p.ICMPCode)
	}
	return s
}

func tcpFlags(f uint8) string {
	names := []struct {
		bit  uint8
		name string
	}{{packet.TCPSyn, "SYN"}, {packet.TCPFin, "FIN"}, {packet.TCPRst, "RST"}, {packet.TCPPsh, "PSH"}, {packet.TCPAck, "ACK"}}
	s := ""
	for _, n := range names {
		if f&n.bit != 0 {
			if s != "" {
				s += ","
			}
			s += n.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// pathStart records the start of k's way.
func (k *pkt) pathStart(cause string, parent uint32) {
	if k.recording() {
		k.note(PathEvent{Kind: PathStart, Cause: cause, Parent: parent, Text: PacketText(k.p)})
	}
}

// pathEnd records k's fate, and that the tracer keeps the paths of this
// call when k was traced.
func (k *pkt) pathEnd() {
	if !k.recording() {
		return
	}
	k.note(PathEvent{Kind: PathEnd, Text: k.fate.String()})
}

// pathHook records k entering an IPv4 hook.
func (k *pkt) pathHook(st *hookState) {
	k.note(PathEvent{Kind: PathHook, Hook: uint8(st.hook), In: st.in, Out: st.out})
}

// tracedStage runs the one stage of one (a list's element) recording
// it, its end and what it rewrote.
func (k *pkt) tracedStage(one []stage, st *hookState) bool {
	s := &one[0]
	i := len(k.tr.Path)
	k.note(PathEvent{Kind: PathStage, Hook: uint8(st.hook), Stage: k.cfg.stageKey(s)})
	before := endpoints(k.p)
	p := k.p
	ok := k.stages(one, st)
	if !ok {
		k.tr.Path[i].Gone = true
		k.tr.Path[i].Text = k.fate.String()
		if k.fate.Kind == Delivered || k.fate.Kind == Forwarded || k.fate.Kind == Sent {
			// IPVS sent it on itself
			k.tr.Path[i].Text = "taken by " + s.name()
		}
	}
	if k.p == p {
		if after := endpoints(k.p); after != before {
			k.note(PathEvent{Kind: PathRewrite, Hook: uint8(st.hook), Stage: k.cfg.stageKey(s), Before: before, After: after})
		}
	}
	return ok
}

// pathRoute records a routing decision.
func (k *pkt) pathRoute(kind string, r *route.Result) {
	if !k.recording() {
		return
	}
	rs := RouteStep{Kind: kind, Type: r.Type.String(), Table: r.Table, Gateway: r.Gateway}
	if r.Err != 0 {
		rs.Err = r.Err.Error()
	} else if k.cfg.FIB != nil {
		rs.Dev = k.cfg.FIB.LinkName(r.Dev)
	}
	k.note(PathEvent{Kind: PathRoute, Route: rs})
}

// pathRule records a matched rule or policy of the chain run t traces.
func (t *Tracer) pathRule(tab *iptables.Table, c *iptables.Chain, num int, verdict string) {
	if t.k == nil || !t.Record {
		return
	}
	t.k.note(PathEvent{Kind: PathRule, Table: tab.ID.String(), Chain: c.Name, Rule: num, Verdict: verdict})
}

// pathBridge records a frame entering bridge hook h (id: the frame's
// trace id, 0 before it has one).
func (t *Tracer) pathBridge(id uint32, h ebtables.Hook, in, out string) {
	if t != nil && t.Record {
		t.Path = append(t.Path, PathEvent{Kind: PathHook, ID: id, Bridge: true, Hook: uint8(h), In: in, Out: out})
	}
}

// pathBridgeStage records a bridge hook's stage and whether the frame
// went past it.
func (t *Tracer) pathBridgeStage(id uint32, h ebtables.Hook, key string, gone bool, text string) {
	if t != nil && t.Record {
		t.Path = append(t.Path, PathEvent{Kind: PathStage, ID: id, Bridge: true, Hook: uint8(h), Stage: key, Gone: gone, Text: text})
	}
}

// pathFrame records a bridge level start or end (Kind PathStart or
// PathEnd) of the frame id.
func (t *Tracer) pathFrame(kind PathKind, id uint32, cause, text string) {
	if t != nil && t.Record {
		t.Path = append(t.Path, PathEvent{Kind: kind, ID: id, Cause: cause, Text: text})
	}
}

// callMark is where a call's events start, and whether a packet of an
// enclosing call was traced.
type callMark struct {
	n    int
	keep bool
}

// callStart is what a top-level call (Receive, Send, ReceiveFrame)
// notes to drop its events when nothing it ran was traced.
func (t *Tracer) callStart() callMark {
	if t == nil || !t.Record {
		return callMark{}
	}
	m := callMark{n: len(t.Path), keep: t.keep}
	t.keep = false
	return m
}

// callEnd keeps the call's events only if a packet of it was traced
// (nf_trace, All, or PathAll).
func (t *Tracer) callEnd(m callMark) {
	if t == nil || !t.Record {
		return
	}
	if !t.keep && !t.All && !t.PathAll {
		t.Path = t.Path[:m.n]
	}
	t.keep = t.keep || m.keep
}

// frameIDs gives the events of a frame's call that had no trace id yet
// (those before its IPv4 packet was made) the id of the first packet
// the call made; none made: they keep 0.
func (t *Tracer) frameIDs(m callMark) {
	var id uint32
	for _, ev := range t.Path[m.n:] {
		if ev.ID != 0 {
			id = ev.ID
			break
		}
	}
	for i := m.n; i < len(t.Path); i++ {
		if t.Path[i].ID == 0 {
			t.Path[i].ID = id
		}
	}
}

// pathEbtRule records an ebtables rule or policy (rule 0).
func (t *Tracer) pathEbtRule(id uint32, tab ebtables.TableID, chain string, rule int, verdict string) {
	if t.Record {
		t.Path = append(t.Path, PathEvent{Kind: PathRule, ID: id, Bridge: true, Table: tab.String(), Chain: chain, Rule: rule, Verdict: verdict})
	}
}

// FrameText describes a frame that arrived on port for a picture: its
// MACs and, for IPv4, its packet.
func FrameText(data []byte, port string) string {
	fr := packet.Frame{Data: data}
	if fr.Decode() != nil {
		return fmt.Sprintf("%d-byte frame on %s", len(data), port)
	}
	s := fr.Src.String() + " > " + fr.Dst.String() + " on " + port
	if fr.InnerProto == packet.EtherTypeIPv4 {
		p := packet.Packet{Data: fr.Payload}
		if p.Decode() == nil {
			return PacketText(&p) + " (" + s + ")"
		}
	}
	return fmt.Sprintf("ethertype 0x%04x (%s)", fr.InnerProto, s)
}
