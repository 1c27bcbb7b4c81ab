package lab

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakDuration is USWITCH_SOAK (a Go duration), 30s when unset
// (USWITCH_SOAK=60s for the minute); a short run (-short) takes 5s.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("USWITCH_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("USWITCH_SOAK=%q: want a positive duration such as 60s", s)
		}
		return d
	}
	if testing.Short() {
		return 5 * time.Second
	}
	return 30 * time.Second
}

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSoak runs steady traffic through a lab for USWITCH_SOAK (UDP
// request/response over a few long-lived flows plus a new flow every
// few requests, and a TCP stream echoed back) and samples the live heap
// and the conntrack entry count every few seconds. It fails if the heap
// grows beyond 2x + 8 MiB over the first sample after warm-up, if
// conntrack grows without bound, or if traffic stops in any interval.
func TestSoak(t *testing.T) {
	needRoot(t)
	d := soakDuration(t)
	c, p := testConfig(t)
	l := upLab(t, c)
	cli := p + "-c"

	var udpOK, udpErr, tcpBytes atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	// The traffic goroutines report failures through errc rather than
	// t, so nothing touches t after the test returns.
	errc := make(chan error, 16)

	// UDP: 4 long-lived flows and, every 1000th request, a new flow (so
	// conntrack entries are made and expire all along the run)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			buf := make([]byte, 2048)
			msg := []byte("soak-udp-" + string(rune('a'+w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if conn == nil || i%1000 == 999 {
					if conn != nil {
						conn.Close()
					}
					var err error
					if conn, err = l.Dial(cli, "udp4", "203.0.113.2:7", time.Second); err != nil {
						errc <- err
						return
					}
				}
				conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := conn.Write(msg); err != nil {
					udpErr.Add(1)
					continue
				}
				n, err := conn.Read(buf)
				if err != nil || !bytes.HasSuffix(buf[:n], msg) {
					udpErr.Add(1)
					continue
				}
				udpOK.Add(1)
			}
		}()
	}
	// TCP: one stream to the wan's echo server, written and read back
	tc, err := l.Dial(cli, "tcp4", "203.0.113.2:7", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-stop
		tc.Close()
	}()
	go func() {
		defer wg.Done()
		chunk := bytes.Repeat([]byte("uswitch soak "), 2500) // 32.5 KB
		for {
			if _, err := tc.Write(chunk); err != nil {
				return // closed at stop
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := tc.Read(buf)
			tcpBytes.Add(uint64(n))
			if err != nil {
				if err != io.EOF {
					select {
					case <-stop:
					default:
						errc <- err
					}
				}
				return
			}
		}
	}()

	interval := min(max(d/8, time.Second), 5*time.Second)
	warm := min(interval, 3*time.Second)
	time.Sleep(warm)
	base := heapAfterGC()
	const slack = 8 << 20
	limit := 2*base + slack
	t.Logf("soak %v, sampling every %v; heap after warm-up %.1f MiB (limit %.1f MiB), conntrack %d",
		d, interval, float64(base)/(1<<20), float64(limit)/(1<<20), l.Engine().CT.Count())
	t0 := time.Now()
	lastU, lastT := udpOK.Load(), tcpBytes.Load()
	maxCT := 0
	for time.Since(t0) < d {
		select {
		case err := <-errc:
			t.Fatalf("traffic failed after %v: %v", time.Since(t0).Round(time.Millisecond), err)
		case <-time.After(min(interval, d-time.Since(t0)+time.Millisecond)):
		}
		h := heapAfterGC()
		ct := l.Engine().CT.Count()
		maxCT = max(maxCT, ct)
		u, tb := udpOK.Load(), tcpBytes.Load()
		t.Logf("%6v heap %6.1f MiB  conntrack %4d  udp %7d ok (+%d, %d errors)  tcp %8.1f MB (+%.1f)",
			time.Since(t0).Round(time.Second), float64(h)/(1<<20), ct, u, u-lastU, udpErr.Load(),
			float64(tb)/1e6, float64(tb-lastT)/1e6)
		if h > limit {
			t.Errorf("heap grew to %.1f MiB, over 2x + 8 MiB of %.1f MiB", float64(h)/(1<<20), float64(base)/(1<<20))
		}
		if u == lastU {
			t.Errorf("UDP traffic stopped (no answer in %v)", interval)
		}
		if tb == lastT {
			t.Errorf("TCP stream stopped (no byte in %v)", interval)
		}
		if t.Failed() {
			break
		}
		lastU, lastT = u, tb
	}
	// 4 flows + one new flow every 1000 requests per worker: entries are
	// bounded by what the UDP timeout lets live, far below this
	if maxCT > 20000 {
		t.Errorf("conntrack reached %d entries", maxCT)
	}
	s := l.Stats()
	t.Logf("datapath: %v", s)
	if s.Malformed != 0 {
		t.Errorf("malformed packets: %d", s.Malformed)
	}
}
