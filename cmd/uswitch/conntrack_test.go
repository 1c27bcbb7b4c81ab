package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/internal/labtest"
)

const conntrackLab = `
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
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp -j CONNMARK --set-mark 0x2a
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
server = [{ kind = "tcp-echo", port = 7 }, { kind = "udp-echo", port = 7 }]
`

// TestLiveConntrack runs `uswitch conntrack` against a running lab with
// traffic: -E streaming the events of a TCP, a UDP and an ICMP flow, -L
// with filters and formats, -G, -C, -S, -D and -F, and a refused
// command line.
func TestLiveConntrack(t *testing.T) {
	labtest.TUN(t)
	p := labtest.Name("uct")
	l := upLab(t, "conntrack.toml", strings.ReplaceAll(conntrackLab, "LAB", p))
	if err := l.ListenControl(""); err != nil {
		t.Fatal(err)
	}
	sock := l.ControlPath()
	S := []string{"--socket", sock}
	Lab := []string{"--lab", p}
	client := p + "-c"
	const to = 3 * time.Second

	// conntrack -E, until cancelled (^C)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var evOut, evErr syncBuffer
	evDone := make(chan int)
	go func() {
		evDone <- conntrackEvents(ctx, sock, "", []string{"-E"}, 0, &evOut, &evErr)
	}()
	tb, _ := l.ConntrackTable()
	for i := 0; !tb.Listening(); i++ {
		if i == 100 {
			t.Fatal("conntrack -E did not subscribe")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var evUDP syncBuffer
	udpCtx, udpCancel := context.WithCancel(context.Background())
	defer udpCancel()
	udpDone := make(chan int)
	go func() {
		udpDone <- conntrackEvents(udpCtx, sock, "", []string{"-E", "-p", "udp", "-e", "NEW", "-o", "xml"}, conntrack.OutXML, &evUDP, &bytes.Buffer{})
	}()
	// both listeners attached before the traffic
	for i := 0; tb.Listeners() < 2; i++ {
		if i == 100 {
			t.Fatal("conntrack -E -p udp did not subscribe")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// traffic: a TCP exchange, a UDP one, a ping
	conn, err := l.Dial(client, "tcp4", "203.0.113.2:7", to)
	if err != nil {
		t.Fatal(err)
	}
	lport := conn.LocalAddr().String()
	lport = lport[strings.LastIndexByte(lport, ':')+1:]
	buf := make([]byte, 4096)
	conn.SetDeadline(time.Now().Add(to))
	if _, err := conn.Read(buf); err != nil { // the greeting
		t.Fatal(err)
	}
	if got, err := l.UDPExchange(client, "203.0.113.2:7", []byte("hi"), to); err != nil || !bytes.Contains(got, []byte("hi")) {
		t.Fatalf("udp echo: %q %v", got, err)
	}
	if _, err := l.Ping(client, netip.MustParseAddr("203.0.113.2"), to); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(conntrackCmd, "", args...)
	}
	out, errs, code := run(append([]string{"-L"}, S...)...)
	if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 || errs != conntrack.Program+": 3 flow entries have been shown.\n" {
		t.Fatalf("conntrack -L: exit %d\n%s%s", code, out, errs)
	}
	wantTCP := regexp.MustCompile(`(?m)^tcp      6 43199\d ESTABLISHED src=10\.10\.1\.2 dst=203\.0\.113\.2 sport=` + lport +
		` dport=7 src=203\.0\.113\.2 dst=203\.0\.113\.1 sport=7 dport=\d+ \[ASSURED\] mark=0 use=1$`)
	if !wantTCP.MatchString(out) {
		t.Errorf("conntrack -L: no %s in\n%s", wantTCP, out)
	}
	for _, c := range []struct {
		args []string
		want *regexp.Regexp
		n    int
	}{
		{[]string{"-L", "-p", "udp", "-m", "0x2a"}, regexp.MustCompile(`^udp      17 \d+ src=10\.10\.1\.2 dst=203\.0\.113\.2 sport=\d+ dport=7 src=203\.0\.113\.2 dst=203\.0\.113\.1 sport=7 dport=\d+ mark=42 use=1\n$`), 1},
		{[]string{"-L", "-p", "tcp", "--state", "ESTABLISHED", "-r", "203.0.113.2", "-q", "203.0.113.1", "-o", "extended,id"}, regexp.MustCompile(`^ipv4     2 tcp      6 \d+ ESTABLISHED .* use=1 id=\d+\n$`), 1},
		{[]string{"-L", "-p", "icmp", "-o", "xml"}, regexp.MustCompile(`^<\?xml version="1\.0" encoding="utf-8"\?>\n<conntrack>\n<flow><meta direction="original">.*<layer4 protonum="1" protoname="icmp"></layer4>.*</flow>\n</conntrack>\n$`), 1},
		{[]string{"-L", "-s", "10.10.2.0/24"}, regexp.MustCompile(`^$`), 0},
		{[]string{"-G", "-p", "tcp", "-s", "10.10.1.2", "-d", "203.0.113.2", "--sport", lport, "--dport", "7"}, regexp.MustCompile(`^tcp      6 \d+ ESTABLISHED .* use=2\n$`), 1},
	} {
		out, errs, code := run(append(c.args, Lab...)...)
		if code != 0 || !c.want.MatchString(out) || errs != fmt.Sprintf("%s: %d flow entries have been shown.\n", conntrack.Program, c.n) {
			t.Errorf("conntrack %s: exit %d\n%s%s\nwant %s", strings.Join(c.args, " "), code, out, errs, c.want)
		}
	}
	if out, _, code := run(append([]string{"-C"}, Lab...)...); code != 0 || out != "3\n" {
		t.Errorf("conntrack -C: exit %d %q", code, out)
	}
	stats := regexp.MustCompile(`^cpu=0   \tfound=\d+ invalid=\d+ insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n$`)
	if out, _, code := run(append([]string{"-S"}, S...)...); code != 0 || !stats.MatchString(out) {
		t.Errorf("conntrack -S: exit %d %q", code, out)
	}
	if _, errs, code := run(append([]string{"-L", "-p", "foo"}, S...)...); code != 2 ||
		errs != conntrack.Program+": `foo' unsupported protocol\nTry `conntrack -h' or 'conntrack --help' for more information.\n" {
		t.Errorf("conntrack -L -p foo: exit %d %q", code, errs)
	}

	// -D, -F
	out, errs, code = run(append([]string{"-D", "-p", "icmp"}, S...)...)
	if code != 0 || !strings.HasPrefix(out, "icmp     1 ") || errs != conntrack.Program+": 1 flow entries have been deleted.\n" {
		t.Errorf("conntrack -D -p icmp: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code = run(append([]string{"-D", "-p", "icmp"}, S...)...); code != 1 || errs != conntrack.Program+": 0 flow entries have been deleted.\n" {
		t.Errorf("conntrack -D -p icmp again: exit %d %q", code, errs)
	}
	conn.Close()
	time.Sleep(200 * time.Millisecond)
	if _, errs, code = run(append([]string{"-F"}, S...)...); code != 0 || errs != conntrack.Program+": connection tracking table has been emptied.\n" {
		t.Errorf("conntrack -F: exit %d %q", code, errs)
	}
	if out, _, _ := run(append([]string{"-C"}, S...)...); out != "0\n" {
		t.Errorf("after -F: -C %q", out)
	}

	// the events, then ^C
	time.Sleep(200 * time.Millisecond)
	cancel()
	if code := <-evDone; code != 0 {
		t.Errorf("conntrack -E: exit %d %s", code, evErr.String())
	}
	ev := evOut.String()
	n := strings.Count(ev, "\n")
	pid := fmt.Sprint(os.Getpid())
	for _, w := range []string{
		"    [NEW] tcp      6 120 SYN_SENT src=10.10.1.2 dst=203.0.113.2 sport=" + lport + " dport=7 [UNREPLIED] src=203.0.113.2 dst=203.0.113.1 sport=7 dport=",
		" [UPDATE] tcp      6 60 SYN_RECV src=10.10.1.2 dst=203.0.113.2 sport=" + lport,
		" [UPDATE] tcp      6 432000 ESTABLISHED src=10.10.1.2 dst=203.0.113.2 sport=" + lport,
		" [UPDATE] tcp      6 120 FIN_WAIT src=10.10.1.2",
		"    [NEW] udp      17 30 src=10.10.1.2 dst=203.0.113.2 sport=",
		"    [NEW] icmp     1 30 src=10.10.1.2 dst=203.0.113.2 type=8 code=0 id=",
		"[DESTROY] icmp     1 ",
		"[USERSPACE] portid=" + pid + "\n",
		"[DESTROY] udp      17 ",
	} {
		if !strings.Contains(ev, w) {
			t.Errorf("conntrack -E: no %q in\n%s", w, ev)
		}
	}
	if !regexp.MustCompile(` \[UPDATE\] udp      17 \d+ src=10\.10\.1\.2 .* mark=42\n`).MatchString(ev) {
		t.Errorf("conntrack -E: no UDP reply update with the mark in\n%s", ev)
	}
	if want := fmt.Sprintf("%s: %d flow events have been shown.\n", conntrack.Program, n); evErr.String() != want || n < 10 {
		t.Errorf("conntrack -E trailer %q, want %q", evErr.String(), want)
	}
	udpCancel()
	<-udpDone
	x := evUDP.String()
	if !strings.HasPrefix(x, conntrack.XMLHeader+`<flow type="new">`) || !strings.HasSuffix(x, "</flow>\n"+conntrack.XMLFooter) || strings.Count(x, "<flow") != 1 {
		t.Errorf("conntrack -E -p udp -e NEW -o xml:\n%s", x)
	}
	for i := 0; tb.Listening(); i++ {
		if i == 100 {
			t.Fatal("the event listeners outlived their clients")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d events streamed:\n%s", n, ev)
}

// TestConntrackArgs: --lab and --socket are taken out of conntrack's own
// arguments wherever they stand; a refused command line is answered
// locally with conntrack's message and status; the default lab's socket
// is the default.
func TestConntrackArgs(t *testing.T) {
	for _, c := range []struct {
		args       []string
		path, rest string
	}{
		{[]string{"-L"}, control.SocketPath("default"), "-L"},
		{[]string{"-L", "--lab", "x", "-p", "tcp"}, control.SocketPath("x"), "-L -p tcp"},
		{[]string{"--socket=/tmp/s.sock", "-D", "-s", "1.2.3.4"}, "/tmp/s.sock", "-D -s 1.2.3.4"},
		{[]string{"-E", "-lab", "y", "-e", "NEW"}, control.SocketPath("y"), "-E -e NEW"},
	} {
		t.Setenv("USWITCH_SOCKET", "")
		inst, rest, err := instanceArgs(c.args)
		if err != nil || inst.path() != c.path || strings.Join(rest, " ") != c.rest {
			t.Errorf("%q: %v %q %q, want %q %q", c.args, err, inst.path(), rest, c.path, c.rest)
		}
	}
	if _, _, err := instanceArgs([]string{"-L", "--lab"}); err == nil {
		t.Error("--lab without a name accepted")
	}
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		args    []string
		code    int
		out, er string
	}{
		{[]string{"-L", "-p", "foo"}, 2, "", conntrack.Program + ": `foo' unsupported protocol\nTry `conntrack -h' or 'conntrack --help' for more information.\n"},
		{[]string{"-L", "-D"}, 2, "", conntrack.Program + ": Invalid commands combination\nTry `conntrack -h' or 'conntrack --help' for more information.\n"},
		{[]string{"-V"}, 0, conntrack.Program + "\n", ""},
		{[]string{"-h"}, 0, conntrack.Usage, ""},
		{nil, 0, conntrack.Usage, ""},
		{[]string{"-C"}, 1, "", "uswitch: no running uswitch instance at " + nowhere + " (start one with `uswitch lab`, or give --socket)\n"},
	} {
		out, er, code := cli(conntrackCmd, "", append(c.args, "--socket", nowhere)...)
		if code != c.code || out != c.out || er != c.er {
			t.Errorf("conntrack %q: exit %d %q %q, want %d %q %q", c.args, code, out, er, c.code, c.out, c.er)
		}
	}
}
