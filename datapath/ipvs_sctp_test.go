package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/packet"
)

// SCTP through an IPVS VS/NAT service on the router of RouterFIB: the VIP
// 10.0.0.1:3868 on eth0's side, the real server 192.168.1.2:3869 on
// eth1's.

const (
	sctpVIP, sctpRS, sctpCli = 0x0a000001, 0xc0a80102, 0x0a000002
	sctpVPort, sctpDPort     = 3868, 3869
)

func sctpIPVSEngine(t *testing.T, fwd lvs.FwdMethod) *Engine {
	t.Helper()
	e := New(Config{FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
	e.LVS = lvs.NewDirector()
	k := lvs.ServiceKey{Proto: lvs.ProtoSCTP, Addr: sctpVIP, Port: sctpVPort}
	if err := e.LVS.AddService(lvs.ServiceConfig{Key: k, SchedName: "rr"}); err != nil {
		t.Fatal(err)
	}
	if err := e.LVS.AddDest(k, lvs.DestConfig{Addr: sctpRS, Port: sctpDPort, Fwd: fwd, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// sctpChunk is one chunk, padded to 4 bytes.
func sctpChunk(typ uint8, body int) []byte {
	b := make([]byte, (4+body+3)&^3)
	b[0] = typ
	binary.BigEndian.PutUint16(b[2:], uint16(4+body))
	return b
}

// sctpPacket is an SCTP packet with its CRC32c arriving on iif.
func sctpPacket(t testing.TB, src uint32, sport uint16, dst uint32, dport uint16, iif string, chunks ...[]byte) *packet.Packet {
	t.Helper()
	l4 := make([]byte, 12)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], 0x1234)
	for _, c := range chunks {
		l4 = append(l4, c...)
	}
	packet.SetSCTPChecksum(l4)
	p := &packet.Packet{Data: packet.Build(packet.Spec{Proto: packet.ProtoSCTP, Src: src, Dst: dst, Payload: l4}),
		Meta: packet.Meta{InIf: iif}}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

func ipvsadmLnc(t testing.TB, d *lvs.Director, now int64) string {
	t.Helper()
	var b bytes.Buffer
	if err := lvs.PrintConns(&b, d, now, 0); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// An SCTP association through the engine (INIT .. COOKIE-ACK, DATA both
// ways, SHUTDOWN .. SHUTDOWN-COMPLETE), then a second one that the real
// server aborts: each packet forwarded and rewritten with a right
// CRC32c, and ipvsadm -Lnc after each showing the state and timeout the
// kernel's sctp_states and sctp_timeouts give, the dest's active and
// inactive counts moving in and out of ESTABLISHED.
func TestIPVSSCTPAssociation(t *testing.T) {
	e := sctpIPVSEngine(t, lvs.Masq)
	ds := e.LVS.Services()[0].Dests[0]
	type step struct {
		name       string
		fromServer bool
		chunks     [][]byte
		state      string
		expire     string
		active     int32
		inactive   int32
	}
	run := func(cport uint16, steps []step, now int64) int64 {
		for _, s := range steps {
			var p *packet.Packet
			if s.fromServer {
				p = sctpPacket(t, sctpRS, sctpDPort, sctpCli, cport, "eth1", s.chunks...)
			} else {
				p = sctpPacket(t, sctpCli, cport, sctpVIP, sctpVPort, "eth0", s.chunks...)
			}
			tr := &Tracer{All: true}
			f := e.Receive(p, now, tr)
			wantIf, src, sport, dst, dport := "eth1", uint32(sctpCli), cport, uint32(sctpRS), uint16(sctpDPort)
			if s.fromServer {
				wantIf, src, sport, dst, dport = "eth0", sctpVIP, sctpVPort, sctpCli, cport
			}
			if f.Kind != Forwarded || f.OutIf != wantIf {
				t.Fatalf("%s: fate %v\n%s", s.name, f, strings.Join(tr.Lines, "\n"))
			}
			if p.Src != src || p.SrcPort != sport || p.Dst != dst || p.DstPort != dport || !packet.SCTPChecksumOK(p.L4) {
				t.Errorf("%s: sent %08x:%d > %08x:%d, CRC32c ok %v", s.name, p.Src, p.SrcPort, p.Dst, p.DstPort,
					packet.SCTPChecksumOK(p.L4))
			}
			want := "IPVS connection entries\n" +
				fmt.Sprintf("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination") +
				fmt.Sprintf("%-3s %-6s %-11s %-18s %-18s %s\n", "SCTP", s.expire, s.state,
					fmt.Sprintf("10.0.0.2:%d", cport), "10.0.0.1:3868", "192.168.1.2:3869")
			if got := ipvsadmLnc(t, e.LVS, now); got != want {
				t.Errorf("ipvsadm -Lnc after %s:\n%s\nwant\n%s", s.name, got, want)
			}
			if a, i := ds.ActiveConns.Load(), ds.InactConns.Load(); a != s.active || i != s.inactive {
				t.Errorf("after %s: ActiveConn %d InActConn %d, want %d %d", s.name, a, i, s.active, s.inactive)
			}
			now += 1e9
		}
		return now
	}
	init, initAck := sctpChunk(1, 16), sctpChunk(2, 16)
	cookieEcho, cookieAck := sctpChunk(10, 32), sctpChunk(11, 0)
	data, sack := sctpChunk(0, 12+100), sctpChunk(3, 12)
	handshake := []step{
		{"INIT", false, [][]byte{init}, "INIT1", "00:04", 0, 1},
		{"INIT-ACK", true, [][]byte{initAck}, "C-SENT", "01:01", 0, 1},
		{"COOKIE-ECHO", false, [][]byte{cookieEcho}, "C-REPLIED", "01:01", 0, 1},
		{"COOKIE-ACK", true, [][]byte{cookieAck}, "ESTABLISHED", "15:00", 1, 0},
	}
	now := run(40000, append(handshake, []step{
		{"DATA", false, [][]byte{data}, "ESTABLISHED", "15:00", 1, 0},
		{"SACK DATA", true, [][]byte{sack, data}, "ESTABLISHED", "15:00", 1, 0},
		{"SHUTDOWN", false, [][]byte{sctpChunk(7, 4)}, "S-RECEIVED", "01:01", 0, 1},
		{"SHUTDOWN-ACK", true, [][]byte{sctpChunk(8, 0)}, "S-ACK-SENT", "01:01", 0, 1},
		{"SHUTDOWN-COMPLETE", false, [][]byte{sctpChunk(14, 0)}, "CLOSED", "01:01", 0, 1},
	}...), 1e9)
	// the closed association times out; a second one is aborted by the
	// real server once established
	e.LVS.Conns.Reap(now + 62e9)
	run(40001, append(handshake, step{"ABORT", true, [][]byte{sctpChunk(6, 0)}, "CLOSED", "01:01", 0, 1}), now+62e9)
}

// What IPVS drops of SCTP: a packet to the director without a chunk
// header (sctp_conn_schedule finds no ports), with the trace's IPVS line;
// an ABORT without a connection is not IPVS's (the host answers it).
func TestIPVSSCTPDrops(t *testing.T) {
	e := sctpIPVSEngine(t, lvs.Masq)
	p := sctpPacket(t, sctpCli, 40000, sctpVIP, sctpVPort, "eth0")
	tr := &Tracer{All: true}
	if f := e.Receive(p, 1e9, tr); f.Kind != Dropped {
		t.Fatalf("chunkless packet: %v", f)
	}
	if text := strings.Join(tr.Lines, "\n"); !strings.Contains(text, "ipvs:INPUT:99:drop: ipvs: SCTP packet without a chunk header") {
		t.Errorf("trace:\n%s", text)
	}
	abort := sctpPacket(t, sctpCli, 40000, sctpVIP, sctpVPort, "eth0", sctpChunk(6, 0))
	if f := e.Receive(abort, 1e9, nil); f.Kind == Forwarded || e.LVS.Conns.Len() != 0 {
		t.Errorf("ABORT without a connection: %v, %d connections", f, e.LVS.Conns.Len())
	}
}

// 0 allocations for an established association's DATA through the
// engine, both ways.
func TestIPVSSCTPEstablishedNoAllocs(t *testing.T) {
	e := sctpIPVSEngine(t, lvs.Masq)
	for i, s := range []struct {
		srv bool
		c   []byte
	}{{false, sctpChunk(1, 16)}, {true, sctpChunk(2, 16)}, {false, sctpChunk(10, 8)}, {true, sctpChunk(11, 0)}} {
		p := sctpPacket(t, sctpCli, 40000, sctpVIP, sctpVPort, "eth0", s.c)
		if s.srv {
			p = sctpPacket(t, sctpRS, sctpDPort, sctpCli, 40000, "eth1", s.c)
		}
		if f := e.Receive(p, int64(i+1)*1e9, nil); f.Kind != Forwarded {
			t.Fatalf("handshake %d: %v", i, f)
		}
	}
	in := sctpPacket(t, sctpCli, 40000, sctpVIP, sctpVPort, "eth0", sctpChunk(0, 12+64))
	out := sctpPacket(t, sctpRS, sctpDPort, sctpCli, 40000, "eth1", sctpChunk(0, 12+64))
	inOrig, outOrig := append([]byte(nil), in.Data...), append([]byte(nil), out.Data...)
	n := testing.AllocsPerRun(200, func() {
		for _, x := range []struct {
			p    *packet.Packet
			orig []byte
		}{{in, inOrig}, {out, outOrig}} {
			copy(x.p.Data, x.orig)
			_ = x.p.Decode()
			if f := e.Receive(x.p, 5e9, nil); f.Kind != Forwarded {
				t.Fatal(f)
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocs per established DATA pair", n)
	}
}
