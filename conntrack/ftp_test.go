package conntrack

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// ParseFTP on the cases nf_conntrack_ftp.c's find_pattern and getnum
// functions decide, worked out from the kernel source.
func TestParseFTP(t *testing.T) {
	const self = 0x01020304
	for _, c := range []struct {
		in    string
		dir   Dir
		found int
		typ   FTPType
		addr  uint32
		port  uint16
		off   int
		n     int
	}{
		{"PORT 10,1,0,2,4,1\r\n", Original, 1, FTPPort, 0x0a010002, 1025, 5, 12},
		{"port 10,1,0,2,4,1\r\n", Original, 1, FTPPort, 0x0a010002, 1025, 5, 12},
		{"PORT  10,1,0,2,4,1\r\n", Original, -1, 0, 0, 0, 0, 0}, // a second space is not a digit
		{"PORT 1,2,3,4,5\r\n", Original, -1, 0, 0, 0, 0, 0},
		{"PORT 1,2,3,4,5,6", Original, -1, 0, 0, 0, 0, 0}, // no terminator
		{"PORT 1,2,3,4,5,6,\r\n", Original, -1, 0, 0, 0, 0, 0},
		{"PORT", Original, -1, 0, 0, 0, 0, 0}, // short: partial
		{"POR", Original, -1, 0, 0, 0, 0, 0},
		{"PORTX", Original, -1, 0, 0, 0, 0, 0}, // no space before the end
		{"POST / HTTP/1.0\r\n", Original, 0, 0, 0, 0, 0, 0},
		{"USER x\r\n", Original, 0, 0, 0, 0, 0, 0},
		{"PORT 300,2,3,4,5,6\r\n", Original, 1, FTPPort, 0x2c020304, 0x0506, 5, 13}, // u32 wrap
		{"PORT 1,2,3,4,256,1\r\n", Original, 1, FTPPort, 0x01020304, 0x0001, 5, 13},
		{"EPRT |1|132.235.1.2|6275|\r\n", Original, 1, FTPEprt, 0x84eb0102, 6275, 5, 20},
		{"EPRT |2|::1|6275|\r\n", Original, -1, 0, 0, 0, 0, 0},
		{"EPRT 1|1|1.2.3.4|5|\r\n", Original, -1, 0, 0, 0, 0, 0},
		{"EPRT |1|1.2.3.4|0|\r\n", Original, -1, 0, 0, 0, 0, 0},
		{"227 Entering Passive Mode (192,168,1,2,4,1)\r\n", Reply, 1, FTPPasv, 0xc0a80102, 1025, 27, 15},
		{"227 =192,168,1,2,4,1\r\n", Reply, 1, FTPPasv, 0xc0a80102, 1025, 5, 15},
		{"227 192,168,1,2,4,1", Reply, -1, 0, 0, 0, 0, 0},
		{"227 no numbers\r\n", Reply, -1, 0, 0, 0, 0, 0},
		{"229 Entering Extended Passive Mode (|||6446|)\r\n", Reply, 1, FTPEpsv, self, 6446, 36, 8},
		{"229 (|||0|)\r\n", Reply, -1, 0, 0, 0, 0, 0},
		{"229 no paren\r\n", Reply, -1, 0, 0, 0, 0, 0},
		{"229 (!!!7!)\r\n", Reply, 1, FTPEpsv, self, 7, 5, 5},
		{"220 hello\r\n", Reply, 0, 0, 0, 0, 0, 0},
		{"PORT 1,2,3,4,5,6\r\n", Reply, 0, 0, 0, 0, 0, 0}, // commands only in their direction
	} {
		found, cmd := ParseFTP([]byte(c.in), c.dir, self)
		if found != c.found {
			t.Errorf("%q: found %d, want %d", c.in, found, c.found)
			continue
		}
		if found != 1 {
			continue
		}
		if cmd.Type != c.typ || cmd.Addr != c.addr || cmd.Port != c.port || cmd.MatchOff != c.off || cmd.MatchLen != c.n {
			t.Errorf("%q: %+v, want type %d addr %#x port %d at %d+%d", c.in, cmd, c.typ, c.addr, c.port, c.off, c.n)
		}
	}
}

// FuzzParseFTP: the parser never panics, and a match lies inside the
// payload.
func FuzzParseFTP(f *testing.F) {
	for _, s := range []string{"PORT 10,1,0,2,4,1\r\n", "EPRT |1|132.235.1.2|6275|\r\n",
		"227 Entering Passive Mode (192,168,1,2,4,1)\r\n", "229 Entering Extended Passive Mode (|||6446|)\r\n", "PORT", "229 ("} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, dir uint8) {
		found, cmd := ParseFTP(b, Dir(dir&1), 0x01020304)
		if found == 1 && (cmd.MatchOff < 0 || cmd.MatchLen <= 0 || cmd.MatchOff+cmd.MatchLen > len(b)) {
			t.Fatalf("match %d+%d outside %d bytes", cmd.MatchOff, cmd.MatchLen, len(b))
		}
	})
}

// ftpSession drives a helped control connection through a table: the
// handshake, the server's greeting (its first line is never parsed),
// the client's USER, then lines.
type ftpSession struct {
	t           testing.TB
	tb          *Table
	now         int64
	cseq, sseq  uint32
	sport       uint16
	control     *Conn
	lastVerdict Verdict
}

func newFTPSession(t testing.TB, tb *Table, sport uint16) *ftpSession {
	s := &ftpSession{t: t, tb: tb, now: int64(time.Hour), cseq: 1000, sseq: 5000, sport: sport}
	s.pkt(true, packet.TCPSyn, nil)
	s.cseq++
	s.pkt(false, packet.TCPSyn|packet.TCPAck, nil)
	s.sseq++
	s.pkt(true, packet.TCPAck, nil)
	s.line(false, "220 hi\r\n")
	s.line(true, "USER x\r\n")
	return s
}

// pkt sends one packet through In, Help and Confirm and returns its Ref.
func (s *ftpSession) pkt(fromCli bool, flags uint8, payload []byte) Ref {
	s.t.Helper()
	s.now += int64(time.Millisecond)
	sp := packet.Spec{Proto: packet.ProtoTCP, Src: cliIP, Dst: srvIP, SrcPort: s.sport, DstPort: 21,
		TCPFlags: flags, Seq: s.cseq, Ack: s.sseq, Payload: payload}
	if !fromCli {
		sp.Src, sp.Dst, sp.SrcPort, sp.DstPort, sp.Seq, sp.Ack = srvIP, cliIP, 21, s.sport, s.sseq, s.cseq
	}
	p := mkpkt(s.t, sp, nil)
	r, v := s.tb.InTemplate(p, 0, FTP, netfilter.PreRouting, s.now)
	if v != Accept || r.Conn == nil {
		s.t.Fatalf("In: %v %+v", v, r)
	}
	s.control = r.Conn
	s.lastVerdict = s.tb.Help(p, r, s.now)
	if _, v := s.tb.Confirm(r, s.now); v != Accept {
		s.t.Fatalf("Confirm: %v", v)
	}
	return r
}

func (s *ftpSession) line(fromCli bool, l string) {
	s.t.Helper()
	s.pkt(fromCli, packet.TCPAck|packet.TCPPsh, []byte(l))
	if fromCli {
		s.cseq += uint32(len(l))
	} else {
		s.sseq += uint32(len(l))
	}
}

// The FTP helper expects the data connection of a PORT; the server's
// connection to it is RELATED with the control connection as master;
// the expectation is used up; a second PORT evicts the first
// (max_expected 1); an expectation times out after five minutes.
func TestFTPExpectation(t *testing.T) {
	tb := testTable()
	s := newFTPSession(t, tb, 40000)
	if got := s.control.HelperName(); got != "ftp" {
		t.Fatalf("helper %q", got)
	}
	if tb.ExpectCount() != 0 {
		t.Fatalf("expectations before PORT: %d", tb.ExpectCount())
	}
	s.line(true, "PORT 10,1,0,2,4,1\r\n")
	ex := tb.Expectations(s.now)
	if len(ex) != 1 {
		t.Fatalf("expectations after PORT: %d", len(ex))
	}
	want := Tuple{Src: srvIP, Dst: cliIP, DstPort: 1025, Proto: packet.ProtoTCP}
	if ex[0].Tuple != want || ex[0].SrcMask != ^uint32(0) || ex[0].SrcPortMask != 0 || ex[0].Master != s.control {
		t.Fatalf("expectation %+v, want %+v from any port", ex[0], want)
	}
	// a second PORT replaces it
	s.line(true, "PORT 10,1,0,2,4,2\r\n")
	if ex = tb.Expectations(s.now); len(ex) != 1 || ex[0].Tuple.DstPort != 1026 {
		t.Fatalf("after a second PORT: %+v", ex)
	}
	// a PORT naming another address is not recorded (loose=0)
	s.line(true, "PORT 10,9,9,9,4,3\r\n")
	if ex = tb.Expectations(s.now); len(ex) != 1 || ex[0].Tuple.DstPort != 1026 {
		t.Fatalf("after a foreign PORT: %+v", ex)
	}
	// a partial command is dropped
	s.pkt(true, packet.TCPAck|packet.TCPPsh, []byte("PORT 1,2\r\n"))
	if s.lastVerdict != DropHelper {
		t.Fatalf("partial PORT: %v", s.lastVerdict)
	}

	// the server's data connection
	s.now += int64(time.Millisecond)
	p := mkpkt(t, packet.Spec{Proto: packet.ProtoTCP, Src: srvIP, Dst: cliIP, SrcPort: 20, DstPort: 1026, TCPFlags: packet.TCPSyn, Seq: 1}, nil)
	r, _ := tb.In(p, 0, netfilter.PreRouting, s.now)
	if r.Conn == nil || r.Info != CtRelated || r.Conn.Master() != s.control || r.Conn.Status()&StatusExpected == 0 {
		t.Fatalf("data connection: %+v", r)
	}
	if r.State() != StateRelated {
		t.Fatalf("state %v", stateString(r.State()))
	}
	tb.Help(p, r, s.now)
	tb.Confirm(r, s.now)
	if tb.ExpectCount() != 0 || tb.Stats().ExpectNew != 1 {
		t.Fatalf("expectation not used up: %d left, expect_new %d", tb.ExpectCount(), tb.Stats().ExpectNew)
	}
	// its SYN/ACK is ESTABLISHED_REPLY
	p = mkpkt(t, packet.Spec{Proto: packet.ProtoTCP, Src: cliIP, Dst: srvIP, SrcPort: 1026, DstPort: 20, TCPFlags: packet.TCPSyn | packet.TCPAck, Seq: 9, Ack: 2}, nil)
	if r2, _ := tb.In(p, 0, netfilter.PreRouting, s.now); r2.Conn != r.Conn || r2.Info != CtEstablishedReply {
		t.Fatalf("reply: %+v", r2)
	}

	// PASV's 227 reply, then the timeout
	s.line(false, "227 Entering Passive Mode (10,2,0,2,200,1)\r\n")
	ex = tb.Expectations(s.now)
	if len(ex) != 1 || ex[0].Tuple != (Tuple{Src: cliIP, Dst: srvIP, DstPort: 200<<8 | 1, Proto: packet.ProtoTCP}) {
		t.Fatalf("after 227: %+v", ex)
	}
	if got := ex[0].Remaining(s.now); got != int64(5*time.Minute) {
		t.Fatalf("timeout %v", time.Duration(got))
	}
	tb.Reap(s.now+int64(5*time.Minute), 16)
	if tb.ExpectCount() != 0 {
		t.Fatalf("expectation outlived its timeout")
	}

	// a master's expectations go with it
	s.line(true, "PORT 10,1,0,2,4,4\r\n")
	if tb.ExpectCount() != 1 {
		t.Fatalf("no expectation")
	}
	tb.Delete(s.control)
	if tb.ExpectCount() != 0 {
		t.Fatalf("expectation outlived its master")
	}
}

// Without a template nothing is helped (nf_conntrack_helper=0): no
// expectation even on port 21.
func TestFTPNoTemplate(t *testing.T) {
	tb := testTable()
	now := int64(time.Hour)
	p := mkpkt(t, tcpSpec(true, 40000, 21, packet.TCPSyn, 1, 0, 0), nil)
	r, _ := tb.In(p, 0, netfilter.PreRouting, now)
	if r.Conn.Helped() || r.Conn.HelperName() != "" {
		t.Fatalf("helper assigned without a template")
	}
}

// The sequence adjustment: a payload grown by 5 at seq 100 moves later
// sequence numbers of that direction and the other direction's acks.
func TestSeqAdjust(t *testing.T) {
	c := &Conn{}
	c.SetHelper(FTP)
	c.SeqAdjSet(CtEstablished, 100, 5)
	if c.SeqOffset(Original, 100) != 0 || c.SeqOffset(Original, 101) != 5 {
		t.Fatalf("offsets %d %d", c.SeqOffset(Original, 100), c.SeqOffset(Original, 101))
	}
	// a retransmission of the same segment adds nothing
	c.SeqAdjSet(CtEstablished, 100, 5)
	if c.SeqOffset(Original, 200) != 5 {
		t.Fatalf("offset after a retransmission: %d", c.SeqOffset(Original, 200))
	}
	p := mkpkt(t, tcpSpec(true, 1, 2, packet.TCPAck, 150, 7, 3), nil)
	if !seqAdjust(p, c, CtEstablished) {
		t.Fatal("seqAdjust failed")
	}
	if tc := packet.TCP(p.L4); tc.Seq() != 155 || tc.Ack() != 7 || !p.TransportChecksumOK() {
		t.Fatalf("seq %d ack %d checksum ok %v", tc.Seq(), tc.Ack(), p.TransportChecksumOK())
	}
	p = mkpkt(t, tcpSpec(false, 2, 1, packet.TCPAck, 7, 160, 0), nil)
	seqAdjust(p, c, CtEstablishedReply)
	if tc := packet.TCP(p.L4); tc.Seq() != 7 || tc.Ack() != 155 || !p.TransportChecksumOK() {
		t.Fatalf("reply seq %d ack %d checksum ok %v", tc.Seq(), tc.Ack(), p.TransportChecksumOK())
	}
}

// FuzzFTPHelper runs arbitrary payloads through a helped control
// connection in both directions: no panic.
func FuzzFTPHelper(f *testing.F) {
	f.Add([]byte("PORT 10,1,0,2,4,1\r\n"), true)
	f.Add([]byte("227 Entering Passive Mode (10,2,0,2,4,1)\r\n"), false)
	f.Add([]byte("229 (|||1|)\r\n"), false)
	f.Fuzz(func(t *testing.T, b []byte, fromCli bool) {
		// a segment's payload, within an MTU (more than an IPv4
		// datagram carries, or than the window takes, is the harness's)
		if len(b) > 1460 {
			b = b[:1460]
		}
		tb := testTable()
		s := newFTPSession(t, tb, 40000)
		s.pkt(fromCli, packet.TCPAck|packet.TCPPsh, b)
		if tb.ExpectCount() > 1 {
			t.Fatalf("%d expectations", tb.ExpectCount())
		}
	})
}

// FuzzTFTPHelper: any UDP payload to a helped TFTP flow.
func FuzzTFTPHelper(f *testing.F) {
	f.Add([]byte("\x00\x01file\x00octet\x00"))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// a datagram's payload, within an MTU
		if len(b) > 1472 {
			b = b[:1472]
		}
		tb := testTable()
		p := mkpkt(t, packet.Spec{Proto: packet.ProtoUDP, Src: cliIP, Dst: srvIP, SrcPort: 3000, DstPort: 69, Payload: b}, nil)
		r, _ := tb.InTemplate(p, 0, TFTP, netfilter.PreRouting, 1)
		tb.Help(p, r, 1)
		tb.Confirm(r, 1)
		if n := tb.ExpectCount(); (len(b) >= 2 && b[0] == 0 && (b[1] == 1 || b[1] == 2)) != (n == 1) {
			t.Fatalf("%d expectations for % x", n, b)
		}
	})
}

// nf_conntrack_expect_max (buckets/256*4) bounds the expectations of all
// masters: past it a helper cannot expect and drops; two masters
// expecting the same tuple clash (EBUSY).
func TestExpectLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Buckets = 256 // expect_max 4
	tb := NewTable(cfg, 1)
	if tb.ExpectMax() != 4 {
		t.Fatalf("expect_max %d", tb.ExpectMax())
	}
	for i := 0; i < 5; i++ {
		s := newFTPSession(t, tb, uint16(40000+i))
		s.line(true, fmt.Sprintf("PORT 10,1,0,2,4,%d\r\n", 1+i))
		if i < 4 && s.lastVerdict != Accept {
			t.Fatalf("master %d: %v", i, s.lastVerdict)
		}
		if i == 4 && s.lastVerdict != DropHelper {
			t.Fatalf("a fifth expectation: %v, want a drop", s.lastVerdict)
		}
	}
	if tb.ExpectCount() != 4 {
		t.Fatalf("%d expectations", tb.ExpectCount())
	}
	// the same tuple from two masters: the first one's already exists
	x := tb.Expectations(int64(time.Hour))[0]
	m := x.Master
	e := &Expect{Tuple: x.Tuple, SrcMask: ^uint32(0)}
	var other *Conn
	tb.Range(int64(time.Hour), func(c *Conn) bool {
		if c != m {
			other = c
		}
		return other == nil
	})
	e.Master = other
	if err := tb.ExpectRelated(e, int64(time.Hour)); err != ErrExpectBusy {
		t.Fatalf("clash: %v", err)
	}
	tb.FlushExpectations()
	if tb.ExpectCount() != 0 {
		t.Fatalf("flush left %d", tb.ExpectCount())
	}
}

// An established packet of a helped control connection that announces
// nothing costs no allocation in the helper.
func TestFTPHelpNoAllocs(t *testing.T) {
	tb := testTable()
	s := newFTPSession(t, tb, 40000)
	p := mkpkt(t, packet.Spec{Proto: packet.ProtoTCP, Src: cliIP, Dst: srvIP, SrcPort: 40000, DstPort: 21,
		TCPFlags: packet.TCPAck | packet.TCPPsh, Seq: s.cseq, Ack: s.sseq, Payload: []byte("NOOP\r\n")}, nil)
	r := Ref{Conn: s.control, Info: CtEstablished}
	if n := testing.AllocsPerRun(100, func() {
		if tb.Help(p, r, s.now) != Accept {
			t.Fatal("dropped")
		}
	}); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func BenchmarkFTPHelp(b *testing.B) {
	tb := testTable()
	s := newFTPSession(b, tb, 40000)
	p := mkpkt(b, packet.Spec{Proto: packet.ProtoTCP, Src: cliIP, Dst: srvIP, SrcPort: 40000, DstPort: 21,
		TCPFlags: packet.TCPAck | packet.TCPPsh, Seq: s.cseq, Ack: s.sseq, Payload: []byte("PORT 10,1,0,2,4,1\r\n")}, nil)
	r := Ref{Conn: s.control, Info: CtEstablished}
	b.ReportAllocs()
	for b.Loop() {
		tb.Help(p, r, s.now)
	}
}

// SACK blocks in the other direction's packets move back with the
// acknowledgement (nf_ct_sack_adjust).
func TestSeqAdjustSACK(t *testing.T) {
	c := &Conn{}
	c.SetHelper(FTP)
	c.SeqAdjSet(CtEstablished, 100, 5) // the client's stream grew by 5 at 100
	opts := []byte{1, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(opts[4:], 90+0)  // before the change: offset 0
	binary.BigEndian.PutUint32(opts[8:], 200+5) // after it, as the server saw it
	p := mkpkt(t, tcpSpec(false, 2, 1, packet.TCPAck, 7, 205, 0), nil)
	// make the 12 option bytes part of the header
	b := append([]byte(nil), p.Data[:40]...)
	b = append(b, opts...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[32] = 8 << 4
	q := &packet.Packet{Data: b}
	packet.IPv4(b).SetChecksum()
	binary.BigEndian.PutUint16(b[36:], 0)
	binary.BigEndian.PutUint16(b[36:], ^packet.Checksum(b[20:], packet.PseudoHeaderSum(srvIP, cliIP, packet.ProtoTCP, uint16(len(b)-20))))
	if err := q.Decode(); err != nil || !q.TransportChecksumOK() {
		t.Fatalf("test packet: %v", err)
	}
	if !seqAdjust(q, c, CtEstablishedReply) {
		t.Fatal("seqAdjust failed")
	}
	h := q.L4
	if ack, s0, s1 := binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[24:]), binary.BigEndian.Uint32(h[28:]); ack != 200 || s0 != 90 || s1 != 200 {
		t.Errorf("ack %d, SACK %d-%d; want 200, 90-200", ack, s0, s1)
	}
	if !q.TransportChecksumOK() {
		t.Error("checksum broken")
	}
}
