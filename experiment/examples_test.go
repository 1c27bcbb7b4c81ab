package experiment

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/lab"
)

// The examples of examples/experiments run in their short form
// (--short), each under namespace names no other test uses, and each
// asserts what its file and the README claim.

const examples = "../examples/experiments"

// TestExamplesLoad: every example loads (the overlay with its base),
// and the lab refuses bad experiment tables naming the place.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.toml"))
	if len(files) < 6 {
		t.Fatalf("%d example files", len(files))
	}
	for _, f := range files {
		if strings.HasSuffix(f, "-clash.toml") {
			continue
		}
		cfg, _, err := Load(f, "")
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Experiment.Seed == 0 || cfg.Experiment.Short == "" {
			t.Errorf("%s: an example has a seed and a short form", f)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"[[workload]]\nname = \"w\"\nkind = \"udp\"\nfrom = \"nope\"\nto = \"10.0.0.1:1\"\nrate = 1\n", `x.toml:4: workload: w: from "nope"`},
		{"[[workload]]\nname = \"w\"\nkind = \"smtp\"\nfrom = \"a\"\n", `kind "smtp"`},
		{"[[workload]]\nname = \"w\"\nkind = \"http\"\nfrom = \"a\"\nto = \"http://x/\"\n", "needs a rate"},
		{"[[workload]]\nname = \"w\"\nkind = \"udp\"\nfrom = \"a\"\nto = \"10.0.0.1:1\"\nrate = 1\nstart = \"20s\"\n", "not within"},
		{"[[step]]\nat = \"1s\"\nrun = \"rm -rf /\"\n", "x.toml:4: step: run \"rm -rf /\": a control command"},
		{"[[step]]\nat = \"1s\"\nstop_server = \"a:80\"\n", "no built-in server on port 80"},
		{"[[step]]\nat = \"1s\"\nkill = \"nfqueue\"\n", "step.kill: unknown key"},
		{"[experiment]\nduration = \"soon\"\n", "experiment.duration"},
		{"[experiment]\nmodel = \"mathis\"\n", "needs mss"},
	} {
		_, err := lab.Parse("x.toml", []byte("[[namespace]]\nname = \"a\"\n\n"+tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
}

// runExample runs an example's short form with fresh namespace names
// and returns its summary, read back from the report (readReport's
// checks).
func runExample(t *testing.T, file, overlay string, need ...string) *Summary {
	t.Helper()
	labtest.TUN(t)
	testtools.Need(t, append([]string{"ip"}, need...)...)
	cfg, src, err := Load(filepath.Join(examples, file), overlay)
	if err != nil {
		t.Fatal(err)
	}
	p := labtest.Name("ux")
	names := map[string]string{}
	for i, n := range cfg.Namespaces {
		names[n.Name] = p + "-" + string(rune('a'+i))
	}
	cfg = cfg.Rename(func(n string) string { return names[n] })
	t.Cleanup(func() {
		for _, n := range names {
			if _, err := os.Stat("/run/netns/" + n); err == nil {
				t.Errorf("namespace %s left behind", n)
				lab.Down(cfg)
			}
		}
	})
	out := t.TempDir()
	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = os.Stderr
	}
	sum, err := Run(cfg, src, Options{Out: out, Short: true, Trace: file == "partition.toml", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	got := readReport(t, out)
	if got.Seed != cfg.Experiment.Seed || !got.Short {
		t.Errorf("seed %d short %v, want the file's seed %d, short", got.Seed, got.Short, cfg.Experiment.Seed)
	}
	if txt, err := os.ReadFile(filepath.Join(out, "summary.txt")); err == nil {
		t.Logf("summary.txt:\n%s", txt)
	}
	// the report is the summary Run returned
	if len(got.Workloads) != len(sum.Workloads) || got.Events.Total != sum.Events.Total {
		t.Errorf("summary.json differs from the run's summary")
	}
	// Rename gave the workloads their namespaces: give the names back
	orig := map[string]string{}
	for o, n := range names {
		orig[n] = o
	}
	for i := range got.Workloads {
		w := &got.Workloads[i]
		w.From = orig[w.From]
		sb := map[string]int{}
		for k, v := range w.ServedBy {
			sb[orig[k]] = v
		}
		w.ServedBy = sb
	}
	got.Out = out
	return got
}

func workload(t *testing.T, s *Summary, name string) *WorkloadResult {
	t.Helper()
	for i := range s.Workloads {
		if s.Workloads[i].Name == name {
			return &s.Workloads[i]
		}
	}
	t.Fatalf("no workload %s", name)
	return nil
}

func window(t *testing.T, w *WorkloadResult, fault string) Window {
	t.Helper()
	for _, x := range w.Windows {
		if x.Fault == fault {
			return x
		}
	}
	t.Fatalf("workload %s: no window %q: %+v", w.Name, fault, w.Windows)
	return Window{}
}

func phase(t *testing.T, w *WorkloadResult, prefix string) Window {
	t.Helper()
	for _, x := range w.Phases {
		if strings.HasPrefix(x.Fault, prefix) {
			return x
		}
	}
	t.Fatalf("workload %s: no phase after %q: %+v", w.Name, prefix, w.Phases)
	return Window{}
}

// untouched is the least success ratio of traffic a claim says a fault
// leaves alone: not 1, so that a loaded machine's stalls (a CI runner
// beside other jobs) do not fail the claim.
const untouched = 0.9

func between(t *testing.T, what string, v, lo, hi float64) {
	t.Helper()
	if v < lo || v > hi {
		t.Errorf("%s = %v, want within [%v, %v]", what, v, lo, hi)
	}
}

// (a) goodput falls with loss, as the Mathis model's 1/sqrt(p), within
// a factor of the model at every point.
func TestExampleMathis(t *testing.T) {
	s := runExample(t, "mathis.toml", "")
	m := s.Model
	if m == nil || len(m.Points) != 5 {
		t.Fatalf("model: %+v", m)
	}
	var ps, gs []float64
	for _, pt := range m.Points {
		between(t, pt.Fault+" measured/model", pt.Ratio, 1/4.0, 2.5)
		between(t, pt.Fault+" loss seen", pt.PSeen, pt.P/3, pt.P*3)
		ps, gs = append(ps, pt.P), append(gs, pt.MeasuredBps)
	}
	if rho := spearman(ps, gs); rho > -0.7 {
		t.Errorf("goodput against loss: rank correlation %.2f, want a fall (<= -0.7): %v %v", rho, ps, gs)
	}
	if first, last := gs[0], gs[len(gs)-1]; last > first/3 {
		t.Errorf("goodput at 5%% loss %v, at 0.1%% %v: want it at least 3x lower (the model: 7x)", last, first)
	}
	if _, err := os.Stat(filepath.Join(s.Out, "model.svg")); err != nil && s.Out != "" {
		t.Error(err)
	}
}

// spearman is the rank correlation of x and y (no ties).
func spearman(x, y []float64) float64 {
	rank := func(v []float64) []float64 {
		idx := make([]int, len(v))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
		r := make([]float64, len(v))
		for k, i := range idx {
			r[i] = float64(k)
		}
		return r
	}
	rx, ry := rank(x), rank(y)
	n := float64(len(x))
	var d2 float64
	for i := range rx {
		d2 += (rx[i] - ry[i]) * (rx[i] - ry[i])
	}
	return 1 - 6*d2/(n*(n*n-1))
}

// (b) while conntrack is full new connections fail, the established one
// does not; the drops are conntrack -S drop with the kernel's message.
func TestExampleConntrackFull(t *testing.T) {
	s := runExample(t, "conntrack-full.toml", "")
	nw, est := workload(t, s, "new"), workload(t, s, "established")
	between(t, "new connections' success in the window", window(t, nw, "ct-full").SuccessRatio, 0, 0.1)
	between(t, "new connections' success outside", window(t, nw, "").SuccessRatio, untouched, 1)
	if w := window(t, est, "ct-full"); w.Requests < 10 || w.Failed != 0 {
		t.Errorf("the established connection in the window: %+v", w)
	}
	if est.Failed != 0 {
		t.Errorf("the established connection failed %d times: %v", est.Failed, est.Errors)
	}
	// the timeline has the drops, inside the window, with the log line
	b, _ := os.ReadFile(filepath.Join(s.Out, "timeline.jsonl"))
	var drops uint64
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e event
		json.Unmarshal([]byte(ln), &e)
		if e.Ev == "conntrack -S" && e.Delta["drop"] > 0 {
			w := s.Windows[0].Windows[0]
			if e.Fault != "ct-full" || e.Log == "" || e.T < w[0] || e.T > w[1]+0.2 {
				t.Errorf("timeline: %+v outside the window %v", e, w)
			}
			drops += e.Delta["drop"]
		}
	}
	f := s.Faults[0]
	if drops != f.State["drop"] {
		t.Errorf("timeline: %d drops, the fault counted %d", drops, f.State["drop"])
	}
	if f.State["drop"] == 0 || !strings.Contains(f.Log, "nf_conntrack: table full, dropping packet") || s.Conntrack.Delta["drop"] < int64(f.State["drop"]) {
		t.Errorf("fault %+v, conntrack -S delta %v", f, s.Conntrack.Delta)
	}
}

// (c) a dead real server: rr fails half until the weight change, then
// never; the persistent client fails throughout, also after it.
func TestExampleIPVSKill(t *testing.T) {
	s := runExample(t, "ipvs-kill.toml", "")
	rr, pe := workload(t, s, "rr"), workload(t, s, "persistent")
	between(t, "rr before the kill", phase(t, rr, "ipvsadm -e -t 10.10.1.100:81 -r 10.10.3.2:8080 -m -w 1").SuccessRatio, untouched, 1)
	between(t, "rr after the kill", phase(t, rr, "stop_server").SuccessRatio, 0.3, 0.7)
	between(t, "rr after weight 0", phase(t, rr, "ipvsadm -e -t 10.10.1.100:80").SuccessRatio, untouched, 1)
	between(t, "persistent before the kill", phase(t, pe, "").SuccessRatio, untouched, 1)
	between(t, "persistent after the kill", phase(t, pe, "stop_server").SuccessRatio, 0, 0.05)
	between(t, "persistent after weight 0", phase(t, pe, "ipvsadm -e -t 10.10.1.100:80").SuccessRatio, 0, 0.05)
	if rr.Errors["refused"] == 0 || pe.Errors["refused"] == 0 {
		t.Errorf("errors: rr %v persistent %v, want refused connections", rr.Errors, pe.Errors)
	}
	if len(pe.ServedBy) != 1 || pe.ServedBy["ex-c-web1"] == 0 {
		t.Errorf("the persistent client was served by %v, want web1 only", pe.ServedBy)
	}
}

// (d) a one-way partition client -> web2.
func TestExamplePartition(t *testing.T) {
	s := runExample(t, "partition.toml", "")
	const f = "cut-client-web2"
	between(t, "the service inside the window", window(t, workload(t, s, "vip"), f).SuccessRatio, 0.15, 0.85)
	between(t, "the service outside", window(t, workload(t, s, "vip"), "").SuccessRatio, untouched, 1)
	between(t, "web1 inside", window(t, workload(t, s, "web1"), f).SuccessRatio, untouched, 1)
	between(t, "client -> web2 inside", window(t, workload(t, s, "to-web2"), f).SuccessRatio, 0, 0.02)
	between(t, "client -> web2 outside", window(t, workload(t, s, "to-web2"), "").SuccessRatio, untouched, 1)
	between(t, "web2 -> client inside", window(t, workload(t, s, "from-web2"), f).SuccessRatio, untouched, 1)
	if s.Faults[0].Acted == 0 || s.Faults[0].Actions["drop"] != s.Faults[0].Acted {
		t.Errorf("fault: %+v", s.Faults[0])
	}
	// every drop is in the timeline and the trace
	drops := 0
	b, _ := os.ReadFile(filepath.Join(s.Out, "timeline.jsonl"))
	drops = strings.Count(string(b), `"ev":"drop"`)
	if uint64(drops) != s.Faults[0].Acted {
		t.Errorf("timeline.jsonl: %d drops, the fault counted %d", drops, s.Faults[0].Acted)
	}
	tr, _ := os.ReadFile(filepath.Join(s.Out, "trace.txt"))
	if !strings.Contains(string(tr), f) {
		t.Errorf("trace.txt has no line of the fault:\n%.2000s", tr)
	}
}

// (e) uswitch stalled, then killed, in NFQUEUE mode: with
// --queue-bypass the traffic comes back undecided, without it it stops;
// what the kernel held at the kill is gone.
func TestExampleNFQueueKill(t *testing.T) {
	s := runExample(t, "nfqueue-kill.toml", "", "iptables-restore", "iptables-save", "sysctl")
	by, nb := workload(t, s, "bypass"), workload(t, s, "no-bypass")
	between(t, "bypass before", window(t, by, "").SuccessRatio, untouched, 1)
	between(t, "no-bypass before", window(t, nb, "").SuccessRatio, untouched, 1)
	between(t, "bypass after the kill", window(t, by, "kill").SuccessRatio, 0.9, 1)
	between(t, "no-bypass after the kill", window(t, nb, "kill").SuccessRatio, 0, 0.05)
	q := s.NFQueue
	if q == nil || q.Packets == 0 || !q.Killed || len(q.Queues) != 2 {
		t.Fatalf("nfqueue: %+v", q)
	}
	held := uint32(0)
	for _, n := range q.HeldAtKill {
		held += n
	}
	if held == 0 {
		t.Errorf("the kernel held nothing at the kill after a stall: %+v", q)
	}
}

// (f) the DNS race's effect: parallel and single-request-reopen wait a
// timeout, single-request and NOTRACK do not.
func TestExampleDNSRace(t *testing.T) {
	s := runExample(t, "dns-race.toml", "")
	for _, tc := range []struct {
		name string
		wait bool
	}{{"parallel", true}, {"single-request", false}, {"single-request-reopen", true}, {"notrack", false}} {
		w := workload(t, s, tc.name)
		between(t, tc.name+" success", w.SuccessRatio, untouched, 1)
		if tc.wait {
			between(t, tc.name+" p50 latency (ms)", w.Latency.P50, 450, 1000)
			between(t, tc.name+" resent/lookups", float64(w.Resent)/float64(w.Requests), 0.8, 1)
		} else {
			between(t, tc.name+" p50 latency (ms)", w.Latency.P50, 0, 100)
			if w.Resent != 0 {
				t.Errorf("%s: %d queries resent", tc.name, w.Resent)
			}
		}
	}
}

// (f) with the real race: the conntrack-clash fault (the loser of each
// lookup flow's race takes the winner's entry).
func TestExampleDNSRaceClash(t *testing.T) {
	overlay := filepath.Join(examples, "dns-race-clash.toml")
	s := runExample(t, "dns-race.toml", overlay)
	w := workload(t, s, "parallel")
	if d := s.Conntrack.Delta; d["clash_resolve"] < int64(w.Requests)/2 || d["insert_failed"] != 0 {
		t.Errorf("conntrack -S delta %v for %d parallel lookups: want a clash resolved per new lookup flow, none failed", d, w.Requests)
	}
	between(t, "parallel lookups' success", w.SuccessRatio, 0.9, 1)
	between(t, "parallel lookups' p50 latency (ms)", w.Latency.P50, 0, 100)
}

// (f) with the twin DNATed to the other server (twin_dnat): where the
// loser got the other server it goes in by its reply tuple
// (nf_ct_resolve_clash_harder), and the flow's later queries follow the
// winner, whose POSTROUTING binds nothing on a confirmed entry
// (nf_nat_setup_info). Every lookup is answered, none waits.
func TestExampleDNSRaceClashOtherBackend(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(examples, "dns-race-clash.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const same = "twin   = \"same\""
	if !strings.Contains(string(b), same) {
		t.Fatalf("dns-race-clash.toml has no %s line", same)
	}
	overlay := filepath.Join(t.TempDir(), "clash-other.toml")
	if err := os.WriteFile(overlay, []byte(strings.Replace(string(b), same, "twin_dnat = \"10.10.3.2:53\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := runExample(t, "dns-race.toml", overlay)
	for _, name := range []string{"parallel", "single-request"} {
		w := workload(t, s, name)
		between(t, name+" lookups' success", w.SuccessRatio, 0.95, 1)
		between(t, name+" lookups' p50 latency (ms)", w.Latency.P50, 0, 100)
	}
	if d := s.Conntrack.Delta; d["clash_resolve"] == 0 || d["insert_failed"] != 0 {
		t.Errorf("conntrack -S delta %v: want clashes resolved, none failed", d)
	}
}
