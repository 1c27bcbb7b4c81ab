package datapath

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/ipfrag"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/nat"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// The IPv4 hook graph is drawn in doc.go: each hook is an ordered list
// of stages built once per configuration (hooks.go), so IPVS, bridge and
// fault stages are one more entry at their priority. The functions below
// are what the kernel does between the hooks (routing, ip_forward's TTL,
// delivery, loopback), in net/ipv4/ip_input.c, ip_forward.c and
// ip_output.c.

// Config is what the engine runs on: the rule set, the routing state and
// the sysctls that matter. It is immutable once handed to the engine.
type Config struct {
	Rules *iptables.Ruleset
	FIB   *route.FIB
	// IPForward is net.ipv4.ip_forward.
	IPForward bool
	// ICMP holds the ICMP rate limit and redirect sysctls; nil means
	// the kernel defaults.
	ICMP *ICMPConfig
	// Linear walks every chain rule by rule instead of through the
	// compiled classifiers of iptables and ebtables (the reference;
	// benchmarks compare the two).
	// It turns the flow cache off too.
	Linear bool
	// NoFlowCache turns the flow cache (flowcache.go) off.
	NoFlowCache bool
	// Frag is net.ipv4.ipfrag_*; nil means the kernel defaults.
	Frag *ipfrag.Config
	// Bridges are the namespace's bridge devices (bridge.go).
	Bridges []BridgeConfig
	// Ebtables is the bridge level's rule set (nil: none).
	Ebtables *ebtables.Ruleset
	// Faults are fault stages (package fault) on the IPv4 hooks.
	Faults []FaultStage
	// BridgeFaults are fault stages on the bridge hooks (fault.go).
	BridgeFaults []BridgeFaultStage
	// HostStack: a real network stack holds the host's sockets (a lab
	// node's host namespace, fed by the front end): a packet delivered
	// locally is its to answer, so the engine sends none of the
	// answers of a host without sockets (answers.go: echo replies,
	// RSTs, port unreachable). What the IP layer itself sends (ICMP
	// errors of forwarding, REJECT) is unchanged.
	HostStack bool
}

// FateKind is what finally happened to a packet.
type FateKind uint8

const (
	Delivered FateKind = iota // accepted for a local socket (INPUT done)
	Forwarded                 // left through OutIf
	Sent                      // a local packet left through OutIf
	Dropped                   // dropped (Reason says why, By where)
	Queued                    // handed to NFQUEUE
	Stolen
	// Held: a fragment waits in a reassembly queue (nf_defrag_ipv4 or
	// ip_local_deliver took it: NF_STOLEN); the fragment that completes
	// its datagram carries the datagram's fate.
	Held
)

var fateNames = [...]string{"delivered", "forwarded", "sent", "dropped", "queued", "stolen", "held"}

func (k FateKind) String() string { return fateNames[k] }

// Fate is the outcome of one packet.
type Fate struct {
	Kind  FateKind
	OutIf string
	// OutIndex is OutIf's index in the configuration's FIB (0:
	// unknown), for a writer that keeps its devices by index.
	OutIndex int
	// Reason is why a Dropped packet was dropped, with where (Table,
	// Hook, and for a table's rule or policy the chain Arg and Rule) or what
	// (Detail: an errno, a verdict, an address; Arg: a device, an
	// error's text) as the reason says (drop.go). By prints them.
	Reason DropReason
	Table  iptables.TableID
	Hook   netfilter.Hook
	Rule   int32
	Detail uint32
	Arg    string
	// NextHop is the neighbour a Forwarded or Sent packet goes to on
	// OutIf (the gateway, or the destination on link): an L2 device
	// resolves its MAC.
	NextHop uint32
	// Answers are the packets the host sent in reaction (REJECT, echo
	// replies, RST, ICMP errors), each with its own fate.
	Answers []Answer
	// FlowCached: the packet's table runs after conntrack and its input
	// route came from the flow cache.
	FlowCached bool
	// Datagram is set when the packet handed in was the fragment that
	// completed a datagram: the fate is the reassembled datagram's, and
	// a writer sends Datagram (or Frags) instead of the packet.
	// Reassembled lists the fragments it was built from (their
	// packet.Meta.Seq), in offset order.
	Datagram    *packet.Packet
	Reassembled []ipfrag.Frag
	// Frames is set when the packet left through a bridge device: the
	// Ethernet frames that left its ports (the packet or its
	// fragments, or the ARP request that asks for its next hop when
	// ARPPending).
	Frames     []FrameOut
	ARPPending bool
	// Frags is set when the packet left in fragments (ip_fragment: over
	// the output MTU, or a reassembled datagram sent on in the sizes it
	// came in): a writer sends these instead of the packet, in order.
	Frags [][]byte
}

// Answer is a packet the host generated and what became of it.
type Answer struct {
	Pkt  *packet.Packet
	Fate Fate
}

func (f Fate) String() string {
	switch f.Kind {
	case Forwarded, Sent:
		if len(f.Frags) > 0 {
			return fmt.Sprintf("%s out %s in %d fragments", f.Kind, f.OutIf, len(f.Frags))
		}
		return fmt.Sprintf("%s out %s", f.Kind, f.OutIf)
	case Dropped:
		return "dropped by " + f.By()
	}
	return f.Kind.String()
}

// AppendText appends String's text to b; the common fates (out a
// device, delivered, dropped by a table) allocate nothing, for a
// caller that prints one line per packet.
func (f *Fate) AppendText(b []byte) []byte {
	switch f.Kind {
	case Forwarded, Sent:
		b = append(b, f.Kind.String()...)
		b = append(b, " out "...)
		b = append(b, f.OutIf...)
		if len(f.Frags) > 0 {
			b = append(b, " in "...)
			b = strconv.AppendInt(b, int64(len(f.Frags)), 10)
			b = append(b, " fragments"...)
		}
		return b
	case Dropped:
		if f.Reason != DropTable {
			return append(b, f.String()...)
		}
		b = append(b, "dropped by "...)
		b = append(b, f.Table.String()...)
		b = append(b, ':')
		switch {
		case f.Arg == "":
			return append(b, f.Hook.String()...)
		case f.Rule == 0:
			b = append(b, f.Arg...)
			return append(b, ":policy"...)
		}
		b = append(b, f.Arg...)
		b = append(b, ":rule:"...)
		return strconv.AppendInt(b, int64(f.Rule), 10)
	}
	return append(b, f.Kind.String()...)
}

// Engine is the packet pipeline. Its configuration is swapped atomically;
// conntrack, NAT and match state live outside it and survive swaps.
type Engine struct {
	cfg   atomic.Pointer[compiled]
	CT    *conntrack.Table
	NAT   *nat.Core
	State *iptables.State
	// LVS is the namespace's IPVS (nil: none). Its services are
	// configured through it and take effect at once; its connections
	// survive rule-set swaps like conntrack's.
	LVS *lvs.Director
	// Frags are the namespace's reassembly queues (defrag.go); they
	// survive swaps, which only change their sysctls.
	Frags *ipfrag.Table
	// bridges are the bridge devices (bridge.go), rebuilt by Swap with
	// the state of those that stay; BridgeErr is the last Swap's
	// error building them (the bridges then are the previous ones)
	bridges   atomic.Pointer[bridgeSet]
	BridgeErr error
	// bcalls pools the per-frame state of ReceiveFrameInto, ebtCtxs
	// the contexts of ebtables runs
	bcalls, ebtCtxs sync.Pool

	// seed seeds the random sources (worker.go); rules and icm are the
	// engine's own, for Receive and Send (a Worker has its own)
	seed       uint64
	rules, icm sharedXorshift
	// randFn is rules.uint32 as a func value made once (a method value
	// made per packet would allocate)
	randFn func() uint32

	// icmp is the ICMP limiter and redirect backoff state (the
	// namespace's inet_peer entries and global ICMP credit)
	icmp icmpLimits

	traceID atomic.Uint32
	// klog is the kernel log LOG, NFLOG and legacy TRACE write to
	// (klog.go; nil: none)
	klog atomic.Pointer[KernelLog]
	// pkts recycles the per-packet state, so the steady state allocates
	// nothing; Put clears every pointer.
	pkts sync.Pool
}

// compiled is a configuration plus what is derived from it once.
type compiled struct {
	Config
	// ruleInfo holds each rule's nft handle and trace text (slow path),
	// made by info once something traces
	ruleInfo map[*iptables.Rule]ruleInfo
	infoOnce sync.Once
	// ctOn: conntrack runs in this namespace. The kernel registers the
	// conntrack hooks of a namespace only when something needs them
	// (nf_ct_netns_get, called by the checkentry of the xt extensions
	// below); without them no packet has a ct, so the NAT hooks
	// (nf_nat_inet_fn: no ct, accept) never run the nat chains either.
	ctOn bool
	// natOn: the nat hooks run. nf_nat registers its hooks
	// (nf_nat_register_fn) with the first nat chain of the namespace;
	// without a nat table no connection gets even a null binding.
	natOn bool
	// base holds each table's builtin chain of each hook (nil: the table
	// or the chain does not exist), resolved once instead of by name per
	// packet
	base [netfilter.NumHooks][iptables.NumTables]*iptables.Chain
	// gen is the configuration's flow cache generation; memoOn says
	// the flow cache runs
	gen    uint32
	memoOn bool
	// bmemoOn says the bridged flow cache runs (bridgecache.go);
	// ebtPreOn that it also replays ebtables nat PREROUTING walks;
	// brFast that bridgeFast may take a frame (bridgefast.go)
	bmemoOn, ebtPreOn, brFast bool
	// hooks are the stage lists of each hook (hooks.go)
	hooks hookLists
	// tablesOnly: hooks[0]'s list of the hook has no stage but tables
	// (none at all, too), each of which a replayed packet skips
	tablesOnly [netfilter.NumHooks]bool
	// ebt is the compiled ebtables rule set (nil: none)
	ebt *ebtables.Program
	// traceTab: the table has a -j TRACE rule, so a packet can become
	// traced in it (the live kernel log's TRACE lines, klog.go)
	traceTab [iptables.NumTables]bool
	// logRules: some table has a -j LOG rule
	logRules bool
}

// needsConntrack is whether the rule's extensions call nf_ct_netns_get in
// their checkentry (xt_conntrack, xt_state, xt_connmark, xt_connlimit,
// xt_connbytes, xt_helper, xt_cluster, xt_nat and friends, xt_CT without
// --notrack, xt_SYNPROXY).
func needsConntrack(r *iptables.Rule) bool {
	for _, m := range r.Matches {
		switch m.Name() {
		case "conntrack", "state", "connmark", "connlimit", "connbytes", "helper", "cluster":
			return true
		}
	}
	if r.Target == nil {
		return false
	}
	switch r.Target.Name() {
	case "CONNMARK", "SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP", "SYNPROXY", "CONNSECMARK":
		return true
	case "CT":
		if t, ok := r.Target.(*iptables.CTTarget); ok && t.Flags&iptables.CTNoTrack == 0 {
			return true
		}
	}
	return false
}

type ruleInfo struct {
	handle uint64
	text   string
}

// New makes an engine; seed makes random choices repeatable.
func New(cfg Config, ctcfg conntrack.Config, seed uint64) *Engine {
	ct := conntrack.NewTable(ctcfg, seed)
	e := &Engine{CT: ct, NAT: nat.New(ct, seed), State: &iptables.State{}, seed: seed, Frags: ipfrag.New(fragConfig(cfg))}
	ct.SetNATHelper(e.NAT)
	r, i := seeds(seed, 0)
	e.rules.s.Store(r)
	e.icm.s.Store(i)
	e.randFn = e.rules.uint32
	e.traceID.Store(uint32(seed*2654435761) | 1)
	e.Swap(cfg)
	return e
}

// Traces reports whether a packet run without Tracer.All can produce
// lines of format f under the current configuration: a -j TRACE rule
// can mark it for tracing, and in FormatLog a LOG rule writes a line
// for every packet it matches. When it cannot, a caller that only wants
// those lines and the fate may pass a nil Tracer, which loses nothing
// (the fate names the dropping rule either way: tableDropAt) and lets
// the flow cache replay established flows.
func (e *Engine) Traces(f TraceFormat) bool {
	c := e.cfg.Load()
	for _, on := range c.traceTab {
		if on {
			return true
		}
	}
	return f == FormatLog && c.logRules
}

// Swap installs a new configuration; packets in flight finish on the old.
func (e *Engine) Swap(cfg Config) {
	c := &compiled{Config: cfg, gen: nextMemoGen()}
	c.memoOn = cfg.Rules != nil && cfg.Rules.Memoizable() && cfg.FIB != nil && !cfg.Linear && !cfg.NoFlowCache
	if cfg.Rules != nil {
		c.natOn = cfg.Rules.Tables[iptables.Nat] != nil
		for _, t := range cfg.Rules.Tables {
			if t == nil {
				continue
			}
			for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
				c.base[h][t.ID] = t.Builtin(h)
			}
			for _, ch := range t.Chains {
				for _, r := range ch.Rules {
					c.ctOn = c.ctOn || needsConntrack(r)
					switch r.Target.(type) {
					case *iptables.TraceTarget:
						c.traceTab[t.ID] = true
					case *iptables.LogTarget:
						c.logRules = true
					}
				}
			}
		}
	}
	if cfg.Ebtables != nil {
		c.ebt = ebtables.Compile(cfg.Ebtables)
	}
	c.bmemoOn = len(cfg.Bridges) > 0 && cfg.Rules != nil && cfg.Rules.Memoizable() && !cfg.Linear && !cfg.NoFlowCache &&
		len(cfg.Faults) == 0 && len(cfg.BridgeFaults) == 0 && ebtMemoizable(cfg.Ebtables, ebtables.Filter, ebtables.Forward) &&
		ebtMemoizable(cfg.Ebtables, ebtables.NAT, ebtables.PostRouting)
	c.ebtPreOn = c.bmemoOn && c.ebt != nil && c.ebt.Has(ebtables.NAT, ebtables.PreRouting) &&
		ebtMemoizable(cfg.Ebtables, ebtables.NAT, ebtables.PreRouting)
	c.buildHooks()
	c.brFast = c.bmemoOn && c.ctOn && brFastHooks(&c.hooks[0], &c.tablesOnly)
	if e.Frags != nil {
		e.Frags.SetConfig(fragConfig(cfg))
	}
	if bs, err := buildBridges(cfg.Bridges, e.bridges.Load(), 0); err != nil {
		e.BridgeErr = err
	} else {
		e.BridgeErr = nil
		e.bridges.Store(bs)
	}
	e.cfg.Store(c)
}

func fragConfig(cfg Config) ipfrag.Config {
	if cfg.Frag != nil {
		return *cfg.Frag
	}
	return ipfrag.DefaultConfig
}

// info is a rule's nft handle and trace text, made for the whole rule
// set when a trace first asks (a swap of a large set does not pay for
// texts nothing may print).
func (c *compiled) info(r *iptables.Rule) ruleInfo {
	c.infoOnce.Do(func() {
		c.ruleInfo = map[*iptables.Rule]ruleInfo{}
		if c.Rules == nil {
			return
		}
		for _, t := range c.Rules.Tables {
			if t == nil {
				continue
			}
			// nft hands out handles per table: chains first (in the
			// order iptables-restore of a saved set declares them),
			// then rules in line order
			h := uint64(len(t.Chains))
			for _, ch := range t.Chains {
				for _, r := range ch.Rules {
					h++
					c.ruleInfo[r] = ruleInfo{handle: h, text: iptables.RuleString(r)}
				}
			}
		}
	})
	return c.ruleInfo[r]
}

// Config is the configuration the engine runs on now.
func (e *Engine) Config() Config { return e.cfg.Load().Config }

// env answers the rules' questions about the host for one packet.
type env struct {
	e   *Engine
	k   *pkt
	fib *route.FIB
	now int64
}

func (v *env) AddrType(a uint32, dev string) uint8 {
	if v.fib == nil {
		return uint8(route.Unicast)
	}
	idx, limit := 0, dev != ""
	if limit {
		idx = v.fib.Ifindex(dev)
	}
	return uint8(v.fib.AddrType(addr4(a), idx, limit))
}

func (v *env) Now() int64     { return v.now }
func (v *env) Rand32() uint32 { return v.k.rand32() }

func (v *env) ReversePath(src, dst uint32, inIf string, mark uint32, tos uint8, loose, validMark, acceptLocal bool) bool {
	if v.fib == nil {
		return true
	}
	fl := route.Flow{Dst: addr4(src), Src: addr4(dst), TOS: tos, IIF: v.fib.Loopback()}
	if validMark {
		fl.Mark = mark
	}
	res := v.fib.Lookup(&fl)
	if res.Err != 0 {
		return false
	}
	if res.Type == route.Local && !acceptLocal {
		return false
	}
	return loose || v.fib.LinkName(res.Dev) == inIf
}

// PathMTU implements iptables.PathMTUEnv for TCPMSS --clamp-mss-to-pmtu:
// the MTU of the packet's route and of the route back to its source.
func (v *env) PathMTU(p *packet.Packet) (out, reverse uint32) {
	if v.fib == nil || v.k == nil {
		return 0, 0xffffffff
	}
	if v.k.rt.Dev != 0 {
		out = uint32(v.fib.MTU(v.k.rt.Dev))
	}
	reverse = 0xffffffff
	r := v.fib.Output(&route.Flow{Dst: addr4(p.Src)})
	if r.Err == 0 {
		reverse = uint32(v.fib.MTU(r.Dev))
	}
	return out, reverse
}

func addr4(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func u32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// pkt is one packet's way through the hooks: pktHot, and pktCold
// (what table runs and recordings use, which most packets of an
// established flow never touch). Whoever writes pktCold's fields sets
// cold first, so a reset clears pktCold only when cold is set
// (pkt.reset) and it is otherwise still zero.
type pkt struct {
	pktHot
	pktCold
}

// pktCold is the part of a pkt that table runs, fault stages and the
// flow caches' recordings write (all of them set pktHot.cold).
type pktCold struct {
	// ctx is reused by every table run of the packet
	ctx iptables.Ctx
	// memo is the recording of the packet's table runs (rec)
	memo iptables.Memo
	// lt and tee are the table runs' tracers for its legacy TRACE
	// lines (klog.go)
	lt  liveTrace
	tee teeTracer
}

// pktHot is the rest of a pkt.
type pktHot struct {
	e *Engine
	// w is the worker the packet runs on (its random source); nil: the
	// engine's own
	w   *Worker
	cfg *compiled
	p   *packet.Packet
	ct  conntrack.Ref
	env env
	tr  *Tracer
	// cold: a pktCold field may have been written since the pkt was
	// reset
	cold bool
	// route decided for the packet
	rt    route.Result
	fate  Fate
	trace uint32 // trace id
	zone  uint16 // conntrack zone set by -j CT --zone in raw
	// helper is the conntrack helper of the packet's CT template (-j CT
	// --helper in raw); nil: none
	helper *conntrack.Helper
	// anySrc: the packet's source need not be a local address
	// (FLOWI_FLAG_ANYSRC, as ip_route_me_harder routes nf_send_reset's RST)
	anySrc bool
	// hasDst: rt is the route the packet already carries (loopback)
	hasDst bool
	// ipvsDone is skb->ipvs_property: IPVS handled the packet and its
	// hooks ignore it from now on
	ipvsDone bool
	// nh is a next hop fixed by IPVS-DR (FLOWI_FLAG_KNOWN_NH: the real
	// server, whatever the destination address); 0: from the route
	nh uint32
	// iif is the input interface's index (a received packet)
	iif int
	// scratch is the traversal stack of the packet's table runs; it
	// stays with the pooled pkt (putPkt keeps it), so no run clears one
	scratch *iptables.Scratch
	// the flow cache (flowcache.go): rec records the packet's table runs
	// into memo for memoKey; replay skips them (the recording's counters
	// are replayed, k.rt is its route)
	rec, replay bool
	memoKey     memoKey
	// hits is the worker's hit batch the bridged flow caches replay the
	// packet's counters into (nil: straight to the counters; hits.go)
	hits *hitBatch
	// bf is the frame of a packet br_netfilter runs through the hooks
	// (the bridged flow cache, bridgecache.go); nil for others
	bf *bframe
	// reassembly (defrag.go): fragMax is IPCB(skb)->frag_max_size,
	// fragPMTU IPSKB_FRAG_PMTU, ignoreDF skb->ignore_df (conntrack's
	// reassembly sets it); pieces are the payload lengths of the
	// fragments, the frag_list ip_do_fragment's fast path follows
	fragMax  int
	fragPMTU bool
	ignoreDF bool
	pieces   []int
	// opt is the packet's IP options as ip_rcv_options compiled them
	// (options.go); zero for a packet without
	opt packet.Options
	// kl is the engine's kernel log when the packet started (nil:
	// none)
	kl *KernelLog
}

// Receive runs a packet that arrived on p.InIf (PREROUTING onwards).
// p must be decoded. now is the packet's time in monotonic nanoseconds.
// tr may be nil. It is safe for concurrent use; its random draws come
// from one source shared by all callers (lock-free), so goroutines that
// run many packets at once should each use a Worker.
func (e *Engine) Receive(p *packet.Packet, now int64, tr *Tracer) Fate {
	k := e.newPkt(p, now, tr, nil)
	k.receiveTop()
	f := k.fate
	e.putPkt(k)
	return f
}

// receiveTop is receive for a packet handed in, recording its path
// when its tracer asks.
func (k *pkt) receiveTop() {
	if k.tr == nil || !k.tr.Record {
		k.receive()
		return
	}
	mark := k.tr.callStart()
	k.pathStart("received", 0)
	k.receive()
	k.pathEnd()
	k.tr.callEnd(mark)
}

// sendTop is send for a packet handed in, recording its path when its
// tracer asks.
func (k *pkt) sendTop() {
	k.p.Local = true
	if k.tr == nil || !k.tr.Record {
		k.send()
		return
	}
	mark := k.tr.callStart()
	k.pathStart("sent", 0)
	k.send()
	k.pathEnd()
	k.tr.callEnd(mark)
}

// Send runs a packet the host itself sends (OUTPUT onwards).
func (e *Engine) Send(p *packet.Packet, now int64, tr *Tracer) Fate {
	k := e.newPkt(p, now, tr, nil)
	k.sendTop()
	f := k.fate
	e.putPkt(k)
	return f
}

func (e *Engine) newPkt(p *packet.Packet, now int64, tr *Tracer, w *Worker) *pkt {
	k, _ := e.pkts.Get().(*pkt)
	if k == nil {
		k = new(pkt)
	}
	e.initPkt(k, e.cfg.Load(), p, now, tr, w)
	return k
}

// initPkt readies a zero pkt (but for its scratch) for p on
// configuration c.
func (e *Engine) initPkt(k *pkt, c *compiled, p *packet.Packet, now int64, tr *Tracer, w *Worker) {
	k.e, k.w, k.cfg, k.p, k.tr = e, w, c, p, tr
	k.env = env{e: e, k: k, fib: c.FIB, now: now}
	k.kl = e.klog.Load()
	if tr != nil {
		k.trace = e.traceID.Add(0x9e3779b9)
	}
}

func (e *Engine) putPkt(k *pkt) {
	k.reset()
	e.pkts.Put(k)
}

// reset makes k zero but for its scratch: pktCold only when something
// wrote it (cold).
func (k *pkt) reset() {
	s, cold := k.scratch, k.cold
	k.pktHot = pktHot{scratch: s}
	if cold {
		k.pktCold = pktCold{}
	}
}

// drop drops the packet for reason, with its detail and argument.
func (k *pkt) drop(reason DropReason, detail uint32, arg string) {
	k.fate.Kind = Dropped
	k.fate.Reason, k.fate.Detail, k.fate.Arg = reason, detail, arg
}

// tableDrop records a table's drop at the hook, unless an earlier one
// is recorded; a traced packet also gets the chain and rule.
func (k *pkt) tableDrop(tid iptables.TableID, h netfilter.Hook) {
	if k.fate.Reason != DropNone {
		return
	}
	k.fate.Reason, k.fate.Table, k.fate.Hook = DropTable, tid, h
	if k.tr != nil && k.tr.dropChain != "" {
		k.fate.Arg, k.fate.Rule = k.tr.dropChain, k.tr.dropRule
	}
}

// tableDropAt is tableDrop for a traversal that ended in a drop at
// chain's rule number rule (0: the policy; chain nil: a hot drop),
// which the packet gets whether it is traced or not: what the
// tracer's Rule and Policy events would have recorded.
func (k *pkt) tableDropAt(tid iptables.TableID, h netfilter.Hook, chain *iptables.Chain, rule int32) {
	if k.fate.Reason != DropNone {
		return
	}
	k.fate.Reason, k.fate.Table, k.fate.Hook = DropTable, tid, h
	if chain != nil {
		k.fate.Arg, k.fate.Rule = chain.Name, rule
	}
}

// runTable runs one table's chain for the hook and reports whether the
// packet goes on.
func (k *pkt) runTable(tid iptables.TableID, h netfilter.Hook, in, out string) (iptables.TVerdict, *iptables.Ctx) {
	base := k.cfg.base[h][tid]
	if base == nil {
		return iptables.TAccept, nil
	}
	k.p.InIf, k.p.OutIf = in, out
	if k.rec && tid == iptables.Nat {
		// the nat chains run for a connection's first packet only
		k.memo.Tainted = true // (cold: set by rec)
	}
	// the live kernel log (klog.go): LOG and NFLOG rules log through
	// the packet; a packet that is or may become traced runs with
	// liveTrace. A tracer of the log form writes these lines itself.
	logs := k.kl != nil && (k.tr == nil || k.tr.Format != FormatLog)
	live := logs && (k.p.Trace || k.cfg.traceTab[tid])
	if k.tr == nil && !live && len(base.Rules) == 0 {
		// an empty chain: its policy, without a traversal
		if v, ok := base.RunEmpty(len(k.p.IP)); ok {
			if v == iptables.TDrop {
				k.tableDropAt(tid, h, base, 0)
			}
			if k.rec {
				k.memo.Policy(base)
			}
			return v, nil
		}
	}
	if k.scratch == nil {
		k.scratch = new(iptables.Scratch)
	}
	k.cold = true
	c := &k.ctx
	// cleared, then set field by field: a composite literal would be
	// built on the stack and copied over
	*c = iptables.Ctx{}
	c.Pkt, c.Hook, c.CT, c.Env, c.State, c.Linear, c.Scratch = k.p, h, k.ct, &k.env, k.e.State, k.cfg.Linear, k.scratch
	if k.rec {
		c.Memo = &k.memo
	}
	if logs {
		c.Logger = k
	}
	var tr iptables.Tracer
	switch {
	case k.tr != nil && live:
		k.lt = liveTrace{k: k, in: in, out: out}
		k.tee = teeTracer{a: k.tr, b: &k.lt}
		k.tr.chain(k, c, in, out)
		tr = &k.tee
	case k.tr != nil:
		tr = k.tr.chain(k, c, in, out)
	case live:
		k.lt = liveTrace{k: k, in: in, out: out}
		tr = &k.lt
	}
	v := k.cfg.Rules.Tables[tid].RunBase(base, c, tr)
	if v == iptables.TDrop {
		k.tableDropAt(tid, h, c.DropChain, c.DropRule)
	}
	return v, c
}

// verdictOK handles a table verdict: false when the packet is gone.
func (k *pkt) verdictOK(v iptables.TVerdict, c *iptables.Ctx, tid iptables.TableID, h netfilter.Hook) bool {
	switch v {
	case iptables.TAccept, iptables.TContinue:
		return true
	case iptables.TQueue:
		// no queue reader offline: the kernel drops unless bypass is set
		if c != nil && c.QueueBypass {
			return true
		}
		k.fate.Kind = Queued
		return false
	case iptables.TStolen:
		k.fate.Kind = Stolen
		return false
	}
	k.tableDrop(tid, h)
	k.fate.Kind = Dropped
	if c != nil && c.Reject != nil {
		k.reject(c.Reject)
	}
	if k.tr != nil {
		k.tr.flushHeld()
	}
	return false
}

// conntrackIn is nf_conntrack_in at PREROUTING/OUTPUT.
func (k *pkt) conntrackIn(h netfilter.Hook) bool {
	if !k.cfg.ctOn || k.ct.IsUntracked() || k.ct.Conn != nil {
		return true
	}
	var ref conntrack.Ref
	var v conntrack.Verdict
	if bf := k.bf; bf != nil && bf.ctPre {
		// bridgeFast's lookup of this frame (bridgefast.go)
		ref, v, bf.ctPre = bf.ctRef, bf.ctV, false
	} else {
		ref, v = k.e.CT.InTemplate(k.p, k.zone, k.helper, h, k.env.now)
	}
	if v != conntrack.Accept {
		k.drop(DropConntrack, uint32(v), "")
		return false
	}
	k.ct = ref
	if ref.Info == conntrack.CtRelated && ref.Conn != nil {
		// init_conntrack runs the expectation's expectfn:
		// nf_nat_follow_master; a failure shows at confirm
		if x := ref.Conn.TakeExpectation(); x != nil {
			_ = k.e.NAT.FollowMaster(ref.Conn, x, k.env.now)
		}
	}
	return true
}

// natHook is the NAT core's hook (nf_nat_ipv4_fn / nf_nat_inet_fn): the
// nat table's chain runs only for a new (or related) connection whose
// manip is not set up yet; established packets are rewritten from the
// connection's tuples.
func (k *pkt) natHook(h netfilter.Hook, m nat.Manip, in, out string) bool {
	c := k.ct.Conn
	if c == nil || !k.cfg.natOn {
		return true
	}
	info := k.ct.Info
	if (info == conntrack.CtRelated || info == conntrack.CtRelatedReply) && k.p.Proto == packet.ProtoICMP && packet.IsICMPError(k.p.ICMPType) {
		if !nat.TranslateICMPError(k.p, k.ct, m) {
			k.drop(DropNATICMP, 0, "")
			return false
		}
		return true
	}
	// nf_nat_oif_changed: a masqueraded connection whose packets now
	// leave by another device is killed and the packet dropped (its
	// source address belongs to the old device)
	if h == netfilter.PostRouting && c.NAT.MasqIndex != 0 && info.Dir() == conntrack.Original && nat.Initialized(c, m) &&
		k.cfg.FIB != nil && int32(k.outIndex(out)) != c.NAT.MasqIndex {
		k.e.CT.Delete(c)
		k.drop(DropNAT, 0, "MASQUERADE: output device changed")
		return false
	}
	if info == conntrack.CtNew || info == conntrack.CtRelated || info == conntrack.CtRelatedReply {
		if !nat.Initialized(c, m) {
			v, rc := k.runTable(iptables.Nat, h, in, out)
			if !k.verdictOK(v, rc, iptables.Nat, h) {
				return false
			}
			if !nat.Initialized(c, m) {
				if rc != nil && rc.NAT != nil {
					if !k.bind(rc.NAT, m, in, out) {
						return false
					}
				} else if err := k.e.NAT.NullBinding(c, m, k.env.now); err != nil {
					k.drop(DropNAT, 0, err.Error())
					return false
				}
			}
		}
	}
	if !nat.Translate(k.p, k.ct, m) {
		k.drop(DropNATTruncated, 0, "")
		return false
	}
	return true
}

// bind resolves a NAT target's request into a range and sets it up.
func (k *pkt) bind(req *iptables.NATRequest, m nat.Manip, in, out string) bool {
	r := nat.Range{Flags: req.Range.Flags, MinIP: req.Range.MinAddr, MaxIP: req.Range.MaxAddr,
		MinPort: req.Range.MinPort, MaxPort: req.Range.MaxPort, BasePort: req.Range.BasePort}
	fib := k.cfg.FIB
	switch {
	case req.Masquerade:
		// nf_nat_masquerade_ipv4: the source of the packet's route
		if k.p.Src == 0 {
			return true
		}
		nh := k.p.Dst
		if k.rt.Gateway.IsValid() {
			nh = u32(k.rt.Gateway)
		}
		var src uint32
		oif := 0
		if fib != nil {
			oif = k.outIndex(out)
			src = fib.SelectSource4(oif, nh, route.ScopeUniverse)
		}
		if src == 0 {
			k.drop(DropMasqNoAddr, 0, out)
			return false
		}
		r.Flags |= nat.MapIPs
		r.MinIP, r.MaxIP = src, src
		// nat->masq_index (a confirmed entry binds nothing: Setup)
		if !k.ct.Conn.Confirmed() {
			k.ct.Conn.NAT.MasqIndex = int32(oif)
		}
	case req.Redirect:
		// nf_nat_redirect_ipv4: 127.0.0.1 for OUTPUT, else the first
		// address of the incoming device
		var a uint32 = 0x7f000001
		if in != "" && fib != nil {
			a = u32(fib.SelectSource(fib.Ifindex(in), netip.Addr{}, route.ScopeUniverse))
			if a == 0 {
				k.drop(DropRedirectNoAddr, 0, in)
				return false
			}
		}
		r.Flags |= nat.MapIPs
		r.MinIP, r.MaxIP = a, a
	case req.Netmap:
		// xt_NETMAP: keep the host part of the address being mapped
		orig := k.ct.Conn.Tuple(conntrack.Original)
		a := orig.Dst
		if m == nat.Src {
			a = orig.Src
		}
		newIP := a&^req.NetmapMask | req.Range.MinAddr&req.NetmapMask
		r.Flags |= nat.MapIPs
		r.MinIP, r.MaxIP = newIP, newIP
	}
	if err := k.e.NAT.Setup(k.ct.Conn, &r, m, k.env.now); err != nil {
		k.drop(DropNAT, 0, err.Error())
		return false
	}
	return true
}

// outIndex is the index of output device out: the route's device when
// out is its name (a forwarded packet's, whose out was made from it: a
// string compare of one string with itself), else looked up by name.
func (k *pkt) outIndex(out string) int {
	fib := k.cfg.FIB
	if fib.LinkName(k.rt.Dev) == out {
		return k.rt.Dev
	}
	return fib.Ifindex(out)
}

// confirm is the confirm hook at the end of INPUT/POSTROUTING.
func (k *pkt) confirm() bool {
	if k.ct.Conn == nil {
		return true
	}
	if k.ct.Conn.Helped() {
		// nf_confirm: the helper, then the sequence adjustment
		if v := k.e.CT.Help(k.p, k.ct, k.env.now); v != conntrack.Accept {
			k.drop(DropConntrack, uint32(v), "")
			return false
		}
	}
	ref, v := k.e.CT.Confirm(k.ct, k.env.now)
	if v != conntrack.Accept {
		k.drop(DropConntrack, uint32(v), "")
		return false
	}
	k.ct = ref
	return true
}

func (k *pkt) receive() {
	k.receive1()
	if k.rec {
		k.memoStore()
	}
}

func (k *pkt) receive1() {
	p := k.p
	in := p.InIf
	dst0 := p.Dst
	fib := k.cfg.FIB
	if fib != nil {
		// the reader's index, if it is this configuration's for the
		// name (a name compare, not a map lookup), else by name
		if k.iif = p.InIndex; k.iif == 0 || fib.LinkName(k.iif) != in {
			k.iif = fib.Ifindex(in)
		}
	}
	if !k.run(&hookState{hook: netfilter.PreRouting, in: in}) {
		return
	}
	k.rcvFinish(dst0)
}

// rcvFinish is ip_rcv_finish after the PREROUTING hook: the input
// route (unless the packet carries one), IP options, then delivery or
// forwarding. dst0 is the destination the packet came in with. A packet
// br_netfilter passed up from a bridge comes here directly: its
// PREROUTING ran when it was bridged (ip_sabotage_in).
func (k *pkt) rcvFinish(dst0 uint32) {
	// reassembly at PREROUTING may have put the datagram in the
	// fragment's place
	p := k.p
	fib := k.cfg.FIB
	// the input route, looked up after PREROUTING with the current
	// addresses and mark
	if fib == nil {
		k.drop(DropNoRouteConfig, 0, "")
		return
	}
	if k.hasDst && p.Dst == dst0 {
		// a looped-back packet keeps its output route (ip_rcv_finish
		// looks up only without a valid dst; NAT that changed daddr
		// dropped it)
		if p.IP.HeaderLen() > packet.IPv4MinHeaderLen && !k.rcvOptions() {
			return
		}
		k.input()
		return
	}
	if !k.replay {
		k.rt = fib.Input(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), TOS: p.IP.TOS(), IIF: k.iif, Mark: p.Mark,
			Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort})
	}
	k.pathRoute("input", &k.rt)
	if k.rt.Err != 0 {
		// an error route (ip_error: no route, unreachable, prohibit)
		// has its options compiled first (options.go)
		if errorRoute(&k.rt) && p.IP.HeaderLen() > packet.IPv4MinHeaderLen && !k.rcvOptions() {
			return
		}
		k.drop(DropRoute, uint32(k.rt.Err), "")
		// ip_error (net/ipv4/route.c): the error route answers with
		// an ICMP unreachable when forwarding is on (no INPUT hook)
		if k.cfg.IPForward {
			code := -1
			switch k.rt.Err {
			case syscall.ENETUNREACH:
				code = 0
			case syscall.EHOSTUNREACH:
				code = 1
			case syscall.EACCES:
				code = 13
			}
			// ip_error spends the sender's peer tokens first
			// (error_cost out of error_burst)
			if code >= 0 && k.ipErrorAllow(p.Src) {
				k.icmpError(packet.ICMPDestUnreach, uint8(code))
			}
		}
		return
	}
	// ip_rcv_options, after the input route (options.go)
	if p.IP.HeaderLen() > packet.IPv4MinHeaderLen && !k.rcvOptions() {
		return
	}
	switch k.rt.Type {
	case route.Local, route.Broadcast, route.Multicast:
		k.input()
	default:
		k.forward()
	}
}

func (k *pkt) input() {
	// ip_local_deliver reassembles before INPUT
	if k.p.IP.IsFragment() && !k.gather(ipfrag.LocalDeliver) {
		return
	}
	if !k.run(&hookState{hook: netfilter.LocalIn, in: k.p.InIf}) {
		return
	}
	k.fate.Kind = Delivered
	if !k.cfg.HostStack {
		k.answer()
	}
}

func (k *pkt) forward() {
	p := k.p
	in := p.InIf
	out := k.cfg.FIB.LinkName(k.rt.Dev)
	// ip_forward: TTL is checked and decremented before the FORWARD hook
	if p.IP.TTL() <= 1 {
		k.drop(DropTTL, 0, "")
		k.icmpError(packet.ICMPTimeExceeded, 0)
		return
	}
	if k.opt.SRR != 0 && k.srFailed() {
		return
	}
	// ip_exceeds_mtu: too big with DF goes back as fragmentation needed
	if mtu := k.cfg.FIB.MTU(k.rt.Dev); mtu > 0 && k.exceedsMTU(mtu) {
		k.drop(DropFragNeeded, uint32(mtu), "")
		k.icmpSend(packet.ICMPDestUnreach, 4, uint32(mtu))
		return
	}
	p.SetTTL(p.IP.TTL() - 1)
	// IPSKB_DOREDIRECT: ip_rt_send_redirect before the FORWARD hook
	// (not for a source routed packet); the packet is forwarded all the
	// same
	if k.rt.Redirect && k.opt.SRR == 0 {
		k.sendRedirect()
	}
	st := hookState{hook: netfilter.Forward, in: in, out: out}
	if !k.run(&st) {
		return
	}
	if k.opt.OptLen != 0 {
		k.forwardOptions() // ip_forward_finish (options.go)
	}
	// st.out: a reply rerouted by IPVS may leave by another device
	k.postrouting(in, st.out, Forwarded)
}

func (k *pkt) postrouting(in, out string, kind FateKind) {
	if !k.run(&hookState{hook: netfilter.PostRouting, in: in, out: out}) {
		return
	}
	if !k.finishOutput(out) {
		return
	}
	k.fate.Kind = kind
	k.fate.OutIf = out
	if k.cfg.FIB != nil && k.cfg.FIB.LinkName(k.rt.Dev) == out {
		k.fate.OutIndex = k.rt.Dev
	}
	// ip_finish_output2: the neighbour is the route's gateway, or the
	// destination itself on a link (IPVS-DR: the real server)
	switch {
	case k.nh != 0:
		k.fate.NextHop = k.nh
	case k.rt.Gateway.IsValid():
		k.fate.NextHop = u32(k.rt.Gateway)
	default:
		k.fate.NextHop = k.p.Dst
	}
	if kind == Sent && k.cfg.FIB != nil && k.rt.Dev == k.cfg.FIB.Loopback() {
		k.loopback()
		return
	}
	// out of a bridge device: its frames (bridge.go)
	if b := k.e.bridgeNamed(out); b != nil {
		k.bridgeOutput(b)
	}
}

// loopback is loopback_xmit -> netif_rx: a local packet routed to lo
// comes back in through PREROUTING with IN=lo, keeping its conntrack
// (nf_conntrack_in ignores a packet that already has one), mark and
// nf_trace; it is a new sk_buff for the trace (a new trace id). It
// stays on the packet's configuration, whatever a Swap installed since.
func (k *pkt) loopback() {
	q := k.e.newPkt(k.p, k.env.now, k.tr, k.w)
	q.cfg, q.env.fib = k.cfg, k.cfg.FIB
	q.ct, q.rt, q.hasDst = k.ct, k.rt, true
	q.ipvsDone = k.ipvsDone
	q.p.Local = false
	q.p.InIf, q.p.OutIf = "lo", ""
	q.pathStart("loopback", k.trace)
	q.receive()
	q.pathEnd()
	k.fate = q.fate
	if q.tr == nil {
		// nothing refers to q any more (a tracer would: it keeps the
		// last pkt it traced); back to the pool with its scratch
		k.e.putPkt(q)
	}
}

func (k *pkt) send() {
	fib := k.cfg.FIB
	if fib == nil {
		k.drop(DropNoRouteConfig, 0, "")
		return
	}
	k.rt = k.outputRoute()
	k.pathRoute("output", &k.rt)
	if k.rt.Err != 0 {
		k.drop(DropRoute, uint32(k.rt.Err), "")
		return
	}
	k.localOut(Sent)
}

// localOut runs the OUTPUT hook and POSTROUTING for a packet with its
// output route in k.rt (__ip_local_out): the host's own packets and the
// ones IPVS re-injects. The OUTPUT stages may reroute it (mangle, nat).
func (k *pkt) localOut(kind FateKind) {
	fib := k.cfg.FIB
	if !k.run(&hookState{hook: netfilter.LocalOut, out: fib.LinkName(k.rt.Dev)}) {
		return
	}
	k.postrouting("", fib.LinkName(k.rt.Dev), kind)
}

// outputRoute is the output route of the packet as it is now.
func (k *pkt) outputRoute() route.Result {
	p := k.p
	fl := route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), TOS: p.IP.TOS(), Mark: p.Mark,
		Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort, UID: p.UID}
	r := k.cfg.FIB.Output(&fl)
	if r.Err == syscall.ENETUNREACH && k.anySrc && p.Src != 0 {
		// FLOWI_FLAG_ANYSRC skips the "source is ours" check
		// (ip_route_output_key_hash_rcu); the route is the one for
		// the destination
		fl.Src = netip.Addr{}
		r = k.cfg.FIB.Output(&fl)
	}
	return r
}

func (k *pkt) reroute() bool {
	k.rt = k.outputRoute()
	k.pathRoute("reroute", &k.rt)
	if k.rt.Err != 0 {
		k.drop(DropRoute, uint32(k.rt.Err), "")
		return false
	}
	return true
}
