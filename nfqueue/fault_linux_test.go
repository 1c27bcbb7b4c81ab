package nfqueue

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
)

// faultEngine is uswitch's engine on the router's captured state with
// rule set rs and the faults of the fault file text ff (hook faults as
// stages, state faults bound), and a server on the router's queue
// (offload: with Options.Offload).
func (tp *topo) faultServer(t *testing.T, rs, ff string, offload ...bool) (*Server, *datapath.Engine, *fault.Set) {
	t.Helper()
	dir := t.TempDir()
	if err := host.Capture(dir, tp.router); err != nil {
		t.Fatal(err)
	}
	s, err := host.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.EngineConfig()
	if cfg.Rules, err = (&iptables.Loader{}).LoadString(rs); err != nil {
		t.Fatal(err)
	}
	file, err := fault.ParseFile("faults", []byte(ff))
	if err != nil {
		t.Fatal(err)
	}
	set, err := fault.NewSet(file.Faults, file.Experiment.Seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range set.Hooks() {
		cfg.Faults = append(cfg.Faults, f)
	}
	eng := datapath.New(cfg, s.ConntrackConfig(), 1)
	srv, err := Start(eng, s.FIB.LinkName, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf, Faults: set,
		Offload: len(offload) > 0 && offload[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	set.SetEpoch(srv.Now())
	set.BindState(eng.CT, eng.NAT)
	set.BindHost(&faulthost.Host{Eng: eng, KillFn: srv.Kill, StallFn: srv.Stall})
	return srv, eng, set
}

// evictRules: the DNAT of a service address; FORWARD accepts the
// backend's port whatever the connection's state.
const evictRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.77.9.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.77.2.2:8001
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8001 -j ACCEPT
COMMIT
`

var dnatLine = regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A PREROUTING -d 10\.77\.9\.9/32 .*-j DNAT`)

// dnatPackets is the DNAT rule's packet counter in iptables-save -c
// output.
func dnatPackets(t *testing.T, save string) string {
	t.Helper()
	m := dnatLine.FindStringSubmatch(save)
	if m == nil {
		t.Fatalf("no DNAT rule with counters in\n%s", save)
	}
	return m[1]
}

// echoFlow opens a TCP connection to the service, echoes "one",
// calls between, echoes "two" on the same connection, and reports the
// DNAT counter before and after between and whether "two" came back.
func (tp *topo) echoFlow(t *testing.T, counter func() string, between func()) (before, afterwards string, survived bool) {
	c, err := tp.dialFrom(t, "10.77.1.2", "10.77.9.9:80", 2*time.Second)
	if err != nil {
		t.Fatalf("dial the service: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	echo := func(s string) bool {
		if _, err := c.Write([]byte(s)); err != nil {
			return false
		}
		b := make([]byte, len(s))
		_, err := io.ReadFull(c, b)
		return err == nil && string(b) == s
	}
	if _, err := io.ReadFull(c, make([]byte, 16)); err != nil || !echo("one") {
		t.Fatalf("the first echo failed: %v", err)
	}
	// the client's ACK of the echo, before the eviction
	time.Sleep(100 * time.Millisecond)
	before = counter()
	between()
	survived = echo("two")
	time.Sleep(50 * time.Millisecond)
	return before, counter(), survived
}

// TestEvictAsKernel: a conntrack-evict fault mid-flow does what
// `conntrack -D` does on the kernel with the same rule set: the flow's
// next packet is picked up mid-stream (nf_conntrack_tcp_loose) as NEW
// and runs the nat table again, so the DNAT rule's counter goes 1 -> 2,
// and the connection survives (one backend). The kernel: the router's
// own iptables-nft with the rules, conntrack -D between two echoes.
// uswitch: the router queues in raw PREROUTING, uswitch NATs; the fault
// fires at the flow's second data packet (after_packets, matched on
// PSH), before conntrack.
func TestEvictAsKernel(t *testing.T) {
	testtools.Need(t, "conntrack", "iptables-restore", "iptables-save")
	type result struct {
		Before, After string
		Survived      bool
	}
	// the kernel
	kt := newTopo(t, "")
	kt.servers(t)
	cmd := exec.Command("ip", "netns", "exec", kt.router, "iptables-restore")
	cmd.Stdin = strings.NewReader(evictRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore: %v %s", err, out)
	}
	kcount := func() string {
		return dnatPackets(t, run(t, "ip", "netns", "exec", kt.router, "iptables-save", "-c", "-t", "nat"))
	}
	var deleted string
	var k result
	k.Before, k.After, k.Survived = kt.echoFlow(t, kcount, func() {
		deleted = run(t, "ip", "netns", "exec", kt.router, "conntrack", "-D", "-p", "tcp", "--dport", "80")
	})
	t.Logf("kernel: %+v (conntrack -D: %s)", k, strings.TrimSpace(deleted))

	// uswitch
	ut := newTopo(t, "-t raw -A PREROUTING -j NFQUEUE --queue-num %[1]d")
	srv, eng, set := ut.faultServer(t, evictRules, `[[fault]]
name = "evict"
action = "conntrack-evict"
filter = "-p tcp --dport 80"
match = "-p tcp --dport 80 -m tcp --tcp-flags PSH PSH"
schedule = { after_packets = 2 }
`)
	ut.servers(t)
	ucount := func() string {
		var b strings.Builder
		eng.Config().Rules.Save(&b, iptables.SaveOptions{Counters: true, Table: "nat"})
		return dnatPackets(t, b.String())
	}
	var u result
	u.Before, u.After, u.Survived = ut.echoFlow(t, ucount, func() {})
	var list strings.Builder
	set.WriteList(&list)
	t.Logf("uswitch: %+v\n%s%v", u, list.String(), srv.Stats())

	if want := (result{"1", "2", true}); k != want {
		t.Errorf("kernel: %+v, want %+v (the research note's check)", k, want)
	}
	if u != k {
		t.Errorf("uswitch: %+v, kernel: %+v", u, k)
	}
	if n := set.Faults[0].Affected(); n != 1 {
		t.Errorf("uswitch evicted %d entries, want 1", n)
	}
}

// udpEchoes sends n datagrams from one socket of the client and counts
// the echoes that come back within wait.
func (tp *topo) udpEchoes(t *testing.T, port, n int, wait time.Duration) int {
	var pc net.PacketConn
	var err error
	inNS(t, tp.client, func() { pc, err = net.ListenPacket("udp4", "10.77.1.2:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: net.IPv4(10, 77, 2, 2), Port: port}
	for i := range n {
		pc.WriteTo([]byte(fmt.Sprint(i)), dst)
	}
	got := 0
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return got
		}
		got++
	}
}

// TestVerdictFaults: faults on uswitch nfqueue's verdict path, in a
// namespace: a loss fault turns the verdicts of every other UDP
// datagram to 9001 into drops (every = 2: the echoes of 10 datagrams
// are 5), a delay fault holds the verdict of a TCP SYN to 8001 for
// 300 ms (the connection takes that long; meanwhile the kernel's queue
// shows the SYN waiting), and a duplicate fault sends a second copy of
// each ping request (ping counts the DUP! replies).
func TestVerdictFaults(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	srv, _, set := tp.faultServer(t, ruleSet, fmt.Sprintf(`[experiment]
seed = 3
[[fault]]
name = "lose"
at = "nfqueue:verdict"
match = "-p udp --dport 9001"
action = "loss"
every = 2
[[fault]]
name = "hold"
at = "nfqueue:%d:verdict"
match = "-p tcp --dport 8001 -m tcp --tcp-flags SYN,ACK SYN"
action = "delay"
delay = "300ms"
[[fault]]
name = "dup"
at = "nfqueue:verdict"
match = "-p icmp --icmp-type echo-request"
action = "duplicate"
`, tp.queue))
	tp.servers(t)
	if got := tp.udpEchoes(t, 9001, 10, time.Second); got != 5 {
		t.Errorf("udp: %d echoes of 10, want 5 (every other verdict dropped)", got)
	}

	// the SYN's verdict is held: the kernel queue shows it waiting
	type dial struct {
		c   net.Conn
		err error
		d   time.Duration
	}
	ch := make(chan dial, 1)
	go func() {
		start := time.Now()
		c, err := tp.dialTCP(t, 8001, 2*time.Second)
		ch <- dial{c, err, time.Since(start)}
	}()
	time.Sleep(150 * time.Millisecond)
	waiting := srv.Stats().Queues[0].Kernel.Depth
	r := <-ch
	if r.err != nil {
		t.Errorf("tcp 8001 with the SYN's verdict held: %v", r.err)
	} else {
		r.c.Close()
	}
	if r.d < 300*time.Millisecond || r.d > 1500*time.Millisecond {
		t.Errorf("connect took %v, want the held 300ms (and not a retransmission's second)", r.d)
	}
	if waiting != 1 {
		t.Errorf("kernel queue depth %d while the SYN's verdict was held, want 1", waiting)
	}

	out, err := exec.Command("ip", "netns", "exec", tp.client, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.77.2.2").CombinedOutput()
	if err != nil {
		t.Errorf("ping: %v\n%s", err, out)
	}
	// ping stops at its third reply: the third duplicate's reply may
	// come after it left
	if !strings.Contains(string(out), "3 received, +3 duplicates") && !strings.Contains(string(out), "3 received, +2 duplicates") {
		t.Errorf("ping: want 3 replies and their duplicates:\n%s", out)
	}
	time.Sleep(100 * time.Millisecond)
	vs := srv.VerdictFaults()
	var list strings.Builder
	set.WriteList(&list)
	t.Logf("%+v\n%s%v", vs, list.String(), srv.Stats())
	// held: the SYN's verdict and the three ping requests' (a
	// duplicating fault queues the original too, at no delay, after
	// its copy, as netem does)
	if vs.Dropped != 5 || vs.Held != 4 || vs.Duplicates != 3 || vs.DuplicateErrors != 0 {
		t.Errorf("verdict faults %+v: want 5 dropped, 4 held, 3 duplicates", vs)
	}
	// every id the kernel gave out got exactly one verdict
	if q := srv.Stats().Queues[0]; q.Verdicts != q.Packets || uint64(q.Kernel.IDSequence) != q.Packets || q.Kernel.Depth != 0 {
		t.Errorf("queue %+v: want a verdict for each packet, none waiting", q)
	}
}
