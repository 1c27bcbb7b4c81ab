package experiment

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// readReport reads a report folder back and checks what every report
// must hold: summary.json in the schema (no unknown field), the same
// seed and workloads as summary.txt names, per-second rows over the
// run, timeline.jsonl sorted with a start (and stop, unless the run
// ended first) per fault window, timeline.svg well-formed XML with one
// shaded rect per window of a fault not active all the run, and
// metrics.prom in Prometheus' text format with the faults' counters.
func readReport(t *testing.T, dir string) *Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Summary
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if s.Schema != SchemaVersion || s.Seed == 0 || s.Duration <= 0 || !strings.HasPrefix(s.ConfigSHA256, "sha256:") {
		t.Errorf("summary.json header: schema %d seed %d duration %v sha %q", s.Schema, s.Seed, s.Duration, s.ConfigSHA256)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(txt), "seed="+itoa(s.Seed)) {
		t.Errorf("summary.txt does not print the seed %d:\n%s", s.Seed, txt)
	}
	for _, w := range s.Workloads {
		if !strings.Contains(string(txt), "workload "+w.Name+":") {
			t.Errorf("summary.txt has no workload %s", w.Name)
		}
		if want := int(math.Ceil(w.Active[1])) - int(w.Active[0]); len(w.PerSecond) != want {
			t.Errorf("workload %s: %d per-second rows, want %d", w.Name, len(w.PerSecond), want)
		}
		if w.Requests != w.OK+w.Failed {
			t.Errorf("workload %s: %d requests != ok %d + failed %d", w.Name, w.Requests, w.OK, w.Failed)
		}
	}
	if len(s.Windows) != len(s.Faults) {
		t.Errorf("%d window lists for %d faults", len(s.Windows), len(s.Faults))
	}

	// timeline.jsonl
	f, err := os.Open(filepath.Join(dir, "timeline.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n, last := 0, -1.0
	edges := map[string]int{}
	for sc.Scan() {
		var e event
		d := json.NewDecoder(strings.NewReader(sc.Text()))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			t.Fatalf("timeline.jsonl line %d: %v: %s", n+1, err, sc.Text())
		}
		if e.T < last || e.Ev == "" {
			t.Errorf("timeline.jsonl line %d: t %v after %v, ev %q", n+1, e.T, last, e.Ev)
		}
		last = e.T
		if e.Ev == "start" || e.Ev == "stop" {
			edges[e.Fault+" "+e.Ev]++
		}
		n++
	}
	if n != s.Events.Total {
		t.Errorf("timeline.jsonl: %d lines, summary says %d", n, s.Events.Total)
	}
	for _, fw := range s.Windows {
		starts, stops := 0, 0
		for _, w := range fw.Windows {
			starts++
			if w[1] < s.Duration-1e-9 {
				stops++
			}
		}
		if edges[fw.Fault+" start"] != starts || edges[fw.Fault+" stop"] != stops {
			t.Errorf("timeline.jsonl: fault %s: %d start and %d stop events, want %d and %d", fw.Fault,
				edges[fw.Fault+" start"], edges[fw.Fault+" stop"], starts, stops)
		}
	}

	// timeline.svg
	rects := svgWindows(t, filepath.Join(dir, "timeline.svg"))
	want := 0
	for _, fw := range s.Windows {
		if len(fw.Windows) == 1 && fw.Windows[0][0] <= 0.001 && fw.Windows[0][1] >= s.Duration-0.001 {
			continue // the whole run: named, not shaded
		}
		want += len(fw.Windows)
		for range fw.Windows {
			if rects[fw.Fault] == 0 {
				t.Errorf("timeline.svg: no shaded window of fault %s", fw.Fault)
			}
		}
	}
	got := 0
	for _, c := range rects {
		got += c
	}
	if got != want {
		t.Errorf("timeline.svg: %d shaded windows, want %d", got, want)
	}

	// metrics.prom
	mb, err := os.ReadFile(filepath.Join(dir, "metrics.prom"))
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(mb))
	if err != nil {
		t.Fatalf("metrics.prom: %v", err)
	}
	if len(s.Faults) > 0 {
		m := fams["uswitch_fault_matched_total"]
		if m == nil || len(m.Metric) != len(s.Faults) {
			t.Errorf("metrics.prom: uswitch_fault_matched_total %v, want a sample per fault (%d)", m, len(s.Faults))
		}
	}
	return &s
}

func itoa(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// svgWindows parses an SVG file (parseSVG) and fails t on an error.
func svgWindows(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := parseSVG(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return w
}

// parseSVG checks an SVG (well-formed XML with an svg root, no script,
// image or external reference) and counts the rects of class
// fault-window by their data-fault.
func parseSVG(b []byte) (map[string]int, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	out := map[string]int{}
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		attr := map[string]string{}
		for _, a := range se.Attr {
			attr[a.Name.Local] = a.Value
			if a.Name.Local == "href" || strings.Contains(a.Value, "url(") {
				return nil, fmt.Errorf("an external reference: %s=%q", a.Name.Local, a.Value)
			}
		}
		if se.Name.Local == "script" || se.Name.Local == "image" {
			return nil, fmt.Errorf("a <%s> element: the SVG is to be self-contained", se.Name.Local)
		}
		if se.Name.Local == "rect" && attr["class"] == "fault-window" {
			if attr["data-fault"] == "" || attr["width"] == "" {
				return nil, fmt.Errorf("fault window without data-fault or width: %v", attr)
			}
			out[attr["data-fault"]]++
		}
	}
	if root != "svg" {
		return nil, fmt.Errorf("root element %q, want svg", root)
	}
	return out, nil
}
