package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/fault"
)

type recorder struct{ reqs []control.Request }

func (r *recorder) Control(req control.Request) control.Response {
	r.reqs = append(r.reqs, req)
	return control.Response{Stdout: "ok\n"}
}

// TestFaultCmd: uswitch fault add makes a [[fault]] table of its flags
// and netem words that compiles to the fault asked for; del and list
// send their operation.
func TestFaultCmd(t *testing.T) {
	rec := &recorder{}
	srv := control.NewServer(rec, nil)
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	if err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var o, e bytes.Buffer
	if code := faultCmd([]string{"add", "--socket", sock, "--at", "wire:tun-web1:egress", "--match", "-p tcp --sport 80", "--nth", "1,3", "--start", "5s",
		"slow", "delay", "40ms", "10ms", "loss", "5%", "25%"}, strings.NewReader(""), &o, &e); code != 0 {
		t.Fatalf("add: exit %d: %s", code, e.String())
	}
	req := rec.reqs[0]
	if req.Cmd != "fault" || req.Op != "add" {
		t.Fatalf("request %+v", req)
	}
	ff, err := fault.ParseFile("req", []byte(req.Input))
	if err != nil {
		t.Fatal(err)
	}
	s, err := fault.NewSet(ff.Faults, 1, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, req.Input)
	}
	f := s.Faults[0]
	if f.Name != "slow" || f.At.String() != "wire:tun-web1:egress" || f.Netem.Latency != 40e6 || f.Netem.Loss != fault.ProbOf(.05) ||
		f.Start != 5e9 || len(f.Nth) != 2 || f.Match != "-p tcp --sport 80" {
		t.Errorf("compiled %s from\n%s", f.Describe(), req.Input)
	}
	for _, args := range [][]string{{"del", "--socket", sock, "slow"}, {"list", "--socket", sock}} {
		if code := faultCmd(args, strings.NewReader(""), &o, &e); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}
	if r := rec.reqs[1]; r.Op != "del" || r.Name != "slow" {
		t.Errorf("del: %+v", r)
	}
	if r := rec.reqs[2]; r.Op != "list" {
		t.Errorf("list: %+v", r)
	}
	for _, bad := range [][]string{{}, {"add", "--socket", sock, "x"}, {"del", "--socket", sock}, {"frob"}} {
		if code := faultCmd(bad, strings.NewReader(""), &o, &e); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
