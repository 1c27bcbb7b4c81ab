package testtools

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test; like testing's, they end the calling goroutine.
type recorder struct {
	testing.TB
	skip, fatal string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(f string, a ...any) {
	r.skip = fmt.Sprintf(f, a...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(f string, a ...any) {
	r.fatal = fmt.Sprintf(f, a...)
	runtime.Goexit()
}

// need runs Need on its own goroutine, as testing runs a test.
func need(r *recorder, tools ...string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Need(r, tools...)
	}()
	<-done
}

func TestNeed(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing is found
	cases := []struct {
		require     string
		tools       []string
		skip, fatal string
	}{
		{"", []string{"ipset"}, "ipset not found: apt-get install ipset", ""},
		{"", []string{"iptables-save", "conntrack", "iptables-legacy"},
			"iptables-save, conntrack, iptables-legacy not found: apt-get install iptables conntrack", ""},
		{"1", []string{"tcpdump"}, "", "tcpdump not found: apt-get install tcpdump (USWITCH_REQUIRE_TOOLS=1: not skipped)"},
		{"", []string{"no-such-tool"}, "", `testtools: no package known for "no-such-tool": add it to the table in internal/testtools`},
	}
	for _, c := range cases {
		t.Setenv(RequireEnv, c.require)
		r := &recorder{TB: t}
		need(r, c.tools...)
		if r.skip != c.skip || r.fatal != c.fatal {
			t.Errorf("Need(%q) with %s=%q: skip %q, fatal %q; want skip %q, fatal %q",
				c.tools, RequireEnv, c.require, r.skip, r.fatal, c.skip, c.fatal)
		}
	}
}

func TestNeedFound(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ipset"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv(RequireEnv, "1")
	r := &recorder{TB: t}
	need(r, "ipset")
	if r.skip != "" || r.fatal != "" {
		t.Errorf("Need(ipset) with ipset in $PATH: skip %q, fatal %q", r.skip, r.fatal)
	}
}
