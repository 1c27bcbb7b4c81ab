package route

import "net/netip"

// selectAddr is inet_select_addr (net/ipv4/devinet.c): the first primary
// address of dev whose scope is not narrower than scope, preferring one
// whose subnet holds dst; failing that, the first primary address of
// any device (in ifindex order) that is not link scope and fits the
// scope. With route_localnet, loopback (host scope) addresses count as
// link scope on dev.
func (f *FIB) selectAddr(dev int, dst uint32, scope Scope) uint32 {
	if l := f.link(dev); l != nil {
		localnet := ScopeHost
		if f.routeLocalnet(dev) {
			localnet = ScopeLink
		}
		var addr uint32
		for _, i := range l.addrs {
			a := &f.addrs[i]
			if a.Secondary || min(a.Scope, localnet) > scope {
				continue
			}
			if dst == 0 || (dst^a.net)&a.mask == 0 {
				return a.local
			}
			if addr == 0 {
				addr = a.local
			}
		}
		if addr != 0 {
			return addr
		}
	}
	// "Not loopback addresses on loopback should be preferred in this
	// case. It is important that lo is the first interface in dev_base
	// list." (in_dev_select_addr over every device; no VRFs modelled).
	for i := range f.links {
		l := &f.links[i]
		if l.index == 0 {
			continue
		}
		for _, j := range l.addrs {
			a := &f.addrs[j]
			if !a.Secondary && a.Scope != ScopeLink && a.Scope <= scope {
				return a.local
			}
		}
	}
	return 0
}

// SelectSource is inet_select_addr(dev, dst, scope)
// (net/ipv4/devinet.c), the source address MASQUERADE and output routes
// take: see selectAddr. dst may be invalid (0.0.0.0). The result is
// invalid when the host has no suitable address.
func (f *FIB) SelectSource(dev int, dst netip.Addr, scope Scope) netip.Addr {
	a := f.selectAddr(dev, u32(dst), scope)
	if a == 0 {
		return netip.Addr{}
	}
	return addr4(a)
}

// SelectSource4 is SelectSource with the addresses as uint32s (host
// byte order; 0: none), for the datapath's per-connection calls
// (MASQUERADE).
func (f *FIB) SelectSource4(dev int, dst uint32, scope Scope) uint32 {
	return f.selectAddr(dev, dst, scope)
}

// AddrType is inet_dev_addr_type / inet_addr_type
// (net/ipv4/fib_frontend.c __inet_dev_addr_type) as xt_addrtype uses it
// (net/netfilter/xt_addrtype.c): 0.0.0.0/8 and 255.255.255.255 are
// broadcast, 224.0.0.0/4 multicast; otherwise the type of the local
// table route covering addr (local, broadcast, ...), or unicast when
// there is none. With limitToDev set (dev != 0), a route on another
// device counts as unicast.
func (f *FIB) AddrType(addr netip.Addr, dev int, limitToDev bool) Type {
	a := u32(addr)
	if isZeronet(a) || isLbcast(a) {
		return Broadcast
	}
	if isMulticast(a) {
		return Multicast
	}
	t := f.tables[TableLocal]
	if t == nil {
		return Unicast
	}
	fl := flow{dst: a}
	var res tableResult
	if t.lookup(&fl, &res, true) != 0 {
		return Unicast
	}
	if limitToDev && dev != 0 {
		if len(res.a.nhs) == 0 || res.a.nhs[0].dev != dev {
			return Unicast
		}
	}
	return res.a.typ
}
