package ebtables

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestEvalKernel bridges frames through this machine's ebtables-nft and
// through Program.Run and compares every rule's counters. A namespace
// holds br0 with ports vetha and vethb, whose veth peers ta and tb stay
// outside the bridge; frames written to ta with AF_PACKET arrive on
// vetha and, with destinations the bridge has not learned, are flooded
// to vethb: filter FORWARD sees in=vetha out=vethb. Every rule is
// "-j CONTINUE", so each counts on its own. br_netfilter's IPv4/IPv6/ARP
// calls and IPv6 on the links are off so nothing else crosses the
// bridge.
func TestEvalKernel(t *testing.T) {
	ns := bridgeNS(t)

	rules := []string{
		"-p IPv4", "-p ! IPv4", "-p ARP", "-p IPv6", "-p Length", "-p 802_1Q", "-p LLDP",
		"-s 02:00:00:00:00:0a", "-s ! 02:00:00:00:00:0a", "-d Broadcast", "-d Multicast", "-d ! Unicast",
		"-d 02:00:00:00:00:00/ff:ff:ff:00:00:00", "-d BGA", "-i vetha", "-i veth+", "-i ! vethb", "-o vethb", "-o ! veth+",
		"-p IPv4 --ip-src 10.0.0.0/24", "-p IPv4 --ip-dst ! 10.0.0.2", "-p IPv4 --ip-tos 0x10",
		"-p IPv4 --ip-proto tcp", "-p IPv4 --ip-proto tcp --ip-dport 22", "-p IPv4 --ip-proto tcp --ip-sport 1000:2000",
		"-p IPv4 --ip-proto udp --ip-dport ! 53", "-p IPv4 --ip-proto icmp --ip-icmp-type echo-request",
		"-p IPv4 --ip-proto icmp --ip-icmp-type ! 0:3/0:255", "-p IPv4 ! --ip-proto udp",
		"-p IPv6 --ip6-src fe80::/10", "-p IPv6 --ip6-dst ! ff02::1", "-p IPv6 --ip6-proto tcp --ip6-dport 80",
		"-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type echo-request", "-p IPv6 --ip6-tclass 0x00",
		"-p ARP --arp-op Request", "-p ARP --arp-op ! Reply", "-p ARP --arp-ip-dst 10.0.0.99", "-p ARP --arp-ip-src ! 10.0.0.1",
		"-p ARP --arp-mac-src 02:00:00:00:00:0a", "-p ARP --arp-gratuitous", "-p ARP --arp-htype 1 --arp-ptype IPv4",
		"-p 802_1Q --vlan-id 10", "-p 802_1Q --vlan-prio 3", "-p 802_1Q --vlan-encap IPv4", "-p 802_1Q --vlan-id ! 10",
		"--pkttype-type otherhost", "--pkttype-type broadcast", "--pkttype-type ! multicast",
		"--among-src 2:0:0:0:0:a", "--among-dst 2:0:0:0:0:b=10.0.0.2", "--among-src ! 2:0:0:0:0:c",
		"--stp-type config", "--stp-port 1:5", "--stp-root-cost 7",
		"-p Length --802_3-sap 0xaa", "-p Length --802_3-type 0x1234", "-p Length --802_3-sap ! 0x42",
		"--mark 0", "--mark ! 0x1",
	}
	var in strings.Builder
	in.WriteString("*filter\n")
	for _, r := range rules {
		in.WriteString("-A FORWARD " + r + " -j CONTINUE\n")
	}
	if _, stderr, code, err := ns.Run(in.String(), "ebtables-restore"); err != nil || code != 0 {
		t.Fatalf("ebtables-restore: exit %d %s %v", code, stderr, err)
	}

	frames := evalKernelFrames()
	err := netnsrun.InNamed(ns.Name, func() error {
		ifi, err := net.InterfaceByName("ta")
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		for _, f := range frames {
			if err := syscall.Sendto(fd, f.data, 0, &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
				return fmt.Errorf("send %s: %w", f.name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	out, _, _, err := ns.Run("", "ebtables-save", "-c", "-t", "filter")
	if err != nil {
		t.Fatal(err)
	}

	p := Compile(mustLoad(in.String()))
	for _, f := range frames {
		fr := &packet.Frame{Data: append([]byte(nil), f.data...)}
		if fr.Decode() != nil {
			t.Fatalf("%s does not decode", f.name)
		}
		pt := PacketOtherHost
		switch {
		case fr.Dst.IsBroadcast():
			pt = PacketBroadcast
		case fr.Dst.IsMulticast():
			pt = PacketMulticast
		}
		c := &Ctx{Frame: fr, In: "vetha", Out: "vethb", LogicalIn: "br0", LogicalOut: "br0", PktType: pt}
		p.Run(Filter, Forward, c)
	}
	var b strings.Builder
	p.Ruleset().Save(&b, SaveOptions{Counters: true})
	// the host's own frames (IGMP reports when br0 comes up) are marked
	// 0x7777 in filter OUTPUT and accepted first in POSTROUTING; uswitch
	// does not see them
	var kl, ul []string
	for _, l := range linesWithPrefix(strings.Split(kerneltest.StripComments(out), "\n"), "[") {
		if !strings.Contains(l, "0x7777") {
			kl = append(kl, l)
		}
	}
	for _, l := range linesWithPrefix(strings.Split(b.String(), "\n"), "[") {
		if !strings.Contains(l, "0x7777") {
			ul = append(ul, l)
		}
	}
	if len(kl) != len(ul) {
		t.Fatalf("kernel has %d rules, uswitch %d:\n%s", len(kl), len(ul), out)
	}
	agree := 0
	for i := range kl {
		if kl[i] == ul[i] {
			agree++
		} else {
			t.Errorf("kernel %s\n      uswitch %s", kl[i], ul[i])
		}
	}
	t.Logf("%d frames, %d/%d rule counters agree with ebtables-nft", len(frames), agree, len(kl))
}

func linesWithPrefix(ls []string, p string) []string {
	var out []string
	for _, l := range ls {
		if strings.HasPrefix(l, p) {
			out = append(out, l)
		}
	}
	return out
}

type namedFrame struct {
	name string
	data []byte
}

func evalKernelFrames() []namedFrame {
	unknownDst := packet.MAC{0x02, 0, 0, 0, 0, 0x0b}
	ip6 := func(next uint8, l4 []byte) []byte {
		h := make([]byte, 40+len(l4))
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
		h[6], h[7] = next, 64
		copy(h[8:], net.ParseIP("fe80::1").To16())
		copy(h[24:], net.ParseIP("2001:db8::2").To16())
		copy(h[40:], l4)
		return packet.BuildFrame(unknownDst, macA, packet.EtherTypeIPv6, h)
	}
	tcp6 := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp6[0:], 40000)
	binary.BigEndian.PutUint16(tcp6[2:], 80)
	tcp6[12] = 0x50
	icmp6 := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	garp := arpRequest()
	copy(garp[14+24:], []byte{10, 0, 0, 1})
	snap := packet.BuildFrame(unknownDst, macA, 8, []byte{0xaa, 0xaa, 0x03, 0, 0, 0, 0x12, 0x34})
	icmp4 := ipv4Frame(1, 0x0800, 0)
	icmp4[14+20] = 8 // echo request
	reply := ipv4Frame(1, 0, 0)
	other := ipv4Frame(6, 1500, 80)
	trunc := packet.BuildFrame(unknownDst, macA, packet.EtherTypeIPv4, []byte{0x45, 0, 0, 20})
	return []namedFrame{
		{"tcp 1234->22", ipv4Frame(6, 1234, 22)},
		{"tcp 1500->80", other},
		{"udp 53", ipv4Frame(17, 53, 53)},
		{"udp 54", ipv4Frame(17, 54, 54)},
		{"icmp echo", icmp4},
		{"icmp echo reply", reply},
		{"short ipv4", trunc},
		{"arp request", arpRequest()},
		{"gratuitous arp", garp},
		{"vlan 10 prio 3 ipv4", vlanFrame(10, 3, 0x0800)},
		{"vlan 11 arp", vlanFrame(11, 0, 0x0806)},
		{"stp config port 1", stpFrame(0, 1)},
		{"stp tcn", stpFrame(0x80, 0)},
		{"snap 0x1234", snap},
		{"ipv6 tcp 80", ip6(6, tcp6)},
		{"ipv6 icmp echo", ip6(58, icmp6)},
		{"ipv6 hop-by-hop tcp", ip6(0, append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, tcp6...))},
	}
}

// bridgeNS makes the namespace TestEvalKernel describes.
func bridgeNS(t *testing.T) *kerneltest.Netns {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save", "sysctl", "bridge")
	ns := kerneltest.NewNetns(t)
	run := func(args ...string) {
		t.Helper()
		if _, stderr, code, err := ns.Run("", args...); err != nil || code != 0 {
			t.Fatalf("%v: exit %d %s %v", args, code, stderr, err)
		}
	}
	run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0")
	// no snooping: the bridge would join 224.0.0.106 and send IGMP
	// reports out of its ports
	run("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	for _, p := range []string{"a", "b"} {
		run("ip", "link", "add", "veth"+p, "type", "veth", "peer", "name", "t"+p)
		run("ip", "link", "set", "veth"+p, "master", "br0")
		run("ip", "link", "set", "veth"+p, "up")
		run("ip", "link", "set", "t"+p, "up")
	}
	// no IGMP reports of the host's own out of the ports
	run("ip", "link", "set", "br0", "multicast", "off")
	run("ip", "link", "set", "br0", "up")
	ns.WaitForwarding(t, "vetha", "vethb")
	return ns
}

// sendFrames writes the frames to ta, in order, and waits for them to
// cross the bridge.
func sendFrames(t *testing.T, ns *kerneltest.Netns, frames []namedFrame) {
	t.Helper()
	err := netnsrun.InNamed(ns.Name, func() error {
		ifi, err := net.InterfaceByName("ta")
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		for _, f := range frames {
			if err := syscall.Sendto(fd, f.data, 0, &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
				return fmt.Errorf("send %s: %w", f.name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
}

// compareCounters compares ebtables-save -c with uswitch's counters.
func compareCounters(t *testing.T, ns *kerneltest.Netns, p *Program, nframes int) {
	t.Helper()
	out, _, _, err := ns.Run("", "ebtables-save", "-c")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	p.Ruleset().Save(&b, SaveOptions{Counters: true})
	// the host's own frames (IGMP reports when br0 comes up) are marked
	// 0x7777 in filter OUTPUT and accepted first in POSTROUTING; uswitch
	// does not see them
	var kl, ul []string
	for _, l := range linesWithPrefix(strings.Split(kerneltest.StripComments(out), "\n"), "[") {
		if !strings.Contains(l, "0x7777") {
			kl = append(kl, l)
		}
	}
	for _, l := range linesWithPrefix(strings.Split(b.String(), "\n"), "[") {
		if !strings.Contains(l, "0x7777") {
			ul = append(ul, l)
		}
	}
	if len(kl) != len(ul) {
		t.Fatalf("kernel has %d rules, uswitch %d:\n%s", len(kl), len(ul), out)
	}
	agree := 0
	for i := range kl {
		if kl[i] == ul[i] {
			agree++
		} else {
			t.Errorf("kernel %s\n      uswitch %s", kl[i], ul[i])
		}
	}
	t.Logf("%d frames, %d/%d rule counters agree with ebtables-nft", nframes, agree, len(kl))
	if agree != len(kl) {
		t.Logf("kernel:\n%s\nuswitch:\n%s", out, b.String())
	}
}

// TestEvalKernelNAT: nat PREROUTING (dnat, mark, ACCEPT/DROP/RETURN),
// filter FORWARD seeing their effects, nat POSTROUTING (snat), against
// the kernel's counters. uswitch runs the three chains in the bridge's
// order with the ports the kernel gives each hook.
func TestEvalKernelNAT(t *testing.T) {
	ns := bridgeNS(t)
	rules := `*nat
-A PREROUTING -p IPv4 --ip-proto udp -j dnat --to-dst 02:00:00:00:00:77 --dnat-target CONTINUE
-A PREROUTING -p IPv4 -j mark --mark-set 0x5 --mark-target CONTINUE
-A PREROUTING -p ARP -j mark --mark-or 0x100 --mark-target ACCEPT
-A PREROUTING -p IPv6 -j RETURN
-A PREROUTING -p 802_1Q -j DROP
-A PREROUTING -j CONTINUE
-A POSTROUTING --mark 0x7777 -j ACCEPT
-A POSTROUTING -o vethb -p IPv4 -j snat --to-src 02:00:00:00:00:66 --snat-target CONTINUE
-A POSTROUTING -s 02:00:00:00:00:66 -j CONTINUE
-A POSTROUTING -d 02:00:00:00:00:77 --mark 0x5 -j CONTINUE
-A POSTROUTING -o veth+ -j CONTINUE
*filter
:FORWARD DROP
-A OUTPUT -j mark --mark-set 0x7777 --mark-target ACCEPT
-A FORWARD -d 02:00:00:00:00:77 -j CONTINUE
-A FORWARD --mark 0x5 -j CONTINUE
-A FORWARD --mark 0x100/0x100 -j CONTINUE
-A FORWARD --pkttype-type otherhost -j CONTINUE
-A FORWARD -p IPv4 --ip-proto tcp -j DROP
-A FORWARD -j ACCEPT
`
	if _, stderr, code, err := ns.Run(rules, "ebtables-restore"); err != nil || code != 0 {
		t.Fatalf("ebtables-restore: exit %d %s %v", code, stderr, err)
	}
	frames := evalKernelFrames()
	sendFrames(t, ns, frames)
	p := Compile(mustLoad(rules))
	env := testEnv{}
	for _, f := range frames {
		fr := &packet.Frame{Data: append([]byte(nil), f.data...)}
		fr.Decode()
		pt := PacketOtherHost
		switch {
		case fr.Dst.IsBroadcast():
			pt = PacketBroadcast
		case fr.Dst.IsMulticast():
			pt = PacketMulticast
		}
		c := &Ctx{Frame: fr, In: "vetha", LogicalIn: "br0", PktType: pt, Env: env}
		if p.Run(NAT, PreRouting, c) == 0 {
			continue
		}
		c.Out, c.LogicalOut = "vethb", "br0"
		if p.Run(Filter, Forward, c) == 0 {
			continue
		}
		c.In, c.LogicalIn = "", ""
		p.Run(NAT, PostRouting, c)
	}
	compareCounters(t, ns, p, len(frames))
}
