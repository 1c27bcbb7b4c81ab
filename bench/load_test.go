package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/iptables"
)

var loadSizes = []int{1000, 10000, 30000}

func countRules(rs *iptables.Ruleset) int {
	n := 0
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	return n
}

// BenchmarkLoad parses and compiles a kube-proxy-shaped rule set with N
// services (about 5.7 nat rules per service) into the typed IR.
func BenchmarkLoad(b *testing.B) {
	for _, n := range loadSizes {
		input := rulegen.KubeProxy(n)
		b.Run(fmt.Sprintf("kube-proxy-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(input)))
			var nrules int
			for i := 0; i < b.N; i++ {
				rs, err := (&iptables.Loader{}).LoadString(input)
				if err != nil {
					b.Fatal(err)
				}
				nrules = countRules(rs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nrules), "ns/rule")
			b.ReportMetric(float64(nrules), "rules")
		})
	}
}

// BenchmarkKernelRestore times iptables-restore of the same rule sets in
// a fresh network namespace (iptables-nft: userspace parsing plus the
// kernel's nf_tables transaction). Needs root; skipped otherwise.
func BenchmarkKernelRestore(b *testing.B) {
	kerneltest.Require(b)
	for _, n := range loadSizes {
		input := rulegen.KubeProxy(n)
		nrules := strings.Count(input, "\n-A ")
		b.Run(fmt.Sprintf("kube-proxy-%d", n), func(b *testing.B) {
			ns := kerneltest.NewNetns(b)
			for i := 0; i < b.N; i++ {
				stderr, code, err := ns.Restore(input)
				if err != nil || code != 0 {
					b.Fatalf("iptables-restore: %v %d %s", err, code, stderr)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nrules), "ns/rule")
			b.ReportMetric(float64(nrules), "rules")
		})
	}
}

// TestKubeProxySetLoads keeps the generated benchmark input honest: it
// loads, and the 30,000-service set has about 150,000 nat rules or more.
func TestKubeProxySetLoads(t *testing.T) {
	rs, err := (&iptables.Loader{}).LoadString(rulegen.KubeProxy(30000))
	if err != nil {
		t.Fatal(err)
	}
	if n := countRules(rs); n < 150000 {
		t.Fatalf("kube-proxy-30000 has %d rules, want >= 150000", n)
	}
}
