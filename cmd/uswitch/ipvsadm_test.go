package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/host"
)

func TestIpvsadmCLI(t *testing.T) {
	dir := t.TempDir()
	save := "-A -t 10.0.0.1:80 -s rr -p 60\n-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 2\n"
	if err := os.WriteFile(filepath.Join(dir, host.FileIPVS), []byte(save), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "rules")
	os.WriteFile(in, []byte(save), 0o644)
	cmd := func(stdin string) func([]string, *bytes.Buffer, *bytes.Buffer) int {
		return func(args []string, o, e *bytes.Buffer) int { return ipvsadmCmd(args, strings.NewReader(stdin), o, e) }
	}
	list := "IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  10.0.0.1:80 rr persistent 60\n" +
		"  -> 10.0.1.1:8080                Masq    2      0          0         \n"
	for _, tc := range []struct {
		args  []string
		stdin string
		out   string
		code  int
		err   string
	}{
		{args: []string{"--snapshot", dir, "-Ln"}, out: list},
		{args: []string{"-Ln", "--input=" + in}, out: list},
		{args: []string{"--snapshot", dir, "-Sn"}, out: save},
		{args: []string{"--snapshot", dir, "-L", "--timeout"}, out: "Timeout (tcp tcpfin udp): 900 120 300\n"},
		{args: []string{"--snapshot", dir, "-Lnc"}, out: "IPVS connection entries\npro expire state       source             virtual            destination\n"},
		{args: []string{"--input", in, "-Ln", "--stats"}, out: "IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n" +
			"TCP  10.0.0.1:80                         0        0        0        0        0\n" +
			"  -> 10.0.1.1:8080                       0        0        0        0        0\n"},
		{args: []string{"--input", in, "-Ln", "--rate"}, out: "IP Virtual Server version 1.2.1 (size=4096)\n" +
			"Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n" +
			"TCP  10.0.0.1:80                         0        0        0        0        0\n" +
			"  -> 10.0.1.1:8080                       0        0        0        0        0\n"},
		{args: []string{"--input", os.DevNull, "-R"}, stdin: save, out: save},
		{args: []string{"--input", os.DevNull, "-R"}, stdin: "-A -t 10.0.0.1:80 -w 3\n", code: 1,
			err: "stdin:1: Illegal 'weight' option with the 'add-service' command: -A -t 10.0.0.1:80 -w 3\n"},
		{args: []string{"--socket", filepath.Join(dir, "none.sock"), "-Ln"}, code: 1,
			err: "uswitch: no running uswitch instance at " + filepath.Join(dir, "none.sock") + " (start one with `uswitch lab`, or give --socket)\n"},
		{args: []string{"--input", in, "-A", "-t", "1.2.3.4:80"}, code: 1,
			err: "uswitch ipvsadm: a snapshot or file is read only: add-service needs the running instance\n"},
		{args: []string{"--input", in, "-Lnc", "--stats"}, code: 2, err: "options conflicts in the list command\n"},
		{args: []string{"--input", in, "-Lnc", "--timeout"}, code: 2,
			err: "The option 'timeout' conflicts with the 'connection' option in the 'list' command\n"},
		{args: []string{"--input", in, "-Ln", "-t", "10.0.0.9:80"}, code: 1, err: "No such service\n"},
	} {
		o, e, code := run(t, cmd(tc.stdin), tc.args...)
		if code != tc.code || o != tc.out || (tc.err != "" && e != tc.err) {
			t.Errorf("%v: exit %d\n%s\nstderr %q\nwant exit %d\n%s\nstderr %q", tc.args, code, o, e, tc.code, tc.out, tc.err)
		}
	}
	// a bad ipvsadm-save in a snapshot names the file and line
	os.WriteFile(filepath.Join(dir, host.FileIPVS), []byte("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w x\n"), 0o644)
	if _, e, code := run(t, cmd(""), "--snapshot", dir, "-Ln"); code != 1 || !strings.Contains(e, "ipvsadm-save:2: illegal weight specified: -a -t 10.0.0.1:80 -r 10.0.1.1 -w x") {
		t.Errorf("bad snapshot: exit %d %q", code, e)
	}
}
