package link_test

// TestTapDatapath runs a lab file's engine over fake devices: it lives
// outside package link because the configuration comes from lab, which
// imports link.

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/packet"
)

// tapLab is the lab's TAP test file: a client on a TUN (tc), a server
// namespace on a TAP (ts).
func tapLab(t *testing.T) string {
	b, err := os.ReadFile("../lab/testdata/tap.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitWritten waits until the device has written n frames or packets.
func waitWritten(t *testing.T, f *linktest.Dev, n int) [][]byte {
	t.Helper()
	got := f.WaitWritten(n, 2*time.Second)
	if len(got) != n {
		t.Fatalf("%s wrote %d, want %d: %x", f.Name(), len(got), n, got)
	}
	return got
}

// TestTapDatapath: a TUN and a TAP port in one datapath over fake
// devices (no root): a forwarded packet waits for ARP and is flushed by
// the reply, the next goes at once; the TAP's IPv4 reaches the TUN; an
// echo request to uswitch's TAP address is answered in a frame; a frame
// to another MAC is dropped.
func TestTapDatapath(t *testing.T) {
	c, err := lab.Parse("t.toml", []byte(strings.ReplaceAll(tapLab(t), `server = [{ kind = "http", port = 8080 }]`, "")))
	if err != nil {
		t.Fatal(err)
	}
	ecfg, ctcfg, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	tun, tap := linktest.New("tc"), linktest.New("ts")
	dp := link.NewDatapath(datapath.New(ecfg, ctcfg, 1), []link.Device{tun, tap}, nil, 2, c.DatapathOptions()...)
	defer dp.Close()
	ours := lab.DefaultMAC("ts")
	udp := func(id byte) []byte {
		return packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.2"), TTL: 64, Proto: packet.ProtoUDP, SrcPort: 1000, DstPort: 7, Payload: []byte{id}})
	}
	tun.In <- udp(1)
	w := waitWritten(t, tap, 1)
	if string(w[0]) != string(link.ARPRequest(dp, "ts", packet.MustAddr("10.10.2.2"))) {
		t.Fatalf("not the ARP request: %x", w[0])
	}
	tap.In <- link.ARPReply(ours, link.TestPeerMAC, "10.10.2.2", "10.10.2.1")
	w = waitWritten(t, tap, 1)
	check := func(f []byte, id byte) {
		t.Helper()
		if [6]byte(f[0:6]) != link.TestPeerMAC || [6]byte(f[6:12]) != ours || f[12] != 8 || f[13] != 0 {
			t.Errorf("header %x", f[:14])
		}
		ip := packet.IPv4(f[link.EthHeaderLen:])
		if ip.TTL() != 63 || ip.Dst() != packet.MustAddr("10.10.2.2") || f[len(f)-1] != id {
			t.Errorf("packet %x", ip)
		}
	}
	check(w[0], 1)
	tun.In <- udp(2)
	check(waitWritten(t, tap, 1)[0], 2)

	// the server's answer, to our MAC, reaches the TUN as a packet
	back := packet.Build(packet.Spec{Src: packet.MustAddr("10.10.2.2"), Dst: packet.MustAddr("10.10.1.2"), TTL: 64, Proto: packet.ProtoUDP, SrcPort: 7, DstPort: 1000, Payload: []byte("x")})
	f := make([]byte, link.EthHeaderLen+len(back))
	link.PutEth(f, ours, link.TestPeerMAC)
	copy(f[link.EthHeaderLen:], back)
	tap.In <- f
	if p := waitWritten(t, tun, 1)[0]; len(p) != len(back) || packet.IPv4(p).Src() != packet.MustAddr("10.10.2.2") || packet.IPv4(p).TTL() != 63 {
		t.Errorf("on the TUN: %x", p)
	}
	// an echo request to uswitch's own TAP address: the reply is framed
	ping := packet.Build(packet.Spec{Src: packet.MustAddr("10.10.2.2"), Dst: packet.MustAddr("10.10.2.1"), TTL: 64, Proto: packet.ProtoICMP, ICMPType: packet.ICMPEcho, ICMPID: 9, ICMPSeq: 1})
	f = make([]byte, link.EthHeaderLen+len(ping))
	link.PutEth(f, ours, link.TestPeerMAC)
	copy(f[link.EthHeaderLen:], ping)
	tap.In <- f
	r := waitWritten(t, tap, 1)[0]
	if [6]byte(r[0:6]) != link.TestPeerMAC || packet.IPv4(r[link.EthHeaderLen:]).Src() != packet.MustAddr("10.10.2.1") || r[link.EthHeaderLen+20] != packet.ICMPEchoReply {
		t.Errorf("echo reply %x", r)
	}
	// to another MAC: dropped, counted
	link.PutEth(f, link.TestOtherMAC, link.TestPeerMAC)
	tap.In <- f
	deadline := time.Now().Add(2 * time.Second)
	for dp.Stats().OtherHost == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := dp.Stats(); s.OtherHost != 1 || s.ARPRequested != 1 || s.Forwarded != 3 {
		t.Errorf("stats %+v", s)
	}
	if w := tap.Take(); len(w) != 0 {
		t.Errorf("wrote %x", w)
	}
}
