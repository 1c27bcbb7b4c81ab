package nat

import (
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/packet"
)

func TestFormatFTP(t *testing.T) {
	for _, c := range []struct {
		typ  conntrack.FTPType
		want string
	}{
		{conntrack.FTPPort, "192,168,100,1,168,165"},
		{conntrack.FTPPasv, "192,168,100,1,168,165"},
		{conntrack.FTPEprt, "|1|192.168.100.1|43173|"},
		{conntrack.FTPEpsv, "|||43173|"},
	} {
		if got := string(FormatFTP(nil, c.typ, 0xc0a86401, 43173)); got != c.want {
			t.Errorf("type %d: %q, want %q", c.typ, got, c.want)
		}
	}
}

// MangleTCP grows and shrinks a payload: lengths and checksums right,
// the bytes around the match kept, the sequence adjustment recorded.
func TestMangleTCP(t *testing.T) {
	for _, rep := range []string{"192,168,100,1,4,1", "1,1,1,1,4,1", "10,1,0,2,4,1"} {
		payload := "PORT 10,1,0,2,4,1\r\n"
		b := packet.Build(packet.Spec{Proto: packet.ProtoTCP, Src: 0x0a010002, Dst: 0xc0a86402, SrcPort: 40000, DstPort: 21,
			TCPFlags: packet.TCPAck | packet.TCPPsh, Seq: 1000, Ack: 1, Payload: []byte(payload)})
		p := &packet.Packet{Data: b}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		c := &conntrack.Conn{}
		c.SetHelper(conntrack.FTP)
		if !MangleTCP(p, c, conntrack.CtEstablished, 5, 12, []byte(rep)) {
			t.Fatalf("%q: MangleTCP failed", rep)
		}
		want := "PORT " + rep + "\r\n"
		if got := string(p.L4[20:]); got != want {
			t.Errorf("payload %q, want %q", got, want)
		}
		if int(p.IP.TotalLen()) != 20+20+len(want) || !p.TransportChecksumOK() || packet.Checksum(p.IP[:20], 0) != 0xffff {
			t.Errorf("%q: total length %d, checksums %v", rep, p.IP.TotalLen(), p.TransportChecksumOK())
		}
		if d := int32(len(rep) - 12); c.SeqOffset(conntrack.Original, 1001) != d {
			t.Errorf("%q: offset %d, want %d", rep, c.SeqOffset(conntrack.Original, 1001), d)
		}
	}
}

// FuzzMangleTCP: any match window and replacement on any TCP packet
// gives a packet that decodes with a valid checksum, or false.
func FuzzMangleTCP(f *testing.F) {
	f.Add([]byte("PORT 10,1,0,2,4,1\r\n"), 5, 12, []byte("192,168,100,1,4,1"))
	f.Fuzz(func(t *testing.T, payload []byte, off, n int, rep []byte) {
		b := packet.Build(packet.Spec{Proto: packet.ProtoTCP, Src: 1, Dst: 2, SrcPort: 3, DstPort: 4, TCPFlags: packet.TCPAck, Seq: 5, Payload: payload})
		p := &packet.Packet{Data: b}
		if p.Decode() != nil {
			return
		}
		c := &conntrack.Conn{}
		c.SetHelper(conntrack.FTP)
		if !MangleTCP(p, c, conntrack.CtEstablished, off, n, rep) {
			return
		}
		if !p.TransportChecksumOK() || int(p.IP.TotalLen()) != len(p.IP) {
			t.Fatal("bad packet after mangling")
		}
	})
}
