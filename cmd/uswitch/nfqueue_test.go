package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

func TestNFQueueFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--queue-num", "1", "--queue-balance", "1:2"},
		{"--queue-balance", "3:2"},
		{"--queue-balance", "x"},
		{"--queue-num", "70000"},
		{"--queue-num", "1", "extra"},
	} {
		var out, errb bytes.Buffer
		if code := nfqueueCmd(args, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: uswitch nfqueue") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
	if q, err := queueList(-1, "4:6"); err != nil || fmt.Sprint(q) != "[4 5 6]" {
		t.Errorf("queue-balance 4:6: %v %v", q, err)
	}
}

// TestNFQueueRun: `uswitch nfqueue --netns NS --rules F` decides the
// OUTPUT packets of a namespace: ping to 127.0.0.1 passes, ping to
// 127.0.0.2 meets uswitch's DROP.
func TestNFQueueRun(t *testing.T) {
	ns, q := nfqueueNS(t, 3000)
	rules := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(rules, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 127.0.0.2/32 -p icmp -j DROP\nCOMMIT\n"), 0o644)
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- nfqueueCmd([]string{"--queue-num", q, "--netns", ns, "--rules", rules, "--duration", "4s"}, nil, &out, &errb)
	}()
	// wait for the capture and the bind (--duration counts from the
	// bind; the capture runs ip and iptables-save, slow on a loaded machine)
	for start := time.Now(); !strings.Contains(out.String(), "deciding queues"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("not bound after 20s: %s", errb.String())
		}
	}
	ping := func(dst string) error {
		return exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", dst).Run()
	}
	if err := ping("127.0.0.1"); err != nil {
		t.Errorf("ping 127.0.0.1 (accepted): %v", err)
	}
	if err := ping("127.0.0.2"); err == nil {
		t.Errorf("ping 127.0.0.2 passed uswitch's DROP")
	}
	if code := <-done; code != 0 {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	t.Logf("%s", out.String())
	if !strings.Contains(out.String(), "dropped") {
		t.Errorf("no stats line: %q", out.String())
	}
}

// nfqueueNS makes a namespace whose OUTPUT packets go to an NFQUEUE
// queue (numbered from base by the process id), removed at cleanup.
func nfqueueNS(t *testing.T, base int) (ns, queue string) {
	t.Helper()
	labtest.Root(t, "makes a network namespace and binds an NFQUEUE queue")
	if testing.Short() {
		t.Skip("namespaces: not in -short")
	}
	testtools.Need(t, "ip", "iptables", "ping", "sysctl")
	ns = labtest.Name("usq-cmd")
	labtest.Netns(t, ns)
	queue = fmt.Sprint(base + os.Getpid()%20000)
	labtest.In(t, ns, "ip", "link", "set", "lo", "up")
	labtest.In(t, ns, "iptables", "-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", queue)
	return ns, queue
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNFQueueControl: a running `uswitch nfqueue` answers on its control
// socket (mode 0600) and its metrics listener as a lab does: per-queue
// counters that match the traffic exactly, the rule counters of
// iptables-save -c, and the conntrack table.
func TestNFQueueControl(t *testing.T) {
	ns, q := nfqueueNS(t, 23000)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"+
		"-A OUTPUT -m conntrack --ctstate INVALID -j DROP\n-A OUTPUT -d 127.0.0.2/32 -p icmp -j DROP\nCOMMIT\n"), 0o644)
	sock := filepath.Join(dir, "nfq.sock")
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- nfqueueCmd([]string{"--queue-num", q, "--netns", ns, "--rules", rules, "--duration", "8s",
			"--socket", sock, "--metrics", "127.0.0.1:0"}, nil, &out, &errb)
	}()
	t.Cleanup(func() { <-done }) // the command removes its socket and queue
	for start := time.Now(); !strings.Contains(out.String(), "deciding queues"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 4*time.Second {
			t.Fatalf("not bound after 4s: %s", errb.String())
		}
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, want a socket with mode 0600", sock, err)
	}
	// 3 pings of 127.0.0.1: request and reply both leave by OUTPUT;
	// one ping of 127.0.0.2 meets uswitch's DROP
	const pings = 3
	if o, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", fmt.Sprint(pings), "-i", "0.05", "-W", "1", "127.0.0.1").CombinedOutput(); err != nil {
		t.Errorf("ping 127.0.0.1: %v\n%s", err, o)
	}
	if err := exec.Command("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "127.0.0.2").Run(); err == nil {
		t.Errorf("ping 127.0.0.2 passed uswitch's DROP")
	}
	time.Sleep(50 * time.Millisecond)
	S := []string{"--socket", sock}
	metrics, errs, code := cli(metricsCmd, "", S...)
	if code != 0 {
		t.Fatalf("metrics: exit %d %s", code, errs)
	}
	want := 2*pings + 1
	for _, line := range []string{
		fmt.Sprintf("uswitch_nfqueue_packets_received_total{queue=%q} %d", q, want),
		fmt.Sprintf("uswitch_nfqueue_verdicts_total{queue=%q} %d", q, want),
		fmt.Sprintf("uswitch_nfqueue_packets_total{queue=%q,verdict=\"accept\"} %d", q, 2*pings),
		fmt.Sprintf("uswitch_nfqueue_packets_total{queue=%q,verdict=\"drop\"} 1", q),
		fmt.Sprintf("uswitch_nfqueue_failopen_total{queue=%q} 0", q),
		fmt.Sprintf("uswitch_nfqueue_kernel_queue_depth{queue=%q} 0", q),
		fmt.Sprintf("uswitch_nfqueue_kernel_packet_ids_total{queue=%q} %d", q, want),
		`uswitch_drops_total{reason="table",table="filter",hook="OUTPUT"} 1`,
		"uswitch_conntrack_entries 1", // the answered ping's (the dropped one is never confirmed)
		`uswitch_conntrack_events_total{event="new"} 2`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, metrics)
		}
	}
	save, errs, code := cli(iptablesSave, "", append([]string{"-c"}, S...)...)
	if code != 0 {
		t.Fatalf("iptables-save -c: exit %d %s", code, errs)
	}
	if p, b := ruleCounters(t, save, "-A OUTPUT -d 127.0.0.2/32 -p icmp -j DROP"); p != 1 || b != 84 {
		t.Errorf("DROP rule counters [%d:%d], want [1:84] (one 84-byte echo request)", p, b)
	}
	list, errs, code := cli(conntrackCmd, "", append([]string{"-L"}, S...)...)
	if code != 0 || !strings.Contains(errs, "1 flow entries have been shown") ||
		!strings.Contains(list, "icmp     1 ") || !strings.Contains(list, "src=127.0.0.1 dst=127.0.0.1 type=8 code=0") {
		t.Errorf("conntrack -L: exit %d\n%s%s", code, list, errs)
	}
	// the same metrics over HTTP
	m := regexp.MustCompile(`metrics: (http://\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no metrics address in %q", out.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), fmt.Sprintf("uswitch_nfqueue_verdicts_total{queue=%q} %d\n", q, want)) {
		t.Errorf("HTTP metrics:\n%s", body)
	}
	// streams are a lab's: refused with a reason
	if _, errs, code := cli(pcapCmd, "", S...); code != 1 || !strings.Contains(errs, "pcap is for labs") {
		t.Errorf("pcap against nfqueue: exit %d %q", code, errs)
	}
	if code := <-done; code != 0 {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	done <- 0
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestNFQueueOffload: `uswitch nfqueue --offload` inserts the connmark
// rule before the queue rule (mangle OUTPUT here) while it runs and
// removes it at exit; 100 datagrams of one UDP flow over lo reach the
// queue once.
func TestNFQueueOffload(t *testing.T) {
	labtest.Root(t, "makes a network namespace and binds an NFQUEUE queue")
	if testing.Short() {
		t.Skip("namespaces: not in -short")
	}
	testtools.Need(t, "ip", "iptables", "conntrack")
	ns := labtest.Name("usq-off")
	labtest.Netns(t, ns)
	q := fmt.Sprint(3500 + os.Getpid()%20000)
	labtest.In(t, ns, "ip", "link", "set", "lo", "up")
	labtest.In(t, ns, "iptables", "-t", "mangle", "-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", q)
	rules := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(rules, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -j ACCEPT\nCOMMIT\n"), 0o644)
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- nfqueueCmd([]string{"--queue-num", q, "--netns", ns, "--rules", rules, "--duration", "3s", "--offload", "--socket", "none"}, nil, &out, &errb)
	}()
	for start := time.Now(); !strings.Contains(out.String(), "deciding queues"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("not bound after 20s: %s", errb.String())
		}
	}
	save := func() string { return labtest.Run(t, "ip", "netns", "exec", ns, "iptables-save", "-t", "mangle") }
	if s := save(); !strings.Contains(s, "-A OUTPUT -m connmark --mark 0x40000000/0x40000000 -j ACCEPT\n-A OUTPUT -j NFQUEUE") {
		t.Errorf("no connmark rule before the queue rule:\n%s", s)
	}
	// 100 datagrams of one flow to a local socket
	var l net.PacketConn
	labtest.InNetns(t, ns, func() error {
		var err error
		l, err = net.ListenPacket("udp4", "127.0.0.1:9999")
		return err
	})
	defer l.Close()
	labtest.InNetns(t, ns, func() error {
		c, err := net.Dial("udp4", "127.0.0.1:9999")
		if err != nil {
			return err
		}
		defer c.Close()
		for range 100 {
			c.Write([]byte("x"))
			time.Sleep(200 * time.Microsecond)
		}
		return nil
	})
	if code := <-done; code != 0 {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	t.Logf("%s", out.String())
	var n int
	if m := regexp.MustCompile(`uswitch nfqueue: (\d+) packets`).FindStringSubmatch(out.String()); m != nil {
		fmt.Sscan(m[1], &n)
	}
	if n == 0 || n > 3 {
		t.Errorf("the queue saw %d packets of the flow, want the first (a few at most)", n)
	}
	if !strings.Contains(out.String(), "offload: 1 flows offloaded") {
		t.Errorf("no offload line: %s", out.String())
	}
	if s := save(); strings.Contains(s, "connmark") {
		t.Errorf("the connmark rule stayed after exit:\n%s", s)
	}
}
