package lab

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
)

// testEngine is the engine of a lab config (closed with the test).
func testEngine(t *testing.T, c *Config) *datapath.Engine {
	t.Helper()
	ecfg, ctcfg, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	return datapath.New(ecfg, ctcfg, 1)
}

// mustRead returns a test file's text.
func mustRead(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestTapConfig: kind and mac parse, default to a TUN and to
// DefaultMAC, and bad values name their key and line.
func TestTapConfig(t *testing.T) {
	const base = `name = "x"
[[interface]]
name = "t0"
netns = "a"
addresses = ["10.0.0.1/24"]
KIND
[[namespace]]
name = "a"
addresses = ["10.0.0.2/24"]
`
	parse := func(kind string) (*Config, error) {
		return Parse("lab.toml", []byte(strings.Replace(base, "KIND", kind, 1)))
	}
	c, err := parse(`kind = "tap"` + "\n" + `mac = "02:00:00:aa:bb:cc"`)
	if err != nil {
		t.Fatal(err)
	}
	if it := c.Interfaces[0]; it.Kind != KindTAP || it.LinkMAC() != [6]byte{2, 0, 0, 0xaa, 0xbb, 0xcc} {
		t.Errorf("interface %+v", it)
	}
	c, err = parse(`kind = "tap"`)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Interfaces[0].LinkMAC(); m != DefaultMAC("t0") || m[0] != 0x02 || m[1] != 0x75 || m[2] != 0x73 || DefaultMAC("t1") == m {
		t.Errorf("default MAC %x", m)
	}
	if c, err = parse(""); err != nil || c.Interfaces[0].Kind == KindTAP {
		t.Errorf("default kind: %v %v", c, err)
	}
	// the datapath option makes the device an Ethernet port
	c, _ = parse(`kind = "tap"`)
	d := link.NewDatapath(testEngine(t, c), []link.Device{linktest.New("t0")}, nil, 1, c.DatapathOptions()...)
	defer d.Close()
	if p, _ := d.Port("t0"); !p.Ethernet || p.MAC != DefaultMAC("t0") || len(p.Addrs) != 1 {
		t.Errorf("tap port %+v", p)
	}
	for _, tc := range []struct{ text, key, msg string }{
		{`kind = "tup"`, "interface.kind", `kind "tup": want tun, tap, vxlan or ipip`},
		{`kind = "tap"` + "\n" + `mac = "01:00:5e:00:00:01"`, "interface.mac", "unicast"},
		{`kind = "tap"` + "\n" + `mac = "02:00:00"`, "interface.mac", "Ethernet address"},
		{`mac = "02:00:00:00:00:01"`, "interface.mac", `only a kind = "tap"`},
	} {
		_, err := parse(tc.text)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: error %v, want a *ConfigError", tc.text, err)
		}
		line := 6
		if strings.Contains(tc.text, "\n") {
			line = 7
		}
		if ce.Key != tc.key || ce.Line != line || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %q (key %q line %d), want key %q line %d containing %q", tc.text, err, ce.Key, ce.Line, tc.key, line, tc.msg)
		}
	}
}
