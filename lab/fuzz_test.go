package lab

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig feeds the lab file loader arbitrary text: it never panics,
// every error is a *ConfigError naming the file with a line >= 0, and a
// text it accepts loads again to the same lab.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(DefaultTOML()))
	f.Add([]byte(""))
	f.Add([]byte("name = \"x\"\n[[interface]]\nname = \"t0\"\nnetns = \"a\"\naddresses = [\"10.0.0.1/24\"]\n[[namespace]]\nname = \"a\"\naddresses = [\"10.0.0.2/24\"]\n"))
	for _, p := range []string{"testdata/*.toml", "../examples/labs/*.toml", "../examples/experiments/*.toml"} {
		fs, _ := filepath.Glob(p)
		for _, fn := range fs {
			if b, err := os.ReadFile(fn); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// rules_file and ipvs_file name files to read: /dev/zero
		// would never end
		if bytes.Contains(data, []byte("_file")) || bytes.Contains(data, []byte(`\u`)) || bytes.Contains(data, []byte(`\U`)) {
			t.Skip("names a file")
		}
		const file = "fuzz.toml"
		c, err := Parse(file, data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is no *ConfigError", err, err)
			}
			if ce.Line < 0 || ce.File != file || !strings.HasPrefix(err.Error(), file) {
				t.Fatalf("error %q: line %d, file %q", err, ce.Line, ce.File)
			}
			if n := strings.Count(string(data), "\n") + 1; ce.Line > n {
				t.Fatalf("error %q: line %d of a %d-line file", err, ce.Line, n)
			}
			return
		}
		if len(c.Namespaces) == 0 {
			t.Fatalf("accepted a lab without namespaces")
		}
		d, err := Parse(file, data)
		if err != nil {
			t.Fatalf("accepted once, refused again: %v", err)
		}
		n1, i1 := c.Names()
		n2, i2 := d.Names()
		if strings.Join(n1, ",") != strings.Join(n2, ",") || strings.Join(i1, ",") != strings.Join(i2, ",") {
			t.Fatalf("two loads differ: %v %v, %v %v", n1, i1, n2, i2)
		}
	})
}
