package tracetest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/packet"
	"golang.org/x/sys/unix"
)

// The sentinel: after each packet the harness writes one packet into the
// TUN device SentinelIf, which two raw PREROUTING rules (inserted at the
// top) trace and drop. Trace events are emitted synchronously while the
// kernel processes a TUN write (tun_get_user -> netif_receive_skb, and
// answers and forwarding happen inside it), and xtables-monitor prints
// them in the order its netlink socket received them, so once the
// sentinel's DROP line is printed every line of the packet before it is
// too.
const (
	SentinelIf  = "usent"
	sentinelSrc = 0xc633640a // 198.51.100.10
	sentinelDst = 0xc633640b // 198.51.100.11
)

// sentinelRules are inserted in this order with -I PREROUTING 1.
var sentinelRules = [][]string{
	{"-t", "raw", "-I", "PREROUTING", "1", "-i", SentinelIf, "-j", "DROP"},
	{"-t", "raw", "-I", "PREROUTING", "1", "-i", SentinelIf, "-j", "TRACE"},
}

// Result is what the kernel did with a scenario.
type Result struct {
	// Snapshot is the folder host.Capture wrote for R after the run.
	Snapshot string
	// Lines are the xtables-monitor lines of each packet, sentinels removed.
	Lines [][]string
	// Egress are the packets read back from the TUN devices after each
	// packet, as EgressLine formats them.
	Egress [][]string
	// Netns is the router namespace's name.
	Netns string
	// Elapsed is each packet's injection time since the kernel tick
	// (jiffy) boundary before the first packet: the kernel aligns its
	// ticks to multiples of TICK_NSEC of CLOCK_MONOTONIC
	// (tick_init_jiffy_update, kernel/time/tick-sched.c), so a replay
	// whose clock starts on a tick boundary sees the same jiffies.
	Elapsed []time.Duration
}

// tickNsec is TICK_NSEC of the reference kernel (HZ 250).
const tickNsec = 4 * time.Millisecond

// monotonic is CLOCK_MONOTONIC, the clock jiffies follow.
func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// waitTickStart spins until CLOCK_MONOTONIC is between 0.2 ms (the
// tick interrupt has updated jiffies) and 2.5 ms (1.5 ms left for the
// kernel to get to the packet) into a tick.
func waitTickStart() {
	const lo, hi = 200 * time.Microsecond, 2500 * time.Microsecond
	for {
		if ph := monotonic() % tickNsec; ph >= lo && ph <= hi {
			return
		}
		runtime.Gosched()
	}
}

// Require skips the test (or fails it, see testtools) unless the kernel
// harness can run here. A scenario with ipset commands needs ipset too:
// RunKernel checks that.
func Require(t testing.TB) {
	t.Helper()
	kerneltest.Require(t, "xtables-monitor", "stdbuf", "sysctl")
	testtools.TUN(t)
}

type kernelRun struct {
	t    testing.TB
	ns   *kerneltest.Netns
	tuns map[string]int
	// taps are the devices of tuns that are TAP bridge ports
	taps map[string]bool
	raw  int
	// names in creation order, for draining
	order []string
	lines chan string
	seq   uint16 // the last sentinel's source port
}

func (k *kernelRun) sh(args ...string) error {
	o, e, c, err := k.ns.Run("", args...)
	if err != nil {
		return err
	}
	if c != 0 {
		return fmt.Errorf("%s: exit %d: %s%s", strings.Join(args, " "), c, o, e)
	}
	return nil
}

// newKernelRun makes a fresh namespace (removed at cleanup) with lo up
// and IPv6 off, and the run over it; the devices and the raw socket it
// opens are closed at cleanup.
func newKernelRun(t testing.TB) *kernelRun {
	t.Helper()
	k := &kernelRun{t: t, ns: kerneltest.NewNetns(t), tuns: map[string]int{}, taps: map[string]bool{}, raw: -1}
	t.Cleanup(func() {
		for _, fd := range k.tuns {
			unix.Close(fd)
		}
		if k.raw >= 0 {
			unix.Close(k.raw)
		}
	})
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"},
		{"sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"},
	} {
		if err := k.sh(c...); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// openDev opens the TUN (or, with tap, the TAP bridge port) name; call
// it on a thread in the run's namespace (the device belongs to the
// opener's).
func (k *kernelRun) openDev(name string, tap bool) error {
	flags := uint16(unix.IFF_TUN)
	if tap {
		flags = unix.IFF_TAP
	}
	fd, err := link.OpenFD(name, flags|unix.IFF_NO_PI)
	if err != nil {
		return err
	}
	k.tuns[name] = fd
	if tap {
		k.taps[name] = true
	}
	k.order = append(k.order, name)
	return nil
}

// openRaw opens the raw IPv4 socket local packets are sent from; on a
// thread in the run's namespace, as openDev.
func (k *kernelRun) openRaw() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	k.raw = fd
	return nil
}

// RunKernel builds the scenario in a fresh namespace, injects its
// packets one by one while xtables-monitor --trace records, and captures
// the namespace's snapshot into a temporary folder. Everything it makes
// is removed in t.Cleanup.
func RunKernel(t testing.TB, scn *Scenario) *Result {
	t.Helper()
	if len(scn.IPSet) > 0 {
		testtools.Need(t, "ipset")
	}
	k := newKernelRun(t)
	ns := k.ns
	ifs := append([]Iface{{Name: SentinelIf}}, scn.Ifaces...)
	// the TUN and TAP devices and the raw socket belong to the
	// namespace of the thread that opens them
	err := netnsrun.InNamed(ns.Name, func() error {
		for _, ifc := range ifs {
			if err := k.openDev(ifc.Name, false); err != nil {
				return err
			}
		}
		for _, br := range scn.Bridges {
			for _, pt := range br.Ports {
				if err := k.openDev(pt.Name, true); err != nil {
					return err
				}
			}
		}
		return k.openRaw()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		for _, a := range ifc.Addrs {
			if err := k.sh("ip", "addr", "add", a, "dev", ifc.Name); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.sh("ip", "link", "set", ifc.Name, "up"); err != nil {
			t.Fatal(err)
		}
	}
	for _, br := range scn.Bridges {
		testtools.Need(t, "bridge")
		// no multicast snooping: with it the bridge device joins the
		// snoopers' groups (224.0.0.106, br_ip4_multicast_join_snoopers)
		// and sends IGMP reports from its timers, at moments no replay
		// can know; uswitch floods multicast as the kernel does
		// without a querier
		cmds := [][]string{{"ip", "link", "add", br.Name, "type", "bridge", "mcast_snooping", "0"},
			{"sysctl", "-q", "-w", "net.ipv4.igmp_link_local_mcast_reports=0"}}
		if br.MAC != "" {
			cmds = append(cmds, []string{"ip", "link", "set", br.Name, "address", br.MAC})
		}
		for _, pt := range br.Ports {
			if pt.MAC != "" {
				cmds = append(cmds, []string{"ip", "link", "set", pt.Name, "address", pt.MAC})
			}
			cmds = append(cmds, []string{"ip", "link", "set", pt.Name, "master", br.Name}, []string{"ip", "link", "set", pt.Name, "up"})
			if pt.Hairpin {
				cmds = append(cmds, []string{"ip", "link", "set", pt.Name, "type", "bridge_slave", "hairpin", "on"})
			}
		}
		for _, a := range br.Addrs {
			cmds = append(cmds, []string{"ip", "addr", "add", a, "dev", br.Name})
		}
		cmds = append(cmds, []string{"ip", "link", "set", br.Name, "up"})
		for _, c := range cmds {
			if err := k.sh(c...); err != nil {
				t.Fatal(err)
			}
		}
		for _, pt := range br.Ports {
			ns.WaitForwarding(t, pt.Name)
		}
	}
	if len(scn.Sysctls) > 0 {
		// one sysctl process for all (each process costs more than the keys)
		if err := k.sh(append([]string{"sysctl", "-q", "-w"}, scn.Sysctls...)...); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range scn.IP {
		if err := k.sh(append([]string{"ip"}, strings.Fields(c)...)...); err != nil {
			t.Fatal(err)
		}
	}
	if len(scn.IPSet) > 0 {
		_, e, c, err := ns.Run(strings.Join(scn.IPSet, "\n")+"\n", "ipset", "restore")
		if err != nil || c != 0 {
			t.Fatalf("ipset restore: exit %d %v: %s", c, err, e)
		}
	}
	if scn.Rules != "" {
		e, c, err := ns.Restore(scn.Rules)
		if err != nil || c != 0 {
			t.Fatalf("iptables-restore: exit %d %v: %s", c, err, e)
		}
	}
	if scn.Ebtables != "" {
		testtools.Need(t, "ebtables-restore")
		_, e, c, err := ns.Run(scn.Ebtables, "ebtables-restore")
		if err != nil || c != 0 {
			t.Fatalf("ebtables-restore: exit %d %v: %s", c, err, e)
		}
	}
	for _, r := range sentinelRules {
		if err := k.sh(append([]string{"iptables"}, r...)...); err != nil {
			t.Fatal(err)
		}
	}

	// the monitor; stdbuf keeps its stdout line-buffered into the pipe
	mon := exec.Command("ip", "netns", "exec", ns.Name, "stdbuf", "-oL", "xtables-monitor", "--trace")
	var stderr bytes.Buffer
	mon.Stderr = &stderr
	out, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	k.lines = make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(k.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k.lines <- sc.Text()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		mon.Process.Kill()
		for range k.lines {
		}
		<-done
		mon.Wait()
	}
	t.Cleanup(stop)

	// wait until the monitor listens: sentinels until one shows
	ready := false
	for i := 0; i < 50 && !ready; i++ {
		if err := k.sentinel(); err != nil {
			t.Fatal(err)
		}
		_, ok, err := k.collect(100 * time.Millisecond)
		if err != nil {
			t.Fatalf("xtables-monitor: %v: %s", err, stderr.String())
		}
		ready = ok
	}
	if !ready {
		t.Fatalf("xtables-monitor printed no sentinel in 5s: %s", stderr.String())
	}
	// a late sentinel of the start-up loop may still be on its way
	k.sentinel()
	for {
		_, ok, err := k.collect(200 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
	}
	k.drain()

	res := &Result{Netns: ns.Name}
	start := time.Now()
	phase := monotonic() % tickNsec
	for i, p := range scn.Packets {
		time.Sleep(p.Delay)
		// the kernel handles the packet inside the write (TUN) or
		// sendto (raw socket), a little after it starts: start it
		// early in a tick, so that the jiffies the kernel reads are
		// those of the time taken here (the ICMP rate limits and
		// the redirect backoff count in jiffies)
		waitTickStart()
		res.Elapsed = append(res.Elapsed, phase+time.Since(start))
		if err := k.inject(p); err != nil {
			t.Fatalf("packet %d (%v): %v", i+1, p, err)
		}
		if err := k.sentinel(); err != nil {
			t.Fatal(err)
		}
		lines, ok, err := k.collect(3 * time.Second)
		if err != nil {
			t.Fatalf("packet %d: xtables-monitor: %v: %s", i+1, err, stderr.String())
		}
		if !ok {
			t.Fatalf("packet %d (%v): sentinel not seen in 3s", i+1, p)
		}
		res.Lines = append(res.Lines, lines)
		res.Egress = append(res.Egress, k.drain())
	}
	stop()
	res.Snapshot = filepath.Join(t.TempDir(), "snapshot")
	if err := host.Capture(res.Snapshot, ns.Name); err != nil {
		t.Fatalf("capture: %v", err)
	}
	return res
}

func (k *kernelRun) sentinel() error {
	k.seq++
	if k.seq == 0 {
		k.seq = 1
	}
	b := packet.Build(packet.Spec{Src: sentinelSrc, Dst: sentinelDst, Proto: packet.ProtoUDP, SrcPort: k.seq, DstPort: 9})
	_, err := unix.Write(k.tuns[SentinelIf], b)
	return err
}

// collect reads monitor lines up to the sentinel's DROP event and returns
// those before the sentinel's PACKET line.
func (k *kernelRun) collect(timeout time.Duration) ([]string, bool, error) {
	var lines []string
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case l, ok := <-k.lines:
			if !ok {
				return lines, false, errors.New("monitor exited")
			}
			if strings.Contains(l, "raw:PREROUTING:rule:") && strings.HasSuffix(l, "-i "+SentinelIf+" -j DROP") {
				// cut the sentinel's PACKET and TRACE lines; an
				// older sentinel ends what came before it
				j := len(lines) - 1
				for ; j >= 0; j-- {
					if strings.HasPrefix(lines[j], "PACKET:") && strings.Contains(lines[j], " IN="+SentinelIf+" ") {
						break
					}
				}
				if j < 0 {
					return lines, true, fmt.Errorf("sentinel PACKET line not found in %q", lines)
				}
				if strings.Contains(lines[j], fmt.Sprintf(" SPORT=%d ", k.seq)) {
					return lines[:j], true, nil
				}
				lines = lines[:0]
				continue
			}
			lines = append(lines, l)
		case <-tm.C:
			return lines, false, nil
		}
	}
}

func (k *kernelRun) inject(p Packet) error {
	b := p.Bytes()
	if p.In == Local {
		sa := &unix.SockaddrInet4{}
		binary.BigEndian.PutUint32(sa.Addr[:], p.Spec.Dst)
		err := unix.Sendto(k.raw, b, 0, sa)
		if err == unix.EPERM || err == unix.ENETUNREACH || err == unix.EHOSTUNREACH || err == unix.EINVAL {
			// dropped by netfilter (NF_DROP -> EPERM) or not routable:
			// the trace says what happened
			err = nil
		}
		return err
	}
	fd, ok := k.tuns[p.In]
	if !ok {
		return fmt.Errorf("no TUN device %q", p.In)
	}
	_, err := unix.Write(fd, b)
	return err
}

// drain reads what R sent out of its TUN devices.
func (k *kernelRun) drain() []string {
	var out []string
	buf := make([]byte, 65536)
	for _, name := range k.order {
		fd := k.tuns[name]
		for {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				break
			}
			if k.taps[name] {
				out = append(out, FrameEgressLine(name, buf[:n]))
				continue
			}
			out = append(out, EgressLine(name, buf[:n]))
		}
	}
	return out
}
