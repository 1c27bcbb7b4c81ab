package iproute

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/uswitch-lab/uswitch/route"
)

// ShowArgs are the selectors of `ip route show` uswitch takes.
type ShowArgs struct {
	// Table is the table listed; 0 with All is every table.
	Table uint32
	All   bool
}

// parseShow reads `ip route show` arguments (iproute_list_flush_or_save):
// table ID|NAME|all; the default is the main table.
func parseShow(args []string, names *Names) (ShowArgs, *Error) {
	s := ShowArgs{Table: route.TableMain}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !matches(a, "table") {
			return s, unsupported("route show " + a)
		}
		if i+1 >= len(args) {
			return s, errIncomplete
		}
		i++
		v := args[i]
		if id, ok := names.TableID(v); ok {
			s.Table, s.All = id, id == 0
			continue
		}
		switch v {
		case "all":
			s.Table, s.All = 0, true
		case "cache":
			return s, unsupported("route show table cache")
		default:
			return s, invarg("table id value is invalid\n", v)
		}
	}
	return s, nil
}

// dumpOrder sorts routes as a dump of the kernel's tables lists them:
// tables by their hash bucket (inet_dump_fib walks fib_table_hash, id &
// 255), then each table's trie in key order (fib_table_dump), aliases
// at a key longest prefix first (fib_insert_alias keeps fa_slen
// ascending), then tos descending and metric ascending
// (fib_find_alias).
func dumpOrder(rs []route.Route) []route.Route {
	out := make([]route.Route, 0, len(rs))
	for _, r := range rs {
		if r.Dst.Addr().Is4() {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if ha, hb := a.Table&255, b.Table&255; ha != hb {
			return ha < hb
		}
		if a.Table != b.Table {
			return a.Table > b.Table // newer tables first in a bucket: a guess
		}
		if c := a.Dst.Masked().Addr().Compare(b.Dst.Masked().Addr()); c != 0 {
			return c < 0
		}
		if a.Dst.Bits() != b.Dst.Bits() {
			return a.Dst.Bits() > b.Dst.Bits()
		}
		if a.TOS != b.TOS {
			return a.TOS > b.TOS
		}
		return a.Metric < b.Metric
	})
	return out
}

// ShowRoutes answers `ip route show`: the routes of the table (or all),
// as fib_dump_info fills them and print_route prints them.
// A table that does not exist fails the dump as the kernel does
// (inet_dump_fib: "FIB table does not exist"); local and main always
// exist, others when they hold a route.
func ShowRoutes(env Env, s *ShowArgs, json bool) (string, *Error) {
	names := env.Names
	if names == nil {
		names = DefaultNames()
	}
	routes := dumpOrder(env.FIB.Config().Routes)
	if !s.All && s.Table != route.TableMain && s.Table != route.TableLocal {
		exists := false
		for i := range routes {
			exists = exists || routes[i].Table == s.Table
		}
		if !exists {
			out := ""
			if json {
				out = "[" // new_json_obj ran before the dump failed
			}
			return out, &Error{Msg: "Error: ipv4: FIB table does not exist.\nDump terminated\n", Code: exitNL}
		}
	}
	var objs []string
	for _, r := range routes {
		if !s.All && r.Table != s.Table {
			continue
		}
		objs = append(objs, routeObj(names, &r, s.All, json))
	}
	return list(json, objs), nil
}

func nhFlags(n *route.Nexthop) []string {
	// print_rt_flags order
	var fs []string
	if n.Dead {
		fs = append(fs, "dead")
	}
	if n.OnLink {
		fs = append(fs, "onlink")
	}
	if n.LinkDown {
		fs = append(fs, "linkdown")
	}
	return fs
}

func routeObj(names *Names, r *route.Route, showTable, json bool) string {
	o := newObj(json)
	o.open("", false)
	typ := r.Type
	if typ == route.Unspec {
		typ = route.Unicast
	}
	if typ != route.Unicast {
		o.str("type", typ.String(), typ.String()+" ")
	}
	dst := "default"
	switch {
	case r.Dst.Bits() == 32:
		dst = r.Dst.Addr().String()
	case r.Dst.Bits() > 0:
		dst = r.Dst.Masked().String()
	}
	o.str("dst", dst, dst+" ")
	if r.TOS != 0 {
		o.str("tos", names.DSField(r.TOS), "tos "+names.DSField(r.TOS)+" ")
	}
	single := len(r.Nexthops) == 1
	var flags []string
	if single {
		n := &r.Nexthops[0]
		if n.Gateway.IsValid() {
			o.str("gateway", n.Gateway.String(), "via "+n.Gateway.String()+" ")
		}
		if n.Dev != "" {
			o.str("dev", n.Dev, "dev "+n.Dev+" ")
		}
		flags = nhFlags(n)
	}
	if showTable && r.Table != route.TableMain {
		t := names.Table(r.Table)
		o.str("table", t, "table "+t+" ")
	}
	if p := r.Protocol; p != "" && p != "boot" && p != "3" {
		o.str("protocol", p, "proto "+p+" ")
	}
	if r.Scope != route.ScopeUniverse {
		o.str("scope", r.Scope.String(), "scope "+r.Scope.String()+" ")
	}
	if r.PrefSrc.IsValid() && r.PrefSrc != netip.IPv4Unspecified() {
		o.str("prefsrc", r.PrefSrc.String(), "src "+r.PrefSrc.String()+" ")
	}
	if r.Metric != 0 {
		o.uint("metric", uint64(r.Metric), fmt.Sprintf("metric %d ", r.Metric))
	}
	o.strList("flags", flags, joinSp(flags))
	if len(r.Nexthops) > 1 {
		o.open("nexthops", true)
		for i := range r.Nexthops {
			n := &r.Nexthops[i]
			o.open("", false)
			o.text("\n\tnexthop ")
			if n.Gateway.IsValid() {
				o.str("gateway", n.Gateway.String(), "via "+n.Gateway.String()+" ")
			}
			o.str("dev", n.Dev, "dev "+n.Dev+" ")
			w := max(n.Weight, 1)
			o.int("weight", int64(w), fmt.Sprintf("weight %d ", w))
			nf := nhFlags(n)
			o.strList("flags", nf, joinSp(nf))
			o.close(false)
		}
		o.close(true)
	}
	o.text("\n")
	o.close(false)
	return o.b.String()
}

// ShowRules answers `ip rule show`: the rules in priority order, as
// fib_nl_fill_rule fills them and print_rule prints them.
func ShowRules(env Env, json bool) string {
	names := env.Names
	if names == nil {
		names = DefaultNames()
	}
	f := env.FIB
	rules := f.Config().Rules
	if rules == nil {
		rules = route.DefaultRules()
	}
	sorted := append([]route.Rule(nil), rules...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Priority < sorted[j].Priority })
	prios := map[uint32]bool{}
	for _, r := range sorted {
		prios[r.Priority] = true
	}
	var objs []string
	for i := range sorted {
		objs = append(objs, ruleObj(names, f, &sorted[i], prios, json))
	}
	return list(json, objs)
}

func prefixText(p netip.Prefix) (string, bool) {
	return p.Addr().String(), p.Bits() != 32
}

func ruleObj(names *Names, f *route.FIB, r *route.Rule, prios map[uint32]bool, json bool) string {
	o := newObj(json)
	o.open("", false)
	o.uint("priority", uint64(r.Priority), fmt.Sprintf("%d:\t", r.Priority))
	if r.Not {
		o.null("not", "not ")
	}
	if r.Src.IsValid() && r.Src.Bits() > 0 {
		a, withLen := prefixText(r.Src)
		o.text("from ")
		o.str("src", a, a)
		if withLen {
			o.uint("srclen", uint64(r.Src.Bits()), fmt.Sprintf("/%d", r.Src.Bits()))
		}
	} else {
		o.str("src", "all", "from all")
	}
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		a, withLen := prefixText(r.Dst)
		o.text(" to ")
		o.str("dst", a, a)
		if withLen {
			o.uint("dstlen", uint64(r.Dst.Bits()), fmt.Sprintf("/%d", r.Dst.Bits()))
		}
	}
	if r.TOS != 0 {
		o.str("tos", names.DSField(r.TOS), " tos "+names.DSField(r.TOS))
	}
	if r.Mark != 0 || r.Mask != 0 {
		// fib_nl_fill_rule: FRA_FWMARK when the mark is set, FRA_FWMASK
		// when either is; printed with %#llx (0 is "0")
		mask := r.Mask
		o.str("fwmark", hexAlt(r.Mark), " fwmark "+hexAlt(r.Mark))
		if mask != 0xffffffff {
			o.str("fwmask", hexAlt(mask), "/"+hexAlt(mask))
		}
	}
	if r.IIF != "" {
		o.text(" iif ")
		o.str("iif", r.IIF, r.IIF)
		if f.Ifindex(r.IIF) == 0 {
			o.null("iif_detached", " [detached]")
		}
	}
	if r.OIF != "" {
		o.text(" oif ")
		o.str("oif", r.OIF, r.OIF)
		if f.Ifindex(r.OIF) == 0 {
			o.null("oif_detached", " [detached]")
		}
	}
	if r.L3mdev {
		o.null("l3mdev", " lookup [l3mdev-table]")
	}
	if !(r.UIDStart == 0 && r.UIDEnd == 0xffffffff) {
		o.uint("uid_start", uint64(r.UIDStart), fmt.Sprintf(" uidrange %d", r.UIDStart))
		o.uint("uid_end", uint64(r.UIDEnd), fmt.Sprintf("-%d", r.UIDEnd))
	}
	if r.IPProto != 0 {
		o.str("ipproto", names.Proto(r.IPProto), " ipproto "+names.Proto(r.IPProto))
	}
	ports := func(k string, p route.PortRange) {
		if !p.IsSet() {
			return
		}
		if p.Start == p.End {
			o.uint(k, uint64(p.Start), fmt.Sprintf(" %s %d", k, p.Start))
			return
		}
		o.uint(k+"_start", uint64(p.Start), fmt.Sprintf(" %s %d", k, p.Start))
		o.uint(k+"_end", uint64(p.End), fmt.Sprintf("-%d", p.End))
	}
	ports("sport", r.SPort)
	ports("dport", r.DPort)
	if r.Action == route.ActToTable && r.Table != 0 {
		t := names.Table(r.Table)
		o.str("table", t, " lookup "+t)
		if r.SuppressPrefixLen != -1 {
			o.int("suppress_prefixlen", int64(r.SuppressPrefixLen), fmt.Sprintf(" suppress_prefixlength %d", r.SuppressPrefixLen))
		}
		if r.SuppressIfgroup != -1 {
			g := fmt.Sprint(r.SuppressIfgroup)
			if r.SuppressIfgroup == 0 {
				g = "default"
			}
			o.str("suppress_ifgroup", g, " suppress_ifgroup "+g)
		}
	}
	switch r.Action {
	case route.ActToTable:
	case route.ActGoto:
		o.uint("goto", uint64(r.Goto), fmt.Sprintf(" goto %d", r.Goto))
		if !prios[r.Goto] {
			o.null("unresolved", " [unresolved]")
		}
	case route.ActNop:
		o.null("nop", " nop")
	default:
		o.str("action", r.Action.String(), " "+r.Action.String())
	}
	o.text("\n")
	o.close(false)
	return o.b.String()
}

// hexAlt is printf's %#llx: 0 is "0", others 0x-prefixed.
func hexAlt(v uint32) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%#x", v)
}
