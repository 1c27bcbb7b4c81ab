package lab

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/packet"
)

// engineLab is a Lab with an engine but no namespaces or devices: the
// control commands run against it without root.
func engineLab(t *testing.T) *Lab {
	t.Helper()
	c, _ := testConfig(t)
	ec, ctc, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{cfg: c, eng: datapath.New(ec, ctc, 1)}
	t.Cleanup(func() { l.Close() })
	return l
}

func receive(t *testing.T, l *Lab, spec string) datapath.Fate {
	t.Helper()
	sp, meta, err := packet.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return l.eng.Receive(p, l.now(), nil)
}

// filterOnlyEstablished blocks every new flow; established ones go on.
const filterOnlyEstablished = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
	"-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"

func TestControlCommands(t *testing.T) {
	l := engineLab(t)
	if f := receive(t, l, "udp 10.10.1.2:5000 > 203.0.113.2:7 len 10 iif tc"); f.Kind != datapath.Forwarded || f.OutIf != "tw" {
		t.Fatalf("first packet: %v", f)
	}
	if f := receive(t, l, "udp 203.0.113.2:7 > 203.0.113.1:5000 len 10 iif tw"); f.Kind != datapath.Forwarded || f.OutIf != "tc" {
		t.Fatalf("reply: %v", f)
	}

	r := l.Control(control.Request{Cmd: "conntrack", Op: "L"})
	want := "udp      17 30 src=10.10.1.2 dst=203.0.113.2 sport=5000 dport=7 src=203.0.113.2 dst=203.0.113.1 sport=7 dport=5000 mark=0 use=1\n"
	if r.Code != 0 || r.Stdout != want || r.Stderr != "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n" {
		t.Errorf("conntrack -L: %+v\nwant %q", r, want)
	}
	if r := l.Control(control.Request{Cmd: "conntrack", Op: "C"}); r.Stdout != "1\n" {
		t.Errorf("conntrack -C: %+v", r)
	}

	save := func(table string) string {
		t.Helper()
		r := l.Control(control.Request{Cmd: "iptables-save", Counters: true, Table: table})
		if r.Code != 0 || r.Stderr != "" {
			t.Fatalf("iptables-save: %+v", r)
		}
		return r.Stdout
	}
	got := save("")
	for _, w := range []string{
		"[1:38] -A FORWARD -i tc -o tw -j ACCEPT\n",
		"[1:38] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
		"[1:38] -A POSTROUTING -o tw -j MASQUERADE\n",
		":FORWARD DROP [0:0]\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("iptables-save -c lacks %q:\n%s", w, got)
		}
	}

	// swap in a set that refuses new flows: the established one goes on
	// with its NAT binding, a new one is dropped
	if r := l.Control(control.Request{Cmd: "iptables-restore", Input: filterOnlyEstablished}); r.Code != 0 || r.Stderr != "" {
		t.Fatalf("iptables-restore: %+v", r)
	}
	if f := receive(t, l, "udp 10.10.1.2:5000 > 203.0.113.2:7 len 10 iif tc"); f.Kind != datapath.Forwarded {
		t.Errorf("established flow after the swap: %v", f)
	}
	if f := receive(t, l, "udp 10.10.1.2:5001 > 203.0.113.2:7 len 10 iif tc"); f.Kind != datapath.Dropped || f.By() != "filter:FORWARD:policy" {
		t.Errorf("new flow after the swap: %v", f)
	}
	got = save("")
	for _, w := range []string{
		// filter was flushed and counts afresh
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [1:38]\n:OUTPUT ACCEPT [0:0]\n[1:38] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n",
		// nat was not named: kept, with its counters
		"[1:38] -A POSTROUTING -o tw -j MASQUERADE\n",
		"-A SVC -p tcp -j DNAT --to-destination 10.10.3.2:8080\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("after the swap, iptables-save -c lacks %q:\n%s", w, got)
		}
	}

	// a bad set is refused with iptables-restore's words and exit code;
	// the running set is untouched
	r = l.Control(control.Request{Cmd: "iptables-restore", Input: "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n"})
	if r.Code != 2 || !strings.Contains(r.Stderr, "invalid port/service `99999' specified\nError occurred at line: 3\n") {
		t.Errorf("bad restore: %+v", r)
	}
	if after := save(""); after != got {
		t.Errorf("a refused restore changed the rules:\n%s", after)
	}
	if f := receive(t, l, "udp 10.10.1.2:5002 > 203.0.113.2:7 len 10 iif tc"); f.Kind != datapath.Dropped {
		t.Errorf("new flow after the refused restore: %v", f)
	}
	// --noflush adds to the running set
	if r := l.Control(control.Request{Cmd: "iptables-restore", NoFlush: true, Input: "*filter\n-A FORWARD -i tc -p udp -j ACCEPT\nCOMMIT\n"}); r.Code != 0 {
		t.Fatalf("iptables-restore --noflush: %+v", r)
	}
	if got := save("filter"); !strings.Contains(got, ":FORWARD DROP [2:76]\n") || !strings.Contains(got, "[1:38] -A FORWARD -m conntrack") || !strings.Contains(got, "[0:0] -A FORWARD -i tc -p udp -j ACCEPT\n") {
		t.Errorf("after --noflush:\n%s", got)
	}
	if r := l.Control(control.Request{Cmd: "iptables-save", Table: "nope"}); r.Code != 1 || r.Stderr != "Table `nope' does not exist\n" {
		t.Errorf("iptables-save -t nope: %+v", r)
	}

	m := l.Control(control.Request{Cmd: "metrics"}).Stdout
	for _, w := range []string{"# TYPE uswitch_conntrack_entries gauge\nuswitch_conntrack_entries 1\n", "uswitch_packets_received_total 0\n", `uswitch_conntrack_events_total{event="new"}`} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %q:\n%s", w, m)
		}
	}
	if r := l.Control(control.Request{Cmd: "frobnicate"}); r.Code != 2 {
		t.Errorf("unknown command: %+v", r)
	}
}

// TestControlSocket: the socket is its owner's only, answers requests,
// refuses a second instance, replaces a stale one and goes with Close.
func TestControlSocket(t *testing.T) {
	l := engineLab(t)
	path := filepath.Join(t.TempDir(), "run", "test.sock")
	if err := l.ListenControl(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v %v, want 0700", di.Mode(), err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(c).Encode(control.Request{Cmd: "iptables-save", Table: "nat"})
	var r control.Response
	if err := json.NewDecoder(c).Decode(&r); err != nil || r.Code != 0 || !strings.HasPrefix(r.Stdout, "*nat\n") {
		t.Errorf("over the socket: %+v %v", r, err)
	}
	c.Close()

	l2 := engineLab(t)
	if err := l2.ListenControl(path); err == nil || !strings.Contains(err.Error(), "another uswitch instance") {
		t.Errorf("second instance on the same socket: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	// a stale socket file (a crashed instance) is replaced
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := l2.ListenControl(path); err != nil {
		t.Errorf("over a stale socket: %v", err)
	}
}

func TestSocketPath(t *testing.T) {
	if p := control.SocketPath("default"); p != "/run/uswitch/default.sock" {
		t.Error(p)
	}
	if p := control.SocketPath("a/b"); p != "/run/uswitch/a_b.sock" {
		t.Error(p)
	}
}
