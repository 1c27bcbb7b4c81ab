package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/uswitch-lab/uswitch/internal/capture/capturetest"
)

// FuzzCapture reads arbitrary bytes as a pcap or pcapng capture: it
// must never panic nor return a packet longer than MaxLen (or
// its snapshot length), and must end; NextAppend, into one growing
// buffer that starts with a prefix, gives the same packets and errors
// as Next and keeps what was in the buffer.
func FuzzCapture(f *testing.F) {
	ip := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	var pc, ng bytes.Buffer
	pw := pcapgo.NewWriter(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	nw, _ := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 5000), CaptureLength: len(ip), Length: len(ip)}
	pw.WritePacket(ci, ip)
	nw.WritePacket(ci, ip)
	nw.Flush()
	f.Add(pc.Bytes())
	f.Add(ng.Bytes())
	f.Add(pc.Bytes()[:pc.Len()-1])
	f.Add(ng.Bytes()[:ng.Len()-1])
	f.Add(append(capturetest.PcapHeader(0xffffffff), capturetest.PcapRecord(0xfffffff0, nil)...))
	f.Add(append(capturetest.NgStart(), capturetest.NgEPB(0x7ffffff0, make([]byte, 8))...))
	f.Add(append(capturetest.NgStart(), capturetest.NgBlock(3, binary.LittleEndian.AppendUint32(nil, 0xffffffff), 0)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		ra, _ := NewReader(bytes.NewReader(data))
		prefix := []byte("kept")
		buf := append([]byte(nil), prefix...)
		var held [][]byte // NextAppend's packets, checked at the end
		var want [][]byte
		defer func() {
			if !bytes.HasPrefix(buf, prefix) {
				t.Fatalf("NextAppend lost the buffer's prefix")
			}
			for i := range held {
				if !bytes.Equal(held[i], want[i]) {
					t.Fatalf("packet %d: NextAppend's bytes changed: % x, want % x", i+1, held[i], want[i])
				}
			}
		}()
		for n := 0; ; n++ {
			p, err := r.Next()
			pa, nbuf, erra := ra.NextAppend(buf)
			if (err == nil) != (erra == nil) || (err != nil && err.Error() != erra.Error()) {
				t.Fatalf("packet %d: Next %v, NextAppend %v", n+1, err, erra)
			}
			if err != nil && len(nbuf) != len(buf) {
				t.Fatalf("packet %d: NextAppend grew the buffer on %v", n+1, erra)
			}
			buf = nbuf
			if err == nil {
				if !bytes.Equal(p.Data, pa.Data) || p.Link != pa.Link || p.Iface != pa.Iface || p.Time != pa.Time {
					t.Fatalf("packet %d: Next %+v, NextAppend %+v", n+1, p, pa)
				}
				held = append(held, pa.Data)
				want = append(want, bytes.Clone(p.Data))
			}
			if err != nil {
				if errors.Is(err, io.EOF) && n > len(data) {
					t.Fatalf("%d packets from %d bytes", n, len(data))
				}
				return
			}
			if len(p.Data) > MaxLen {
				t.Fatalf("packet %d of %d bytes", n+1, len(p.Data))
			}
			if n > len(data) {
				t.Fatalf("more packets (%d) than bytes (%d)", n, len(data))
			}
		}
	})
}

// TestCaptureReader reads back what pcapgo wrote: the packets, their
// interfaces and timestamps, in both formats.
func TestCaptureReader(t *testing.T) {
	ip := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	ts := time.Unix(1700000000, 123456000)
	var pc, ng bytes.Buffer
	pw := pcapgo.NewWriterNanos(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	nw, _ := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	eth1, _ := nw.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeEthernet})
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(ip), Length: len(ip)}
	pw.WritePacket(ci, ip)
	nw.WritePacket(ci, ip)
	ci.InterfaceIndex = eth1
	nw.WritePacket(ci, ip)
	nw.Flush()
	for _, c := range []struct {
		name string
		data []byte
		want []Packet
	}{
		{"pcap", pc.Bytes(), []Packet{{Data: ip, Link: layers.LinkTypeRaw, Time: ts.UnixNano()}}},
		{"pcapng", ng.Bytes(), []Packet{{Data: ip, Link: layers.LinkTypeRaw, Iface: "eth0", Time: ts.UnixNano()},
			{Data: ip, Link: layers.LinkTypeEthernet, Iface: "eth1", Time: ts.UnixNano()}}},
	} {
		r, err := NewReader(bytes.NewReader(c.data))
		if err != nil {
			t.Fatal(c.name, err)
		}
		for i, w := range c.want {
			p, err := r.Next()
			if err != nil || !bytes.Equal(p.Data, w.Data) || p.Link != w.Link || p.Iface != w.Iface || p.Time != w.Time {
				t.Errorf("%s %d: %+v %v, want %+v", c.name, i+1, p, err, w)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Errorf("%s: end %v", c.name, err)
		}
	}
}
