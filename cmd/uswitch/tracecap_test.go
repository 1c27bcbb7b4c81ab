package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

var le = binary.LittleEndian

// pcapHeader is a little-endian classic pcap file header of raw IP.
func pcapHeader(snaplen uint32) []byte {
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint32(b, snaplen)
	return le.AppendUint32(b, uint32(layers.LinkTypeRaw))
}

// pcapRecord is a classic pcap record claiming caplen bytes, holding data.
func pcapRecord(caplen uint32, data []byte) []byte {
	b := le.AppendUint32(nil, 1700000000)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, caplen)
	b = le.AppendUint32(b, caplen)
	return append(b, data...)
}

// ngBlock is a little-endian pcapng block of type typ around body
// (padded), claiming total as its length when it is not 0.
func ngBlock(typ uint32, body []byte, total uint32) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	if total == 0 {
		total = n
	}
	b := le.AppendUint32(nil, typ)
	b = le.AppendUint32(b, total)
	b = append(b, body...)
	return le.AppendUint32(b, total)
}

// ngStart is a pcapng section header and one raw IP interface "eth0".
func ngStart() []byte {
	shb := le.AppendUint32(nil, 0x1a2b3c4d)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0))
	idb := le.AppendUint16(nil, uint16(layers.LinkTypeRaw))
	idb = le.AppendUint16(idb, 0)
	idb = le.AppendUint32(idb, 0)
	idb = le.AppendUint16(idb, 2) // if_name
	idb = le.AppendUint16(idb, 4)
	idb = append(idb, "eth0"...)
	idb = le.AppendUint32(idb, 0) // end of options
	return append(ngBlock(0x0a0d0d0a, shb, 0), ngBlock(1, idb, 0)...)
}

// ngEPB is an enhanced packet block on interface 0 claiming caplen.
func ngEPB(caplen uint32, data []byte) []byte {
	b := le.AppendUint32(nil, 0)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint32(b, caplen)
	b = le.AppendUint32(b, caplen)
	return ngBlock(6, append(b, data...), 0)
}

// TestTraceCaptureBounds: a record claiming more than the snapshot
// length (or 262144 bytes) and a capture cut inside its last record are
// errors naming the file and the packet, exit 1, after the packets
// before them were traced; nothing is allocated from a claimed length.
func TestTraceCaptureBounds(t *testing.T) {
	dir := t.TempDir()
	ok := specBytes(t, "udp 10.0.0.2:5000 > 10.0.0.1:53")
	okNg := specBytes(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1")
	// whole captures written by pcapgo, to be cut
	var pc, ng bytes.Buffer
	pw := pcapgo.NewWriter(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	nw, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(ok), Length: len(ok)}
		pw.WritePacket(ci, ok)
		ci.CaptureLength, ci.Length = len(okNg), len(okNg)
		nw.WritePacket(ci, okNg)
	}
	nw.Flush()
	for _, c := range []struct {
		name, iif string
		data      []byte
		err       string
	}{
		{"huge.pcap", "eth0", append(append(pcapHeader(65535), pcapRecord(uint32(len(ok)), ok)...), pcapRecord(0xfffffff0, nil)...),
			"packet 2: capture length 4294967280 exceeds the bound of 65535 bytes"},
		{"huge-snaplen.pcap", "eth0", append(append(pcapHeader(0xffffffff), pcapRecord(uint32(len(ok)), ok)...), pcapRecord(0xfffffff0, make([]byte, 24))...),
			"packet 2: capture length 4294967280 exceeds the bound of 262144 bytes"},
		{"big.pcap", "eth0", append(append(pcapHeader(0), pcapRecord(uint32(len(ok)), ok)...), pcapRecord(262145, make([]byte, 64))...),
			"packet 2: capture length 262145 exceeds the bound of 262144 bytes"},
		{"cut.pcap", "eth0", pc.Bytes()[:pc.Len()-3], "packet 2: truncated capture"},
		{"cut-header.pcap", "eth0", pc.Bytes()[:24+16+len(ok)+7], "packet 2: truncated capture"},
		{"huge.pcapng", "", append(append(ngStart(), ngEPB(uint32(len(okNg)), okNg)...), ngEPB(0x7ffffff0, make([]byte, 8))...),
			"packet 2: capture length 2147483632 exceeds the bound of 262144 bytes"},
		{"huge-block.pcapng", "", append(append(ngStart(), ngEPB(uint32(len(okNg)), okNg)...), ngBlock(6, make([]byte, 20), 0xfffffff0)...),
			"packet 2: pcapng block of type 0x6 is 4294967280 bytes, more than the bound"},
		{"cut.pcapng", "", ng.Bytes()[:ng.Len()-5], "packet 2: truncated capture"},
	} {
		file := filepath.Join(dir, c.name)
		os.WriteFile(file, c.data, 0o644)
		args := []string{"--snapshot", "../../examples/router", "--pcap", file}
		if c.iif != "" {
			args = append(args, "--iif", c.iif)
		}
		out, errs, code := runTrace(t, args...)
		if code != 1 || !strings.Contains(out, "FATE: 1 ") || strings.Contains(out, "FATE: 2 ") ||
			!strings.HasPrefix(errs, "uswitch trace: "+file+": "+c.err) {
			t.Errorf("%s: exit %d, stderr %q, want %q\n%s", c.name, code, errs, c.err, out)
		}
	}
}

// TestTraceNoSnapshot: a missing snapshot folder is an error, not
// "dropped by route: no such device".
func TestTraceNoSnapshot(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	out, errs, code := runTrace(t, "--snapshot", none, "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	if code != 1 || out != "" || errs != "uswitch trace: snapshot "+none+": no such folder: missing ip-link.json, ip-addr.json, ip-route.json\n" {
		t.Errorf("exit %d, stderr %q\n%s", code, errs, out)
	}
}
