package route

import (
	"encoding/binary"
	"math/bits"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
)

// The multipath choice: fib_multipath_hash (net/ipv4/route.c) over the
// kernel's flow keys hashed as the flow dissector hashes them
// (net/core/flow_dissector.c __flow_hash_from_keys with the key
// fib_multipath_hash_from_keys builds from the seed, include/net/ip_fib.h),
// then fib_select_multipath (net/ipv4/fib_semantics.c).

// fib_multipath_hash_fields bits (include/net/ip_fib.h).
const (
	mpFieldSrcIP    = 1 << 0
	mpFieldDstIP    = 1 << 1
	mpFieldIPProto  = 1 << 2
	mpFieldSrcPort  = 1 << 4
	mpFieldDstPort  = 1 << 5
	mpFieldOuter    = 0x3f
	mpFieldsDefault = mpFieldSrcIP | mpFieldDstIP | mpFieldIPProto
)

// neighKey names a gateway's neighbour entry.
type neighKey struct {
	dev int
	gw  uint32
}

// The hashed part of struct flow_keys (include/net/flow_dissector.h) on
// a 64-bit kernel: from basic (FLOW_KEYS_HASH_OFFSET 8) to the IPv4
// addresses, flow_keys_hash_length = sizeof 80 - (8 + 32 - 8) = 48
// bytes: basic (n_proto, ip_proto, padding), tags, vlan, cvlan, keyid,
// ports, icmp, then addrs.v4addrs and the union's next bytes (zero).
const (
	fkLen     = 48
	fkIPProto = 2  // basic.ip_proto
	fkPorts   = 28 // ports.src, ports.dst (network order)
	fkAddrs   = 36 // addrs.v4addrs.src, .dst (network order)
)

// flowHash is fib_multipath_hash_from_keys of IPv4 keys: memset keys with
// the given fields, __flow_hash_consistentify (the addresses, and
// separately the ports, ordered as the CPU reads their network-order
// bytes, little-endian here), siphash under the seed's key, 0 made 1.
func (f *FIB) flowHash(src, dst uint32, proto uint8, sport, dport uint16) uint32 {
	if bits.ReverseBytes32(dst) < bits.ReverseBytes32(src) {
		src, dst = dst, src
	}
	if bits.ReverseBytes16(dport) < bits.ReverseBytes16(sport) {
		sport, dport = dport, sport
	}
	var k [fkLen]byte
	k[fkIPProto] = proto
	binary.BigEndian.PutUint16(k[fkPorts:], sport)
	binary.BigEndian.PutUint16(k[fkPorts+2:], dport)
	binary.BigEndian.PutUint32(k[fkAddrs:], src)
	binary.BigEndian.PutUint32(k[fkAddrs+4:], dst)
	h := uint32(kernhash.Siphash(k[:], f.mpKey))
	if h == 0 {
		h = 1
	}
	return h
}

// dissectedPorts are the ports the flow dissector finds in a packet:
// __skb_flow_get_ports reads them only for the protocols
// proto_ports_offset knows at offset 0 (TCP, UDP, DCCP, ESP, SCTP,
// UDP-Lite); others (ICMP among them) hash with ports 0.
func dissectedPorts(fl *flow) (uint16, uint16) {
	switch fl.proto {
	case 6, 17, 33, 50, 132, 136:
		return fl.sport, fl.dport
	}
	return 0, 0
}

// multipathHash is fib_multipath_hash for policies 0 to 3, from the
// packet (skb) when fl.pkt, else from the flow (fl4), shifted to 31
// bits. For a packet, policy 0 keys on its addresses (ip_multipath_l3_keys
// would take an ICMP error's inner ones: uswitch's flows carry no inner
// header, so it takes the outer); policy 2 on the dissected addresses;
// policies 1 and 3 also on the dissected protocol and ports; policy 3
// mixes the outer hash with the (absent) inner one by jhash_2words.
func (f *FIB) multipathHash(fl *flow) int32 {
	var h uint32
	sport, dport := fl.sport, fl.dport
	if fl.pkt {
		sport, dport = dissectedPorts(fl)
	}
	switch f.mpPolicy {
	case 1:
		h = f.flowHash(fl.src, fl.dst, fl.proto, sport, dport)
	case 3:
		var src, dst uint32
		var proto uint8
		var sp, dp uint16
		if f.mpFields&mpFieldOuter != 0 {
			if f.mpFields&mpFieldSrcIP != 0 {
				src = fl.src
			}
			if f.mpFields&mpFieldDstIP != 0 {
				dst = fl.dst
			}
			if f.mpFields&mpFieldIPProto != 0 {
				proto = fl.proto
			}
			if f.mpFields&mpFieldSrcPort != 0 {
				sp = sport
			}
			if f.mpFields&mpFieldDstPort != 0 {
				dp = dport
			}
			h = f.flowHash(src, dst, proto, sp, dp)
		}
		if fl.pkt {
			// fib_multipath_custom_hash_skb: the inner hash is 0 for a
			// packet without encapsulation
			h = kernhash.Jhash2Words(h, 0, 0)
		}
	default: // 0 and 2
		h = f.flowHash(fl.src, fl.dst, 0, 0, 0)
	}
	return int32(h >> 1)
}

// goodNH is fib_good_nh: with fib_multipath_use_neigh, a gateway (link
// scope) nexthop whose neighbour entry exists and is not NUD_VALID is
// skipped; no entry counts as reachable.
func (f *FIB) goodNH(c *nh) bool {
	if f.badNeigh == nil || c.scope != ScopeLink {
		return true
	}
	return !f.badNeigh[neighKey{c.dev, c.gw}]
}

// selectMultipath is fib_select_multipath (net/ipv4/fib_semantics.c, as
// of "net: fib: restore ECMP balance from loopback"): among the live
// nexthops (upper bound not -1, neighbour good), the first with the best
// score, 2 for a nexthop whose source address (nh_saddr,
// inet_select_addr on its device with the route's scope) is the flow's
// source, 1 for a hash within its upper bound. Input routes pass no flow
// (ip_mkroute_input), so only the hash counts there.
func (f *FIB) selectMultipath(fl *flow, res *tableResult, hash int32, input bool) {
	score := -1
	var saddr uint32
	if !input {
		saddr = fl.src
	}
	for i := range res.a.nhs {
		c := &res.a.nhs[i]
		if c.upper == -1 || !f.goodNH(c) {
			continue
		}
		s := 0
		if saddr != 0 && f.selectAddr(c.dev, c.gw, res.a.scope) == saddr {
			s += 2
		}
		if hash <= c.upper {
			s++
		}
		if score < s {
			res.nhsel = i
			score = s
		}
	}
}
