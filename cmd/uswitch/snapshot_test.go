package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

func TestSnapshotUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := snapshot(nil, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage") {
		t.Errorf("no DIR: exit %d, stderr %q", code, errb.String())
	}
}

func TestSnapshotNetns(t *testing.T) {
	kerneltest.Require(t, "sysctl") // the snapshot runs sysctl -a
	ns := kerneltest.NewNetns(t)
	if _, e, code, err := ns.Run("", "ip", "link", "set", "lo", "up"); err != nil || code != 0 {
		t.Fatal(err, e)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	var out, errb bytes.Buffer
	if code := snapshot([]string{dir, "--netns", ns.Name}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "1 links") {
		t.Errorf("stdout %q", out.String())
	}
}
