package datapath

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/ipfrag"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// Fragments in, fragments out. Reassembly is the kernel's in two places:
//
//   - nf_defrag_ipv4 at priority -400 on PREROUTING and LOCAL_OUT, in a
//     namespace where conntrack runs (ipv4_conntrack_defrag): a fragment
//     is held (NF_STOLEN) until its datagram is whole, and the datagram
//     goes on through raw, conntrack, NAT and the tables in its place,
//     with skb->ignore_df set (nf_ct_ipv4_gather_frags);
//   - ip_local_deliver, before INPUT, for what is addressed to the host
//     (without conntrack, fragments reach it one by one).
//
// On the way out, ip_finish_output fragments what is over the output
// MTU, and a reassembled datagram always (IPCB frag_max_size set), at
// most in the size of the largest fragment it came in (ip_do_fragment):
// when the fragments it was built from fit, they leave as they came
// (the frag_list fast path, which clears DF); otherwise in equal pieces
// (the slow path, which keeps DF when the datagram had it,
// IPSKB_FRAG_PMTU). A datagram with DF that cannot pass goes back as
// ICMP fragmentation needed: in ip_forward before the FORWARD hook
// (ip_exceeds_mtu) and in ip_fragment.

// defragHook is ipv4_conntrack_defrag.
func (k *pkt) defragHook(h netfilter.Hook) bool {
	// a packet that already has its connection (looped back) or is
	// untracked is not gathered again
	if k.ct.Conn != nil || k.ct.IsUntracked() || !k.p.IP.IsFragment() {
		return true
	}
	user := ipfrag.ConntrackIn
	if h != netfilter.PreRouting {
		user = ipfrag.ConntrackOut
	}
	if !k.gather(user + ipfrag.User(k.zone)) {
		return false
	}
	k.ignoreDF = true
	return true
}

// gather hands the fragment k.p to the reassembly queues of user: false
// when it is held or dropped; true when it completed its datagram, which
// is k.p from now on.
func (k *pkt) gather(user ipfrag.User) bool {
	p := k.p
	r := k.e.Frags.Add(p, user, k.iif, k.env.now)
	switch r.Status {
	case ipfrag.Held:
		k.fate.Kind = Held
		return false
	case ipfrag.Complete:
	default:
		k.drop(DropDefrag, uint32(r.Status), "")
		return false
	}
	// the datagram has the first fragment's metadata, the input device
	// of the last (ip_frag_reasm: skb->dev = dev)
	q := &packet.Packet{Data: r.Datagram, L2: p.L2, Meta: r.Meta}
	q.InIf, q.InIndex, q.Seq = p.InIf, p.InIndex, p.Seq
	// the fragments' checksum offload flags do not add up to the
	// datagram's: its transport checksum is checked whole
	q.CsumValid = false
	if err := q.Decode(); err != nil {
		k.drop(DropDefrag, uint32(ipfrag.Invalid), "")
		return false
	}
	k.p = q
	k.fragMax, k.fragPMTU = r.FragMaxSize, r.PMTU
	k.pieces = k.pieces[:0]
	for _, f := range r.Frags {
		k.pieces = append(k.pieces, f.Len)
	}
	k.fate.Datagram, k.fate.Reassembled = q, r.Frags
	return true
}

// exceedsMTU is ip_exceeds_mtu (net/ipv4/ip_forward.c).
func (k *pkt) exceedsMTU(mtu int) bool {
	ip := k.p.IP
	if len(ip) <= mtu || !ip.DF() {
		return false
	}
	if k.fragMax > mtu {
		return true
	}
	return !k.ignoreDF
}

// finishOutput is ip_finish_output's choice after POSTROUTING: whole,
// in fragments (Fate.Frags), or dropped with fragmentation needed.
// Packets to the loopback stay whole (their MTU is 64 KiB; uswitch
// delivers a reassembled datagram that loops back whole).
func (k *pkt) finishOutput(out string) bool {
	fib := k.cfg.FIB
	if fib == nil || k.rt.Dev == 0 || k.rt.Dev == fib.Loopback() {
		return true
	}
	mtu := fib.MTU(k.rt.Dev)
	if mtu <= 0 || len(k.p.IP) <= mtu && k.fragMax == 0 {
		return true
	}
	// ip_fragment
	if k.p.IP.DF() && (!k.ignoreDF || k.fragMax > mtu) {
		k.drop(DropFragNeeded, uint32(mtu), out)
		k.icmpSend(packet.ICMPDestUnreach, 4, uint32(mtu))
		return false
	}
	frags := k.fragment(mtu)
	if frags == nil {
		k.drop(DropFragNeeded, uint32(mtu), out)
		return false
	}
	if len(frags) > 1 {
		k.fate.Frags = frags
	}
	return true
}

// fragment is ip_do_fragment: the packet's fragments for mtu (nil: an
// MTU too small to carry 8 bytes).
func (k *pkt) fragment(mtu int) [][]byte {
	ip := k.p.IP
	if k.fragMax != 0 && k.fragMax < mtu {
		mtu = k.fragMax
	}
	hlen := ip.HeaderLen()
	space := mtu - hlen
	payload := []byte(ip[hlen:])
	if space < 8 {
		return nil
	}
	// the fast path: the frag_list of a reassembled datagram, when
	// every piece fits and all but the last are multiples of 8
	fast := len(k.pieces) > 0 && !ip.IsFragment()
	sum := 0
	for i, n := range k.pieces {
		if n > space || n&7 != 0 && i < len(k.pieces)-1 {
			fast = false
		}
		sum += n
	}
	sizes := k.pieces
	df := false
	if !fast || sum != len(payload) {
		// the slow path: pieces of the space rounded down to 8
		sizes = nil
		for left := len(payload); left > 0; {
			n := min(left, space)
			if n < left {
				n &^= 7
			}
			sizes = append(sizes, n)
			left -= n
		}
		df = k.fragPMTU
	}
	off0 := int(ip.FragOffset()) * 8
	lastMF := ip.MF()
	buf := make([]byte, len(sizes)*hlen+len(payload))
	frags := make([][]byte, 0, len(sizes))
	hdr := []byte(ip[:hlen])
	off := 0
	for i, n := range sizes {
		f := buf[: hlen+n : hlen+n]
		buf = buf[hlen+n:]
		copy(f, hdr)
		copy(f[hlen:], payload[off:off+n])
		fo := uint16((off0 + off) / 8)
		if i < len(sizes)-1 || lastMF {
			fo |= 0x2000
		}
		if df {
			fo |= 0x4000
		}
		binary.BigEndian.PutUint16(f[2:], uint16(hlen+n))
		binary.BigEndian.PutUint16(f[6:], fo)
		packet.IPv4(f).SetChecksum()
		frags = append(frags, f)
		if i == 0 && off0 == 0 && hlen > packet.IPv4MinHeaderLen {
			// ip_options_fragment: after the datagram's first
			// fragment, the next carry only the options with the
			// copied flag, the others made NOOPs in place (a
			// fragment cut again keeps its options as they are)
			hdr = append([]byte(nil), hdr...)
			packet.FragmentOptions(hdr[packet.IPv4MinHeaderLen:])
		}
		off += n
	}
	return frags
}

// ExpiredDatagram is a reassembly queue whose time ran out
// (ipfrag_time): its fragments are dropped, and the ICMP time exceeded
// (fragment reassembly) ip_expire sent about it, if any, is in Answers.
type ExpiredDatagram struct {
	Key     ipfrag.Key
	Frags   []ipfrag.Frag
	Answers []Answer
}

// ExpireFragments fires the reassembly timers due at now (ip_expire):
// a queue whose first fragment had arrived is answered with ICMP time
// exceeded, code 1, when the first fragment's input route still exists,
// and for conntrack's queues only when that route is local (only an end
// host sends it, RFC 792). tr may be nil. Call it from time to time
// (the lab's reaper, trace before each packet).
func (e *Engine) ExpireFragments(now int64, tr *Tracer) []ExpiredDatagram {
	if next := e.Frags.NextExpiry(); next == 0 || next > now {
		return nil
	}
	var out []ExpiredDatagram
	for _, x := range e.Frags.Expire(now) {
		d := ExpiredDatagram{Key: x.Key, Frags: x.Frags}
		if x.Head != nil {
			d.Answers = e.fragTimeExceeded(x, now, tr)
		}
		out = append(out, d)
	}
	return out
}

func (e *Engine) fragTimeExceeded(x ipfrag.Expired, now int64, tr *Tracer) []Answer {
	p := &packet.Packet{Data: x.Head}
	if p.Decode() != nil {
		return nil
	}
	k := e.newPkt(p, now, tr, nil)
	defer func() {
		if tr == nil {
			e.putPkt(k)
		}
	}()
	fib := k.cfg.FIB
	if fib == nil {
		return nil
	}
	k.iif = x.IIF
	p.InIf = fib.LinkName(x.IIF)
	k.rt = fib.Input(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), TOS: p.IP.TOS(), IIF: x.IIF})
	if k.rt.Err != 0 || x.SkipUnlessLocal && k.rt.Type != route.Local {
		return nil
	}
	k.icmpError(packet.ICMPTimeExceeded, 1)
	return k.fate.Answers
}
