package tracetest

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// Fragments against the kernel: nf_defrag_ipv4 with conntrack (held
// fragments leave no trace: they are stolen at -400, before raw's
// TRACE), ip_local_deliver's reassembly without it, duplicates and
// overlaps (ip_fragment.c, inet_frag_queue_insert), the output's
// refragmentation (ip_do_fragment's frag_list and slow paths) and
// fragmentation needed.

// big is a packet with n bytes of payload (a pattern, so that data put
// together wrong shows in the checksum) and IP ID id.
func big(form string, n int, id uint16) Packet {
	p := P(fmt.Sprintf("%s len %d", form, n))
	for i := range p.Spec.Payload {
		p.Spec.Payload[i] = byte(i*7 + i>>8)
	}
	p.Spec.ID = id
	return p
}

// cut is one fragment: [off, end) of the datagram's payload; df sets
// DF on it.
type cut struct {
	off, end int
	df       bool
}

// frags cuts the whole packet p into the fragments cs, in the order
// given; MF is set on each fragment that ends before the payload does.
func frags(p Packet, cs ...cut) []Packet {
	b := packet.Build(p.Spec)
	hl := packet.IPv4(b).HeaderLen()
	pl := b[hl:]
	var out []Packet
	for _, c := range cs {
		end := min(c.end, len(pl))
		f := append(append([]byte(nil), b[:hl]...), pl[c.off:end]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(c.off / 8)
		if end < len(pl) {
			fo |= 0x2000
		}
		if c.df {
			fo |= 0x4000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		packet.IPv4(f).SetChecksum()
		out = append(out, RawPacket(f, p.In))
	}
	return out
}

// std are the fragments a 1500-byte MTU makes: 1480 bytes of payload
// each.
func std(n int) []cut {
	var cs []cut
	for off := 0; off < n; off += 1480 {
		cs = append(cs, cut{off: off, end: off + 1480})
	}
	return cs
}

func order(cs []cut, idx ...int) []cut {
	out := make([]cut, len(idx))
	for i, j := range idx {
		out[i] = cs[j]
	}
	return out
}

const ctForward = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
COMMIT
`

var udp3000 = func(id uint16) Packet { return big("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1", 3000, id) }

var fragScenarios = []Scenario{
	{
		// conntrack reassembles: in order, out of order, a duplicate,
		// an overlap (the queue is discarded), a missing fragment
		// (held), and the datagram sent on in the fragments it came in
		Name:    "frag-conntrack-forward",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   traceAll + ctForward,
		Packets: cat(
			frags(udp3000(101), std(3008)...),
			frags(udp3000(102), order(std(3008), 2, 0, 1)...),
			frags(udp3000(103), order(std(3008), 0, 0, 1, 1, 2)...),
			frags(udp3000(104), cut{0, 1480, false}, cut{1000, 2000, false}, cut{0, 1480, false}, cut{1480, 2960, false}, cut{2960, 3008, false}),
			frags(udp3000(105), order(std(3008), 0, 2)...),
			// a fragment inside a run made of two fragments is a
			// duplicate; across two runs an overlap
			frags(udp3000(106), cut{0, 800, false}, cut{800, 1600, false}, cut{400, 1200, false}, cut{1600, 3008, false}),
			frags(udp3000(107), cut{1600, 3008, false}, cut{800, 1600, false}, cut{0, 800, false}, cut{400, 1200, false}),
			// uneven pieces leave as they came
			frags(udp3000(108), cut{0, 512, false}, cut{512, 2000, false}, cut{2000, 3008, false}),
			// a zero-length last fragment and a second last with
			// another end discard the queue
			frags(udp3000(109), cut{0, 1480, false}, cut{2960, 2960, false}, cut{1480, 2960, false}, cut{2960, 3008, false}),
		),
	},
	{
		// NAT on the reassembled datagram: the fragments leave
		// masqueraded; a TCP SYN with data, and its reply
		Name:    "frag-masquerade",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + ctForward + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o tun2 -j MASQUERADE
-A PREROUTING -i tun1 -p udp --dport 53 -j DNAT --to-destination 10.0.2.9:5353
COMMIT
`,
		Packets: cat(
			frags(udp3000(201), std(3008)...),
			frags(big("udp 10.0.2.2:7 > 10.0.2.1:1000 iif tun2", 2000, 202), std(2008)...),
			frags(big("udp 10.0.1.2:1001 > 10.0.3.2:53 iif tun1", 2000, 203), std(2008)...),
			// a lone first fragment of a DNATed datagram is held,
			// not DNATed on its own
			frags(big("udp 10.0.1.2:1002 > 10.0.3.2:53 iif tun1", 2000, 204), std(2008)[:1]...),
		),
	},
	{
		// to the host: reassembled before INPUT, the echo reply
		// fragmented to the MTU; with and without conntrack
		Name:    "frag-local-echo-conntrack",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   traceAll + ctForward,
		Packets: cat(
			frags(big("icmp 10.0.1.2 > 10.0.1.1 id 7 seq 1 iif tun1", 3000, 301), std(3008)...),
			frags(big("udp 10.0.1.2:5 > 10.0.1.1:9 iif tun1", 3000, 302), order(std(3008), 1, 2, 0)...),
		),
	},
	{
		Name:    "frag-no-conntrack",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   traceAll,
		Packets: cat(
			frags(udp3000(401), std(3008)...),
			frags(big("icmp 10.0.1.2 > 10.0.1.1 id 7 seq 2 iif tun1", 3000, 402), std(3008)...),
			frags(big("icmp 10.0.1.2 > 10.0.1.1 id 7 seq 3 iif tun1", 3000, 403), order(std(3008), 0, 2, 2, 1)...),
		),
	},
	{
		// a smaller output MTU: the slow path; DF from the sender:
		// fragmentation needed
		Name:    "frag-mtu",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"link set tun2 mtu 1000"},
		Rules:   traceAll + ctForward,
		Packets: cat(
			frags(udp3000(501), std(3008)...),
			frags(udp3000(502), cut{0, 1480, true}, cut{1480, 2960, true}, cut{2960, 3008, true}),
			// DF only on a small fragment: the datagram goes on
			// without DF
			frags(udp3000(503), cut{0, 800, false}, cut{800, 1000, true}, cut{1000, 3008, false}),
			[]Packet{
				big("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1 df", 1300, 504),
				big("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1", 1300, 505),
				big("udp 10.0.1.2:1000 > 10.0.3.2:7 iif tun1 df", 1300, 506),
			},
		),
	},
	{
		// without conntrack a fragment over the MTU is fragmented
		// again (its MF kept), and with DF refused
		Name:    "frag-mtu-no-conntrack",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"link set tun2 mtu 1000"},
		Rules:   traceAll,
		Packets: cat(
			frags(udp3000(601), std(3008)...),
			frags(udp3000(602), cut{0, 1480, true}),
		),
	},
	{
		// ipfrag_time runs out (1 s here): ip_expire answers ICMP time
		// exceeded (fragment reassembly) about a queue whose first
		// fragment came, for conntrack's queues only when that
		// fragment was for the host itself
		Name:    "frag-timeout-conntrack",
		Ifaces:  legs,
		Sysctls: append([]string{"net.ipv4.ipfrag_time=1"}, fwd...),
		Rules:   traceAll + ctForward,
		Packets: cat(
			frags(big("udp 10.0.1.2:5 > 10.0.1.1:9 iif tun1", 3000, 701), std(3008)[0]),
			frags(udp3000(702), std(3008)[0]),
			frags(big("udp 10.0.1.2:5 > 10.0.1.1:9 iif tun1", 3000, 703), std(3008)[1]),
			[]Packet{delayed(P("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1"), 1600*time.Millisecond)},
			// the queue is gone: the rest of the datagram waits anew
			frags(big("udp 10.0.1.2:5 > 10.0.1.1:9 iif tun1", 3000, 701), std(3008)[1:]...),
		),
	},
	{
		Name:    "frag-timeout-local",
		Ifaces:  legs,
		Sysctls: append([]string{"net.ipv4.ipfrag_time=1"}, fwd...),
		Rules:   traceAll,
		Packets: cat(
			frags(big("udp 10.0.1.2:5 > 10.0.1.1:9 iif tun1", 3000, 801), std(3008)[0]),
			frags(big("icmp 10.0.1.2 > 10.0.1.1 id 9 seq 1 iif tun1", 3000, 802), std(3008)[2]),
			[]Packet{delayed(P("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1"), 1600*time.Millisecond)},
		),
	},
}

func delayed(p Packet, d time.Duration) Packet {
	p.Delay = d
	return p
}

func TestFragScenarios(t *testing.T) { runScenarios(t, fragScenarios) }

// withOptions puts IP options (padded to 4 bytes) into p's header.
func withOptions(p Packet, opts ...byte) Packet {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	b := packet.Build(p.Spec)
	out := append(append(append([]byte(nil), b[:20]...), opts...), b[20:]...)
	out[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	packet.IPv4(out).SetChecksum()
	q := RawPacket(out, p.In)
	q.Spec = p.Spec
	return q
}

// fragsRaw cuts the raw datagram p (with options) into fragments of at
// most n payload bytes; every fragment keeps the whole header, as a
// sender that copies all options would.
func fragsRaw(p Packet, n int) []Packet {
	b := p.Raw
	hl := packet.IPv4(b).HeaderLen()
	pl := b[hl:]
	var out []Packet
	for off := 0; off < len(pl); off += n {
		end := min(off+n, len(pl))
		f := append(append([]byte(nil), b[:hl]...), pl[off:end]...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(off / 8)
		if end < len(pl) {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		packet.IPv4(f).SetChecksum()
		out = append(out, RawPacket(f, p.In))
	}
	return out
}

// TestFragOptionsScenario: a datagram with a record-route option (not
// copied into later fragments) and a router alert (copied) is reassembled,
// the router's address recorded, and sent on in fragments whose later
// headers carry NOOPs in place of the record route (ip_options_fragment).
func TestFragOptionsScenario(t *testing.T) {
	rr := []byte{packet.OptRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}
	ra := []byte{packet.OptRA, 4, 0, 0}
	opts := append(append([]byte(nil), ra...), rr...)
	p := withOptions(big("udp 10.0.1.2:1000 > 10.0.2.2:7 iif tun1", 3000, 901), opts...)
	runScenarios(t, []Scenario{
		{
			Name:    "frag-options-conntrack",
			Ifaces:  legs,
			Sysctls: fwd,
			Rules:   traceAll + ctForward,
			Packets: fragsRaw(p, 1456),
		},
		{
			Name:    "frag-options-mtu",
			Ifaces:  legs,
			Sysctls: fwd,
			IP:      []string{"link set tun2 mtu 1000"},
			Rules:   traceAll,
			Packets: fragsRaw(p, 1456),
		},
	})
}
