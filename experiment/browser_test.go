package experiment

import (
	"bytes"
	"image/png"
	"path/filepath"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/browser"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// TestTimelineInBrowser opens a report's timeline.svg in headless
// Chromium: it loads without errors, the fault window is drawn where
// its time is (between the x of 3 s and 5 s of the panel), and the
// picture shows it: the panel is tinted with the fault's colour inside
// the window and white outside it.
func TestTimelineInBrowser(t *testing.T) {
	testtools.Need(t, browser.Program)
	sum, ev := syntheticSummary()
	dir := t.TempDir()
	if err := writeReport(dir, sum, ev, syntheticMetrics, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	b, err := browser.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.Open("file://"+filepath.Join(dir, "timeline.svg"), 960, 400)
	if err != nil {
		t.Fatal(err)
	}
	type box struct{ X, Y, W, H float64 }
	var got struct {
		Window, Panel box
		N             int
	}
	if err := p.Eval(`(() => {
		const b = e => { const r = e.getBoundingClientRect(); return {X: r.x, Y: r.y, W: r.width, H: r.height}; };
		const w = document.querySelectorAll('rect.fault-window');
		const panel = document.querySelector('g.workload rect');
		return {Window: b(w[0]), Panel: b(panel), N: w.length};
	})()`, &got); err != nil {
		t.Fatal(err)
	}
	if got.N != 1 {
		t.Fatalf("%d fault windows drawn, want 1", got.N)
	}
	// the panel spans the run (0..10 s): the window [3, 5) s is its
	// 30%..50%
	x3, x5 := got.Panel.X+0.3*got.Panel.W, got.Panel.X+0.5*got.Panel.W
	if d := got.Window.X - x3; d < -1 || d > 1 || got.Window.X+got.Window.W-x5 < -1 || got.Window.X+got.Window.W-x5 > 1 {
		t.Errorf("window drawn at x %.1f..%.1f, want %.1f..%.1f", got.Window.X, got.Window.X+got.Window.W, x3, x5)
	}
	if e := p.Errors(); len(e) > 0 {
		t.Errorf("the page reported errors: %v", e)
	}
	shot, err := p.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	rgb := func(x, y float64) (int, int, int) {
		r, g, b, _ := img.At(int(x), int(y)).RGBA()
		return int(r >> 8), int(g >> 8), int(b >> 8)
	}
	y := got.Panel.Y + got.Panel.H*0.5
	// #e15759 at 18% over white: about (250, 224, 224)
	if r, g, b := rgb((x3+x5)/2, y); !(r > 235 && g < 242 && b < 242 && r-g >= 8) {
		t.Errorf("inside the fault window: rgb(%d,%d,%d), want the fault's tint", r, g, b)
	}
	if r, g, b := rgb(got.Panel.X+0.85*got.Panel.W, y); r < 245 || g < 245 || b < 245 {
		t.Errorf("outside the window: rgb(%d,%d,%d), want white", r, g, b)
	}
}

// TestModelInBrowser: model.svg of a synthetic Mathis sweep opens
// without errors and draws each measured point where its loss and
// goodput put it: further right and lower as loss grows (log axes),
// each on the model's line when measured equals the model.
func TestModelInBrowser(t *testing.T) {
	testtools.Need(t, browser.Program)
	sum, ev := syntheticSummary()
	m := &ModelResult{Name: "mathis", Workload: "bulk", MSS: 1448, RTTms: 20, C: MathisC}
	for _, p := range []float64{0.001, 0.005, 0.01, 0.02, 0.05} {
		v := MathisBps(1448, 0.02, p)
		m.Points = append(m.Points, ModelPoint{Fault: "loss", P: p, PSeen: p, MeasuredBps: v, ModelBps: v, Ratio: 1})
	}
	sum.Model = m
	dir := t.TempDir()
	if err := writeReport(dir, sum, ev, syntheticMetrics, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	b, err := browser.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.Open("file://"+filepath.Join(dir, "model.svg"), 640, 420)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Pts  [][2]float64
		Hits int
	}
	// a point on the model's line: the line's stroke passes through it
	if err := p.Eval(`(() => {
		const line = document.querySelector('polyline.model');
		const pts = [...document.querySelectorAll('circle.measured')].map(c => [c.cx.baseVal.value, c.cy.baseVal.value]);
		let hits = 0;
		for (const [x, y] of pts) { const q = new DOMPoint(x, y); if (line.isPointInStroke(q)) hits++; }
		return {Pts: pts, Hits: hits};
	})()`, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Pts) != 5 {
		t.Fatalf("%d measured points drawn, want 5", len(got.Pts))
	}
	for i := 1; i < len(got.Pts); i++ {
		if got.Pts[i][0] <= got.Pts[i-1][0] || got.Pts[i][1] <= got.Pts[i-1][1] {
			t.Errorf("point %d at %v after %v: want right of it and lower", i, got.Pts[i], got.Pts[i-1])
		}
	}
	if got.Hits != 5 {
		t.Errorf("%d of 5 points on the model's line, want all (measured = model)", got.Hits)
	}
	if e := p.Errors(); len(e) > 0 {
		t.Errorf("the page reported errors: %v", e)
	}
}
