package datapath

import (
	"time"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// IPv4 options on the receive and forward paths (net/ipv4/ip_input.c
// ip_rcv_options, net/ipv4/ip_options.c, net/ipv4/ip_forward.c) and in
// the host's answers (net/ipv4/icmp.c __ip_options_echo). packet/options.go
// parses and rewrites the option bytes; this file answers its questions
// about the host and acts on its verdicts. A packet without options
// (header length 20) never gets here.
//
// Not modelled: IP_ROUTER_ALERT raw sockets (ip_call_ra_chain finds
// none, so a router alert is forwarded like any packet), CIPSO label
// validation (no NetLabel), log_martians, and ip_options_fragment (the
// engine does not fragment).

// wallClock is the time the timestamp option records (a variable for
// tests).
var wallClock = time.Now

// optHost is the packet seen as the host the options code asks
// (packet.OptionsEnv, packet.ForwardEnv); a pointer conversion, so
// passing it allocates nothing.
type optHost pkt

// SpecDst is fib_compute_spec_dst (net/ipv4/fib_frontend.c): a packet
// for us records its destination, any other the preferred source of the
// route back to its sender (from the input device for 0.0.0.0).
func (h *optHost) SpecDst() uint32 {
	k := (*pkt)(h)
	p := k.p
	if k.rt.Type == route.Local {
		return p.Dst
	}
	fib := k.cfg.FIB
	if fib == nil {
		return 0
	}
	scope := route.ScopeUniverse
	if p.Src>>24 != 0 {
		fl := route.Flow{Dst: addr4(p.Src), TOS: p.IP.TOS()}
		if fib.Config().All.SrcValidMark || fib.Config().Dev[p.InIf].SrcValidMark {
			fl.Mark = p.Mark
		}
		if a := fib.PrefSrc(&fl); a.IsValid() {
			return u32(a)
		}
	} else {
		scope = route.ScopeLink
	}
	return u32(fib.SelectSource(k.iif, addr4(p.Src), scope))
}

// Timestamp is inet_current_timestamp (net/ipv4/icmp.c): milliseconds
// since midnight UTC.
func (h *optHost) Timestamp() uint32 {
	t := wallClock().UTC()
	return uint32(t.Unix()%86400)*1000 + uint32(t.Nanosecond()/1e6)
}

// AddrUnicast is inet_addr_type(a) == RTN_UNICAST: not an address of
// the host's.
func (h *optHost) AddrUnicast(a uint32) bool {
	fib := (*pkt)(h).cfg.FIB
	return fib == nil || fib.AddrType(addr4(a), 0, false) == route.Unicast
}

// RouteSource is ip_rt_get_source (net/ipv4/route.c) for a forwarded
// packet (an input route): the preferred source of the route to daddr
// out of the packet's output device, else the output device's address
// for the next hop.
func (h *optHost) RouteSource(daddr uint32) uint32 {
	k := (*pkt)(h)
	p := k.p
	fib := k.cfg.FIB
	if fib == nil {
		return 0
	}
	fl := route.Flow{Dst: addr4(daddr), Src: addr4(p.Src), TOS: p.IP.TOS(), OIF: k.rt.Dev, IIF: k.iif, Mark: p.Mark}
	if a := fib.PrefSrc(&fl); a.IsValid() {
		return u32(a)
	}
	nh := daddr
	if k.rt.Gateway.IsValid() {
		nh = u32(k.rt.Gateway)
	}
	return u32(fib.SelectSource(k.rt.Dev, addr4(nh), route.ScopeUniverse))
}

// rcvOptions is ip_rcv_options (net/ipv4/ip_input.c), run after the
// input route for a packet whose header has options: invalid options
// are dropped (InHdrErrors) with an ICMP parameter problem pointing at
// the byte at fault (ip_options_compile); a source route is dropped
// unless the input device accepts source routes, and otherwise followed
// (ip_options_rcv_srr). It reports whether the packet goes on.
func (k *pkt) rcvOptions() bool {
	p := k.p
	if k.rec {
		// the options are rewritten per packet and a source route
		// may reroute: nothing to replay
		k.memo.Tainted = true
	}
	if pp := packet.CompileOptions(p.IP, &k.opt, (*optHost)(k)); pp >= 0 {
		k.drop(DropIPOptions, uint32(pp), "")
		k.icmpSend(packet.ICMPParamProb, 0, uint32(pp)<<24)
		return false
	}
	if k.opt.SRR == 0 {
		return true
	}
	if k.cfg.FIB == nil || !k.cfg.FIB.AcceptSourceRoute(k.iif) {
		// IN_DEV_SOURCE_ROUTE off: a martian (logged with
		// log_martians), no ICMP
		k.drop(DropSourceRoute, 0, "")
		return false
	}
	return k.rcvSRR()
}

// rcvSRR is ip_options_rcv_srr (net/ipv4/ip_options.c): a source route
// is followed only by the host it names as the destination. Passing
// hops that are ours, the packet is rerouted to the first that is not
// (ip_forward_options then makes it the destination); a strict route
// to a destination not ours is a parameter problem.
func (k *pkt) rcvSRR() bool {
	p := k.p
	if p.PktType != packet.PktHost {
		k.drop(DropSourceRouteFailed, 0, "")
		return false
	}
	switch k.rt.Type {
	case route.Unicast:
		if !k.opt.StrictRoute {
			return true
		}
		k.drop(DropSourceRouteFailed, 0, "")
		k.icmpSend(packet.ICMPParamProb, 0, 16<<24)
		return false
	case route.Local:
	default:
		k.drop(DropSourceRouteFailed, 0, "")
		return false
	}
	ip := p.IP
	off := int(k.opt.SRR)
	if off+3 > len(ip) {
		k.drop(DropSourceRouteFailed, 0, "")
		return false
	}
	ptr, space := int(ip[off+2]), int(ip[off+1])
	var nexthop uint32
	for ; ptr <= space; ptr += 4 {
		if ptr+3 > space || off+ptr+3 > len(ip) {
			k.drop(DropSourceRouteFailed, 0, "")
			k.icmpSend(packet.ICMPParamProb, 0, uint32(off+2)<<24)
			return false
		}
		b := ip[off+ptr-1:]
		nexthop = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		rt := k.cfg.FIB.Input(&route.Flow{Dst: addr4(nexthop), Src: addr4(p.Src), TOS: ip.TOS(), IIF: k.iif, Mark: p.Mark,
			Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort})
		if rt.Err != 0 || (rt.Type != route.Unicast && rt.Type != route.Local) {
			k.drop(DropSourceRouteFailed, 0, "")
			return false
		}
		k.rt = rt
		if rt.Type != route.Local {
			break
		}
		// "superfast loopback forward": the next hop is ours too; the
		// destination is rewritten (checksum stale: is_changed)
		ip[16], ip[17], ip[18], ip[19] = b[0], b[1], b[2], b[3]
		p.Dst = nexthop
		k.opt.Changed = true
	}
	if ptr <= space {
		k.opt.SRRIsHit, k.opt.NextHop, k.opt.Changed = true, nexthop, true
	}
	return true
}

// srFailed is ip_forward's sr_failed: a strict source route may not
// leave through a gateway; the sender gets a source route failed
// unreachable.
func (k *pkt) srFailed() bool {
	if !k.opt.StrictRoute || k.opt.SRR == 0 || !k.rt.Gateway.IsValid() {
		return false
	}
	k.drop(DropSourceRouteFailed, 0, "")
	k.icmpError(packet.ICMPDestUnreach, 5)
	return true
}

// forwardOptions is ip_forward_options (ip_forward_finish, after the
// FORWARD hook): the record route gets the output address, a source
// route that hit this host moves on to its next hop, and the header
// checksum is made right.
func (k *pkt) forwardOptions() {
	if nd, ok := packet.ForwardOptions(k.p.IP, &k.opt, (*optHost)(k)); ok {
		k.p.Dst = nd
	}
}

// replyOptions gives a reply b (from the host, its addresses final) the
// options __ip_options_echo makes from the packet's, filled in by
// ip_options_build: the record route and timestamp with b's source and
// the time; a reversed source route sends it to its first hop. It
// returns b itself when there are none, and false when the kernel would
// not answer.
func (k *pkt) replyOptions(b []byte) ([]byte, bool) {
	if k.opt.OptLen == 0 {
		return b, true
	}
	var buf [packet.OptionsMaxLen]byte
	d, ok := packet.EchoOptions(buf[:], k.p.IP, &k.opt, (*optHost)(k))
	if !ok {
		return nil, false
	}
	if d.OptLen == 0 {
		return b, true
	}
	return insertOptions(b, buf[:d.OptLen], &d, (*optHost)(k).Timestamp()), true
}

// insertOptions returns b with the options opts (described by d) after
// its 20-byte header, filled in for b's addresses (ip_options_build),
// and its header checksum made right.
func insertOptions(b, opts []byte, d *packet.Options, now uint32) []byte {
	n := len(opts)
	out := make([]byte, len(b)+n)
	copy(out, b[:packet.IPv4MinHeaderLen])
	copy(out[packet.IPv4MinHeaderLen:], opts)
	copy(out[packet.IPv4MinHeaderLen+n:], b[packet.IPv4MinHeaderLen:])
	h := packet.IPv4(out)
	out[0] = 0x40 | byte((packet.IPv4MinHeaderLen+n)/4)
	tl := len(out)
	out[2], out[3] = byte(tl>>8), byte(tl)
	final := h.Dst()
	if d.SRR != 0 {
		// to the route's first hop; the final destination goes in its
		// last slot (ICMP has no pseudo-header; a TCP reply's is the
		// final destination's, as the kernel's)
		f := d.FAddr
		out[16], out[17], out[18], out[19] = byte(f>>24), byte(f>>16), byte(f>>8), byte(f)
	}
	packet.BuildOptions(h, d, final, h.Src(), now)
	h.SetChecksum()
	return out
}

// echoRoom is how many option bytes an ICMP error about the packet
// carries (__icmp_send takes them off its 576 bytes), and the first hop
// of a reversed source route (0: none).
func (k *pkt) echoRoom() (n int, faddr uint32, ok bool) {
	if k.opt.OptLen == 0 {
		return 0, 0, true
	}
	var buf [packet.OptionsMaxLen]byte
	d, ok := packet.EchoOptions(buf[:], k.p.IP, &k.opt, (*optHost)(k))
	if d.SRR != 0 {
		faddr = d.FAddr
	}
	return int(d.OptLen), faddr, ok
}

// rejectCsumFails is whether a REJECT's transport checksum check
// (nf_reject_ip_tcphdr_get and nf_send_unreach: nf_ip_checksum, in
// net/netfilter/utils.c) fails only because ip_options_compile rewrote
// the header in place: without a verified checksum at hand
// nf_ip_checksum sums the whole packet from its IP header, counting on
// the header's own checksum to cancel it out, and a header whose
// options were rewritten keeps its old checksum until ip_forward_options
// makes it right. The checksum is at hand (no sum) when the device
// vouched for it (CHECKSUM_UNNECESSARY), or for a packet conntrack
// checked in PREROUTING (CHECKSUM_COMPLETE, csum_valid): nf_send_unreach
// then skips the check (skb_csum_unnecessary) and nf_send_reset's check
// at INPUT takes the stored sum; ip_forward's skb_forward_csum demotes a
// forwarded packet's to CHECKSUM_NONE, so at FORWARD a reset sums anew.
// unreach: the ICMP variant (only TCP and checksummed UDP are summed,
// nf_reject_verify_csum; ICMP and others are left to the caller as
// before).
func (k *pkt) rejectCsumFails(unreach bool) bool {
	p := k.p
	if !k.opt.Changed || p.CsumValid {
		return false
	}
	verified := k.ct.Conn != nil
	if unreach {
		switch {
		case p.Proto == packet.ProtoTCP:
		case p.Proto == packet.ProtoUDP && p.HasL4 && packet.UDP(p.L4).Checksum() != 0:
		default:
			return false
		}
		return !verified
	}
	return !verified || k.ctx.Hook != netfilter.LocalIn
}

// errorRoute is whether a failed input route is one the kernel still
// gives the packet (ip_route_input_slow's no_route: an RTN_UNREACHABLE
// dst whose input is ip_error, for a failed FIB lookup, a blackhole or
// prohibit route included), so ip_rcv_options runs before ip_error; the
// route package marks such a result Unreachable. Martians and rp_filter
// failures drop the packet in the lookup itself.
func errorRoute(r *route.Result) bool { return r.Type == route.Unreachable }
