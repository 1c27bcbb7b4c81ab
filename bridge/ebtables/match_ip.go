package ebtables

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The ip and ip6 matches: parsing and printing after iptables'
// extensions/libebt_ip.c and libebt_ip6.c, evaluation after the kernel's
// net/bridge/netfilter/ebt_ip.c and ebt_ip6.c.

type portRange struct{ lo, hi uint16 }

func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	pr := portRange{0, 0xffff}
	num := func(t string, def uint16) (uint16, error) {
		if t == "" {
			return def, nil
		}
		v, err := strconv.ParseUint(t, 10, 16)
		if err != nil {
			return 0, paramErr("Problem with specified port '%s'", t)
		}
		return uint16(v), nil
	}
	var err error
	if pr.lo, err = num(lo, 0); err != nil {
		return pr, err
	}
	if !isRange {
		pr.hi = pr.lo
		return pr, nil
	}
	if pr.hi, err = num(hi, 0xffff); err != nil {
		return pr, err
	}
	if pr.lo > pr.hi {
		return pr, paramErr("invalid portrange (min > max)")
	}
	return pr, nil
}

func (p portRange) String() string {
	if p.lo == p.hi {
		return strconv.Itoa(int(p.lo))
	}
	return fmt.Sprintf("%d:%d", p.lo, p.hi)
}

func (p portRange) has(v uint16) bool { return v >= p.lo && v <= p.hi }

// icmpName is a named ICMP type and code range.
type icmpName struct {
	name        string
	typ, lo, hi uint8
}

var icmp4Names = []icmpName{
	{"echo-reply", 0, 0, 0xff}, {"destination-unreachable", 3, 0, 0xff},
	{"network-unreachable", 3, 0, 0}, {"host-unreachable", 3, 1, 1},
	{"protocol-unreachable", 3, 2, 2}, {"port-unreachable", 3, 3, 3},
	{"fragmentation-needed", 3, 4, 4}, {"source-route-failed", 3, 5, 5},
	{"network-unknown", 3, 6, 6}, {"host-unknown", 3, 7, 7},
	{"network-prohibited", 3, 9, 9}, {"host-prohibited", 3, 10, 10},
	{"TOS-network-unreachable", 3, 11, 11}, {"TOS-host-unreachable", 3, 12, 12},
	{"communication-prohibited", 3, 13, 13}, {"host-precedence-violation", 3, 14, 14},
	{"precedence-cutoff", 3, 15, 15}, {"source-quench", 4, 0, 0xff},
	{"redirect", 5, 0, 0xff}, {"network-redirect", 5, 0, 0}, {"host-redirect", 5, 1, 1},
	{"TOS-network-redirect", 5, 2, 2}, {"TOS-host-redirect", 5, 3, 3},
	{"echo-request", 8, 0, 0xff}, {"router-advertisement", 9, 0, 0xff},
	{"router-solicitation", 10, 0, 0xff}, {"time-exceeded", 11, 0, 0xff},
	{"ttl-zero-during-transit", 11, 0, 0}, {"ttl-zero-during-reassembly", 11, 1, 1},
	{"parameter-problem", 12, 0, 0xff}, {"ip-header-bad", 12, 0, 0},
	{"required-option-missing", 12, 1, 1}, {"timestamp-request", 13, 0, 0xff},
	{"timestamp-reply", 14, 0, 0xff}, {"address-mask-request", 17, 0, 0xff},
	{"address-mask-reply", 18, 0, 0xff},
}

var icmp6Names = []icmpName{
	{"destination-unreachable", 1, 0, 0xff}, {"no-route", 1, 0, 0},
	{"communication-prohibited", 1, 1, 1}, {"beyond-scope", 1, 2, 2},
	{"address-unreachable", 1, 3, 3}, {"port-unreachable", 1, 4, 4},
	{"failed-policy", 1, 5, 5}, {"reject-route", 1, 6, 6},
	{"packet-too-big", 2, 0, 0xff}, {"time-exceeded", 3, 0, 0xff},
	{"ttl-zero-during-transit", 3, 0, 0}, {"ttl-zero-during-reassembly", 3, 1, 1},
	{"parameter-problem", 4, 0, 0xff}, {"bad-header", 4, 0, 0},
	{"unknown-header-type", 4, 1, 1}, {"unknown-option", 4, 2, 2},
	{"echo-request", 128, 0, 0xff}, {"echo-reply", 129, 0, 0xff},
	{"router-solicitation", 133, 0, 0xff}, {"router-advertisement", 134, 0, 0xff},
	{"neighbour-solicitation", 135, 0, 0xff}, {"neighbour-advertisement", 136, 0, 0xff},
	{"redirect", 137, 0, 0xff},
}

var igmpNames = []icmpName{
	{"membership-query", 0x11, 0, 0}, {"membership-report-v1", 0x12, 0, 0},
	{"membership-report-v2", 0x16, 0, 0}, {"leave-group", 0x17, 0, 0},
	{"membership-report-v3", 0x22, 0, 0},
}

// icmpSpec is --ip-icmp-type / --ip6-icmp-type / --ip-igmp-type: type
// and code ranges (struct ebt_ip_info's icmp_type[2], icmp_code[2]).
type icmpSpec struct {
	tlo, thi, clo, chi uint8
}

func parseICMP(s string, names []icmpName, igmp bool) (icmpSpec, error) {
	for _, n := range names {
		if strings.EqualFold(n.name, s) {
			return icmpSpec{n.typ, n.typ, n.lo, n.hi}, nil
		}
	}
	bad := paramErr("Invalid ICMP type '%s'", s)
	if igmp {
		bad = paramErr("Invalid IGMP type '%s'", s)
	}
	num := func(t string) (uint8, bool) {
		v, err := strconv.ParseUint(t, 0, 8)
		return uint8(v), err == nil
	}
	rng := func(t string) (uint8, uint8, bool) {
		a, b, isR := strings.Cut(t, ":")
		lo, ok := num(a)
		if !ok {
			return 0, 0, false
		}
		if !isR {
			return lo, lo, true
		}
		hi, ok := num(b)
		return lo, hi, ok && lo <= hi
	}
	ts, cs, hasCode := strings.Cut(s, "/")
	var sp icmpSpec
	var ok bool
	if sp.tlo, sp.thi, ok = rng(ts); !ok {
		return sp, bad
	}
	sp.clo, sp.chi = 0, 0xff
	if hasCode {
		if igmp {
			return sp, bad
		}
		if sp.clo, sp.chi, ok = rng(cs); !ok {
			return sp, bad
		}
	}
	return sp, nil
}

func (sp icmpSpec) format(names []icmpName, igmp bool) string {
	for _, n := range names {
		if sp.tlo == n.typ && sp.thi == n.typ && (igmp || sp.clo == n.lo && sp.chi == n.hi) {
			return n.name
		}
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(sp.tlo)))
	if sp.thi != sp.tlo {
		b.WriteString(":" + strconv.Itoa(int(sp.thi)))
	}
	if igmp {
		return b.String()
	}
	b.WriteString("/" + strconv.Itoa(int(sp.clo)))
	if sp.chi != sp.clo {
		b.WriteString(":" + strconv.Itoa(int(sp.chi)))
	}
	return b.String()
}

func (sp icmpSpec) has(t, c uint8) bool {
	return t >= sp.tlo && t <= sp.thi && c >= sp.clo && c <= sp.chi
}

func writeInv(b *strings.Builder, opt string, inv bool) {
	b.WriteString(" ")
	b.WriteString(opt)
	b.WriteString(" ")
	if inv {
		b.WriteString("! ")
	}
}

// --- ip ---

// IPMatch is the ip match (struct ebt_ip_info).
type IPMatch struct {
	srcSet, dstSet, tosSet, protoSet, sportSet, dportSet, icmpSet, igmpSet bool
	srcInv, dstInv, tosInv, protoInv, sportInv, dportInv, icmpInv, igmpInv bool
	src, smsk, dst, dmsk                                                   uint32
	tos, proto                                                             uint8
	sport, dport                                                           portRange
	icmp, igmp                                                             icmpSpec
}

func init() {
	register(&extDef{name: "ip", kind: kMatch, opts: []optDef{
		{name: "ip-source", hasArg: true}, {name: "ip-src", hasArg: true},
		{name: "ip-destination", hasArg: true}, {name: "ip-dst", hasArg: true},
		{name: "ip-tos", hasArg: true},
		{name: "ip-protocol", hasArg: true}, {name: "ip-proto", hasArg: true},
		{name: "ip-source-port", hasArg: true}, {name: "ip-sport", hasArg: true},
		{name: "ip-destination-port", hasArg: true}, {name: "ip-dport", hasArg: true},
		{name: "ip-icmp-type", hasArg: true}, {name: "ip-igmp-type", hasArg: true},
	}, make: func() extParser { return &IPMatch{} }})
	register(&extDef{name: "ip6", kind: kMatch, opts: []optDef{
		{name: "ip6-source", hasArg: true}, {name: "ip6-src", hasArg: true},
		{name: "ip6-destination", hasArg: true}, {name: "ip6-dst", hasArg: true},
		{name: "ip6-tclass", hasArg: true},
		{name: "ip6-protocol", hasArg: true}, {name: "ip6-proto", hasArg: true},
		{name: "ip6-source-port", hasArg: true}, {name: "ip6-sport", hasArg: true},
		{name: "ip6-destination-port", hasArg: true}, {name: "ip6-dport", hasArg: true},
		{name: "ip6-icmp-type", hasArg: true},
	}, make: func() extParser { return &IP6Match{} }})
}

// parseIPv4Mask reads A[/M] with M a prefix length or a dotted mask.
func parseIPv4Mask(s string) (uint32, uint32, error) {
	as, ms, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(as)
	if err != nil || !a.Is4() {
		return 0, 0, paramErr("host/network `%s' not found", as)
	}
	mask := uint32(0xffffffff)
	if hasMask {
		if n, err := strconv.Atoi(ms); err == nil && !strings.Contains(ms, ".") {
			if n < 0 || n > 32 {
				return 0, 0, paramErr("invalid mask `%s' specified", ms)
			}
			mask = ^uint32(0) << (32 - n)
			if n == 0 {
				mask = 0
			}
		} else {
			m, err := netip.ParseAddr(ms)
			if err != nil || !m.Is4() {
				return 0, 0, paramErr("invalid mask `%s' specified", ms)
			}
			mask = packet.AddrFrom(m)
		}
	}
	return packet.AddrFrom(a) & mask, mask, nil
}

func formatIPv4Mask(a, m uint32) string {
	s := packet.AddrOf(a).String()
	if m == 0xffffffff {
		return s
	}
	n := bits.LeadingZeros32(^m)
	if m<<n == 0 {
		return s + "/" + strconv.Itoa(n)
	}
	return s + "/" + packet.AddrOf(m).String()
}

func parseProto(s string) (uint8, error) {
	if v, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(v), nil
	}
	if v, ok := ipProtoByName(s); ok {
		return v, nil
	}
	return 0, paramErr("unknown protocol \"%s\" specified", s)
}

func formatProto(v uint8) string {
	if n, ok := ipProtoName(v); ok {
		return n
	}
	return strconv.Itoa(int(v))
}

// Name is the extension's name as ebtables knows it.
func (m *IPMatch) Name() string { return "ip" }

func (m *IPMatch) parse(opt, arg string, inv bool) error {
	var err error
	switch opt {
	case "ip-source", "ip-src":
		m.srcSet, m.srcInv = true, inv
		m.src, m.smsk, err = parseIPv4Mask(arg)
	case "ip-destination", "ip-dst":
		m.dstSet, m.dstInv = true, inv
		m.dst, m.dmsk, err = parseIPv4Mask(arg)
	case "ip-tos":
		m.tosSet, m.tosInv = true, inv
		v, e := parseHex(arg, 8)
		if e != nil {
			return paramErr("Problem with specified IP tos")
		}
		m.tos = uint8(v)
	case "ip-protocol", "ip-proto":
		m.protoSet, m.protoInv = true, inv
		m.proto, err = parseProto(arg)
	case "ip-source-port", "ip-sport":
		m.sportSet, m.sportInv = true, inv
		m.sport, err = parsePortRange(arg)
	case "ip-destination-port", "ip-dport":
		m.dportSet, m.dportInv = true, inv
		m.dport, err = parsePortRange(arg)
	case "ip-icmp-type":
		m.icmpSet, m.icmpInv = true, inv
		m.icmp, err = parseICMP(arg, icmp4Names, false)
	case "ip-igmp-type":
		m.igmpSet, m.igmpInv = true, inv
		m.igmp, err = parseICMP(arg, igmpNames, true)
	}
	return err
}

// final: ebt_ip_mt_check refuses (EINVAL, at commit) an ip match
// without -p IPv4, ports without a port protocol, icmp/igmp types
// without their protocol or together with ports.
func (m *IPMatch) final(p *ruleParser) error {
	bad := !p.protoIs(packet.EtherTypeIPv4)
	if m.sportSet || m.dportSet {
		if !m.protoSet || m.protoInv || !portProto(m.proto) {
			bad = true
		}
	}
	if m.icmpSet && (!m.protoSet || m.protoInv || m.proto != 1 || m.sportSet || m.dportSet || m.igmpSet) {
		bad = true
	}
	if m.igmpSet && (!m.protoSet || m.protoInv || m.proto != 2 || m.sportSet || m.dportSet) {
		bad = true
	}
	if bad {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func portProto(p uint8) bool { return p == 6 || p == 17 || p == 33 || p == 132 || p == 136 }

func (m *IPMatch) save(b *strings.Builder) {
	if m.srcSet {
		writeInv(b, "--ip-src", m.srcInv)
		b.WriteString(formatIPv4Mask(m.src, m.smsk))
	}
	if m.dstSet {
		writeInv(b, "--ip-dst", m.dstInv)
		b.WriteString(formatIPv4Mask(m.dst, m.dmsk))
	}
	if m.tosSet {
		writeInv(b, "--ip-tos", m.tosInv)
		fmt.Fprintf(b, "0x%02X", m.tos)
	}
	if m.protoSet {
		writeInv(b, "--ip-proto", m.protoInv)
		b.WriteString(formatProto(m.proto))
	}
	if m.sportSet {
		writeInv(b, "--ip-sport", m.sportInv)
		b.WriteString(m.sport.String())
	}
	if m.dportSet {
		writeInv(b, "--ip-dport", m.dportInv)
		b.WriteString(m.dport.String())
	}
	if m.icmpSet {
		writeInv(b, "--ip-icmp-type", m.icmpInv)
		b.WriteString(m.icmp.format(icmp4Names, false))
	}
	if m.igmpSet {
		writeInv(b, "--ip-igmp-type", m.igmpInv)
		b.WriteString(m.igmp.format(igmpNames, true))
	}
}

// match is ebt_ip_mt: each given field must match (xor its "!").
func (m *IPMatch) match(c *Ctx) bool {
	h := c.netHeader()
	if len(h) < 20 {
		return false
	}
	if m.tosSet && (h[1] == m.tos) == m.tosInv {
		return false
	}
	if m.srcSet && (binary.BigEndian.Uint32(h[12:])&m.smsk == m.src) == m.srcInv {
		return false
	}
	if m.dstSet && (binary.BigEndian.Uint32(h[16:])&m.dmsk == m.dst) == m.dstInv {
		return false
	}
	if m.protoSet {
		if (h[9] == m.proto) == m.protoInv {
			return false
		}
	}
	if m.sportSet || m.dportSet || m.icmpSet || m.igmpSet {
		if binary.BigEndian.Uint16(h[6:])&0x1fff != 0 {
			return false
		}
		off := int(h[0]&0x0f) * 4
		if off+4 > len(h) {
			return false
		}
		l4 := h[off:]
		return l4Match(l4, m.sportSet, m.sportInv, m.sport, m.dportSet, m.dportInv, m.dport, m.icmpSet, m.icmpInv, m.icmp) &&
			(!m.igmpSet || (l4[0] >= m.igmp.tlo && l4[0] <= m.igmp.thi) != m.igmpInv)
	}
	return true
}

func l4Match(l4 []byte, sps, spi bool, sp portRange, dps, dpi bool, dp portRange, ics, ici bool, ic icmpSpec) bool {
	if dps && dp.has(binary.BigEndian.Uint16(l4[2:])) == dpi {
		return false
	}
	if sps && sp.has(binary.BigEndian.Uint16(l4[0:])) == spi {
		return false
	}
	if ics && ic.has(l4[0], l4[1]) == ici {
		return false
	}
	return true
}

// --- ip6 ---

// IP6Match is the ip6 match (struct ebt_ip6_info).
type IP6Match struct {
	srcSet, dstSet, tcSet, protoSet, sportSet, dportSet, icmpSet bool
	srcInv, dstInv, tcInv, protoInv, sportInv, dportInv, icmpInv bool
	src, smsk, dst, dmsk                                         [16]byte
	sbits, dbits                                                 int
	tclass, proto                                                uint8
	sport, dport                                                 portRange
	icmp                                                         icmpSpec
}

func parseIPv6Mask(s string) ([16]byte, [16]byte, int, error) {
	as, ms, hasMask := strings.Cut(s, "/")
	var a, m [16]byte
	ad, err := netip.ParseAddr(as)
	if err != nil || !ad.Is6() || ad.Is4In6() && strings.Contains(as, ".") && !strings.Contains(as, ":") {
		return a, m, 0, paramErr("host/network `%s' not found", as)
	}
	n := 128
	if hasMask {
		v, err := strconv.Atoi(ms)
		if err != nil || v < 0 || v > 128 {
			return a, m, 0, paramErr("invalid mask `%s' specified", ms)
		}
		n = v
	}
	a = ad.As16()
	for i := 0; i < 16; i++ {
		bitsLeft := n - 8*i
		switch {
		case bitsLeft >= 8:
			m[i] = 0xff
		case bitsLeft > 0:
			m[i] = byte(0xff << (8 - bitsLeft))
		}
		a[i] &= m[i]
	}
	return a, m, n, nil
}

// Name is the extension's name as ebtables knows it.
func (m *IP6Match) Name() string { return "ip6" }

func (m *IP6Match) parse(opt, arg string, inv bool) error {
	var err error
	switch opt {
	case "ip6-source", "ip6-src":
		m.srcSet, m.srcInv = true, inv
		m.src, m.smsk, m.sbits, err = parseIPv6Mask(arg)
	case "ip6-destination", "ip6-dst":
		m.dstSet, m.dstInv = true, inv
		m.dst, m.dmsk, m.dbits, err = parseIPv6Mask(arg)
	case "ip6-tclass":
		m.tcSet, m.tcInv = true, inv
		v, e := parseHex(arg, 8)
		if e != nil {
			return paramErr("Problem with specified IPv6 traffic class '%s'", arg)
		}
		m.tclass = uint8(v)
	case "ip6-protocol", "ip6-proto":
		m.protoSet, m.protoInv = true, inv
		m.proto, err = parseProto(arg)
	case "ip6-source-port", "ip6-sport":
		m.sportSet, m.sportInv = true, inv
		m.sport, err = parsePortRange(arg)
	case "ip6-destination-port", "ip6-dport":
		m.dportSet, m.dportInv = true, inv
		m.dport, err = parsePortRange(arg)
	case "ip6-icmp-type":
		m.icmpSet, m.icmpInv = true, inv
		m.icmp, err = parseICMP(arg, icmp6Names, false)
	}
	return err
}

func (m *IP6Match) final(p *ruleParser) error {
	bad := !p.protoIs(packet.EtherTypeIPv6)
	if m.sportSet || m.dportSet {
		if !m.protoSet || m.protoInv || !portProto(m.proto) {
			bad = true
		}
	}
	if m.icmpSet && (!m.protoSet || m.protoInv || m.proto != 58 || m.sportSet || m.dportSet) {
		bad = true
	}
	if bad {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func format6(a [16]byte, n int) string {
	s := netip.AddrFrom16(a).String()
	if n == 128 {
		return s
	}
	return s + "/" + strconv.Itoa(n)
}

func (m *IP6Match) save(b *strings.Builder) {
	if m.srcSet {
		writeInv(b, "--ip6-src", m.srcInv)
		b.WriteString(format6(m.src, m.sbits))
	}
	if m.dstSet {
		writeInv(b, "--ip6-dst", m.dstInv)
		b.WriteString(format6(m.dst, m.dbits))
	}
	if m.tcSet {
		writeInv(b, "--ip6-tclass", m.tcInv)
		fmt.Fprintf(b, "0x%02X", m.tclass)
	}
	if m.protoSet {
		writeInv(b, "--ip6-proto", m.protoInv)
		b.WriteString(formatProto(m.proto))
	}
	if m.sportSet {
		writeInv(b, "--ip6-sport", m.sportInv)
		b.WriteString(m.sport.String())
	}
	if m.dportSet {
		writeInv(b, "--ip6-dport", m.dportInv)
		b.WriteString(m.dport.String())
	}
	if m.icmpSet {
		writeInv(b, "--ip6-icmp-type", m.icmpInv)
		b.WriteString(m.icmp.format(icmp6Names, false))
	}
}

func masked6Eq(h []byte, a, m *[16]byte) bool {
	for i := 0; i < 16; i++ {
		if h[i]&m[i] != a[i] {
			return false
		}
	}
	return true
}

// skipExt follows IPv6 extension headers as ipv6_skip_exthdr
// (net/ipv6/exthdrs_core.c) does: it returns the upper-layer protocol
// and its offset, or ok=false when the chain is cut short; a non-first
// fragment stops with NEXTHDR_FRAGMENT's successor and frag=true.
func skipExt(h []byte) (proto uint8, off int, frag bool, ok bool) {
	proto, off = h[6], 40
	for {
		switch proto {
		case 0, 43, 60, 51, 44:
		default:
			return proto, off, frag, true
		}
		if off+8 > len(h) {
			return 0, 0, false, false
		}
		next := h[off]
		switch proto {
		case 44:
			if binary.BigEndian.Uint16(h[off+2:])&0xfff8 != 0 {
				return next, off + 8, true, true
			}
			off += 8
		case 51:
			off += (int(h[off+1]) + 2) << 2
		default:
			off += (int(h[off+1]) + 1) << 3
		}
		proto = next
	}
}

// match is ebt_ip6_mt.
func (m *IP6Match) match(c *Ctx) bool {
	h := c.netHeader()
	if len(h) < 40 {
		return false
	}
	if m.tcSet {
		tc := uint8(binary.BigEndian.Uint16(h[0:]) >> 4)
		if (tc == m.tclass) == m.tcInv {
			return false
		}
	}
	if m.srcSet && masked6Eq(h[8:24], &m.src, &m.smsk) == m.srcInv {
		return false
	}
	if m.dstSet && masked6Eq(h[24:40], &m.dst, &m.dmsk) == m.dstInv {
		return false
	}
	if !m.protoSet {
		return true
	}
	// ebtables-nft matches --ip6-proto on nft's transport protocol
	// (nft_set_pktinfo_ipv6_validate): version 6, a payload length
	// that fits the frame, and an extension-header chain that ends in
	// a transport header (not NEXTHDR_NONE); otherwise neither the
	// protocol nor its negation matches (TestEvalKernelRandom)
	if h[0]>>4 != 6 || 40+int(binary.BigEndian.Uint16(h[4:])) > len(h) {
		return false
	}
	proto, off, frag, ok := skipExt(h)
	if !ok || proto == 59 {
		return false
	}
	if (proto == m.proto) == m.protoInv {
		return false
	}
	if m.sportSet || m.dportSet || m.icmpSet {
		if frag || off+4 > len(h) {
			return false
		}
		return l4Match(h[off:], m.sportSet, m.sportInv, m.sport, m.dportSet, m.dportInv, m.dport, m.icmpSet, m.icmpInv, m.icmp)
	}
	return true
}
