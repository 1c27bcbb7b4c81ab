package prom

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestParsesBack: what the writer writes, Prometheus' own text parser
// reads back with the same families, types, help texts, labels and
// values, also for label values and help texts that need escaping.
func TestParsesBack(t *testing.T) {
	var b strings.Builder
	m := New(&b)
	m.Counter("a_total", `help with a \ backslash and
a newline`, 7)
	m.Family("b_total", "counter", "by reason")
	odd := "filter:FORWARD:rule 3 \"quoted\" \\ and\nnewline"
	m.Sample("b_total", 1, "reason", odd)
	m.Sample("b_total", 18446744073709551615, "reason", "plain", "queue", "2")
	m.Gauge("c", "a gauge", 0)
	m.Family("d_total", "counter", "from a map")
	m.Map("d_total", "k", map[string]uint64{"z": 1, "a": 2})
	if m.Err() != nil {
		t.Fatal(m.Err())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("%v in:\n%s", err, b.String())
	}
	if len(fams) != 4 {
		t.Fatalf("%d families, want 4:\n%s", len(fams), b.String())
	}
	a := fams["a_total"]
	if a.GetType().String() != "COUNTER" || a.GetHelp() != "help with a \\ backslash and\na newline" || a.Metric[0].GetCounter().GetValue() != 7 {
		t.Errorf("a_total: %v", a)
	}
	bf := fams["b_total"]
	if len(bf.Metric) != 2 {
		t.Fatalf("b_total: %v", bf)
	}
	if l := bf.Metric[0].Label; len(l) != 1 || l[0].GetName() != "reason" || l[0].GetValue() != odd {
		t.Errorf("escaped label came back as %v, want %q", l, odd)
	}
	if l := bf.Metric[1].Label; len(l) != 2 || l[1].GetName() != "queue" || l[1].GetValue() != "2" {
		t.Errorf("second sample's labels %v", l)
	}
	if v := bf.Metric[1].GetCounter().GetValue(); v != 18446744073709551615 {
		t.Errorf("max uint64 came back as %v", v)
	}
	if c := fams["c"]; c.GetType().String() != "GAUGE" || c.Metric[0].GetGauge().GetValue() != 0 {
		t.Errorf("c: %v", c)
	}
	if !strings.Contains(b.String(), "d_total{k=\"a\"} 2\nd_total{k=\"z\"} 1\n") {
		t.Errorf("map not sorted:\n%s", b.String())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n++; f.n > 1 {
		return 0, errors.New("full")
	}
	return len(p), nil
}

// TestStickyError: the first write error stops the writing and is kept.
func TestStickyError(t *testing.T) {
	w := &failWriter{}
	m := New(w)
	m.Counter("a", "x", 1)
	m.Counter("b", "y", 2)
	if m.Err() == nil || w.n != 2 {
		t.Errorf("err %v after %d writes, want an error after 2", m.Err(), w.n)
	}
}

// TestNoAllocs: a sample with labels allocates nothing once the buffer
// has grown.
func TestNoAllocs(t *testing.T) {
	m := New(discard{})
	m.Sample("x_total", 1, "a", "b")
	if n := testing.AllocsPerRun(100, func() { m.Sample("x_total", 12345, "reason", "filter:FORWARD", "queue", "1") }); n != 0 {
		t.Errorf("%v allocations a sample", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
