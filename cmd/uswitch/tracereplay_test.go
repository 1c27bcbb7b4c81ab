package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/capture"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// replayFixture is the replay snapshot and a capture of n packets.
func replayFixture(t *testing.T, n int) (snap, capFile string) {
	t.Helper()
	dir := t.TempDir()
	replaySnapshot(t, dir)
	capFile = filepath.Join(dir, "c.pcapng")
	writeReplayCapture(t, capFile, n, 7)
	return dir, capFile
}

// fateCounts counts the FATE lines of a trace's output by their text
// (an answer's as "answer ..."), and the packets each device got as
// the lines say (forwarded or sent out DEV; delivered: local).
func fateCounts(t *testing.T, out string) (fates, devs map[string]int, lines []string) {
	fates, devs = map[string]int{}, map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(l, "FATE: ")
		if !ok {
			continue
		}
		lines = append(lines, l)
		_, text, _ := strings.Cut(rest, " ")
		fates[text]++
		d := strings.TrimPrefix(text, "answer ")
		switch {
		case d == "delivered":
			devs["local"]++
		case strings.HasPrefix(d, "forwarded out ") || strings.HasPrefix(d, "sent out "):
			_, dev, _ := strings.Cut(d, " out ")
			devs[dev]++
		}
	}
	return fates, devs, lines
}

// statsSections parses --stats: section name -> text -> count (RULES:
// the rule's text -> "packets bytes").
func statsSections(t *testing.T, out string) map[string]map[string]string {
	secs := map[string]map[string]string{}
	var cur map[string]string
	name := ""
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" || l[0] != ' ' {
			name, _, _ = strings.Cut(l, ":")
			cur = map[string]string{}
			secs[name] = cur
			continue
		}
		f := strings.Fields(l)
		if name == "RULES" {
			// packets, bytes, then the rule
			i := strings.Index(l, "  -t ")
			if i < 0 {
				t.Fatalf("RULES line %q", l)
			}
			cur[l[i+2:]] = f[0] + " " + f[1]
			continue
		}
		_, text, _ := strings.Cut(strings.TrimLeft(l, " "), "  ")
		cur[text] = f[0]
	}
	return secs
}

func toStrings(m map[string]int) map[string]string {
	r := map[string]string{}
	for k, v := range m {
		r[k] = strconv.Itoa(v)
	}
	return r
}

func sameMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q: %q, want %q", what, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %q: %q, not wanted", what, k, v)
		}
	}
}

// TestTraceReplayStats: on a 30,000-packet capture through the 10,000
// rule snapshot, --stats counts every fate and device as the FATE
// lines do; the FATE lines are the same with every packet traced
// (a tracer per packet, no flow cache: drops name their rule from the
// tracer) as without (the flow cache on, the rule from the traversal);
// and the per-rule counters --stats prints are the same both ways.
func TestTraceReplayStats(t *testing.T) {
	snap, capFile := replayFixture(t, 30000)
	out, errs, code := runTrace(t, "--snapshot", snap, "--pcap", capFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	fates, devs, lines := fateCounts(t, out)
	if len(lines) < 30000 {
		t.Fatalf("%d FATE lines for 30000 packets", len(lines))
	}
	// the capture's mix: forwarded both ways, a policy drop, a rule's
	// drop, REJECT answers, local delivery
	for _, want := range []string{"forwarded out eth0", "forwarded out eth1", "dropped by filter:FORWARD:policy",
		"dropped by filter:FORWARD:rule:3", "dropped by filter:FORWARD:rule:4", "answer sent out eth0", "delivered"} {
		if fates[want] == 0 {
			t.Errorf("no %q among the fates %v", want, fates)
		}
	}
	sout, errs, code := runTrace(t, "--snapshot", snap, "--pcap", capFile, "--stats")
	if code != 0 {
		t.Fatalf("--stats: exit %d: %s", code, errs)
	}
	if strings.Contains(sout, "FATE: ") {
		t.Errorf("--stats printed FATE lines")
	}
	secs := statsSections(t, sout)
	if secs["STATS"] == nil || !strings.HasPrefix(sout, "STATS: 30000 packets\n") {
		t.Errorf("--stats header: %q", sout[:min(len(sout), 60)])
	}
	sameMap(t, "FATES", secs["FATES"], toStrings(fates))
	sameMap(t, "DEVICES", secs["DEVICES"], toStrings(devs))
	if len(secs["RULES"]) < 10 {
		t.Errorf("RULES: %v", secs["RULES"])
	}

	// every packet traced: the same fates, line by line
	tout, errs, code := runTrace(t, "--snapshot", snap, "--pcap", capFile, "--trace-all")
	if code != 0 {
		t.Fatalf("--trace-all: exit %d: %s", code, errs)
	}
	_, _, tlines := fateCounts(t, tout)
	if len(tlines) != len(lines) {
		t.Fatalf("%d FATE lines traced, %d untraced", len(tlines), len(lines))
	}
	bad := 0
	for i := range lines {
		if lines[i] != tlines[i] && bad < 10 {
			bad++
			t.Errorf("untraced %q, traced %q", lines[i], tlines[i])
		}
	}
	tsout, errs, code := runTrace(t, "--snapshot", snap, "--pcap", capFile, "--stats", "--trace-all")
	if code != 0 {
		t.Fatalf("--stats --trace-all: exit %d: %s", code, errs)
	}
	if tsout != sout {
		t.Errorf("--stats differs with every packet traced:\n%s\nuntraced:\n%s", tsout, sout)
	}
	for _, want := range []string{"-t filter -A FORWARD -p udp -m udp --dport 9998 -j DROP", "-t filter -P FORWARD DROP",
		"-t filter -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"} {
		if _, ok := secs["RULES"][want]; !ok {
			t.Errorf("RULES lacks %q:\n%s", want, sout)
		}
	}
}

// sentPacket is one packet uswitch sent, on its device.
type sentPacket struct {
	dev  string
	data []byte
}

// referenceSent replays capFile through a fresh engine of snap without
// the flow cache, packet by packet as the engine's own API gives them
// (not through traceCmd): the packets sent, with their devices, in
// order, answers after their packet.
func referenceSent(t *testing.T, snap, capFile string) []sentPacket {
	s, err := host.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.EngineConfig()
	cfg.NoFlowCache = true
	e := datapath.New(cfg, s.ConntrackConfig(), 1)
	f, err := os.Open(capFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var sent []sentPacket
	add := func(fa *datapath.Fate, p *packet.Packet) {
		switch fa.Kind {
		case datapath.Delivered:
			sent = append(sent, sentPacket{"local", bytes.Clone(p.Data)})
		case datapath.Forwarded, datapath.Sent:
			if len(fa.Frags) > 0 || fa.Datagram != nil || len(fa.Frames) > 0 {
				t.Fatalf("the capture has no fragments and no bridge: %v", fa)
			}
			sent = append(sent, sentPacket{fa.OutIf, bytes.Clone(p.Data)})
		}
	}
	for {
		cp, err := r.Next()
		if err == io.EOF {
			return sent
		}
		if err != nil {
			t.Fatal(err)
		}
		p := &packet.Packet{Data: bytes.Clone(cp.Data), Meta: packet.Meta{InIf: cp.Iface}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		fa := e.Receive(p, cp.Time, nil)
		add(&fa, p)
		for _, a := range fa.Answers {
			add(&a.Fate, a.Pkt)
		}
	}
}

// TestTraceWritePcap: --write-pcap's capture, read back with pcapgo,
// holds one interface per device the FATE lines name (local for
// delivery) with as many packets as the lines say, and, byte for byte
// and in order, the packets an engine without the flow cache sends for
// the same capture; tcpdump reads it too.
func TestTraceWritePcap(t *testing.T) {
	snap, capFile := replayFixture(t, 20000)
	outFile := filepath.Join(t.TempDir(), "out.pcapng")
	out, errs, code := runTrace(t, "--snapshot", snap, "--pcap", capFile, "--write-pcap", outFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, devs, _ := fateCounts(t, out)
	f, err := os.Open(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got []sentPacket
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ifc, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sentPacket{ifc.Name, bytes.Clone(data)})
	}
	perDev := map[string]int{}
	for _, s := range got {
		perDev[s.dev]++
	}
	sameMap(t, "packets per interface", toStrings(perDev), toStrings(devs))
	if r.NInterfaces() != len(devs) {
		t.Errorf("%d interfaces for %d devices", r.NInterfaces(), len(devs))
	}
	want := referenceSent(t, snap, capFile)
	if len(got) != len(want) {
		t.Fatalf("%d packets written, the engine sent %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		if (got[i].dev != want[i].dev || !bytes.Equal(got[i].data, want[i].data)) && bad < 5 {
			bad++
			t.Errorf("packet %d: written on %s % x\nsent on %s % x", i+1, got[i].dev, got[i].data, want[i].dev, want[i].data)
		}
	}
	testtools.Need(t, "tcpdump")
	cmd := exec.Command("tcpdump", "-r", outFile, "-nn", "-c", "5")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	tout, err := cmd.Output()
	if err != nil || strings.Count(string(tout), "\n") != 5 {
		t.Errorf("tcpdump -r: %v: %s\n%s", err, stderr.String(), tout)
	}
}

// TestTraceFateLineAllocs: printing a FATE line (a forwarded packet, a
// rule's drop) allocates nothing.
func TestTraceFateLineAllocs(t *testing.T) {
	fo := &fateOut{out: bufio.NewWriter(io.Discard)}
	fates := []datapath.Fate{
		{Kind: datapath.Forwarded, OutIf: "eth1"},
		{Kind: datapath.Dropped, Reason: datapath.DropTable, Arg: "FORWARD", Rule: 3},
	}
	var id, text []byte
	for _, f := range fates {
		if n := testing.AllocsPerRun(100, func() {
			id = appendID(id[:0], 123456, 0)
			text = f.AppendText(text[:0])
			fo.fate(id, text)
		}); n != 0 {
			t.Errorf("%v: %v allocations per line", f, n)
		}
	}
	// --stats: counting a fate and a device seen before allocates
	// nothing either, in the short list or in the map beyond it
	fo.stats = newReplayStats(nil)
	for i := range 20 {
		fo.fate(nil, []byte(fmt.Sprintf("dropped by filter:X:rule:%d", i)))
		fo.stats.device(fmt.Sprint("eth", i))
	}
	for _, text := range []string{"dropped by filter:X:rule:3", "dropped by filter:X:rule:19"} {
		b := []byte(text)
		if n := testing.AllocsPerRun(100, func() {
			fo.fate(nil, b)
			fo.stats.device("eth19")
		}); n != 0 {
			t.Errorf("--stats %q: %v allocations", text, n)
		}
	}
	var sb strings.Builder
	fo.stats.write(&sb)
	if !strings.Contains(sb.String(), "         102  dropped by filter:X:rule:19\n") || !strings.Contains(sb.String(), "         203  eth19\n") {
		t.Errorf("--stats counts:\n%s", sb.String())
	}
}

// TestTraceStatsFaults: with --stats the faults' FAULT lines are
// counted, not printed, as many as the replay without --stats prints.
func TestTraceStatsFaults(t *testing.T) {
	snap, capFile := replayFixture(t, 3000)
	args := []string{"--snapshot", snap, "--pcap", capFile, "--faults", "../../examples/faults/router.toml"}
	out, errs, code := runTrace(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	faults := strings.Count(out, "\nFAULT: ")
	sout, errs, code := runTrace(t, append(args, "--stats")...)
	if code != 0 {
		t.Fatalf("--stats: exit %d: %s", code, errs)
	}
	if faults == 0 || strings.Contains(sout, "\nFAULT: ") || !strings.Contains(sout, fmt.Sprintf("\n%12d  FAULT\n", faults)) {
		t.Errorf("%d FAULT lines; --stats:\n%s", faults, sout[:strings.Index(sout, "RULES:")])
	}
	fates, _, _ := fateCounts(t, out)
	sameMap(t, "FATES", statsSections(t, sout)["FATES"], toStrings(fates))
}

// endless is a capture without end: each Next is one more 40-byte
// packet.
type endless struct{ n atomic.Int64 }

func (e *endless) Next() (capture.Packet, error) {
	p, _, err := e.NextAppend(nil)
	return p, err
}

func (e *endless) NextAppend(dst []byte) (capture.Packet, []byte, error) {
	e.n.Add(1)
	dst = append(dst, make([]byte, 40)...)
	return capture.Packet{Data: dst[len(dst)-40:], Iface: "eth0"}, dst, nil
}

// TestReadAheadBounded: the reading goroutine stays a bounded number of
// records ahead of the consumer (a capture is streamed, never read
// whole), and stop ends it.
func TestReadAheadBounded(t *testing.T) {
	src := &endless{}
	full, free, stop := readAhead(src)
	bt := <-full
	if len(bt.recs) != readAheadRecs || bt.err != nil {
		t.Fatalf("first batch: %d records, %v", len(bt.recs), bt.err)
	}
	free <- bt
	time.Sleep(50 * time.Millisecond) // let it run as far as it may
	limit := int64((readAheadBatches + 3) * readAheadRecs)
	if n := src.n.Load(); n > limit {
		t.Errorf("%d records read ahead of a consumer that took one batch, want at most %d", n, limit)
	}
	stop()
	n := src.n.Load()
	time.Sleep(20 * time.Millisecond)
	if m := src.n.Load(); m != n {
		t.Errorf("read on after stop: %d, then %d", n, m)
	}
}
