package control

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
)

const oldRules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n"

// engineServer serves an engine holding oldRules on a socket in a
// temporary directory and returns the socket's path.
func engineServer(t *testing.T) string {
	t.Helper()
	rs, err := (&iptables.Loader{}).LoadString(oldRules)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(datapath.Config{Rules: rs}, conntrack.DefaultConfig(), 1)
	srv := NewServer(&Engine{Eng: eng, Now: func() int64 { return 0 }, Metrics: func() string { return "" }}, nil)
	path := filepath.Join(t.TempDir(), "ctl.sock")
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}

// call sends req as a client that does not check its size would, and
// reads the answer.
func call(t *testing.T, path string, req Request) Response {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		t.Fatalf("sending the request: %v", err)
	}
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return r
}

// TestRequestTooLarge: a rule set over the socket's limit is refused
// with an answer naming the limit (which the client reads: no broken
// pipe), and the old rules stay.
func TestRequestTooLarge(t *testing.T) {
	path := engineServer(t)
	line := "-A INPUT -s 10.0.0.2/32 -j DROP\n"
	big := "*filter\n" + strings.Repeat(line, MaxRequest/len(line)+1) + "COMMIT\n"
	r := call(t, path, Request{Cmd: "iptables-restore", Input: big})
	if r != TooLarge() {
		t.Errorf("over the limit: %+v", r)
	}
	if r.Code == 0 || !strings.Contains(r.Stderr, "limit of 64 MiB (67108864 bytes)") {
		t.Errorf("the answer does not name the limit: %+v", r)
	}
	if r := call(t, path, Request{Cmd: "iptables-save"}); r.Code != 0 || r.Stdout != oldRules {
		t.Errorf("rules after the refused restore:\n%s\nwant:\n%s", r.Stdout, oldRules)
	}
	// the server still answers, and a request under the limit works
	if r := call(t, path, Request{Cmd: "iptables-restore", Input: "*filter\n-A INPUT -j DROP\nCOMMIT\n"}); r.Code != 0 {
		t.Errorf("restore under the limit: %+v", r)
	}
}

func TestCheckSize(t *testing.T) {
	if err := CheckSize(MaxRequest); err != nil {
		t.Error(err)
	}
	err := CheckSize(MaxRequest + 1)
	if err == nil || !strings.Contains(err.Error(), "limit of 64 MiB (67108864 bytes)") {
		t.Errorf("over the limit: %v", err)
	}
}
