package link

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/encap"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// Tunnel devices of a node: a vxlan device (vxlan.calico, flannel.1) or
// an ipip device (tunl0) that uswitch encapsulates and decapsulates
// itself, with the kernel drivers' semantics (package encap). Such a
// port has no file: it exists in the engine's FIB (its addresses and
// routes, -o/-i vxlan.calico in rules) and in the workers:
//
//	engine: out vxlan.calico ─ emit ─ tunnelOut: neighbour (the TAP
//	   code: static or ARP-learned) ─ frame ─ FDB ─ outer IPv4/UDP/VXLAN
//	   ─ queued as the host's own packet ─ Engine.Send: OUTPUT,
//	   POSTROUTING ─ out eth0
//	engine: delivered (INPUT done) udp dport 4789 ─ deliver ─ tunnelIn:
//	   ParseVXLAN, VNI -> device, loop and FDB learning checks, ECN ─
//	   inner frame (TAP code: ARP, pkt_type) ─ queued ─ Engine.Receive
//	   with IN=vxlan.calico
//
// The outer packet is the inner skb made bigger, as in the kernel
// (iptunnel_xmit -> ip_local_out): it keeps the inner packet's mark
// (skb_scrub_packet within one namespace) but not its trace flag, and
// conntrack tracks it as a UDP (or IPIP) flow of its own. A worker
// queues the packets its tunnels make and runs them after the packet
// that made them (drain), before the batch is written; a packet that
// would be tunnelled more than tunnelDepth times is dropped (the
// kernel's xmit recursion limit), and a vxlan outer packet routed out
// of its own device is dropped as vxlan_xmit_one does ("circular
// route", collisions).

// tunnelDepth bounds nested encapsulation (XMIT_RECURSION_LIMIT is 8).
const tunnelDepth = 4

// VXLANConfig is a vxlan device (ip link add NAME type vxlan ...).
type VXLANConfig struct {
	VNI uint32
	// Port is the UDP destination port and the port its socket listens
	// on (0: the kernel's default, 8472).
	Port uint16
	// Local is the outer source (local); invalid: the route's source.
	Local netip.Addr
	// PortMin, PortMax are the source port range (srcport MIN MAX; both
	// 0: the local port range).
	PortMin, PortMax uint16
	// TTL is the outer TTL (0: the route's, 64); TTLInherit copies the
	// inner packet's.
	TTL        uint8
	TTLInherit bool
	// TOS is the outer TOS (1: inherit the inner packet's).
	TOS uint8
	DF  encap.DF
	// UDPCsum computes the outer UDP checksum (the kernel's default
	// for IPv4); false sends zero (noudpcsum).
	UDPCsum bool
	// Learning learns the source MACs of received frames into the FDB.
	Learning bool
	// Ageing is the learned entries' lifetime in ns (0: 300 s).
	Ageing int64
	// MAC is the device's address; Addrs its IPv4 addresses (answered
	// in ARP).
	MAC   [6]byte
	Addrs []netip.Prefix
	// FDB and Neigh are the static entries (Calico's and flannel's
	// per-node neighbour and fdb entries).
	FDB   []encap.FDBEntry
	Neigh []encap.Neigh
}

// IPIPConfig is an ipip device (tunl0: local and remote any, ttl
// inherit, nopmtudisc).
type IPIPConfig struct {
	// Local, Remote are the tunnel's ends (invalid: any). A device with
	// no remote is an NBMA tunnel: the outer destination is the route's
	// next hop (rt_nexthop).
	Local, Remote netip.Addr
	// TTL is the outer TTL (0: the inner packet's, "ttl inherit").
	TTL uint8
	// TOS is the outer TOS (1: inherit).
	TOS uint8
	// PMTUDisc sets DF on every outer packet (pmtudisc); without it DF
	// is copied from the inner packet.
	PMTUDisc bool
}

type tunnelKind uint8

const (
	tunVXLAN tunnelKind = iota + 1
	tunIPIP
)

// tunnel is a tunnel port's state; fixed before the start but for the
// FDB (its own lock) and the counters.
type tunnel struct {
	kind tunnelKind
	vx   VXLANConfig
	ip   IPIPConfig
	// local, remote as uint32 (0: any)
	local, remote uint32
	fdb           *encap.FDB
	seed          uint32
	id            atomic.Uint32
	// arpMu serialises the L2 code's ARP handling of frames received
	// over the tunnel (its reply buffer is one goroutine's)
	arpMu sync.Mutex

	encaps, decaps, txDropped, rxDropped, collisions, noRoute atomic.Uint64
}

func (d *Datapath) addTunnelPort(dev string, mtu int, t *tunnel) *port {
	if p := d.byName[dev]; p != nil {
		return nil // a device of that name exists: the option does nothing
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	p := &port{name: dev, mtu: mtu, tun: t}
	d.ports = append(d.ports, p)
	d.byName[dev] = p
	if fib := d.eng.Config().FIB; fib != nil {
		if i := fib.Ifindex(dev); i > 0 {
			p.ifindex = i
			if i >= len(d.byIndex) {
				d.byIndex = append(d.byIndex, make([]*port, i+1-len(d.byIndex))...)
			}
			d.byIndex[i] = p
		}
	}
	h := fnv.New32a()
	h.Write([]byte(dev))
	t.seed = h.Sum32()
	d.tunnels = append(d.tunnels, p)
	return p
}

// WithVXLAN makes dev a vxlan device of the engine that the datapath
// plays (tunnel.go): an Ethernet port with the config's MAC, addresses
// and static neighbours, whose frames are sent in VXLAN to the VTEPs its
// FDB names, and which receives what the engine delivers to UDP port
// c.Port with its VNI.
func WithVXLAN(dev string, mtu int, c VXLANConfig) DatapathOption {
	return func(d *Datapath) {
		if c.Port == 0 {
			c.Port = encap.PortLinux
		}
		if c.Ageing == 0 {
			c.Ageing = 300e9
		}
		t := &tunnel{kind: tunVXLAN, vx: c, fdb: encap.NewFDB(c.FDB, c.Learning, c.Ageing, c.Port, c.VNI)}
		if c.Local.IsValid() {
			t.local = packet.AddrFrom(c.Local)
		}
		p := d.addTunnelPort(dev, mtu, t)
		if p == nil {
			return
		}
		p.l2 = newTapPort(dev, c.MAC, c.Addrs, mtu)
		for _, n := range c.Neigh {
			p.l2.neigh.setPermanent(packet.AddrFrom(n.IP), n.MAC)
		}
	}
}

// WithIPIP makes dev an ipip device of the engine that the datapath
// plays: what the engine routes out of it is sent in IPIP, and what it
// delivers in protocol 4 between the tunnel's ends arrives on it.
func WithIPIP(dev string, mtu int, c IPIPConfig) DatapathOption {
	return func(d *Datapath) {
		t := &tunnel{kind: tunIPIP, ip: c}
		if c.Local.IsValid() {
			t.local = packet.AddrFrom(c.Local)
		}
		if c.Remote.IsValid() {
			t.remote = packet.AddrFrom(c.Remote)
		}
		d.addTunnelPort(dev, mtu, t)
	}
}

// tunPkt is a packet a tunnel made (an outer packet to send, an inner
// one received), waiting in a worker's queue; pooled per worker.
type tunPkt struct {
	pkt  packet.Packet
	buf  []byte
	send bool
	// from is the tunnel port that made it; depth how many tunnels it
	// went through
	from  *port
	depth int
}

// tunnelWriter is the Device the L2 code writes its own frames to (ARP
// replies, re-sent requests, packets that waited for a neighbour) on a
// vxlan port: they are encapsulated by worker w. Set p before each use.
type tunnelWriter struct {
	w *worker
	p *port
}

func (t *tunnelWriter) Name() string                      { return t.p.name }
func (t *tunnelWriter) Read([][]byte, []int) (int, error) { return 0, nil }
func (t *tunnelWriter) Close() error                      { return nil }
func (t *tunnelWriter) Write(fs [][]byte) (int, error) {
	for _, f := range fs {
		t.w.vxlanXmit(t.p, f)
	}
	return len(fs), nil
}

// tunBuf returns a pooled tunPkt with a buffer of at least n bytes plus
// the Ethernet headroom, queued on the worker.
func (w *worker) tunBuf(n int) *tunPkt {
	var t *tunPkt
	if k := len(w.tfree); k > 0 {
		t = w.tfree[k-1]
		w.tfree = w.tfree[:k-1]
	} else {
		t = new(tunPkt)
	}
	if cap(t.buf) < ethHeaderLen+n {
		t.buf = make([]byte, max(ethHeaderLen+n, 2048))
	}
	t.buf = t.buf[:ethHeaderLen+n]
	t.pkt = packet.Packet{}
	return t
}

// queueTun queues t to be run after the current packet (decoded from
// its buffer after the headroom); a packet that does not decode is
// dropped and counted as malformed.
func (w *worker) queueTun(t *tunPkt) {
	t.pkt.Data = t.buf[ethHeaderLen:]
	if t.pkt.Decode() != nil {
		w.d.malformed.Add(1)
		w.tused = append(w.tused, t)
		return
	}
	t.depth = 1
	if w.cur != nil {
		t.depth = w.cur.depth + 1
	}
	w.tunq = append(w.tunq, t)
}

// drain runs the queued tunnel packets (and what they queue in turn).
func (w *worker) drain() {
	for i := 0; i < len(w.tunq); i++ {
		t := w.tunq[i]
		if t.depth > tunnelDepth {
			t.from.tun.txDropped.Add(1)
			continue
		}
		w.cur = t
		w.one(&t.pkt, t.buf, t.send)
	}
	w.cur = nil
	w.tused = append(w.tused, w.tunq...)
	clear(w.tunq)
	w.tunq = w.tunq[:0]
}

// releaseTun gives the buffers of the batch's tunnel packets back, once
// the batch is written.
func (w *worker) releaseTun() {
	for i, t := range w.tused {
		t.pkt = packet.Packet{}
		w.tfree = append(w.tfree, t)
		w.tused[i] = nil
	}
	w.tused = w.tused[:0]
}

// tunnelOut sends the IPv4 packet b that the engine routed out of the
// tunnel port p towards next hop nh (0: on link).
func (w *worker) tunnelOut(p *port, b []byte, nh uint32, own []byte) {
	t := p.tun
	if len(b) < packet.IPv4MinHeaderLen {
		t.txDropped.Add(1)
		return
	}
	if w.cur != nil && w.cur.send && w.cur.from == p {
		// the outer packet of this device routed into it again
		t.collisions.Add(1)
		return
	}
	switch t.kind {
	case tunVXLAN:
		// the neighbour: the TAP code resolves the next hop's MAC
		// (static entries, or ARP over the tunnel)
		f, req := p.l2.output(b, nh, own, w.now, &w.held)
		if req != nil {
			w.vxlanXmit(p, req)
		}
		if f != nil {
			w.vxlanXmit(p, f)
		}
	case tunIPIP:
		w.ipipXmit(p, b, nh)
	}
}

// outerRoute is the route of an outer packet to dst (vxlan_get_route,
// ip_tunnel_xmit's ip_route_output_key): its source when the tunnel has
// no local address, and whether the route exists and is usable.
func (w *worker) outerRoute(t *tunnel, dst uint32) (src uint32, local, ok bool) {
	fib := w.d.eng.Config().FIB
	if fib == nil {
		return t.local, false, t.local != 0
	}
	fl := route.Flow{Dst: packet.AddrOf(dst), Mark: w.mark}
	if t.local != 0 {
		fl.Src = packet.AddrOf(t.local)
	}
	r := fib.Output(&fl)
	if r.Err != 0 {
		return 0, false, false
	}
	src = t.local
	if src == 0 {
		if !r.Src.IsValid() {
			return 0, false, false
		}
		src = packet.AddrFrom(r.Src)
	}
	return src, r.Type == route.Local, true
}

// vxlanXmit is vxlan_xmit for one frame out of the vxlan port p: the
// FDB's remotes for its destination MAC (none: dropped, tx_dropped),
// and for each an outer packet queued as the host's own.
func (w *worker) vxlanXmit(p *port, frame []byte) {
	t := p.tun
	if len(frame) < ethHeaderLen {
		t.txDropped.Add(1)
		return
	}
	w.remotes = t.fdb.Lookup(packet.MAC(frame[0:6]), w.now, w.remotes[:0])
	if len(w.remotes) == 0 {
		t.txDropped.Add(1)
		return
	}
	var inner []byte
	if binary.BigEndian.Uint16(frame[12:14]) == etherTypeIPv4 && len(frame) >= ethHeaderLen+20 {
		inner = frame[ethHeaderLen:]
	}
	sport := encap.SrcPort(encap.FlowHash(inner, frame, t.seed), t.vx.PortMin, t.vx.PortMax)
	c := &t.vx
	for _, r := range w.remotes {
		src, local, ok := w.outerRoute(t, r.Dst)
		if !ok {
			t.noRoute.Add(1) // tx_carrier_errors: no route to the VTEP
			continue
		}
		if local {
			// encap_bypass_if_local: a VTEP of this host takes the
			// frame as received, without the outer packet
			if dp := w.d.vxlanFor(r.Port, r.VNI); dp != nil {
				w.vxlanRecvFrame(dp, frame, src, 0, false)
			} else {
				t.txDropped.Add(1)
			}
			continue
		}
		o := encap.Outer{Src: src, Dst: r.Dst, TTL: c.TTL, TOS: c.TOS, ID: uint16(t.id.Add(1))}
		var itos, ittl uint8
		var idf bool
		if inner != nil {
			itos, ittl, idf = inner[1], inner[8], inner[6]&0x40 != 0
		}
		if o.TOS == 1 {
			o.TOS = itos
		}
		o.TOS = encap.ECNEncap(o.TOS, itos)
		if c.TTLInherit && inner != nil {
			o.TTL = ittl
		}
		if o.TTL == 0 {
			o.TTL = 64 // ip4_dst_hoplimit: net.ipv4.ip_default_ttl
		}
		switch c.DF {
		case encap.DFSet:
			o.DF = true
		case encap.DFInherit:
			o.DF = idf
		}
		tp := w.tunBuf(encap.VXLANHeaders + len(frame))
		ob := tp.buf[ethHeaderLen:]
		copy(ob[encap.VXLANHeaders:], frame)
		if _, err := encap.PutVXLAN(ob, o, sport, r.Port, r.VNI, c.UDPCsum); err != nil {
			t.txDropped.Add(1)
			w.tfree = append(w.tfree, tp)
			continue
		}
		tp.send, tp.from = true, p
		tp.pkt.Mark = w.mark
		t.encaps.Add(1)
		w.queueTun(tp)
	}
}

// ipipXmit is ipip_tunnel_xmit -> ip_tunnel_xmit for the inner packet
// b: to the tunnel's remote, or for an NBMA tunnel (tunl0) the route's
// next hop; TTL and TOS inherited or fixed; DF from the inner packet
// (and always with pmtudisc).
func (w *worker) ipipXmit(p *port, b []byte, nh uint32) {
	t := p.tun
	ih := packet.IPv4(b)
	dst := t.remote
	if dst == 0 {
		dst = nh
		if dst == 0 {
			dst = ih.Dst()
		}
	}
	src, local, ok := w.outerRoute(t, dst)
	if !ok {
		t.noRoute.Add(1)
		return
	}
	_ = local // a local end receives it through the engine like any packet to itself
	c := &t.ip
	o := encap.Outer{Src: src, Dst: dst, TOS: c.TOS, TTL: c.TTL, ID: uint16(t.id.Add(1)), DF: c.PMTUDisc || ih.DF()}
	if o.TOS&1 != 0 {
		o.TOS = ih.TOS()
	}
	o.TOS = encap.ECNEncap(o.TOS, ih.TOS())
	if o.TTL == 0 {
		o.TTL = ih.TTL()
	}
	n := int(ih.TotalLen())
	if n > len(b) || n < 20 {
		n = len(b)
	}
	tp := w.tunBuf(encap.IPIPOverhead + n)
	ob := tp.buf[ethHeaderLen:]
	copy(ob[encap.IPIPOverhead:], b[:n])
	if _, err := encap.PutIPIP(ob, o); err != nil {
		t.txDropped.Add(1)
		w.tfree = append(w.tfree, tp)
		return
	}
	tp.send, tp.from = true, p
	tp.pkt.Mark = w.mark
	t.encaps.Add(1)
	w.queueTun(tp)
}

// vxlanFor is the vxlan port listening on port with VNI vni (nil:
// none): vxlan_vs_find_vni.
func (d *Datapath) vxlanFor(port uint16, vni uint32) *port {
	for _, p := range d.tunnels {
		if t := p.tun; t.kind == tunVXLAN && t.vx.Port == port && t.vx.VNI == vni {
			return p
		}
	}
	return nil
}

// tunnelIn takes a packet the engine delivered locally when a tunnel's
// socket or protocol handler owns it (true: taken, received or dropped;
// false: for the host's sockets). b is the packet's bytes.
func (w *worker) tunnelIn(p *packet.Packet, b []byte) bool {
	d := w.d
	switch p.Proto {
	case packet.ProtoUDP:
		var sock *port
		for _, tp := range d.tunnels {
			if tp.tun.kind == tunVXLAN && tp.tun.vx.Port == p.DstPort {
				sock = tp
				break
			}
		}
		if sock == nil {
			return false
		}
		vp, err := encap.ParseVXLAN(b, p.DstPort)
		if err != nil {
			sock.tun.rxDropped.Add(1)
			return true
		}
		dev := d.vxlanFor(p.DstPort, vp.VNI)
		if dev == nil {
			sock.tun.rxDropped.Add(1) // no device of that VNI
			return true
		}
		w.mark = p.Mark
		w.vxlanRecvFrame(dev, vp.Frame, p.Src, b[1], true)
		return true
	case encap.ProtoIPIP:
		dev := d.ipipFor(p.Src, p.Dst)
		if dev == nil {
			return false
		}
		inner, err := encap.ParseIPIP(b)
		if err != nil {
			dev.tun.rxDropped.Add(1)
			return true
		}
		tp := w.tunBuf(len(inner))
		ib := tp.buf[ethHeaderLen:]
		copy(ib, inner)
		if encap.ECNDecap(b[1], ib) {
			dev.tun.rxDropped.Add(1)
			w.tfree = append(w.tfree, tp)
			return true
		}
		w.recvOn(dev, tp, p.Mark, nil, packet.PktHost)
		return true
	}
	return false
}

// ipipFor is ip_tunnel_lookup for a packet from src to dst: a tunnel
// whose both ends match, then one whose remote matches (local any),
// then one whose local matches (remote any), then the fallback (both
// any); nil: none.
func (d *Datapath) ipipFor(src, dst uint32) *port {
	var best *port
	bestScore := -1
	for _, p := range d.tunnels {
		t := p.tun
		if t.kind != tunIPIP {
			continue
		}
		if (t.remote != 0 && t.remote != src) || (t.local != 0 && t.local != dst) {
			continue
		}
		s := 0
		if t.remote != 0 {
			s += 2
		}
		if t.local != 0 {
			s++
		}
		if s > bestScore {
			best, bestScore = p, s
		}
	}
	return best
}

// vxlanRecvFrame is vxlan_rcv from the VNI lookup on, for the inner
// frame of a packet from the VTEP from with outer TOS tos: the loop
// check (a frame from the device's own MAC), FDB learning, ECN, then
// the frame arrives on the device (the TAP code: ARP, pkt_type) and its
// IPv4 packet is queued for the engine. ecn says whether the outer
// header's ECN applies (not for a bypassed frame).
func (w *worker) vxlanRecvFrame(dev *port, frame []byte, from uint32, tos uint8, ecn bool) {
	t := dev.tun
	if len(frame) < ethHeaderLen {
		t.rxDropped.Add(1)
		return
	}
	srcMAC := packet.MAC(frame[6:12])
	if [6]byte(srcMAC) == t.vx.MAC {
		t.rxDropped.Add(1) // "Ignore packet loops (and multicast echo)"
		return
	}
	if t.fdb.Snoop(srcMAC, from, w.now) {
		t.rxDropped.Add(1)
		return
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	if et == etherTypeARP {
		// ARP: answered and learned by the TAP code, whose replies
		// go back through the tunnel
		t.arpMu.Lock()
		w.tw.w, w.tw.p = w, dev
		dev.l2.input(frame, w.now, &w.tw)
		t.arpMu.Unlock()
		t.decaps.Add(1)
		return
	}
	tp := w.tunBuf(len(frame) - ethHeaderLen)
	fb := tp.buf[:len(frame)]
	copy(fb, frame)
	if et == etherTypeIPv4 && ecn && len(fb) >= ethHeaderLen+20 && encap.ECNDecap(tos, fb[ethHeaderLen:]) {
		t.rxDropped.Add(1)
		w.tfree = append(w.tfree, tp)
		return
	}
	ip, pt, ok := dev.l2.input(fb, w.now, &w.tw)
	if !ok {
		w.tfree = append(w.tfree, tp)
		return
	}
	// the frame sits at the start of the buffer: the IPv4 packet is
	// right after its header, where queueTun expects it
	_ = ip
	w.recvOn(dev, tp, w.mark, fb[:ethHeaderLen:ethHeaderLen], pt)
}

// recvOn queues the inner packet in tp (after the headroom) as received
// on the tunnel port dev.
func (w *worker) recvOn(dev *port, tp *tunPkt, mark uint32, l2 []byte, pt uint8) {
	tp.send, tp.from = false, dev
	tp.pkt.Data = tp.buf[ethHeaderLen:]
	if tp.pkt.Decode() != nil {
		w.d.malformed.Add(1)
		w.tused = append(w.tused, tp)
		return
	}
	tp.pkt.InIf, tp.pkt.InIndex = dev.name, dev.ifindex
	tp.pkt.Mark, tp.pkt.L2, tp.pkt.PktType = mark, l2, pt
	if w.d.capturing.Load() > 0 {
		w.d.tap(dev.name, tp.pkt.Data)
	}
	dev.tun.decaps.Add(1)
	tp.depth = 1
	if w.cur != nil {
		tp.depth = w.cur.depth + 1
	}
	w.tunq = append(w.tunq, tp)
}

// tunnelTick is the reaper's pass over the tunnel ports: learned FDB
// entries age; a vxlan port's unresolved neighbours are asked again
// through the tunnel.
func (w *worker) tunnelTick(now int64) {
	for _, p := range w.d.tunnels {
		t := p.tun
		if t.kind != tunVXLAN {
			continue
		}
		t.fdb.Expire(now)
		w.tw.w, w.tw.p = w, p
		p.l2.tick(now, &w.tw)
	}
}

// TunnelStats are a tunnel device's counters.
type TunnelStats struct {
	Encapsulated, Decapsulated uint64
	// TxDropped: no FDB entry, unresolved, too deep; RxDropped:
	// malformed, no device for the VNI, loops, ECN, moved static MACs;
	// Collisions: outer packets routed into their own device; NoRoute:
	// no route to the remote end (tx_carrier_errors).
	TxDropped, RxDropped, Collisions, NoRoute uint64
}

// Tunnel returns the counters of the tunnel device dev (false: none).
func (d *Datapath) Tunnel(dev string) (TunnelStats, bool) {
	p := d.byName[dev]
	if p == nil || p.tun == nil {
		return TunnelStats{}, false
	}
	t := p.tun
	return TunnelStats{Encapsulated: t.encaps.Load(), Decapsulated: t.decaps.Load(), TxDropped: t.txDropped.Load(),
		RxDropped: t.rxDropped.Load(), Collisions: t.collisions.Load(), NoRoute: t.noRoute.Load()}, true
}

// TunnelFDB is the FDB of the vxlan device dev (bridge fdb show dev
// DEV); nil for none.
func (d *Datapath) TunnelFDB(dev string) []encap.FDBShow {
	p := d.byName[dev]
	if p == nil || p.tun == nil || p.tun.fdb == nil {
		return nil
	}
	return p.tun.fdb.Entries()
}
