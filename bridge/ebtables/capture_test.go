package ebtables

import (
	"bytes"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestEvalKernelFrames compares the frames themselves: what leaves
// vethb (captured on tb) after nat PREROUTING (dnat, redirect),
// filter FORWARD and nat POSTROUTING (snat with --snat-arp), and the
// ARP reply arpreply sends back out of vetha (captured on ta), with
// what Program.Run makes of the same frames.
func TestEvalKernelFrames(t *testing.T) {
	ns := bridgeNS(t)
	rules := `*nat
-A PREROUTING -p ARP --arp-op Request --arp-ip-dst 10.0.0.99 -j arpreply --arpreply-mac 02:00:00:00:00:99
-A PREROUTING -p IPv4 --ip-proto udp -j dnat --to-dst 02:00:00:00:00:77 --dnat-target CONTINUE
-A POSTROUTING -o vethb -p ARP -j snat --to-src 02:00:00:00:00:66 --snat-arp --snat-target ACCEPT
-A POSTROUTING -o vethb -p IPv4 --ip-proto tcp -j snat --to-src 02:00:00:00:00:55
`
	if _, stderr, code, err := ns.Run(rules, "ebtables-restore"); err != nil || code != 0 {
		t.Fatalf("ebtables-restore: exit %d %s %v", code, stderr, err)
	}
	toOther := arpRequest()
	copy(toOther[14+24:], []byte{10, 0, 0, 7}) // not answered: bridged, snat --snat-arp
	frames := []namedFrame{
		{"arp for 10.0.0.99", arpRequest()},
		{"arp for 10.0.0.7", toOther},
		{"udp", ipv4Frame(17, 53, 53)},
		{"tcp", ipv4Frame(6, 1234, 22)},
	}
	var onTA, onTB [][]byte
	err := netnsrun.InNamed(ns.Name, func() error {
		open := func(name string) (int, int, error) {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return 0, 0, err
			}
			fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
			if err != nil {
				return 0, 0, err
			}
			if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
				return 0, 0, err
			}
			tv := syscall.NsecToTimeval(int64(300 * time.Millisecond))
			syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
			return fd, ifi.Index, nil
		}
		ta, taIdx, err := open("ta")
		if err != nil {
			return err
		}
		defer syscall.Close(ta)
		tb, _, err := open("tb")
		if err != nil {
			return err
		}
		defer syscall.Close(tb)
		for _, f := range frames {
			if err := syscall.Sendto(ta, f.data, 0, &syscall.SockaddrLinklayer{Ifindex: taIdx, Halen: 6}); err != nil {
				return fmt.Errorf("send %s: %w", f.name, err)
			}
		}
		read := func(fd int) [][]byte {
			var out [][]byte
			buf := make([]byte, 2048)
			for {
				n, from, err := syscall.Recvfrom(fd, buf, 0)
				if err != nil {
					return out
				}
				if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
					continue
				}
				out = append(out, append([]byte(nil), buf[:n]...))
			}
		}
		onTA, onTB = read(ta), read(tb)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	p := Compile(mustLoad(rules))
	var wantTA, wantTB [][]byte
	for _, f := range frames {
		fr := &packet.Frame{Data: append([]byte(nil), f.data...)}
		fr.Decode()
		pt := PacketOtherHost
		if fr.Dst.IsBroadcast() {
			pt = PacketBroadcast
		}
		c := &Ctx{Frame: fr, In: "vetha", LogicalIn: "br0", PktType: pt, Env: testEnv{}}
		v := p.Run(NAT, PreRouting, c)
		if c.ReplyLen > 0 {
			wantTA = append(wantTA, append([]byte(nil), c.Reply[:c.ReplyLen]...))
		}
		if v == 0 {
			continue
		}
		c.Out, c.LogicalOut = "vethb", "br0"
		if p.Run(Filter, Forward, c) == 0 {
			continue
		}
		c.In, c.LogicalIn = "", ""
		if p.Run(NAT, PostRouting, c) == 0 {
			continue
		}
		wantTB = append(wantTB, fr.Data)
	}
	compareFrames(t, "out of vetha (replies)", onTA, wantTA)
	compareFrames(t, "out of vethb", onTB, wantTB)
}

func compareFrames(t *testing.T, where string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: kernel sent %d frames, uswitch %d", where, len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s frame %d:\nkernel  % x\nuswitch % x", where, i, got[i], want[i])
		}
	}
	t.Logf("%s: %d frames compared", where, len(got))
	if t.Failed() {
		for _, g := range got {
			t.Logf("  kernel % x", g)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
