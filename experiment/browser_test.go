package experiment

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// TestTimelineInBrowser renders a report's timeline.svg in headless
// chromium and reads the picture: inside the fault window the panel is
// tinted with the fault's colour, outside it is white, and the title
// is drawn (dark pixels where the text is).
func TestTimelineInBrowser(t *testing.T) {
	testtools.Need(t, "chromium")
	sum, ev := syntheticSummary()
	dir := t.TempDir()
	if err := writeReport(dir, sum, ev, syntheticMetrics, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--force-device-scale-factor=1", "--window-size=960,320", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+shot, "file://"+filepath.Join(dir, "timeline.svg"))
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	rgb := func(x, y int) (int, int, int) {
		r, g, b, _ := img.At(x, y).RGBA()
		return int(r >> 8), int(g >> 8), int(b >> 8)
	}
	// the panel spans x 70..890 for 0..10 s and y 86..236 (one legend
	// row); the window [3, 5) s is x 316..480; its colour #e15759 at
	// 18% over white is about (250, 224, 224)
	x := func(sec float64) int { return int(70 + 820*sec/10) }
	r, g, b := rgb(x(4), 160)
	if !(r > 235 && g < 242 && b < 242 && r-g >= 8) {
		t.Errorf("inside the fault window at (%d,160): rgb(%d,%d,%d), want the fault's tint", x(4), r, g, b)
	}
	r, g, b = rgb(x(8.5), 160)
	if r < 245 || g < 245 || b < 245 {
		t.Errorf("outside the window at (%d,160): rgb(%d,%d,%d), want white", x(8.5), r, g, b)
	}
	dark := 0
	for xx := 70; xx < 400; xx++ {
		for yy := 6; yy < 22; yy++ {
			if r, g, b := rgb(xx, yy); r+g+b < 200 {
				dark++
			}
		}
	}
	if dark < 50 {
		t.Errorf("the title is not drawn: %d dark pixels", dark)
	}
}
