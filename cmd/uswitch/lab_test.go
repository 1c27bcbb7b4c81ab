package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/lab"
)

func TestLabBadConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(f, []byte("name = \"x\"\n[[namespace]]\nname = \"a\"\ncolour = \"red\"\n"), 0o644)
	var out, errb bytes.Buffer
	if code := labCmd([]string{"--config", f}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad.toml:4: namespace.colour: unknown key") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestLabPrintDefault(t *testing.T) {
	var out, errb bytes.Buffer
	if code := labCmd([]string{"--print-default"}, nil, &out, &errb); code != 0 || out.String() != lab.DefaultTOML() {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestLabDown: `uswitch lab down --config F` removes the namespaces a lab
// of F made (here left by a lab that was never closed).
func TestLabDown(t *testing.T) {
	labtest.TUN(t)
	p := labtest.Name("ucmd")
	text := fmt.Sprintf(`
[[interface]]
name = "t0"
netns = "%[1]s-a"
addresses = ["10.9.0.1/24"]
[[namespace]]
name = "%[1]s-a"
addresses = ["10.9.0.2/24"]
[[namespace]]
name = "%[1]s-b"
`, p)
	f := filepath.Join(t.TempDir(), "lab.toml")
	os.WriteFile(f, []byte(text), 0o644)
	cfg, err := lab.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	// left running on purpose: `lab down` removes its namespaces under it
	l, err := lab.Up(cfg, nil)
	if err != nil {
		lab.Down(cfg)
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); lab.Down(cfg) })
	var out, errb bytes.Buffer
	if code := labCmd([]string{"down", "--config", f}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := fmt.Sprintf("removed namespace %[1]s-a\nremoved namespace %[1]s-b\n", p)
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	for _, n := range []string{p + "-a", p + "-b"} {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			t.Errorf("%s still there", n)
		}
	}
	out.Reset()
	if code := labCmd([]string{"down", "--config", f}, nil, &out, &errb); code != 0 || out.String() != "nothing to remove\n" {
		t.Errorf("second down: exit %d, %q %q", code, out.String(), errb.String())
	}
}
