package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// logLab forwards the client's pings and UDP to the wan host, logging
// them (LOG in FORWARD, a TRACE for ICMP) and sending them to NFLOG
// groups 7 and 8.
const logLab = `
name = "LAB"
[uswitch]
workers = 2
rules = """
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lc -p icmp -j TRACE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -j NFLOG --nflog-group 7 --nflog-prefix "lab-nflog"
-A FORWARD -p udp -j NFLOG --nflog-group 8 --nflog-size 28
-A FORWARD -p icmp -j LOG --log-prefix "lab-icmp "
-A FORWARD -p udp -j LOG --log-prefix "lab-udp "
-A FORWARD -i lc -o lw -j ACCEPT
-A FORWARD -i lw -o lc -j ACCEPT
COMMIT
"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "lc"
netns = "LAB-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "lw"
netns = "LAB-wan"
addresses = ["203.0.113.1/24"]
[[namespace]]
name = "LAB-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "LAB-wan"
addresses = ["203.0.113.2/24"]
routes = ["default via 203.0.113.1"]
server = [{ kind = "udp-echo", port = 7 }]
`

// TestLiveLogAndNFLog runs a lab with LOG, TRACE and NFLOG rules and
// sends a ping and a UDP exchange from its client namespace: `uswitch
// log -f` streams the lines (the ring first), `uswitch log` prints the
// ring, both with dmesg's timestamps, and the lines are those `uswitch
// trace --format log` prints for the packets the lab read (captured
// with `uswitch pcap` and replayed through the lab's rules and routes);
// `uswitch nflog -g 7 -w FILE` writes a pcap tcpdump reads as NFLOG,
// whose records carry the prefix, and -g 8 the cut UDP payloads.
func TestLiveLogAndNFLog(t *testing.T) {
	labtest.TUN(t)
	testtools.Need(t, "tcpdump")
	p := labtest.Name("ulg")
	l := upLab(t, "log.toml", strings.ReplaceAll(logLab, "LAB", p))
	sock := filepath.Join(t.TempDir(), "lab.sock")
	if err := l.ListenControl(sock); err != nil {
		t.Fatal(err)
	}
	S := []string{"--socket", sock}
	dir := t.TempDir()

	// the streams: log -f, nflog groups 7 and 8, captures of both devices
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan int, 1)
	go func() {
		followed <- streamCall(ctx, sock, control.Request{Cmd: "log", Follow: true}, pw, io.Discard)
		pw.Close()
	}()
	type result struct {
		code int
		errs string
	}
	start := func(f func([]string, io.Reader, io.Writer, io.Writer) int, args ...string) chan result {
		ch := make(chan result, 1)
		go func() {
			_, errs, code := cli(f, "", append(args, S...)...)
			ch <- result{code, errs}
		}()
		return ch
	}
	n7, n8 := filepath.Join(dir, "g7.pcap"), filepath.Join(dir, "g8.pcap")
	g7 := start(nflogCmd, "-g", "7", "-c", "4", "-w", n7)
	g8 := start(nflogCmd, "-g", "8", "-c", "2", "-w", n8)
	capC := start(pcapCmd, "-i", "lc", "-c", "4", "-w", filepath.Join(dir, "lc.pcap"))
	capW := start(pcapCmd, "-i", "lw", "-c", "4", "-w", filepath.Join(dir, "lw.pcap"))
	kl := l.KernelLog()
	for deadline := time.Now().Add(5 * time.Second); !(kl.NFLogListening(7) && kl.NFLogListening(8) && kl.Listeners() == 1 && l.Capturing()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the streams did not start")
		}
	}
	// wait for both captures: Capturing is true with one
	time.Sleep(200 * time.Millisecond)

	if _, err := l.Ping(p+"-c", netip.MustParseAddr("203.0.113.2"), 3*time.Second); err != nil {
		t.Fatalf("ping through the lab: %v", err)
	}
	if got, err := l.UDPExchange(p+"-c", "203.0.113.2:7", []byte("hello nflog, a datagram of some length"), 3*time.Second); err != nil || !strings.Contains(string(got), "hello nflog") {
		t.Fatalf("UDP echo through the lab: %q %v", got, err)
	}
	for name, ch := range map[string]chan result{"nflog -g 7": g7, "nflog -g 8": g8, "pcap -i lc": capC, "pcap -i lw": capW} {
		select {
		case r := <-ch:
			if r.code != 0 || r.errs != "" {
				t.Fatalf("%s: exit %d %s", name, r.code, r.errs)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not end", name)
		}
	}

	// log -f: the lines so far, with dmesg's timestamp
	stamp := regexp.MustCompile(`^\[ {0,4}\d+\.\d{6}\] `)
	sc := bufio.NewScanner(pr)
	var followedLines []string
	for len(followedLines) < 4 && sc.Scan() {
		ln := sc.Text()
		if !stamp.MatchString(ln) {
			t.Errorf("log -f line without a dmesg timestamp: %q", ln)
		}
		followedLines = append(followedLines, stamp.ReplaceAllString(ln, ""))
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-followed; code != 0 {
		t.Errorf("log -f: exit %d", code)
	}

	// log: the ring, with and without timestamps
	out, errs, code := cli(logCmd, "", S...)
	if code != 0 || errs != "" {
		t.Fatalf("log: exit %d %s", code, errs)
	}
	notime, _, _ := cli(logCmd, "", append([]string{"-t"}, S...)...)
	var ring []string
	for _, ln := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !stamp.MatchString(ln) {
			t.Errorf("log line without a dmesg timestamp: %q", ln)
		}
		ring = append(ring, stamp.ReplaceAllString(ln, ""))
	}
	if strings.Join(ring, "\n")+"\n" != notime {
		t.Errorf("log -t\n%s\nis not log without its timestamps\n%s", notime, out)
	}
	if len(followedLines) < 4 || strings.Join(followedLines, "\n") != strings.Join(ring[:len(followedLines)], "\n") {
		t.Errorf("log -f printed\n%s\nthe ring has\n%s", strings.Join(followedLines, "\n"), strings.Join(ring, "\n"))
	}

	// the same lines from trace --format log's engine on the packets the
	// lab read, in their order
	read := readCaptured(t, filepath.Join(dir, "lc.pcap"), "lc", "10.10.1.2")
	read = append(read, readCaptured(t, filepath.Join(dir, "lw.pcap"), "lw", "203.0.113.2")...)
	sort.SliceStable(read, func(i, j int) bool { return read[i].t.Before(read[j].t) })
	if len(read) != 4 {
		t.Fatalf("%d packets read by the lab, want 4", len(read))
	}
	ref := datapath.New(l.Engine().Config(), conntrack.DefaultConfig(), 1)
	var want []string
	for i, r := range read {
		pk := &packet.Packet{Data: r.data}
		if err := pk.Decode(); err != nil {
			t.Fatal(err)
		}
		pk.InIf = r.in
		tr := &datapath.Tracer{Format: datapath.FormatLog}
		ref.Receive(pk, int64(i+1)*1e9, tr)
		want = append(want, tr.Lines...)
	}
	if strings.Join(ring, "\n") != strings.Join(want, "\n") {
		t.Errorf("uswitch log:\n%s\nuswitch trace --format log on the same packets:\n%s", strings.Join(ring, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []string{"TRACE: raw:PREROUTING:policy:2 IN=lc OUT= MAC= SRC=10.10.1.2 DST=203.0.113.2 ",
		"lab-icmp IN=lc OUT=lw MAC= SRC=10.10.1.2 DST=203.0.113.2 ", "lab-icmp IN=lw OUT=lc MAC= SRC=203.0.113.2 DST=10.10.1.2 ",
		"lab-udp IN=lc OUT=lw MAC= SRC=10.10.1.2 DST=203.0.113.2 "} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}

	t.Logf("uswitch log:\n%s", out)

	// nflog: tcpdump reads the files as NFLOG and shows the packets; the
	// records carry the prefix (which this tcpdump prints only in the
	// hex of -XX) and the cut
	cmd := exec.Command("tcpdump", "-r", n7, "-nn", "-v", "-XX")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dump, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", n7, err, stderr.String())
	}
	t.Logf("tcpdump -r %s -nn -v -XX:\n%s", filepath.Base(n7), dump)
	if !strings.Contains(stderr.String(), "link-type NFLOG") {
		t.Errorf("tcpdump: %q, want link-type NFLOG", stderr.String())
	}
	for _, w := range []string{"10.10.1.2 > 203.0.113.2: ICMP echo request", "203.0.113.2 > 10.10.1.2: ICMP echo reply",
		"10.10.1.2.", "> 203.0.113.2.7: UDP", "lab-nflog"} {
		if !strings.Contains(string(dump), w) {
			t.Errorf("tcpdump -r -v -XX of group 7 lacks %q:\n%s", w, dump)
		}
	}
	for _, c := range []struct {
		file   string
		n      int
		prefix string
		cut    bool
	}{{n7, 4, "lab-nflog", false}, {n8, 2, "", true}} {
		recs := readNFLogFile(t, c.file)
		if len(recs) != c.n {
			t.Fatalf("%s: %d records, want %d", c.file, len(recs), c.n)
		}
		for i, rec := range recs {
			r, err := trace.DecodeNFLog(rec, binary.LittleEndian)
			if err != nil {
				t.Fatalf("%s record %d: %v", c.file, i+1, err)
			}
			in := l.Engine().Config().FIB.Ifindex("lc")
			if r.Family != trace.NFProtoIPv4 || r.Hook != 2 || !r.HasPrefix || r.Prefix != c.prefix || r.InDev == 0 || r.OutDev == 0 ||
				(r.InDev != uint32(in) && r.OutDev != uint32(in)) || r.HWType != trace.ARPHRDNone || !r.HasTime || (c.cut != (len(r.Payload) == 28)) {
				t.Errorf("%s record %d: %+v", c.file, i+1, r)
			}
		}
	}
}

type captured struct {
	t    time.Time
	in   string
	data []byte
}

// readCaptured is the packets of a device's capture that the lab read
// from it: those from src.
func readCaptured(t *testing.T, file, dev, src string) []captured {
	t.Helper()
	r := openPcap(t, file)
	a := netip.MustParseAddr(src).As4()
	var out []captured
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		if len(data) >= 20 && string(data[12:16]) == string(a[:]) {
			out = append(out, captured{ci.Timestamp, dev, data})
		}
	}
}

func readNFLogFile(t *testing.T, file string) [][]byte {
	t.Helper()
	r := openPcap(t, file)
	if r.LinkType() != trace.LinkTypeNFLOG {
		t.Fatalf("%s: link type %d, want NFLOG", file, r.LinkType())
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, data)
	}
}
