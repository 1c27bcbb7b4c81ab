package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// The kernel comparison: the same rule sets and packets through the Linux
// kernel's forwarding path in a namespace (iptables-nft and
// iptables-legacy) and through uswitch's Engine.Receive (linear reference
// walk and compiled classifier), measured interleaved in one run, as
// ns/packet.
//
// The kernel is timed through write(2) on a TUN device: tun_get_user
// hands the packet to netif_receive_skb in the writing call, so
// ip_rcv → PREROUTING → ip_forward → FORWARD → POSTROUTING → veth xmit
// all run, and are all timed, inside the write (drivers/net/tun.c,
// tun_rx_batched). Every point's namespace looks like this:
//
//	writer ─write(2)→ eth0 (TUN, 10.0.1.1/24) ─[ip_forward, netfilter]→ eth1 (veth, 192.168.1.1/24) ─→ eth1p
//	                                                                     neigh 192.168.1.2, .254 permanent
//
// The neighbours' MACs are not eth1p's, so eth1p drops each frame as
// PACKET_OTHERHOST at once, and nothing needs ARP. That a packet was
// forwarded, not dropped, is checked on eth1's tx counter after each run.
//
// uswitch is timed through runFlow/runPkt, the code path of the engine
// benchmarks, on datapathtest.RouterFIB (the same addresses: eth0 in,
// eth1 out, default via 192.168.1.254).
//
// Both track connections only when a rule needs it (the kernel registers
// conntrack's hooks in a namespace at nf_ct_netns_get; uswitch follows,
// datapath.needsConntrack), so the filter sweep and the baselines run
// untracked on both sides. Where they track, both tables are emptied
// before each run of new flows, and a run of DNAT+MASQUERADE flows (all
// SNATed to 192.168.1.1 towards one endpoint) is kept to natFlows, so
// port allocation never works in a nearly full port space.

// compareCfg is how long and how often each point is measured.
type compareCfg struct {
	runs     int           // repetitions; the median is reported
	runTime  time.Duration // one run's time budget
	maxFlows int           // new flows per run (bounded by conntrack tables)
	filterNs []int         // sweep (a) sizes
	kubeNs   []int         // sweep (b) sizes
	svg      string        // plot path ("" none)
}

// envOr returns the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// compareRuns is USWITCH_COMPARE_RUNS (3) and USWITCH_COMPARE_TIME (1s):
// how many runs of how long each engine gets at each point.
func compareRuns(t *testing.T) (int, time.Duration) {
	runs, err := strconv.Atoi(envOr("USWITCH_COMPARE_RUNS", "3"))
	if err != nil || runs < 1 {
		t.Fatalf("USWITCH_COMPARE_RUNS: %q", os.Getenv("USWITCH_COMPARE_RUNS"))
	}
	rt, err := time.ParseDuration(envOr("USWITCH_COMPARE_TIME", "1s"))
	if err != nil {
		t.Fatalf("USWITCH_COMPARE_TIME: %v", err)
	}
	return runs, rt
}

// TestCompareKernel is the full comparison (bench/compare.sh; README,
// "Comparing with the kernel"). It runs only with USWITCH_COMPARE=1, as
// root; USWITCH_COMPARE_RUNS (3), USWITCH_COMPARE_TIME (1s per run) and
// USWITCH_COMPARE_SVG (out/compare.svg, relative to bench/) tune it, and
// USWITCH_COMPARE_MAXN (30000) leaves out the larger sizes.
func TestCompareKernel(t *testing.T) {
	if os.Getenv("USWITCH_COMPARE") != "1" {
		t.Skip("the kernel comparison takes minutes: run bench/compare.sh (or set USWITCH_COMPARE=1)")
	}
	needKernelRig(t)
	runs, rt := compareRuns(t)
	maxN, err := strconv.Atoi(envOr("USWITCH_COMPARE_MAXN", "30000"))
	if err != nil {
		t.Fatalf("USWITCH_COMPARE_MAXN: %v", err)
	}
	upTo := func(ns ...int) []int {
		var out []int
		for _, n := range ns {
			if n <= maxN {
				out = append(out, n)
			}
		}
		return out
	}
	runCompare(t, compareCfg{
		runs: runs, runTime: rt, maxFlows: 60000,
		filterNs: upTo(100, 1000, 3000, 10000, 30000),
		kubeNs:   upTo(100, 1000, 10000, 30000),
		svg:      envOr("USWITCH_COMPARE_SVG", "out/compare.svg"),
	})
}

// TestCompareKernelSmoke runs the comparison's harness at one point, 100
// filter rules, for every engine, briefly: it proves the namespace, the
// TUN timing and the forwarding checks work. Root only; a few seconds.
func TestCompareKernelSmoke(t *testing.T) {
	needKernelRig(t)
	runCompare(t, compareCfg{
		runs: 1, runTime: 100 * time.Millisecond, maxFlows: 5000,
		filterNs: []int{100},
		svg:      t.TempDir() + "/compare.svg",
	})
}

func needKernelRig(t *testing.T) {
	labtest.TUN(t)
	testtools.Need(t, "ip", "iptables-restore", "iptables-legacy-restore", "conntrack", "sysctl")
}

// runCompare measures the sweeps cfg asks for, prints the tables and
// writes the plot.
func runCompare(t *testing.T, cfg compareCfg) {
	start := time.Now()
	var sweeps []sweep
	if len(cfg.filterNs) > 0 {
		s := sweep{title: "(a) filter FORWARD, N rules none match, new UDP flow", unit: "rules"}
		w := workload{spec: func(int) string { return "udp 10.0.1.2:1024 > 192.168.1.2:53" }, newFlows: true}
		s.base = measurePoint(t, cfg, "filter base", w, "")
		for _, n := range cfg.filterNs {
			s.rows = append(s.rows, measurePoint(t, cfg, fmt.Sprintf("filter %d", n), w, rulegen.FilterChain(n)))
			s.rows[len(s.rows)-1].n = n
		}
		sweeps = append(sweeps, s)
	}
	if len(cfg.kubeNs) > 0 {
		s := sweep{title: "(b) kube-proxy nat, N services, SYN to the last", unit: "services"}
		s.base = measurePoint(t, cfg, "kube base", workload{spec: kubeSpec, newFlows: true, n: 1}, "")
		for _, n := range cfg.kubeNs {
			s.rows = append(s.rows, measurePoint(t, cfg, fmt.Sprintf("kube %d", n),
				workload{spec: kubeSpec, newFlows: true, n: n, dnat: true}, rulegen.KubeProxy(n)))
			s.rows[len(s.rows)-1].n = n
		}
		sweeps = append(sweeps, s)
	}
	var est *point
	if len(cfg.kubeNs) > 0 { // the full run
		p := measurePoint(t, cfg, "established", workload{spec: func(int) string { return estData }, established: true}, natRules)
		est = &p
	}
	// more tables of the full run, measured by their own files
	// (compareExtras)
	var extras []string
	if len(cfg.kubeNs) > 0 {
		for _, f := range compareExtras {
			extras = append(extras, f(t, cfg))
		}
	}
	if t.Failed() {
		return
	}
	var out strings.Builder
	host, _ := os.Hostname()
	var uts unix.Utsname
	unix.Uname(&uts)
	machine := fmt.Sprintf("%s: %d CPUs (nproc), kernel %s, %s; median of %d runs of %v each; took %v",
		host, runtime.NumCPU(), unix.ByteSliceToString(uts.Release[:]), runtime.Version(), cfg.runs, cfg.runTime, time.Since(start).Round(time.Second))
	fmt.Fprintf(&out, "\nuswitch vs kernel, ns/packet (%s)\n\n", machine)
	for _, s := range sweeps {
		writeTable(&out, s)
	}
	if est != nil {
		fmt.Fprintf(&out, "(c) established TCP flow, DNAT + MASQUERADE (natRules) — ns/packet\n")
		writeHeader(&out, "")
		writeRow(&out, "estab NAT", est.ns)
		fmt.Fprintln(&out)
	}
	for _, x := range extras {
		out.WriteString(x)
	}
	if cfg.svg != "" {
		if err := writeSVGFile(cfg.svg, sweeps, "uswitch vs kernel — "+machine); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "plot: %s\n", cfg.svg)
	}
	fmt.Print(out.String())
}

// compareExtras measure more tables in the full run (after the
// sweeps, before the report) and return their text: each file of rows
// adds its own (compare_bridge_test.go).
var compareExtras []func(t *testing.T, cfg compareCfg) string

// workload is the packet a point sends.
type workload struct {
	spec        func(n int) string // the packet, by size
	n           int                // size handed to spec
	newFlows    bool               // every packet a new connection (source port varied)
	dnat        bool               // the kernel must DNAT it: the unDNATed destination is blackholed
	established bool               // one established flow (handshake first)
}

// kubeSpec is the SYN to the last of n services (as benchKubeFirst).
func kubeSpec(n int) string {
	vip := 0x0a600000 + uint32(n-1+10)
	return fmt.Sprintf("tcp 10.0.1.2:1024 > %d.%d.%d.%d:80 syn", vip>>24, vip>>16&0xff, vip>>8&0xff, vip&0xff)
}

// The established flow of BenchmarkEstablishedNAT: handshake, then data.
const (
	estSyn    = "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1"
	estSynAck = "tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7"
	estAck    = "tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2"
	estData   = "tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 psh len 64"
)

// natFlows bounds a run of new DNAT+MASQUERADE flows: a sixth of the
// 64512 source ports MASQUERADE picks from.
const natFlows = 10000

// measurePoint sets up all four engines with ruleset ("" is no rules at
// all), warms each up, then runs them in turn cfg.runs times and returns
// each one's median ns/packet. The namespaces go at the end of the point.
func measurePoint(t *testing.T, cfg compareCfg, name string, w workload, ruleset string) point {
	var pt point
	t.Run(strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
		tmpl := build(t, w.spec(w.n))
		maxFlows := cfg.maxFlows
		if w.dnat {
			maxFlows = min(maxFlows, natFlows)
		}
		var kpkts [][]byte
		if w.newFlows {
			kpkts = flowPackets(t, tmpl, maxFlows)
		} else {
			kpkts = [][]byte{tmpl}
		}
		var rigs [2]*kernelRig
		for i, legacy := range []bool{false, true} {
			r := newKernelRig(t, legacy)
			if ruleset != "" {
				t0 := time.Now()
				r.restore(t, ruleset)
				t.Logf("%s %s: restore %v", name, engineNames[i], time.Since(t0).Round(time.Millisecond))
			}
			if w.dnat {
				labtest.In(t, r.ns, "ip", "route", "add", "blackhole", "10.96.0.0/12")
			}
			if w.established {
				r.handshake(t)
			}
			rigs[i] = r
		}
		var usw [2]*uswRunner
		for i, linear := range []bool{true, false} {
			t0 := time.Now()
			usw[i] = newUswRunner(t, ruleset, linear, w)
			t.Logf("%s %s: load %v", name, engineNames[uswLinear+i], time.Since(t0).Round(time.Millisecond))
		}
		run := func(e int, d time.Duration, max int) (float64, int) {
			switch e {
			case kernelNFT, kernelLegacy:
				return rigs[e].run(t, kpkts, d, max, w.newFlows)
			default:
				return usw[e-uswLinear].run(t, tmpl, d, max)
			}
		}
		maxPkts := maxFlows
		if !w.newFlows {
			maxPkts = math.MaxInt
		}
		for e := 0; e < numEngines; e++ { // warm up
			run(e, cfg.runTime/10, min(maxPkts, 1000))
		}
		var samples [numEngines][]float64
		var counts [numEngines][]int
		for r := 0; r < cfg.runs; r++ {
			for e := 0; e < numEngines; e++ {
				ns, n := run(e, cfg.runTime, maxPkts)
				samples[e] = append(samples[e], ns)
				counts[e] = append(counts[e], n)
			}
		}
		for e := range pt.ns {
			pt.ns[e] = median(samples[e])
			t.Logf("%s %-16s median %8.0f ns/packet  runs %v  packets %v", name, engineNames[e], pt.ns[e], roundAll(samples[e]), counts[e])
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return pt
}

func roundAll(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(math.Round(x))
	}
	return out
}

// flowPackets makes n copies of tmpl, each a new flow the way runFlow
// makes one (source port, then source address, rewritten with
// incremental checksums).
func flowPackets(t testing.TB, tmpl []byte, n int) [][]byte {
	all := make([]byte, n*len(tmpl))
	out := make([][]byte, n)
	for i := range out {
		b := all[i*len(tmpl) : (i+1)*len(tmpl) : (i+1)*len(tmpl)]
		copy(b, tmpl)
		p := packet.Packet{Data: b}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		p.SetSrcPort(uint16(1024 + i%60000))
		p.SetSrc(p.Src + uint32(i/60000))
		out[i] = b
	}
	return out
}

// timedLoop calls send(i) for i = 0, 1, ... until max calls or d has
// passed (the clock is read every 16 calls), and returns the calls made
// and the time they took.
func timedLoop(d time.Duration, max int, send func(i int)) (int, time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := 0
	start := time.Now()
	for {
		for j := 0; j < 16 && n < max; j++ {
			send(n)
			n++
		}
		if el := time.Since(start); n >= max || el >= d {
			return n, el
		}
	}
}

// uswRunner is one uswitch engine and its packet state.
type uswRunner struct {
	e *datapath.Engine
	// wk and in: the timed packets run as the TUN readers run them
	// (link/datapath.go), on a worker with the input index known
	wk   *datapath.Worker
	in   packet.Meta
	buf  []byte
	p    packet.Packet
	w    workload
	flow int   // next new flow's number
	now  int64 // the engine's clock, ns
}

func newUswRunner(t *testing.T, ruleset string, linear bool, w workload) *uswRunner {
	u := &uswRunner{e: engineMode(t, ruleset, linear), buf: make([]byte, 2048), w: w, now: 1e9}
	u.wk = u.e.NewWorker(0)
	u.in = packet.Meta{InIf: "eth0", InIndex: u.e.Config().FIB.Ifindex("eth0")}
	if w.established {
		for _, s := range []struct{ spec, in string }{{estSyn, "eth0"}, {estSynAck, "eth1"}, {estAck, "eth0"}} {
			if f := runPkt(t, u.e, u.buf, build(t, s.spec), &u.p, s.in, u.now); f.Kind != datapath.Forwarded {
				t.Fatalf("uswitch %s: %v", s.spec, f)
			}
		}
	}
	if w.dnat {
		if f := runFlow(t, u.e, u.buf, build(t, w.spec(w.n)), &u.p, "eth0", u.now, u.flow); f.Kind != datapath.Forwarded || u.p.Dst>>16 != 0x0af4 {
			t.Fatalf("uswitch: fate %v, dst %08x, want DNAT to 10.244.0.0/16", f, u.p.Dst)
		}
		u.flow++
	}
	return u
}

// run sends tmpl through the engine (each a new flow, from an empty
// conntrack table, if the workload says so) and returns ns/packet and the
// packets sent.
func (u *uswRunner) run(t *testing.T, tmpl []byte, d time.Duration, max int) (float64, int) {
	bad := datapath.Fate{}
	failed := false
	if u.w.newFlows { // as conntrack -F before the kernel's runs
		var all []*conntrack.Conn
		u.e.CT.Range(u.now, func(c *conntrack.Conn) bool { all = append(all, c); return true })
		for _, c := range all {
			u.e.CT.Delete(c)
		}
		u.flow = 0
	}
	n, el := timedLoop(d, max, func(i int) {
		u.now++
		var f datapath.Fate
		if u.w.newFlows {
			f = runFlowAt(t, u.wk, u.buf, tmpl, &u.p, u.in, u.now, u.flow)
			u.flow++
		} else {
			f = runFlowAt(t, u.wk, u.buf, tmpl, &u.p, u.in, u.now, -1)
		}
		if f.Kind != datapath.Forwarded && !failed {
			bad, failed = f, true
		}
	})
	if failed {
		t.Fatalf("uswitch: packet not forwarded: %v", bad)
	}
	return float64(el.Nanoseconds()) / float64(n), n
}

// kernelRig is a namespace with the TUN → forward → veth path.
type kernelRig struct {
	nsRig  // the TUN is eth0
	legacy bool
}

// newKernelRig makes the namespace (removed at cleanup, also on failure).
func newKernelRig(t *testing.T, legacy bool) *kernelRig {
	r := &kernelRig{nsRig: newNsRig(t, "ucmp"), legacy: legacy}
	labtest.In(t, r.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	r.open(t, "eth0", unix.IFF_TUN|unix.IFF_NO_PI)
	for _, args := range [][]string{
		{"link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"},
		{"addr", "add", "10.0.1.1/24", "dev", "eth0"},
		{"addr", "add", "192.168.1.1/24", "dev", "eth1"},
		{"link", "set", "lo", "up"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "eth1", "up"},
		{"link", "set", "eth1p", "up"},
		{"neigh", "replace", "192.168.1.2", "lladdr", "02:00:00:00:01:02", "dev", "eth1", "nud", "permanent"},
		{"neigh", "replace", "192.168.1.254", "lladdr", "02:00:00:00:01:fe", "dev", "eth1", "nud", "permanent"},
		{"route", "add", "default", "via", "192.168.1.254", "dev", "eth1"},
		{"route", "add", "10.0.0.0/24", "dev", "eth0"}, // the established flow's client
	} {
		labtest.Run(t, append([]string{"ip", "-n", r.ns}, args...)...)
	}
	labtest.In(t, r.ns, "sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0")
	r.handle(t)
	return r
}

// restore loads rules with iptables-restore (nft) or
// iptables-legacy-restore in the namespace.
func (r *kernelRig) restore(t *testing.T, rules string) {
	tool := "iptables-restore"
	if r.legacy {
		tool = "iptables-legacy-restore"
	}
	r.nsRig.restore(t, rules, tool, "-w")
}

// run writes packets into the TUN, packet i being pkts[i%len(pkts)],
// until max packets or d has passed; with flush, the kernel's conntrack
// table is emptied first, so the new flows always find room. It fails t
// unless eth1 sent every packet, and returns ns/packet and the packets.
func (r *kernelRig) run(t *testing.T, pkts [][]byte, d time.Duration, max int, flush bool) (float64, int) {
	if flush {
		// "conntrack -F" fails when nothing loaded conntrack here; then
		// there is nothing to flush
		exec.Command("ip", "netns", "exec", r.ns, "conntrack", "-F").Run()
	}
	who := fmt.Sprintf("%s (legacy %v)", r.ns, r.legacy)
	return r.writeTimed(t, d, max, "eth1", who, "packets", func(i int) []byte { return pkts[i%len(pkts)] })
}

// handshake runs the established flow's SYN (TUN), SYN-ACK (into eth1
// from eth1p through a packet socket) and ACK (TUN) through the kernel
// and checks each was forwarded.
func (r *kernelRig) handshake(t *testing.T) {
	step := func(dev string, send func()) {
		before := r.tx(t, dev)
		send()
		if r.tx(t, dev) == before {
			t.Fatalf("%s: handshake packet not forwarded out %s", r.ns, dev)
		}
	}
	write := func(spec string) func() {
		return func() {
			if _, err := unix.Write(r.fd, build(t, spec)); err != nil {
				t.Fatal(err)
			}
		}
	}
	step("eth1", write(estSyn))
	// The SYN-ACK comes back out eth0, the TUN, whose tx counter moves
	// only when the packet is read: read it.
	func() {
		eth1, err := r.h.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		peer, err := r.h.LinkByName("eth1p")
		if err != nil {
			t.Fatal(err)
		}
		frame := append(append(append([]byte{}, eth1.Attrs().HardwareAddr...), peer.Attrs().HardwareAddr...), 0x08, 0x00)
		frame = append(frame, build(t, estSynAck)...)
		labtest.InNetns(t, r.ns, func() error {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: peer.Attrs().Index, Halen: 6}
			copy(sa.Addr[:], eth1.Attrs().HardwareAddr)
			return unix.Sendto(fd, frame, 0, sa)
		})
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 2000); err != nil || n == 0 {
			t.Fatalf("%s: the SYN-ACK was not forwarded out eth0 (%v)", r.ns, err)
		}
		buf := make([]byte, 2048)
		n, err := unix.Read(r.fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		p := packet.Packet{Data: buf[:n]}
		if err := p.Decode(); err != nil || p.Src != 0x0a000001 || p.Dst != 0x0a000002 {
			t.Fatalf("%s: out of eth0 %x (%v), want the SYN-ACK from 10.0.0.1 to 10.0.0.2", r.ns, buf[:n], err)
		}
	}()
	step("eth1", write(estAck))
}

// htons puts v in network byte order, as sockaddr_ll's protocol wants.
func htons(v uint16) uint16 { return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)) }
