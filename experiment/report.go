package experiment

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/fault"
)

// The report: a folder with
//
//	summary.json   Summary (the schema below; SchemaVersion 1)
//	summary.txt    the same for people
//	timeline.jsonl one event a line: fault window edges ("start",
//	               "stop"), every packet a fault acted on ("drop",
//	               "delay 40.123ms", "reject"...: fault.Decision.Action),
//	               conntrack -S counters that moved (sampled every 100
//	               ms, with the state fault active then: a full table's
//	               drops), steps; each with t (s from the run's start)
//	               and seq (packets uswitch had read by then)
//	timeline.svg   per workload its successes, failures and goodput per
//	               second and latency, fault windows shaded
//	metrics.prom   the lab's Prometheus metrics at the end (the faults'
//	               counters among them); nfqueue-metrics.prom those of
//	               the NFQUEUE decider ([nfqueue])
//	trace.txt      with --trace: the live trace lines (fault decisions
//	               as "fault:PLACEMENT" lines)
//	model.svg      with model = "mathis": goodput against loss, measured
//	               and modelled

// SchemaVersion is summary.json's schema version.
const SchemaVersion = 1

// Summary is summary.json.
type Summary struct {
	Schema       int     `json:"schema"`
	Experiment   string  `json:"experiment"`
	Seed         uint64  `json:"seed"`
	Start        string  `json:"start"`
	Duration     float64 `json:"duration_s"`
	Short        bool    `json:"short"`
	Scale        float64 `json:"scale"`
	Config       string  `json:"config"`
	ConfigSHA256 string  `json:"config_sha256"`
	// Packets is the number of packets uswitch read in the run.
	Packets   uint64           `json:"packets"`
	Faults    []FaultResult    `json:"faults"`
	Windows   []FaultWindows   `json:"windows"`
	Conntrack ConntrackStats   `json:"conntrack"`
	Workloads []WorkloadResult `json:"workloads"`
	Steps     []StepResult     `json:"steps"`
	Events    EventCount       `json:"events"`
	Model     *ModelResult     `json:"model,omitempty"`
	NFQueue   *NFQueueResult   `json:"nfqueue,omitempty"`
	// Out is the report folder (not in the file).
	Out string `json:"-"`
}

// FaultResult is one fault's part.
type FaultResult struct {
	Name      string            `json:"name"`
	Placement string            `json:"placement"`
	Kind      string            `json:"kind"`
	Describe  string            `json:"describe"`
	Windows   [][2]float64      `json:"windows"`
	Matched   uint64            `json:"matched"`
	Acted     uint64            `json:"acted"`
	Actions   map[string]uint64 `json:"actions"`
	// State is a state fault's effect: conntrack-full's drop and
	// early_drop, nat-exhaust's insert_failed (conntrack -S, counted
	// inside its windows).
	State map[string]uint64 `json:"state,omitempty"`
	// Log is the kernel's log line the fault's drops stand for.
	Log string `json:"log,omitempty"`
}

// ConntrackStats are conntrack -S (and -C as count) before and after.
type ConntrackStats struct {
	Before map[string]uint64 `json:"before"`
	After  map[string]uint64 `json:"after"`
	Delta  map[string]int64  `json:"delta"`
}

// StepResult is a step done.
type StepResult struct {
	At     float64 `json:"at"`
	Did    float64 `json:"done_at"`
	What   string  `json:"what"`
	Result string  `json:"result"`
	Note   string  `json:"note,omitempty"`
	idx    int     // the step's place in the file (the order of steps at one time)
}

// EventCount counts timeline.jsonl's events and those not kept.
type EventCount struct {
	Total int    `json:"total"`
	Lost  uint64 `json:"lost"`
}

func faultResults(s *fault.Set, windows []FaultWindows) []FaultResult {
	var out []FaultResult
	for i, f := range s.Faults {
		r := FaultResult{Name: f.Name, Placement: f.At.String(), Kind: f.Kind.String(), Describe: f.Describe(),
			Windows: windows[i].Windows, Matched: f.Matched.Load(), Acted: f.Acted.Load()}
		r.Actions = map[string]uint64{"drop": f.Dropped.Load(), "duplicate": f.Duplicated.Load(), "corrupt": f.Corrupted.Load(),
			"delay": f.Delayed.Load(), "reorder": f.Reordered.Load(), "ecn": f.Marked.Load(), "mangle": f.Mangled.Load(),
			"limit": f.LimitDrops.Load()}
		switch f.Kind {
		case fault.KindConntrackFull:
			d, e := f.TableFull()
			r.State = map[string]uint64{"drop": d, "early_drop": e}
			if d > 0 {
				r.Log = fmt.Sprintf("%s (x%d)", fault.TableFullMessage, d)
			}
		case fault.KindNATExhaust:
			r.State = map[string]uint64{"insert_failed": f.InsertFailed()}
		}
		out = append(out, r)
	}
	return out
}

func writeReport(dir string, s *Summary, events []event, metrics string, trace []string, withTrace bool, extra map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.Schema = SchemaVersion
	var jb bytes.Buffer
	enc := json.NewEncoder(&jb)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	b := bytes.TrimSpace(jb.Bytes())
	files := map[string]func(io.Writer) error{
		"summary.json": func(w io.Writer) error { _, err := w.Write(append(b, '\n')); return err },
		"summary.txt":  func(w io.Writer) error { return writeText(w, s) },
		"timeline.jsonl": func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			for _, e := range events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		},
		"timeline.svg": func(w io.Writer) error { return writeSVG(w, s) },
		"metrics.prom": func(w io.Writer) error { _, err := io.WriteString(w, metrics); return err },
	}
	if withTrace {
		files["trace.txt"] = func(w io.Writer) error {
			for _, l := range trace {
				if _, err := io.WriteString(w, l+"\n"); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for name, text := range extra {
		files[name] = func(w io.Writer) error { _, err := io.WriteString(w, text); return err }
	}
	if s.Model != nil {
		files["model.svg"] = func(w io.Writer) error { return writeModelSVG(w, s) }
	}
	for name, fn := range files {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(f)
		err = fn(bw)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func fmtWindows(ws [][2]float64) string {
	if len(ws) == 0 {
		return "never"
	}
	var p []string
	for _, w := range ws {
		p = append(p, fmt.Sprintf("%.3f-%.3fs", w[0], w[1]))
	}
	if len(p) > 3 {
		return fmt.Sprintf("%d windows, first %s", len(p), p[0])
	}
	return strings.Join(p, ",")
}

func rate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// writeText is summary.txt.
func writeText(w io.Writer, s *Summary) error {
	bw := bufio.NewWriter(w)
	short := ""
	if s.Short {
		short = fmt.Sprintf(" (short: times x%.3g)", s.Scale)
	}
	fmt.Fprintf(bw, "experiment %s  seed=%d  start=%s  duration=%.3fs%s  config=%s %s\n", s.Experiment, s.Seed, s.Start, s.Duration, short, s.Config, s.ConfigSHA256)
	fmt.Fprintf(bw, "packets uswitch read (from the lab's devices, or its NFQUEUE queues): %d; timeline events: %d (lost %d)\n\n", s.Packets, s.Events.Total, s.Events.Lost)
	if len(s.Faults) > 0 {
		fmt.Fprintf(bw, "%-16s %-28s %-22s %9s %9s  %s\n", "fault", "placement", "active", "matched", "acted", "detail")
		for _, f := range s.Faults {
			var det []string
			keys := make([]string, 0, len(f.Actions))
			for k := range f.Actions {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if v := f.Actions[k]; v > 0 {
					d := fmt.Sprintf("%s %d", k, v)
					if f.Matched > 0 && (k == "drop" || k == "duplicate" || k == "corrupt") {
						d += fmt.Sprintf(" (%.2f%%)", 100*float64(v)/float64(f.Matched))
					}
					det = append(det, d)
				}
			}
			sk := make([]string, 0, len(f.State))
			for k := range f.State {
				sk = append(sk, k)
			}
			sort.Strings(sk)
			for _, k := range sk {
				det = append(det, fmt.Sprintf("conntrack -S %s %d", k, f.State[k]))
			}
			if f.Log != "" {
				det = append(det, fmt.Sprintf("log %q", f.Log))
			}
			matched := fmt.Sprint(f.Matched)
			if f.Kind == "conntrack-full" || f.Kind == "nat-exhaust" {
				matched = "-"
			}
			fmt.Fprintf(bw, "%-16s %-28s %-22s %9s %9d  %s\n", f.Name, f.Placement, fmtWindows(f.Windows), matched, f.Acted, strings.Join(det, ", "))
		}
		fmt.Fprintln(bw)
	}
	var cd []string
	for _, k := range []string{"found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error", "search_restart", "clash_resolve"} {
		cd = append(cd, fmt.Sprintf("%s %+d", k, s.Conntrack.Delta[k]))
	}
	fmt.Fprintf(bw, "conntrack -S delta: %s; entries %d -> %d\n\n", strings.Join(cd, " "), s.Conntrack.Before["count"], s.Conntrack.After["count"])
	if q := s.NFQueue; q != nil {
		fmt.Fprintf(bw, "nfqueue: queues %v of %s: uswitch decided %d packets (accepted %d, dropped %d, fail-open overruns %d)", q.Queues, q.Netns, q.Packets, q.Accepted, q.Dropped, q.Overruns)
		if q.Killed {
			fmt.Fprintf(bw, "; killed by a datapath-kill fault, the kernel then held %v (dropped; seen up to 100 ms before), %d read and undecided", q.HeldAtKill, q.BacklogAtKill)
		}
		fmt.Fprintf(bw, "\n\n")
	}
	for _, st := range s.Steps {
		fmt.Fprintf(bw, "step at %.3fs (done %.3fs): %s: %s", st.At, st.Did, st.What, st.Result)
		if st.Note != "" {
			fmt.Fprintf(bw, "  (%s)", st.Note)
		}
		fmt.Fprintln(bw)
	}
	if len(s.Steps) > 0 {
		fmt.Fprintln(bw)
	}
	for _, r := range s.Workloads {
		mode := ""
		if r.Mode != "" {
			mode = " (" + r.Mode + ")"
		}
		fmt.Fprintf(bw, "workload %s: %s%s from %s to %s, %.3f-%.3fs\n", r.Name, r.Kind, mode, r.From, r.To, r.Active[0], r.Active[1])
		bulk := r.Kind == "tcp-bulk"
		if bulk {
			fmt.Fprintf(bw, "  connections %d, ended with the run %d, broke %d", r.Requests, r.OK, r.Failed)
		} else {
			fmt.Fprintf(bw, "  %d requests, ok %d (%.1f%%), failed %d", r.Requests, r.OK, 100*r.SuccessRatio, r.Failed)
		}
		if len(r.Errors) > 0 {
			var ek []string
			for k, v := range r.Errors {
				ek = append(ek, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(ek)
			fmt.Fprintf(bw, " (%s)", strings.Join(ek, ", "))
		}
		if r.Resent > 0 {
			fmt.Fprintf(bw, "; queries resent after a timeout %d", r.Resent)
		}
		if bulk {
			fmt.Fprintf(bw, "\n  goodput %s (%d bytes)\n", rate(r.GoodputBps), r.Bytes)
		} else {
			fmt.Fprintf(bw, "\n  latency p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms; goodput %s (%d bytes)\n",
				r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, rate(r.GoodputBps), r.Bytes)
		}
		if len(r.ServedBy) > 0 {
			var sb []string
			for k, v := range r.ServedBy {
				sb = append(sb, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(sb)
			fmt.Fprintf(bw, "  served by: %s\n", strings.Join(sb, ", "))
		}
		for _, w := range r.Phases {
			name := "from the start"
			if w.Fault != "" {
				name = "after " + w.Fault
			}
			if bulk {
				fmt.Fprintf(bw, "  %7.3f-%7.3fs goodput %s: %s\n", w.From, w.To, rate(w.GoodputBps), name)
				continue
			}
			fmt.Fprintf(bw, "  %7.3f-%7.3fs %5d requests, ok %5.1f%%, p50 %.3fms p99 %.3fms: %s\n",
				w.From, w.To, w.Requests, 100*w.SuccessRatio, w.Latency.P50, w.Latency.P99, name)
		}
		for _, w := range r.Windows {
			name := w.Fault
			if name == "" {
				name = "(no fault)"
			}
			if bulk {
				fmt.Fprintf(bw, "  %-16s %7.3f-%7.3fs  goodput %s\n", name, w.From, w.To, rate(w.GoodputBps))
				continue
			}
			fmt.Fprintf(bw, "  %-16s %7.3f-%7.3fs  %5d requests, ok %5.1f%%, p50 %.3fms p99 %.3fms, goodput %s\n",
				name, w.From, w.To, w.Requests, 100*w.SuccessRatio, w.Latency.P50, w.Latency.P99, rate(w.GoodputBps))
		}
		fmt.Fprintln(bw)
	}
	if m := s.Model; m != nil {
		fmt.Fprintf(bw, "model %s: goodput = MSS/RTT * C/sqrt(p), MSS %d bytes, RTT %.3fms, C %.4f (workload %s)\n", m.Name, m.MSS, m.RTTms, m.C, m.Workload)
		fmt.Fprintf(bw, "  %-16s %9s %9s %14s %14s %7s\n", "fault", "p (set)", "p (seen)", "measured", "model", "ratio")
		for _, pt := range m.Points {
			fmt.Fprintf(bw, "  %-16s %9.4f %9.4f %14s %14s %7.2f\n", pt.Fault, pt.P, pt.PSeen, rate(pt.MeasuredBps), rate(pt.ModelBps), pt.Ratio)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}
