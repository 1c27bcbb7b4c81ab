package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The report of the kernel comparison (compare_test.go): text tables and a
// hand-written log-log SVG plot. Nothing here needs root.

// The engines every point is measured through, in table and legend order.
const (
	kernelNFT = iota
	kernelLegacy
	uswLinear
	uswCompiled
	numEngines
)

var engineNames = [numEngines]string{"kernel-nft", "kernel-legacy", "uswitch-linear", "uswitch-compiled"}

// engineColors are the plot's line colours, by engine.
var engineColors = [numEngines]string{"#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"}

// point is one row: the median ns/packet of each engine at n rules or
// services (n 0 is the baseline with no rules). NaN marks an engine not
// measured.
type point struct {
	n  int
	ns [numEngines]float64
}

// sweep is one workload's rows, the baseline first.
type sweep struct {
	title string // what is measured
	unit  string // "rules" or "services"
	base  point  // no rules at all
	rows  []point
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtNS(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtRatio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 || a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func writeRow(w io.Writer, label string, ns [numEngines]float64) {
	fmt.Fprintf(w, "%-10s", label)
	for _, v := range ns {
		fmt.Fprintf(w, " %19s", fmtNS(v))
	}
	fmt.Fprintf(w, " %13s\n", fmtRatio(ns[kernelNFT], ns[uswCompiled]))
}

func writeHeader(w io.Writer, first string) {
	fmt.Fprintf(w, "%-10s", first)
	for _, name := range engineNames {
		fmt.Fprintf(w, " %19s", name+" ns")
	}
	fmt.Fprintf(w, " %13s\n", "nft/compiled")
}

// writeTable prints a sweep: total ns/packet by engine with the baseline
// row first, then the rules' share (total - baseline).
func writeTable(w io.Writer, s sweep) {
	fmt.Fprintf(w, "%s — ns/packet, total\n", s.title)
	writeHeader(w, s.unit)
	writeRow(w, "baseline", s.base.ns)
	for _, r := range s.rows {
		writeRow(w, fmt.Sprint(r.n), r.ns)
	}
	fmt.Fprintf(w, "%s — ns/packet, rules' share (total - baseline)\n", s.title)
	writeHeader(w, s.unit)
	for _, r := range s.rows {
		var d [numEngines]float64
		for e := range d {
			d[e] = r.ns[e] - s.base.ns[e]
		}
		writeRow(w, fmt.Sprint(r.n), d)
	}
	fmt.Fprintln(w)
}

// writeSVG draws the sweeps side by side, one panel each: log-log axes,
// ns/packet against rules (or services), one line per engine, each
// engine's no-rules baseline dashed, a legend.
func writeSVG(w io.Writer, sweeps []sweep, caption string) error {
	const (
		pw, ph         = 460, 360 // panel size
		ml, mr, mt, mb = 70, 20, 40, 50
		legendH        = 30
		captionH       = 24
		tickLen        = 5
		fontSans       = `font-family="sans-serif"`
		gridColor      = "#ddd"
		axisColor      = "#333"
		markerR        = 3.5
	)
	width := pw * len(sweeps)
	height := ph + legendH + captionH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	for i, s := range sweeps {
		x0 := float64(i * pw)
		// data ranges in decades
		xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, r := range s.rows {
			for _, v := range r.ns {
				if math.IsNaN(v) || v <= 0 || r.n <= 0 {
					continue
				}
				xmin, xmax = math.Min(xmin, float64(r.n)), math.Max(xmax, float64(r.n))
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
		for _, v := range s.base.ns {
			if v > 0 && !math.IsNaN(v) {
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
		if math.IsInf(xmin, 0) || math.IsInf(ymin, 0) {
			xmin, xmax, ymin, ymax = 1, 10, 1, 10
		}
		lx0, lx1 := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
		ly0, ly1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if lx1-lx0 < 1 {
			lx1 = lx0 + 1
		}
		if ly1-ly0 < 1 {
			ly1 = ly0 + 1
		}
		left, right := x0+ml, x0+pw-mr
		top, bottom := float64(mt), float64(ph-mb)
		px := func(n float64) float64 { return left + (math.Log10(n)-lx0)/(lx1-lx0)*(right-left) }
		py := func(v float64) float64 { return bottom - (math.Log10(v)-ly0)/(ly1-ly0)*(bottom-top) }
		fmt.Fprintf(&b, `<text x="%.1f" y="22" %s font-size="14" font-weight="bold" text-anchor="middle">%s</text>`+"\n", (left+right)/2, fontSans, xmlEscape(s.title))
		// grid and ticks: each decade, with 2 and 5 as minor lines
		for d := lx0; d <= lx1; d++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, d)
				if math.Log10(v) > lx1+1e-9 {
					break
				}
				x := px(v)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%s"/>`+"\n", x, top, x, bottom, gridColor, map[bool]string{true: "1", false: "0.5"}[m == 1])
				if m == 1 {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x, bottom, x, bottom+tickLen, axisColor)
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="11" text-anchor="middle">%s</text>`+"\n", x, bottom+18, fontSans, siLabel(v))
				}
			}
		}
		for d := ly0; d <= ly1; d++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, d)
				if math.Log10(v) > ly1+1e-9 {
					break
				}
				y := py(v)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%s"/>`+"\n", left, y, right, y, gridColor, map[bool]string{true: "1", false: "0.5"}[m == 1])
				if m == 1 {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left-tickLen, y, left, y, axisColor)
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="11" text-anchor="end">%s</text>`+"\n", left-8, y+4, fontSans, siLabel(v))
				}
			}
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="%s"/>`+"\n", left, top, right-left, bottom-top, axisColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="12" text-anchor="middle">%s (log)</text>`+"\n", (left+right)/2, bottom+38, fontSans, s.unit)
		fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(-90)" %s font-size="12" text-anchor="middle">ns/packet (log)</text>`+"\n", x0+18, (top+bottom)/2, fontSans)
		for e := 0; e < numEngines; e++ {
			var pts []string
			for _, r := range s.rows {
				if v := r.ns[e]; r.n > 0 && v > 0 && !math.IsNaN(v) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(r.n)), py(v)))
				}
			}
			if len(pts) == 0 {
				continue
			}
			if v := s.base.ns[e]; v > 0 && !math.IsNaN(v) { // the baseline, dashed
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1" stroke-dasharray="4 3"/>`+"\n", left, py(v), right, py(v), engineColors[e])
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), engineColors[e])
			for _, p := range pts {
				xy := strings.SplitN(p, ",", 2)
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="%.1f" fill="%s"/>`+"\n", xy[0], xy[1], markerR, engineColors[e])
			}
		}
	}
	// legend, under the panels
	ly := float64(ph + 12)
	lx := 20.0
	for e := 0; e < numEngines; e++ {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, ly, lx+24, ly, engineColors[e])
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s"/>`+"\n", lx+12, ly, markerR, engineColors[e])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="12">%s</text>`+"\n", lx+30, ly+4, fontSans, engineNames[e])
		lx += 150
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333" stroke-width="1" stroke-dasharray="4 3"/>`+"\n", lx, ly, lx+24, ly)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="12">no rules</text>`+"\n", lx+30, ly+4, fontSans)
	fmt.Fprintf(&b, `<text x="20" y="%d" %s font-size="11" fill="#555">%s</text>`+"\n", ph+legendH+14, fontSans, xmlEscape(caption))
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// siLabel writes an axis value: 100, 1k, 10k, 1M.
func siLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", v)
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeSVGFile writes the plot to path, making its directory.
func writeSVGFile(path string, sweeps []sweep, caption string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeSVG(f, sweeps, caption); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestCompareReport renders made-up sweeps: the table has every engine's
// column and the rules' share, and the SVG is well-formed XML with one
// line per engine and panel (a missing engine draws none).
func TestCompareReport(t *testing.T) {
	nan := math.NaN()
	s := []sweep{
		{title: "(a) filter", unit: "rules", base: point{0, [numEngines]float64{1000, 1000, 200, 200}},
			rows: []point{{100, [numEngines]float64{1500, 2000, 900, 250}}, {1000, [numEngines]float64{5000, 9000, 7000, 260}}}},
		{title: "(b) kube-proxy <nat>", unit: "services", base: point{0, [numEngines]float64{1000, nan, 200, 200}},
			rows: []point{{100, [numEngines]float64{1500, nan, 900, 250}}, {30000, [numEngines]float64{50000, nan, 70000, 300}}}},
	}
	var tb strings.Builder
	for _, sw := range s {
		writeTable(&tb, sw)
	}
	for _, want := range []string{"kernel-nft ns", "uswitch-compiled ns", "nft/compiled", "rules' share", "6.00", "19.23", "30000"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	var sb strings.Builder
	if err := writeSVG(&sb, s, "test & caption"); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(sb.String()))
	lines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v\n%s", err, sb.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 7 {
		t.Errorf("%d polylines, want 7 (4 + 3)", lines)
	}
	if median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Error("median")
	}
}
