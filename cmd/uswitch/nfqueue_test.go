package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("needs root: makes a network namespace and binds an NFQUEUE queue")
	}
	for _, tool := range []string{"ip", "iptables", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ns := fmt.Sprintf("usq-cmd%d", os.Getpid()%1000000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot make a namespace: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	q := fmt.Sprint(3000 + os.Getpid()%20000)
	for _, args := range [][]string{{"ip", "link", "set", "lo", "up"}, {"iptables", "-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", q}} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	rules := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(rules, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 127.0.0.2/32 -p icmp -j DROP\nCOMMIT\n"), 0o644)
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- nfqueueCmd([]string{"--queue-num", q, "--netns", ns, "--rules", rules, "--duration", "4s"}, nil, &out, &errb)
	}()
	// wait for the capture and the bind
	for start := time.Now(); !strings.Contains(out.String(), "deciding queues"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 3*time.Second {
			t.Fatalf("not bound after 3s: %s", errb.String())
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
