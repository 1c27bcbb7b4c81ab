// Package layers holds the test that keeps the package graph layered:
// every package of the module sits on a layer, and a package may import
// only packages on lower layers (test files aside). The table below is
// the one place the layering is written down; ARCHITECTURE.md draws it.
package layers

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/uswitch-lab/uswitch"

// layer is each package's layer, by its path in the module. Layer 0
// imports nothing of the module; a package imports only packages of
// layers below its own. A new package must be added here.
var layer = map[string]int{
	// L0: packet views, routing, the hook enum, small leaf helpers
	"packet":            0,
	"netfilter":         0,
	"internal/kernhash": 0,
	"internal/prom":     0,
	"internal/netnsrun": 0,
	// a file replaced whole (temp file, rename)
	"internal/atomicfile": 0,
	// test plumbing below everything that uses it
	"internal/testtools":           0,
	"internal/capture":             0,
	"internal/browser":             0,
	"internal/capture/capturetest": 0,
	"internal/kerneltest":          1,
	"internal/labtest":             1,
	// L1: state machines over packets; routing (its multipath hash is
	// the kernel's siphash)
	"route":      1,
	"conntrack":  1,
	"ipfrag":     1,
	"lvs":        1,
	"trace":      1,
	"bridge/fdb": 1,
	// tunnel formats and a vxlan device's FDB (under link)
	"encap": 1,
	// L2: what reads conntrack: NAT and the iptables language
	"nat":             2,
	"iptables":        2,
	"bridge/ebtables": 2,
	"iproute":         2,
	// L3: the engine
	"datapath":              3,
	"datapath/datapathtest": 3,
	"iptables/cli":          3,
	"bridge/ebtables/cli":   3,
	// fault injection: iptables matches over packets, beside the engine
	// (the engine runs hook faults through its own FaultStage interface,
	// so it imports nothing of fault)
	"fault": 3,
	// L4: what feeds the engine, or configures it
	"host":          4,
	"link":          4,
	"link/linktest": 4,
	"nfqueue":       4,
	// fault.Host over an engine
	"fault/faulthost": 4,
	"web":             5,
	"picture":         4,
	// L5: the control plane (serves an engine and a link datapath)
	"control": 5,
	// L6: orchestration
	"lab": 6,
	// L7: experiments over a lab (workloads, schedules, reports)
	"experiment": 7,
	// L8: the command and test plumbing
	"cmd/uswitch":        8,
	"bench":              8,
	"bench/rulegen":      8,
	"internal/tracetest": 8,
	"internal/layers":    8,
}

// violations lists the imports of graph (package -> its imports, module
// paths without the module prefix) that the layer table forbids, and the
// packages it lacks.
func violations(graph map[string][]string) []string {
	var bad []string
	for p, imps := range graph {
		lp, ok := layer[p]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not in the layer table (internal/layers)", p))
			continue
		}
		for _, q := range imps {
			lq, ok := layer[q]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s imports %s, which is not in the layer table", p, q))
			case lq >= lp:
				bad = append(bad, fmt.Sprintf("%s (layer %d) imports %s (layer %d): a package imports only lower layers", p, lp, q, lq))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// moduleGraph is the module's non-test import graph, from go list.
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		p := strings.TrimPrefix(f[0], module+"/")
		g[p] = nil
		for _, q := range f[1:] {
			if rest, ok := strings.CutPrefix(q, module+"/"); ok {
				g[p] = append(g[p], rest)
			}
		}
	}
	return g
}

// TestLayers: the module's packages import only lower layers.
func TestLayers(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH: the layer test lists packages with go list")
	}
	g := moduleGraph(t)
	if len(g) < 20 {
		t.Fatalf("go list found %d packages: %v", len(g), g)
	}
	for _, v := range violations(g) {
		t.Error(v)
	}
}

// TestViolationsFound: the checker catches what it is for: packet
// importing datapath, a same-layer import, a package missing from the
// table; and passes the real graph's shape.
func TestViolationsFound(t *testing.T) {
	for _, tc := range []struct {
		graph map[string][]string
		want  string
	}{
		{map[string][]string{"packet": {"datapath"}}, "packet (layer 0) imports datapath (layer 3)"},
		{map[string][]string{"nat": {"iptables"}}, "nat (layer 2) imports iptables (layer 2)"},
		{map[string][]string{"newpkg": {"packet"}}, "newpkg is not in the layer table"},
		{map[string][]string{"lab": {"newpkg"}}, "lab imports newpkg, which is not in the layer table"},
	} {
		v := violations(tc.graph)
		if len(v) != 1 || !strings.Contains(v[0], tc.want) {
			t.Errorf("%v: %q, want one containing %q", tc.graph, v, tc.want)
		}
	}
	if v := violations(map[string][]string{"datapath": {"packet", "conntrack", "nat"}, "lab": {"control", "link"}}); len(v) != 0 {
		t.Errorf("allowed imports reported: %q", v)
	}
}
