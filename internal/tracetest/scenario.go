// Package tracetest is the kernel-differential trace harness: a scenario
// (a router namespace with TUN interfaces, addresses, routes, ip rules,
// sysctls and an iptables rule set with -j TRACE rules) runs once in the
// real kernel, where `xtables-monitor --trace` records what happens to
// each injected packet, and once in uswitch on the snapshot captured from
// that same namespace; the two traces are then compared line by line.
//
// Packets enter the router R through TUN devices: a packet written to a
// TUN fd enters R's PREROUTING with IN=<tun>. Packets R forwards or sends
// out of a TUN device are read back from its fd. "local" packets are sent
// from a raw socket (IP_HDRINCL) inside R and take the OUTPUT path.
//
// Compare normalizes only trace ids (to #1, #2... per packet), rule
// handles (uswitch cannot know the insertion order behind a saved rule
// set), the IP ID of packets the host generated, and the times an IP
// timestamp option records (milliseconds since midnight by each side's
// clock; maskTimestamps keeps the option's pointer, flags, overflow and
// addresses). A difference only in
// TCP/UDP ports is reported but tolerated: the kernel picks a clashing
// NAT tuple's port at random.
//
// Known differences the scenarios steer around:
//   - ICMP redirects and the ICMP rate limits count in jiffies: the
//     harness injects each packet early in a kernel tick (ticks are
//     aligned to CLOCK_MONOTONIC) and replays it at the same point of
//     its tick, so both sides see the same jiffies; a kernel that takes
//     over 1.5 ms to reach a packet would still differ. The global limit
//     (icmp_msgs_per_sec/burst) spends a random 0-2 credits per message
//     (icmp_global_consume): only runs that stay well inside the burst of
//     50 compare, which a scenario's pace (about a packet a millisecond,
//     at most a few errors each) keeps them.
//   - NAT of a GRE packet with under 8 bytes of GRE header: the kernel
//     drops it (gre_manip_pkt, skb_ensure_writable), uswitch sends it.
//   - SCTP: the kernel's conntrack validates SCTP (chunks, CRC32c) and
//     leaves a bad packet without a ct (so no nat chains); uswitch tracks
//     it as a generic protocol. The -m sctp scenario (valid CRC32c)
//     therefore runs without conntrack.
//   - NFQUEUE --queue-balance (and --queue-cpu-fanout): the queue comes
//     from jhash with a per-boot random seed (or the CPU), and the trace
//     verdict carries the queue number; only single queues are compared.
//   - statistic --mode random with 0 < probability < 1, and limits or
//     hashlimits whose refill is faster than a scenario: the kernel's
//     draws and jiffies are not reproducible; probabilities 0 and 1 and
//     slow refills (per hour/day) are compared.
//   - recent/hashlimit expiry (--seconds, --hashlimit-htable-expire)
//     would need waiting; only unexpired entries are compared. (-m
//     helper and expectations are compared with FTP payloads:
//     scenarios_helper_test.go, helpers_kernel_test.go.)
//   - IP options: a source-routed packet of a masqueraded connection
//     that leaves by another device is dropped by the kernel
//     (nf_nat_oif_changed kills the connection), which uswitch does
//     not model; the options scenarios give each source-routed packet
//     its own connection.
//   - physdev and mac on bridged/Ethernet frames: the router has only TUN
//     devices (no bridge, no MAC header), so only the "no bridge"/"not
//     Ethernet" answers are compared.
package tracetest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// Iface is a TUN device in the router namespace with its addresses
// ("10.0.1.1/24"; none is fine).
type Iface struct {
	Name  string
	Addrs []string
}

// Packet is one packet to inject: In names the TUN device it arrives on,
// or is "local" for a packet R sends itself.
type Packet struct {
	Spec packet.Spec
	In   string
	// TCPOpts are TCP options (a multiple of 4 bytes) put between the
	// TCP header and the payload of a TCP packet.
	TCPOpts []byte
	// Raw, when set, is the packet as it goes on the wire (a fragment, a
	// header with IP options, a malformed packet); Spec then holds only
	// its addresses and protocol, for String and for a local packet's
	// destination (see RawPacket).
	Raw []byte
	// Frame, when set, is an Ethernet frame that arrives on the bridge
	// port In (a TAP device of a Scenario.Bridges entry).
	Frame []byte
	// Delay is a pause before the packet (the kernel's timers, such as
	// reassembly's ipfrag_time, fire meanwhile; uswitch's clock moves
	// on by as much and its timers fire before the packet).
	Delay time.Duration
}

// RawPacket is a packet given as its bytes, arriving on in (or Local).
func RawPacket(b []byte, in string) Packet {
	p := Packet{Raw: b, In: in}
	if len(b) >= packet.IPv4MinHeaderLen {
		h := packet.IPv4(b)
		p.Spec.Src, p.Spec.Dst, p.Spec.Proto, p.Spec.TTL = h.Src(), h.Dst(), h.Protocol(), h.TTL()
	}
	return p
}

// Local is the In of a packet sent by R itself.
const Local = "local"

// P parses a packet in `uswitch trace --packet` form
// ("tcp 10.0.1.2:1000 > 10.0.2.2:80 syn iif tun1", "... local").
func P(s string) Packet {
	sp, m, err := packet.ParseSpec(s)
	if err != nil {
		panic(err)
	}
	in := m.InIf
	if m.Local {
		in = Local
	}
	if in == "" {
		panic(fmt.Sprintf("packet %q: no iif and not local", s))
	}
	return Packet{Spec: sp, In: in}
}

// Bytes is the packet on the wire. A local packet without an IP ID gets
// one: raw_send_hdrinc fills in a random ID when it is 0.
func (p Packet) Bytes() []byte {
	if p.Frame != nil {
		return append([]byte(nil), p.Frame...)
	}
	if p.Raw != nil {
		return append([]byte(nil), p.Raw...)
	}
	sp := p.Spec
	if p.In == Local && sp.ID == 0 {
		sp.ID = 0x4242
	}
	if len(p.TCPOpts) == 0 || sp.Proto != packet.ProtoTCP {
		return packet.Build(sp)
	}
	sp.Payload = append(append([]byte(nil), p.TCPOpts...), sp.Payload...)
	b := packet.Build(sp)
	l4 := b[packet.IPv4MinHeaderLen:]
	l4[12] = byte(5+len(p.TCPOpts)/4) << 4
	binary.BigEndian.PutUint16(l4[16:], 0)
	sum := packet.PseudoHeaderSum(sp.Src, sp.Dst, packet.ProtoTCP, uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[16:], ^packet.Checksum(l4, sum))
	return b
}

// WithOpts returns p with TCP options.
func (p Packet) WithOpts(o ...byte) Packet {
	for len(o)%4 != 0 {
		o = append(o, 1) // NOP
	}
	p.TCPOpts = o
	return p
}

// MSS is the TCP option MSS=v.
func MSS(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }

// SCTP is an SCTP packet with one chunk of type chunk (flags, 4 bytes of
// value) and a correct CRC32c, so the kernel's conntrack accepts it.
func SCTP(src, dst string, sport, dport uint16, chunk, flags uint8, in string) Packet {
	p := P("udp " + src + ":1 > " + dst + ":1 iif " + in)
	if in == Local {
		p = P("udp " + src + ":1 > " + dst + ":1 local")
	}
	b := make([]byte, 12+8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	if chunk != 1 { // INIT has a zero verification tag
		binary.BigEndian.PutUint32(b[4:], 0x01020304)
	}
	b[12], b[13] = chunk, flags
	binary.BigEndian.PutUint16(b[14:], 8)
	binary.BigEndian.PutUint32(b[16:], 0x0a0b0c0d)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	p.Spec.Proto, p.Spec.SrcPort, p.Spec.DstPort, p.Spec.Payload = packet.ProtoSCTP, 0, 0, b
	return p
}

func (p Packet) String() string {
	s := p.Spec
	if p.Frame != nil {
		return fmt.Sprintf("frame %d bytes in %s", len(p.Frame), p.In)
	}
	if p.Raw != nil {
		return fmt.Sprintf("raw %d bytes proto %d %s > %s in %s", len(p.Raw), s.Proto, addr(s.Src), addr(s.Dst), p.In)
	}
	return fmt.Sprintf("proto %d %s:%d > %s:%d flags %#x icmp %d/%d ttl %d in %s",
		s.Proto, addr(s.Src), s.SrcPort, addr(s.Dst), s.DstPort, s.TCPFlags, s.ICMPType, s.ICMPCode, s.TTL, p.In)
}

func addr(a uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
}

// Scenario is one router configuration and the packets sent through it.
type Scenario struct {
	Name   string
	Ifaces []Iface
	// Sysctls are "key=value" settings applied after the interfaces
	// exist (so per-device keys work), e.g. "net.ipv4.ip_forward=1".
	Sysctls []string
	// IP are `ip` commands run inside R after the addresses, e.g.
	// "route add 10.9.0.0/16 via 10.0.2.2", "rule add fwmark 1 table 100".
	IP []string
	// Rules is iptables-restore input; it should TRACE the packets of
	// interest in the raw table (PREROUTING and OUTPUT).
	Rules   string
	Packets []Packet
	// IPSet are `ipset` commands run inside R before the rules are
	// restored, e.g. "create s1 hash:ip", "add s1 10.0.1.2".
	IPSet []string
	// Bridges are bridges in R whose ports are TAP devices: a frame
	// written to a port's TAP arrives on that port, and what the bridge
	// sends out of a port is read back from its TAP.
	Bridges []Bridge
	// Ebtables is ebtables-restore input (ebtables-nft), restored
	// after the iptables rules.
	Ebtables string
}

// Bridge is a bridge device of R with its addresses, its MAC (set, so
// that a snapshot carries it) and its ports.
type Bridge struct {
	Name  string
	Addrs []string
	MAC   string
	Ports []BridgePort
}

// BridgePort is a TAP device enslaved to a bridge.
type BridgePort struct {
	Name    string
	MAC     string
	Hairpin bool
}
