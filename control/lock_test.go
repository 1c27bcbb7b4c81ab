package control

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/iptables"
)

// TestFaultSwapLock: a rules-swap fault (its Host's Restore, replacing
// the nat table again and again) and live `iptables -A` commands on the
// control socket's engine, at once: with the lock shared (Engine.Lock,
// faulthost.Host.Lock) no command's rule is lost; each reads the
// running configuration and swaps in a changed one, so without it a
// swap built on the configuration before a command would drop the
// command's rule.
func TestFaultSwapLock(t *testing.T) {
	rs, err := (&iptables.Loader{}).LoadString(oldRules)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(datapath.Config{Rules: rs}, conntrack.DefaultConfig(), 1)
	var mu sync.Mutex
	ce := &Engine{Eng: eng, Now: func() int64 { return 0 }, Lock: &mu}
	host := &faulthost.Host{Eng: eng, Lock: &mu}
	// the fault itself, fired at each instant by the packets' clock
	var at []string
	for i := 1; i <= 200; i++ {
		at = append(at, fmt.Sprintf("%dms", i))
	}
	set, err := fault.NewSet([]fault.Spec{{Name: "swap", Action: "rules-swap",
		Rules:    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.9.9.9/32 -j ACCEPT\nCOMMIT\n",
		Schedule: &fault.Schedule{At: at}}}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	set.BindHost(host)
	f := set.Faults[0]
	const n = 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			// a packet at i ms reaches the fault's stage
			f.Act(&iptables.Ctx{}, int64(i)*1e6, false)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			r := ce.Control(Request{Cmd: "iptables", Args: []string{"-A", "FORWARD", "-s", fmt.Sprintf("10.1.%d.%d/32", i/250, i%250+1), "-j", "ACCEPT"}})
			if r.Code != 0 {
				t.Errorf("iptables -A: %d %s", r.Code, r.Stderr)
			}
		}
	}()
	wg.Wait()
	var b strings.Builder
	eng.Config().Rules.Save(&b, iptables.SaveOptions{})
	if got := strings.Count(b.String(), "-A FORWARD -s 10.1."); got != n {
		t.Errorf("%d of %d FORWARD rules left: a swap lost the others", got, n)
	}
	if !strings.Contains(b.String(), "-A PREROUTING -d 10.9.9.9/32 -j ACCEPT") {
		t.Errorf("the swap's nat table is not there:\n%s", b.String())
	}
	if a := f.Affected(); a != n {
		t.Errorf("the fault swapped %d times, want %d", a, n)
	}
}
