package datapath

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
	"github.com/uswitch-lab/uswitch/trace"
)

// The bridge level. A bridge is an L3 device of the FIB (br0: its
// addresses, its routes) and a set of ports; frames arriving on a port
// take the kernel's way (net/bridge/br_input.c, br_forward.c,
// br_netfilter_hooks.c):
//
//	port ─> br_handle_frame: bad source dropped, link-local groups
//	   ─> bridge PREROUTING: [ebtables nat -300]
//	                         br_nf_pre_routing 0: IPv4 PREROUTING hooks,
//	                         IN=br0 PHYSIN=port (defrag, raw, conntrack,
//	                         mangle, nat); a DNAT routed elsewhere goes
//	                         up, one to the same bridge stays bridged
//	   ─> learn the source (after PREROUTING), look the destination up
//	   ─> each port out: bridge FORWARD: [ebtables filter -200]
//	                                     br_nf_forward 0: IPv4 FORWARD,
//	                                     IN=OUT=br0 PHYSIN/PHYSOUT
//	                     bridge POSTROUTING: [ebtables nat 300]
//	                                     br_nf_post_routing: IPv4
//	                                     POSTROUTING OUT=br0, confirm,
//	                                     refragmentation
//	   ─> up to br0: bridge INPUT [ebtables filter -200], then the IP
//	      stack without PREROUTING again (ip_sabotage_in): routing,
//	      INPUT or FORWARD; ARP answered for br0's addresses
//
// Packets the IP stack sends out of br0 (the host's own, routed ones)
// get their Ethernet header from br0's neighbours (an ARP request goes
// out first when the neighbour is unknown), then the bridge's own
// lookup (br_dev_xmit) and bridge OUTPUT/POSTROUTING per port.
//
// A frame of an established flow bridged to one port may replay its
// way from FORWARD on (the FDB decision, the ebtables FORWARD and
// POSTROUTING walks, the iptables table runs) from the bridged flow
// cache (bridgecache.go).

// BridgeConfig is one bridge device of the namespace and br_netfilter's
// settings for it.
type BridgeConfig struct {
	// FDB is the bridge, its ports and their flags; its Name is the
	// bridge device's name in the FIB.
	FDB fdb.Config
	// Entries are forwarding entries to start with (a snapshot's
	// `bridge -j fdb show`), nil for none.
	Entries []fdb.ShowEntry
	// CallIPTables is net.bridge.bridge-nf-call-iptables (or the
	// bridge's own nf_call_iptables): bridged IPv4 crosses the IPv4
	// hooks.
	CallIPTables bool
	// FilterVLANTagged is bridge-nf-filter-vlan-tagged: tagged IPv4
	// crosses them too.
	FilterVLANTagged bool
	// Neighbours are br0's neighbour entries to start with (ip neigh):
	// IPv4 address to MAC.
	Neighbours map[uint32]packet.MAC
}

// ebtStage runs the ebtables table t's chain for the bridge hook h on
// the frame fr (in and out are the ports, "" for none): the verdict,
// with the mark the frame's packet carries read and written, an
// arpreply sent out of in, and log watchers printed by a log-format
// tracer. It reports whether the frame goes on; why it stopped is in
// ff.Drop.
//
// tid is the frame's trace id when its sk_buff has nf_trace (0: not
// traced): the chain's events are traced in the bridge family's form.
//
// rec, when not nil, records the rules that match (the bridged flow
// cache); it is never set together with a traced frame.
func (e *Engine) ebtStage(x *ebtables.Ctx, c *compiled, t ebtables.TableID, h ebtables.Hook, b *bridgeState, fr *packet.Frame, in, out string, mark *uint32, pktType *uint8, now int64, tr *Tracer, tid uint32, ff *FrameFate, rec *ebtRec) bool {
	p := c.ebt
	if p == nil || !p.Has(t, h) {
		return true
	}
	// the context goes to the heap (Run hands it to extensions through
	// interfaces): the frame's own (x, in its pooled bridgeCall, which
	// clears it after the frame) or one from the engine's pool; its
	// outputs reset and every input set
	if x == nil {
		x, _ = e.ebtCtxs.Get().(*ebtables.Ctx)
		if x == nil {
			x = new(ebtables.Ctx)
		}
		defer e.putEbtCtx(x)
	}
	x.Reset()
	x.Frame, x.In, x.Out, x.Now, x.Env = fr, in, out, now, b
	x.Linear = c.Linear // Config.Linear: the rule-by-rule reference walk
	x.LogicalIn, x.LogicalOut, x.Mark, x.PktType, x.Tracer = "", "", 0, 0, nil
	if tr != nil && (tid != 0 && tr.Format == FormatMonitor || tr.Record) {
		x.Tracer = &ebtTracer{t: tr, id: tid, fr: fr, in: in, out: out, x: x, lines: tid != 0 && tr.Format == FormatMonitor}
	} else if rec != nil {
		x.Tracer = rec
	}
	if in != "" {
		x.LogicalIn = b.name()
	}
	if out != "" {
		x.LogicalOut = b.name()
	}
	if mark != nil {
		x.Mark = *mark
	}
	if pktType != nil {
		x.PktType = ebtables.PktType(*pktType)
	}
	v := p.Run(t, h, x)
	if mark != nil {
		*mark = x.Mark
	}
	if pktType != nil {
		*pktType = uint8(x.PktType)
	}
	if x.ReplyLen > 0 && in != "" {
		ff.Out = append(ff.Out, FrameOut{Port: in, Data: append([]byte(nil), x.Reply[:x.ReplyLen]...)})
	}
	if tr != nil && tr.Format == FormatLog {
		for i := range x.NLogs {
			if w, ok := x.Logs[i].Watcher.(*ebtables.LogWatcher); ok {
				tr.Lines = append(tr.Lines, trace.EbtLogLine(ebtLogInfo(w, x.Logs[i].In, x.Logs[i].Out), fr))
			}
		}
	} else if x.NLogs > 0 {
		if kl := e.klog.Load(); kl != nil {
			e.ebtLog(kl, c.FIB, x, fr, b.name(), now)
		}
	}
	// the log requests point into the rule set: not kept past the stage
	for i := range x.NLogs {
		x.Logs[i] = ebtables.LogRequest{}
	}
	if tr != nil && tr.Record {
		tr.pathBridgeStage(tid, h, ebtKey(t, ebtStagePrio(t, h)), v == netfilter.Drop, "dropped by ebtables "+t.String()+" "+h.String())
	}
	if v == netfilter.Drop {
		ff.Drop = "ebtables " + t.String() + " " + h.String()
		return false
	}
	return true
}

// ebtOn says whether ebtStage has a chain to run for table t at hook
// h (the check ebtStage starts with, inlined at the hot call sites).
func (c *compiled) ebtOn(t ebtables.TableID, h ebtables.Hook) bool {
	return c.ebt != nil && c.ebt.Has(t, h)
}

// putEbtCtx returns an ebtables context to the pool without what it
// points to (ebtStage has cleared its log requests).
func (e *Engine) putEbtCtx(x *ebtables.Ctx) {
	x.Frame, x.Env, x.Tracer = nil, nil, nil
	e.ebtCtxs.Put(x)
}

// ebtTracer prints an ebtables chain's events for a traced frame as
// xtables-monitor prints the bridge family's: the PACKET line with the
// first event (the frame as it is then, mark included), then one line
// an event.
type ebtTracer struct {
	t       *Tracer
	id      uint32
	fr      *packet.Frame
	in, out string
	x       *ebtables.Ctx
	printed bool
	// lines: the chain's events are printed (else only recorded as
	// path events)
	lines bool
}

func (et *ebtTracer) packet() {
	if !et.printed {
		et.printed = true
		et.t.Lines = append(et.t.Lines, trace.BridgePacketLine(et.id, et.fr, et.in, et.out, et.x.Mark))
	}
}

func ebtVerdictName(v ebtables.Verdict, jump string) string {
	switch v {
	case ebtables.VAccept:
		return "ACCEPT"
	case ebtables.VDrop:
		return "DROP"
	case ebtables.VContinue:
		return "CONTINUE"
	case ebtables.VReturn:
		return "0xfffffffb"
	}
	return "JUMP:" + jump
}

func (et *ebtTracer) Rule(t ebtables.TableID, chain string, rule int, v ebtables.Verdict, jump string) {
	et.t.pathEbtRule(et.id, t, chain, rule, ebtVerdictName(v, jump))
	if !et.lines {
		return
	}
	et.packet()
	et.t.Lines = append(et.t.Lines, trace.BridgeRuleLine(et.id, t.String(), chain, uint64(rule), ebtVerdictName(v, jump)))
}

func (et *ebtTracer) Policy(t ebtables.TableID, chain string, v ebtables.Verdict) {
	et.t.pathEbtRule(et.id, t, chain, 0, ebtVerdictName(v, ""))
	if !et.lines {
		return
	}
	et.packet()
	et.t.Lines = append(et.t.Lines, trace.BridgePolicyLine(et.id, t.String(), chain, ebtVerdictName(v, "")))
}

func (et *ebtTracer) Return(t ebtables.TableID, chain string) {}

// traceID is k's trace id when its packet is traced (nf_trace), else 0.
func (k *pkt) traceID() uint32 {
	if k == nil || k.tr == nil || !(k.tr.All || k.p.Trace) {
		return 0
	}
	return k.trace
}

// PortMAC is ebtables.Env's: a port's own address.
func (b *bridgeState) PortMAC(port string) (packet.MAC, bool) {
	if i := b.fdb.PortByName(port); i >= 0 {
		return b.fdb.Port(i).MAC, true
	}
	return packet.MAC{}, false
}

// BridgeMAC is ebtables.Env's: the bridge's address.
func (b *bridgeState) BridgeMAC(port string) (packet.MAC, bool) { return b.fdb.MAC, true }

// bridgeSet is the configuration's bridges, built by Swap; a bridge's
// FDB and neighbours survive a swap that keeps its name and ports.
type bridgeSet struct {
	byName map[string]*bridgeState
	byPort map[string]portRef
	// ports is byPort as a list when it is short (at most
	// portScanMax): a scan of a few names beats hashing the name
	ports []portName
}

type portName struct {
	name string
	ref  portRef
}

// portScanMax is the port count up to which port scans a list.
const portScanMax = 8

// port looks a bridge port up by name.
func (s *bridgeSet) port(name string) (portRef, bool) {
	if s.ports != nil {
		for i := range s.ports {
			if s.ports[i].name == name {
				return s.ports[i].ref, true
			}
		}
		return portRef{}, false
	}
	r, ok := s.byPort[name]
	return r, ok
}

type portRef struct {
	b   *bridgeState
	idx int
}

type bridgeState struct {
	cfg BridgeConfig
	fdb *fdb.Bridge
	// neigh is br0's neighbour table (bridgeneigh.go), with the
	// packets waiting for the MACs being resolved (guarded by mu)
	mu    sync.Mutex
	neigh map[uint32]*neighEntry
	// idxCache is the bridge's index in the last FIB asked
	idxCache atomic.Pointer[fibIndex]
	// classes are the bridged flow cache's frame classes
	// (bridgecache.go); they live as long as the FDB, as do the
	// recorded ebtables nat PREROUTING walks (pre)
	classes *bclassTable
	pre     *preTable
}

// neighQueue is an unresolved neighbour's queue (arp_queue): at most
// neighQueueMax packets, the oldest dropped first (__neigh_event_send).
type neighQueue struct {
	pkts []queuedPkt
	// src is the source of the packet queued last (arp_solicit asks
	// from it when it is the host's)
	src uint32
	// dnat are bridged frames a DNAT sent to this neighbour
	dnat []*bridgedDNAT
}

// bridgedDNAT is a frame br_netfilter's DNAT keeps bridged, waiting for
// its new destination's MAC: the frame, its input port and its IPv4
// state.
type bridgedDNAT struct {
	frame []byte
	in    int
	meta  packet.Meta
	ct    conntrack.Ref
	zone  uint16
}

// neighQueueMax is about unres_qlen_bytes (SK_WMEM_MAX, 212992 bytes)
// of small packets: the kernel counts truesize.
const neighQueueMax = 101

func (b *bridgeState) name() string { return b.fdb.Name }

// ifindex is the bridge device's index in fib, looked up by name once
// per FIB.
func (b *bridgeState) ifindex(fib *route.FIB) int {
	if c := b.idxCache.Load(); c != nil && c.fib == fib {
		return c.idx
	}
	c := &fibIndex{fib: fib, idx: fib.Ifindex(b.name())}
	b.idxCache.Store(c)
	return c.idx
}

type fibIndex struct {
	fib *route.FIB
	idx int
}

// samePorts: two bridge configurations have the same ports by name.
func samePorts(a, b *fdb.Config) bool {
	if len(a.Ports) != len(b.Ports) {
		return false
	}
	for i := range a.Ports {
		if a.Ports[i].Name != b.Ports[i].Name {
			return false
		}
	}
	return true
}

// buildBridges makes the bridge set of a configuration, keeping the
// state of the bridges old already has.
func buildBridges(cfgs []BridgeConfig, old *bridgeSet, now int64) (*bridgeSet, error) {
	if len(cfgs) == 0 {
		return nil, nil
	}
	s := &bridgeSet{byName: map[string]*bridgeState{}, byPort: map[string]portRef{}}
	for i := range cfgs {
		c := cfgs[i]
		name := c.FDB.Name
		if _, dup := s.byName[name]; dup {
			return nil, fmt.Errorf("bridge %s twice", name)
		}
		var b *bridgeState
		if old != nil {
			if ob := old.byName[name]; ob != nil && samePorts(&ob.cfg.FDB, &c.FDB) {
				b = &bridgeState{cfg: c, fdb: ob.fdb, neigh: ob.neigh, classes: ob.classes, pre: ob.pre}
			}
		}
		if b == nil {
			f, err := fdb.New(c.FDB)
			if err != nil {
				return nil, err
			}
			if c.Entries != nil {
				if err := f.Load(c.Entries, now); err != nil {
					return nil, fmt.Errorf("bridge %s: %w", name, err)
				}
			}
			b = &bridgeState{cfg: c, fdb: f, neigh: map[uint32]*neighEntry{}, classes: new(bclassTable), pre: new(preTable)}
			for a, m := range c.Neighbours {
				// a configured (snapshot) neighbour: its MAC, of unknown
				// freshness
				b.neigh[a] = &neighEntry{NUD: route.NUD{MAC: m, State: route.NUDStale}}
			}
		}
		s.byName[name] = b
		for j := range c.FDB.Ports {
			pn := c.FDB.Ports[j].Name
			if _, dup := s.byPort[pn]; dup {
				return nil, fmt.Errorf("port %s in two bridges", pn)
			}
			s.byPort[pn] = portRef{b: b, idx: j}
		}
	}
	if len(s.byPort) <= portScanMax {
		for n, r := range s.byPort {
			s.ports = append(s.ports, portName{n, r})
		}
	}
	return s, nil
}

// Bridge returns the FDB of the bridge name (nil: no such bridge), for
// `bridge fdb show` and the control plane.
func (e *Engine) Bridge(name string) *fdb.Bridge {
	if s := e.bridges.Load(); s != nil {
		if b := s.byName[name]; b != nil {
			return b.fdb
		}
	}
	return nil
}

// Bridges are the engine's bridges in name order.
func (e *Engine) Bridges() []*fdb.Bridge {
	s := e.bridges.Load()
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*fdb.Bridge, len(names))
	for i, n := range names {
		out[i] = s.byName[n].fdb
	}
	return out
}

// BridgeOf names the bridge a port belongs to ("" for none).
func (e *Engine) BridgeOf(port string) string {
	if s := e.bridges.Load(); s != nil {
		if r, ok := s.port(port); ok {
			return r.b.name()
		}
	}
	return ""
}

// FrameOut is a frame that leaves a bridge port.
type FrameOut struct {
	Port string
	Data []byte
}

// FrameFate is what became of a frame that arrived on a bridge port.
type FrameFate struct {
	Bridge string
	// Out are the frames that left ports (the frame bridged or
	// flooded, and what the IP stack sent out of the bridge in
	// reaction), in the order they left.
	Out []FrameOut
	// Up is the fate of the IPv4 packet the bridge passed up to its
	// own device (delivered, routed, dropped); nil when nothing went up
	// or it was not IPv4 (ARP: UpARP).
	Up *Fate
	// UpARP says an ARP message went up (and Out holds the reply, if
	// any).
	UpARP bool
	// Held: the frame is a fragment waiting for its datagram.
	Held bool
	// Pass: a link-local frame went to the input port's own stack.
	Pass bool
	// ARPPending: a DNAT kept the frame bridged towards a neighbour
	// being resolved; it leaves when the ARP answer comes.
	ARPPending bool
	// Drop says why the frame (or the copy for one way) was dropped;
	// "" when nothing was.
	Drop string
	// FlowCached: the bridged flow cache replayed the frame's way
	// (bridgecache.go).
	FlowCached bool
}

func (f FrameFate) String() string {
	var parts []string
	var ports []string
	for _, o := range f.Out {
		ports = append(ports, o.Port)
	}
	switch {
	case f.Held:
		parts = append(parts, "held (fragment)")
	case f.Pass:
		parts = append(parts, "passed to the port's own stack")
	case f.ARPPending:
		parts = append(parts, "waiting for ARP (bridged DNAT)")
	}
	if len(ports) == 1 {
		parts = append(parts, "bridged out "+ports[0])
	} else if len(ports) > 1 {
		parts = append(parts, "out "+strings.Join(ports, ", "))
	}
	if f.Up != nil {
		parts = append(parts, "passed up to "+f.Bridge+": "+f.Up.String())
	} else if f.UpARP {
		parts = append(parts, "ARP passed up to "+f.Bridge)
	}
	if f.Drop != "" {
		parts = append(parts, "dropped by "+f.Drop)
	}
	if len(parts) == 0 {
		return "dropped"
	}
	return strings.Join(parts, "; ")
}

// ReceiveFrame runs an Ethernet frame that arrived on the bridge port
// port (br_handle_frame). data is the frame from its destination MAC;
// the engine may rewrite it in place. tr may be nil.
func (e *Engine) ReceiveFrame(data []byte, port string, now int64, tr *Tracer) FrameFate {
	var ff FrameFate
	e.ReceiveFrameInto(&ff, data, port, now, tr)
	return ff
}

// bridgeCall is what one ReceiveFrameInto works with, pooled: the
// frame and packet views of the frame and of the copy going out.
type bridgeCall struct {
	fr0, fr1 packet.Frame
	p0, p1   packet.Packet
	bf       bframe
	// k is the frame's IPv4 state when br_netfilter runs for it and
	// nothing traces it (a tracer keeps the pkts it traced: a traced
	// frame's comes from the engine's pool and stays with the tracer)
	k pkt
	// pf is the frame's IPv4 packet for bridge faults (fault.go)
	pf packet.Packet
	// ebt is the ebtables context of the frame's stages (one at a
	// time): no pool round trip per stage
	ebt ebtables.Ctx
	// pre records the ebtables nat PREROUTING walk (bridgecache.go)
	pre ebtRec
	// w is the worker whose call this is (nil: a pooled call of the
	// engine's): its random source and its hit batch
	w *Worker
	// csumValid: the frame's device vouched for its transport checksum
	// (Worker.ReceiveFrameCsum)
	csumValid bool
	// kUsed: p0 and bf were set (br_netfilter ran); p1Used: fr1 or
	// p1 was (a copy's frame and packet); pfUsed: pf was (bridge
	// faults); preUsed: pre was. What was not set is still zero and need
	// not be cleared (TestBridgeFlowCacheMatchesReference checks a
	// Worker's call after every frame).
	kUsed, p1Used, pfUsed, preUsed bool
	// pktUsed: k was (br_netfilter ran through a pkt, not bridgeFast);
	// bfUsed: bf was (the frame took the usual way)
	pktUsed, bfUsed bool
}

// hits is the hit batch of the call's worker (nil: none, the
// counters are added to directly).
func (bc *bridgeCall) hits() *hitBatch {
	if bc.w == nil {
		return nil
	}
	return &bc.w.hits
}

// faultPkt is brFaultPkt into pf.
func (bc *bridgeCall) faultPkt(fr *packet.Frame) *packet.Packet {
	bc.pfUsed = true
	return brFaultPkt(&bc.pf, fr)
}

// reset clears what the call set, for the pool: the pointers it holds
// and the state the next call expects zero. The traversal stack stays
// with k, as putPkt keeps a pkt's; the ebtables context keeps its
// buffers (every stage resets its outputs and sets every input).
func (bc *bridgeCall) reset() {
	bc.fr0 = packet.Frame{}
	if bc.kUsed {
		rec := false
		if bc.pktUsed {
			rec = bc.k.rec
			bc.k.reset()
		}
		bc.p0 = packet.Packet{}
		// (a frame bridgeFast took left bf zero)
		if bc.bfUsed && rec {
			bc.bf = bframe{}
		} else if bc.bfUsed {
			// key and ebt are set only when recording (bmemoStart)
			bf := &bc.bf
			bf.b, bf.fr, bf.p0, bf.cls = nil, nil, nil, nil
			bf.in, bf.pktType, bf.noRec = 0, 0, false
			bf.ctPre, bf.ctV, bf.ctRef = false, 0, conntrack.Ref{}
		}
	}
	if bc.p1Used {
		bc.fr1 = packet.Frame{}
		bc.p1 = packet.Packet{}
	}
	if bc.pfUsed {
		bc.pf = packet.Packet{}
	}
	if bc.preUsed {
		bc.pre = ebtRec{}
	}
	bc.kUsed, bc.pktUsed, bc.bfUsed, bc.p1Used, bc.pfUsed, bc.preUsed, bc.csumValid = false, false, false, false, false, false, false
	x := &bc.ebt
	x.Frame, x.Env, x.Tracer = nil, nil, nil
}

// ReceiveFrameInto is ReceiveFrame into ff, whose Out keeps its
// capacity from call to call (a worker reuses one FrameFate): an
// established bridged flow allocates nothing. ff is reset first.
func (e *Engine) ReceiveFrameInto(ff *FrameFate, data []byte, port string, now int64, tr *Tracer) {
	bc, _ := e.bcalls.Get().(*bridgeCall)
	if bc == nil {
		bc = new(bridgeCall)
	}
	e.receiveFrameCall(bc, ff, data, port, now, tr)
	e.bcalls.Put(bc)
}

// receiveFrameCall is ReceiveFrameInto with the call state bc, which it
// leaves reset.
func (e *Engine) receiveFrameCall(bc *bridgeCall, ff *FrameFate, data []byte, port string, now int64, tr *Tracer) {
	*ff = FrameFate{Out: ff.Out[:0]}
	if tr == nil || !tr.Record {
		e.receiveFrame(bc, ff, data, port, now, tr)
	} else {
		mark := tr.callStart()
		tr.pathFrame(PathStart, 0, "frame", FrameText(data, port))
		e.receiveFrame(bc, ff, data, port, now, tr)
		tr.pathFrame(PathEnd, 0, "", ff.String())
		tr.frameIDs(mark)
		tr.callEnd(mark)
	}
	bc.reset()
}

func (e *Engine) receiveFrame(bc *bridgeCall, ff *FrameFate, data []byte, port string, now int64, tr *Tracer) {
	s := e.bridges.Load()
	ref, ok := portRef{}, false
	if w := bc.w; w != nil && w.portSet == s && s != nil && w.portName == port {
		// the worker's last port (a front end's worker reads one
		// device: the same string each time, compared by pointer)
		ref, ok = w.portRef, true
	} else if s != nil {
		ref, ok = s.port(port)
		if ok && w != nil {
			w.portSet, w.portName, w.portRef = s, port, ref
		}
	}
	if !ok {
		ff.Drop = "bridge: " + port + " is not a bridge port"
		return
	}
	b := ref.b
	ff.Bridge = b.name()
	fr := &bc.fr0
	fr.Data = data
	if err := fr.Decode(); err != nil {
		ff.Drop = "bridge: " + err.Error()
		return
	}
	if !fr.Src.IsValidUnicast() {
		ff.Drop = "bridge: invalid source address " + fr.Src.String()
		return
	}
	if d := fr.Dst; d[0] == 0x01 && d[1] == 0x80 && d[2] == 0xc2 && d[3] == 0 && d[4] == 0 && d[5]&0xf0 == 0 && d[5] != 0 {
		// the link-local groups: learned from and passed to the
		// port's own stack (or dropped, pause), no bridge hook
		dec := b.fdb.Input(ref.idx, fr, now)
		if dec.Verdict == fdb.VerdictDrop {
			ff.Drop = "bridge: " + dec.Reason.String()
		} else {
			ff.Pass = true
		}
		return
	}
	c := e.cfg.Load()
	br := b.name()
	// skb->pkt_type as the port classed it, PACKET_HOST for the
	// bridge's own address (br_handle_frame)
	pktType := uint8(packet.PktOtherHost)
	switch {
	case fr.Dst.IsBroadcast():
		pktType = packet.PktBroadcast
	case fr.Dst.IsMulticast():
		pktType = packet.PktMulticast
	case fr.Dst == b.fdb.MAC:
		pktType = packet.PktHost
	}
	// bridge PREROUTING: ebtables nat (-300), then br_nf_pre_routing
	// (0); skb->mark is shared by both levels
	var mark uint32
	tr.pathBridge(0, ebtables.PreRouting, port, "")
	if len(c.BridgeFaults) > 0 {
		// bridge fault stages: BROUTING's, then PREROUTING's below
		// ebtables nat, the others after it (fault.go)
		pf := bc.faultPkt(fr)
		if !e.bridgeFaults(c, netfilter.Hook(ebtables.BRouting), netfilter.PriFirst, netfilter.PriLast, fr, pf, port, "", br, now, tr, 0, ff) ||
			!e.brFaultsAround(c, netfilter.Hook(ebtables.PreRouting), netfilter.BrPriNATDstBridged, true, fr, pf, port, "", br, now, tr, 0, ff) {
			return
		}
	}
	// a memoizable chain's walk may be replayed (bridgecache.go)
	var pk preKey
	pkOK, preHit := false, false
	var pe *preEntry
	if c.ebtPreOn && tr == nil {
		pkOK = preKeyOf(&pk, fr, ref.idx, pktType)
	}
	if pkOK {
		if pe = b.pre.lookup(&pk, c.gen); pe != nil {
			pe.replay(fr, bc.hits())
			mark, preHit = pe.mark, true
		}
	}
	if !preHit {
		var rec *ebtRec
		if pkOK {
			bc.pre, bc.preUsed = ebtRec{on: true, rs: c.ebt.Ruleset()}, true
			rec = &bc.pre
		}
		if c.ebtOn(ebtables.NAT, ebtables.PreRouting) && !e.ebtStage(&bc.ebt, c, ebtables.NAT, ebtables.PreRouting, b, fr, port, "", &mark, &pktType, now, tr, 0, ff, rec) {
			return
		}
	}
	markPre := mark
	if len(c.BridgeFaults) > 0 && !e.bridgeFaults(c, netfilter.Hook(ebtables.PreRouting), netfilter.BrPriNATDstBridged, netfilter.BrPriBrNF-1, fr, bc.faultPkt(fr), port, "", br, now, tr, 0, ff) {
		return
	}
	// lateFaults: the PREROUTING fault stages at NF_BR_PRI_BRNF and
	// above run after br_nf_pre_routing, which steals the frame for
	// the IPv4 PREROUTING hook and hands it back in
	// br_nf_pre_routing_finish to the bridge hooks above its own
	// priority (br_nf_hook_thresh): they see the packet after DNAT,
	// before the bridge forwards it, delivers it up, or looks up the
	// new destination's neighbour (a fault at 0 comes after
	// br_netfilter, registered before it)
	lateFaults := func() bool {
		return len(c.BridgeFaults) == 0 || e.bridgeFaults(c, netfilter.Hook(ebtables.PreRouting), netfilter.BrPriBrNF, netfilter.PriLast, fr,
			bc.faultPkt(fr), port, "", br, now, tr, 0, ff)
	}
	var k *pkt
	isIPv4 := fr.InnerProto == packet.EtherTypeIPv4 && (!fr.VLAN || b.cfg.FilterVLANTagged)
	if isIPv4 && b.cfg.CallIPTables {
		// p0 is zero here (reset clears it after a call that used it):
		// only what Decode does not set is set
		bc.kUsed = true
		p := &bc.p0
		p.Data, p.L2 = fr.Payload, fr.Data[:fr.HeaderLen()]
		if err := p.Decode(); err != nil {
			// br_validate_ipv4
			ff.Drop = "br_netfilter: " + err.Error()
			return
		}
		p.InIf, p.PhysIn, p.PktType, p.Mark, p.CsumValid = br, port, pktType, mark, bc.csumValid
		if p.PktType == packet.PktOtherHost {
			// setup_pre_routing: PACKET_OTHERHOST runs the IPv4
			// hooks as PACKET_HOST (pkt_otherhost remembered)
			p.PktType = packet.PktHost
		}
		if tr == nil && c.brFast {
			if ok, conn := e.bridgeFast(bc, c, b, ref.idx, pktType, pe, ff, now); ok {
				if pkOK && !preHit {
					// the walk of a confirmed connection's frame is kept
					if pe = b.pre.store(&pk, c.gen, markPre, &bc.pre); pe != nil {
						pe.conn.Store(conn)
					}
				}
				return
			}
		}
		if tr == nil {
			bc.pktUsed = true
			k = &bc.k
			e.initPkt(k, c, p, now, nil, bc.w)
			k.hits = bc.hits()
		} else {
			k = e.newPkt(p, now, tr, bc.w)
		}
		if c.FIB != nil {
			k.iif = b.ifindex(c.FIB)
		}
		bf := &bc.bf
		bc.bfUsed = true
		bf.b, bf.in, bf.fr, bf.p0, bf.pktType = b, ref.idx, fr, p, pktType
		k.bf = bf
		dst0 := p.Dst
		tr.pathBridgeStage(0, ebtables.PreRouting, brnfKey0, false, "")
		if !k.run(&hookState{hook: netfilter.PreRouting, in: br}) {
			k.frameFate(ff)
			return
		}
		if pkOK && !preHit && k.ct.Conn != nil && k.ct.Conn.Confirmed() {
			// the walk of a confirmed connection's frame is kept
			b.pre.store(&pk, c.gen, markPre, &bc.pre)
		}
		// reassembly may have put the datagram in the fragment's place:
		// the frame carries it from now on
		if k.p != p {
			p = k.p
			hl := fr.HeaderLen()
			data := make([]byte, hl+len(p.IP))
			copy(data, fr.Data[:hl])
			copy(data[hl:], p.IP)
			fr = &packet.Frame{Data: data}
			fr.Decode()
			p.L2 = data[:hl]
			k.bf.noRec = true
		}
		if p.Dst != dst0 {
			// br_nf_pre_routing_finish: a DNAT. Routed to the
			// bridge itself it stays bridged, to the new
			// destination's MAC; routed elsewhere it goes up to be
			// routed.
			k.bf.noRec = true
			if c.FIB == nil {
				ff.Drop = "br_netfilter: no routing configuration"
				return
			}
			rt := c.FIB.Input(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), TOS: p.IP.TOS(), IIF: k.iif, Mark: p.Mark,
				Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort})
			if rt.Err != 0 {
				ff.Drop = "br_netfilter: DNAT: route: " + rt.Err.Error()
				return
			}
			if rt.Dev != k.iif || rt.Type == route.Local {
				copy(fr.Data[0:6], b.fdb.MAC[:])
				fr.Dst = b.fdb.MAC
				if !lateFaults() {
					return
				}
				e.bridgeUp(k, b, ref.idx, fr, k.p.Mark, ff, now, tr)
				return
			}
			if !lateFaults() {
				return
			}
			// bridged DNAT: the neighbour of the new next hop
			nh := p.Dst
			if rt.Gateway.IsValid() {
				nh = u32(rt.Gateway)
			}
			m, ok := b.resolveNeigh(nh, now)
			if !ok {
				// br_nf_pre_routing_finish_bridge: the neighbour's
				// output queues the frame behind an ARP request from
				// br0; its answer sends it on bridged (bridged_dnat)
				e.queueBridgedDNAT(k, b, ref.idx, fr, nh, ff)
				return
			}
			copy(fr.Data[0:6], m[:])
			fr.Dst = m
		} else if !lateFaults() {
			return
		}
	} else if !lateFaults() {
		return
	}
	if k != nil {
		mark = k.p.Mark
		if k.bf.cls != nil && tr == nil && len(c.BridgeFaults) == 0 && k.fragMax == 0 {
			e.bridgeReplayed(k, b, fr, mark, ff, now)
			return
		}
	}
	e.bridgeFinish(bc, k, b, ref.idx, fr, mark, ff, now, tr)
}

// bridgeReplayed is bridgeFinish and bridgeForward for a frame that
// replays a bridged class (k.bf.cls) untraced, without bridge fault
// stages and not reassembled (bmemoStart replays no reassembled
// datagram): what they do then, in one place. The class's decision (its
// FDB entries' times touched), bridge FORWARD (ebtables filter
// replayed; the IPv4 FORWARD hook, whose tables are replayed), bridge
// POSTROUTING (ebtables nat replayed; the IPv4 POSTROUTING hook) and
// the one way out. TestBridgeFlowCacheMatchesReference compares it with
// the engine without the cache.
func (e *Engine) bridgeReplayed(k *pkt, b *bridgeState, fr *packet.Frame, mark uint32, ff *FrameFate, now int64) {
	out, data, ok := b.replayedWay(k.bf.cls, fr, len(k.p.L2), len(k.p.IP), ff, now)
	if !ok {
		return
	}
	k.p.PhysOut, k.p.Mark = out, mark
	br := b.name()
	// (run's own shortcut for a hook of replayed tables, inline: the
	// FORWARD hook has no stage but the filter tables unless IPVS or
	// fault stages are on)
	if !(k.cfg.tablesOnly[netfilter.Forward] && !k.ipvsOn()) && !k.run(&hookState{hook: netfilter.Forward, in: br, out: br}) {
		k.frameFate(ff)
		return
	}
	if !k.run(&hookState{hook: netfilter.PostRouting, out: br}) {
		k.frameFate(ff)
		return
	}
	ff.addOut(out, data)
}

// replayedWay is what a frame that replays cls does before its way out
// (bridgeReplayed, bridgeFast): the class's decision, its FDB entries'
// times touched. It returns the port out and the frame to send, its
// header hl bytes and its IPv4 packet ipLen; false: the frame is shorter
// than its packet and dropped (ff.Drop).
func (b *bridgeState) replayedWay(cls *bclass, fr *packet.Frame, hl, ipLen int, ff *FrameFate, now int64) (string, []byte, bool) {
	b.fdb.Touch(&cls.path, now)
	ff.FlowCached = true
	if hl+ipLen > len(fr.Data) {
		ff.Drop = "bridge: frame shorter than its packet"
		return "", nil, false
	}
	return b.fdb.Port(cls.path.Out).Name, fr.Data[:hl+ipLen], true
}

// addOut adds the frame data leaving by port to ff.Out, whose capacity
// it reuses. The element's fields are stored in place: a FrameOut made
// apart and copied in would be read 16 bytes at a time from 8-byte
// stores.
func (ff *FrameFate) addOut(port string, data []byte) {
	n := len(ff.Out)
	if n < cap(ff.Out) {
		ff.Out = ff.Out[:n+1]
	} else {
		ff.Out = append(ff.Out, FrameOut{})
	}
	o := &ff.Out[n]
	o.Port, o.Data = port, data
}

// bridgeFinish is br_handle_frame_finish: learning after PREROUTING,
// the forwarding database, then the ways out (each port's FORWARD and
// POSTROUTING) and up.
func (e *Engine) bridgeFinish(bc *bridgeCall, k *pkt, b *bridgeState, in int, fr *packet.Frame, mark uint32, ff *FrameFate, now int64, tr *Tracer) {
	var bf *bframe
	if k != nil {
		bf = k.bf
	}
	var dec fdb.Decision
	var path fdb.Path
	record := false
	switch {
	case bf != nil && bf.cls != nil:
		// the bridged flow cache: the recorded decision, and what
		// learning and the lookup do to its entries
		b.fdb.Touch(&bf.cls.path, now)
		dec.Verdict = fdb.VerdictForward
		dec.Out.Add(bf.cls.path.Out)
		ff.FlowCached = true
	case bf != nil && k.rec:
		dec, path, record = b.fdb.LearnDecide(in, fr.Src, fr.Dst, now)
	default:
		if to, ok := b.fdb.LearnForward(in, fr.Src, fr.Dst, now); ok {
			dec.Verdict = fdb.VerdictForward
			dec.Out.Add(to)
		} else {
			dec = b.fdb.Decide(in, fr.Dst, now)
		}
	}
	if dec.Verdict == fdb.VerdictForward && !dec.Up && k == nil {
		// one way out without br_netfilter: the frame itself, decoded
		// already (what the loop below does for one port)
		e.bridgeForward(bc, nil, b, b.fdb.Port(in).Name, b.fdb.Port(dec.Out.Next(0)).Name, fr.Data, mark, true, 0, now, tr, ff, fr)
		return
	}
	if dec.Verdict == fdb.VerdictForward && !dec.Up && k != nil {
		// one way out, the frame itself: its packet state goes on
		// through FORWARD and POSTROUTING without a copy
		to := dec.Out.Next(0)
		out := b.fdb.Port(to).Name
		out0 := len(ff.Out)
		e.bridgeForward(bc, k, b, b.fdb.Port(in).Name, out, fr.Data, mark, true, 0, now, tr, ff, fr)
		if record && ff.Drop == "" && len(ff.Out) == out0+1 {
			k.bmemoStore(&path, out)
		}
		return
	}
	if dec.Verdict == fdb.VerdictDrop {
		ff.Drop = "bridge: " + dec.Reason.String()
		return
	}
	// br_flood / br_forward: every way but the last gets a clone; the
	// last port gets the frame itself unless a copy also goes up
	// (local_rcv), which then takes the original
	// (the port list is newest first: br_add_if adds at its head)
	//
	// A clone dropped in FORWARD or POSTROUTING is freed before the
	// next is made, which then takes its place in the slab: the same
	// address, so the same trace id (the kernel's trace id hashes the
	// skb's address).
	ways := dec.Copies()
	var idx [16]int
	ports := dec.Out.AppendPorts(idx[:0])
	var freed uint32
	out0 := len(ff.Out)
	for i := len(ports) - 1; i >= 0; i-- {
		out := b.fdb.Port(ports[i]).Name
		data := fr.Data
		if ways > 1 {
			data = append([]byte(nil), data...)
		}
		orig := i == 0 && !dec.Up
		id := e.bridgeForward(bc, k, b, b.fdb.Port(in).Name, out, data, mark, orig, freed, now, tr, ff, nil)
		if !orig {
			freed = id
		}
	}
	if dec.Up {
		if k != nil && k.p.PktType != packet.PktHost && k.ct.Conn != nil && !k.ct.Conn.Confirmed() {
			// br_nf_local_in: a broadcast or multicast's connection is
			// confirmed before it goes up, so that the clones do not
			// race; with a clone still alive (queued on a port) the
			// copy going up loses its connection instead
			if len(ff.Out) > out0 {
				k.ct = conntrack.Ref{}
			} else if !k.confirm() {
				ff.Drop = k.fate.By()
				return
			}
		}
		e.bridgeUp(k, b, in, fr, mark, ff, now, tr)
	}
}

// frameFate reports an IPv4 pkt's end inside a bridge hook on the
// frame's fate.
func (k *pkt) frameFate(ff *FrameFate) {
	switch k.fate.Kind {
	case Held:
		ff.Held = true
	case Dropped:
		ff.Drop = k.fate.By()
	default:
		ff.Drop = k.fate.Kind.String()
	}
}

// bridgeForward sends one copy of a bridged frame out of port out:
// bridge FORWARD (br_nf_forward: the IPv4 FORWARD hooks), bridge
// POSTROUTING (br_nf_post_routing: the IPv4 POSTROUTING hooks and
// refragmentation). k is the frame's IPv4 state when br_netfilter runs
// for it (nil otherwise); data is this copy's frame.
//
// The copy that is the original sk_buff keeps the trace id (orig); the
// others are clones (deliver_clone), with ids of their own: the
// kernel's trace id hashes the skb's address.
//
// reuse is the trace id of a clone freed just before (0: none); the
// result is this copy's trace id when it was dropped (its skb freed),
// else 0.
//
// single is the frame itself when it has only this way out (decoded
// already): k goes on as the copy's state (and records or replays the
// bridged flow cache).
func (e *Engine) bridgeForward(bc *bridgeCall, k *pkt, b *bridgeState, in, out string, data []byte, mark uint32, orig bool, reuse uint32, now int64, tr *Tracer, ff *FrameFate, single *packet.Frame) (freed uint32) {
	c := e.cfg.Load()
	if k != nil {
		c = k.cfg
	}
	if bc == nil {
		bc = new(bridgeCall)
	}
	fr := single
	if fr == nil {
		bc.p1Used = true
		fr = &bc.fr1
		*fr = packet.Frame{Data: data}
		if fr.Decode() != nil {
			return 0
		}
	}
	if k == nil {
		// bridge FORWARD: ebtables filter (-200); POSTROUTING:
		// ebtables nat (300)
		tr.pathBridge(0, ebtables.Forward, in, out)
		if len(c.BridgeFaults) > 0 {
			br := b.name()
			pf := bc.faultPkt(fr)
			if e.brFaultsAround(c, netfilter.Hook(ebtables.Forward), netfilter.BrPriFilterBridged, true, fr, pf, in, out, br, now, tr, 0, ff) &&
				e.ebtStage(&bc.ebt, c, ebtables.Filter, ebtables.Forward, b, fr, in, out, &mark, nil, now, tr, 0, ff, nil) &&
				e.brFaultsAround(c, netfilter.Hook(ebtables.Forward), netfilter.BrPriFilterBridged, false, fr, pf, in, out, br, now, tr, 0, ff) &&
				e.brFaultsAround(c, netfilter.Hook(ebtables.PostRouting), netfilter.BrPriNATSrc, true, fr, pf, "", out, br, now, tr, 0, ff) &&
				e.ebtStage(&bc.ebt, c, ebtables.NAT, ebtables.PostRouting, b, fr, "", out, &mark, nil, now, tr, 0, ff, nil) &&
				e.brFaultsAround(c, netfilter.Hook(ebtables.PostRouting), netfilter.BrPriNATSrc, false, fr, pf, "", out, br, now, tr, 0, ff) {
				ff.Out = append(ff.Out, FrameOut{Port: out, Data: data})
			}
			return 0
		}
		if (!c.ebtOn(ebtables.Filter, ebtables.Forward) || e.ebtStage(&bc.ebt, c, ebtables.Filter, ebtables.Forward, b, fr, in, out, &mark, nil, now, tr, 0, ff, nil)) &&
			(!c.ebtOn(ebtables.NAT, ebtables.PostRouting) || e.ebtStage(&bc.ebt, c, ebtables.NAT, ebtables.PostRouting, b, fr, "", out, &mark, nil, now, tr, 0, ff, nil)) {
			ff.Out = append(ff.Out, FrameOut{Port: out, Data: data})
		}
		return 0
	}
	// the bridged flow cache: a replayed frame skips the ebtables walks
	// (their counters are replayed), a recording one records them
	var rec *ebtRec
	replay := false
	if single != nil && k.bf != nil {
		replay = k.bf.cls != nil
		if k.rec && k.bf.ebt.on {
			rec = &k.bf.ebt
		}
	}
	// this copy's trace id: the original's, a freed clone's, or new
	tid := uint32(0)
	if k.tr != nil {
		switch {
		case orig:
			tid = k.trace
		case reuse != 0:
			tid = reuse
		default:
			tid = e.traceID.Add(0x9e3779b9)
		}
	}
	traced := uint32(0)
	if k.traceID() != 0 {
		traced = tid
	}
	// bridge FORWARD: ebtables filter (-200), then br_nf_forward (0)
	if tr != nil && tr.Record {
		if !orig {
			tr.pathFrame(PathStart, tid, "bridged copy", "copy out "+out)
			tr.Path[len(tr.Path)-1].Parent = k.trace
		}
		tr.pathBridge(tid, ebtables.Forward, in, out)
	}
	if len(c.BridgeFaults) > 0 && !e.brFaultsAround(c, netfilter.Hook(ebtables.Forward), netfilter.BrPriFilterBridged, true, fr, bc.faultPkt(fr), in, out, b.name(), now, tr, traced, ff) {
		if !orig {
			return tid
		}
		return 0
	}
	if !replay && c.ebtOn(ebtables.Filter, ebtables.Forward) && !e.ebtStage(&bc.ebt, c, ebtables.Filter, ebtables.Forward, b, fr, in, out, &mark, nil, now, tr, traced, ff, rec) {
		if !orig {
			return tid
		}
		return 0
	}
	hl := len(k.p.L2)
	if hl+len(k.p.IP) > len(data) {
		ff.Drop = "bridge: frame shorter than its packet"
		return freed
	}
	var q *pkt
	if single != nil {
		q = k
		q.p.PhysOut, q.p.Mark = out, mark
	} else {
		// this copy's packet: the frame's bytes, the pkt's state
		bc.p1Used = true
		p := &bc.p1
		if &data[0] == &fr0(k)[0] {
			*p = *k.p
		} else {
			*p = packet.Packet{Data: data[hl : hl+len(k.p.IP)], L2: data[:hl], Meta: k.p.Meta}
			if err := p.Decode(); err != nil {
				ff.Drop = "br_netfilter: " + err.Error()
				return freed
			}
		}
		p.PhysOut, p.Mark = out, mark
		q = e.newPkt(p, now, tr, k.w)
		q.cfg, q.env.fib = k.cfg, k.cfg.FIB
		q.ct, q.zone, q.iif = k.ct, k.zone, k.iif
		if tid != 0 {
			q.trace = tid
		}
		q.fragMax, q.fragPMTU, q.ignoreDF, q.pieces = k.fragMax, k.fragPMTU, k.ignoreDF, k.pieces
	}
	ok := len(c.BridgeFaults) == 0 || e.brFaultsAround(c, netfilter.Hook(ebtables.Forward), netfilter.BrPriFilterBridged, false, fr, q.p, in, out, b.name(), now, tr, traced, ff)
	if ok {
		e.bridgeForwardIP(&bc.ebt, q, c, b, fr, out, data, hl, replay, rec, now, tr, ff)
		if q.fate.Kind == Dropped {
			freed = q.trace
		}
	}
	if q != k && q.tr == nil {
		e.putPkt(q)
	}
	return freed
}

// bridgeForwardIP is bridgeForward from br_nf_forward on, for the
// copy's packet state q.
func (e *Engine) bridgeForwardIP(x *ebtables.Ctx, q *pkt, c *compiled, b *bridgeState, fr *packet.Frame, out string, data []byte, hl int, replay bool, rec *ebtRec, now int64, tr *Tracer, ff *FrameFate) {
	br := b.name()
	tr.pathBridgeStage(q.trace, ebtables.Forward, brnfKey0, false, "")
	if !q.run(&hookState{hook: netfilter.Forward, in: br, out: br}) {
		q.frameFate(ff)
		return
	}
	// bridge POSTROUTING: ebtables nat (300), then br_nf_post_routing
	// (INT_MAX): the IPv4 POSTROUTING hooks without an input device
	mark := q.p.Mark
	tr.pathBridge(q.trace, ebtables.PostRouting, "", out)
	if len(c.BridgeFaults) > 0 && !e.brFaultsAround(c, netfilter.Hook(ebtables.PostRouting), netfilter.BrPriNATSrc, true, fr, q.p, "", out, br, now, tr, q.traceID(), ff) {
		q.fate.Kind = Dropped
		return
	}
	if !replay && c.ebtOn(ebtables.NAT, ebtables.PostRouting) && !e.ebtStage(x, c, ebtables.NAT, ebtables.PostRouting, b, fr, "", out, &mark, nil, now, tr, q.traceID(), ff, rec) {
		q.fate.Kind = Dropped
		return
	}
	q.p.Mark = mark
	if len(c.BridgeFaults) > 0 && !e.brFaultsAround(c, netfilter.Hook(ebtables.PostRouting), netfilter.BrPriNATSrc, false, fr, q.p, "", out, br, now, tr, q.traceID(), ff) {
		q.fate.Kind = Dropped
		return
	}
	tr.pathBridgeStage(q.trace, ebtables.PostRouting, brnfKeyLast, false, "")
	if !q.run(&hookState{hook: netfilter.PostRouting, out: br}) {
		q.frameFate(ff)
		return
	}
	// br_nf_dev_queue_xmit: a reassembled datagram leaves in the
	// fragments it came in (or cut to the port's MTU)
	mtu := 0
	if q.fragMax != 0 && q.cfg.FIB != nil {
		mtu = q.cfg.FIB.MTU(q.cfg.FIB.Ifindex(out))
	}
	if q.fragMax != 0 && mtu > 0 {
		if q.p.IP.DF() && q.fragMax > mtu {
			ff.Drop = "br_netfilter: DF set and over MTU"
			return
		}
		for _, f := range q.fragment(mtu) {
			ff.Out = append(ff.Out, FrameOut{Port: out, Data: append(append([]byte(nil), data[:hl]...), f...)})
		}
		return
	}
	ff.Out = append(ff.Out, FrameOut{Port: out, Data: data[:hl+len(q.p.IP)]})
}

// bridgeUp passes a frame up to the bridge device (br_pass_frame_up):
// IPv4 into the IP stack (routing, INPUT or FORWARD; without PREROUTING
// again when br_netfilter ran it, ip_sabotage_in), ARP to the host's
// ARP. k is the frame's IPv4 state when br_netfilter ran (nil
// otherwise).
func (e *Engine) bridgeUp(k *pkt, b *bridgeState, in int, fr *packet.Frame, mark uint32, ff *FrameFate, now int64, tr *Tracer) {
	br := b.name()
	// bridge INPUT: ebtables filter (-200)
	c := e.cfg.Load()
	if k != nil {
		c = k.cfg
	}
	if tr != nil && tr.Record {
		id := uint32(0)
		if k != nil {
			id = k.trace
		}
		tr.pathBridge(id, ebtables.LocalIn, b.fdb.Port(in).Name, "")
	}
	if len(c.BridgeFaults) > 0 {
		var pf *packet.Packet
		if k != nil {
			pf = k.p
		} else {
			pf = brFaultPkt(new(packet.Packet), fr)
		}
		port := b.fdb.Port(in).Name
		if !e.brFaultsAround(c, netfilter.Hook(ebtables.LocalIn), netfilter.BrPriFilterBridged, true, fr, pf, port, "", br, time0(k), tr, k.traceID(), ff) {
			return
		}
		if !e.ebtStage(nil, c, ebtables.Filter, ebtables.LocalIn, b, fr, port, "", &mark, nil, time0(k), tr, k.traceID(), ff, nil) ||
			!e.brFaultsAround(c, netfilter.Hook(ebtables.LocalIn), netfilter.BrPriFilterBridged, false, fr, pf, port, "", br, time0(k), tr, k.traceID(), ff) {
			return
		}
	} else if !e.ebtStage(nil, c, ebtables.Filter, ebtables.LocalIn, b, fr, b.fdb.Port(in).Name, "", &mark, nil, time0(k), tr, k.traceID(), ff, nil) {
		return
	}
	if k != nil {
		k.p.Mark = mark
	}
	switch fr.InnerProto {
	case packet.EtherTypeIPv4:
	case packet.EtherTypeARP:
		ff.UpARP = true
		e.bridgeARP(b, fr, ff, now)
		return
	default:
		return
	}
	if fr.VLAN {
		return // no VLAN device on the bridge
	}
	var f Fate
	if k != nil {
		// ip_sabotage_in: PREROUTING already ran; the input route is
		// looked up anew (the bridge's fake rtable is no valid dst).
		// Received again on br0, the skb has a new skb_iif, which the
		// kernel's trace id hashes: a new id
		k.p.InIf = br
		if k.tr != nil {
			old := k.trace
			k.trace = e.traceID.Add(0x9e3779b9)
			k.pathStart("up to "+br, old)
		}
		if k.p.PktType == packet.PktHost && fr.Dst != b.fdb.MAC && !fr.Dst.IsMulticast() {
			k.p.PktType = packet.PktOtherHost
		}
		k.rcvFinish(k.p.Dst)
		f = k.fate
		// the packet outlives the call (its view is the call's own)
		dg := *k.p
		f.Datagram = &dg
	} else {
		// the frame's IPv4 packet enters the IP stack on br0
		p := &packet.Packet{Data: append([]byte(nil), fr.Payload...), L2: fr.Data[:fr.HeaderLen()]}
		if err := p.Decode(); err != nil {
			ff.Drop = "ip_rcv: " + err.Error()
			return
		}
		p.InIf, p.Mark = br, mark
		switch {
		case fr.Dst.IsBroadcast():
			p.PktType = packet.PktBroadcast
		case fr.Dst.IsMulticast():
			p.PktType = packet.PktMulticast
		}
		f = e.Receive(p, now, tr)
		if f.Datagram == nil {
			f.Datagram = p
		}
	}
	e.bridgeSendFate(&f, ff)
	ff.Up = &f
}

// fr0 is the frame bytes k's packet lies in (its L2 header onwards).
func fr0(k *pkt) []byte {
	if len(k.p.L2) > 0 {
		return k.p.L2[:1]
	}
	return k.p.Data[:1]
}

// time0 is the pkt's time (0 without one).
func time0(k *pkt) int64 {
	if k == nil {
		return 0
	}
	return k.env.now
}

// bridgeSendFate turns what the IP stack sent out of bridge devices
// (the packet routed there, answers) into frames.
func (e *Engine) bridgeSendFate(f *Fate, ff *FrameFate) {
	for _, o := range f.Frames {
		ff.Out = append(ff.Out, o)
	}
	for _, a := range f.Answers {
		ff.Out = append(ff.Out, a.Fate.Frames...)
	}
}

// queueBridgedDNAT keeps a bridged DNAT's frame until its destination
// answers ARP (a request from br0 goes out when the neighbour is new).
func (e *Engine) queueBridgedDNAT(k *pkt, b *bridgeState, in int, fr *packet.Frame, nh uint32, ff *FrameFate) {
	hl := fr.HeaderLen()
	frame := make([]byte, hl+len(k.p.IP))
	copy(frame, fr.Data[:hl])
	copy(frame[hl:], k.p.IP)
	d := &bridgedDNAT{frame: frame, in: in, meta: k.p.Meta, ct: k.ct, zone: k.zone}
	b.mu.Lock()
	n, isNew := b.startNeigh(nh, k.env.now)
	w := n.q
	if len(w.dnat) < neighQueueMax {
		w.dnat = append(w.dnat, d)
	}
	b.mu.Unlock()
	ff.ARPPending = true
	if isNew {
		e.bridgeXmit(b, packet.Broadcast, packet.EtherTypeARP, arpRequest(b, k.cfg.FIB, k.p.Src, nh), ff)
	}
}

// resumeBridgedDNAT sends a queued bridged DNAT frame on to mac: its
// header (source and protocol kept) gets the destination, and it is
// bridged from its input port (br_nf_dev_xmit ->
// br_handle_frame_finish).
func (e *Engine) resumeBridgedDNAT(b *bridgeState, d *bridgedDNAT, mac packet.MAC, ff *FrameFate) {
	copy(d.frame[0:6], mac[:])
	fr := &packet.Frame{Data: d.frame}
	if fr.Decode() != nil {
		return
	}
	p := &packet.Packet{Data: fr.Payload, L2: fr.Data[:fr.HeaderLen()], Meta: d.meta}
	if p.Decode() != nil {
		return
	}
	now := int64(0)
	k := e.newPkt(p, now, nil, nil)
	defer e.putPkt(k)
	k.ct, k.zone = d.ct, d.zone
	if k.cfg.FIB != nil {
		k.iif = k.cfg.FIB.Ifindex(b.name())
	}
	e.bridgeFinish(nil, k, b, d.in, fr, d.meta.Mark, ff, now, nil)
}

// arpRequest is an ARP request from br0 for target, from src when src
// is one of the host's addresses, else from br0's address towards it
// (arp_solicit with arp_announce 0).
func arpRequest(b *bridgeState, fib *route.FIB, src, target uint32) []byte {
	if fib != nil && fib.AddrType(addr4(src), 0, false) != route.Local {
		src = u32(fib.SelectSource(b.ifindex(fib), addr4(target), route.ScopeLink))
	}
	return packet.ARP{Op: packet.ARPRequest, SHA: b.fdb.MAC, SPA: src, TPA: target}.Bytes()
}

// bridgeARP is arp_process for br0: a request for one of its addresses
// is answered (and its sender learned as a neighbour); a reply teaches
// the neighbour.
func (e *Engine) bridgeARP(b *bridgeState, fr *packet.Frame, ff *FrameFate, now int64) {
	m, ok := packet.ParseARP(fr.Payload)
	if !ok {
		return
	}
	op, sha, spa, tpa := m.Op, m.SHA, m.SPA, m.TPA
	c := e.cfg.Load()
	if c.FIB == nil {
		return
	}
	local := c.FIB.AddrType(addr4(tpa), 0, false) == route.Local
	flush := func(w *neighQueue) {
		if w == nil {
			return
		}
		for _, q := range w.pkts {
			e.bridgeXmit(b, sha, packet.EtherTypeIPv4, q.ip, ff)
		}
		for _, d := range w.dnat {
			e.resumeBridgedDNAT(b, d, sha, ff)
		}
	}
	if spa == 0 {
		return
	}
	// arp_process: a request for one of our addresses creates or
	// updates its sender's entry (neigh_event_ns); any other request or
	// reply only updates an entry that exists, a resolved or a pending
	// one (__neigh_lookup without create)
	// the new state: REACHABLE for a reply sent to br0 (PACKET_HOST),
	// STALE for a request or a broadcast reply
	if op == 1 && local {
		flush(b.learnNeigh(spa, sha, true, false, now))
	} else {
		flush(b.learnNeigh(spa, sha, false, op == 2 && fr.Dst == b.fdb.MAC, now))
	}
	switch op {
	case 1: // request
		if !local {
			return
		}
		reply := packet.ARP{Op: packet.ARPReply, SHA: b.fdb.MAC, SPA: tpa, THA: sha, TPA: spa}.Bytes()
		e.bridgeXmit(b, sha, packet.EtherTypeARP, reply, ff)
	}
}

// bridgeXmit is br_dev_xmit: a frame the bridge device itself sends to
// dst leaves by the port the FDB names, or by all (bridge OUTPUT and
// POSTROUTING per port: ebtables, not wired).
//
// Per port: bridge OUTPUT (ebtables filter -200 then nat 100: the nft
// order) and POSTROUTING (ebtables nat 300).
func (e *Engine) bridgeXmit(b *bridgeState, dst packet.MAC, proto uint16, payload []byte, ff *FrameFate) {
	e.bridgeXmitTraced(b, dst, proto, payload, 0, nil, ff)
}

// bridgeXmitTraced is bridgeXmit for a packet whose sk_buff may be
// traced (tid, tr).
func (e *Engine) bridgeXmitTraced(b *bridgeState, dst packet.MAC, proto uint16, payload []byte, tid uint32, tr *Tracer, ff *FrameFate) {
	frame := packet.BuildFrame(dst, b.fdb.MAC, proto, payload)
	dec := b.fdb.Output(dst)
	ways := dec.Out.Len()
	c := e.cfg.Load()
	for j := dec.Out.Next(0); j >= 0; j = dec.Out.Next(j + 1) {
		data := frame
		if ways > 1 {
			data = append([]byte(nil), frame...)
		}
		out := b.fdb.Port(j).Name
		fr := &packet.Frame{Data: data}
		if fr.Decode() != nil {
			continue
		}
		var mark uint32
		tr.pathBridge(tid, ebtables.LocalOut, "", out)
		if !e.ebtStage(nil, c, ebtables.Filter, ebtables.LocalOut, b, fr, "", out, &mark, nil, 0, tr, tid, ff, nil) ||
			!e.ebtStage(nil, c, ebtables.NAT, ebtables.LocalOut, b, fr, "", out, &mark, nil, 0, tr, tid, ff, nil) ||
			!e.ebtStage(nil, c, ebtables.NAT, ebtables.PostRouting, b, fr, "", out, &mark, nil, 0, tr, tid, ff, nil) {
			continue
		}
		ff.Out = append(ff.Out, FrameOut{Port: out, Data: data})
	}
}

// bridgeOutput gives a packet the IP stack sends out of a bridge device
// its Ethernet header: the next hop's MAC from br0's neighbours, or an
// ARP request first (the packet then waits for the answer, which an
// offline replay never gets). It fills k.fate.Frames.
func (k *pkt) bridgeOutput(b *bridgeState) {
	var ff FrameFate
	nh := k.fate.NextHop
	var mac packet.MAC
	var ok bool
	if nh == 0xffffffff || k.rt.Type == route.Broadcast {
		mac, ok = packet.Broadcast, true
	} else {
		mac, ok = b.resolveNeigh(nh, k.env.now)
	}
	pkts := k.fate.Frags
	if pkts == nil {
		pkts = [][]byte{k.p.IP}
	}
	if !ok {
		// neigh_resolve_output: the packet waits in the neighbour's
		// queue; a new neighbour is solicited with an ARP request from
		// the packet's source when it is ours (arp_solicit,
		// arp_announce 0)
		k.fate.ARPPending = true
		q := make([]queuedPkt, len(pkts))
		for i, ip := range pkts {
			q[i] = queuedPkt{ip: ip, iif: k.iif, ct: k.ct, zone: k.zone}
		}
		if !b.queueNeigh(nh, q, k.p.Src, k.env.now) {
			return
		}
		req := arpRequest(b, k.cfg.FIB, k.p.Src, nh)
		k.e.bridgeXmit(b, packet.Broadcast, packet.EtherTypeARP, req, &ff)
		k.fate.Frames = ff.Out
		return
	}
	for _, ip := range pkts {
		k.e.bridgeXmitTraced(b, mac, packet.EtherTypeIPv4, ip, k.traceID(), k.tr, &ff)
	}
	k.fate.Frames = ff.Out
}

// bridgeState of a device name, nil when it is not a bridge.
func (e *Engine) bridgeNamed(name string) *bridgeState {
	if s := e.bridges.Load(); s != nil {
		return s.byName[name]
	}
	return nil
}
