package ebtables

import (
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// Match is a match extension of a rule (ebt_*.c match functions):
// compiled at load, asked per frame. match never panics on frame
// contents: short or malformed headers do not match, as the kernel's
// skb_header_pointer failures do not.
type Match interface {
	Name() string
	save(b *strings.Builder)
	match(c *Ctx) bool
}

// Watcher is log or nflog: it runs after the rule matched and before
// the target, and never changes the verdict (ebt_do_table).
type Watcher interface {
	Name() string
	save(b *strings.Builder)
	watch(c *Ctx, r *Rule)
}

// Target is an extension target; it returns the verdict its
// --X-target option chose.
type Target interface {
	Name() string
	save(b *strings.Builder)
	target(c *Ctx, h Hook) Verdict
}

// PktType is skb->pkt_type (include/uapi/linux/if_packet.h).
type PktType uint8

// The packet types ebtables knows.
const (
	PacketHost      PktType = 0
	PacketBroadcast PktType = 1
	PacketMulticast PktType = 2
	PacketOtherHost PktType = 3
	PacketOutgoing  PktType = 4
	PacketLoopback  PktType = 5
)

// Env answers what targets need from the bridge: redirect and dnat need
// the MAC of the bridge a port belongs to, and broute's redirect the
// port's own MAC (ebt_redirect.c, ebt_dnat.c).
type Env interface {
	// PortMAC is the MAC of the bridge port named port.
	PortMAC(port string) (packet.MAC, bool)
	// BridgeMAC is the MAC of the bridge that port belongs to.
	BridgeMAC(port string) (packet.MAC, bool)
}

// LogRequest is a log or nflog watcher that fired; the caller formats
// and sends it (nf_log_packet). Watcher is a *LogWatcher or an
// *NFLogWatcher of the rule.
type LogRequest struct {
	Watcher Watcher
	Hook    Hook
	In, Out string
}

// MaxLogs bounds the log requests one traversal records; later ones are
// counted in Ctx.LogsDropped.
const MaxLogs = 8

// Ctx is one frame at one hook: the frame and its metadata in, the
// effects of targets out. The caller owns it and may reuse it (Reset);
// the evaluator allocates nothing.
type Ctx struct {
	// Frame is the decoded frame; dnat, snat and redirect rewrite its
	// MACs in Frame.Data (and Frame.Dst/Src) in place.
	Frame *packet.Frame
	// In and Out are the bridge ports ("" when there is none: no input
	// port on OUTPUT/POSTROUTING, no output port before FORWARD).
	In, Out string
	// LogicalIn and LogicalOut are the bridges of In and Out.
	LogicalIn, LogicalOut string
	// Mark is skb->mark, shared with iptables; the mark target sets it.
	Mark uint32
	// PktType is skb->pkt_type; redirect and dnat update it.
	PktType PktType
	// Now is a monotonic time in nanoseconds, for --limit.
	Now int64
	// Env is asked by redirect and dnat; nil means no MAC known (the
	// frame is left as it is and the target's verdict applies).
	Env Env

	// Linear walks every chain rule by rule, without the compiled
	// classifier (the reference the classifier is tested against).
	Linear bool

	hook Hook // the chain's hook during a traversal
	// stack is the traversal's jump stack (ebt_do_table's per-cpu
	// chainstack)
	stack [maxDepth]frameRet

	// Route is set by the broute table when the frame is to be routed
	// (passed up on the port device) instead of bridged.
	Route bool
	// Reply holds an ARP reply the arpreply target made (ReplyLen bytes,
	// 0 when none), to be sent out of In.
	Reply    [42]byte
	ReplyLen int
	// Logs are the watchers that fired, in order.
	Logs        [MaxLogs]LogRequest
	NLogs       int
	LogsDropped int
	// Tracer, when set, sees the traversal rule by rule (nft's trace
	// events of a traced frame); nil costs nothing.
	Tracer Tracer
}

// Tracer receives a traversal's events: a rule that matched with its
// verdict (jump names the user chain of a jump), a chain's policy, and
// falling off the end of a user chain. rule counts from 1 in its chain.
type Tracer interface {
	Rule(t TableID, chain string, rule int, v Verdict, jump string)
	Policy(t TableID, chain string, v Verdict)
	Return(t TableID, chain string)
}

// Reset clears the outputs of a previous traversal.
func (c *Ctx) Reset() {
	c.Route = false
	c.ReplyLen = 0
	c.NLogs = 0
	c.LogsDropped = 0
}

// netHeader is what the kernel's skb_header_pointer(skb, 0, ...) reads at
// the bridge hooks: the bytes after the 14-byte MAC header (for a
// frame with an in-band 802.1Q tag, the tag).
func (c *Ctx) netHeader() []byte {
	d := c.Frame.Data
	if len(d) < packet.EtherHeaderLen {
		return nil
	}
	return d[packet.EtherHeaderLen:]
}

func (c *Ctx) log(w Watcher, h Hook) {
	if c.NLogs >= MaxLogs {
		c.LogsDropped++
		return
	}
	c.Logs[c.NLogs] = LogRequest{Watcher: w, Hook: h, In: c.In, Out: c.Out}
	c.NLogs++
}
