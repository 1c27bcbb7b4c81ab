package datapath

import (
	"strconv"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/trace"
)

// TraceFormat chooses the lines a Tracer collects.
type TraceFormat uint8

const (
	// FormatMonitor is what `xtables-monitor --trace` prints for
	// iptables-nft (the trace package's PACKET and TRACE lines).
	FormatMonitor TraceFormat = iota
	// FormatLog is what the kernel writes to its log (dmesg without the
	// timestamp): the line of every LOG rule a packet hits, traced or
	// not, and for a traced packet iptables-legacy's TRACE lines
	// ("TRACE: raw:PREROUTING:rule:1 IN=..."); see tracelog.go.
	FormatLog
)

// Tracer collects the xtables-monitor-style trace lines of the packets
// marked for tracing (skb->nf_trace, set by -j TRACE), or of every packet
// with All; with Format FormatLog, the kernel log's lines instead. It
// also remembers which rule dropped a packet, for the fate.
type Tracer struct {
	All    bool
	Format TraceFormat
	Lines  []string

	// Record collects Path: the path events (path.go) of the packets
	// it traces (All, nf_trace) and, with PathAll, of every packet it
	// sees, without their lines.
	Record, PathAll bool
	Path            []PathEvent
	// keep: a packet of the current call was traced (path.go)
	keep bool

	// per base-chain traversal
	k       *pkt
	c       *iptables.Ctx
	in, out string
	printed bool
	// held are the lines of a REJECT rule's event: the kernel emits a
	// rule's trace event after its target ran, and REJECT sends its
	// answer from inside the target, so the answer's events come first
	held []string

	// dropChain and dropRule are where the chain run's last DROP was:
	// the chain, and the rule's number (0: its policy)
	dropChain string
	dropRule  int32
}

func (t *Tracer) chain(k *pkt, c *iptables.Ctx, in, out string) iptables.Tracer {
	t.k, t.c, t.in, t.out, t.printed = k, c, in, out, false
	t.dropChain, t.dropRule = "", 0
	return t
}

func (t *Tracer) on() bool { return t.All || t.k.p.Trace }

// packet prints the PACKET line before the first event of a base chain's
// traversal: the kernel attaches the headers to that event only.
func (t *Tracer) packet() {
	if t.printed {
		return
	}
	t.printed = true
	loop := t.in == "lo"
	t.Lines = append(t.Lines, trace.PacketLine(t.k.trace, t.k.p, t.in, t.out, loop))
}

// flushHeld appends the held REJECT event after the answer's lines.
func (t *Tracer) flushHeld() {
	t.Lines = append(t.Lines, t.held...)
	t.held = nil
}

func ruleNum(c *iptables.Chain, r *iptables.Rule) int {
	for i, x := range c.Rules {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Rule implements iptables.Tracer.
func (t *Tracer) Rule(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule, v iptables.TVerdict, jump *iptables.Chain, gotoFlag bool) {
	if v == iptables.TDrop {
		t.dropChain, t.dropRule = c.Name, int32(ruleNum(c, r))
	}
	if t.Record {
		w := v.String()
		if jump != nil {
			w = trace.JumpVerdict(gotoFlag, jump.Name)
		}
		if r.Target != nil {
			w = r.Target.Name() + " " + w
		}
		t.pathRule(tab, c, ruleNum(c, r), w)
	}
	if t.Format == FormatLog {
		t.logRule(tab, c, r, v, jump)
		return
	}
	if !t.on() {
		return
	}
	var word string
	switch {
	case jump != nil:
		word = trace.JumpVerdict(gotoFlag, jump.Name)
	case v == iptables.TReturn:
		word = "0xfffffffb" // NFT_RETURN printed in hex by print_verdict
	case v == iptables.TQueue && t.c != nil && (t.c.QueueNum != 0 || t.c.QueueBypass):
		// the verdict is NF_QUEUE_NR(num) | NF_VERDICT_FLAG_QUEUE_BYPASS,
		// which print_verdict knows only without the queue bits: hex
		// (kernel 6.18: "rule:0x38003" for --queue-num 3 --queue-bypass)
		code := uint32(t.c.QueueNum)<<16 | 3
		if t.c.QueueBypass {
			code |= 0x8000
		}
		word = "0x" + strconv.FormatUint(uint64(code), 16)
	default:
		word = v.String()
	}
	info := t.k.cfg.info(r)
	line := trace.RuleLine(t.k.trace, tab.ID.String(), c.Name, info.handle, word, info.text)
	if v == iptables.TDrop && t.c != nil && t.c.Reject != nil {
		// the PACKET line goes with the event it belongs to
		n := len(t.Lines)
		t.packet()
		t.held = append(t.held, t.Lines[n:]...)
		t.held = append(t.held, line)
		t.Lines = t.Lines[:n]
		return
	}
	t.packet()
	t.Lines = append(t.Lines, line)
}

// Return implements iptables.Tracer. The kernel (6.18, checked with
// xtables-monitor) reports no event when a user chain is left: an
// explicit -j RETURN is only its rule event with the verdict 0xfffffffb
// (NFT_RETURN in hex), and falling off the end of a chain is silent.
func (t *Tracer) Return(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	if t.Format == FormatLog && r == nil && t.on() {
		// iptables-legacy: the user chain's tail entry (its implicit
		// RETURN rule) matched
		t.logTrace(tab, c, "return", len(c.Rules)+1)
	}
}

// Policy implements iptables.Tracer.
func (t *Tracer) Policy(tab *iptables.Table, c *iptables.Chain, v iptables.TVerdict) {
	if v == iptables.TDrop {
		t.dropChain, t.dropRule = c.Name, 0
	}
	t.pathRule(tab, c, 0, v.String())
	if !t.on() {
		return
	}
	if t.Format == FormatLog {
		t.logTrace(tab, c, "policy", len(c.Rules)+1)
		return
	}
	t.packet()
	t.Lines = append(t.Lines, trace.PolicyLine(t.k.trace, tab.ID.String(), c.Name, v.String()))
}
