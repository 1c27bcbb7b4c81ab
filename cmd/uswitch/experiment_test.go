package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExperimentCmdErrors: usage and file errors, before anything is
// made (no root needed).
func TestExperimentCmdErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[namespace]]\nname = \"a\"\n\n[[workload]]\nname = \"w\"\nkind = \"udp\"\nfrom = \"a\"\nto = \"10.0.0.1:7\"\n"), 0o644)
	none := filepath.Join(dir, "none.toml")
	os.WriteFile(none, []byte("[[namespace]]\nname = \"a\"\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: uswitch experiment run FILE"},
		{[]string{"walk"}, 2, "usage:"},
		{[]string{"run"}, 2, "usage:"},
		{[]string{"run", bad}, 1, "bad.toml:4: workload: w: rate: a udp workload needs a rate"},
		{[]string{"run", none}, 1, "no [[workload]]"},
		{[]string{"run", none, "--faults", filepath.Join(dir, "missing.toml")}, 1, "missing.toml"},
	} {
		var out, errb bytes.Buffer
		code := experimentCmd(tc.args, strings.NewReader(""), &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}
