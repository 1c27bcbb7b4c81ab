package iproute

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/uswitch-lab/uswitch/route"
)

// GetArgs are the selectors of `ip route get` (ip/iproute.c
// iproute_get).
type GetArgs struct {
	Dst netip.Addr
	// Src is "from"; HasSrc says it was given (0.0.0.0 counts as none
	// for the kernel, as RTA_SRC 0).
	Src      netip.Addr
	HasSrc   bool
	IIF, OIF string
	Mark     uint32
	TOS      uint8 // the DS field as given (rtm_tos)
	Proto    uint8
	HasProto bool
	SPort    uint16
	DPort    uint16
	UID      uint32
	HasUID   bool
	// Warnings are what ip prints on stderr while reading the
	// arguments ("Warning: /24 as prefix is invalid...").
	Warnings []string
}

// parseAddr is get_prefix (lib/utils.c) for IPv4: dotted numbers as
// get_addr_ipv4 reads them (each strtoul base 0, missing parts 0), the
// keywords default/all/any, an optional /len. It returns the address,
// the prefix length (-1 when none was given) and whether it parsed.
func parseAddr(s string) (netip.Addr, int, bool) {
	a, l := s, ""
	slash := strings.IndexByte(s, '/')
	if slash >= 0 {
		a, l = s[:slash], s[slash+1:]
	}
	var b [4]byte
	keyword := a == "default" || a == "all" || a == "any"
	if !keyword {
		if strings.ContainsRune(a, ':') {
			return netip.Addr{}, 0, false
		}
		parts := strings.Split(a, ".")
		if len(parts) > 4 {
			return netip.Addr{}, 0, false
		}
		for i, p := range parts {
			// strtoul stops at the first non-digit: "1x" fails on the
			// following check, "" has no digits
			v, ok := strtoul(p, 0)
			if !ok || v > 255 || p == "" || p[0] == '-' || p[0] == '+' || p[0] == ' ' {
				return netip.Addr{}, 0, false
			}
			b[i] = byte(v)
		}
	}
	bits := 32
	if keyword {
		bits = 0
	}
	if slash >= 0 {
		if keyword {
			return netip.Addr{}, 0, false
		}
		v, ok := strtoul(l, 0)
		if !ok || v > 32 {
			return netip.Addr{}, 0, false
		}
		bits = int(v)
	}
	return netip.AddrFrom4(b), bits, true
}

func prefixError(family, arg string) *Error {
	return &Error{Msg: fmt.Sprintf("Error: %s prefix is expected rather than \"%s\".\n", family, arg), Code: exitFail}
}

// parseGet reads `ip route get` arguments as iproute_get does.
func parseGet(args []string, names *Names) (GetArgs, *Error) {
	var g GetArgs
	family := "any valid" // AF_UNSPEC until an address is read
	found := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, *Error) {
			if i+1 >= len(args) {
				return "", errIncomplete
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "tos" || matches(a, "dsfield"):
			v, err := next()
			if err != nil {
				return g, err
			}
			t, ok := names.DSFieldValue(v)
			if !ok {
				return g, invarg("TOS value is invalid\n", v)
			}
			g.TOS = t
		case matches(a, "from"):
			v, err := next()
			if err != nil {
				return g, err
			}
			if matches(v, "help") {
				return g, unsupported("route help")
			}
			addr, _, ok := parseAddr(v)
			if !ok {
				return g, prefixError(family, v)
			}
			family = "inet"
			g.Src, g.HasSrc = addr, true
		case matches(a, "iif"):
			v, err := next()
			if err != nil {
				return g, err
			}
			g.IIF = v
		case matches(a, "mark"):
			v, err := next()
			if err != nil {
				return g, err
			}
			m, ok := strtoul(v, 0)
			if !ok || m > 0xffffffff {
				return g, invarg("invalid mark value", v)
			}
			g.Mark = uint32(m)
		case matches(a, "oif") || a == "dev":
			v, err := next()
			if err != nil {
				return g, err
			}
			g.OIF = v
		case matches(a, "notify") || matches(a, "connected") || matches(a, "vrf") || matches(a, "fibmatch") || a == "as":
			return g, unsupported("route get " + a)
		case matches(a, "uid"):
			v, err := next()
			if err != nil {
				return g, err
			}
			u, ok := strtoul(v, 0)
			if !ok || u > 0xffffffff {
				return g, invarg("invalid UID\n", v)
			}
			g.UID, g.HasUID = uint32(u), true
		case matches(a, "sport"):
			v, err := next()
			if err != nil {
				return g, err
			}
			p, ok := strtoul(v, 0)
			if !ok || p > 0xffff {
				return g, invarg("invalid sport\n", v)
			}
			g.SPort = uint16(p)
		case matches(a, "dport"):
			v, err := next()
			if err != nil {
				return g, err
			}
			p, ok := strtoul(v, 0)
			if !ok || p > 0xffff {
				return g, invarg("invalid dport\n", v)
			}
			g.DPort = uint16(p)
		case matches(a, "ipproto"):
			v, err := next()
			if err != nil {
				return g, err
			}
			p, ok := names.ProtoValue(v)
			if !ok {
				return g, invarg("Invalid \"ipproto\" value\n", v)
			}
			g.Proto, g.HasProto = p, true
		default:
			if a == "to" {
				v, err := next()
				if err != nil {
					return g, err
				}
				a = v
			}
			if matches(a, "help") {
				return g, unsupported("route help")
			}
			addr, bits, ok := parseAddr(a)
			if !ok {
				return g, prefixError(family, a)
			}
			keyword := bits == 0 && (a == "default" || a == "all" || a == "any")
			if !(keyword && family != "inet") && bits != 32 {
				// the family is known (inet): a prefix that is not a host
				g.Warnings = append(g.Warnings, fmt.Sprintf("Warning: /%d as prefix is invalid, only /32 (or none) is supported.\n", bits))
			}
			if !keyword {
				family = "inet"
			}
			g.Dst = addr
			found = true
		}
	}
	if !found {
		return g, &Error{Msg: "need at least a destination address\n", Code: exitFail}
	}
	return g, nil
}

// errnoText is strerror for the errors a route lookup returns.
var errnoText = map[syscall.Errno]string{
	syscall.ENETUNREACH:  "Network is unreachable",
	syscall.EHOSTUNREACH: "No route to host",
	syscall.EACCES:       "Permission denied",
	syscall.EINVAL:       "Invalid argument",
	syscall.ENODEV:       "No such device",
	syscall.EXDEV:        "Invalid cross-device link",
	syscall.ENETDOWN:     "Network is down",
}

func netlinkError(e syscall.Errno) *Error {
	t, ok := errnoText[e]
	if !ok {
		t = e.Error()
	}
	return &Error{Msg: "RTNETLINK answers: " + t + "\n", Code: exitNL}
}

// The rt_flags bits rt_fill_info reports (include/uapi/linux/in_route.h)
// and print_cache_flags names, in its order.
const (
	rtcfLocal      = 0x80000000
	rtcfMulticast  = 0x20000000
	rtcfBroadcast  = 0x10000000
	rtcfDoRedirect = 0x01000000
)

var cacheFlagNames = []struct {
	bit  uint32
	name string
}{{rtcfLocal, "local"}, {0x40000000, "reject"}, {rtcfMulticast, "mc"}, {rtcfBroadcast, "brd"},
	{0x08000000, "dst-nat"}, {0x00800000, "src-nat"}, {0x00400000, "masq"}, {0x00020000, "dst-direct"},
	{0x04000000, "src-direct"}, {0x00040000, "redirected"}, {rtcfDoRedirect, "redirect"},
	{0x00200000, "fastroute"}, {0x00010000, "notify"}, {0x00080000, "proxy"}}

// hasCustomRules is net->ipv4.fib_has_custom_rules: without it the
// kernel looks up the merged main/local trie and reports table main
// for local routes too (include/net/ip_fib.h fib_lookup).
func hasCustomRules(f *route.FIB) bool {
	rules := f.Config().Rules
	if rules == nil {
		return false
	}
	def := route.DefaultRules()
	if len(rules) != len(def) {
		return true
	}
	for i := range rules {
		if rules[i] != def[i] {
			return true
		}
	}
	return false
}

// Get answers `ip route get`: the route the kernel would give the
// flow, printed as rt_fill_info fills it and print_route prints it.
func Get(env Env, g *GetArgs, json bool) (string, *Error) {
	f := env.FIB
	names := env.Names
	if names == nil {
		names = DefaultNames()
	}
	// inet_rtm_getroute builds an skb of the question (inet_rtm_getroute_build_skb)
	// and the multipath hash dissects it: Packet
	fl := route.Flow{Dst: g.Dst, TOS: g.TOS &^ 3, Mark: g.Mark, Proto: 17, SPort: g.SPort, DPort: g.DPort, UID: env.UID, Packet: true}
	if g.HasSrc {
		fl.Src = g.Src
	}
	if g.HasUID {
		fl.UID = g.UID
	}
	if g.IIF != "" {
		if fl.IIF = f.Ifindex(g.IIF); fl.IIF == 0 {
			return "", &Error{Msg: fmt.Sprintf("Cannot find device \"%s\"\n", g.IIF), Code: exitFail}
		}
	}
	if g.OIF != "" {
		if fl.OIF = f.Ifindex(g.OIF); fl.OIF == 0 {
			return "", &Error{Msg: fmt.Sprintf("Cannot find device \"%s\"\n", g.OIF), Code: exitFail}
		}
	}
	if g.HasProto {
		// rtm_getroute_parse_ip_proto (net/ipv4/netlink.c)
		switch g.Proto {
		case 6, 17, 1:
		default:
			return "", &Error{Msg: "Error: Unsupported ip proto.\n", Code: exitNL}
		}
		fl.Proto = g.Proto
	}
	res := f.Route(&fl)
	if res.Err != 0 {
		return "", netlinkError(res.Err)
	}
	input := fl.IIF != 0
	var flags uint32
	lo := f.Loopback()
	switch {
	case input && res.Type == route.Local:
		flags = rtcfLocal
	case input && res.Type == route.Broadcast:
		flags = rtcfLocal | rtcfBroadcast
	case input && res.Type == route.Multicast:
		flags = rtcfLocal | rtcfMulticast
	case input:
		if res.Redirect {
			flags = rtcfDoRedirect
		}
	default:
		// __mkroute_output
		if res.Dev == lo {
			flags |= rtcfLocal
		}
		switch res.Type {
		case route.Broadcast:
			flags |= rtcfBroadcast | rtcfLocal
		case route.Multicast:
			// local only when the device joined the group, even on lo
			flags = rtcfMulticast
			if joined(f, res.Dev, g.Dst) {
				flags |= rtcfLocal
			}
		}
	}
	o := newObj(json)
	o.open("", false)
	if res.Type != route.Unicast && res.Type != route.Unspec {
		o.str("type", res.Type.String(), res.Type.String()+" ")
	}
	o.str("dst", g.Dst.String(), g.Dst.String()+" ")
	if g.HasSrc && g.Src != netip.IPv4Unspecified() {
		o.str("from", g.Src.String(), "from "+g.Src.String()+" ")
	}
	// rtm_tos is the matched route's tos (res.dscp in Linux 6.18's
	// inet_rtm_getroute), not the request's (checked against the kernel)
	if res.Route != nil && res.Route.TOS != 0 {
		t := names.DSField(res.Route.TOS)
		o.str("tos", t, "tos "+t+" ")
	}
	if res.Gateway.IsValid() {
		o.str("gateway", res.Gateway.String(), "via "+res.Gateway.String()+" ")
	}
	if res.Dev != 0 {
		d := f.LinkName(res.Dev)
		o.str("dev", d, "dev "+d+" ")
	}
	table := res.Table
	if table == route.TableLocal && !hasCustomRules(f) {
		table = route.TableMain
	}
	if table != 0 && table != route.TableMain {
		o.str("table", names.Table(table), "table "+names.Table(table)+" ")
	}
	if !input {
		// RTA_PREFSRC when the flow's source is not the request's
		req := netip.IPv4Unspecified()
		if g.HasSrc {
			req = g.Src
		}
		src := res.Src
		if !src.IsValid() {
			src = netip.IPv4Unspecified()
		}
		if src != req {
			o.str("prefsrc", src.String(), "src "+src.String()+" ")
		}
	}
	// print_rt_flags sees rtm_flags = rt_flags & ~0xffff | RTM_F_CLONED:
	// RTCF_MULTICAST is RTM_F_OFFLOAD_FAILED's bit.
	var rtFlags []string
	if flags&rtcfMulticast != 0 {
		rtFlags = append(rtFlags, "rt_offload_failed")
	}
	o.strList("flags", rtFlags, joinSp(rtFlags))
	if g.Mark != 0 {
		t := fmt.Sprintf("mark %d ", g.Mark)
		if g.Mark >= 16 {
			t = fmt.Sprintf("mark 0x%x ", g.Mark)
		}
		o.uint("mark", uint64(g.Mark), t)
	}
	if !input || g.HasUID {
		o.uint("uid", uint64(fl.UID), fmt.Sprintf("uid %d ", fl.UID))
	}
	var cache []string
	for _, c := range cacheFlagNames {
		if flags&c.bit != 0 {
			cache = append(cache, c.name)
		}
	}
	ct := "\n    cache "
	if len(cache) > 0 {
		ct += "<" + strings.Join(cache, ",") + "> "
	}
	o.strList("cache", cache, ct)
	if input {
		o.str("iif", g.IIF, "iif "+g.IIF+" ")
	}
	o.text("\n")
	o.close(false)
	return list(json, []string{o.b.String()}), nil
}

func joinSp(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte(' ')
	}
	return b.String()
}

// joined is ip_check_mc_rcu for the groups uswitch knows a device is in:
// every device that is up joins 224.0.0.1 (ip_mc_up).
func joined(f *route.FIB, dev int, group netip.Addr) bool {
	if group != netip.AddrFrom4([4]byte{224, 0, 0, 1}) {
		return false
	}
	for _, l := range f.Config().Links {
		if l.Index == dev {
			return l.Up
		}
	}
	return false
}
