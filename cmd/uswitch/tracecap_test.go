package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/uswitch-lab/uswitch/internal/capture/capturetest"
)

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
		{"huge.pcap", "eth0", append(append(capturetest.PcapHeader(65535), capturetest.PcapRecord(uint32(len(ok)), ok)...), capturetest.PcapRecord(0xfffffff0, nil)...),
			"packet 2: capture length 4294967280 exceeds the bound of 65535 bytes"},
		{"huge-snaplen.pcap", "eth0", append(append(capturetest.PcapHeader(0xffffffff), capturetest.PcapRecord(uint32(len(ok)), ok)...), capturetest.PcapRecord(0xfffffff0, make([]byte, 24))...),
			"packet 2: capture length 4294967280 exceeds the bound of 262144 bytes"},
		{"big.pcap", "eth0", append(append(capturetest.PcapHeader(0), capturetest.PcapRecord(uint32(len(ok)), ok)...), capturetest.PcapRecord(262145, make([]byte, 64))...),
			"packet 2: capture length 262145 exceeds the bound of 262144 bytes"},
		{"cut.pcap", "eth0", pc.Bytes()[:pc.Len()-3], "packet 2: truncated capture"},
		{"cut-header.pcap", "eth0", pc.Bytes()[:24+16+len(ok)+7], "packet 2: truncated capture"},
		{"huge.pcapng", "", append(append(capturetest.NgStart(), capturetest.NgEPB(uint32(len(okNg)), okNg)...), capturetest.NgEPB(0x7ffffff0, make([]byte, 8))...),
			"packet 2: capture length 2147483632 exceeds the bound of 262144 bytes"},
		{"huge-block.pcapng", "", append(append(capturetest.NgStart(), capturetest.NgEPB(uint32(len(okNg)), okNg)...), capturetest.NgBlock(6, make([]byte, 20), 0xfffffff0)...),
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
