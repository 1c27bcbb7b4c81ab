package ebtables

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/uswitch-lab/uswitch/packet"
)

// The link-level matches: arp, vlan, mark_m, pkttype, limit, among, stp,
// 802_3. Parsing and printing after iptables' extensions/libebt_*.c
// (1.8.9, as ebtables-nft prints them back), evaluation after
// net/bridge/netfilter/ebt_*.c.

func writeMACMask(b *strings.Builder, a, m packet.MAC) {
	b.WriteString(a.String())
	if m != (packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		b.WriteString("/" + m.String())
	}
}

func maskedEq(x, a, m packet.MAC) bool {
	for i := range x {
		if x[i]&m[i] != a[i] {
			return false
		}
	}
	return true
}

// --- arp ---

var arpOpcodes = []string{"Request", "Reply", "Request_Reverse", "Reply_Reverse",
	"DRARP_Request", "DRARP_Reply", "DRARP_Error", "InARP_Request", "ARP_NAK"}

// ARPMatch is the arp match (struct ebt_arp_info).
type ARPMatch struct {
	opSet, htSet, ptSet, sipSet, dipSet, smacSet, dmacSet, grat    bool
	opInv, htInv, ptInv, sipInv, dipInv, smacInv, dmacInv, gratInv bool
	op, htype, ptype                                               uint16
	sip, smsk, dip, dmsk                                           uint32
	smac, smm, dmac, dmm                                           packet.MAC
}

func init() {
	register(&extDef{name: "arp", kind: kMatch, opts: []optDef{
		{name: "arp-opcode", hasArg: true}, {name: "arp-op", hasArg: true},
		{name: "arp-htype", hasArg: true}, {name: "arp-ptype", hasArg: true},
		{name: "arp-ip-src", hasArg: true}, {name: "arp-ip-dst", hasArg: true},
		{name: "arp-mac-src", hasArg: true}, {name: "arp-mac-dst", hasArg: true},
		{name: "arp-gratuitous"},
	}, make: func() extParser { return &ARPMatch{} }})
	register(&extDef{name: "vlan", kind: kMatch, opts: []optDef{
		{name: "vlan-id", hasArg: true}, {name: "vlan-prio", hasArg: true}, {name: "vlan-encap", hasArg: true},
	}, make: func() extParser { return &VLANMatch{} }})
	register(&extDef{name: "mark_m", kind: kMatch, opts: []optDef{{name: "mark", hasArg: true}},
		make: func() extParser { return &MarkMatch{} }})
	register(&extDef{name: "pkttype", kind: kMatch, opts: []optDef{{name: "pkttype-type", hasArg: true}},
		make: func() extParser { return &PktTypeMatch{} }})
	register(&extDef{name: "limit", kind: kMatch, opts: []optDef{{name: "limit", hasArg: true}, {name: "limit-burst", hasArg: true}},
		make: func() extParser { return &LimitMatch{avg: 10000 * 3600 / 3, burst: 5} }})
	register(&extDef{name: "among", kind: kMatch, opts: []optDef{{name: "among-dst", hasArg: true}, {name: "among-src", hasArg: true}},
		make: func() extParser { return &AmongMatch{} }})
	register(&extDef{name: "802_3", kind: kMatch, opts: []optDef{{name: "802_3-sap", hasArg: true}, {name: "802_3-type", hasArg: true}},
		make: func() extParser { return &Match8023{} }})
}

// Name is the extension's name as ebtables knows it.
func (m *ARPMatch) Name() string { return "arp" }

func (m *ARPMatch) parse(opt, arg string, inv bool) error {
	switch opt {
	case "arp-opcode", "arp-op":
		m.opSet, m.opInv = true, inv
		for i, n := range arpOpcodes {
			if strings.EqualFold(n, arg) {
				m.op = uint16(i + 1)
				return nil
			}
		}
		v, err := strconv.ParseUint(arg, 0, 16)
		if err != nil {
			return paramErr("Problem with specified ARP opcode")
		}
		m.op = uint16(v)
	case "arp-htype":
		m.htSet, m.htInv = true, inv
		if strings.EqualFold(arg, "Ethernet") {
			m.htype = 1
			return nil
		}
		v, err := strconv.ParseUint(arg, 0, 16)
		if err != nil {
			return paramErr("Problem with specified ARP hardware type")
		}
		m.htype = uint16(v)
	case "arp-ptype":
		m.ptSet, m.ptInv = true, inv
		v, err := parseHex(arg, 16)
		if err != nil {
			ev, ok := ethertypeByName(arg)
			if !ok {
				return paramErr("Problem with specified ARP protocol type")
			}
			v = uint64(ev)
		}
		m.ptype = uint16(v)
	case "arp-ip-src", "arp-ip-dst":
		a, mk, err := parseIPv4Mask(arg)
		if err != nil {
			return err
		}
		if opt == "arp-ip-src" {
			m.sipSet, m.sipInv, m.sip, m.smsk = true, inv, a, mk
		} else {
			m.dipSet, m.dipInv, m.dip, m.dmsk = true, inv, a, mk
		}
	case "arp-mac-src", "arp-mac-dst":
		a, mk, ok := macAndMask(arg)
		if !ok {
			return paramErr("Problem with ARP MAC address argument")
		}
		if opt == "arp-mac-src" {
			m.smacSet, m.smacInv, m.smac, m.smm = true, inv, a, mk
		} else {
			m.dmacSet, m.dmacInv, m.dmac, m.dmm = true, inv, a, mk
		}
	case "arp-gratuitous":
		m.grat, m.gratInv = true, inv
	}
	return nil
}

// final: ebt_arp_mt_check wants -p ARP or -p RARP, not inverted.
func (m *ARPMatch) final(p *ruleParser) error {
	if !p.protoIs(packet.EtherTypeARP, 0x8035) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (m *ARPMatch) save(b *strings.Builder) {
	if m.opSet {
		writeInv(b, "--arp-op", m.opInv)
		if m.op >= 1 && int(m.op) <= len(arpOpcodes) {
			b.WriteString(arpOpcodes[m.op-1])
		} else {
			b.WriteString(strconv.Itoa(int(m.op)))
		}
	}
	if m.htSet {
		writeInv(b, "--arp-htype", m.htInv)
		b.WriteString(strconv.Itoa(int(m.htype)))
	}
	if m.ptSet {
		writeInv(b, "--arp-ptype", m.ptInv)
		fmt.Fprintf(b, "0x%x", m.ptype)
	}
	if m.sipSet {
		writeInv(b, "--arp-ip-src", m.sipInv)
		b.WriteString(formatIPv4Mask(m.sip, m.smsk))
	}
	if m.dipSet {
		writeInv(b, "--arp-ip-dst", m.dipInv)
		b.WriteString(formatIPv4Mask(m.dip, m.dmsk))
	}
	if m.smacSet {
		writeInv(b, "--arp-mac-src", m.smacInv)
		writeMACMask(b, m.smac, m.smm)
	}
	if m.dmacSet {
		writeInv(b, "--arp-mac-dst", m.dmacInv)
		writeMACMask(b, m.dmac, m.dmm)
	}
	if m.grat {
		if m.gratInv {
			b.WriteString(" ! --arp-gratuitous")
		} else {
			b.WriteString(" --arp-gratuitous")
		}
	}
}

// match is ebt_arp_mt.
func (m *ARPMatch) match(c *Ctx) bool {
	h := c.netHeader()
	if len(h) < 8 {
		return false
	}
	if m.opSet && (binary.BigEndian.Uint16(h[6:]) == m.op) == m.opInv {
		return false
	}
	if m.htSet && (binary.BigEndian.Uint16(h[0:]) == m.htype) == m.htInv {
		return false
	}
	if m.ptSet && (binary.BigEndian.Uint16(h[2:]) == m.ptype) == m.ptInv {
		return false
	}
	hln, pln := int(h[4]), int(h[5])
	if m.sipSet || m.dipSet || m.grat {
		if pln != 4 || binary.BigEndian.Uint16(h[2:]) != packet.EtherTypeIPv4 {
			return false
		}
		so, do := 8+hln, 8+2*hln+4
		if do+4 > len(h) {
			return false
		}
		sa, da := binary.BigEndian.Uint32(h[so:]), binary.BigEndian.Uint32(h[do:])
		if m.sipSet && (sa&m.smsk == m.sip) == m.sipInv {
			return false
		}
		if m.dipSet && (da&m.dmsk == m.dip) == m.dipInv {
			return false
		}
		if m.grat && (da == sa) == m.gratInv {
			return false
		}
	}
	if m.smacSet || m.dmacSet {
		if hln != 6 || binary.BigEndian.Uint16(h[0:]) != 1 {
			return false
		}
		if 8+6+pln+6 > len(h) {
			return false
		}
		var sm, dm packet.MAC
		copy(sm[:], h[8:])
		copy(dm[:], h[8+6+pln:])
		if m.smacSet && maskedEq(sm, m.smac, m.smm) == m.smacInv {
			return false
		}
		if m.dmacSet && maskedEq(dm, m.dmac, m.dmm) == m.dmacInv {
			return false
		}
	}
	return true
}

// --- vlan ---

// VLANMatch is the vlan match (struct ebt_vlan_info).
type VLANMatch struct {
	idSet, prioSet, encSet bool
	idInv, prioInv, encInv bool
	id                     uint16
	prio                   uint8
	encap                  uint16
}

// Name is the extension's name as ebtables knows it.
func (m *VLANMatch) Name() string { return "vlan" }

func (m *VLANMatch) parse(opt, arg string, inv bool) error {
	switch opt {
	case "vlan-id":
		v, err := strconv.ParseUint(arg, 0, 16)
		if err != nil || v > 4094 {
			return paramErr("Invalid --vlan-id range ('%s')", arg)
		}
		m.idSet, m.idInv, m.id = true, inv, uint16(v)
	case "vlan-prio":
		v, err := strconv.ParseUint(arg, 0, 8)
		if err != nil || v > 7 {
			return paramErr("Invalid --vlan-prio range ('%s')", arg)
		}
		m.prioSet, m.prioInv, m.prio = true, inv, uint8(v)
	case "vlan-encap":
		v, err := parseHex(arg, 16)
		if err != nil {
			ev, ok := ethertypeByName(arg)
			if !ok {
				return paramErr("Unknown --vlan-encap value ('%s')", arg)
			}
			v = uint64(ev)
		}
		if v < 0x0600 {
			return paramErr("Invalid --vlan-encap range ('%s')", arg)
		}
		m.encSet, m.encInv, m.encap = true, inv, uint16(v)
	}
	return nil
}

// final: ebt_vlan_mt_check wants -p 802_1Q.
func (m *VLANMatch) final(p *ruleParser) error {
	if !p.protoIs(packet.EtherTypeVLAN) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (m *VLANMatch) save(b *strings.Builder) {
	if m.idSet {
		writeInv(b, "--vlan-id", m.idInv)
		b.WriteString(strconv.Itoa(int(m.id)))
	}
	if m.prioSet {
		writeInv(b, "--vlan-prio", m.prioInv)
		b.WriteString(strconv.Itoa(int(m.prio)))
	}
	if m.encSet {
		writeInv(b, "--vlan-encap", m.encInv)
		fmt.Fprintf(b, "%04X", m.encap)
	}
}

// match is ebt_vlan_mt: the tag is the frame's (in-band here).
func (m *VLANMatch) match(c *Ctx) bool {
	f := c.Frame
	if !f.VLAN {
		return false
	}
	if m.idSet && (f.VLANID() == m.id) == m.idInv {
		return false
	}
	if m.prioSet && (f.VLANPrio() == m.prio) == m.prioInv {
		return false
	}
	if m.encSet && (f.InnerProto == m.encap) == m.encInv {
		return false
	}
	return true
}

// --- mark_m ---

// MarkMatch is --mark (struct ebt_mark_m_info): value/mask equality, or
// with "/mask" alone, any of the mask's bits set.
type MarkMatch struct {
	inv, anyBit bool
	value, mask uint32
}

// Name is the extension's name as ebtables knows it.
func (m *MarkMatch) Name() string { return "mark_m" }

func (m *MarkMatch) parse(opt, arg string, inv bool) error {
	m.inv = inv
	vs, ms, hasMask := strings.Cut(arg, "/")
	m.mask = 0xffffffff
	if vs == "" && hasMask {
		m.anyBit = true
	} else {
		v, err := strconv.ParseUint(vs, 0, 32)
		if err != nil {
			return paramErr("Bad mark value '%s'", arg)
		}
		m.value = uint32(v)
	}
	if hasMask {
		v, err := strconv.ParseUint(ms, 0, 32)
		if err != nil {
			return paramErr("Bad mark mask '%s'", arg)
		}
		m.mask = uint32(v)
	}
	return nil
}

func (m *MarkMatch) final(p *ruleParser) error { return nil }

func (m *MarkMatch) save(b *strings.Builder) {
	writeInv(b, "--mark", m.inv)
	switch {
	case m.anyBit:
		fmt.Fprintf(b, "/0x%x", m.mask)
	case m.mask != 0xffffffff:
		fmt.Fprintf(b, "0x%x/0x%x", m.value, m.mask)
	default:
		fmt.Fprintf(b, "0x%x", m.value)
	}
}

// match is ebt_mark_mt.
func (m *MarkMatch) match(c *Ctx) bool {
	if m.anyBit {
		return (c.Mark&m.mask != 0) != m.inv
	}
	return (c.Mark&m.mask == m.value) != m.inv
}

// --- pkttype ---

var pktTypeNames = []string{"host", "broadcast", "multicast", "otherhost", "outgoing", "loopback", "fastroute"}

// PktTypeMatch is --pkttype-type.
type PktTypeMatch struct {
	inv bool
	t   PktType
}

// Name is the extension's name as ebtables knows it.
func (m *PktTypeMatch) Name() string { return "pkttype" }

func (m *PktTypeMatch) parse(opt, arg string, inv bool) error {
	m.inv = inv
	for i, n := range pktTypeNames {
		if n == arg {
			m.t = PktType(i)
			return nil
		}
	}
	v, err := strconv.ParseUint(arg, 0, 8)
	if err != nil {
		return paramErr("Could not parse class '%s'", arg)
	}
	m.t = PktType(v)
	return nil
}

func (m *PktTypeMatch) final(p *ruleParser) error { return nil }

func (m *PktTypeMatch) save(b *strings.Builder) {
	writeInv(b, "--pkttype-type", m.inv)
	if int(m.t) < len(pktTypeNames) {
		b.WriteString(pktTypeNames[m.t])
	} else {
		b.WriteString(strconv.Itoa(int(m.t)))
	}
}

func (m *PktTypeMatch) match(c *Ctx) bool { return (c.PktType == m.t) != m.inv }

// --- limit ---

// limitScale is EBT_LIMIT_SCALE: rates are periods in 1/10000 s.
const limitScale = 10000

var limitUnits = []struct {
	name string
	mult uint32
}{{"day", limitScale * 24 * 60 * 60}, {"hour", limitScale * 60 * 60}, {"min", limitScale * 60}, {"sec", limitScale}}

// LimitMatch is --limit / --limit-burst (ebt_limit.c): a token bucket.
// Its state is the one mutable part of a compiled rule set.
type LimitMatch struct {
	avg               uint32 // period between packets, 1/10000 s
	burst             uint32
	rateSet, burstSet bool

	mu      sync.Mutex
	started bool
	prev    int64 // ns
	credit  int64 // ns of credit
}

// Name is the extension's name as ebtables knows it.
func (m *LimitMatch) Name() string { return "limit" }

func (m *LimitMatch) parse(opt, arg string, inv bool) error {
	if opt == "limit-burst" {
		v, err := strconv.ParseUint(arg, 10, 32)
		if err != nil || v > 10000 {
			return paramErr("bad --limit-burst `%s'", arg)
		}
		m.burst, m.burstSet = uint32(v), true
		return nil
	}
	ns, unit, hasUnit := strings.Cut(arg, "/")
	n, err := strconv.ParseUint(ns, 10, 32)
	if err != nil || n == 0 {
		return paramErr("bad rate `%s'", arg)
	}
	mult := uint32(limitScale)
	if hasUnit {
		switch {
		case unit != "" && strings.HasPrefix("second", unit):
			mult = limitScale
		case unit != "" && strings.HasPrefix("minute", unit):
			mult = limitScale * 60
		case unit != "" && strings.HasPrefix("hour", unit):
			mult = limitScale * 60 * 60
		case unit != "" && strings.HasPrefix("day", unit):
			mult = limitScale * 24 * 60 * 60
		default:
			return paramErr("bad rate `%s'", arg)
		}
	}
	if uint32(n) > mult {
		return paramErr("Rate too fast `%s'", arg)
	}
	m.avg, m.rateSet = mult/uint32(n), true
	return nil
}

func (m *LimitMatch) final(p *ruleParser) error { return nil }

func (m *LimitMatch) save(b *strings.Builder) {
	i := 1
	for ; i < len(limitUnits); i++ {
		if m.avg > limitUnits[i].mult || limitUnits[i].mult/m.avg < limitUnits[i].mult%m.avg {
			break
		}
	}
	fmt.Fprintf(b, " --limit %d/%s --limit-burst %d", limitUnits[i-1].mult/m.avg, limitUnits[i-1].name, m.burst)
}

// match is ebt_limit_mt with nanoseconds for jiffies: the bucket holds
// avg*burst, each packet costs avg, time refills it.
func (m *LimitMatch) match(c *Ctx) bool {
	cost := int64(m.avg) * (1e9 / limitScale)
	max := cost * int64(m.burst)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		m.started, m.prev, m.credit = true, c.Now, max
	}
	if d := c.Now - m.prev; d > 0 {
		m.credit += d
		if m.credit > max {
			m.credit = max
		}
	}
	m.prev = c.Now
	if m.credit >= cost {
		m.credit -= cost
		return true
	}
	return false
}

// --- among ---

type amongEntry struct {
	mac   packet.MAC
	ip    uint32
	hasIP bool
}

// AmongMatch is --among-src / --among-dst (ebt_among.c): MAC lists,
// optionally MAC=IPv4 pairs.
type AmongMatch struct {
	srcSet, dstSet bool
	srcInv, dstInv bool
	src, dst       []amongEntry
}

// Name is the extension's name as ebtables knows it.
func (m *AmongMatch) Name() string { return "among" }

func parseAmong(s string) ([]amongEntry, error) {
	var out []amongEntry
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		ms, ips, hasIP := strings.Cut(item, "=")
		mac, ok := etherAton(ms)
		if !ok {
			return nil, paramErr("Invalid MAC address '%s'", ms)
		}
		e := amongEntry{mac: mac}
		if hasIP {
			a, _, err := parseIPv4Mask(ips)
			if err != nil || strings.Contains(ips, "/") {
				return nil, paramErr("Invalid IP address '%s'", ips)
			}
			e.ip, e.hasIP = a, true
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].mac != out[j].mac {
			return string(out[i].mac[:]) < string(out[j].mac[:])
		}
		return out[i].ip < out[j].ip
	})
	return out, nil
}

func (m *AmongMatch) parse(opt, arg string, inv bool) error {
	l, err := parseAmong(arg)
	if err != nil {
		return err
	}
	if opt == "among-src" {
		m.srcSet, m.srcInv, m.src = true, inv, l
	} else {
		m.dstSet, m.dstInv, m.dst = true, inv, l
	}
	return nil
}

func (m *AmongMatch) final(p *ruleParser) error { return nil }

// etherNtoa prints a MAC as ether_ntoa does: no leading zeros.
func etherNtoa(a packet.MAC) string {
	return fmt.Sprintf("%x:%x:%x:%x:%x:%x", a[0], a[1], a[2], a[3], a[4], a[5])
}

func saveAmong(b *strings.Builder, opt string, inv bool, l []amongEntry) {
	writeInv(b, opt, inv)
	for i, e := range l {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(etherNtoa(e.mac))
		if e.hasIP {
			b.WriteString("=" + packet.AddrOf(e.ip).String())
		}
	}
}

func (m *AmongMatch) save(b *strings.Builder) {
	if m.srcSet {
		saveAmong(b, "--among-src", m.srcInv, m.src)
	}
	if m.dstSet {
		saveAmong(b, "--among-dst", m.dstInv, m.dst)
	}
}

// amongIP is the address part of ebtables-nft's among set key
// ("ether daddr . ip daddr"): it needs skb->protocol IPv4 (for a VLAN
// frame the receive path has untagged, the inner protocol) and reads
// four bytes at offset 12 (source) or 16 (destination) of the network
// header. Any other frame, ARP included, matches neither the list nor
// its negation, and neither does one too short for the load. (Legacy
// ebt_among.c also took ARP's sender and target addresses:
// get_ip_src/get_ip_dst.) Found by TestEvalKernelRandom.
func amongIP(c *Ctx, src bool) (uint32, bool) {
	if c.Frame.InnerProto != packet.EtherTypeIPv4 {
		return 0, false
	}
	h := c.Frame.Payload
	off := 16
	if src {
		off = 12
	}
	if off+4 > len(h) {
		return 0, false
	}
	return binary.BigEndian.Uint32(h[off:]), true
}

func amongHas(l []amongEntry, mac packet.MAC, ip uint32) bool {
	for _, e := range l {
		if e.mac == mac && (!e.hasIP || e.ip == ip) {
			return true
		}
	}
	return false
}

func anyIP(l []amongEntry) bool {
	for _, e := range l {
		if e.hasIP {
			return true
		}
	}
	return false
}

// match is ebt_among_mt as ebtables-nft translates it: a lookup of
// "ether addr" in a set, or of "ether addr . ip addr" when the list
// has MAC=IP entries (entries without an address match any); checked
// against the kernel in TestEvalKernel and TestEvalKernelRandom.
func (m *AmongMatch) match(c *Ctx) bool {
	if m.srcSet {
		ip, ok := uint32(0), true
		if anyIP(m.src) {
			ip, ok = amongIP(c, true)
		}
		if !ok || amongHas(m.src, c.Frame.Src, ip) == m.srcInv {
			return false
		}
	}
	if m.dstSet {
		ip, ok := uint32(0), true
		if anyIP(m.dst) {
			ip, ok = amongIP(c, false)
		}
		if !ok || amongHas(m.dst, c.Frame.Dst, ip) == m.dstInv {
			return false
		}
	}
	return true
}

// --- 802_3 ---

// Match8023 is --802_3-sap / --802_3-type (ebt_802_3.c).
type Match8023 struct {
	sapSet, typeSet, sapInv, typeInv bool
	sap                              uint8
	typ                              uint16
}

// Name is the extension's name as ebtables knows it.
func (m *Match8023) Name() string { return "802_3" }

func (m *Match8023) parse(opt, arg string, inv bool) error {
	v, err := parseHex(arg, 16)
	if opt == "802_3-sap" {
		if err != nil || v > 0xff {
			return paramErr("Problem with specified sap hex value, %s", arg)
		}
		m.sapSet, m.sapInv, m.sap = true, inv, uint8(v)
		return nil
	}
	if err != nil {
		return paramErr("Problem with the specified type hex value, %s", arg)
	}
	m.typeSet, m.typeInv, m.typ = true, inv, uint16(v)
	return nil
}

func (m *Match8023) final(p *ruleParser) error {
	if !p.r.ProtoSet || !p.r.Length || p.r.ProtoInv {
		return paramErr("For 802.3 DSAP/SSAP filtering the protocol must be LENGTH")
	}
	return nil
}

func (m *Match8023) save(b *strings.Builder) {
	if m.sapSet {
		writeInv(b, "--802_3-sap", m.sapInv)
		fmt.Fprintf(b, "0x%02x", m.sap)
	}
	if m.typeSet {
		writeInv(b, "--802_3-type", m.typeInv)
		fmt.Fprintf(b, "0x%04x", m.typ)
	}
}

// match is ebt_802_3_mt: the LLC header after the length field; a
// type needs a SNAP header (DSAP and SSAP 0xaa, UI frame).
func (m *Match8023) match(c *Ctx) bool {
	h := c.netHeader()
	if len(h) < 3 {
		return false
	}
	dsap, ssap, ctrl := h[0], h[1], h[2]
	if m.sapSet {
		// each of SSAP and DSAP is tested with the inversion applied
		if (ssap != m.sap) != m.sapInv || (dsap != m.sap) != m.sapInv {
			return false
		}
	}
	if m.typeSet {
		if dsap != 0xaa || ssap != 0xaa || ctrl&3 != 3 || len(h) < 8 {
			return false
		}
		if (binary.BigEndian.Uint16(h[6:]) == m.typ) == m.typeInv {
			return false
		}
	}
	return true
}
