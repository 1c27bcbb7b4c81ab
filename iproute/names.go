package iproute

import (
	"fmt"
	"strconv"
	"strings"
)

// Names are the iproute2 name databases ip(8) prints numbers with: route
// tables (rt_tables), TOS values (rt_dsfield) and IP protocols
// (/etc/protocols, through getprotobynumber). Build one with
// DefaultNames and add a snapshot's files to it; it is read-only after.
type Names struct {
	tables  map[uint32]string
	tableID map[string]uint32
	ds      [256]string
	protos  [256]string
}

// DefaultNames are the names iproute2 6.1 ships (rt_tables,
// rt_dsfield) and the netbase /etc/protocols names of a Debian host.
func DefaultNames() *Names {
	n := &Names{tables: map[uint32]string{}, tableID: map[string]uint32{}}
	n.AddRTTables([]byte("255 local\n254 main\n253 default\n0 unspec\n"))
	n.AddDSField([]byte("0x0 default\n0x28 AF11\n0x30 AF12\n0x38 AF13\n0x48 AF21\n0x50 AF22\n0x58 AF23\n" +
		"0x68 AF31\n0x70 AF32\n0x78 AF33\n0x88 AF41\n0x90 AF42\n0x98 AF43\n0x20 CS1\n0x40 CS2\n0x60 CS3\n" +
		"0x80 CS4\n0xA0 CS5\n0xC0 CS6\n0xE0 CS7\n0xB8 EF\n"))
	for num, name := range protoNames {
		n.protos[num] = name
	}
	return n
}

// protoNames is getprotobynumber's first name per number in netbase's
// /etc/protocols (the names ip rule show prints for ipproto).
var protoNames = map[int]string{0: "ip", 1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp",
	8: "egp", 9: "igp", 12: "pup", 17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4", 33: "dccp",
	36: "xtp", 37: "ddp", 38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route", 44: "ipv6-frag", 45: "idrp",
	46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 57: "skip", 58: "ipv6-icmp", 59: "ipv6-nonxt",
	60: "ipv6-opts", 73: "rspf", 81: "vmtp", 88: "eigrp", 89: "ospf", 93: "ax.25", 94: "ipip",
	97: "etherip", 98: "encap", 103: "pim", 108: "ipcomp", 112: "vrrp", 115: "l2tp", 124: "isis",
	132: "sctp", 133: "fc", 135: "mobility-header", 136: "udplite", 137: "mpls-in-ip", 138: "manet",
	139: "hip", 140: "shim6", 141: "wesp", 142: "rohc", 143: "ethernet"}

// readIDNames reads "ID NAME" lines as lib/rt_names.c fread_id_name does:
// blank and '#' lines skipped, ids in decimal or 0x hex. It stops at
// the first malformed line, as iproute2 does ("Database ... is
// corrupted").
func readIDNames(data []byte, fn func(id uint64, name string)) {
	for _, ln := range strings.Split(string(data), "\n") {
		ln = strings.TrimLeft(ln, " \t")
		if ln == "" || ln[0] == '#' {
			continue
		}
		f := strings.Fields(ln)
		if len(f) < 2 {
			return
		}
		var id uint64
		var err error
		if strings.HasPrefix(f[0], "0x") {
			id, err = strconv.ParseUint(f[0][2:], 16, 32)
		} else {
			id, err = strconv.ParseUint(f[0], 10, 31)
		}
		if err != nil {
			return
		}
		fn(id, f[1])
	}
}

// AddRTTables adds the names of an rt_tables file. A later name for an
// id wins when printing, as in iproute2's hash (newest entry first).
func (n *Names) AddRTTables(data []byte) {
	readIDNames(data, func(id uint64, name string) {
		n.tables[uint32(id)] = name
		if _, dup := n.tableID[name]; !dup {
			n.tableID[name] = uint32(id)
		}
	})
}

// AddDSField adds the names of an rt_dsfield file.
func (n *Names) AddDSField(data []byte) {
	readIDNames(data, func(id uint64, name string) {
		if id < 256 {
			n.ds[id] = name
		}
	})
}

// Table is rtnl_rttable_n2a: the table's name, else its number.
func (n *Names) Table(id uint32) string {
	if s, ok := n.tables[id]; ok {
		return s
	}
	return strconv.FormatUint(uint64(id), 10)
}

// TableID is rtnl_rttable_a2n: a name, or a number in any base strtoul
// reads.
func (n *Names) TableID(s string) (uint32, bool) {
	if id, ok := n.tableID[s]; ok {
		return id, true
	}
	v, ok := strtoul(s, 0)
	if !ok || v > 0xffffffff {
		return 0, false
	}
	return uint32(v), true
}

// DSField is rtnl_dsfield_n2a: the TOS byte's name, else 0x%02x.
func (n *Names) DSField(v uint8) string {
	if s := n.ds[v]; s != "" {
		return s
	}
	return fmt.Sprintf("0x%02x", v)
}

// DSFieldValue is rtnl_dsfield_a2n: a name, else a hex number <= 255.
func (n *Names) DSFieldValue(s string) (uint8, bool) {
	for i, name := range n.ds {
		if name != "" && name == s {
			return uint8(i), true
		}
	}
	v, ok := strtoul(s, 16)
	if !ok || v > 255 {
		return 0, false
	}
	return uint8(v), true
}

// Proto is inet_proto_n2a: the protocol's name, else "ipproto-N".
func (n *Names) Proto(p uint8) string {
	if s := n.protos[p]; s != "" {
		return s
	}
	return fmt.Sprintf("ipproto-%d", p)
}

// ProtoValue is inet_proto_a2n: a decimal number <= 255, else a name.
func (n *Names) ProtoValue(s string) (uint8, bool) {
	if v, ok := strtoul(s, 10); ok {
		if v <= 255 {
			return uint8(v), true
		}
		return 0, false
	}
	for i, name := range n.protos {
		if name != "" && name == s {
			return uint8(i), true
		}
	}
	// getprotobyname also knows the aliases; the usual upper-case ones
	switch s {
	case "IP":
		return 0, true
	case "ICMP":
		return 1, true
	case "TCP":
		return 6, true
	case "UDP":
		return 17, true
	}
	return 0, false
}

// strtoul is C's strtoul(s, &end, base) with ip's checks (utils.c
// get_unsigned): leading blanks and a sign are taken, the whole string
// must be digits, and a negative number wraps (so it is out of range
// for the 32-bit readers). Base 0 reads 0x hex and 0 octal.
func strtoul(s string, base int) (uint64, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\v' || s[i] == '\f' || s[i] == '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	rest := s[i:]
	if (base == 0 || base == 16) && len(rest) > 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X') && isDigit(rest[2], 16) {
		rest, base = rest[2:], 16
	} else if base == 0 && len(rest) > 1 && rest[0] == '0' {
		base = 8
	} else if base == 0 {
		base = 10
	}
	if rest == "" {
		return 0, false
	}
	var v uint64
	over := false
	for j := 0; j < len(rest); j++ {
		if !isDigit(rest[j], base) {
			return 0, false
		}
		d := digitVal(rest[j])
		if v > (^uint64(0)-d)/uint64(base) {
			over = true
		}
		v = v*uint64(base) + d
	}
	if over {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

func digitVal(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'z':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return uint64(c-'A') + 10
	}
	return 99
}

func isDigit(c byte, base int) bool { return digitVal(c) < uint64(base) }
