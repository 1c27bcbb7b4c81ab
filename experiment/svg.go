package experiment

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// timeline.svg: one panel per workload over the run's time axis, the
// fault windows shaded across all panels (rect class "fault-window",
// data-fault the fault's name), a legend naming them. A self-contained
// SVG: no scripts, fonts or links.

var palette = []string{"#e15759", "#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceStep is a round axis step giving about n ticks over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func writeSVG(w io.Writer, s *Summary) error {
	const (
		width  = 960.0
		left   = 70.0
		right  = 70.0
		panelH = 150.0
		gap    = 46.0
	)
	plotW := width - left - right
	n := len(s.Workloads)
	dur := math.Max(s.Duration, 0.001)
	// legend rows: the faults; a fault active the whole run is named,
	// not shaded (it would hide the others)
	type entry struct {
		x, y  float64
		label string
		col   string
		whole bool
	}
	var legend []entry
	lx, ly := left, 30.0
	for i, f := range s.Faults {
		whole := len(f.Windows) == 1 && f.Windows[0][0] <= 0.001 && f.Windows[0][1] >= dur-0.001
		label := fmt.Sprintf("%s (%s): %s", f.Name, f.Kind, fmtWindows(f.Windows))
		if whole {
			label = fmt.Sprintf("%s (%s): the whole run, not shaded", f.Name, f.Kind)
		}
		w := 16 + 6.0*float64(len(label)) + 16
		if lx+w > width-right && lx > left {
			lx, ly = left, ly+16
		}
		legend = append(legend, entry{lx, ly, label, palette[i%len(palette)], whole})
		lx += w
	}
	top := ly + 56
	height := top + float64(n)*(panelH+gap) + 20
	x := func(t float64) float64 { return left + plotW*math.Min(math.Max(t, 0), dur)/dur }
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">
`, width, height, width, height)
	fmt.Fprintf(bw, "<title>%s</title>\n", esc(fmt.Sprintf("experiment %s, seed %d", s.Experiment, s.Seed)))
	fmt.Fprintf(bw, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, esc(fmt.Sprintf("experiment %s — seed %d — %.3gs%s", s.Experiment, s.Seed, s.Duration, map[bool]string{true: " (short)"}[s.Short])))
	for _, e := range legend {
		op := "0.35"
		if e.whole {
			op = "0"
		}
		fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s" fill-opacity="%s" stroke="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			e.x, e.y, e.col, op, e.col, e.x+16, e.y+10, esc(e.label))
	}
	fmt.Fprintf(bw, `<text x="%.0f" y="%.0f" fill="#555">green: successes/s, red: failures/s, blue: goodput (log scale); orange: latency p50 (solid), p99 (dashed), right axis; dotted lines: steps</text>`+"\n", left, ly+30)
	// the fault windows, behind every panel
	y0, y1 := top, top+float64(n)*(panelH+gap)-gap
	fmt.Fprintln(bw, `<g id="fault-windows">`)
	for i, f := range s.Faults {
		if legend[i].whole {
			continue
		}
		col := palette[i%len(palette)]
		for _, wd := range f.Windows {
			fmt.Fprintf(bw, `<rect class="fault-window" data-fault="%s" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" fill-opacity="0.18"><title>%s</title></rect>`+"\n",
				esc(f.Name), x(wd[0]), y0, math.Max(x(wd[1])-x(wd[0]), 1), y1-y0, col, esc(fmt.Sprintf("%s %.3f-%.3fs", f.Name, wd[0], wd[1])))
		}
	}
	fmt.Fprintln(bw, `</g>`)
	// the steps: a line each, across the panels
	fmt.Fprintln(bw, `<g id="steps">`)
	for _, st := range s.Steps {
		fmt.Fprintf(bw, `<line class="step" x1="%.2f" x2="%.2f" y1="%.2f" y2="%.2f" stroke="#333" stroke-dasharray="2,3"><title>%s</title></line>`+"\n",
			x(st.Did), x(st.Did), y0-4, y1, esc(fmt.Sprintf("%.3fs %s: %s", st.Did, st.What, st.Result)))
	}
	fmt.Fprintln(bw, `</g>`)
	for i, r := range s.Workloads {
		py := top + float64(i)*(panelH+gap)
		writePanel(bw, &r, py, panelH, left, plotW, x, dur)
	}
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}

func writePanel(bw *bufio.Writer, r *WorkloadResult, py, ph, left, plotW float64, x func(float64) float64, dur float64) {
	bulk := r.Kind == "tcp-bulk"
	fmt.Fprintf(bw, `<g class="workload" data-workload="%s">`+"\n", esc(r.Name))
	fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, py, plotW, ph)
	title := fmt.Sprintf("%s: %s %s → %s", r.Name, r.Kind, r.From, r.To)
	if r.Mode != "" {
		title += " (" + r.Mode + ")"
	}
	title += fmt.Sprintf(" — ok %d/%d, p99 %.1fms", r.OK, r.Requests, r.Latency.P99)
	if r.GoodputBps > 0 {
		title += ", " + rate(r.GoodputBps)
	}
	fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" font-weight="bold">%s</text>`+"\n", left, py-6, esc(title))
	// left axis: goodput (Mbit/s) for bulk, requests per second else
	var ymax, lmax float64
	for _, sl := range r.Slots {
		if bulk {
			ymax = math.Max(ymax, sl.Bps/1e6)
		} else {
			ymax = math.Max(ymax, sl.OK+sl.Failed)
		}
		lmax = math.Max(lmax, sl.P99)
	}
	if ymax == 0 {
		ymax = 1
	}
	if lmax == 0 {
		lmax = 1
	}
	ystep := niceStep(ymax, 4)
	ymax = math.Ceil(ymax/ystep) * ystep
	lstep := niceStep(lmax, 4)
	lmax = math.Ceil(lmax/lstep) * lstep
	y := func(v float64) float64 { return py + ph - ph*v/ymax }
	ly := func(v float64) float64 { return py + ph - ph*math.Min(v, lmax)/lmax }
	// goodput on a log scale: a fault's effect is a ratio
	var d0, d1 float64
	if bulk {
		lo := math.Inf(1)
		for _, sl := range r.Slots {
			if sl.Bps > 0 {
				lo = math.Min(lo, sl.Bps/1e6)
			}
		}
		if math.IsInf(lo, 1) {
			lo = ymax / 10
		}
		d0, d1 = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(ymax))
		if d1 <= d0 {
			d1 = d0 + 1
		}
		y = func(v float64) float64 {
			if v <= 0 {
				return py + ph
			}
			return py + ph - ph*math.Max(0, math.Log10(v)-d0)/(d1-d0)
		}
	}
	unit := "requests/s"
	if bulk {
		unit = "Mbit/s"
	}
	ticks := []float64{}
	if bulk {
		for e := d0; e <= d1; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		for v := 0.0; v <= ymax+ystep/2; v += ystep {
			ticks = append(ticks, v)
		}
	}
	for _, v := range ticks {
		fmt.Fprintf(bw, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, left+plotW, y(v), y(v), left-4, y(v)+4, fmtTick(v))
	}
	fmt.Fprintf(bw, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle" fill="#555">%s</text>`+"\n", left-48, py+ph/2, unit)
	if !bulk {
		for v := 0.0; v <= lmax+lstep/2; v += lstep {
			fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" fill="#c76b00">%s</text>`+"\n", left+plotW+4, ly(v)+4, fmtTick(v))
		}
		fmt.Fprintf(bw, `<text transform="translate(%.1f,%.1f) rotate(90)" text-anchor="middle" fill="#c76b00">latency ms</text>`+"\n", left+plotW+50, py+ph/2)
	}
	// time axis
	tstep := niceStep(dur, 10)
	for t := 0.0; t <= dur+tstep/1000; t += tstep {
		fmt.Fprintf(bw, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/><text x="%.1f" y="%.1f" text-anchor="middle">%ss</text>`+"\n",
			x(t), x(t), py+ph, py+ph+4, x(t), py+ph+16, fmtTick(t))
	}
	line := func(class, col, dash string, pts [][2]float64) {
		if len(pts) == 0 {
			return
		}
		var b strings.Builder
		for _, p := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", p[0], p[1])
		}
		d := ""
		if dash != "" {
			d = ` stroke-dasharray="` + dash + `"`
		}
		fmt.Fprintf(bw, `<polyline class="%s" points="%s" fill="none" stroke="%s" stroke-width="1.6"%s/>`+"\n", class, strings.TrimSpace(b.String()), col, d)
	}
	var ok, fail, gp, p50, p99 [][2]float64
	for _, sl := range r.Slots {
		t := x((sl.T0 + sl.T1) / 2)
		if bulk {
			gp = append(gp, [2]float64{t, y(sl.Bps / 1e6)})
			continue
		}
		ok = append(ok, [2]float64{t, y(sl.OK)})
		fail = append(fail, [2]float64{t, y(sl.Failed)})
		if sl.N > 0 {
			p50 = append(p50, [2]float64{t, ly(sl.P50)})
			p99 = append(p99, [2]float64{t, ly(sl.P99)})
		}
	}
	line("goodput", "#4e79a7", "", gp)
	line("ok", "#2ca02c", "", ok)
	line("failed", "#d62728", "", fail)
	line("p50", "#f28e2b", "", p50)
	line("p99", "#f28e2b", "5,3", p99)
	fmt.Fprintln(bw, `</g>`)
}

// writeModelSVG: goodput against loss, log-log: the model's line and
// the measured points.
func writeModelSVG(w io.Writer, s *Summary) error {
	m := s.Model
	const (
		width, height = 640.0, 420.0
		left, right   = 80.0, 30.0
		top, bottom   = 50.0, 60.0
	)
	pw, ph := width-left-right, height-top-bottom
	pmin, pmax := 1e-3, 5e-2
	vmin, vmax := math.Inf(1), 0.0
	for _, p := range m.Points {
		pmin, pmax = math.Min(pmin, p.P), math.Max(pmax, p.P)
		for _, v := range []float64{p.MeasuredBps, p.ModelBps} {
			if v > 0 {
				vmin, vmax = math.Min(vmin, v), math.Max(vmax, v)
			}
		}
	}
	if vmax == 0 {
		vmin, vmax = 1e5, 1e8
	}
	lp0, lp1 := math.Floor(math.Log10(pmin)), math.Ceil(math.Log10(pmax))
	lv0, lv1 := math.Floor(math.Log10(vmin)), math.Ceil(math.Log10(vmax))
	if lv1 == lv0 {
		lv1++
	}
	x := func(p float64) float64 { return left + pw*(math.Log10(p)-lp0)/(lp1-lp0) }
	y := func(v float64) float64 { return top + ph - ph*(math.Log10(math.Max(v, 1))-lv0)/(lv1-lv0) }
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">
<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>
`, width, height, width, height, width, height)
	fmt.Fprintf(bw, `<text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left,
		esc(fmt.Sprintf("TCP goodput against random loss: %s, MSS %d B, RTT %.1f ms (seed %d)", m.Workload, m.MSS, m.RTTms, s.Seed)))
	fmt.Fprintf(bw, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, top, pw, ph)
	for e := lp0; e <= lp1; e++ {
		p := math.Pow(10, e)
		fmt.Fprintf(bw, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#eee"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			x(p), x(p), top, top+ph, x(p), top+ph+16, fmtTick(100*p)+"%")
	}
	for e := lv0; e <= lv1; e++ {
		v := math.Pow(10, e)
		fmt.Fprintf(bw, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, left+pw, y(v), y(v), left-4, y(v)+4, esc(rate(v)))
	}
	fmt.Fprintf(bw, `<text x="%.0f" y="%.0f" text-anchor="middle">loss probability p</text>`+"\n", left+pw/2, height-20)
	var b strings.Builder
	for i := 0; i <= 50; i++ {
		p := math.Pow(10, lp0+(lp1-lp0)*float64(i)/50)
		fmt.Fprintf(&b, "%.1f,%.1f ", x(p), y(MathisBps(m.MSS, m.RTTms/1e3, p)))
	}
	fmt.Fprintf(bw, `<polyline class="model" points="%s" fill="none" stroke="#4e79a7" stroke-width="1.8"/>`+"\n", strings.TrimSpace(b.String()))
	for _, p := range m.Points {
		if p.MeasuredBps <= 0 {
			continue
		}
		fmt.Fprintf(bw, `<circle class="measured" data-fault="%s" cx="%.1f" cy="%.1f" r="4.5" fill="#e15759"><title>%s</title></circle>`+"\n",
			esc(p.Fault), x(p.P), y(p.MeasuredBps), esc(fmt.Sprintf("%s: p %.4f, %s measured, %s model", p.Fault, p.P, rate(p.MeasuredBps), rate(p.ModelBps))))
	}
	fmt.Fprintf(bw, `<text x="%.0f" y="%.0f" fill="#4e79a7">line: Mathis model MSS/RTT·sqrt(3/2)/sqrt(p)</text>`+"\n", left+10, top+16)
	fmt.Fprintf(bw, `<text x="%.0f" y="%.0f" fill="#e15759">dots: measured goodput in each loss window</text>`+"\n", left+10, top+30)
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}
