package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
)

// TestIPSnapshotAndSocket: `uswitch ip` answers the same from a
// snapshot (--snapshot) and from a running instance serving that
// snapshot's FIB (--socket), with ip's exit statuses.
func TestIPSnapshotAndSocket(t *testing.T) {
	const dir = "../../examples/router"
	snap, err := host.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(datapath.Config{FIB: snap.FIB}, conntrack.DefaultConfig(), 1)
	srv := control.NewServer(&control.Engine{Eng: eng, Now: func() int64 { return 0 }, Metrics: func() string { return "" }}, nil)
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	if err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	uid := fmt.Sprint(os.Getuid())
	cases := []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"route", "get", "10.0.0.7"}, "10.0.0.7 dev eth0 src 10.0.0.1 uid " + uid + " \n    cache \n", 0},
		{[]string{"-j", "route", "get", "10.0.0.1"}, `[{"type":"local","dst":"10.0.0.1","dev":"lo","prefsrc":"10.0.0.1","flags":[],"uid":` + uid + `,"cache":["local"]}]` + "\n", 0},
		{[]string{"route", "get", "8.8.8.8"}, "", 2},
		{[]string{"route", "show"}, "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 \n192.168.1.0/24 dev eth1 proto kernel scope link src 192.168.1.1 \n", 0},
		{[]string{"rule", "show"}, "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n", 0},
		{[]string{"route", "get"}, "", 1},
		// the snapshot has no ip-neigh.json, the instance no bridge or
		// TAP port: empty tables
		{[]string{"neigh", "show"}, "", 0},
		{[]string{"-j", "neigh"}, "[]\n", 0},
		{[]string{"neigh", "show", "dev", "nosuch"}, "", 1},
	}
	for _, c := range cases {
		for _, where := range [][]string{{"--snapshot", dir}, {"--socket", sock}} {
			var o, e bytes.Buffer
			code := ipCmd(append(append([]string{}, where...), c.args...), strings.NewReader(""), &o, &e)
			if o.String() != c.out || code != c.code {
				t.Errorf("uswitch ip %s %s: exit %d\n%s%s", strings.Join(where, " "), strings.Join(c.args, " "), code, o.String(), e.String())
			}
		}
	}
}
