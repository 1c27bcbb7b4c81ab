package route

import (
	"net/netip"
	"syscall"
)

// Errno is a routing error as the kernel returns it: 0,
// syscall.ENETUNREACH (no rule decided, or an unreachable rule),
// syscall.EHOSTUNREACH (unreachable route, or no route on a host that
// does not forward), syscall.EACCES (prohibit), syscall.EINVAL (blackhole,
// martian source or destination), syscall.ENODEV (unknown oif).
type Errno = syscall.Errno

// Flow is what a route is looked up for (struct flowi4).
type Flow struct {
	Dst, Src netip.Addr // Src may be invalid/0.0.0.0 (output: to be selected)
	TOS      uint8      // the IPv4 TOS byte
	// IIF is the input ifindex; 0 means a locally generated packet
	// (output route; the rule walk then sees iif = loopback).
	IIF int
	// OIF is the output interface a socket is bound to (output only).
	OIF   int
	Mark  uint32
	Proto uint8 // ip_route_get defaults to UDP (17)
	SPort uint16
	DPort uint16
	// UID is the socket owner (output only; input lookups use uid 0,
	// sock_net_uid(net, NULL)).
	UID uint32
	// Packet says an output lookup is made for a packet (an skb, as
	// `ip route get` builds one): the multipath hash then dissects the
	// packet's headers, ports only for protocols that carry them, as the
	// kernel does; without it the hash takes the flow's fields (a
	// socket's lookup, fl4). Input lookups always hash the packet.
	Packet bool
}

// Result is the route decision.
type Result struct {
	Err   Errno
	Type  Type
	Table uint32 // table the route came from; 0 when no table decided
	// Prefix is the matched route prefix (invalid when no route matched).
	Prefix netip.Prefix
	// Dev is the device the packet goes to: the loopback for local
	// delivery, the nexthop device when forwarding or sending.
	Dev     int
	Gateway netip.Addr // invalid when the destination is on link
	// Src is the source address of an output route (selected when the
	// flow had none); invalid for input routes.
	Src     netip.Addr
	Route   *Route // the matched route; nil if none
	Nexthop int    // index into Route.Nexthops
	Rule    *Rule  // the rule that decided; nil if none
	// Redirect is set for forwarded packets that leave by the device they
	// came in on towards a directly reachable source (IPSKB_DOREDIRECT).
	Redirect bool
}

type flow struct {
	dst, src     uint32
	tos          uint8
	iif, oif     int
	mark         uint32
	proto        uint8
	sport, dport uint16
	uid          uint32
	scope        Scope
	pkt          bool // the multipath hash dissects a packet (skb), not fl4
}

func isZeronet(a uint32) bool        { return a>>24 == 0 }
func isLbcast(a uint32) bool         { return a == 0xffffffff }
func isMulticast(a uint32) bool      { return a>>28 == 0xe }
func isLocalMulticast(a uint32) bool { return a>>8 == 0xe00000 }
func isLoopback(a uint32) bool       { return a>>24 == 127 }

func (f *FIB) ruleMatch(r *fibRule, fl *flow) bool {
	m := f.ruleMatch1(r, fl)
	return m != r.Not
}

// ruleMatch1 is fib_rule_match (net/core/fib_rules.c) and
// fib4_rule_match (net/ipv4/fib_rules.c) without the inversion.
func (f *FIB) ruleMatch1(r *fibRule, fl *flow) bool {
	if r.iif != 0 && r.iif != fl.iif {
		return false
	}
	if r.oif != 0 && r.oif != fl.oif {
		return false
	}
	if (r.Mark^fl.mark)&r.Mask != 0 {
		return false
	}
	if r.L3mdev {
		// l3mdev_fib_rule_match: only flows through a VRF device; uswitch
		// models no VRFs.
		return false
	}
	if fl.uid < r.UIDStart || fl.uid > r.UIDEnd {
		return false
	}
	if (fl.src^r.src)&r.smask != 0 || (fl.dst^r.dst)&r.dmask != 0 {
		return false
	}
	if r.HasDSCP {
		if r.DSCP != fl.tos>>2 {
			return false
		}
	} else if r.TOS != 0 && r.TOS&0x1c != fl.tos&0x1c {
		// fib_dscp_masked_match: legacy TOS selector, TOS bits only.
		return false
	}
	if r.IPProto != 0 && r.IPProto != fl.proto {
		return false
	}
	if r.SPort.IsSet() && (fl.sport < r.SPort.Start || fl.sport > r.SPort.End) {
		return false
	}
	if r.DPort.IsSet() && (fl.dport < r.DPort.Start || fl.dport > r.DPort.End) {
		return false
	}
	return true
}

// fibLookup is fib_lookup / __fib_lookup with fib_rules_lookup
// (net/core/fib_rules.c): rules in priority order; goto jumps to its
// target (an unresolved one continues), nop continues, an action
// result of EAGAIN (no table, no route, throw) continues, a success
// suppressed by suppress_prefixlength/suppress_ifgroup continues; any
// other result ends the walk. No rule decided is ENETUNREACH.
func (f *FIB) fibLookup(fl *flow, res *tableResult, ignoreOIF bool) (Errno, *fibRule) {
rules:
	for i := 0; i < len(f.rules); i++ {
		r := &f.rules[i]
		if !f.ruleMatch(r, fl) {
			continue
		}
		for r.Action == ActGoto && r.target >= 0 {
			// "goto jumped": the target rule is matched in turn; when it
			// does not match the walk goes on after it.
			i = r.target
			r = &f.rules[i]
			if !f.ruleMatch(r, fl) {
				continue rules
			}
		}
		var err Errno
		switch r.Action {
		case ActGoto, ActNop:
			continue
		case ActToTable:
			// fib4_rule_action: a missing table is EAGAIN.
			err = syscall.EAGAIN
			if r.tableIndex != nil {
				*res = tableResult{}
				err = r.tableIndex.lookup(fl, res, ignoreOIF)
			}
		case ActUnreachable:
			err = syscall.ENETUNREACH
		case ActProhibit:
			err = syscall.EACCES
		default:
			err = syscall.EINVAL
		}
		if err == 0 && f.suppress(r, res) {
			continue
		}
		if err != syscall.EAGAIN {
			return err, r
		}
	}
	*res = tableResult{}
	return syscall.ENETUNREACH, nil
}

// suppress is fib4_rule_suppress (net/ipv4/fib_rules.c).
func (f *FIB) suppress(r *fibRule, res *tableResult) bool {
	if res.a == nil {
		return false
	}
	if res.plen <= r.SuppressPrefixLen {
		return true
	}
	if r.SuppressIfgroup != -1 && len(res.a.nhs) > 0 {
		if l := f.link(res.a.nhs[0].dev); l != nil && int(l.Group) == r.SuppressIfgroup {
			return true
		}
	}
	return false
}

func (f *FIB) conf(dev int) DevConf {
	if l := f.link(dev); l != nil {
		return l.conf
	}
	return DefaultDevConf()
}

func (f *FIB) routeLocalnet(dev int) bool { return f.all.RouteLocalnet || f.conf(dev).RouteLocalnet }
func (f *FIB) acceptLocal(dev int) bool   { return f.all.AcceptLocal || f.conf(dev).AcceptLocal }
func (f *FIB) rpFilter(dev int) int       { return max(f.all.RPFilter, f.conf(dev).RPFilter) }
func (f *FIB) txRedirects(dev int) bool   { return f.all.SendRedirects || f.conf(dev).SendRedirects }

// isLocalAddr is __ip_dev_find != NULL: an address of some interface, or
// a local route in the local table (loopback subnets). It returns the
// device.
func (f *FIB) devOfLocal(a uint32) int {
	if i, ok := f.localSet[a]; ok {
		return f.addrs[i].Ifindex
	}
	if t := f.tables[TableLocal]; t != nil {
		var res tableResult
		fl := flow{dst: a}
		if t.lookup(&fl, &res, true) == 0 && res.a.typ == Local && len(res.a.nhs) > 0 {
			return res.a.nhs[0].dev
		}
	}
	return 0
}

// Lookup is the bare policy routing lookup (fib_lookup): the rule walk
// and table lookups for the flow, without the input/output checks. IIF
// 0 is taken as the loopback, as for locally generated traffic.
func (f *FIB) Lookup(fl *Flow) Result {
	x := f.toFlow(fl)
	if x.iif == 0 {
		x.iif = f.Loopback()
	}
	var res tableResult
	err, rule := f.fibLookup(&x, &res, false)
	out := f.fill(&res, rule)
	out.Err = err
	if err != 0 {
		out.Dev = 0
	}
	return out
}

func (f *FIB) toFlow(fl *Flow) flow {
	return flow{dst: u32(fl.Dst), src: u32(fl.Src), tos: fl.TOS & 0xfc, iif: fl.IIF, oif: fl.OIF,
		mark: fl.Mark, proto: fl.Proto, sport: fl.SPort, dport: fl.DPort, uid: fl.UID, pkt: fl.Packet}
}

func (f *FIB) fill(res *tableResult, rule *fibRule) Result {
	var out Result
	if rule != nil {
		out.Rule = &rule.Rule
	}
	if res.a == nil {
		return out
	}
	out.Route = res.a.r
	out.Type = res.a.typ
	out.Table = res.table.id
	out.Prefix = netip.PrefixFrom(addr4(res.prefix), res.plen)
	out.Nexthop = res.nhsel
	if res.nhsel < len(res.a.nhs) {
		c := &res.a.nhs[res.nhsel]
		out.Dev = c.dev
		if c.hasGW && c.scope == ScopeLink {
			out.Gateway = addr4(c.gw)
		}
	}
	return out
}

// Route routes the flow as `ip route get` does: an input route when
// IIF is set, else an output route.
func (f *FIB) Route(fl *Flow) Result {
	if fl.IIF != 0 {
		return f.Input(fl)
	}
	return f.Output(fl)
}

// Output is ip_route_output_key_hash_rcu (net/ipv4/route.c): the route
// of a locally generated packet, selecting the source address when the
// flow has none.
func (f *FIB) Output(in *Flow) Result {
	fl := f.toFlow(in)
	fl.iif = f.Loopback()
	var res tableResult
	var rule *fibRule
	devOut := 0
	origOIF := fl.oif
	typ := Unspec
	if fl.src != 0 {
		// Linux 6.18 no longer rejects 0.0.0.0/8 sources here (they are
		// simply not local), and a source that is not ours is
		// ENETUNREACH (checked against the kernel).
		if isMulticast(fl.src) || isLbcast(fl.src) {
			return Result{Err: syscall.EINVAL}
		}
		if fl.oif == 0 && (isMulticast(fl.dst) || isLbcast(fl.dst)) {
			// Multicast and limited broadcast leave by the device owning
			// the source address.
			devOut = f.devOfLocal(fl.src)
			if devOut == 0 {
				return Result{Err: syscall.ENETUNREACH}
			}
			fl.oif = devOut
			return f.mkrouteOutput(&fl, &res, rule, typ, origOIF, devOut)
		}
		if f.devOfLocal(fl.src) == 0 {
			return Result{Err: syscall.ENETUNREACH}
		}
	}
	if fl.oif != 0 {
		l := f.link(fl.oif)
		if l == nil {
			return Result{Err: syscall.ENODEV}
		}
		if !l.Up {
			return Result{Err: syscall.ENETUNREACH}
		}
		devOut = fl.oif
		if isLocalMulticast(fl.dst) || isLbcast(fl.dst) || fl.proto == 2 /* IGMP */ {
			if fl.src == 0 {
				fl.src = f.selectAddr(devOut, 0, ScopeLink)
			}
			return f.mkrouteOutput(&fl, &res, rule, typ, origOIF, devOut)
		}
		if fl.src == 0 {
			if isMulticast(fl.dst) {
				fl.src = f.selectAddr(devOut, 0, fl.scope)
			} else if fl.dst == 0 {
				fl.src = f.selectAddr(devOut, 0, ScopeHost)
			}
		}
	}
	if fl.dst == 0 {
		fl.dst = fl.src
		if fl.dst == 0 {
			fl.dst, fl.src = 0x7f000001, 0x7f000001
		}
		devOut = f.Loopback()
		fl.oif = devOut
		return f.mkrouteOutput(&fl, &res, rule, Local, origOIF, devOut)
	}
	err, rule := f.fibLookup(&fl, &res, false)
	if err != 0 {
		if fl.oif != 0 {
			// "Apparently, routing tables are wrong. Assume, that the
			// destination is on link."
			res = tableResult{}
			if fl.src == 0 {
				fl.src = f.selectAddr(devOut, 0, ScopeLink)
			}
			return f.mkrouteOutput(&fl, &res, nil, Unicast, origOIF, devOut)
		}
		r := Result{Err: err}
		if rule != nil {
			r.Rule = &rule.Rule
		}
		return r
	}
	if res.a.typ == Local {
		if fl.src == 0 {
			if res.a.prefsrc != 0 {
				fl.src = res.a.prefsrc
			} else {
				fl.src = fl.dst
			}
		}
		devOut = f.Loopback()
		fl.oif = devOut
		return f.mkrouteOutput(&fl, &res, rule, Local, origOIF, devOut)
	}
	f.selectPath(&fl, &res)
	if res.nhsel < len(res.a.nhs) {
		devOut = res.a.nhs[res.nhsel].dev
	}
	fl.oif = devOut
	return f.mkrouteOutput(&fl, &res, rule, res.a.typ, origOIF, devOut)
}

// selectPath is fib_select_path (net/ipv4/route.c): the multipath
// choice when no oif is bound, then the source address.
func (f *FIB) selectPath(fl *flow, res *tableResult) {
	if fl.oif == 0 && len(res.a.nhs) > 1 {
		f.selectMultipath(fl, res, f.multipathHash(fl), false)
	}
	if fl.src == 0 {
		fl.src = f.resultPrefsrc(res)
	}
}

// resultPrefsrc is fib_result_prefsrc (net/ipv4/fib_semantics.c): the
// route's prefsrc, else inet_select_addr(nexthop dev, gateway, route scope).
func (f *FIB) resultPrefsrc(res *tableResult) uint32 {
	if res.a.prefsrc != 0 {
		return res.a.prefsrc
	}
	if res.nhsel >= len(res.a.nhs) {
		return 0
	}
	c := &res.a.nhs[res.nhsel]
	return f.selectAddr(c.dev, c.gw, res.a.scope)
}

// mkrouteOutput is __mkroute_output (net/ipv4/route.c).
func (f *FIB) mkrouteOutput(fl *flow, res *tableResult, rule *fibRule, typ Type, origOIF, devOut int) Result {
	if !f.routeLocalnet(devOut) && isLoopback(fl.src) {
		if l := f.link(devOut); l == nil || !l.Loopback {
			return Result{Err: syscall.EINVAL}
		}
	}
	useFI := res.a != nil
	switch {
	case isLbcast(fl.dst):
		typ = Broadcast
	case isMulticast(fl.dst):
		typ = Multicast
	}
	// 0.0.0.0/8 destinations are routable since "ipv4: Allow 0.0.0.0/8 as
	// a valid address range" (Linux 5.3): no zeronet check here.
	switch typ {
	case Broadcast:
		useFI = false
	case Multicast:
		// "If multicast route do not exist use default one, but do not
		// gateway in this case."
		if useFI && res.plen < 4 {
			useFI = false
		}
	}
	out := Result{Type: typ, Dev: devOut, Src: addr4(fl.src)}
	if fl.src == 0 {
		out.Src = netip.Addr{}
	}
	if rule != nil {
		out.Rule = &rule.Rule
	}
	if res.a != nil {
		out.Route = res.a.r
		out.Table = res.table.id
		out.Prefix = netip.PrefixFrom(addr4(res.prefix), res.plen)
		out.Nexthop = res.nhsel
		if useFI && res.nhsel < len(res.a.nhs) {
			c := &res.a.nhs[res.nhsel]
			if c.hasGW && c.scope == ScopeLink {
				out.Gateway = addr4(c.gw)
			}
		}
	}
	return out
}

// Input is ip_route_input_noref / ip_route_input_slow
// (net/ipv4/route.c): the route of a packet received on IIF.
func (f *FIB) Input(in *Flow) Result {
	k, ok := inputKey(in)
	if !ok {
		return f.input(in)
	}
	if !f.l4Keyed {
		k.sport, k.dport, k.proto = 0, 0, 0
	}
	if r, hit := f.icache.get(k); hit {
		return r
	}
	r := f.input(in)
	f.icache.put(k, r)
	return r
}

func (f *FIB) input(in *Flow) Result {
	fl := f.toFlow(in)
	fl.oif = 0
	fl.uid = 0    // sock_net_uid(net, NULL)
	fl.pkt = true // ip_mkroute_input hashes the skb
	dev := fl.iif
	if f.link(dev) == nil {
		return Result{Err: syscall.ENODEV}
	}
	lo := f.Loopback()
	if isMulticast(fl.dst) {
		// ip_route_input_rcu: only groups joined on the device (all-hosts
		// 224.0.0.1 is joined by every device) are routed; uswitch models
		// no multicast forwarding.
		if fl.dst != 0xe0000001 {
			return Result{Err: syscall.EINVAL}
		}
		// ip_route_input_mc
		if isMulticast(fl.src) || isLbcast(fl.src) {
			return Result{Err: syscall.EINVAL}
		}
		if isLoopback(fl.src) && !f.routeLocalnet(dev) {
			return Result{Err: syscall.EINVAL}
		}
		if !isZeronet(fl.src) {
			if _, err := f.validateSource(&fl, fl.src, 0, 0, dev); err != 0 {
				return Result{Err: err}
			}
		}
		return Result{Type: Multicast, Dev: lo}
	}
	var res tableResult
	if isMulticast(fl.src) || isLbcast(fl.src) {
		return Result{Err: syscall.EINVAL} // martian source
	}
	if isLbcast(fl.dst) || (fl.src == 0 && fl.dst == 0) {
		return f.brdInput(&fl, &res, nil, dev)
	}
	if isZeronet(fl.src) {
		return Result{Err: syscall.EINVAL}
	}
	if fl.dst == 0 {
		// martian destination: 0.0.0.0 itself (other 0.0.0.0/8
		// destinations are routed since Linux 5.3; checked against the
		// kernel with ip route get 0.0.0.0 iif DEV)
		return Result{Err: syscall.EINVAL}
	}
	if isLoopback(fl.dst) {
		if !f.routeLocalnet(dev) {
			return Result{Err: syscall.EINVAL}
		}
	} else if isLoopback(fl.src) {
		if !f.routeLocalnet(dev) {
			return Result{Err: syscall.EINVAL}
		}
	}
	err, rule := f.fibLookup(&fl, &res, false)
	if err != 0 {
		if !f.conf(dev).Forwarding {
			err = syscall.EHOSTUNREACH
		}
		r := Result{Err: err, Type: Unreachable}
		if rule != nil {
			r.Rule = &rule.Rule
		}
		return r
	}
	switch res.a.typ {
	case Broadcast:
		return f.brdInput(&fl, &res, rule, dev)
	case Local:
		if _, err := f.validateSource(&fl, fl.src, fl.dst, 0, dev); err != 0 {
			return Result{Err: err}
		}
		out := f.fill(&res, rule)
		out.Dev = lo
		out.Gateway = netip.Addr{}
		return out
	}
	if !f.conf(dev).Forwarding {
		return Result{Err: syscall.EHOSTUNREACH, Type: Unreachable}
	}
	if res.a.typ != Unicast {
		return Result{Err: syscall.EINVAL}
	}
	// ip_mkroute_input: the multipath choice, then __mkroute_input.
	if len(res.a.nhs) > 1 {
		f.selectMultipath(&fl, &res, f.multipathHash(&fl), true)
	}
	outDev := res.a.nhs[res.nhsel].dev
	ret, err := f.validateSource(&fl, fl.src, fl.dst, outDev, dev)
	if err != 0 {
		return Result{Err: err}
	}
	out := f.fill(&res, rule)
	out.Dev = outDev
	if outDev == dev && ret > 0 && f.txRedirects(dev) {
		out.Redirect = true
	}
	return out
}

// brdInput is the brd_input label of ip_route_input_slow.
func (f *FIB) brdInput(fl *flow, res *tableResult, rule *fibRule, dev int) Result {
	if !isZeronet(fl.src) {
		if _, err := f.validateSource(fl, fl.src, 0, 0, dev); err != 0 {
			return Result{Err: err}
		}
	}
	out := f.fill(res, rule)
	out.Type = Broadcast
	out.Dev = f.Loopback()
	out.Gateway = netip.Addr{}
	return out
}

// validateSource is fib_validate_source and __fib_validate_source
// (net/ipv4/fib_frontend.c): reverse path check of src arriving on dev
// for a packet to dst that leaves by oif (0 for local delivery). It
// returns 1 when src is directly reachable on dev, and EINVAL for a
// martian source (including rp_filter failures, which the kernel reports
// as -EXDEV inside and -EINVAL to the caller).
func (f *FIB) validateSource(in *flow, src, dst uint32, oif, dev int) (int, Errno) {
	rpf := f.rpFilter(dev)
	if rpf == 0 && (dev != oif || !f.txRedirects(dev)) {
		if f.acceptLocal(dev) {
			return 0, 0
		}
		if !f.customLocal && !f.customRules {
			if _, local := f.localSet[src]; local {
				return 0, syscall.EINVAL
			}
			return 0, 0
		}
	}
	fl := flow{dst: src, src: dst, tos: in.tos, iif: oif, scope: ScopeUniverse, proto: in.proto,
		sport: in.dport, dport: in.sport}
	if fl.iif == 0 {
		fl.iif = f.Loopback()
	}
	if f.conf(dev).SrcValidMark || f.all.SrcValidMark {
		fl.mark = in.mark
	}
	l := f.link(dev)
	noAddr := l == nil || len(l.addrs) == 0
	var res tableResult
	if err, _ := f.fibLookup(&fl, &res, false); err != 0 {
		if rpf != 0 {
			return 0, syscall.EINVAL
		}
		return 0, 0
	}
	if res.a.typ != Unicast {
		if res.a.typ != Local || !f.acceptLocal(dev) {
			return 0, syscall.EINVAL
		}
	}
	match := false
	for _, c := range res.a.nhs {
		if c.dev == dev {
			match = true
		}
	}
	if !match && res.a.typ == Local && dev == f.Loopback() {
		match = true
	}
	if match {
		if res.nhsel < len(res.a.nhs) && res.a.nhs[res.nhsel].scope >= ScopeHost {
			return 1, 0
		}
		return 0, 0
	}
	if noAddr {
		if rpf != 0 {
			return 0, syscall.EINVAL
		}
		return 0, 0
	}
	if rpf == 1 {
		return 0, syscall.EINVAL
	}
	fl.oif = dev
	if err, _ := f.fibLookup(&fl, &res, false); err == 0 && res.a.typ == Unicast {
		if res.nhsel < len(res.a.nhs) && res.a.nhs[res.nhsel].scope >= ScopeHost {
			return 1, 0
		}
	}
	return 0, 0
}
