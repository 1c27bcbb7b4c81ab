package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/browser"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// liveJS reports on the live page.
const liveJS = `(() => {
  const rows = {};
  for (const r of document.querySelectorAll('#counters tr[data-id]')) rows[r.dataset.id] = Number(r.querySelector('td.pkts').textContent);
  const pics = [...document.querySelectorAll('#packets svg.uswitch-path')];
  return {
    updates: Number(document.body.dataset.updates),
    rows: rows,
    ifaces: [...document.querySelectorAll('#uswitch tr.iface')].map(r => r.dataset.name),
    namespaces: [...document.querySelectorAll('.ns')].map(n => n.dataset.name),
    conntrack: document.getElementById('conntrack').textContent,
    pictures: pics.length,
    hooks: pics.length ? pics[0].querySelectorAll('g.hook').length : 0,
    taken: pics.length ? [...pics[0].querySelectorAll('g.hook.taken')].map(g => g.dataset.level + ' ' + g.dataset.hook) : [],
  };
})()`

type liveReport struct {
	Updates    int            `json:"updates"`
	Rows       map[string]int `json:"rows"`
	Ifaces     []string       `json:"ifaces"`
	Namespaces []string       `json:"namespaces"`
	Conntrack  string         `json:"conntrack"`
	Pictures   int            `json:"pictures"`
	Hooks      int            `json:"hooks"`
	Taken      []string       `json:"taken"`
}

// TestWebPage opens a running lab's live page in Chromium, sends
// traffic through the lab, and sees the open page's rule counters go
// up, the conntrack table fill and a traced packet drawn, with no
// console error.
func TestWebPage(t *testing.T) {
	needRoot(t)
	testtools.Need(t, "ping", browser.Program)
	c, p := testConfig(t)
	l := upLab(t, c)
	if _, err := l.ListenWeb("10.10.1.1:0", false); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("a non-loopback address: %v", err)
	}
	addr, err := l.ListenWeb("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := browser.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	pg, err := b.Open("http://"+addr+"/", 1600, 1000)
	if err != nil {
		t.Fatal(err)
	}
	report := func() liveReport {
		t.Helper()
		var r liveReport
		if err := pg.Eval(liveJS, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	wait := func(what string, ok func(liveReport) bool) liveReport {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := report()
			if ok(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 15s: %+v", what, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	before := wait("the first update", func(r liveReport) bool { return r.Updates > 0 })
	if strings.Join(before.Ifaces, " ") != "tc t1 t2 tw" || len(before.Namespaces) != 4 || before.Namespaces[0] != p+"-c" {
		t.Errorf("topology %q %q", before.Ifaces, before.Namespaces)
	}
	// the client's pings to the wan: the first request by FORWARD rule
	// 3 (-i tc -o tw -j ACCEPT), the other requests and the replies by
	// rule 1 (RELATED,ESTABLISHED)
	fwd := func(r liveReport) int { return r.Rows["filter/FORWARD/1"] + r.Rows["filter/FORWARD/3"] }
	if _, ok := before.Rows["filter/FORWARD/3"]; !ok {
		t.Fatalf("no counter rows: %v", before.Rows)
	}
	labtest.In(t, p+"-c", "ping", "-c", "4", "-i", "0.3", "-W", "2", "203.0.113.2")
	after := wait("the counters and a picture", func(r liveReport) bool {
		return fwd(r) >= fwd(before)+8 && r.Rows["filter/FORWARD/3"] > before.Rows["filter/FORWARD/3"] && r.Pictures > 0 && strings.Contains(r.Conntrack, "icmp")
	})
	if after.Hooks != 10 || len(after.Taken) == 0 {
		t.Errorf("the live picture: %d hook boxes, taken %q", after.Hooks, after.Taken)
	}
	if errs := pg.Errors(); len(errs) > 0 {
		t.Errorf("the page reported errors: %q", errs)
	}
	shot, err := pg.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("USWITCH_SCREENSHOTS"); d != "" {
		os.WriteFile(filepath.Join(d, "lab-web.png"), shot, 0o644)
	}
}
