package iptables

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Address, mask, protocol and port parsing as libxtables does it
// (libxtables/xtables.c: xtables_ipparse_multiple, parse_ipmask,
// __numeric_to_ipaddr, xtables_parse_protocol, xtables_parse_port).
// Host names are not resolved: a rule set for uswitch must be numeric.

type addrMask struct{ addr, mask uint32 }

// numericToIPAddr is __numeric_to_ipaddr: dotted quad, with fewer than
// four parts allowed for an address ("10" = 10.0.0.0) but not a mask.
func numericToIPAddr(s string, isMask bool) (uint32, bool) {
	if len(s) > 19 {
		s = s[:19]
	}
	// strings.SplitN(s, ".", 4), without allocating
	var pa [4]string
	n := 0
	for n < 3 {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		pa[n], s = s[:i], s[i+1:]
		n++
	}
	pa[n] = s
	parts := pa[:n+1]
	var b [4]uint64
	for i := 0; i < 3; i++ {
		if i >= len(parts)-1 {
			if isMask || i != len(parts)-1 {
				return 0, false
			}
			v, ok := strtoul(parts[i], 0, 255)
			if !ok {
				return 0, false
			}
			b[i] = v
			return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
		}
		v, ok := strtoul(parts[i], 0, 255)
		if !ok {
			return 0, false
		}
		b[i] = v
	}
	v, ok := strtoul(parts[3], 0, 255)
	if !ok {
		return 0, false
	}
	b[3] = v
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

func parseIPMask(m string, hasMask bool) (uint32, error) {
	if !hasMask {
		return 0xffffffff, nil
	}
	if v, ok := numericToIPAddr(m, true); ok {
		return v, nil
	}
	n, ok := strtoul(m, 0, 32)
	if !ok {
		return 0, Errorf("invalid mask `%s' specified", m)
	}
	if n == 0 {
		return 0, nil
	}
	return 0xffffffff << (32 - n), nil
}

// ParseAddrMask parses one "addr[/mask]" as xtables_ipparse_any does
// (no host name lookups); the address is masked.
func ParseAddrMask(s string) (addr, mask uint32, err error) {
	host, m, has := cutLast(s, "/")
	mask, err = parseIPMask(m, has)
	if err != nil {
		return 0, 0, err
	}
	if mask == 0 {
		host = "0.0.0.0"
	}
	a, ok := numericToIPAddr(host, false)
	if !ok {
		return 0, 0, Errorf("host/network `%s' not found", host)
	}
	return a & mask, mask, nil
}

// ParseAddr parses a plain dotted address (xtables_numeric_to_ipaddr).
func ParseAddr(s string) (uint32, bool) { return numericToIPAddr(s, false) }

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// parseAddrList is xtables_ipparse_multiple: comma-separated addresses.
// The addresses are appended to out.
func parseAddrList(s string, out []addrMask) ([]addrMask, error) {
	if strings.IndexByte(s, ',') < 0 && len(s) <= 255 {
		a, m, err := ParseAddrMask(strings.TrimLeft(s, " \t\n\v\f\r"))
		if err != nil {
			return nil, err
		}
		return append(out, addrMask{a, m}), nil
	}
	items := strings.Split(s, ",")
	for _, it := range items {
		it = strings.TrimLeft(it, " \t\n\v\f\r")
		if len(it) > 255 {
			return nil, Errorf("Hostname too long")
		}
		a, m, err := ParseAddrMask(it)
		if err != nil {
			return nil, err
		}
		out = append(out, addrMask{a, m})
	}
	return out, nil
}

// FormatAddr prints a host-order IPv4 address dotted.
func FormatAddr(a uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
}

// MaskLen returns the prefix length of a CIDR mask, or -1 when the mask
// is not contiguous.
func MaskLen(m uint32) int {
	l := bits.LeadingZeros32(^m) // leading ones
	if l < 32 && m<<l != 0 {
		return -1
	}
	return l
}

// FormatMask prints a mask as iptables-save does (mask_to_str): the
// prefix length, or dotted when not contiguous.
func FormatMask(m uint32) string {
	if l := MaskLen(m); l >= 0 {
		return strconv.Itoa(l)
	}
	return FormatAddr(m)
}

// FormatAddrMask prints "a.b.c.d/len" (always with the prefix).
func FormatAddrMask(a, m uint32) string { return FormatAddr(a) + "/" + FormatMask(m) }

// chainProtos is xtables_chain_protos: names printed by iptables-save.
var chainProtos = []struct {
	name string
	num  uint8
}{
	{"tcp", 6}, {"sctp", 132}, {"udp", 17}, {"udplite", 136}, {"icmp", 1},
	{"ipv6-icmp", 58}, {"icmpv6", 58}, {"esp", 50}, {"ah", 51},
	{"mobility-header", 135}, {"ipv6-mh", 135}, {"mh", 135}, {"dccp", 33},
	{"ipcomp", 108}, {"all", 0},
}

// etcProtocols is the IANA protocol-number registry names as Debian's
// netbase lists them, for getprotobyname.
var etcProtocols = map[string]uint8{
	"ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5,
	"tcp": 6, "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22,
	"rdp": 27, "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38,
	"ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47,
	"esp": 50, "ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59,
	"ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93,
	"ipip": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112,
	"l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135,
	"udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140,
	"wesp": 141, "rohc": 142, "ethernet": 143,
}

// parseProtocol is xtables_parse_protocol.
func parseProtocol(s string) (uint8, error) {
	if v, ok := strtoul(s, 0, 255); ok {
		return uint8(v), nil
	}
	for _, p := range chainProtos {
		if p.name == s {
			return p.num, nil
		}
	}
	if v, ok := etcProtocols[s]; ok {
		return v, nil
	}
	return 0, Errorf("unknown protocol \"%s\" specified", s)
}

// protoName is proto_to_name with nolookup: the fixed table only.
func protoName(n uint8) string {
	for _, p := range chainProtos {
		if p.num == n {
			return p.name
		}
	}
	return ""
}

// protoSaveName is proto_to_name(proto, 0) as iptables 1.8.9's
// save_rule_details uses it: the fixed table, then getprotobynumber (the
// first name /etc/protocols gives the number).
func protoSaveName(n uint8) string {
	if s := protoName(n); s != "" {
		return s
	}
	if n == 0 {
		return ""
	}
	return protocolByNumber[n]
}

// protocolByNumber is the official (first) name of each number in
// Debian's /etc/protocols.
var protocolByNumber = map[uint8]string{
	1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp", 9: "igp",
	12: "pup", 17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4", 33: "dccp",
	36: "xtp", 37: "ddp", 38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route", 44: "ipv6-frag",
	45: "idrp", 46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 57: "skip", 58: "ipv6-icmp",
	59: "ipv6-nonxt", 60: "ipv6-opts", 73: "rspf", 81: "vmtp", 88: "eigrp", 89: "ospf",
	93: "ax.25", 94: "ipip", 97: "etherip", 98: "encap", 103: "pim", 108: "ipcomp",
	112: "vrrp", 115: "l2tp", 124: "isis", 132: "sctp", 133: "fc", 135: "mobility-header",
	136: "udplite", 137: "mpls-in-ip", 138: "manet", 139: "hip", 140: "shim6", 141: "wesp",
	142: "rohc", 143: "ethernet",
}

// ParsePort is xtables_parse_port: a number 0-65535 or a service name
// (for proto "tcp", "udp", ... or any when proto is "").
func ParsePort(s, proto string) (uint16, error) {
	if v, ok := strtoul(s, 0, 65535); ok {
		return uint16(v), nil
	}
	if p, ok := lookupService(s, proto); ok {
		return p, nil
	}
	return 0, Errorf("invalid port/service `%s' specified", s)
}

// ParsePortRange parses "a", "a:b", ":b" (0:b) and "a:" (a:65535), as
// xtables_parse_port ranges in libxt_tcp.c/udp.c do.
func ParsePortRange(s, proto string) (lo, hi uint16, err error) {
	a, b, has := strings.Cut(s, ":")
	if !has {
		p, err := ParsePort(s, proto)
		return p, p, err
	}
	lo, hi = 0, 65535
	if a != "" {
		if lo, err = ParsePort(a, proto); err != nil {
			return
		}
	}
	if b != "" {
		if hi, err = ParsePort(b, proto); err != nil {
			return
		}
	}
	return lo, hi, nil
}
