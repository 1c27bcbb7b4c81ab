package nfqueue

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
)

// perPacketMatches are the matches whose answer can change from one
// packet of a connection to the next (a draw, a rate, a count, the
// packet's bytes or header fields that vary within a flow, the clock):
// a connection whose packets meet one of them in a table every packet
// traverses needs uswitch for every packet.
var perPacketMatches = map[string]bool{
	"statistic": true, "limit": true, "hashlimit": true, "recent": true, "string": true,
	"length": true, "connbytes": true, "quota": true, "u32": true, "nfacct": true, "time": true,
	"ttl": true, "tos": true, "dscp": true, "ecn": true, "tcpmss": true,
}

// perPacketTargets are the targets that act on every packet they see
// (log it, trace it, count it, rewrite it, mark it): offloaded packets
// would pass the kernel without it.
var perPacketTargets = map[string]bool{
	"LOG": true, "NFLOG": true, "ULOG": true, "TRACE": true, "AUDIT": true, "MARK": true,
	"CONNMARK": true, "TOS": true, "TTL": true, "DSCP": true, "ECN": true, "TCPMSS": true,
	"CLASSIFY": true, "TEE": true, "SET": true, "CHECKSUM": true, "IDLETIMER": true, "LED": true,
	"NFQUEUE": true, "QUEUE": true, "SECMARK": true, "CONNSECMARK": true, "HMARK": true,
}

// Protocol classes of the offload analysis: which packets a rule can
// see. A TCP or UDP flow's packets are its own protocol's and the ICMP
// errors related to it (the kernel accepts those by the flow's connmark
// too).
const (
	protoTCP = 1 << iota
	protoUDP
	protoICMP
	protoOther
	protoAll = protoTCP | protoUDP | protoICMP | protoOther
)

func protoClass(p uint8) uint8 {
	switch p {
	case 6:
		return protoTCP
	case 17:
		return protoUDP
	case 1:
		return protoICMP
	}
	return protoOther
}

// ruleProtos is the protocol classes a rule's -p lets through.
func ruleProtos(ip *iptables.IPHeader) uint8 {
	switch {
	case ip.Proto == 0:
		return protoAll
	case ip.Inv&iptables.InvProto != 0:
		if c := protoClass(ip.Proto); c != protoOther {
			return protoAll &^ c
		}
		return protoAll
	}
	return protoClass(ip.Proto)
}

// blockers are, for TCP and UDP flows, why the rule set keeps them
// queued ("" = it does not) and where.
type blockers struct {
	reason, where [2]string
}

// of is the reason for a flow of protocol p (6 or 17).
func (b *blockers) of(p uint8) string {
	if p == 17 {
		return b.reason[1]
	}
	return b.reason[0]
}

// offloadBlockers finds why rs keeps TCP and UDP flows queued: the
// first rule of raw, mangle, filter or security (not nat, which only a
// connection's first packet traverses, so kube-proxy's statistic draws
// there are per connection), in a chain some hook reaches, with a
// match or target that acts per packet, that a packet of the flow can
// reach: its -p, and those of the jumps on the way to its chain, let
// the flow's protocol or ICMP through. The decision is per rule set
// and protocol, conservative: a flow that would never reach that rule
// for other reasons (addresses, interfaces, conntrack state) stays
// queued too.
func offloadBlockers(rs *iptables.Ruleset) (b blockers) {
	if rs == nil {
		return b
	}
	for _, id := range []iptables.TableID{iptables.Raw, iptables.Mangle, iptables.Filter, iptables.Security} {
		t := rs.Tables[id]
		if t == nil {
			continue
		}
		// the protocols that can reach each chain: a builtin chain
		// sees every packet, a user chain what its jumps pass, to a
		// fixed point (a jump can only narrow)
		reach := map[*iptables.Chain]uint8{}
		for _, c := range t.Chains {
			if c.Builtin && c.Reach != 0 {
				reach[c] = protoAll
			}
		}
		for changed := true; changed; {
			changed = false
			for _, c := range t.Chains {
				m := reach[c]
				if m == 0 {
					continue
				}
				for _, r := range c.Rules {
					if r.Jump == nil || (r.Verdict != iptables.VerdictJump && r.Verdict != iptables.VerdictGoto) {
						continue
					}
					if n := reach[r.Jump] | m&ruleProtos(&r.IP); n != reach[r.Jump] {
						reach[r.Jump], changed = n, true
					}
				}
			}
		}
		for _, c := range t.Chains {
			m := reach[c]
			if m == 0 {
				continue
			}
			for i, r := range c.Rules {
				why := ""
				for _, x := range r.Matches {
					if perPacketMatches[x.Name()] {
						why = "match:" + x.Name()
						break
					}
				}
				if why == "" && r.Target != nil && perPacketTargets[r.Target.Name()] {
					why = "target:" + r.Target.Name()
				}
				sees := m & ruleProtos(&r.IP)
				if why == "" {
					// a TCP flow's flags and options change from packet
					// to packet: --tcp-flags, --syn and --tcp-option
					// look at each one, unless the rule's conntrack
					// state lets only a connection's first packets in
					if b.reason[0] == "" && sees&protoTCP != 0 && tcpPerPacket(r) {
						b.reason[0], b.where[0] = "match:tcp-flags", fmt.Sprintf("%s %s rule %d", id, c.Name, i+1)
					}
					continue
				}
				for k, p := range [2]uint8{protoTCP, protoUDP} {
					if b.reason[k] == "" && sees&(p|protoICMP) != 0 {
						b.reason[k], b.where[k] = why, fmt.Sprintf("%s %s rule %d", id, c.Name, i+1)
					}
				}
			}
		}
	}
	return b
}

// tcpPerPacket reports whether r tests TCP flags or options on
// packets a connection's later packets can be among.
func tcpPerPacket(r *iptables.Rule) bool {
	flags := false
	for _, x := range r.Matches {
		switch m := x.(type) {
		case *iptables.TCPMatch:
			flags = flags || m.FlagMask != 0 || m.Option != 0
		case *iptables.ConntrackMatch:
			if m.FirstPacketsOnly() {
				return false
			}
		}
	}
	return flags
}

// flowReq is one flow to install in the kernel: uswitch's entry's
// original and reply tuples, and the TCP state the kernel's entry
// starts in.
type flowReq struct {
	Orig, Reply conntrack.Tuple
	TCPState    conntrack.TCPState
	// First: the connection's first packet (counted once when the
	// rule set keeps the connection queued); Install: install it now.
	First, Install bool
	// What the probes of a UDP flow's install need
	// (datapath.Engine.ProbeReply, ProbeOriginal): uswitch's entry (nil: its rule set
	// tracks nothing), the packet's fate and the device it came in by.
	conn        *conntrack.Conn
	kind        datapath.FateKind
	outIf, inIf string
}

// natted reports whether the reply tuple is not the original's inverse.
func (f *flowReq) natted() bool {
	o, r := f.Orig, f.Reply
	return r.Src != o.Dst || r.Dst != o.Src || r.SrcPort != o.DstPort || r.DstPort != o.SrcPort
}
