package ebtables

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// STPMatch is the stp match (libebt_stp.c, net/bridge/netfilter/
// ebt_stp.c). Ranges are [lo, hi]; MACs have masks.
type STPMatch struct {
	set, inv                               uint16 // bit per field, in stpFields order
	typ, flags                             uint8
	ranges                                 [8][2]uint32 // root-prio, root-cost, sender-prio, port, msg-age, max-age, hello, fwd-delay
	rootAddr, rootMask, sendAddr, sendMask packet.MAC
}

// stpFields are the options in the order libebt_stp prints them.
var stpFields = []string{"stp-type", "stp-flags", "stp-root-prio", "stp-root-addr", "stp-root-cost",
	"stp-sender-prio", "stp-sender-addr", "stp-port", "stp-msg-age", "stp-max-age",
	"stp-hello-time", "stp-forward-delay"}

// rangeIdx maps a field to its slot in ranges, -1 for the others.
var stpRangeIdx = []int{-1, -1, 0, -1, 1, 2, -1, 3, 4, 5, 6, 7}

func init() {
	var opts []optDef
	for _, f := range stpFields {
		opts = append(opts, optDef{name: f, hasArg: true})
	}
	register(&extDef{name: "stp", kind: kMatch, opts: opts, make: func() extParser { return &STPMatch{} }})
}

// Name is the extension's name as ebtables knows it.
func (m *STPMatch) Name() string { return "stp" }

func (m *STPMatch) parse(opt, arg string, inv bool) error {
	f := -1
	for i, n := range stpFields {
		if n == opt {
			f = i
		}
	}
	m.set |= 1 << f
	if inv {
		m.inv |= 1 << f
	}
	switch opt {
	case "stp-type":
		switch strings.ToLower(arg) {
		case "config":
			m.typ = 0
		case "tcn":
			m.typ = 0x80
		default:
			v, err := strconv.ParseUint(arg, 0, 8)
			if err != nil {
				return paramErr("Bad --stp-type argument")
			}
			m.typ = uint8(v)
		}
	case "stp-flags":
		switch strings.ToLower(arg) {
		case "topology-change":
			m.flags = 1
		case "topology-change-ack":
			m.flags = 0x80
		default:
			v, err := strconv.ParseUint(arg, 0, 8)
			if err != nil {
				return paramErr("Bad --stp-flags argument")
			}
			m.flags = uint8(v)
		}
	case "stp-root-addr", "stp-sender-addr":
		a, mk, ok := macAndMask(arg)
		if !ok {
			return paramErr("Bad --%s address", opt)
		}
		if opt == "stp-root-addr" {
			m.rootAddr, m.rootMask = a, mk
		} else {
			m.sendAddr, m.sendMask = a, mk
		}
	default:
		max := uint64(0xffff)
		if opt == "stp-root-cost" {
			max = 0xffffffff
		}
		lo, hi, isR := strings.Cut(arg, ":")
		num := func(s string, def uint64) (uint64, bool) {
			if s == "" {
				return def, true
			}
			v, err := strconv.ParseUint(s, 0, 64)
			return v, err == nil && v <= max
		}
		msg := "Bad --" + opt + " range"
		if opt == "stp-port" {
			msg = "Bad --stp-port-range"
		}
		l, ok1 := num(lo, 0)
		h := l
		ok2 := true
		if isR {
			h, ok2 = num(hi, max)
		}
		if !ok1 || !ok2 || l > h {
			return paramErr("%s", msg)
		}
		m.ranges[stpRangeIdx[f]] = [2]uint32{uint32(l), uint32(h)}
	}
	return nil
}

func (m *STPMatch) final(p *ruleParser) error { return nil }

func (m *STPMatch) save(b *strings.Builder) {
	for f, n := range stpFields {
		if m.set&(1<<f) == 0 {
			continue
		}
		writeInv(b, "--"+n, m.inv&(1<<f) != 0)
		switch n {
		case "stp-type":
			switch m.typ {
			case 0:
				b.WriteString("config")
			case 0x80:
				b.WriteString("tcn")
			default:
				b.WriteString(strconv.Itoa(int(m.typ)))
			}
		case "stp-flags":
			switch m.flags {
			case 1:
				b.WriteString("topology-change")
			case 0x80:
				b.WriteString("topology-change-ack")
			default:
				b.WriteString(strconv.Itoa(int(m.flags)))
			}
		case "stp-root-addr":
			writeMACMask(b, m.rootAddr, m.rootMask)
		case "stp-sender-addr":
			writeMACMask(b, m.sendAddr, m.sendMask)
		default:
			r := m.ranges[stpRangeIdx[f]]
			b.WriteString(strconv.FormatUint(uint64(r[0]), 10))
			if r[1] != r[0] {
				b.WriteString(":" + strconv.FormatUint(uint64(r[1]), 10))
			}
		}
	}
}

// match is ebt_stp_mt (net/bridge/netfilter/ebt_stp.c). The kernel's
// struct stp_header is six bytes (dsap, ssap, ctrl, pid, vers, type) and
// the config BPDU follows it: this follows those offsets as they are.
func (m *STPMatch) match(c *Ctx) bool {
	h := c.netHeader()
	if len(h) < 6 {
		return false
	}
	// "The stp code only considers these": the six bytes must be
	// 42 42 03 00 00 00 (ebt_stp_mt's memcmp covers the type byte too,
	// so only configuration BPDUs, type 0, ever match)
	if h[0] != 0x42 || h[1] != 0x42 || h[2] != 0x03 || h[3] != 0 || h[4] != 0 || h[5] != 0 {
		return false
	}
	test := func(f int, ok bool) bool { return ok != (m.inv&(1<<f) != 0) }
	if m.set&1 != 0 && !test(0, h[5] == m.typ) {
		return false
	}
	if h[5] != 0 || m.set&^1 == 0 {
		return true
	}
	st := h[6:]
	if len(st) < 31 { // sizeof(struct stp_config_pdu)
		return false
	}
	in := func(i int, v uint32) bool { r := m.ranges[i]; return v >= r[0] && v <= r[1] }
	var ra, sa packet.MAC
	copy(ra[:], st[3:9])
	copy(sa[:], st[15:21])
	checks := []struct {
		f  int
		ok func() bool
	}{
		{1, func() bool { return st[0] == m.flags }},
		{2, func() bool { return in(0, uint32(binary.BigEndian.Uint16(st[1:]))) }},
		{3, func() bool { return maskedEq(ra, m.rootAddr, m.rootMask) }},
		{4, func() bool { return in(1, binary.BigEndian.Uint32(st[9:])) }},
		{5, func() bool { return in(2, uint32(binary.BigEndian.Uint16(st[13:]))) }},
		{6, func() bool { return maskedEq(sa, m.sendAddr, m.sendMask) }},
		{7, func() bool { return in(3, uint32(binary.BigEndian.Uint16(st[21:]))) }},
		{8, func() bool { return in(4, uint32(binary.BigEndian.Uint16(st[23:]))) }},
		{9, func() bool { return in(5, uint32(binary.BigEndian.Uint16(st[25:]))) }},
		{10, func() bool { return in(6, uint32(binary.BigEndian.Uint16(st[27:]))) }},
		{11, func() bool { return in(7, uint32(binary.BigEndian.Uint16(st[29:]))) }},
	}
	for _, ck := range checks {
		if m.set&(1<<ck.f) != 0 && !test(ck.f, ck.ok()) {
			return false
		}
	}
	return true
}
