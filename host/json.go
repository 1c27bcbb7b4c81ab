package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/route"
)

// ParseError is a malformed snapshot file: the file, and the place in
// it (line, and the byte offset for JSON).
type ParseError struct {
	File   string
	Line   int   // 1-based; 0 if unknown
	Offset int64 // byte offset for JSON files, -1 otherwise
	Err    error
}

func (e *ParseError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s:%d: (byte %d) %v", e.File, e.Line, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// decodeArray decodes a JSON array of objects one element at a time, so
// that an error names the element's place, and calls fn for each.
func decodeArray[T any](file string, data []byte, fn func(*T) error) error {
	fail := func(off int64, err error) error {
		return &ParseError{File: file, Line: lineAt(data, off), Offset: off, Err: err}
	}
	jsonErr := func(dec *json.Decoder, err error) error {
		off := dec.InputOffset()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) {
			off = se.Offset
		} else if errors.As(err, &te) {
			off = te.Offset
		} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			off = int64(len(data))
		}
		return fail(off, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil // no output: no entries
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fail(dec.InputOffset(), fmt.Errorf("want a JSON array, found %v", tok))
	}
	for dec.More() {
		off := dec.InputOffset()
		var v T
		if err := dec.Decode(&v); err != nil {
			return jsonErr(dec, err)
		}
		// InputOffset is before the separating comma and blanks.
		for off < int64(len(data)) && (data[off] == ',' || data[off] == ' ' || data[off] == '\n' || data[off] == '\t' || data[off] == '\r') {
			off++
		}
		if err := fn(&v); err != nil {
			return fail(off, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return jsonErr(dec, err)
	}
	if _, err := dec.Token(); err == nil {
		return fail(dec.InputOffset(), errors.New("data after the JSON array"))
	}
	return nil
}

// --- ip -j -d link show

type jsonLink struct {
	Ifindex  int      `json:"ifindex"`
	Ifname   string   `json:"ifname"`
	Flags    []string `json:"flags"`
	MTU      int      `json:"mtu"`
	Master   string   `json:"master"`
	Group    any      `json:"group"`
	LinkType string   `json:"link_type"`
}

func parseLinks(file string, data []byte) ([]route.Link, error) {
	var out []route.Link
	err := decodeArray(file, data, func(j *jsonLink) error {
		if j.Ifindex <= 0 || j.Ifname == "" {
			return fmt.Errorf("link entry without ifindex/ifname")
		}
		l := route.Link{Name: j.Ifname, Index: j.Ifindex, MTU: j.MTU, Master: j.Master}
		for _, f := range j.Flags {
			switch f {
			case "UP":
				l.Up = true
			case "LOOPBACK":
				l.Loopback = true
			case "MULTICAST":
				l.Multicast = true
			}
		}
		switch g := j.Group.(type) {
		case float64:
			l.Group = uint32(g)
		case string:
			if g != "default" {
				n, err := strconv.ParseUint(g, 0, 32)
				if err != nil {
					return fmt.Errorf("link %s: group %q", j.Ifname, g)
				}
				l.Group = uint32(n)
			}
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// --- ip -j addr show

type jsonAddrInfo struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	Address   string `json:"address"`
	Prefixlen int    `json:"prefixlen"`
	Broadcast string `json:"broadcast"`
	Scope     string `json:"scope"`
	Secondary bool   `json:"secondary"`
	Label     string `json:"label"`
}

type jsonAddrLink struct {
	Ifindex  int            `json:"ifindex"`
	Ifname   string         `json:"ifname"`
	AddrInfo []jsonAddrInfo `json:"addr_info"`
}

func parseAddrs(file string, data []byte) ([]route.Addr, error) {
	var out []route.Addr
	err := decodeArray(file, data, func(j *jsonAddrLink) error {
		for _, ai := range j.AddrInfo {
			if ai.Family != "inet" {
				continue
			}
			local, err := netip.ParseAddr(ai.Local)
			if err != nil || !local.Is4() {
				return fmt.Errorf("%s: bad local address %q", j.Ifname, ai.Local)
			}
			if ai.Prefixlen < 0 || ai.Prefixlen > 32 {
				return fmt.Errorf("%s: bad prefixlen %d", j.Ifname, ai.Prefixlen)
			}
			a := route.Addr{Ifindex: j.Ifindex, Dev: j.Ifname, Local: local, Secondary: ai.Secondary, Label: ai.Label}
			pfxAddr := local
			if ai.Address != "" { // point-to-point peer
				p, err := netip.ParseAddr(ai.Address)
				if err != nil || !p.Is4() {
					return fmt.Errorf("%s: bad peer address %q", j.Ifname, ai.Address)
				}
				pfxAddr = p
			}
			a.Prefix = netip.PrefixFrom(pfxAddr, ai.Prefixlen)
			if ai.Broadcast != "" {
				b, err := netip.ParseAddr(ai.Broadcast)
				if err != nil {
					return fmt.Errorf("%s: bad broadcast %q", j.Ifname, ai.Broadcast)
				}
				a.Broadcast = b
			}
			if ai.Scope != "" {
				s, ok := route.ParseScope(ai.Scope)
				if !ok {
					return fmt.Errorf("%s: bad scope %q", j.Ifname, ai.Scope)
				}
				a.Scope = s
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// --- ip -j route show table all

type jsonNexthop struct {
	Gateway string   `json:"gateway"`
	Dev     string   `json:"dev"`
	Weight  int      `json:"weight"`
	Flags   []string `json:"flags"`
}

type jsonRoute struct {
	Type     string        `json:"type"`
	Dst      string        `json:"dst"`
	Gateway  string        `json:"gateway"`
	Via      any           `json:"via"`
	Dev      string        `json:"dev"`
	Table    any           `json:"table"`
	Protocol any           `json:"protocol"`
	Scope    any           `json:"scope"`
	Prefsrc  string        `json:"prefsrc"`
	Metric   *uint32       `json:"metric"`
	TOS      any           `json:"tos"`
	Flags    []string      `json:"flags"`
	Nexthops []jsonNexthop `json:"nexthops"`
}

// tableNames resolves table names; rt_tables holds names from the
// snapshot's rt_tables file.
type tableNames map[string]uint32

func (t tableNames) id(v any) (uint32, error) {
	switch x := v.(type) {
	case nil:
		return route.TableMain, nil
	case float64:
		return uint32(x), nil
	case string:
		if id, ok := route.TableByName(x); ok {
			return id, nil
		}
		if n, err := strconv.ParseUint(x, 0, 32); err == nil {
			return uint32(n), nil
		}
		if id, ok := t[x]; ok {
			return id, nil
		}
		return 0, fmt.Errorf("unknown table name %q (no rt_tables entry)", x)
	}
	return 0, fmt.Errorf("bad table %v", v)
}

func numOrString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case float64:
		return strconv.FormatUint(uint64(x), 10), true
	}
	return "", false
}

// dsNames are the names iproute2 prints for TOS/DSCP byte values
// (/etc/iproute2/rt_dsfield as shipped); a snapshot's rt_dsfield file adds
// to them.
var dsNames = map[string]uint8{"default": 0, "AF11": 0x28, "AF12": 0x30, "AF13": 0x38, "AF21": 0x48,
	"AF22": 0x50, "AF23": 0x58, "AF31": 0x68, "AF32": 0x70, "AF33": 0x78, "AF41": 0x88, "AF42": 0x90,
	"AF43": 0x98, "CS1": 0x20, "CS2": 0x40, "CS3": 0x60, "CS4": 0x80, "CS5": 0xa0, "CS6": 0xc0,
	"CS7": 0xe0, "EF": 0xb8}

func (t tableNames) tos(v any) (uint8, error) {
	s, ok := numOrString(v)
	if !ok {
		return 0, fmt.Errorf("bad tos %v", v)
	}
	if s == "" {
		return 0, nil
	}
	if n, ok := t["\x00ds:"+s]; ok {
		return uint8(n), nil
	}
	if n, ok := dsNames[s]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("bad tos %q", s)
	}
	return uint8(n), nil
}

func parseDst(s string) (netip.Prefix, bool, error) {
	if s == "" {
		return netip.Prefix{}, false, errors.New("route without dst")
	}
	// Old iproute2 printed "broadcast 10.0.0.255" and the like in dst.
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		s = s[i+1:]
	}
	if s == "default" {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true, nil
	}
	if strings.Contains(s, ":") {
		return netip.Prefix{}, false, nil // IPv6
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, false, fmt.Errorf("bad dst %q", s)
		}
		return p.Masked(), true, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false, fmt.Errorf("bad dst %q", s)
	}
	return netip.PrefixFrom(a, 32), true, nil
}

func parseGW(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad gateway %q", s)
	}
	return a, nil
}

func hasFlag(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func parseRoutes(file string, data []byte, names tableNames) ([]route.Route, error) {
	var out []route.Route
	err := decodeArray(file, data, func(j *jsonRoute) error {
		dst, v4, err := parseDst(j.Dst)
		if err != nil || !v4 {
			return err
		}
		r := route.Route{Dst: dst, Type: route.Unicast}
		if j.Type != "" {
			t, ok := route.ParseType(j.Type)
			if !ok {
				return fmt.Errorf("route %s: unknown type %q", j.Dst, j.Type)
			}
			r.Type = t
		}
		if r.Table, err = names.id(j.Table); err != nil {
			return fmt.Errorf("route %s: %v", j.Dst, err)
		}
		p, ok := numOrString(j.Protocol)
		if !ok {
			return fmt.Errorf("route %s: bad protocol %v", j.Dst, j.Protocol)
		}
		r.Protocol = p
		sc, ok := numOrString(j.Scope)
		if !ok {
			return fmt.Errorf("route %s: bad scope %v", j.Dst, j.Scope)
		}
		if sc != "" {
			if r.Scope, ok = route.ParseScope(sc); !ok {
				return fmt.Errorf("route %s: bad scope %q", j.Dst, sc)
			}
		}
		if j.Prefsrc != "" {
			if r.PrefSrc, err = netip.ParseAddr(j.Prefsrc); err != nil {
				return fmt.Errorf("route %s: bad prefsrc %q", j.Dst, j.Prefsrc)
			}
		}
		if j.Metric != nil {
			r.Metric = *j.Metric
		}
		if r.TOS, err = names.tos(j.TOS); err != nil {
			return fmt.Errorf("route %s: %v", j.Dst, err)
		}
		if len(j.Nexthops) > 0 {
			for _, n := range j.Nexthops {
				gw, err := parseGW(n.Gateway)
				if err != nil {
					return fmt.Errorf("route %s: %v", j.Dst, err)
				}
				r.Nexthops = append(r.Nexthops, route.Nexthop{Gateway: gw, Dev: n.Dev, Weight: max(n.Weight, 1),
					OnLink: hasFlag(n.Flags, "onlink"), Dead: hasFlag(n.Flags, "dead"), LinkDown: hasFlag(n.Flags, "linkdown")})
			}
		} else if j.Dev != "" || j.Gateway != "" {
			gw, err := parseGW(j.Gateway)
			if err != nil {
				return fmt.Errorf("route %s: %v", j.Dst, err)
			}
			r.Nexthops = []route.Nexthop{{Gateway: gw, Dev: j.Dev, Weight: 1,
				OnLink: hasFlag(j.Flags, "onlink"), Dead: hasFlag(j.Flags, "dead"), LinkDown: hasFlag(j.Flags, "linkdown")}}
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// --- ip -j rule show

// flag is a JSON key iproute2 prints with a null value ("not": null):
// true when the key is present.
type flag bool

func (f *flag) UnmarshalJSON([]byte) error { *f = true; return nil }

type jsonRule struct {
	Priority         *uint32 `json:"priority"`
	Not              flag    `json:"not"`
	Src              string  `json:"src"`
	SrcLen           *int    `json:"srclen"`
	Dst              string  `json:"dst"`
	DstLen           *int    `json:"dstlen"`
	TOS              any     `json:"tos"`
	DSCP             any     `json:"dscp"`
	FWMark           string  `json:"fwmark"`
	FWMask           string  `json:"fwmask"`
	IIF              string  `json:"iif"`
	OIF              string  `json:"oif"`
	L3mdev           flag    `json:"l3mdev"`
	UIDStart         *uint32 `json:"uid_start"`
	UIDEnd           *uint32 `json:"uid_end"`
	IPProto          any     `json:"ipproto"`
	SPort            *uint16 `json:"sport"`
	SPortStart       *uint16 `json:"sport_start"`
	SPortEnd         *uint16 `json:"sport_end"`
	DPort            *uint16 `json:"dport"`
	DPortStart       *uint16 `json:"dport_start"`
	DPortEnd         *uint16 `json:"dport_end"`
	Table            any     `json:"table"`
	Goto             *uint32 `json:"goto"`
	Nop              flag    `json:"nop"`
	Action           string  `json:"action"`
	SuppressPrefixln *int    `json:"suppress_prefixlen"`
	SuppressIfgroup  any     `json:"suppress_ifgroup"`
}

var protoNames = map[string]uint8{"ip": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17,
	"ipv6": 41, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58, "ospf": 89, "pim": 103, "sctp": 132,
	"dccp": 33, "udplite": 136, "mptcp": 0}

func parseProto(v any) (uint8, error) {
	s, ok := numOrString(v)
	if !ok {
		return 0, fmt.Errorf("bad ipproto %v", v)
	}
	if s == "" {
		return 0, nil
	}
	if n, ok := protoNames[s]; ok && s != "mptcp" {
		return n, nil
	}
	s = strings.TrimPrefix(s, "ipproto-")
	n, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown ipproto %q", s)
	}
	return uint8(n), nil
}

func parsePrefix(s string, l *int) (netip.Prefix, error) {
	if s == "" || s == "all" {
		return netip.Prefix{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	bits := 32
	if l != nil {
		bits = *l
	}
	if bits < 0 || bits > 32 {
		return netip.Prefix{}, fmt.Errorf("bad prefix length %d", bits)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func parseU32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	return uint32(n), err
}

func portRange(one, start, end *uint16) route.PortRange {
	switch {
	case one != nil:
		return route.PortRange{Start: *one, End: *one}
	case start != nil && end != nil:
		return route.PortRange{Start: *start, End: *end}
	}
	return route.PortRange{}
}

func parseRules(file string, data []byte, names tableNames) ([]route.Rule, error) {
	var out []route.Rule
	err := decodeArray(file, data, func(j *jsonRule) error {
		r := route.Rule{UIDEnd: ^uint32(0), SuppressPrefixLen: -1, SuppressIfgroup: -1}
		if j.Priority != nil {
			r.Priority = *j.Priority
		}
		r.Not = bool(j.Not)
		var err error
		if r.Src, err = parsePrefix(j.Src, j.SrcLen); err != nil {
			return fmt.Errorf("rule %d: from: %v", r.Priority, err)
		}
		if r.Dst, err = parsePrefix(j.Dst, j.DstLen); err != nil {
			return fmt.Errorf("rule %d: to: %v", r.Priority, err)
		}
		if r.TOS, err = names.tos(j.TOS); err != nil {
			return fmt.Errorf("rule %d: %v", r.Priority, err)
		}
		if j.DSCP != nil {
			d, err := names.tos(j.DSCP)
			if err != nil || d > 63 {
				return fmt.Errorf("rule %d: bad dscp %v", r.Priority, j.DSCP)
			}
			r.DSCP, r.HasDSCP = d, true
		}
		if j.FWMark != "" || j.FWMask != "" {
			r.Mask = ^uint32(0)
			if j.FWMark != "" {
				if r.Mark, err = parseU32(j.FWMark); err != nil {
					return fmt.Errorf("rule %d: bad fwmark %q", r.Priority, j.FWMark)
				}
			}
			if j.FWMask != "" {
				if r.Mask, err = parseU32(j.FWMask); err != nil {
					return fmt.Errorf("rule %d: bad fwmask %q", r.Priority, j.FWMask)
				}
			}
		}
		r.IIF, r.OIF = j.IIF, j.OIF
		r.L3mdev = bool(j.L3mdev)
		if j.UIDStart != nil && j.UIDEnd != nil {
			r.UIDStart, r.UIDEnd = *j.UIDStart, *j.UIDEnd
		}
		if r.IPProto, err = parseProto(j.IPProto); err != nil {
			return fmt.Errorf("rule %d: %v", r.Priority, err)
		}
		r.SPort = portRange(j.SPort, j.SPortStart, j.SPortEnd)
		r.DPort = portRange(j.DPort, j.DPortStart, j.DPortEnd)
		switch {
		case j.Goto != nil:
			r.Action, r.Goto = route.ActGoto, *j.Goto
		case bool(j.Nop):
			r.Action = route.ActNop
		case j.Action == "prohibit":
			r.Action = route.ActProhibit
		case j.Action == "unreachable":
			r.Action = route.ActUnreachable
		case j.Action == "blackhole":
			r.Action = route.ActBlackhole
		case j.Action != "" && j.Action != "to_tbl":
			return fmt.Errorf("rule %d: unknown action %q", r.Priority, j.Action)
		default:
			r.Action = route.ActToTable
			if j.Table == nil {
				return fmt.Errorf("rule %d: no table and no action", r.Priority)
			}
			if r.Table, err = names.id(j.Table); err != nil {
				return fmt.Errorf("rule %d: %v", r.Priority, err)
			}
		}
		if j.SuppressPrefixln != nil {
			r.SuppressPrefixLen = *j.SuppressPrefixln
		}
		if j.SuppressIfgroup != nil {
			s, ok := numOrString(j.SuppressIfgroup)
			n, err := strconv.ParseInt(s, 0, 32)
			if !ok || err != nil {
				if s != "default" {
					return fmt.Errorf("rule %d: bad suppress_ifgroup %v", r.Priority, j.SuppressIfgroup)
				}
				n = 0
			}
			r.SuppressIfgroup = int(n)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// parseRTTables reads an iproute2 rt_tables (or, with prefix "\x00ds:",
// rt_dsfield) file: "ID NAME" lines.
func parseRTTables(data []byte, into tableNames, prefix string) {
	for _, ln := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(ln, '#'); i >= 0 {
			ln = ln[:i]
		}
		f := strings.Fields(ln)
		if len(f) != 2 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 0, 32); err == nil {
			into[prefix+f[1]] = uint32(n)
		}
	}
}
