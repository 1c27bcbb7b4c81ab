package datapath

import (
	"fmt"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
)

// unreachables counts the port unreachables sent for n UDP packets from
// src to a closed local port, one a millisecond from start.
func unreachables(t *testing.T, e *Engine, src string, n int, start int64) int {
	t.Helper()
	got := 0
	for i := range n {
		p := mk(t, fmt.Sprintf("udp %s:%d > 10.0.0.1:9999 iif eth0", src, 1000+i))
		f := e.Receive(p, start+int64(i)*int64(time.Millisecond), nil)
		for _, a := range f.Answers {
			if a.Pkt.ICMPType == 3 && a.Fate.Kind == Sent {
				got++
			}
		}
	}
	return got
}

func TestICMPPeerRatelimit(t *testing.T) {
	e := testEngine(t)
	t0 := int64(time.Hour)
	// a new peer starts with the full burst: XRLIM_BURST_FACTOR 6
	if got := unreachables(t, e, "10.0.0.2", 9, t0); got != 6 {
		t.Fatalf("burst: %d unreachables, want 6", got)
	}
	// another peer has its own tokens
	if got := unreachables(t, e, "10.0.0.3", 2, t0+int64(10*time.Millisecond)); got != 2 {
		t.Fatalf("second peer: %d unreachables, want 2", got)
	}
	// one token a second (icmp_ratelimit 1000 ms)
	if got := unreachables(t, e, "10.0.0.2", 3, t0+int64(time.Second+20*time.Millisecond)); got != 1 {
		t.Fatalf("after a second: %d unreachables, want 1", got)
	}

	// icmp_ratelimit 0: no per-peer limit
	c := DefaultICMPConfig()
	c.Ratelimit = 0
	e2 := New(Config{Rules: e.cfg.Load().Rules, FIB: testFIB(t), IPForward: true, ICMP: &c}, conntrack.DefaultConfig(), 1)
	if got := unreachables(t, e2, "10.0.0.2", 9, t0); got != 9 {
		t.Fatalf("ratelimit 0: %d unreachables, want 9", got)
	}
}

func TestRedirectBackoff(t *testing.T) {
	e := testEngine(t)
	k := e.newPkt(mk(t, "udp 10.0.0.2:1 > 10.0.0.3:2 iif eth0"), 0, nil, nil)
	defer e.putPkt(k)
	c := DefaultICMPConfig()
	var sent []int64
	for j := int64(100000); j < 100000+c.RedirectSilence; j++ {
		k.env.now = j * int64(time.Second/HZ)
		if k.redirectAllow(0x0a000002) {
			k.redirectSent(0x0a000002)
			sent = append(sent, j-100000)
		}
	}
	// the n-th redirect after redirect_load << n jiffies, at most
	// redirect_number of them
	want := []int64{0}
	for n := int64(1); n < c.RedirectNumber; n++ {
		want = append(want, want[n-1]+c.RedirectLoad<<n+1)
	}
	if fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Fatalf("redirects at %v, want %v", sent, want)
	}
}
