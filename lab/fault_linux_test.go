package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// faultLab: a client and a server on two TUNs of uswitch, with seeded
// faults on the wires: 20% loss on the server's wire for UDP to port
// 9000, and 30 ms on the client's wire inbound for ICMP.
const faultLab = `
name = "faults"
[uswitch]
workers = 4
inline = false
seed = 11
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "fc"
netns = "P-c"
addresses = ["10.20.1.1/24"]
[[interface]]
name = "fs"
netns = "P-s"
addresses = ["10.20.2.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.20.1.2/24"]
routes = ["default via 10.20.1.1"]
[[namespace]]
name = "P-s"
addresses = ["10.20.2.2/24"]
routes = ["default via 10.20.2.1"]

[[fault]]
name  = "udp-loss"
at    = "wire:fs:egress"
match = "-p udp --dport 9000"
netem = "loss 20%"

[[fault]]
name  = "icmp-slow"
at    = "wire:fc:ingress"
match = "-p icmp"
netem = "delay 30ms"
`

// TestLabFaults: a UDP stream through a 20% loss fault arrives exactly
// as the fault's seeded decisions for that flow say (which datagrams,
// not only how many), whatever the four workers did; a 30 ms delay on
// the client's wire shows in ping's round trip.
func TestLabFaults(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "faults.toml", faultLab)
	l := upLab(t, c)
	cli, srv := p+"-c", p+"-s"

	t.Run("udp loss", func(t *testing.T) {
		var pc net.PacketConn
		if err := inNetns(l.nss[srv], func() error {
			var err error
			pc, err = net.ListenPacket("udp4", "10.20.2.2:9000")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		got := map[uint32]bool{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for {
				pc.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 4 {
					got[binary.BigEndian.Uint32(buf)] = true
				}
			}
		}()
		conn, err := l.Dial(cli, "udp4", "10.20.2.2:9000", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		const n = 1000
		msg := make([]byte, 64)
		for i := 1; i <= n; i++ {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			if i%20 == 0 {
				time.Sleep(2 * time.Millisecond) // stay under the TUN's and the socket's queues
			}
		}
		<-done
		// the decisions the fault makes for this flow: same seed, same
		// name, same packets in the same order
		sport := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
		fs, err := c.FaultSet(c.FaultSeed(11))
		if err != nil {
			t.Fatal(err)
		}
		f := fs.Wire("fs", true)[0]
		want := map[uint32]bool{}
		for i := 1; i <= n; i++ {
			binary.BigEndian.PutUint32(msg, uint32(i))
			pk := &packet.Packet{Data: packet.Build(packet.Spec{Src: 0x0a140102, Dst: 0x0a140202, Proto: packet.ProtoUDP, TTL: 63, SrcPort: sport, DstPort: 9000, Payload: msg})}
			if err := pk.Decode(); err != nil {
				t.Fatal(err)
			}
			pk.OutIf = "fs"
			c := iptables.Ctx{Pkt: pk}
			var d fault.Decision
			if !f.Decide(&c, 0, &d) {
				t.Fatal("the fault does not match the stream")
			}
			if !d.Orig.Drop {
				want[uint32(i)] = true
			}
		}
		if len(got) != len(want) {
			t.Errorf("received %d of %d datagrams, the fault's decisions predict %d", len(got), n, len(want))
		}
		for i := range want {
			if !got[i] {
				t.Errorf("datagram %d predicted to arrive, lost", i)
				break
			}
		}
		for i := range got {
			if !want[i] {
				t.Errorf("datagram %d predicted lost, arrived", i)
				break
			}
		}
		live := l.dp.Faults().Faults[0]
		if live.Dropped.Load() != uint64(n-len(want)) || l.dp.FaultDrops() != uint64(n-len(want)) {
			t.Errorf("fault counters: dropped %d, datapath %d, want %d", live.Dropped.Load(), l.dp.FaultDrops(), n-len(want))
		}
		t.Logf("%d of %d datagrams arrived (seed 11), as predicted", len(got), n)
	})

	t.Run("live add, list, del", func(t *testing.T) {
		// every other datagram to :9100 dropped at FORWARD, added live
		r := l.Control(control.Request{Cmd: "fault", Op: "add", Input: "[[fault]]\nname = \"half\"\nat = \"hook:ipv4:FORWARD\"\nmatch = \"-p udp --dport 9100\"\naction = \"loss\"\nevery = 2\n"})
		if r.Code != 0 {
			t.Fatalf("add: %+v", r)
		}
		for _, bad := range []string{
			"[[fault]]\nname = \"half\"\nat = \"wire:fc:egress\"\nnetem = \"loss 1%\"\n",
			"[[fault]]\nname = \"x\"\nat = \"wire:nope:egress\"\nnetem = \"loss 1%\"\n",
		} {
			if r := l.Control(control.Request{Cmd: "fault", Op: "add", Input: bad}); r.Code == 0 {
				t.Errorf("add %q accepted", bad)
			}
		}
		var pc net.PacketConn
		if err := inNetns(l.nss[srv], func() error {
			var err error
			pc, err = net.ListenPacket("udp4", "10.20.2.2:9100")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		conn, err := l.Dial(cli, "udp4", "10.20.2.2:9100", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := 0; i < 10; i++ {
			conn.Write([]byte("x"))
		}
		got := 0
		buf := make([]byte, 100)
		for {
			pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				break
			}
			got++
		}
		if got != 5 {
			t.Errorf("received %d of 10, want 5 (every 2nd dropped)", got)
		}
		r = l.Control(control.Request{Cmd: "fault", Op: "list"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "half: hook:ipv4:FORWARD match '-p udp --dport 9100' loss every 2\n  matched 10 acted 5: dropped 5") ||
			!strings.Contains(r.Stdout, "udp-loss: wire:fs:egress") {
			t.Errorf("list:\n%s%s", r.Stdout, r.Stderr)
		}
		// paused: nothing dropped
		if r := l.Control(control.Request{Cmd: "fault", Op: "pause", Name: "half"}); r.Code != 0 {
			t.Fatalf("pause: %+v", r)
		}
		for i := 0; i < 4; i++ {
			conn.Write([]byte("x"))
		}
		got = 0
		for {
			pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				break
			}
			got++
		}
		if got != 4 {
			t.Errorf("paused: received %d of 4", got)
		}
		if r := l.Control(control.Request{Cmd: "fault", Op: "resume", Name: "half"}); r.Code != 0 {
			t.Fatalf("resume: %+v", r)
		}
		if r := l.Control(control.Request{Cmd: "fault", Op: "del", Name: "half"}); r.Code != 0 {
			t.Fatalf("del: %+v", r)
		}
		for i := 0; i < 4; i++ {
			conn.Write([]byte("x"))
		}
		got = 0
		for {
			pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				break
			}
			got++
		}
		if got != 4 {
			t.Errorf("after del: received %d of 4", got)
		}
		if r := l.Control(control.Request{Cmd: "fault", Op: "del", Name: "half"}); r.Code != 1 {
			t.Errorf("second del: %+v", r)
		}
	})

	t.Run("icmp delay", func(t *testing.T) {
		for range 3 {
			rtt, err := l.Ping(cli, netip.MustParseAddr("10.20.2.2"), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if rtt < 30*time.Millisecond || rtt > 500*time.Millisecond {
				t.Errorf("rtt %v, want 30 ms and a little", rtt)
			}
		}
		if d := l.dp.Faults().Faults[1].Delayed.Load(); d < 3 {
			t.Errorf("icmp-slow delayed %d packets", d)
		}
	})
}
