package ebtables

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TestSwap: workers run frames through the program an atomic.Pointer
// holds while a --noflush restore builds and publishes new ones (run
// with -race): the programs share rules and counters, never state that
// Compile writes.
func TestSwap(t *testing.T) {
	rs := mustLoad("*filter\n:a RETURN\n-A FORWARD -j a\n-A a -p IPv4 -j CONTINUE\n-A FORWARD -p IPv4 --limit 100/sec -j ACCEPT\n")
	var cur atomic.Pointer[Program]
	cur.Store(Compile(rs))
	cur.Load().Run(Filter, Forward, newCtx(ipv4Frame(6, 1, 2), "p1", "p2"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newCtx(ipv4Frame(6, 1, 2), "p1", "p2")
			for n := int64(0); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c.Reset()
				c.Now = n * 1e6
				if v := cur.Load().Run(Filter, Forward, c); v != netfilter.Accept && v != netfilter.Drop {
					t.Errorf("verdict %v", v)
				}
			}
		}()
	}
	base := rs
	for i := 0; i < 50; i++ {
		next, err := (&Loader{Base: base, NoFlush: true}).Load("*filter\n-N b\n-I FORWARD 1 -j b\n-A b -j RETURN\n-X b\n")
		if err == nil {
			t.Fatalf("deleting a referenced chain loaded")
		}
		next, err = (&Loader{Base: base, NoFlush: true}).Load("*filter\n-I FORWARD 1 -p ARP -j DROP\n")
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(Compile(next))
		base = next
	}
	close(stop)
	wg.Wait()
	if n := len(base.Tables[Filter].Chain("FORWARD").Rules); n != 52 {
		t.Errorf("FORWARD has %d rules, want 52", n)
	}
	// the rule carried over kept counting across the swaps
	if base.Tables[Filter].Chain("a").Rules[0].Packets() == 0 {
		t.Errorf("counters did not survive the swaps")
	}
}
