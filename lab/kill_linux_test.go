package lab

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// killLab: a client and a server on two TUNs, one queue each, with a
// datapath-stall from 6s to 7s and a datapath-kill from 8s to 9s (late
// enough that a loaded machine has the lab up and the first ping done).
const killLab = `
name = "kill"
[uswitch]
workers = 1
queues = 1
seed = 5
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "kc"
netns = "P-c"
addresses = ["10.21.1.1/24"]
[[interface]]
name = "ks"
netns = "P-s"
addresses = ["10.21.2.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.21.1.2/24"]
routes = ["default via 10.21.1.1"]
[[namespace]]
name = "P-s"
addresses = ["10.21.2.2/24"]
routes = ["default via 10.21.2.1"]

[[fault]]
name = "stall"
action = "datapath-stall"
schedule = { start = "6s", stop = "7s" }

[[fault]]
name = "kill"
action = "datapath-kill"
schedule = { start = "8s", stop = "9s" }
`

// TestLabKillStall: datapath-stall and datapath-kill in a TUN lab, with
// real traffic. While stalled, what the client sends waits in its TUN's
// queue (txqueuelen, here 16) and the kernel drops the rest (the
// device's tx dropped counter); when the stall ends the queued
// datagrams arrive: every datagram either arrives or is counted
// dropped by the kernel. While killed, the TUN queues are closed: the
// device stays with its address but has no carrier, ping fails and
// datagrams are dropped; after the window the datapath restarts and
// both go through again.
func TestLabKillStall(t *testing.T) {
	needRoot(t)
	testtools.Need(t, "ip", "ping")
	c, p := prefixedConfig(t, "kill.toml", killLab)
	l := upLab(t, c)
	cli, srv := p+"-c", p+"-s"
	in := func(ns string, args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	txDropped := func() uint64 {
		out, err := in(cli, "ip", "-s", "-j", "link", "show", "kc")
		if err != nil {
			t.Fatalf("ip -s link: %v %s", err, out)
		}
		var v []struct {
			Flags   []string `json:"flags"`
			Stats64 struct {
				TX struct {
					Dropped uint64 `json:"dropped"`
				} `json:"tx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
			t.Fatalf("ip -s -j link: %v %s", err, out)
		}
		return v[0].Stats64.TX.Dropped
	}
	if out, err := in(cli, "ip", "link", "set", "kc", "txqueuelen", "16"); err != nil {
		t.Fatalf("txqueuelen: %v %s", err, out)
	}
	var pc net.PacketConn
	if err := inNetns(l.nss[srv], func() error {
		var err error
		pc, err = net.ListenPacket("udp4", "10.21.2.2:9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	conn, err := l.Dial(cli, "udp4", "10.21.2.2:9000", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(n int) {
		for range n {
			conn.Write(make([]byte, 32))
		}
	}
	// until sleeps until at on the lab's clock (not at all once it has
	// passed: what must happen inside a window is checked by within)
	until := func(at time.Duration) {
		if d := at - time.Duration(l.dp.Now()); d > 0 {
			time.Sleep(d)
		}
	}
	// within fails the test if the lab's clock has reached end, the end
	// of the window what the test did since it began was meant for
	within := func(what string, end time.Duration) {
		if now := time.Duration(l.dp.Now()); now >= end {
			t.Fatalf("%s: at %v on the lab's clock, past the window's end %v (a loaded machine?)", what, now, end)
		}
	}
	ping := func() error {
		out, err := in(cli, "ping", "-c1", "-W1", "10.21.2.2")
		if err != nil {
			return &pingError{out}
		}
		return nil
	}
	if err := ping(); err != nil {
		t.Fatalf("before the faults: %v", err)
	}

	// waitFor waits until cond holds (the fault set's ticker, every
	// 10 ms, starts a stall or a kill: late on a loaded machine), at
	// most until deadline on the lab's clock
	waitFor := func(what string, cond func() bool, deadline time.Duration) {
		for !cond() {
			if time.Duration(l.dp.Now()) > deadline {
				t.Fatalf("%s had not begun at %v on the lab's clock (a loaded machine?)", what, deadline)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// the stall
	until(6200 * time.Millisecond)
	waitFor("the stall", l.dp.Stalled, 6600*time.Millisecond)
	d0 := txDropped()
	got.Store(0)
	const burst = 100
	send(burst)
	time.Sleep(300 * time.Millisecond)
	during := got.Load()
	within("the stall's burst", 7000*time.Millisecond)
	until(7300 * time.Millisecond)
	dropped := txDropped() - d0
	arrived := got.Load()
	t.Logf("stall: %d of %d arrived during it, %d after; the kernel dropped %d", during, burst, arrived, dropped)
	if during != 0 {
		t.Errorf("stall: %d datagrams went through while stalled", during)
	}
	// in hand: what the reader's last read returned (at most a batch,
	// 64) when the stall began
	if arrived < 16 || arrived > 16+64 || int(arrived)+int(dropped) != burst {
		t.Errorf("stall: %d arrived after it and %d dropped by the kernel, want the 16 the TUN queue holds (and what the reader had in hand) to arrive and the rest of %d dropped", arrived, dropped, burst)
	}

	// the kill
	until(8200 * time.Millisecond)
	waitFor("the kill", l.dp.Killed, 8600*time.Millisecond)
	out, err := in(cli, "ip", "-j", "addr", "show", "kc")
	if err != nil || !strings.Contains(out, "10.21.1.2") || !strings.Contains(out, "NO-CARRIER") {
		t.Errorf("killed: the client's TUN should be there, with its address and no carrier: %v %s", err, out)
	}
	got.Store(0)
	send(10)
	// the ping's request leaves now, inside the window; its answer
	// would come within the second it waits
	within("the kill's datagrams", 9000*time.Millisecond)
	if err := ping(); err == nil {
		t.Errorf("killed: ping went through")
	}
	if n := got.Load(); n != 0 {
		t.Errorf("killed: %d datagrams went through", n)
	}
	until(9300 * time.Millisecond)
	select {
	case err := <-l.dp.Err():
		t.Errorf("datapath: %v", err)
	default:
	}
	if err := ping(); err != nil {
		o1, _ := in(cli, "ip", "-s", "link", "show", "kc")
		o2, _ := in(srv, "ip", "-s", "link", "show", "ks")
		t.Logf("%s\n%s", o1, o2)
		t.Errorf("after the restart: %v", err)
	}
	got.Store(0)
	send(10)
	time.Sleep(200 * time.Millisecond)
	if n := got.Load(); n != 10 {
		t.Errorf("after the restart: %d of 10 datagrams arrived", n)
	}
	if n := l.dp.Kills(); n != 1 {
		t.Errorf("kills %d, want 1", n)
	}
	var b strings.Builder
	l.dp.Faults().WriteList(&b)
	t.Logf("%s%v", b.String(), l.dp.Stats())
	if !strings.Contains(b.String(), "kills 1") || !strings.Contains(b.String(), "stalls 1") || strings.Contains(b.String(), "errors") {
		t.Errorf("fault list:\n%s", b.String())
	}
}

type pingError struct{ out string }

func (e *pingError) Error() string { return "ping: " + e.out }
