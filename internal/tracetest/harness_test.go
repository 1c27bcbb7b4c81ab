package tracetest

import (
	"os"
	"strings"
	"testing"
)

// dump prints every line of both sides (USWITCH_TRACE_DUMP=1).
var dump = os.Getenv("USWITCH_TRACE_DUMP") != ""

// check runs a scenario on both sides and reports the packets on which
// they differ; it returns the number of packets that agree.
func check(t *testing.T, scn *Scenario) int {
	t.Helper()
	k := RunKernel(t, scn)
	u, err := RunUswitch(k.Snapshot, scn.Packets, k.Elapsed)
	if err != nil {
		t.Fatalf("uswitch: %v", err)
	}
	if dump {
		for i, p := range scn.Packets {
			t.Logf("packet %d at %v %v\nkernel:\n%s\nuswitch:\n%s\nfate: %v", i+1, k.Elapsed[i], p,
				strings.Join(append(k.Lines[i], k.Egress[i]...), "\n"), strings.Join(append(u.Lines[i], u.Egress[i]...), "\n"), u.Fates[i])
		}
	}
	ms := Compare(scn.Packets, k, u)
	bad := 0
	for _, m := range ms {
		if m.CloneIDOnly {
			t.Logf("%s: trace ids of clones repeat differently (the kernel's slab reuse): %v", scn.Name, m)
			continue
		}
		if m.PortOnly {
			t.Logf("%s: NAT port differs (kernel picks it at random): %v", scn.Name, m)
			continue
		}
		bad++
		t.Errorf("%s: %v", scn.Name, m)
	}
	return len(scn.Packets) - bad
}
