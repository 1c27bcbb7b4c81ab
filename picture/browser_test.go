package picture

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/browser"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// ScreenshotEnv names a folder the browser tests keep their screenshots
// in, to be looked at (unset: they are only checked).
const ScreenshotEnv = "USWITCH_SCREENSHOTS"

// OpenBrowser starts the headless browser for t, or skips t without it
// (a failure under USWITCH_REQUIRE_TOOLS=1).
func openBrowser(t *testing.T) *browser.Browser {
	t.Helper()
	testtools.Need(t, browser.Program)
	b, err := browser.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// countColour counts the pixels of the screenshot within 24 of the
// colour (#rrggbb).
func countColour(t *testing.T, img image.Image, hex string) int {
	t.Helper()
	var want [3]int
	for i := range want {
		var v int
		for _, c := range hex[1+2*i : 3+2*i] {
			v *= 16
			switch {
			case c >= '0' && c <= '9':
				v += int(c - '0')
			default:
				v += int(c-'a') + 10
			}
		}
		want[i] = v
	}
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			d := abs(int(r>>8)-want[0]) + abs(int(g>>8)-want[1]) + abs(int(bb>>8)-want[2])
			if d < 24 {
				n++
			}
		}
	}
	return n
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// pictureReport is what the page says of its pictures (pictureJS).
type pictureReport struct {
	Pictures int `json:"pictures"`
	// Hooks per picture: "level hook" -> taken
	Hooks []map[string]bool `json:"hooks"`
	// Ways per picture: each way's data-nodes
	Ways [][]string `json:"ways"`
	// Overflow lists texts that stick out of their hook box
	Overflow []string `json:"overflow"`
	// Empty lists hook boxes drawn with no size
	Empty []string `json:"empty"`
	// NAT lists the rendered NAT notes' before/after
	NAT []string `json:"nat"`
}

// pictureJS reports on the pictures of the page as the browser laid
// them out.
const pictureJS = `(() => {
  const r = {pictures: 0, hooks: [], ways: [], overflow: [], empty: [], nat: []};
  for (const svg of document.querySelectorAll('svg.uswitch-path')) {
    r.pictures++;
    const hooks = {};
    for (const g of svg.querySelectorAll('g.hook')) {
      hooks[g.dataset.level + ' ' + g.dataset.hook] = g.classList.contains('taken');
      const box = g.querySelector('rect.box').getBBox();
      if (box.width < 10 || box.height < 10) r.empty.push(g.id);
      for (const t of g.querySelectorAll('text')) {
        const b = t.getBBox();
        if (b.x < box.x - 1 || b.x + b.width > box.x + box.width + 1) r.overflow.push(g.id + ': ' + t.textContent);
      }
    }
    r.hooks.push(hooks);
    r.ways.push([...svg.querySelectorAll('g.way')].map(w => w.dataset.nodes));
    for (const n of svg.querySelectorAll('text.nat')) r.nat.push(n.dataset.before + ' => ' + n.dataset.after);
  }
  return r;
})()`

// TestBrowserHTML opens the page of a forwarded and a rejected packet
// in Chromium: every hook box there and laid out, the taken ones
// marked, the answer drawn, no text outside its box, no console error,
// and the paths' colours on the screenshot.
func TestBrowserHTML(t *testing.T) {
	b := openBrowser(t)
	e := engine(t)
	pks := []Packet{receive(t, e, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0"), receive(t, e, "tcp 10.0.0.2:40001 > 192.168.1.9:22 syn iif eth0")}
	pks[1].Title = "packet 2"
	var html bytes.Buffer
	if err := HTML(&html, e.Layout(), "uswitch trace", pks); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "trace.html")
	if err := os.WriteFile(file, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := b.Open("file://"+file, 1700, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var r pictureReport
	if err := p.Eval(pictureJS, &r); err != nil {
		t.Fatal(err)
	}
	if r.Pictures != 2 {
		t.Fatalf("%d pictures", r.Pictures)
	}
	taken := []map[string]bool{
		{"ipv4 PREROUTING": true, "ipv4 FORWARD": true, "ipv4 POSTROUTING": true},
		{"ipv4 PREROUTING": true, "ipv4 FORWARD": true, "ipv4 OUTPUT": true, "ipv4 POSTROUTING": true},
	}
	for i, hooks := range r.Hooks {
		if len(hooks) != 10 {
			t.Errorf("picture %d: %d hook boxes, want 10: %v", i+1, len(hooks), hooks)
		}
		for _, lv := range []string{"bridge", "ipv4"} {
			for _, h := range []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"} {
				k := lv + " " + h
				if got, ok := hooks[k]; !ok || got != taken[i][k] {
					t.Errorf("picture %d: %s present %v taken %v", i+1, k, ok, got)
				}
			}
		}
	}
	if len(r.Ways) != 2 || len(r.Ways[1]) != 2 || r.Ways[1][1] != "ipv4-FORWARD ipv4-routeout ipv4-OUTPUT ipv4-POSTROUTING ipv4-out" {
		t.Errorf("ways %q", r.Ways)
	}
	if len(r.NAT) < 2 || r.NAT[0] != "10.0.0.2:40000 > 10.0.0.1:80 => 10.0.0.2:40000 > 192.168.1.2:8080" {
		t.Errorf("NAT notes %q", r.NAT)
	}
	if len(r.Overflow) > 0 || len(r.Empty) > 0 {
		t.Errorf("texts outside their box: %q; empty boxes %q", r.Overflow, r.Empty)
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
	shot, err := p.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 1700 || img.Bounds().Dy() < 1500 {
		t.Errorf("screenshot %v: not the whole page", img.Bounds())
	}
	// the packet's way (blue) and the answer's (orange) are drawn
	if n := countColour(t, img, colour(0)); n < 500 {
		t.Errorf("%d pixels of the packet's colour", n)
	}
	if n := countColour(t, img, colour(1)); n < 300 {
		t.Errorf("%d pixels of the answer's colour", n)
	}
	keep(t, "trace.png", shot)
}

// TestBrowserSVG opens a picture on its own, as --svg writes it.
func TestBrowserSVG(t *testing.T) {
	b := openBrowser(t)
	e := engine(t)
	pk := receive(t, e, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	var svg bytes.Buffer
	if err := SVG(&svg, e.Layout(), pk, Options{}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "packet-1.svg")
	if err := os.WriteFile(file, svg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := b.Open("file://"+file, 1700, 950)
	if err != nil {
		t.Fatal(err)
	}
	var r pictureReport
	if err := p.Eval(pictureJS, &r); err != nil {
		t.Fatal(err)
	}
	if r.Pictures != 1 || len(r.Hooks[0]) != 10 || !r.Hooks[0]["ipv4 FORWARD"] || r.Hooks[0]["ipv4 INPUT"] {
		t.Errorf("report %+v", r)
	}
	if len(r.Overflow) > 0 {
		t.Errorf("texts outside their box: %q", r.Overflow)
	}
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("errors: %q", errs)
	}
	shot, err := p.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	keep(t, "packet-1.png", shot)
}

// keep writes a screenshot to $USWITCH_SCREENSHOTS, when set.
func keep(t *testing.T, name string, png []byte) {
	if d := os.Getenv(ScreenshotEnv); d != "" {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Error(err)
		}
	}
}
