package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// The bridged rows of the kernel comparison: one established UDP flow
// between two hosts on a bridge, frames of 64 bytes from hostA to hostB,
// through the kernel's bridge in a namespace and through a
// datapath.Worker's ReceiveFrameInto (as the lab's workers run frames),
// measured in the same run as the routed rows.
//
// The kernel is timed through write(2) on a TAP device, as the routed
// rows through a TUN: tun_get_user hands the frame to
// netif_receive_skb in the writing call, so br_handle_frame, the bridge
// hooks (ebtables, br_netfilter's IPv4 hooks, conntrack), the FDB
// lookup and the veth's xmit all run inside the write:
//
//	writer ─write(2)→ tap0 (TAP) ─ br0 ─[bridge hooks, br_netfilter]→ eth1 (veth) ─→ eth1p
//	hostA 02:00:00:00:00:0a (10.1.0.1) behind tap0, hostB 02:00:00:00:00:0b (10.1.0.2) behind eth1
//
// eth1p's own MAC is not hostB's: it drops each frame as
// PACKET_OTHERHOST. That the frames were bridged is checked on eth1's tx
// counter after each run. Both sides learn hostA from the flow's first
// frame and hostB from its answer, which makes the flow established
// (the answer goes into eth1 from eth1p through a packet socket and is
// read back from the TAP).
//
// Rows: "bridge": no rules at all (br_netfilter on, but without rules
// nothing registers conntrack); "eb+nf+ct": ebtables in nat PREROUTING,
// filter FORWARD and nat POSTROUTING (bridgeEbtables), and iptables
// FORWARD with conntrack (bridgeIPT). The kernel-legacy column uses
// iptables-legacy with ebtables-nft: this kernel has no legacy ebtables
// tables. uswitch-linear is Config.Linear (no classifier, no flow
// cache), uswitch-compiled the default (the bridged flow cache).

// bridgeIPT is iptables' part: FORWARD accepts established connections
// and new bridged ones (the rule set of datapath's bridge tests).
const bridgeIPT = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m physdev --physdev-is-bridged -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`

// bridgeEbtables is ebtables' part (datapath's benchEbtables with this
// rig's port names): a mark in nat PREROUTING, filter FORWARD rules the
// flow passes before the one that accepts it, a nat POSTROUTING rule.
const bridgeEbtables = `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A FORWARD -p ARP -j ACCEPT
-A FORWARD -p IPv4 --ip-proto tcp --ip-dport 22 -j DROP
-A FORWARD -s 02:00:00:00:00:99 -j DROP
-A FORWARD -p IPv4 --ip-src 10.1.0.0/24 -j ACCEPT
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 --ip-proto udp -j mark --mark-or 0x1 --mark-target CONTINUE
-A POSTROUTING -o eth1 -p IPv4 -j CONTINUE
`

var (
	brHostA = packet.MAC{2, 0, 0, 0, 0, 0x0a}
	brHostB = packet.MAC{2, 0, 0, 0, 0, 0x0b}
)

// The flow: 64-byte frames from hostA, and hostB's answer.
const (
	brSpecAB = "udp 10.1.0.1:1000 > 10.1.0.2:53 len 22"
	brSpecBA = "udp 10.1.0.2:53 > 10.1.0.1:1000 len 22"
)

func init() { compareExtras = append(compareExtras, compareBridge) }

// compareBridge measures the bridged rows and returns their table.
func compareBridge(t *testing.T, cfg compareCfg) string {
	testtools.Need(t, "ebtables-restore")
	base := measureBridgePoint(t, cfg, "bridge", false)
	full := measureBridgePoint(t, cfg, "eb+nf+ct", true)
	var b strings.Builder
	fmt.Fprintf(&b, "(d) bridged established UDP flow, 64-byte frames, ebtables + br_netfilter + conntrack — ns/frame\n")
	writeHeader(&b, "")
	writeRow(&b, "bridge", base.ns)
	writeRow(&b, "eb+nf+ct", full.ns)
	fmt.Fprintln(&b)
	return b.String()
}

// TestCompareKernelBridgeSmoke runs the bridged rows' harness briefly
// for every engine: the namespace, the TAP timing, the kernel's
// bridging and the flow cache's use are checked. Root only.
func TestCompareKernelBridgeSmoke(t *testing.T) {
	needKernelRig(t)
	testtools.Need(t, "ebtables-restore")
	cfg := compareCfg{runs: 1, runTime: 100 * time.Millisecond}
	measureBridgePoint(t, cfg, "eb+nf+ct", true)
}

// measureBridgePoint sets up the four engines with or without the
// rules, runs them in turn cfg.runs times and returns each one's median
// ns/frame.
func measureBridgePoint(t *testing.T, cfg compareCfg, name string, rules bool) point {
	var pt point
	t.Run("bridged-"+name, func(t *testing.T) {
		ab := packet.BuildFrame(brHostB, brHostA, packet.EtherTypeIPv4, build(t, brSpecAB))
		var rigs [2]*bridgeRig
		for i, legacy := range []bool{false, true} {
			rigs[i] = newBridgeRig(t, legacy, rules)
		}
		var usw [2]*bridgeRunner
		for i, linear := range []bool{true, false} {
			usw[i] = newBridgeRunner(t, linear, rules)
		}
		run := func(e int, d time.Duration) (float64, int) {
			switch e {
			case kernelNFT, kernelLegacy:
				return rigs[e].run(t, ab, d)
			default:
				return usw[e-uswLinear].run(t, ab, d)
			}
		}
		for e := 0; e < numEngines; e++ { // warm up
			run(e, cfg.runTime/10)
		}
		var samples [numEngines][]float64
		for r := 0; r < cfg.runs; r++ {
			for e := 0; e < numEngines; e++ {
				ns, _ := run(e, cfg.runTime)
				samples[e] = append(samples[e], ns)
			}
		}
		for e := range pt.ns {
			pt.ns[e] = median(samples[e])
			t.Logf("bridged %s %-16s median %8.0f ns/frame  runs %v", name, engineNames[e], pt.ns[e], roundAll(samples[e]))
		}
		if rules && !usw[1].cached {
			t.Errorf("uswitch-compiled: the established frames did not come from the bridged flow cache")
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return pt
}

// bridgeRunner is one uswitch engine with the bridge br0 (ports tap0
// and eth1) and its frame state.
type bridgeRunner struct {
	e      *datapath.Engine
	wk     *datapath.Worker // runs the timed frames, as link's workers do
	buf    []byte
	ff     datapath.FrameFate
	now    int64
	cached bool // the last run's frames came from the bridged flow cache
}

func newBridgeRunner(t *testing.T, linear, rules bool) *bridgeRunner {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	cfg := datapath.Config{FIB: fib, Linear: linear, Bridges: []datapath.BridgeConfig{{
		CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "tap0", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "eth1", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
	}}}
	if rules {
		if cfg.Rules, err = (&iptables.Loader{}).LoadString(bridgeIPT); err != nil {
			t.Fatal(err)
		}
		es, eerr := (&ebtables.Loader{}).Load(bridgeEbtables)
		if eerr != nil {
			t.Fatal(eerr)
		}
		cfg.Ebtables = es
	}
	u := &bridgeRunner{e: datapath.New(cfg, conntrack.DefaultConfig(), 1), buf: make([]byte, 2048), now: 1e9}
	if u.e.BridgeErr != nil {
		t.Fatal(u.e.BridgeErr)
	}
	u.wk = u.e.NewWorker(0)
	ba := packet.BuildFrame(brHostA, brHostB, packet.EtherTypeIPv4, build(t, brSpecBA))
	ab := packet.BuildFrame(brHostB, brHostA, packet.EtherTypeIPv4, build(t, brSpecAB))
	for _, s := range []struct {
		frame    []byte
		in, want string
	}{{ab, "tap0", "eth1"}, {ba, "eth1", "tap0"}, {ab, "tap0", "eth1"}} {
		u.now++
		f := u.e.ReceiveFrame(append([]byte(nil), s.frame...), s.in, u.now, nil)
		if len(f.Out) != 1 || f.Out[0].Port != s.want {
			t.Fatalf("uswitch: frame in %s: %v, want out %s", s.in, f, s.want)
		}
	}
	return u
}

// linkBatch is the frames a link worker runs between counter flushes
// (its read batch).
const linkBatch = 64

// run sends frame through a Worker on tap0 for d, flushing its counters
// every linkBatch frames as link's workers do, and returns ns/frame and
// the frames sent.
func (u *bridgeRunner) run(t *testing.T, frame []byte, d time.Duration) (float64, int) {
	bad := ""
	cached := true
	n, el := timedLoop(d, 1<<62, func(i int) {
		u.now++
		copy(u.buf, frame)
		u.wk.ReceiveFrameInto(&u.ff, u.buf[:len(frame)], "tap0", u.now, nil)
		if (len(u.ff.Out) != 1 || u.ff.Out[0].Port != "eth1") && bad == "" {
			bad = u.ff.String()
		}
		cached = cached && u.ff.FlowCached
		if i&(linkBatch-1) == linkBatch-1 {
			// a link worker adds its batch's replayed counters when
			// the batch is done
			u.wk.FlushHits()
		}
	})
	u.wk.FlushHits()
	if bad != "" {
		t.Fatalf("uswitch: frame not bridged out eth1: %s", bad)
	}
	u.cached = cached
	return float64(el.Nanoseconds()) / float64(n), n
}

// bridgeRig is a namespace with the TAP → bridge → veth path.
type bridgeRig struct {
	nsRig // the TAP is tap0
}

// newBridgeRig makes the namespace (removed at cleanup, also on
// failure), loads the rules when asked (iptables-legacy for legacy) and
// establishes the flow.
func newBridgeRig(t *testing.T, legacy, rules bool) *bridgeRig {
	r := &bridgeRig{newTapBridge(t, "ubr", "eth1")}
	labtest.In(t, r.ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	if rules {
		tool := "iptables-restore"
		if legacy {
			tool = "iptables-legacy-restore"
		}
		r.restore(t, bridgeIPT, tool, "-w")
		r.restore(t, bridgeEbtables, "ebtables-restore")
	}
	r.handle(t)
	r.establish(t)
	return r
}

// establish sends the flow's first frame (flooded to eth1), its answer
// from eth1p (bridged to tap0, read back) and a second frame (bridged
// to eth1): both sides are learned and the connection is established.
func (r *bridgeRig) establish(t *testing.T) {
	ab := packet.BuildFrame(brHostB, brHostA, packet.EtherTypeIPv4, build(t, brSpecAB))
	ba := packet.BuildFrame(brHostA, brHostB, packet.EtherTypeIPv4, build(t, brSpecBA))
	write := func() {
		before := r.tx(t, "eth1")
		if _, err := unix.Write(r.fd, ab); err != nil {
			t.Fatal(err)
		}
		if r.tx(t, "eth1") == before {
			t.Fatalf("%s: the frame from hostA was not bridged out eth1", r.ns)
		}
	}
	write()
	peer, err := r.h.LinkByName("eth1p")
	if err != nil {
		t.Fatal(err)
	}
	labtest.InNetns(t, r.ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: peer.Attrs().Index, Halen: 6}
		copy(sa.Addr[:], brHostA[:])
		return unix.Sendto(fd, ba, 0, sa)
	})
	buf := make([]byte, 2048)
	deadline := time.Now().Add(2 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 500); err != nil || n == 0 {
			t.Fatalf("%s: hostB's answer was not bridged out tap0 (%v)", r.ns, err)
		}
		n, err := unix.Read(r.fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 14 && packet.MAC(buf[0:6]) == brHostA && packet.MAC(buf[6:12]) == brHostB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: hostB's answer was not bridged out tap0", r.ns)
		}
	}
	write()
}

// run writes frame into the TAP until d has passed; it fails t unless
// eth1 sent every frame, and returns ns/frame and the frames sent.
func (r *bridgeRig) run(t *testing.T, frame []byte, d time.Duration) (float64, int) {
	return r.writeTimed(t, d, 1<<62, "eth1", r.ns, "frames", func(int) []byte { return frame })
}
