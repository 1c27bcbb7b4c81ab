package route

import "net/netip"

// What the IPv4 options code (net/ipv4/ip_options.c, ip_input.c) asks
// the routing layer.

// AcceptSourceRoute is IN_DEV_SOURCE_ROUTE (include/linux/inetdevice.h):
// net.ipv4.conf.all.accept_source_route and the device's both set.
func (f *FIB) AcceptSourceRoute(dev int) bool {
	return f.all.AcceptSourceRoute && f.conf(dev).AcceptSourceRoute
}

// PrefSrc is a policy routing lookup (fib_lookup) followed by
// fib_result_prefsrc (net/ipv4/fib_semantics.c): the route's prefsrc, or
// the address inet_select_addr picks on its nexthop device for its
// gateway. IIF 0 is the loopback. It is invalid when the lookup fails.
// ip_rt_get_source (net/ipv4/route.c) and fib_compute_spec_dst
// (net/ipv4/fib_frontend.c) take it.
func (f *FIB) PrefSrc(fl *Flow) netip.Addr {
	x := f.toFlow(fl)
	if x.iif == 0 {
		x.iif = f.Loopback()
	}
	var res tableResult
	if err, _ := f.fibLookup(&x, &res, false); err != 0 || res.a == nil {
		return netip.Addr{}
	}
	a := f.resultPrefsrc(&res)
	if a == 0 {
		return netip.Addr{}
	}
	return addr4(a)
}
