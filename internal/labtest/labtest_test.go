package labtest

import (
	"errors"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/testtools"
)

func TestName(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n := Name("ux")
		if !strings.HasPrefix(n, "ux") || len(n) > len("ux")+8 || seen[n] {
			t.Fatalf("name %q (seen: %v)", n, seen[n])
		}
		seen[n] = true
	}
}

type closer struct{ log *[]string }

func (c closer) Close() error { *c.log = append(*c.log, "close"); return nil }

// TestUp: a failed up runs down at once; a good one is closed, then
// downed, at cleanup.
func TestUp(t *testing.T) {
	var log []string
	down := func() error { log = append(log, "down"); return nil }
	t.Run("ok", func(t *testing.T) {
		Up(t, func() (closer, error) { log = append(log, "up"); return closer{&log}, nil }, down)
		if strings.Join(log, ",") != "up" {
			t.Errorf("before cleanup: %v", log)
		}
	})
	if strings.Join(log, ",") != "up,close,down" {
		t.Errorf("after cleanup: %v, want up,close,down", log)
	}
	log = nil
	// a failing up: run in a goroutine-free way through a fake TB
	ft := &fakeTB{TB: t}
	func() {
		defer func() { recover() }()
		Up(ft, func() (closer, error) { return closer{}, errors.New("boom") }, down)
	}()
	if !ft.failed || strings.Join(log, ",") != "down" {
		t.Errorf("failed up: failed %v, log %v, want down run and the test failed", ft.failed, log)
	}
}

// fakeTB records Fatal instead of ending the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	panic("fatal")
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

// TestNetnsFailsAsRoot: as root, a namespace that cannot be made fails
// the test; it is not skipped.
func TestNetnsFailsAsRoot(t *testing.T) {
	Root(t, "makes a network namespace")
	testtools.Need(t, "ip")
	ft := &fakeTB{TB: t}
	func() {
		defer func() { recover() }()
		Netns(ft, "bad/name") // ip refuses names with a slash
	}()
	if !ft.failed {
		t.Error("Netns with a name ip refuses did not fail the test")
	}
}
