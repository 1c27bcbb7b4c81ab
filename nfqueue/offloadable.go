package nfqueue

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/conntrack"
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

// offloadBlocker is why rs keeps every connection queued: the first
// rule, in a table every packet traverses (raw, mangle, filter,
// security: not nat, which only a connection's first packet sees, so
// kube-proxy's statistic draws there are per connection), of a chain
// some hook reaches, with a per-packet match or target; "" when there
// is none, and where the rule is. The decision is per rule set,
// conservative: a connection that would never reach that rule stays
// queued too.
func offloadBlocker(rs *iptables.Ruleset) (reason, where string) {
	if rs == nil {
		return "", ""
	}
	for _, id := range []iptables.TableID{iptables.Raw, iptables.Mangle, iptables.Filter, iptables.Security} {
		t := rs.Tables[id]
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			if c.Reach == 0 {
				continue
			}
			for i, r := range c.Rules {
				for _, m := range r.Matches {
					if perPacketMatches[m.Name()] {
						return "match:" + m.Name(), fmt.Sprintf("%s %s rule %d", id, c.Name, i+1)
					}
				}
				if r.Target != nil && perPacketTargets[r.Target.Name()] {
					return "target:" + r.Target.Name(), fmt.Sprintf("%s %s rule %d", id, c.Name, i+1)
				}
			}
		}
	}
	return "", ""
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
}

// natted reports whether the reply tuple is not the original's inverse.
func (f *flowReq) natted() bool {
	o, r := f.Orig, f.Reply
	return r.Src != o.Dst || r.Dst != o.Src || r.SrcPort != o.DstPort || r.DstPort != o.SrcPort
}
