package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/lab"
)

const controlLab = `
name = "LAB"
[uswitch]
workers = 2
seed = 3
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o uw -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i uc -o uw -p tcp -m tcp --dport 7 -j ACCEPT
-A FORWARD -i uc -o uw -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "uc"
netns = "LAB-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "uw"
netns = "LAB-wan"
addresses = ["203.0.113.1/24"]
[[namespace]]
name = "LAB-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "LAB-wan"
addresses = ["203.0.113.2/24"]
server = [{ kind = "tcp-echo", port = 7 }, { kind = "http", port = 8080 }]
`

// blockNew refuses new TCP flows from the client with a reset; the
// established ones go on.
const blockNew = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i uc -p tcp -j REJECT --reject-with tcp-reset
COMMIT
`

func cli(f func([]string, io.Reader, io.Writer, io.Writer) int, stdin string, args ...string) (string, string, int) {
	var o, e bytes.Buffer
	code := f(args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

// ruleCounters finds the [pkts:bytes] of the rule line ending in rule.
func ruleCounters(t *testing.T, save, rule string) (uint64, uint64) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\[(\d+):(\d+)\] ` + regexp.QuoteMeta(rule) + `$`).FindStringSubmatch(save)
	if m == nil {
		t.Fatalf("no %q in\n%s", rule, save)
	}
	p, _ := strconv.ParseUint(m[1], 10, 64)
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return p, b
}

// TestLiveControl runs a real lab and drives it with the commands a user
// types: a rule-set swap in the middle of a TCP transfer that blocks new
// flows but not it, conntrack -L, counters, a refused rule set, metrics,
// and the socket's permissions.
func TestLiveControl(t *testing.T) {
	labtest.TUN(t)
	p := labtest.Name("uctl")
	l := upLab(t, "control.toml", strings.ReplaceAll(controlLab, "LAB", p))
	if err := l.ListenControl(""); err != nil {
		t.Fatal(err)
	}
	sock := l.ControlPath()
	if sock != filepath.Join(control.RuntimeDir, p+".sock") {
		t.Errorf("socket at %s", sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v, want a socket with mode 0600", sock, fi.Mode(), err)
	}
	maddr, err := l.ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, wan := p+"-c", p+"-wan"
	const to = 3 * time.Second
	S := []string{"--socket", sock}

	// a long transfer through the echo server
	conn, err := l.Dial(client, "tcp4", "203.0.113.2:7", to)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReaderSize(conn, 64<<10)
	greeting, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, wan+" 203.0.113.1:") {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
	if r, err := l.HTTPGet(client, "http://203.0.113.2:8080/", to); err != nil || r.Status != 200 {
		t.Fatalf("GET before the swap: %+v %v", r, err)
	}

	out, errs, code := cli(conntrackCmd, "", append([]string{"-L"}, S...)...)
	lport := conn.LocalAddr().(*net.TCPAddr).Port
	wantCT := fmt.Sprintf(" ESTABLISHED src=10.10.1.2 dst=203.0.113.2 sport=%d dport=7 src=203.0.113.2 dst=203.0.113.1 sport=7 dport=", lport)
	if code != 0 || !strings.Contains(out, "tcp      6 431999"+wantCT) || !strings.Contains(errs, "flow entries have been shown.\n") {
		t.Errorf("conntrack -L: exit %d\n%s%s\nwant a line starting %q", code, out, errs, wantCT)
	}

	out, errs, code = cli(iptablesSave, "", append([]string{"-c"}, S...)...)
	if code != 0 {
		t.Fatalf("iptables-save -c: exit %d: %s", code, errs)
	}
	if n, b := ruleCounters(t, out, "-A FORWARD -i uc -o uw -p tcp -m tcp --dport 7 -j ACCEPT"); n != 1 || b < 40 {
		t.Errorf("the echo connection's SYN: [%d:%d], want 1 packet", n, b)
	}
	if n, _ := ruleCounters(t, out, "-A FORWARD -i uc -o uw -p tcp -m tcp --dport 8080 -j ACCEPT"); n != 1 {
		t.Errorf("the GET's SYN: %d packets", n)
	}
	if n, _ := ruleCounters(t, out, "-A POSTROUTING -o uw -j MASQUERADE"); n != 2 {
		t.Errorf("MASQUERADE saw %d packets, want 2 (the first of each flow)", n)
	}

	// 8 MB echoed; the rule set is swapped after the first 1 MB comes back
	const size = 8 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*13 + i>>9)
	}
	go conn.Write(data)
	h := sha256.New()
	swapped := false
	var got int
	buf := make([]byte, 64<<10)
	for got < size {
		n, err := br.Read(buf[:min(len(buf), size-got)])
		h.Write(buf[:n])
		got += n
		if err != nil {
			t.Fatalf("transfer broke after %d of %d bytes (swapped: %v): %v", got, size, swapped, err)
		}
		if !swapped && got >= 1<<20 {
			f := filepath.Join(t.TempDir(), "block-new.rules")
			os.WriteFile(f, []byte(blockNew), 0o644)
			if out, errs, code := cli(iptablesRestore, "", append(S, f)...); code != 0 || out != "" || errs != "" {
				t.Fatalf("iptables-restore: exit %d %q %q", code, out, errs)
			}
			swapped = true
			// a new flow is refused now, in the middle of the transfer
			if _, err := l.HTTPGet(client, "http://203.0.113.2:8080/", to); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("GET after the swap: %v, want connection refused", err)
			}
		}
	}
	if !bytes.Equal(h.Sum(nil), func() []byte { s := sha256.Sum256(data); return s[:] }()) {
		t.Errorf("the %d bytes echoed across the swap differ from those sent", size)
	}

	out, _, code = cli(iptablesSave, "", append([]string{"-c", "-t", "filter"}, S...)...)
	if code != 0 || strings.Contains(out, "--dport 8080") {
		t.Fatalf("iptables-save after the swap: exit %d\n%s", code, out)
	}
	if n, _ := ruleCounters(t, out, "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"); n < 100 {
		t.Errorf("the new set's ESTABLISHED rule counted %d packets of the transfer", n)
	}
	if n, _ := ruleCounters(t, out, "-A FORWARD -i uc -p tcp -j REJECT --reject-with tcp-reset"); n != 1 {
		t.Errorf("REJECT counted %d packets, want the GET's SYN", n)
	}
	out, _, _ = cli(iptablesSave, "", append([]string{"-c", "-t", "nat"}, S...)...)
	if n, _ := ruleCounters(t, out, "-A POSTROUTING -o uw -j MASQUERADE"); n != 2 {
		t.Errorf("nat, not named by the restore, should keep its counters: MASQUERADE at %d", n)
	}

	// a bad rule set: iptables-restore's message and exit code, the old
	// set keeps running
	before, _, _ := cli(iptablesSave, "", S...)
	_, errs, code = cli(iptablesRestore, "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n", S...)
	if code != 2 || !strings.Contains(errs, "iptables-restore v1.8.9 (nf_tables): invalid port/service `99999' specified\nError occurred at line: 3\n") {
		t.Errorf("bad rule set: exit %d, stderr %q", code, errs)
	}
	if after, _, _ := cli(iptablesSave, "", S...); after != before {
		t.Errorf("the refused rule set changed the running one:\n%s\nwas\n%s", after, before)
	}
	if _, err := l.Dial(client, "tcp4", "203.0.113.2:7", to); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("new flow after the refused restore: %v, want refused (the old rules)", err)
	}
	conn.Write([]byte("still here\n"))
	if line, err := br.ReadString('\n'); err != nil || line != "still here\n" {
		t.Errorf("the established connection after it all: %q %v", line, err)
	}
	// (its timeout may be 300 s now: unacknowledged data, as the kernel)
	out, _, _ = cli(conntrackCmd, "", append([]string{"-L"}, S...)...)
	if !strings.Contains(out, wantCT) {
		t.Errorf("the transfer's conntrack entry is gone:\n%s", out)
	}

	// metrics, over HTTP and the socket
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"uswitch_conntrack_entries ", `uswitch_drops_total{reason="table",table="filter",hook="FORWARD"} `, `uswitch_packets_total{fate="forwarded"} `, "uswitch_worker_queue_depth{worker=\"1\"} "} {
		if !strings.Contains(string(body), w) {
			t.Errorf("metrics lack %q:\n%s", w, body)
		}
	}
	if out, _, code := cli(metricsCmd, "", S...); code != 0 || !strings.Contains(out, "uswitch_packets_received_total ") {
		t.Errorf("uswitch metrics: exit %d\n%s", code, out)
	}

	// live trace: -j TRACE added with --noflush, a ping traced through
	// raw PREROUTING to the FORWARD policy that drops it
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	traced := make(chan int, 1)
	go func() { traced <- traceStream(ctx, sock, "", pw, io.Discard); pw.Close() }()
	lines := bufio.NewScanner(pr)
	waitSubscribed := time.Now().Add(5 * time.Second)
	for !tracing(l) {
		if time.Now().After(waitSubscribed) {
			t.Fatal("trace stream did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, errs, code := cli(iptablesRestore, "*raw\n-A PREROUTING -p icmp -j TRACE\nCOMMIT\n", append([]string{"--noflush"}, S...)...); code != 0 {
		t.Fatalf("adding TRACE: %d %s", code, errs)
	}
	if _, err := l.Ping(client, netip.MustParseAddr("203.0.113.2"), 300*time.Millisecond); err == nil {
		t.Errorf("ping crossed a FORWARD policy of DROP")
	}
	var seen []string
	wantTrace := []string{" raw:PREROUTING:rule:0x", "-4 -t raw -A PREROUTING -p icmp -j TRACE", "PACKET: 2 ", "SRC=10.10.1.2 DST=203.0.113.2", " filter:FORWARD:policy:DROP "}
	done := func() bool {
		all := strings.Join(seen, "\n")
		for _, w := range wantTrace {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return true
	}
	timer := time.AfterFunc(5*time.Second, cancel)
	for !done() && lines.Scan() {
		seen = append(seen, lines.Text())
	}
	timer.Stop()
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-traced; code != 0 || !done() {
		t.Errorf("monitor --trace: exit %d, lines:\n%s\nwant all of %q", code, strings.Join(seen, "\n"), wantTrace)
	}

	// pcap of the client's device: a ping of uswitch itself, in and out
	pcapFile := filepath.Join(t.TempDir(), "uc.pcap")
	captured := make(chan int, 1)
	go func() {
		_, errs, code := cli(pcapCmd, "", append([]string{"-i", "uc", "-c", "2", "-w", pcapFile}, S...)...)
		if errs != "" {
			t.Errorf("pcap: %s", errs)
		}
		captured <- code
	}()
	for deadline := time.Now().Add(5 * time.Second); !l.Capturing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("capture did not start")
		}
	}
	if _, err := l.Ping(client, netip.MustParseAddr("10.10.1.1"), to); err != nil {
		t.Errorf("ping uswitch: %v", err)
	}
	select {
	case code := <-captured:
		if code != 0 {
			t.Errorf("pcap: exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pcap -c 2 did not end")
	}
	checkPcap(t, pcapFile)
	if _, errs, code := cli(pcapCmd, "", append([]string{"-i", "nope"}, S...)...); code != 1 || !strings.Contains(errs, `no device "nope"`) {
		t.Errorf("pcap -i nope: exit %d %q", code, errs)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, errs, code := cli(iptablesSave, "", S...); code != 1 || !strings.Contains(errs, "no running uswitch instance") {
		t.Errorf("iptables-save without an instance: exit %d %q", code, errs)
	}
}

// upLab brings up the lab of a config text and removes it at cleanup.
func upLab(t *testing.T, name, text string) *lab.Lab {
	t.Helper()
	cfg, err := lab.Parse(name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return labtest.Up(t, func() (*lab.Lab, error) { return lab.Up(cfg, nil) }, func() error {
		_, _, err := lab.Down(cfg)
		return err
	})
}

// tracing reports whether a trace listener is attached (the stream
// request has reached the lab).
func tracing(l *lab.Lab) bool { return l.Tracing() }

// openPcap opens a pcap file for reading; it is closed at cleanup.
func openPcap(t *testing.T, file string) *pcapgo.Reader {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkPcap reads the capture: a raw-IP pcap of an echo request from the
// client to 10.10.1.1 and its reply.
func checkPcap(t *testing.T, file string) {
	t.Helper()
	r := openPcap(t, file)
	if r.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v", r.LinkType())
	}
	var got []string
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		ic, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip == nil || ic == nil {
			got = append(got, "?")
			continue
		}
		got = append(got, fmt.Sprintf("%s>%s %d", ip.SrcIP, ip.DstIP, ic.TypeCode.Type()))
	}
	want := []string{"10.10.1.2>10.10.1.1 8", "10.10.1.1>10.10.1.2 0"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pcap holds %q, want %q", got, want)
	}
}
