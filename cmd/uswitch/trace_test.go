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

	"github.com/uswitch-lab/uswitch/datapath/packet"
)

func specBytes(t *testing.T, s string) []byte {
	sp, _, err := packet.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return packet.Build(sp)
}

func runTrace(t *testing.T, args ...string) (string, string, int) {
	var o, e bytes.Buffer
	code := traceCmd(args, strings.NewReader(""), &o, &e)
	return o.String(), e.String(), code
}

// TestTraceExample runs the README's example against examples/router.
func TestTraceExample(t *testing.T) {
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"PACKET: 2 ", " TRACE: 2 ", "raw:PREROUTING:rule:0x3:CONTINUE  -4 -t raw -A PREROUTING -p tcp -j TRACE",
		"nat:PREROUTING:rule:", "DNAT --to-destination 192.168.1.2:8080", "DST=192.168.1.2", "FATE: 1 forwarded out eth1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTracePcapng replays a pcapng whose interface names give the
// ingress, and a plain pcap with --iif; the flow's reply comes back NATed.
func TestTracePcapng(t *testing.T) {
	dir := t.TempDir()
	ng := filepath.Join(dir, "c.pcapng")
	f, _ := os.Create(ng)
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	eth1, _ := w.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeRaw})
	ts := time.Unix(1700000000, 0)
	for i, p := range []struct {
		spec string
		ifc  int
	}{
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1", 0},
		{"tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7", eth1},
	} {
		b := specBytes(t, p.spec)
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(b), Length: len(b), InterfaceIndex: p.ifc}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	f.Close()
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", ng)
	if code != 0 || !strings.Contains(out, "FATE: 1 forwarded out eth1\n") || !strings.Contains(out, "FATE: 2 forwarded out eth0\n") {
		t.Fatalf("exit %d %s\n%s", code, errs, out)
	}
	// plain pcap: --iif is required
	pc := filepath.Join(dir, "c.pcap")
	f, _ = os.Create(pc)
	pw := pcapgo.NewWriter(f)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	b := specBytes(t, "udp 10.0.0.2:5000 > 10.0.0.1:53")
	pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b)
	f.Close()
	if _, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", pc); code == 0 || !strings.Contains(errs, "--iif") {
		t.Fatalf("without --iif: exit %d %q", code, errs)
	}
	out, errs, code = runTrace(t, "--snapshot", "../../examples/router", "--pcap", pc, "--iif", "eth0")
	if code != 0 || !strings.Contains(out, "FATE: 1 delivered\nFATE: 1.1 answer sent out eth0\n") {
		t.Fatalf("exit %d %s\n%s", code, errs, out)
	}
}
