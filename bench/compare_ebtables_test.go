package bench

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// The ebtables rows of the kernel comparison: new bridged frames through
// N ebtables filter FORWARD rules (rulegen.EbtablesForward; the frame
// matches none of them, or only the last), through the kernel's bridge
// with ebtables-nft and through uswitch's bridge (Engine.ReceiveFrame,
// linear walk and compiled classifier), measured interleaved in one run.
// This kernel has no legacy ebtables tables, so that column stays empty.
//
// The kernel is timed through write(2) on a TAP device, as the TUN rows
// are: tun_get_user hands the frame to netif_receive_skb in the writing
// call, so br_handle_frame → bridge PREROUTING → the FDB lookup → bridge
// FORWARD (ebtables filter) → POSTROUTING → veth xmit all run inside the
// write. The namespace:
//
//	writer ─write(2)→ tap0 (TAP) ─┐ br0 (no STP, no multicast snooping, ─→ veth0 ─→ veth0p
//	                              ┘      bridge-nf-call-* 0)                 (static FDB entry
//	                                                                           for the destination)
//
// veth0p drops each frame as PACKET_OTHERHOST. That a frame was bridged,
// not dropped, is checked on veth0's tx counter after each run. uswitch
// runs the same bridge (ports tap0 and veth0, the same static entry, no
// br_netfilter) and checks that each frame leaves by veth0.

func init() { compareExtras = append(compareExtras, compareEbtables) }

// compareEbtables measures the ebtables rows of the full run (100, 1000
// and 10000 rules, as far as USWITCH_COMPARE_MAXN lets the filter sweep
// go) and returns their tables.
func compareEbtables(t *testing.T, cfg compareCfg) string {
	var ns []int
	for _, n := range cfg.filterNs {
		if n == 100 || n == 1000 || n == 10000 {
			ns = append(ns, n)
		}
	}
	var out strings.Builder
	for _, s := range ebtSweeps(t, cfg, ns) {
		writeTable(&out, s)
	}
	return out.String()
}

// ebtSweeps measures the ebtables rows: a sweep over ns with the frame
// matching no rule, and one with it matching the last of 1,000 (of the
// one size when ns has one).
func ebtSweeps(t *testing.T, cfg compareCfg, ns []int) []sweep {
	needEbtRig(t)
	none := sweep{title: "(e) ebtables filter FORWARD, N rules none match, new bridged frame", unit: "rules"}
	none.base = measureEbtPoint(t, cfg, "ebt base", "")
	for _, n := range ns {
		p := measureEbtPoint(t, cfg, fmt.Sprintf("ebt %d", n), rulegen.EbtablesForward(n))
		p.n = n
		none.rows = append(none.rows, p)
	}
	last := sweep{title: "(f) ebtables filter FORWARD, policy DROP, N rules, the frame matches the last", unit: "rules"}
	last.base = none.base
	for _, n := range ns {
		if n != 1000 && len(ns) > 1 {
			continue
		}
		p := measureEbtPoint(t, cfg, fmt.Sprintf("ebt last %d", n), rulegen.EbtablesForwardLast(n))
		p.n = n
		last.rows = append(last.rows, p)
	}
	return []sweep{none, last}
}

// TestCompareKernelEbtables measures only the ebtables rows and prints
// their tables (bench/compare.sh has them in the full comparison). It runs
// only with USWITCH_COMPARE=1, as root, tuned as TestCompareKernel is;
// USWITCH_COMPARE_EBT_N (100,1000,10000) lists the sizes.
func TestCompareKernelEbtables(t *testing.T) {
	if os.Getenv("USWITCH_COMPARE") != "1" {
		t.Skip("the kernel comparison takes minutes: run bench/compare.sh (or set USWITCH_COMPARE=1)")
	}
	needEbtRig(t)
	runs, rt := compareRuns(t)
	var ns []int
	for _, f := range strings.Split(envOr("USWITCH_COMPARE_EBT_N", "100,1000,10000"), ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			t.Fatalf("USWITCH_COMPARE_EBT_N: %q", f)
		}
		ns = append(ns, n)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nuswitch vs kernel, ns/frame (%d CPUs, %s; median of %d runs of %v each)\n\n", runtime.NumCPU(), runtime.Version(), runs, rt)
	for _, s := range ebtSweeps(t, compareCfg{runs: runs, runTime: rt}, ns) {
		writeTable(&out, s)
	}
	fmt.Print(out.String())
}

// TestCompareKernelEbtablesSmoke runs the ebtables rows' harness at one
// point, 100 rules, briefly: the namespace bridge, the TAP timing and the
// bridged-frame checks work. Root only; a few seconds.
func TestCompareKernelEbtablesSmoke(t *testing.T) {
	needEbtRig(t)
	ebtSweeps(t, compareCfg{runs: 1, runTime: 100 * time.Millisecond}, []int{100})
}

func needEbtRig(t *testing.T) {
	labtest.TUN(t)
	testtools.Need(t, "ip", "bridge", "ebtables-restore", "sysctl")
}

// ebtFrame is the frame of every ebtables point.
func ebtFrame(t testing.TB) []byte {
	src, err1 := packet.ParseMAC(rulegen.EbtSrcMAC)
	dst, err2 := packet.ParseMAC(rulegen.EbtDstMAC)
	sp, _, err3 := packet.ParseSpec("udp 10.0.1.2:1024 > 192.168.1.2:53 len 18")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	return packet.BuildFrame(dst, src, packet.EtherTypeIPv4, packet.Build(sp))
}

// measureEbtPoint loads ruleset ("" none) into the kernel's bridge and
// two uswitch engines, warms each up, then runs them in turn cfg.runs
// times and returns each one's median ns/frame.
func measureEbtPoint(t *testing.T, cfg compareCfg, name, ruleset string) point {
	var pt point
	t.Run(strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
		frame := ebtFrame(t)
		k := newEbtRig(t)
		if ruleset != "" {
			t0 := time.Now()
			k.restore(t, ruleset, "ebtables-restore")
			t.Logf("%s kernel-nft: ebtables-restore %v", name, time.Since(t0).Round(time.Millisecond))
		}
		var usw [2]*ebtUsw
		for i, linear := range []bool{true, false} {
			usw[i] = newEbtUsw(t, ruleset, linear)
		}
		run := func(e int, d time.Duration, max int) (float64, int) {
			switch e {
			case kernelNFT:
				return k.run(t, frame, d, max)
			case kernelLegacy:
				return math.NaN(), 0 // no legacy ebtables tables in this kernel
			default:
				return usw[e-uswLinear].run(t, frame, d, max)
			}
		}
		for e := 0; e < numEngines; e++ { // warm up
			run(e, cfg.runTime/10, 1000)
		}
		var samples [numEngines][]float64
		var counts [numEngines][]int
		for r := 0; r < cfg.runs; r++ {
			for e := 0; e < numEngines; e++ {
				ns, n := run(e, cfg.runTime, math.MaxInt)
				samples[e] = append(samples[e], ns)
				counts[e] = append(counts[e], n)
			}
		}
		for e := range pt.ns {
			pt.ns[e] = median(samples[e])
			if e == kernelLegacy {
				continue
			}
			t.Logf("%s %-16s median %8.0f ns/frame  runs %v  frames %v", name, engineNames[e], pt.ns[e], roundAll(samples[e]), counts[e])
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return pt
}

// ebtRig is a namespace with the TAP → br0 → veth path.
type ebtRig struct {
	nsRig // the TAP is tap0
}

func newEbtRig(t *testing.T) *ebtRig {
	r := &ebtRig{newTapBridge(t, "uebt", "veth0", []string{"link", "set", "br0", "multicast", "off"})}
	// with br_netfilter loaded, bridged IPv4 would also cross the
	// (empty) iptables hooks: off, as on uswitch's side (-e: absent
	// without the module)
	labtest.In(t, r.ns, "sysctl", "-qew", "net.bridge.bridge-nf-call-iptables=0",
		"net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0")
	labtest.In(t, r.ns, "bridge", "fdb", "add", rulegen.EbtDstMAC, "dev", "veth0", "master", "static")
	r.handle(t)
	return r
}

// run writes the frame into the TAP until max frames or d has passed; it
// fails t unless veth0 sent every frame.
func (r *ebtRig) run(t *testing.T, frame []byte, d time.Duration, max int) (float64, int) {
	return r.writeTimed(t, d, max, "veth0", r.ns, "frames", func(int) []byte { return frame })
}

// ebtUsw is a uswitch engine with the same bridge.
type ebtUsw struct {
	e   *datapath.Engine
	buf []byte
	ff  datapath.FrameFate
	now int64
}

func newEbtUsw(t testing.TB, ruleset string, linear bool) *ebtUsw {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	cfg := datapath.Config{FIB: fib, Linear: linear, Bridges: []datapath.BridgeConfig{{
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "tap0", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "veth0", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
		Entries: []fdb.ShowEntry{{MAC: rulegen.EbtDstMAC, Dev: "veth0", Master: "br0", State: "static"}},
	}}}
	if ruleset != "" {
		rs, err := (&ebtables.Loader{}).Load(ruleset)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Ebtables = rs
	}
	e := datapath.New(cfg, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	return &ebtUsw{e: e, buf: make([]byte, 2048), now: 1e9}
}

// run sends the frame through the engine until max frames or d has
// passed and fails t unless each left by veth0.
func (u *ebtUsw) run(t *testing.T, frame []byte, d time.Duration, max int) (float64, int) {
	bad := ""
	n, el := timedLoop(d, max, func(int) {
		u.now++
		b := u.buf[:len(frame)]
		copy(b, frame)
		u.e.ReceiveFrameInto(&u.ff, b, "tap0", u.now, nil)
		if (len(u.ff.Out) != 1 || u.ff.Out[0].Port != "veth0" || u.ff.Drop != "") && bad == "" {
			bad = u.ff.String()
		}
	})
	if bad != "" {
		t.Fatalf("uswitch: frame not bridged to veth0: %s", bad)
	}
	return float64(el.Nanoseconds()) / float64(n), n
}

// BenchmarkBridgeEbtablesForward is the uswitch side of the ebtables
// rows without the kernel: a new bridged frame through
// Engine.ReceiveFrameInto with no rule set (base: the bridge alone) and
// with 1,000 filter FORWARD rules matching none or the last, linear
// walk and compiled classifier. No root needed.
func BenchmarkBridgeEbtablesForward(b *testing.B) {
	for _, rs := range []struct{ name, text string }{
		{"base", ""},
		{"none", rulegen.EbtablesForward(1000)},
		{"last", rulegen.EbtablesForwardLast(1000)},
	} {
		for _, mode := range []string{"walk", "compiled"} {
			if rs.text == "" && mode == "walk" {
				continue // no rule to walk
			}
			b.Run(rs.name+"/"+mode, func(b *testing.B) {
				u := newEbtUsw(b, rs.text, mode == "walk")
				frame := ebtFrame(b)
				b.ReportAllocs()
				for b.Loop() {
					u.now++
					buf := u.buf[:len(frame)]
					copy(buf, frame)
					u.e.ReceiveFrameInto(&u.ff, buf, "tap0", u.now, nil)
				}
				if len(u.ff.Out) != 1 || u.ff.Out[0].Port != "veth0" {
					b.Fatalf("frame not bridged to veth0: %s", u.ff.String())
				}
			})
		}
	}
}
