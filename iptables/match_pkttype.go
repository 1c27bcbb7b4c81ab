package iptables

import (
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// pkttype match (extensions/libxt_pkttype.c; kernel
// net/netfilter/xt_pkttype.c, no checkentry).

// Packet types (PACKET_* in linux/if_packet.h).
const (
	PacketHost      = 0
	PacketBroadcast = 1
	PacketMulticast = 2
	PacketOtherHost = 3
)

// pktTypes is supported_types: names first, then the aliases.
var pktTypes = []struct {
	name string
	typ  uint8
}{
	{"unicast", PacketHost}, {"broadcast", PacketBroadcast},
	{"multicast", PacketMulticast}, {"otherhost", PacketOtherHost},
	{"bcast", PacketBroadcast}, {"mcast", PacketMulticast}, {"host", PacketHost},
}

// PktTypeMatch is "-m pkttype".
type PktTypeMatch struct {
	Type   uint8
	Invert bool
	given  bool
}

func (m *PktTypeMatch) Name() string { return "pkttype" }

func (m *PktTypeMatch) Parse(o *OptArg) error {
	for _, t := range pktTypes {
		if strings.EqualFold(o.Arg, t.name) {
			m.Type, m.given = t.typ, true
			if o.Invert {
				m.Invert = true
			}
			return nil
		}
	}
	return Errorf("Bad packet type '%s'", o.Arg)
}

func (m *PktTypeMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("pkttype", "pkt-type")
	}
	return nil
}

func (m *PktTypeMatch) Save(w *SaveWriter) {
	name := strconv.Itoa(int(m.Type))
	for _, t := range pktTypes {
		if t.typ == m.Type {
			name = t.name
			break
		}
	}
	w.InvOpt(m.Invert, "pkt-type", name)
}

func init() {
	RegisterMatch(&MatchSpec{Name: "pkttype", Options: []Option{
		{Name: "pkt-type", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &PktTypeMatch{} }})
}

// Eval is pkttype_mt (net/netfilter/xt_pkttype.c): skb->pkt_type, except
// that a looped-back packet counts as multicast when its destination is
// 224/4 and as broadcast otherwise.
func (m *PktTypeMatch) Eval(c *Ctx) bool {
	t := c.Pkt.PktType
	if t == packet.PktLoopback {
		t = PacketBroadcast
		if c.Pkt.Dst>>28 == 0xe {
			t = PacketMulticast
		}
	}
	return (t == m.Type) != m.Invert
}
