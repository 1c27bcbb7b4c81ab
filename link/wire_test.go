package link_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestWire: what one end writes the other reads, in order, copied; a
// full ring drops and counts without blocking; a closed end ends its
// reads and swallows what is written to it.
func TestWire(t *testing.T) {
	a, b := link.NewWire("a", "b")
	if a.Name() != "a" || b.Name() != "b" {
		t.Fatalf("names %q %q", a.Name(), b.Name())
	}
	p1, p2 := []byte{1, 2, 3}, []byte{4, 5}
	if n, err := a.Write([][]byte{p1, p2}); n != 2 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	p1[0] = 9 // the wire holds a copy
	bufs, sizes := [][]byte{make([]byte, 16), make([]byte, 16), make([]byte, 16)}, make([]int, 3)
	n, err := b.Read(bufs, sizes)
	if n != 2 || err != nil || string(bufs[0][:sizes[0]]) != "\x01\x02\x03" || string(bufs[1][:sizes[1]]) != "\x04\x05" {
		t.Fatalf("read: %d %v %v", n, err, sizes)
	}
	// a read waits for the first packet
	got := make(chan int, 1)
	go func() {
		n, _ := a.Read(bufs[:1], sizes[:1])
		got <- n
	}()
	select {
	case <-got:
		t.Fatal("read returned with nothing written")
	case <-time.After(20 * time.Millisecond):
	}
	b.Write([][]byte{{7}})
	if n := <-got; n != 1 || sizes[0] != 1 {
		t.Fatalf("waiting read: %d %d", n, sizes[0])
	}
	// a full ring drops the rest, counted at the reading end
	many := make([][]byte, link.WireDepth+5)
	for i := range many {
		many[i] = []byte{byte(i)}
	}
	if n, err := a.Write(many); n != len(many) || err != nil {
		t.Fatalf("write to a full ring: %d %v", n, err)
	}
	if b.Drops() != 5 || a.Drops() != 0 {
		t.Fatalf("drops %d %d, want 5 0", b.Drops(), a.Drops())
	}
	// close: reads end, writes to it are dropped
	b.Close()
	b.Close()
	if _, err := b.Read(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	a.Write([][]byte{{1}})
	if b.Drops() != 6 {
		t.Fatalf("drops after close %d, want 6", b.Drops())
	}
}

const hostLab = `
name = "h"
[[bridge]]
name = "lan"
[[interface]]
name = "lc"
kind = "tap"
bridge = "lan"
netns = "c"
[[namespace]]
name = "c"
addresses = ["192.168.0.100/24"]
[[node]]
name = "b"
[node.uswitch]
rules = """
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.2:8080
COMMIT
"""
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.2/24"]
`

// TestHostPort runs a node's engine over a fake eth0 and a fake host
// TUN: a SYN DNATed to the node's own address is written to the host
// port (and not answered with a RST by the engine), and the host's
// SYN-ACK, read from the host port, runs OUTPUT and leaves eth0 with the
// DNAT undone.
func TestHostPort(t *testing.T) {
	c, err := lab.Parse("h.toml", []byte(hostLab))
	if err != nil {
		t.Fatal(err)
	}
	ecfg, ctcfg, err := c.Nodes[0].Engine.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !ecfg.HostStack {
		t.Fatal("a node's engine config has no HostStack")
	}
	eng := datapath.New(ecfg, ctcfg, 1)
	eth0, host := linktest.New("eth0"), linktest.New(lab.HostDevName("eth0"))
	d := link.NewDatapath(eng, []link.Device{eth0, host}, nil, 1, link.WithInline(), link.WithHost(host.Name(), "eth0"))
	defer d.Close()
	cli, node := packet.MustAddr("192.168.0.100"), packet.MustAddr("192.168.0.2")
	eth0.In <- packet.Build(packet.Spec{Src: cli, Dst: node, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 30080, TCPFlags: packet.TCPSyn, Seq: 100})
	w := host.WaitWritten(1, 2*time.Second)
	if len(w) != 1 {
		t.Fatalf("host port got %d packets, want the SYN", len(w))
	}
	var p packet.Packet
	p.Data = w[0]
	if err := p.Decode(); err != nil || p.Src != cli || p.Dst != node || p.DstPort != 8080 || p.TCPFlags != packet.TCPSyn {
		t.Fatalf("delivered %v: %+v", err, p)
	}
	if got := eth0.Take(); len(got) != 0 {
		t.Fatalf("the engine answered the delivered SYN itself: %d packets", len(got))
	}
	host.In <- packet.Build(packet.Spec{Src: node, Dst: cli, Proto: packet.ProtoTCP, SrcPort: 8080, DstPort: 40000, TCPFlags: packet.TCPSyn | packet.TCPAck, Seq: 7, Ack: 101})
	w = eth0.WaitWritten(1, 2*time.Second)
	if len(w) != 1 {
		t.Fatalf("eth0 got %d packets, want the SYN-ACK", len(w))
	}
	p = packet.Packet{Data: w[0]}
	if err := p.Decode(); err != nil || p.Src != node || p.SrcPort != 30080 || p.Dst != cli || p.DstPort != 40000 {
		t.Fatalf("sent %v: %+v", err, p)
	}
	if s := d.Stats(); s.Delivered != 1 || s.Forwarded != 1 || s.Answers != 0 {
		t.Errorf("stats %v", s)
	}
}
