package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
)

// TestRestoreOverSocketLimit: `uswitch iptables-restore` of a rule set
// larger than the control socket's limit says so, naming the limit,
// without sending it; the running rules stay.
func TestRestoreOverSocketLimit(t *testing.T) {
	const old = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n"
	rs, err := (&iptables.Loader{}).LoadString(old)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(datapath.Config{Rules: rs}, conntrack.DefaultConfig(), 1)
	srv := control.NewServer(&control.Engine{Eng: eng, Now: func() int64 { return 0 }, Metrics: func() string { return "" }}, nil)
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	if err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	line := "-A INPUT -s 10.0.0.2/32 -j DROP\n"
	file := filepath.Join(dir, "big.rules")
	big := "*filter\n" + strings.Repeat(line, control.MaxRequest/len(line)+1) + "COMMIT\n"
	if err := os.WriteFile(file, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	code := iptablesRestore([]string{"--socket", sock, file}, strings.NewReader(""), &o, &e)
	if code != 1 || !strings.Contains(e.String(), "larger than the control socket's limit of 64 MiB (67108864 bytes)") ||
		strings.Contains(e.String(), "broken pipe") {
		t.Errorf("exit %d, stderr %q", code, e.String())
	}
	o.Reset()
	e.Reset()
	if code := iptablesSave([]string{"--socket", sock}, strings.NewReader(""), &o, &e); code != 0 || o.String() != old {
		t.Errorf("iptables-save after the refused restore: exit %d\n%s%s", code, o.String(), e.String())
	}
}
