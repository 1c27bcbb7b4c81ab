package tracetest

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
	"golang.org/x/sys/unix"
)

// TestKernelEbtablesLog: ebtables --log watchers on the bridge path
// write the same kernel log lines as the kernel's bridge (ebt_log, via
// ebtables-nft), in nat PREROUTING, filter FORWARD and filter INPUT,
// with --log-ip and --log-arp: frames injected into a kernel bridge's
// TAP ports with nf_log_all_netns=1 and read back from /dev/kmsg,
// against `trace --format log`'s lines (the engine's log-format tracer)
// for the same frames on the namespace's snapshot.
func TestKernelEbtablesLog(t *testing.T) {
	Require(t)
	testtools.Need(t, "ebtables-restore")
	const sysctlFile = "/proc/sys/net/netfilter/nf_log_all_netns"
	if _, err := os.Stat(sysctlFile); err != nil {
		testtools.Skipf(t, "no net.netfilter.nf_log_all_netns: %v", err)
	}
	kmsgMu.Lock()
	defer kmsgMu.Unlock()
	old, err := os.ReadFile(sysctlFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sysctlFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(sysctlFile, old, 0o644) })

	pfx := fmt.Sprintf("usweb%d", os.Getpid()%100000)
	scn := &Scenario{
		Name:    "ebtables-log",
		Bridges: br0,
		Rules:   traceAll,
		Ebtables: strings.ReplaceAll(`*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A INPUT -p IPv4 --log-prefix "PFX-in" --log-ip -j ACCEPT
-A FORWARD -p IPv4 --log-prefix "PFX-fwd" --log-ip -j CONTINUE
-A FORWARD -p ARP --log-prefix "PFX-arp" --log-arp -j CONTINUE
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING --log-prefix "PFX-pre" -j CONTINUE
`, "PFX", pfx),
		Packets: []Packet{
			eth(macB, macA, "udp 10.1.0.1:1000 > 10.1.0.2:53", "p1"),
			eth(macA, macB, "tcp 10.1.0.2:80 > 10.1.0.1:1000 syn ack 1 seq 1", "p2"),
			eth(macBr, macA, "icmp 10.1.0.1 > 10.1.0.254 id 7 seq 1", "p1"),
			arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.9", "p1"),
		},
	}
	km, err := openKmsg()
	if err != nil {
		testtools.Skipf(t, "/dev/kmsg: %v", err)
	}
	defer unix.Close(km.fd)
	k := RunKernel(t, scn)
	time.Sleep(100 * time.Millisecond)
	var kl []string
	for _, l := range km.read() {
		if strings.HasPrefix(l, pfx) {
			kl = append(kl, l)
		}
	}
	// uswitch on the snapshot, with the log-format tracer
	s, err := host.Load(k.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	startState(s)
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	var ul []string
	for i, p := range scn.Packets {
		tr := &datapath.Tracer{Format: datapath.FormatLog}
		e.ReceiveFrame(p.Bytes(), p.In, int64(time.Hour)+int64(i)*int64(time.Millisecond), tr)
		for _, l := range tr.Lines {
			if strings.HasPrefix(l, pfx) {
				ul = append(ul, l)
			}
		}
	}
	if len(kl) == 0 {
		t.Fatalf("no kernel log lines with prefix %s", pfx)
	}
	if d := Diff(kl, ul); d != "" {
		t.Fatalf("ebtables log lines differ (k: kernel, u: uswitch):\n%s", d)
	}
	t.Logf("%d kernel log lines of ebtables, all agree", len(kl))
}
