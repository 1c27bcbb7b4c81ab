package lvs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// sctpPkt is an SCTP packet src:sport > dst:dport with a right CRC32c.
func sctpPkt(t testing.TB, src uint32, sport uint16, dst uint32, dport uint16, vtag uint32, chunks ...[]byte) *packet.Packet {
	t.Helper()
	l4 := packet.SCTPPacket(sport, dport, vtag, chunks...)
	p := &packet.Packet{Data: packet.Build(packet.Spec{Proto: packet.ProtoSCTP, Src: src, Dst: dst, Payload: l4})}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	sctpCli   = 0x0a000002 // 10.0.0.2
	sctpVIP   = 0x0a000001 // 10.0.0.1
	sctpRS    = 0xc0a80102 // 192.168.1.2
	sctpVPort = 3868
	sctpDPort = 3869
	sctpCPort = 5000
)

var sctpVS = ServiceKey{Proto: ProtoSCTP, Addr: sctpVIP, Port: sctpVPort}

func sctpDirector(t testing.TB, fwd FwdMethod, svc ServiceConfig) *Director {
	svc.Key = sctpVS
	return director(t, svc, DestConfig{Addr: sctpRS, Port: sctpDPort, Fwd: fwd, Weight: 1})
}

// cli and srv are packets of the association: client -> VIP, and the
// real server's replies (before IPVS gives them the VIP back).
func cli(t testing.TB, chunks ...[]byte) *packet.Packet {
	return sctpPkt(t, sctpCli, sctpCPort, sctpVIP, sctpVPort, 7, chunks...)
}

func srv(t testing.TB, chunks ...[]byte) *packet.Packet {
	return sctpPkt(t, sctpRS, sctpDPort, sctpCli, sctpCPort, 9, chunks...)
}

// kernelSCTPStates is sctp_states of ip_vs_proto_sctp.c as the source
// writes it (rows by event, columns by state), parsed by the test; the
// implementation's table is sctpStates.
const kernelSCTPStates = `
INPUT
/* d   */{sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* i   */{sI1, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN},
/* i_a */{sCW, sCW, sCW, sCS, sCR, sCO, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_e */{sCR, sIN, sIN, sCR, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_a */{sES, sI1, sIN, sCS, sCR, sCW, sCO, sES, sES, sSS, sSR, sSA, sRJ, sCL},
/* s   */{sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL},
/* s_a */{sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sCL, sSR, sCL, sRJ, sCL},
/* s_c */{sCL, sCL, sCL, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sCL, sRJ, sCL},
/* err */{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCL, sES, sSS, sSR, sSA, sRJ, sCL},
/* ab  */{sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
OUTPUT
/* d   */{sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* i   */{sCW, sCW, sCW, sCW, sCW, sCW, sCW, sCW, sES, sCW, sCW, sCW, sCW, sCW},
/* i_a */{sCS, sCS, sCS, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_e */{sCE, sCE, sCE, sCE, sCE, sCE, sCE, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_a */{sES, sES, sES, sES, sES, sES, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL},
/* s   */{sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSR, sSA, sRJ, sCL},
/* s_a */{sSA, sSA, sSA, sSA, sSA, sCW, sCO, sCE, sES, sSA, sSA, sSA, sRJ, sCL},
/* s_c */{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* err */{sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* ab  */{sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
INPUT-ONLY
/* d   */{sES, sI1, sIN, sCS, sCR, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* i   */{sI1, sIN, sIN, sIN, sIN, sIN, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN},
/* i_a */{sCE, sCE, sCE, sCE, sCE, sCE, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_e */{sES, sES, sES, sES, sES, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* c_a */{sES, sI1, sIN, sES, sES, sCW, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL},
/* s   */{sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL},
/* s_a */{sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sCL, sCL, sSR, sCL, sRJ, sCL},
/* s_c */{sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sCL, sCL, sRJ, sCL},
/* err */{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
/* ab  */{sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
`

// the kernel's abbreviations, their state names as ipvsadm -Lnc prints
// them (sctp_state_name_table) and their timeouts in seconds
// (sctp_timeouts)
var kernelSCTPStateInfo = []struct {
	abbr, name string
	timeout    int64
}{
	{"sNO", "NONE", 2}, {"sI1", "INIT1", 4}, {"sIN", "INIT", 61}, {"sCS", "C-SENT", 61},
	{"sCR", "C-REPLIED", 61}, {"sCW", "C-WAIT", 61}, {"sCO", "COOKIE", 61}, {"sCE", "C-ECHOED", 61},
	{"sES", "ESTABLISHED", 900}, {"sSS", "S-SENT", 61}, {"sSR", "S-RECEIVED", 61},
	{"sSA", "S-ACK-SENT", 61}, {"sRJ", "REJECTED", 4}, {"sCL", "CLOSED", 61},
}

// one chunk type per event row of the kernel's table (sctp_events)
var kernelSCTPEventChunks = []uint8{sctpChunkData, sctpChunkInit, sctpChunkInitAck, sctpChunkCookieEcho,
	sctpChunkCookieAck, sctpChunkShutdown, sctpChunkShutdownAck, sctpChunkShutdownComplete, sctpChunkError,
	sctpChunkAbort}

// parseKernelSCTPStates reads kernelSCTPStates into [dir][event][from] =
// to, as state names.
func parseKernelSCTPStates(t *testing.T) [3][10][14]string {
	t.Helper()
	name := map[string]string{}
	for _, s := range kernelSCTPStateInfo {
		name[s.abbr] = s.name
	}
	var out [3][10][14]string
	dir, ev := -1, 0
	for _, line := range strings.Split(strings.TrimSpace(kernelSCTPStates), "\n") {
		switch line {
		case "INPUT", "OUTPUT", "INPUT-ONLY":
			dir, ev = dir+1, 0
			continue
		}
		i, j := strings.Index(line, "{"), strings.Index(line, "}")
		if dir < 0 || i < 0 || j < i {
			t.Fatalf("bad table line %q", line)
		}
		cells := strings.Split(line[i+1:j], ",")
		if len(cells) != 14 {
			t.Fatalf("%d cells in %q", len(cells), line)
		}
		for k, c := range cells {
			n, ok := name[strings.TrimSpace(c)]
			if !ok {
				t.Fatalf("unknown state %q", c)
			}
			out[dir][ev][k] = n
		}
		ev++
	}
	if dir != 2 || ev != 10 {
		t.Fatalf("table ends at direction %d event %d", dir, ev)
	}
	return out
}

// Every transition of the kernel's table, driven by a packet whose first
// chunk makes the event, in each direction (INPUT: a VS/NAT client's
// packet; OUTPUT: a VS/NAT reply; INPUT-ONLY: a DR client's packet, the
// connection NOOUTPUT): the next state, its timeout, and the dest's
// active/inactive counts (active exactly in ESTABLISHED).
func TestSCTPStateTable(t *testing.T) {
	want := parseKernelSCTPStates(t)
	dirNames := []string{"INPUT", "OUTPUT", "INPUT-ONLY"}
	n := 0
	for dir := 0; dir < 3; dir++ {
		for ev, typ := range kernelSCTPEventChunks {
			for from := uint8(0); from < sctpLast; from++ {
				fwd := Masq
				if dir == dirInputOnly {
					fwd = Route
				}
				d := sctpDirector(t, fwd, ServiceConfig{})
				r := d.In(cli(t, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))), netfilter.LocalIn, sec, nil)
				cp, ds := r.Conn, r.Conn.Dest
				// put the connection in state from, its counts and
				// INACTIVE flag as the kernel would have them there
				cp.state.Store(uint32(from))
				if dir != dirInputOnly {
					cp.flags.And(^ConnNoOutput)
				}
				if from == SCTPEstablished {
					cp.moveActive(true)
				} else {
					cp.moveActive(false)
				}
				var body []byte
				if typ == sctpChunkInit || typ == sctpChunkInitAck {
					body = packet.SCTPInitValue(2, 10)
				}
				p := cli(t, packet.SCTPChunk(typ, 0, body))
				if dir == dirOutput {
					p = srv(t, packet.SCTPChunk(typ, 0, body))
				}
				if dir == dirOutput {
					if r := d.Out(p, netfilter.Forward, 2*sec); r.Conn != cp {
						t.Fatalf("reply not matched: %v", r)
					}
				} else if r := d.In(p, netfilter.LocalIn, 2*sec, nil); r.Conn != cp || r.V != Xmit {
					if typ == sctpChunkInit && from == SCTPClosed {
						// conn_reuse_mode: an INIT on a CLOSED connection
						// is scheduled afresh (checked below)
						if r.New && r.Conn.StateName() == "INIT1" {
							n++
							continue
						}
					}
					t.Fatalf("%s %d from %s: %v new=%v", dirNames[dir], typ, sctpStateName(from), r.V, r.New)
				}
				to := want[dir][ev][from]
				var tmo int64
				for _, s := range kernelSCTPStateInfo {
					if s.name == to {
						tmo = s.timeout
					}
				}
				wantCnt := [3]int32{0, 1, 0}
				if to == "ESTABLISHED" {
					wantCnt = [3]int32{1, 0, 0}
				}
				if cp.StateName() != to || cp.Expires(2*sec) != tmo*sec || counts(ds) != wantCnt {
					t.Errorf("%s chunk %d: %s -> %s (expires %d, counts %v), want %s (%d, %v)", dirNames[dir], typ,
						sctpStateName(from), cp.StateName(), cp.Expires(2*sec)/sec, counts(ds), to, tmo, wantCnt)
				}
				n++
			}
		}
	}
	if n != 3*10*14 {
		t.Errorf("%d transitions checked", n)
	}
}

// Chunk types to events as sctp_events maps them, every type: the ones
// it names, and DATA for the rest (the array's holes and types past
// SHUTDOWN COMPLETE). A packet without a whole chunk header makes no
// event.
func TestSCTPEvents(t *testing.T) {
	named := map[uint8]int{1: sctpEvInit, 2: sctpEvInitAck, 6: sctpEvAbort, 7: sctpEvShutdown, 8: sctpEvShutdownAck,
		9: sctpEvError, 10: sctpEvCookieEcho, 11: sctpEvCookieAck, 14: sctpEvShutdownComplete}
	for typ := 0; typ < 256; typ++ {
		want, ok := named[uint8(typ)]
		if !ok {
			want = sctpEvData
		}
		p := cli(t, packet.SCTPChunk(uint8(typ), 0, nil))
		if ev, ok := sctpEvent(p.L4); !ok || ev != want {
			t.Errorf("chunk %d: event %d %v, want %d", typ, ev, ok, want)
		}
	}
	// COOKIE ECHO / COOKIE ACK followed by an ABORT: the ABORT
	for _, typ := range []uint8{sctpChunkCookieEcho, sctpChunkCookieAck} {
		p := cli(t, packet.SCTPChunk(typ, 0, make([]byte, 5)), packet.SCTPChunk(sctpChunkAbort, 0, nil))
		if ev, _ := sctpEvent(p.L4); ev != sctpEvAbort {
			t.Errorf("chunk %d + ABORT: event %d", typ, ev)
		}
		// ... not when the ABORT is not the next chunk
		p = cli(t, packet.SCTPChunk(typ, 0, nil), packet.SCTPChunk(sctpChunkData, 0, nil), packet.SCTPChunk(sctpChunkAbort, 0, nil))
		if ev, _ := sctpEvent(p.L4); ev == sctpEvAbort {
			t.Errorf("chunk %d + DATA + ABORT: ABORT", typ)
		}
	}
	// other chunks are not looked past
	p := cli(t, packet.SCTPChunk(sctpChunkShutdown, 0, make([]byte, 4)), packet.SCTPChunk(sctpChunkAbort, 0, nil))
	if ev, _ := sctpEvent(p.L4); ev != sctpEvShutdown {
		t.Errorf("SHUTDOWN + ABORT: event %d", ev)
	}
	// a zero-length COOKIE ECHO: its length is below a chunk header,
	// nothing is looked past it
	p = cli(t, []byte{sctpChunkCookieEcho, 0, 0, 0}, packet.SCTPChunk(sctpChunkAbort, 0, nil))
	if ev, _ := sctpEvent(p.L4); ev != sctpEvCookieEcho {
		t.Errorf("zero-length COOKIE ECHO + ABORT: event %d", ev)
	}
	if _, ok := sctpEvent(make([]byte, 15)); ok {
		t.Error("event from a packet without a chunk header")
	}
}

// listing is ipvsadm -Lnc's output for d at now.
func listing(t testing.TB, d *Director, now int64) string {
	t.Helper()
	var b bytes.Buffer
	if err := PrintConns(&b, d, now, 0); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lncHead is -Lnc's title; lncLine one connection's line (ipvsadm's
// print_conn format).
var lncHead = "IPVS connection entries\n" + fmt.Sprintf("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")

func lncLine(proto, expire, state, src, vip, dst string) string {
	return fmt.Sprintf("%-3s %-6s %-11s %-18s %-18s %s\n", proto, expire, state, src, vip, dst)
}

// An association through a VS/NAT SCTP service, step by step: the state
// ipvsadm -Lnc shows and its timeout, the dest's counts, and the CRC32c
// of each rewritten packet; then a new INIT on the CLOSED connection is
// scheduled afresh (conn_reuse_mode).
func TestSCTPAssociationNAT(t *testing.T) {
	d := sctpDirector(t, Masq, ServiceConfig{})
	ds := d.Services()[0].Dests[0]
	data := packet.SCTPChunk(sctpChunkData, 3, make([]byte, 12+20))
	steps := []struct {
		name   string
		out    bool
		chunks [][]byte
		state  string
		expire string // mm:ss as -Lnc prints it
		cnt    [3]int32
	}{
		{"INIT", false, [][]byte{packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(0xa, 10))}, "INIT1", "00:04", [3]int32{0, 1, 0}},
		{"INIT-ACK", true, [][]byte{packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(0xb, 10))}, "C-SENT", "01:01", [3]int32{0, 1, 0}},
		{"COOKIE-ECHO", false, [][]byte{packet.SCTPChunk(sctpChunkCookieEcho, 0, make([]byte, 20))}, "C-REPLIED", "01:01", [3]int32{0, 1, 0}},
		{"COOKIE-ACK", true, [][]byte{packet.SCTPChunk(sctpChunkCookieAck, 0, nil)}, "ESTABLISHED", "15:00", [3]int32{1, 0, 0}},
		{"DATA", false, [][]byte{data}, "ESTABLISHED", "15:00", [3]int32{1, 0, 0}},
		{"SACK+DATA", true, [][]byte{packet.SCTPChunk(sctpChunkSack, 0, make([]byte, 12)), data}, "ESTABLISHED", "15:00", [3]int32{1, 0, 0}},
		{"HEARTBEAT", true, [][]byte{packet.SCTPChunk(sctpChunkHeartbeat, 0, make([]byte, 8))}, "ESTABLISHED", "15:00", [3]int32{1, 0, 0}},
		{"HEARTBEAT-ACK", false, [][]byte{packet.SCTPChunk(sctpChunkHeartbeatAck, 0, make([]byte, 8))}, "ESTABLISHED", "15:00", [3]int32{1, 0, 0}},
		{"SHUTDOWN", false, [][]byte{packet.SCTPChunk(sctpChunkShutdown, 0, make([]byte, 4))}, "S-RECEIVED", "01:01", [3]int32{0, 1, 0}},
		{"SHUTDOWN-ACK", true, [][]byte{packet.SCTPChunk(sctpChunkShutdownAck, 0, nil)}, "S-ACK-SENT", "01:01", [3]int32{0, 1, 0}},
		{"SHUTDOWN-COMPLETE", false, [][]byte{packet.SCTPChunk(sctpChunkShutdownComplete, 0, nil)}, "CLOSED", "01:01", [3]int32{0, 1, 0}},
	}
	now := sec
	for _, s := range steps {
		var p *packet.Packet
		if s.out {
			p = srv(t, s.chunks...)
			r := d.Out(p, netfilter.Forward, now)
			if r.V != Accept || r.Conn == nil || p.Src != sctpVIP || p.SrcPort != sctpVPort {
				t.Fatalf("%s: reply not rewritten: %v %08x:%d", s.name, r.V, p.Src, p.SrcPort)
			}
		} else {
			p = cli(t, s.chunks...)
			r := d.In(p, netfilter.LocalIn, now, nil)
			if r.V != Xmit || r.New != (s.name == "INIT") {
				t.Fatalf("%s: %v new=%v", s.name, r.V, r.New)
			}
			if !DNAT(p, r.Conn) || p.Dst != sctpRS || p.DstPort != sctpDPort {
				t.Fatalf("%s: not rewritten to the real server", s.name)
			}
		}
		// sctp_nat_csum: the port changed, the CRC32c is the packet's
		if !packet.SCTPChecksumOK(p.L4) {
			t.Errorf("%s: CRC32c wrong after the rewrite", s.name)
		}
		want := lncHead + lncLine("SCTP", s.expire, s.state, "10.0.0.2:5000", "10.0.0.1:3868", "192.168.1.2:3869")
		if got := listing(t, d, now); got != want {
			t.Errorf("after %s:\n%s\nwant\n%s", s.name, got, want)
		}
		if counts(ds) != s.cnt {
			t.Errorf("after %s: counts %v, want %v", s.name, counts(ds), s.cnt)
		}
		now += sec
	}
	// a new INIT on the CLOSED connection: the old one goes, the INIT
	// is scheduled
	r := d.In(cli(t, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(0xc, 10))), netfilter.LocalIn, now, nil)
	if !r.New || r.Conn.StateName() != "INIT1" || d.Conns.Len() != 1 || counts(ds) != [3]int32{0, 1, 0} {
		t.Errorf("INIT on CLOSED: new=%v %s, %d conns, counts %v", r.New, r.Conn.StateName(), d.Conns.Len(), counts(ds))
	}
	// the CLOSED timeout ends a connection
	if n := d.Conns.Reap(now + 5*sec); n != 1 || counts(ds) != [3]int32{} {
		t.Errorf("reaped %d, counts %v", n, counts(ds))
	}
}

// ABORTs: a client's ABORT during the handshake closes the connection;
// an ABORT answering the first INIT rejects it (REJECTED, 4 s); an ABORT
// after a COOKIE ECHO in the same packet counts as the ABORT; an ABORT
// (or any chunk but INIT) without a connection schedules nothing.
func TestSCTPAbort(t *testing.T) {
	init := packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))
	abort := packet.SCTPChunk(sctpChunkAbort, 0, nil)
	d := sctpDirector(t, Masq, ServiceConfig{})
	for _, c := range [][]byte{abort, packet.SCTPChunk(sctpChunkData, 0, make([]byte, 16)), packet.SCTPChunk(sctpChunkCookieEcho, 0, nil),
		packet.SCTPChunk(sctpChunkHeartbeat, 0, nil)} {
		if r := d.In(cli(t, c), netfilter.LocalIn, sec, nil); r.V != Accept || r.Conn != nil {
			t.Errorf("chunk %d without a connection: %v", c[0], r.V)
		}
	}
	// server rejects
	r := d.In(cli(t, init), netfilter.LocalIn, sec, nil)
	cp := r.Conn
	if r := d.Out(srv(t, abort), netfilter.Forward, sec); r.Conn != cp || cp.StateName() != "REJECTED" || cp.Expires(sec) != 4*sec {
		t.Errorf("ABORT answering INIT: %s %d", cp.StateName(), cp.Expires(sec)/sec)
	}
	// a rejected client's next INIT: INIT (the reuse is for CLOSED only)
	if r := d.In(cli(t, init), netfilter.LocalIn, 2*sec, nil); r.New || cp.StateName() != "INIT" {
		t.Errorf("INIT after REJECTED: new=%v %s", r.New, cp.StateName())
	}
	d.Conns.Flush()
	// client aborts after the cookie: COOKIE ECHO + ABORT in one packet
	d.In(cli(t, init), netfilter.LocalIn, sec, nil)
	d.Out(srv(t, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10))), netfilter.Forward, sec)
	r = d.In(cli(t, packet.SCTPChunk(sctpChunkCookieEcho, 0, make([]byte, 8)), abort), netfilter.LocalIn, sec, nil)
	if r.Conn.StateName() != "CLOSED" || counts(r.Conn.Dest) != [3]int32{0, 1, 0} {
		t.Errorf("COOKIE ECHO + ABORT: %s %v", r.Conn.StateName(), counts(r.Conn.Dest))
	}
	d.Conns.Flush()
	// established, then the real server aborts
	d.In(cli(t, init), netfilter.LocalIn, sec, nil)
	d.Out(srv(t, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10))), netfilter.Forward, sec)
	d.In(cli(t, packet.SCTPChunk(sctpChunkCookieEcho, 0, nil)), netfilter.LocalIn, sec, nil)
	r = d.Out(srv(t, packet.SCTPChunk(sctpChunkCookieAck, 0, nil)), netfilter.Forward, sec)
	if counts(r.Conn.Dest) != [3]int32{1, 0, 0} {
		t.Fatalf("established counts %v", counts(r.Conn.Dest))
	}
	r = d.Out(srv(t, abort), netfilter.Forward, 2*sec)
	if r.Conn.StateName() != "CLOSED" || r.Conn.Expires(2*sec) != 61*sec || counts(r.Conn.Dest) != [3]int32{0, 1, 0} {
		t.Errorf("ABORT from the server: %s %d %v", r.Conn.StateName(), r.Conn.Expires(2*sec)/sec, counts(r.Conn.Dest))
	}
}

// sloppy_sctp: any first chunk but ABORT schedules (a DATA of an
// association that predates the director: NONE + DATA is ESTABLISHED).
func TestSCTPSloppy(t *testing.T) {
	d := sctpDirector(t, Masq, ServiceConfig{})
	sc := d.Sysctls()
	sc.SloppySCTP = true
	d.SetSysctls(sc)
	if r := d.In(cli(t, packet.SCTPChunk(sctpChunkAbort, 0, nil)), netfilter.LocalIn, sec, nil); r.Conn != nil {
		t.Error("ABORT scheduled with sloppy_sctp")
	}
	r := d.In(cli(t, packet.SCTPChunk(sctpChunkData, 0, make([]byte, 16))), netfilter.LocalIn, sec, nil)
	if !r.New || r.Conn.StateName() != "ESTABLISHED" || counts(r.Conn.Dest) != [3]int32{1, 0, 0} {
		t.Errorf("sloppy DATA: new=%v %v", r.New, r.Conn)
	}
}

// What the kernel drops: an SCTP packet without a connection that is too
// short for a chunk header (sctp_conn_schedule has no ports: NF_DROP,
// service or not); on a VS/NAT connection, a packet shorter than the
// common header cannot be rewritten either way (the snat/dnat handlers'
// skb_ensure_writable).
func TestSCTPTruncated(t *testing.T) {
	d := sctpDirector(t, Masq, ServiceConfig{})
	short := func(src uint32, sport uint16, dst uint32, dport uint16, n int) *packet.Packet {
		l4 := make([]byte, n)
		binary.BigEndian.PutUint16(l4, sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		p := &packet.Packet{Data: packet.Build(packet.Spec{Proto: packet.ProtoSCTP, Src: src, Dst: dst, Payload: l4})}
		if err := p.Decode(); err != nil || !p.HasL4 {
			t.Fatalf("decode: %v", err)
		}
		return p
	}
	for _, n := range []int{4, 12, 15} {
		if r := d.In(short(sctpCli, 1, sctpVIP, 4000, n), netfilter.LocalIn, sec, nil); r.V != Drop {
			t.Errorf("%d bytes, no service port: %v", n, r.V)
		}
	}
	r := d.In(cli(t, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))), netfilter.LocalIn, sec, nil)
	// with the connection: the client's 8-byte packet finds it (4 bytes
	// of ports are enough) but cannot be rewritten
	p := short(sctpCli, sctpCPort, sctpVIP, sctpVPort, 8)
	if r2 := d.In(p, netfilter.LocalIn, sec, nil); r2.V != Xmit || r2.Conn != r.Conn || DNAT(p, r2.Conn) {
		t.Errorf("short packet on the connection: %v, DNAT done", r2.V)
	}
	if r2 := d.Out(short(sctpRS, sctpDPort, sctpCli, sctpCPort, 8), netfilter.Forward, sec); r2.V != Drop || r2.Conn != r.Conn {
		t.Errorf("short reply: %v", r2.V)
	}
	if r.Conn.StateName() != "INIT1" {
		t.Errorf("state %s after chunkless packets", r.Conn.StateName())
	}
}

// The CRC32c after VS/NAT: recomputed over the whole packet when the port
// changes (sctp_nat_csum, which does not check the old one: a wrong CRC
// comes out right), untouched when only the address changes (the CRC
// covers no address).
func TestSCTPNATChecksum(t *testing.T) {
	for _, samePort := range []bool{false, true} {
		d := NewDirector()
		dport := uint16(sctpDPort)
		if samePort {
			dport = sctpVPort
		}
		if err := d.AddService(ServiceConfig{Key: sctpVS, SchedName: "test-first"}); err != nil {
			t.Fatal(err)
		}
		if err := d.AddDest(sctpVS, DestConfig{Addr: sctpRS, Port: dport, Fwd: Masq, Weight: 1}); err != nil {
			t.Fatal(err)
		}
		p := cli(t, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10)), packet.SCTPChunk(0xc0, 0, make([]byte, 33)))
		p.L4[8] ^= 0xff // a wrong CRC32c
		bad := binary.LittleEndian.Uint32(p.L4[8:])
		r := d.In(p, netfilter.LocalIn, sec, nil)
		if r.V != Xmit || !DNAT(p, r.Conn) || p.Dst != sctpRS || p.DstPort != dport {
			t.Fatalf("not scheduled: %v", r.V)
		}
		if samePort {
			if binary.LittleEndian.Uint32(p.L4[8:]) != bad {
				t.Error("CRC32c changed with the port unchanged")
			}
		} else if !packet.SCTPChecksumOK(p.L4) {
			t.Error("CRC32c not recomputed after the port changed")
		}
		// the reply: source port back to the VIP's
		q := sctpPkt(t, sctpRS, dport, sctpCli, sctpCPort, 9, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10)))
		if r := d.Out(q, netfilter.Forward, sec); r.V != Accept || q.SrcPort != sctpVPort || q.Src != sctpVIP || !packet.SCTPChecksumOK(q.L4) {
			t.Errorf("reply %v %08x:%d crc ok %v", r.V, q.Src, q.SrcPort, packet.SCTPChecksumOK(q.L4))
		}
	}
}

// DR: the real server's replies bypass the director, so the connection
// follows INPUT-ONLY: the client's COOKIE ECHO makes it ESTABLISHED.
func TestSCTPDirectRoute(t *testing.T) {
	d := sctpDirector(t, Route, ServiceConfig{})
	for _, s := range []struct {
		c     []byte
		state string
	}{
		{packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10)), "INIT1"},
		{packet.SCTPChunk(sctpChunkCookieEcho, 0, make([]byte, 8)), "ESTABLISHED"},
		{packet.SCTPChunk(sctpChunkData, 0, make([]byte, 16)), "ESTABLISHED"},
		{packet.SCTPChunk(sctpChunkShutdown, 0, make([]byte, 4)), "S-RECEIVED"},
		{packet.SCTPChunk(sctpChunkShutdownComplete, 0, nil), "CLOSED"},
	} {
		r := d.In(cli(t, s.c), netfilter.LocalIn, sec, nil)
		if r.Conn.StateName() != s.state {
			t.Errorf("chunk %d: %s, want %s", s.c[0], r.Conn.StateName(), s.state)
		}
	}
	if r := d.Out(srv(t, packet.SCTPChunk(sctpChunkData, 0, nil)), netfilter.Forward, sec); r.Conn != nil {
		t.Error("a DR connection's reply was rewritten")
	}
}

// Persistence: a client's associations share a template and a dest; the
// template is ASSURED once one of them is ESTABLISHED
// (ip_vs_control_assure_ct); -o (one-packet) is for UDP only: SCTP
// connections stay.
func TestSCTPPersistenceOnePacket(t *testing.T) {
	RegisterScheduler("test-rr", func(*Service) Scheduler { return &testRR{} })
	d := NewDirector()
	if err := d.AddService(ServiceConfig{Key: sctpVS, SchedName: "test-rr", Flags: SvcPersistent | SvcOnePacket, Timeout: 300}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []uint32{sctpRS, sctpRS + 1} {
		if err := d.AddDest(sctpVS, DestConfig{Addr: a, Port: sctpDPort, Fwd: Masq, Weight: 1}); err != nil {
			t.Fatal(err)
		}
	}
	init := packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))
	a := d.In(cli(t, init), netfilter.LocalIn, sec, nil).Conn
	b := d.In(sctpPkt(t, sctpCli, 5001, sctpVIP, sctpVPort, 0, init), netfilter.LocalIn, sec, nil).Conn
	if a == nil || b == nil || a.Control == nil || a.Control != b.Control || a.DAddr != b.DAddr {
		t.Fatalf("associations of one client: %v / %v", a, b)
	}
	if d.Conns.Len() != 3 || a.Flags()&ConnOnePacket != 0 {
		t.Fatalf("%d entries (want 2 + template), flags %#x", d.Conns.Len(), a.Flags())
	}
	tmpl := lncLine("SCTP", "05:00", "NONE", "10.0.0.2:0", "10.0.0.1:3868", Addr(a.DAddr).String()+":3869")
	if got := listing(t, d, sec); !strings.Contains(got, tmpl) {
		t.Errorf("template line missing:\n%s", got)
	}
	d.Out(sctpPkt(t, a.DAddr, sctpDPort, sctpCli, sctpCPort, 9, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10))), netfilter.Forward, sec)
	d.In(cli(t, packet.SCTPChunk(sctpChunkCookieEcho, 0, nil)), netfilter.LocalIn, sec, nil)
	d.Out(sctpPkt(t, a.DAddr, sctpDPort, sctpCli, sctpCPort, 9, packet.SCTPChunk(sctpChunkCookieAck, 0, nil)), netfilter.Forward, sec)
	if a.StateName() != "ESTABLISHED" || a.Control.StateName() != "ASSURED" {
		t.Errorf("after COOKIE ACK: %s, template %s", a.StateName(), a.Control.StateName())
	}
	if got := counts(a.Dest); got != [3]int32{1, 1, 1} {
		t.Errorf("counts %v", got)
	}
}

// 0 allocations per DATA packet each way on an established association
// (lookup, state, counters, rewrite with the CRC32c).
func TestSCTPEstablishedNoAllocs(t *testing.T) {
	d := sctpDirector(t, Masq, ServiceConfig{})
	d.In(cli(t, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))), netfilter.LocalIn, sec, nil)
	d.Out(srv(t, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10))), netfilter.Forward, sec)
	d.In(cli(t, packet.SCTPChunk(sctpChunkCookieEcho, 0, nil)), netfilter.LocalIn, sec, nil)
	d.Out(srv(t, packet.SCTPChunk(sctpChunkCookieAck, 0, nil)), netfilter.Forward, sec)
	data := packet.SCTPChunk(sctpChunkData, 3, make([]byte, 12+64))
	in, out := cli(t, data), srv(t, data)
	inOrig, outOrig := append([]byte(nil), in.Data...), append([]byte(nil), out.Data...)
	n := testing.AllocsPerRun(200, func() {
		copy(in.Data, inOrig)
		_ = in.Decode()
		r := d.In(in, netfilter.LocalIn, 2*sec, nil)
		if r.V != Xmit || !DNAT(in, r.Conn) {
			t.Fatal(r.V)
		}
		copy(out.Data, outOrig)
		_ = out.Decode()
		if r := d.Out(out, netfilter.Forward, 2*sec); r.Conn == nil || r.Conn.StateName() != "ESTABLISHED" {
			t.Fatal("no reply conn")
		}
	})
	if n != 0 {
		t.Errorf("%v allocs per established packet pair", n)
	}
}

// FuzzSCTPIPVS runs up to three SCTP packets (each from the client or
// from the real server, the bits of dirs) through a VS/NAT SCTP service
// that changes the port: nothing panics, every rewritten packet has a
// right CRC32c, the dest's counts add up to the connections bound to it
// and no state is out of the table.
func FuzzSCTPIPVS(f *testing.F) {
	l4 := func(p *packet.Packet) []byte { return append([]byte(nil), p.L4[12:]...) }
	f.Add(l4(cli(f, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10)))), l4(srv(f, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10)))),
		l4(cli(f, packet.SCTPChunk(sctpChunkCookieEcho, 0, make([]byte, 8)), packet.SCTPChunk(sctpChunkAbort, 0, nil))), uint8(2), uint8(0))
	f.Add(l4(cli(f, packet.SCTPChunk(sctpChunkData, 0, make([]byte, 16)))), []byte{}, []byte{6, 0, 0, 4}, uint8(0), uint8(1))
	f.Add([]byte{1, 0, 0, 20}, []byte{11, 0, 0, 4, 6, 0, 0, 4}, []byte{14, 0, 0}, uint8(7), uint8(2))
	f.Fuzz(func(t *testing.T, c1, c2, c3 []byte, dirs, flags uint8) {
		d := sctpDirector(t, Masq, ServiceConfig{})
		if flags&1 != 0 {
			sc := d.Sysctls()
			sc.SloppySCTP = true
			d.SetSysctls(sc)
		}
		ds := d.Services()[0].Dests[0]
		for i, c := range [][]byte{c1, c2, c3} {
			if len(c) > 1500 {
				c = c[:1500]
			}
			var p *packet.Packet
			fromCli := dirs&(1<<i) == 0
			if fromCli {
				p = sctpPkt(t, sctpCli, sctpCPort, sctpVIP, sctpVPort, 7)
			} else {
				p = sctpPkt(t, sctpRS, sctpDPort, sctpCli, sctpCPort, 9)
			}
			body := append(append([]byte(nil), p.L4...), c...)
			if flags&2 != 0 && len(body) > 4 {
				body = body[:4+len(c)%9] // a truncated header
			} else {
				packet.SetSCTPChecksum(body)
			}
			p = &packet.Packet{Data: packet.Build(packet.Spec{Proto: packet.ProtoSCTP, Src: p.Src, Dst: p.Dst, Payload: body})}
			if p.Decode() != nil || !p.HasL4 {
				continue
			}
			now := int64(i+1) * sec
			if fromCli {
				if r := d.In(p, netfilter.LocalIn, now, nil); r.V == Xmit && DNAT(p, r.Conn) && !packet.SCTPChecksumOK(p.L4) {
					t.Fatalf("packet %d: CRC32c wrong after DNAT", i)
				}
			} else if r := d.Out(p, netfilter.Forward, now); r.V == Accept && r.Conn != nil && !packet.SCTPChecksumOK(p.L4) {
				t.Fatalf("packet %d: CRC32c wrong after SNAT", i)
			}
			d.Conns.Range(now, func(c *Conn) bool {
				if c.StateName() == "ERR!" {
					t.Fatalf("state %d out of the table", c.State())
				}
				return true
			})
			bound := int32(d.Conns.Len())
			if a, in := ds.ActiveConns.Load(), ds.InactConns.Load(); a < 0 || in < 0 || a+in != bound {
				t.Fatalf("packet %d: active %d inactive %d for %d connections", i, a, in, bound)
			}
		}
	})
}

// BenchmarkSCTPEstablished: one DATA packet of an established VS/NAT
// association, alternately the client's (In, DNAT with the CRC32c over
// its 64-byte payload) and the real server's (Out, the same).
func BenchmarkSCTPEstablished(b *testing.B) {
	d := sctpDirector(b, Masq, ServiceConfig{})
	d.In(cli(b, packet.SCTPChunk(sctpChunkInit, 0, packet.SCTPInitValue(1, 10))), netfilter.LocalIn, sec, nil)
	d.Out(srv(b, packet.SCTPChunk(sctpChunkInitAck, 0, packet.SCTPInitValue(2, 10))), netfilter.Forward, sec)
	d.In(cli(b, packet.SCTPChunk(sctpChunkCookieEcho, 0, nil)), netfilter.LocalIn, sec, nil)
	d.Out(srv(b, packet.SCTPChunk(sctpChunkCookieAck, 0, nil)), netfilter.Forward, sec)
	data := packet.SCTPChunk(sctpChunkData, 3, make([]byte, 12+64))
	in, out := cli(b, data), srv(b, data)
	inOrig, outOrig := append([]byte(nil), in.Data...), append([]byte(nil), out.Data...)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i&1 == 0 {
			copy(in.Data, inOrig)
			_ = in.Decode()
			if r := d.In(in, netfilter.LocalIn, 2*sec, nil); r.V != Xmit || !DNAT(in, r.Conn) {
				b.Fatal(r.V)
			}
		} else {
			copy(out.Data, outOrig)
			_ = out.Decode()
			if r := d.Out(out, netfilter.Forward, 2*sec); r.Conn == nil {
				b.Fatal("no conn")
			}
		}
	}
}
