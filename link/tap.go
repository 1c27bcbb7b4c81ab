package link

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// TAP ports: an [[interface]] with kind = "tap" is an Ethernet link
// between uswitch and its namespace. The namespace's end is the TAP
// device (with the kernel's random MAC); uswitch's end is a MAC of its
// own (Interface.MAC, or DefaultMAC of the interface's name) that exists
// only in the frames uswitch reads and writes. uswitch is the host on
// that link, as the kernel is on an Ethernet device:
//
//	frame in ─┬─ shorter than 14 bytes ──────────────── malformed
//	          ├─ 802.1Q / 802.1ad tagged ───────────── dropped (VLANFrames)
//	          ├─ ARP (0x0806) ─ arp_process: answer requests for our
//	          │                 addresses, learn the sender (tapPort.arp)
//	          ├─ IPv4 (0x0800) ─ pkt_type from the destination MAC
//	          │                 (eth_type_trans); PACKET_OTHERHOST dropped
//	          │                 as ip_rcv_core does (OtherHost), else to
//	          │                 the engine with p.L2 = the header
//	          └─ anything else (IPv6, 802.3 lengths...) ── NotIPv4Frames
//
//	packet out ─ Fate.NextHop ─ neighbour table ─┬─ known: dst MAC, our MAC,
//	                                             │  0x0800 written in front
//	                                             │  (in the buffer's headroom)
//	                                             └─ unknown: queued, ARP
//	                                                request (neigh.go)
//
// A packet read from a TUN or a TAP sits 14 bytes into its buffer (the
// reader leaves that headroom, or the frame's own header fills it), so
// a forwarded packet gets its Ethernet header without a copy; a packet
// the engine made (an answer) or rewrote into a new buffer (IPVS
// tunnelling, TCPMSS growing it) is copied into a pooled frame.
//
// Packet capture on a TAP port (uswitch pcap) keeps writing the IPv4
// packet, as on a TUN (LINKTYPE_RAW): the capture shows what the engine
// saw and sent, and one capture format serves every port; ARP is not
// captured.

// ethHeaderLen is an Ethernet II header: destination, source, type.
const ethHeaderLen = 14

// Ethertypes.
const (
	etherTypeIPv4  = 0x0800
	etherTypeARP   = 0x0806
	etherTypeVLAN  = 0x8100 // 802.1Q
	etherTypeQinQ  = 0x88a8 // 802.1ad
	etherTypeQinQ1 = 0x9100 // the old QinQ tag
)

// ARP (RFC 826) over Ethernet for IPv4: the 28-byte message.
const (
	arpLen       = 28
	arpOpRequest = 1
	arpOpReply   = 2
)

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// WithTAP makes the device dev an Ethernet port: uswitch's MAC on it is
// mac and its addresses there addrs (the ones it answers ARP for and
// sends requests from).
func WithTAP(dev string, mac [6]byte, addrs []netip.Prefix) DatapathOption {
	return func(d *Datapath) {
		if p := d.byName[dev]; p != nil {
			p.l2 = newTapPort(p.name, mac, addrs, p.mtu)
		}
	}
}

// tapPort is the Ethernet side of a port: its MAC, addresses, neighbour
// table, frame pool and counters. Everything but the table and the
// counters is fixed before the datapath starts.
type tapPort struct {
	name  string
	mac   [6]byte
	addrs []netip.Prefix // uswitch's addresses on the link
	neigh *neighTable
	// pool holds *frameBuf of ethHeaderLen+mtu bytes
	pool sync.Pool
	// rw is the reader goroutine's write batch (ARP replies and flushed
	// queues); only that goroutine uses it
	rw [][]byte

	arpReplied, arpRequested, unresolved, notIPv4, vlan, otherHost, malformed atomic.Uint64
}

func newTapPort(name string, mac [6]byte, addrs []netip.Prefix, mtu int) *tapPort {
	t := &tapPort{name: name, mac: mac, neigh: newNeighTable()}
	for _, a := range addrs {
		t.addrs = append(t.addrs, a)
	}
	size := ethHeaderLen + max(mtu, arpLen)
	t.pool.New = func() any {
		b := make([]byte, size)
		return &frameBuf{buf: b, home: &t.pool}
	}
	return t
}

// get returns a pooled frame of n bytes.
func (t *tapPort) get(n int) *frameBuf {
	f := t.pool.Get().(*frameBuf)
	if cap(f.buf) < n {
		f.buf = make([]byte, n) // bigger than the MTU: rare, not kept small
	}
	f.b = f.buf[:n]
	return f
}

// parseFrame returns an Ethernet II frame's ethertype; ok is false for
// a frame shorter than its header.
func parseFrame(f []byte) (etherType uint16, ok bool) {
	if len(f) < ethHeaderLen {
		return 0, false
	}
	return binary.BigEndian.Uint16(f[12:14]), true
}

// pktType is eth_type_trans's skb->pkt_type for a frame to dst on a
// device whose address is ours.
func pktType(dst []byte, ours [6]byte) uint8 {
	switch {
	case dst[0]&1 == 0:
		if [6]byte(dst[:6]) == ours {
			return packet.PktHost
		}
		return packet.PktOtherHost
	case [6]byte(dst[:6]) == broadcastMAC:
		return packet.PktBroadcast
	}
	return packet.PktMulticast
}

// putEth writes an Ethernet II header at the start of f.
func putEth(f []byte, dst, src [6]byte, etherType uint16) {
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], etherType)
}

// putARP writes a whole ARP frame (42 bytes, unpadded, as arp_create
// makes it) into f: the Ethernet header to ethDst from ethSrc, then the
// message.
func putARP(f []byte, ethDst, ethSrc [6]byte, m packet.ARP) []byte {
	f = f[:ethHeaderLen+arpLen]
	putEth(f, ethDst, ethSrc, etherTypeARP)
	m.Put(f[ethHeaderLen:])
	return f
}

// owns reports whether ip is one of uswitch's addresses on the link.
// arp_process answers for any local address under the default
// arp_ignore = 0; a lab port answers only for its own (arp_ignore = 1),
// so an address uswitch has elsewhere (a DR director's VIP) is never
// claimed on this link.
func (t *tapPort) owns(ip uint32) bool {
	for _, p := range t.addrs {
		if packet.AddrFrom(p.Addr()) == ip {
			return true
		}
	}
	return false
}

// srcFor is the sender address of a request for target: uswitch's
// address on the link whose subnet holds target, else its first
// (inet_select_addr at link scope); 0 without any.
func (t *tapPort) srcFor(target uint32) uint32 {
	a := netip.AddrFrom4([4]byte{byte(target >> 24), byte(target >> 16), byte(target >> 8), byte(target)})
	for _, p := range t.addrs {
		if p.Contains(a) {
			return packet.AddrFrom(p.Addr())
		}
	}
	if len(t.addrs) > 0 {
		return packet.AddrFrom(t.addrs[0].Addr())
	}
	return 0
}

// request writes the ARP request for target into f (arp_solicit:
// broadcast, target hardware address zero).
func (t *tapPort) request(f []byte, target uint32) []byte {
	return t.requestTo(f, target, broadcastMAC)
}

// requestTo is request sent to dst (a PROBE's unicast request: its
// target hardware address stays zero, as arp_solicit sends it).
func (t *tapPort) requestTo(f []byte, target uint32, dst [6]byte) []byte {
	return putARP(f, dst, t.mac, packet.ARP{Op: arpOpRequest, SHA: t.mac, SPA: t.srcFor(target), TPA: target})
}

// input classes a frame read from the device. An IPv4 frame for us (or
// broadcast, multicast) returns the IPv4 packet and its pkt_type; ARP
// is handled here (answers written to dev at once); the rest is
// counted and dropped.
func (t *tapPort) input(f []byte, now int64, dev Device) (ip []byte, pt uint8, ok bool) {
	et, ok := parseFrame(f)
	if !ok {
		t.malformed.Add(1)
		return nil, 0, false
	}
	switch et {
	case etherTypeIPv4:
		pt = pktType(f[0:6], t.mac)
		if pt == packet.PktOtherHost {
			// ip_rcv_core: "packet not for us" (a TAP is not
			// promiscuous for uswitch, but a namespace can send to
			// any MAC)
			t.otherHost.Add(1)
			return nil, 0, false
		}
		return f[ethHeaderLen:], pt, true
	case etherTypeARP:
		t.arp(f, now, dev)
	case etherTypeVLAN, etherTypeQinQ, etherTypeQinQ1:
		t.vlan.Add(1)
	default:
		t.notIPv4.Add(1)
	}
	return nil, 0, false
}

// arp is arp_rcv + arp_process (net/ipv4/arp.c) for one frame.
func (t *tapPort) arp(f []byte, now int64, dev Device) {
	m, ok := packet.ParseARP(f[ethHeaderLen:])
	if !ok {
		t.malformed.Add(1)
		return
	}
	// arp_rcv: ARP to another host's MAC is not ours
	if pktType(f[0:6], t.mac) == packet.PktOtherHost {
		t.otherHost.Add(1)
		return
	}
	// arp_process: no requests for multicast or loopback targets; and
	// nothing is learned for a non-unicast sender hardware address
	if m.TPA>>28 == 0xe || m.TPA>>24 == 127 || m.SHA[0]&1 != 0 || m.SHA == [6]byte{} {
		return
	}
	mine := t.owns(m.TPA)
	if m.Op == arpOpRequest && m.SPA == 0 {
		// duplicate address detection (RFC 5227 probe): answered,
		// to the prober's MAC, with target address 0; nothing learned
		if mine {
			t.reply(dev, m.SHA, packet.ARP{Op: arpOpReply, SHA: t.mac, SPA: m.TPA, THA: m.SHA, TPA: 0})
		}
		return
	}
	// a request for us creates the sender's entry (neigh_event_ns);
	// anything else only refreshes an entry there is
	// a reply sent to us confirms the neighbour (REACHABLE); a request
	// or a broadcast reply only tells its MAC (STALE)
	reachable := m.Op == arpOpReply && pktType(f[0:6], t.mac) == packet.PktHost
	flush := t.neigh.learn(m.SPA, m.SHA, now, m.Op == arpOpRequest && mine, reachable)
	if m.Op == arpOpRequest && mine {
		t.reply(dev, m.SHA, packet.ARP{Op: arpOpReply, SHA: t.mac, SPA: m.TPA, THA: m.SHA, TPA: m.SPA})
	}
	if len(flush) > 0 {
		// the waiting packets go from this goroutine; a worker that
		// found the MAC a moment earlier may write a later packet of
		// the same flow first (only while the address resolves)
		t.rw = t.rw[:0]
		for _, q := range flush {
			putEth(q.b, m.SHA, t.mac, etherTypeIPv4)
			t.rw = append(t.rw, q.b)
		}
		dev.Write(t.rw)
		for i, q := range flush {
			q.release()
			t.rw[i] = nil
		}
	}
}

// reply writes an ARP reply (reader goroutine only).
func (t *tapPort) reply(dev Device, to [6]byte, m packet.ARP) {
	q := t.get(ethHeaderLen + arpLen)
	putARP(q.b, to, t.mac, m)
	t.rw = append(t.rw[:0], q.b)
	if n, _ := dev.Write(t.rw); n == 1 {
		t.arpReplied.Add(1)
	}
	t.rw[0] = nil
	q.release()
}

// withHeadroom returns b with n bytes in front of it when b lies inside
// own with at least n bytes of own before it (a packet still in the
// buffer its reader read it into); nil otherwise (b is elsewhere: an
// answer, a packet the engine moved to a new buffer).
func withHeadroom(own, b []byte, n int) []byte {
	if len(b) == 0 || len(own) == 0 {
		return nil
	}
	own = own[:cap(own)]
	off := cap(own) - cap(b)
	if off < n || off+len(b) > len(own) || &own[off] != &b[0] {
		return nil
	}
	return own[off-n : off+len(b)]
}

// multicastMAC is ip_eth_mc_map: 01:00:5e and the group's low 23 bits.
func multicastMAC(ip uint32) [6]byte {
	return [6]byte{0x01, 0x00, 0x5e, byte(ip>>16) & 0x7f, byte(ip >> 8), byte(ip)}
}

// linkMAC is a destination that needs no resolution: the limited or a
// directed broadcast of one of our subnets (RTN_BROADCAST neighbours
// take the device's broadcast address), a multicast group (arp_mc_map).
func (t *tapPort) linkMAC(ip uint32) (mac [6]byte, ok bool) {
	switch {
	case ip == 0xffffffff:
		return broadcastMAC, true
	case ip>>28 == 0xe:
		return multicastMAC(ip), true
	}
	for _, p := range t.addrs {
		if p.Bits() < 31 && ip|(^uint32(0)>>p.Bits()) == ip && packet.AddrFrom(p.Masked().Addr()) == ip&^(^uint32(0)>>p.Bits()) {
			return broadcastMAC, true
		}
	}
	return mac, false
}

// output makes the frame of the IPv4 packet b (from the buffer own, nil
// for a packet the engine made) for next hop nh. frame is what to write
// now (nil: the packet waits for the MAC, or was dropped); req is an ARP
// request to write as well. Pooled frames used are appended to held,
// to be released once the batch is written. The resolved path writes
// into own's headroom and allocates nothing.
func (t *tapPort) output(b []byte, nh uint32, own []byte, now int64, held *[]*frameBuf) (frame, req []byte) {
	if len(b) < packet.IPv4MinHeaderLen {
		return nil, nil
	}
	if nh == 0 {
		nh = binary.BigEndian.Uint32(b[16:20])
	}
	mac, ok := t.neigh.lookup(nh, now)
	if !ok {
		mac, ok = t.linkMAC(nh)
	}
	if ok {
		if f := withHeadroom(own, b, ethHeaderLen); f != nil {
			putEth(f, mac, t.mac, etherTypeIPv4)
			return f, nil
		}
		q := t.get(ethHeaderLen + len(b))
		copy(q.b[ethHeaderLen:], b)
		putEth(q.b, mac, t.mac, etherTypeIPv4)
		*held = append(*held, q)
		return q.b, nil
	}
	// unresolved: the packet waits in a frame of its own
	q := t.get(ethHeaderLen + len(b))
	copy(q.b[ethHeaderLen:], b)
	mac, resolved, dropped, solicit := t.neigh.enqueue(nh, q, now)
	if resolved {
		putEth(q.b, mac, t.mac, etherTypeIPv4)
		*held = append(*held, q)
		return q.b, nil
	}
	if dropped != nil {
		t.unresolved.Add(1)
		dropped.release()
	}
	if solicit {
		r := t.get(ethHeaderLen + arpLen)
		t.request(r.b, nh)
		*held = append(*held, r)
		t.arpRequested.Add(1)
		return nil, r.b
	}
	return nil, nil
}

// tick is the reaper's neighbour pass: the requests the timers send
// (INCOMPLETE: broadcast; PROBE: unicast; written to dev at once), and
// the packets of the next hops that never answered dropped, returning copies of them (IPv4) for the
// ICMP host unreachable errors the kernel sends about them
// (arp_error_report).
func (t *tapPort) tick(now int64, dev Device) (failed [][]byte) {
	again, fq := t.neigh.age(now)
	for _, q := range fq {
		t.unresolved.Add(1)
		failed = append(failed, append([]byte(nil), q.b[ethHeaderLen:]...))
		q.release()
	}
	if len(again) == 0 {
		return failed
	}
	var fs []*frameBuf
	var out [][]byte
	for _, pr := range again {
		r := t.get(ethHeaderLen + arpLen)
		if pr.unicast {
			t.requestTo(r.b, pr.target, pr.mac)
		} else {
			t.request(r.b, pr.target)
		}
		fs = append(fs, r)
		out = append(out, r.b)
	}
	n, _ := dev.Write(out)
	t.arpRequested.Add(uint64(n))
	for _, r := range fs {
		r.release()
	}
	return failed
}

// addStats adds a port's counters to s.
func (t *tapPort) addStats(s *Stats) {
	s.ARPReplied += t.arpReplied.Load()
	s.ARPRequested += t.arpRequested.Load()
	s.Unresolved += t.unresolved.Load()
	s.NotIPv4Frames += t.notIPv4.Load()
	s.VLANFrames += t.vlan.Load()
	s.OtherHost += t.otherHost.Load()
	s.Malformed += t.malformed.Load()
}
