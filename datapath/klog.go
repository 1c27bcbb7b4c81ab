package datapath

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
	"github.com/uswitch-lab/uswitch/trace"
)

// The kernel log and the NFLOG groups of a running engine: what the
// kernel writes with printk for -j LOG (nf_log_syslog.c), for
// iptables-legacy's TRACE (ip_tables.c trace_packet) and for ebtables
// --log (ebt_log.c), and what nfnetlink_log sends a group's listener for
// -j NFLOG and ebtables --nflog. The lines are those of `uswitch trace
// --format log` (tracelog.go formats both).
//
//	LOG / NFLOG target ──Ctx.Logger──> (*pkt).Log / NFLog ─┐
//	traced packet: liveTrace (TRACE lines) ────────────────┼─> KernelLog ─> ring (dmesg)
//	ebtables watchers (ebtStage) ──────────────────────────┘            └─> listeners (dmesg -w,
//	                                                                         tcpdump -i nflog:N)
//
// Cost: an engine without a KernelLog does nothing new. With one, a
// table run loads one pointer and sets Ctx.Logger; a LOG rule that
// fires formats its line (allocating it) and takes the log's lock; an
// NFLOG rule builds a record only while its group has a listener, as
// nfulnl_log_packet does nothing for a group without an instance.
// Legacy TRACE lines need the rules a traced packet crosses: a table
// with a -j TRACE rule, and every table once the packet is traced, run
// with a small tracer (liveTrace) that prints only for traced packets.

// LogRing is how many lines the kernel log keeps for `uswitch log`
// without -f (the kernel's ring is counted in bytes; uswitch counts
// lines).
const LogRing = 2048

// LogEntry is one kernel log line: the engine's clock when it was
// written (nanoseconds) and the line as dmesg prints it after the
// timestamp.
type LogEntry struct {
	Time int64
	Line string
}

// NFLogEntry is one NFLOG record for a listener: the wall-clock time it
// was made (a pcap record's timestamp, as libpcap stamps what it
// receives) and the record (trace.AppendNFLog's bytes, the receiver's
// own).
type NFLogEntry struct {
	Time   time.Time
	Record []byte
}

// KernelLog is an engine's kernel log (a ring of recent lines and the
// listeners of new ones) and its NFLOG groups' listeners. Install it
// with Engine.SetKernelLog. Safe for concurrent use.
type KernelLog struct {
	mu sync.Mutex // guards ring, next, n and subs
	// ring holds the last len(ring) lines; next is where the next one
	// goes, n how many it holds
	ring    []LogEntry
	next, n int
	subs    map[chan LogEntry]struct{}
	// dropped: lines and records a slow listener had no room for
	dropped atomic.Uint64
	written atomic.Uint64

	nmu   sync.Mutex // guards nsubs and gcount
	nsubs map[*nflogSub]struct{}
	// gcount counts the listeners per group; groups has a group's bit
	// set while it has one (read without the lock per NFLOG hit)
	gcount map[uint16]int
	groups [1 << 16 / 64]atomic.Uint64
}

type nflogSub struct {
	group uint16
	ch    chan NFLogEntry
}

// NewKernelLog makes an empty kernel log keeping LogRing lines.
func NewKernelLog() *KernelLog {
	return &KernelLog{ring: make([]LogEntry, LogRing), subs: map[chan LogEntry]struct{}{},
		nsubs: map[*nflogSub]struct{}{}, gcount: map[uint16]int{}}
}

// SetKernelLog installs the engine's kernel log (nil: none, the
// default; LOG rules are then only counted).
func (e *Engine) SetKernelLog(l *KernelLog) { e.klog.Store(l) }

// KernelLog is the engine's kernel log (nil: none).
func (e *Engine) KernelLog() *KernelLog { return e.klog.Load() }

// printk writes a line: into the ring, and to every listener with room.
func (l *KernelLog) printk(now int64, line string) {
	e := LogEntry{Time: now, Line: line}
	l.mu.Lock()
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	for ch := range l.subs {
		select {
		case ch <- e:
		default:
			l.dropped.Add(1)
		}
	}
	l.mu.Unlock()
	l.written.Add(1)
}

// Lines returns the lines the ring holds, oldest first (dmesg).
func (l *KernelLog) Lines() []LogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.linesLocked()
}

func (l *KernelLog) linesLocked() []LogEntry {
	out := make([]LogEntry, 0, l.n)
	start := (l.next - l.n + len(l.ring)) % len(l.ring)
	for i := range l.n {
		out = append(out, l.ring[(start+i)%len(l.ring)])
	}
	return out
}

// Subscribe returns the lines the ring holds and a channel of the lines
// written after them, none lost or repeated in between (dmesg -w);
// lines a slow reader has no room for are dropped and counted. cancel
// stops it.
func (l *KernelLog) Subscribe(buffer int) (old []LogEntry, lines <-chan LogEntry, cancel func()) {
	ch := make(chan LogEntry, buffer)
	l.mu.Lock()
	old = l.linesLocked()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return old, ch, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.subs, ch)
			l.mu.Unlock()
		})
	}
}

// Listeners is how many kernel log listeners are attached.
func (l *KernelLog) Listeners() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

// SubscribeNFLog makes the caller a listener of NFLOG group (binding
// it, as tcpdump -i nflog:N does): the records of the packets NFLOG
// rules of that group hand the log from now on, with the payload a
// listener asking for the most gets (trace.NFCopyRangeMax, or the
// rule's --nflog-size). Several listeners of one group each get every
// record (the kernel allows one). cancel stops it.
func (l *KernelLog) SubscribeNFLog(group uint16, buffer int) (records <-chan NFLogEntry, cancel func()) {
	s := &nflogSub{group: group, ch: make(chan NFLogEntry, buffer)}
	l.nmu.Lock()
	l.nsubs[s] = struct{}{}
	l.gcount[group]++
	l.groups[group/64].Or(1 << (group % 64))
	l.nmu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			l.nmu.Lock()
			delete(l.nsubs, s)
			if l.gcount[group]--; l.gcount[group] == 0 {
				delete(l.gcount, group)
				l.groups[group/64].And(^uint64(1 << (group % 64)))
			}
			l.nmu.Unlock()
		})
	}
}

// NFLogListening reports whether group has a listener.
func (l *KernelLog) NFLogListening(group uint16) bool {
	return l.groups[group/64].Load()&(1<<(group%64)) != 0
}

// nflog sends a record to group's listeners.
func (l *KernelLog) nflog(group uint16, r *trace.NFLogRecord) {
	rec := trace.AppendNFLog(nil, r)
	e := NFLogEntry{Time: time.Now(), Record: rec}
	l.nmu.Lock()
	for s := range l.nsubs {
		if s.group != group {
			continue
		}
		select {
		case s.ch <- e:
		default:
			l.dropped.Add(1)
		}
	}
	l.nmu.Unlock()
}

// Dropped is how many lines and records slow listeners missed.
func (l *KernelLog) Dropped() uint64 { return l.dropped.Load() }

// Written is how many lines the log has had.
func (l *KernelLog) Written() uint64 { return l.written.Load() }

// logInfoOf is what nf_log knows of p at a hook with devices in and
// out: the input device's link header and the sending socket.
func logInfoOf(p *packet.Packet, in, out, prefix string, flags uint8) trace.LogInfo {
	li := trace.LogInfo{Prefix: prefix, Flags: flags, In: in, Out: out,
		PhysIn: p.PhysIn, PhysOut: p.PhysOut, Mark: p.Mark}
	switch {
	case in == "lo":
		li.MAC = trace.LoopbackMAC
	case in != "" && len(p.L2) >= 14:
		li.MAC, li.Ether = p.L2[:14], true
	}
	// skb->sk of a process's packet, until loopback orphans it
	if in == "" && p.HasSocket {
		li.HasSocket, li.UID, li.GID = true, p.UID, p.GID
	}
	return li
}

// Log implements iptables.Logger: a LOG rule's line (nf_log_ip_packet).
func (k *pkt) Log(c *iptables.Ctx, t *iptables.LogTarget) {
	if k.kl == nil {
		return
	}
	li := logInfoOf(k.p, k.p.InIf, k.p.OutIf, t.Prefix, t.Flags)
	k.kl.printk(k.env.now, trace.LogLine(&li, k.p.IP))
}

// NFLog implements iptables.Logger: an NFLOG rule's record for its
// group's listeners (nfulnl_log_packet with NF_LOG_TYPE_ULOG).
func (k *pkt) NFLog(c *iptables.Ctx, t *iptables.NFLogTarget) {
	if k.kl == nil || !k.kl.NFLogListening(t.Group) {
		return
	}
	p := k.p
	in, out := p.InIf, p.OutIf
	fib := k.cfg.FIB
	r := trace.NFLogRecord{Family: trace.NFProtoIPv4, Group: t.Group, HWProtocol: packet.EtherTypeIPv4,
		Hook: uint8(c.Hook), Prefix: t.Prefix, HasPrefix: true, Mark: p.Mark}
	if fib != nil {
		r.InDev, r.OutDev = ifindex(fib, in), ifindex(fib, out)
		if p.PhysIn != "" && in != "" {
			r.PhysInDev = ifindex(fib, p.PhysIn)
		}
		if p.PhysOut != "" && out != "" {
			r.PhysOutDev = ifindex(fib, p.PhysOut)
		}
	}
	if in != "" {
		// a received packet's MAC header is set: a TUN device's is
		// empty (ARPHRD_NONE), lo's and an Ethernet device's are 14
		// bytes, whose source dev_parse_header reports
		switch {
		case in == "lo":
			r.HasHW, r.HWType, r.HWHeader = true, trace.ARPHRDLoopback, trace.LoopbackMAC
			r.HWAddr = trace.LoopbackMAC[6:12]
		case len(p.L2) >= 14:
			r.HasHW, r.HWType, r.HWHeader = true, trace.ARPHRDEther, p.L2[:14]
			r.HWAddr = p.L2[6:12]
		default:
			r.HasHW, r.HWType = true, trace.ARPHRDNone
		}
	}
	nflogTime(&r, uint8(c.Hook))
	if in == "" && p.HasSocket {
		r.HasUID, r.UID, r.GID = true, p.UID, p.GID
	}
	ip := p.IP
	if len(ip) >= packet.IPv4MinHeaderLen {
		if tl := int(ip[2])<<8 | int(ip[3]); tl >= packet.IPv4MinHeaderLen && tl < len(ip) {
			ip = ip[:tl]
		}
	}
	r.Payload = ip[:nflogCopyLen(t.CopyLen, t.Size, len(ip))]
	k.kl.nflog(t.Group, &r)
}

// nflogCopyLen is nfulnl_log_packet's data_len for a listener that asks
// for the most (NFULNL_COPY_PACKET, NFULNL_COPY_RANGE_MAX) and a rule
// with (copyLen) or without a copy length.
func nflogCopyLen(copyLen bool, size uint32, skbLen int) int {
	n := trace.NFCopyRangeMax
	if copyLen && int64(size) < int64(n) {
		n = int(size)
	}
	return min(n, skbLen)
}

// nflogTime sets NFULA_TIMESTAMP: hooks up to FORWARD carry the time
// (skb->tstamp, which is not set here, so the current time).
func nflogTime(r *trace.NFLogRecord, hook uint8) {
	if hook > 2 {
		return
	}
	now := time.Now()
	r.HasTime, r.Sec, r.Usec = true, now.Unix(), int64(now.Nanosecond()/1000)
}

func ifindex(fib *route.FIB, name string) uint32 {
	if name == "" {
		return 0
	}
	return uint32(fib.Ifindex(name))
}

// liveTrace writes iptables-legacy's TRACE lines of a traced packet to
// the kernel log (tracelog.go has the rules); it prints nothing for a
// packet without nf_trace.
type liveTrace struct {
	k       *pkt
	in, out string
}

func (l *liveTrace) line(tab *iptables.Table, c *iptables.Chain, kind string, num int) {
	li := logInfoOf(l.k.p, l.in, l.out, trace.LegacyTracePrefix(tab.ID.String(), c.Name, kind, num), trace.LogDefaultMask)
	l.k.kl.printk(l.k.env.now, trace.LogLine(&li, l.k.p.IP))
}

// Target implements iptables.TargetTracer.
func (l *liveTrace) Target(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	if l.k.p.Trace {
		l.line(tab, c, "rule", ruleNum(c, r))
	}
}

// Rule implements iptables.Tracer.
func (l *liveTrace) Rule(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule, v iptables.TVerdict, jump *iptables.Chain, gotoFlag bool) {
	if r.Target == nil && l.k.p.Trace {
		kind, num := legacyKind(c, r)
		l.line(tab, c, kind, num)
	}
}

// Return implements iptables.Tracer.
func (l *liveTrace) Return(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	if r == nil && l.k.p.Trace {
		l.line(tab, c, "return", len(c.Rules)+1)
	}
}

// Policy implements iptables.Tracer.
func (l *liveTrace) Policy(tab *iptables.Table, c *iptables.Chain, v iptables.TVerdict) {
	if l.k.p.Trace {
		l.line(tab, c, "policy", len(c.Rules)+1)
	}
}

// teeTracer runs a table with the engine's Tracer and liveTrace.
type teeTracer struct {
	a *Tracer
	b *liveTrace
}

func (t *teeTracer) Target(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	t.a.Target(tab, c, r)
	t.b.Target(tab, c, r)
}

func (t *teeTracer) Rule(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule, v iptables.TVerdict, jump *iptables.Chain, gotoFlag bool) {
	t.a.Rule(tab, c, r, v, jump, gotoFlag)
	t.b.Rule(tab, c, r, v, jump, gotoFlag)
}

func (t *teeTracer) Return(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	t.a.Return(tab, c, r)
	t.b.Return(tab, c, r)
}

func (t *teeTracer) Policy(tab *iptables.Table, c *iptables.Chain, v iptables.TVerdict) {
	t.a.Policy(tab, c, v)
	t.b.Policy(tab, c, v)
}

// ebtLog writes what an ebtables traversal's watchers asked for: each
// --log's line (ebt_log_packet) and each --nflog's record for its
// group's listeners (ebt_nflog_tg: family NFPROTO_BRIDGE, the ports as
// PHYS devices beside their bridge, no copy length).
func (e *Engine) ebtLog(kl *KernelLog, fib *route.FIB, x *ebtables.Ctx, fr *packet.Frame, bridge string, now int64) {
	for i := range x.NLogs {
		lr := &x.Logs[i]
		switch w := lr.Watcher.(type) {
		case *ebtables.LogWatcher:
			kl.printk(now, trace.EbtLogLine(ebtLogInfo(w, lr.In, lr.Out), fr))
		case *ebtables.NFLogWatcher:
			if !kl.NFLogListening(w.Group) {
				continue
			}
			r := trace.NFLogRecord{Family: trace.NFProtoBridge, Group: w.Group, HWProtocol: fr.InnerProto,
				Hook: uint8(lr.Hook), Prefix: w.Prefix, HasPrefix: true, Mark: x.Mark}
			if fib != nil {
				if lr.In != "" {
					r.PhysInDev, r.InDev = ifindex(fib, lr.In), ifindex(fib, bridge)
				}
				if lr.Out != "" {
					r.PhysOutDev, r.OutDev = ifindex(fib, lr.Out), ifindex(fib, bridge)
				}
			}
			if len(fr.Data) >= 14 {
				if lr.In != "" {
					r.HasHW, r.HWType, r.HWHeader, r.HWAddr = true, trace.ARPHRDEther, fr.Data[:14], fr.Data[6:12]
				}
				r.L2Hdr = fr.Data[:14]
			}
			nflogTime(&r, uint8(lr.Hook))
			r.Payload = fr.Payload[:nflogCopyLen(false, 0, len(fr.Payload))]
			kl.nflog(w.Group, &r)
		}
	}
}

// ebtLogInfo is the log line's information of a --log watcher.
func ebtLogInfo(w *ebtables.LogWatcher, in, out string) *trace.EbtLogInfo {
	li := &trace.EbtLogInfo{Prefix: w.Prefix, In: in, Out: out}
	if w.IP {
		li.Flags |= trace.EbtLogIP
	}
	if w.ARP {
		li.Flags |= trace.EbtLogARP
	}
	if w.IP6 {
		li.Flags |= trace.EbtLogIP6
	}
	return li
}
