package datapath

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
	"github.com/uswitch-lab/uswitch/trace"
)

// IPVS in the hook graph (net/netfilter/ipvs/ip_vs_core.c ip_vs_ops4;
// the stages at netfilter.PriIPVS*, drawn in doc.go). The stages are in
// the lists only while the director has a service, as the kernel
// registers the hooks with the first one (ip_vs_register_hooks).
//
// A scheduled packet is routed to its real server by IPVS itself
// (__ip_vs_get_out_rt: a route to the dest address only), its TTL
// decremented, rewritten (NAT), left alone (DR) or encapsulated (TUN),
// and re-injected at LOCAL_OUT with no input device: it runs the OUTPUT
// hooks (IPVS ignores it there: skb->ipvs_property) and POSTROUTING.

func (k *pkt) ipvsOn() bool {
	d := k.e.LVS
	return d != nil && !k.ipvsDone && !d.Empty()
}

// tracing reports whether the packet's IPVS steps are traced (the event
// text is built only then).
func (k *pkt) tracing() bool {
	return k.tr != nil && k.tr.Format == FormatMonitor && (k.tr.All || k.p.Trace)
}

func (k *pkt) ipvsTrace(h netfilter.Hook, prio netfilter.Priority, event string) {
	k.tr.Lines = append(k.tr.Lines, trace.IPVSLine(k.trace, h.String(), int(prio), event))
}

// ipvsOut is ip_vs_out_hook at LOCAL_IN 98, FORWARD 100 or LOCAL_OUT -99.
// A reply it rerouted at FORWARD leaves by st.out from then on.
func (k *pkt) ipvsOut(st *hookState, prio netfilter.Priority) bool {
	h := st.hook
	if !k.ipvsOn() {
		return true
	}
	r := k.e.LVS.Out(k.p, h, k.env.now)
	if r.PortUnreach {
		if k.tracing() {
			k.ipvsTrace(h, prio, "drop: "+r.Reason)
		}
		k.drop(DropIPVS, 0, r.Reason)
		k.icmpError(packet.ICMPDestUnreach, 3)
		return false
	}
	if r.Conn == nil {
		return true
	}
	if r.V == lvs.Drop {
		// handle_response: the snat_handler could not rewrite it
		if k.tracing() {
			k.ipvsTrace(h, prio, "drop reply "+r.Conn.String()+": "+r.Reason)
		}
		k.drop(DropIPVS, 0, r.Reason)
		return false
	}
	if k.tracing() {
		k.ipvsTrace(h, prio, "reply "+r.Conn.String())
	}
	k.ipvsDone = true
	k.ipvsUntrack(r.Conn, false)
	// ip_vs_route_me_harder: with snat_reroute (or a local route) the
	// reply, now from the VIP, is routed as the host's own packet
	if h == netfilter.Forward && k.e.LVS.Sysctls().SnatReroute {
		if !k.reroute() {
			return false
		}
		st.out = k.cfg.FIB.LinkName(k.rt.Dev)
	}
	return true
}

// ipvsNotrack is ip_vs_notrack for a connection without netfilter
// conntrack (vs.conntrack=0 when it was made): the packet becomes
// untracked. It reports whether the connection uses conntrack instead.
func (k *pkt) ipvsNotrack(cp *lvs.Conn) (nfct bool) {
	if cp.Flags()&lvs.ConnNFCT != 0 {
		return true
	}
	if k.cfg.ctOn || k.ct.Conn != nil {
		k.ct = conntrack.Untracked
	}
	return false
}

// ipvsUntrack is ip_vs_notrack / ip_vs_update_conntrack.
func (k *pkt) ipvsUntrack(cp *lvs.Conn, outin bool) {
	if !k.ipvsNotrack(cp) {
		return
	}
	c := k.ct.Conn
	if c == nil || c.Confirmed() {
		return
	}
	t := c.Tuple(conntrack.Reply)
	if outin {
		t.Src, t.SrcPort = cp.DAddr, cp.DPort
	} else {
		t.Dst, t.DstPort = cp.VAddr, cp.VPort
	}
	_ = c.SetReplyTuple(t)
}

// ipvsIn is ip_vs_in_hook at LOCAL_IN 99 or LOCAL_OUT -98. It reports
// whether the hook list goes on (false: the packet was sent, dropped or
// stolen).
func (k *pkt) ipvsIn(h netfilter.Hook, prio netfilter.Priority) bool {
	if !k.ipvsOn() {
		return true
	}
	r := k.e.LVS.InTracked(k.p, h, k.env.now, k.randFunc(), k.ct.Conn != nil && k.ct.Conn.Confirmed())
	switch r.V {
	case lvs.Accept:
		return true
	case lvs.Leave:
		if k.tracing() {
			k.ipvsTrace(h, prio, "leave (no destination available)")
		}
		k.drop(DropIPVS, 0, r.Reason)
		k.icmpError(packet.ICMPDestUnreach, 3)
		return false
	case lvs.Drop:
		if k.tracing() {
			ev := "drop: " + r.Reason
			if r.Conn != nil {
				ev = "drop " + r.Conn.String() + ": " + r.Reason
			}
			k.ipvsTrace(h, prio, ev)
		}
		k.drop(DropIPVS, 0, r.Reason)
		return false
	}
	if k.tracing() {
		ev := "conn "
		if r.New {
			ev = "schedule "
		}
		k.ipvsTrace(h, prio, ev+r.Conn.String())
	}
	return k.ipvsXmit(r.Conn, r.ICMP)
}

// ipvsForwardICMP is ip_vs_forward_icmp at FORWARD 99.
func (k *pkt) ipvsForwardICMP(prio netfilter.Priority) bool {
	if !k.ipvsOn() || k.p.Proto != packet.ProtoICMP {
		return true
	}
	r := k.e.LVS.ForwardICMP(k.p, k.env.now)
	if r.V != lvs.Xmit {
		return true
	}
	if k.tracing() {
		k.ipvsTrace(netfilter.Forward, prio, "icmp error for "+r.Conn.String())
	}
	return k.ipvsXmit(r.Conn, true)
}

// ipvsXmit is ip_vs_nat_xmit / ip_vs_dr_xmit / ip_vs_tunnel_xmit. It
// returns true when the packet continues to local delivery (the dest is
// this host).
func (k *pkt) ipvsXmit(cp *lvs.Conn, icmp bool) bool {
	p := k.p
	fwd := cp.Fwd()
	if fwd == lvs.LocalNode || fwd == lvs.Bypass {
		return true
	}
	fib := k.cfg.FIB
	rt := fib.Output(&route.Flow{Dst: addr4(cp.DAddr)})
	if rt.Err != 0 {
		k.drop(DropIPVSNoRoute, cp.DAddr, "")
		k.icmpError(packet.ICMPDestUnreach, 1)
		return false
	}
	if rt.Type == route.Local {
		// the real server is this host: the packet goes on to local
		// delivery (NAT rewritten first)
		if fwd == lvs.Masq && !k.natToServer(cp, icmp) {
			return false
		}
		k.ipvsDone = true
		return true
	}
	// ensure_mtu_is_adequate: a DF packet that does not fit (with the
	// tunnel's headers) is answered with fragmentation needed
	mtu := fib.MTU(rt.Dev)
	if fwd == lvs.Tunnel && cp.Dest != nil {
		mtu -= lvs.EncapLen(cp.Dest)
		if mtu < 68 {
			k.drop(DropIPVSMTU, 0, "")
			return false
		}
	}
	if p.IP.DF() && len(p.IP) > mtu && !icmp {
		k.drop(DropIPVSTooBig, 0, "")
		k.icmpSend(packet.ICMPDestUnreach, 4, uint32(mtu))
		return false
	}
	// decrement_ttl
	if p.IP.TTL() <= 1 {
		k.drop(DropIPVSTTL, 0, "")
		k.icmpError(packet.ICMPTimeExceeded, 0)
		return false
	}
	p.SetTTL(p.IP.TTL() - 1)
	switch fwd {
	case lvs.Masq:
		if !k.natToServer(cp, icmp) {
			return false
		}
	case lvs.Tunnel:
		src := u32(rt.Src)
		if src == 0 {
			src = u32(fib.SelectSource(rt.Dev, addr4(cp.DAddr), route.ScopeUniverse))
		}
		k.ipvsUntrack(cp, true)
		if err := lvs.Encap(p, cp, src, uint16(k.rand32())); err != nil {
			k.drop(DropIPVSEncap, 0, err.Error())
			return false
		}
	case lvs.Route:
		// only the MAC changes: the next hop is the real server
		// (KNOWN_NH), or the gateway towards it
		if !rt.Gateway.IsValid() {
			k.nh = cp.DAddr
		}
		k.ipvsNotrack(cp)
	}
	k.ipvsDone = true
	k.rt = rt
	k.pathRoute("ipvs", &k.rt)
	k.hasDst = false
	kind := Forwarded
	if p.Local {
		kind = Sent
	}
	k.localOut(kind)
	return false
}

// natToServer is ip_vs_nat_xmit's rewrite (or ip_vs_nat_icmp's for an
// ICMP error) and its conntrack handling. false: the dnat_handler failed
// and the packet was dropped (tx_error).
func (k *pkt) natToServer(cp *lvs.Conn, icmp bool) bool {
	if icmp {
		lvs.NATICMPIn(k.p, cp)
		k.ipvsNotrack(cp)
		return true
	}
	if !lvs.DNAT(k.p, cp) {
		k.drop(DropIPVS, 0, "ipvs: SCTP header truncated")
		return false
	}
	k.ipvsUntrack(cp, true)
	return true
}
