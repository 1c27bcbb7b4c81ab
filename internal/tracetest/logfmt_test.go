package tracetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// The kernel log differential test: iptables-legacy rules with LOG
// targets and -j TRACE in a throw-away namespace, nf_log_all_netns=1 so
// that a namespace's nf_log lines reach the kernel log, packets written
// into the namespace's TUN devices, and the new /dev/kmsg records that
// name this run's devices compared line for line with `uswitch trace
// --format log`'s (the engine with a FormatLog tracer) on the
// namespace's snapshot (host.Capture takes iptables-legacy-save's rules
// when iptables-nft has none).
//
// The kernel log is one for the machine: kmsgMu serialises the tests of
// this binary that read it, and every run names its devices and LOG
// prefixes uniquely, so lines of other namespaces are left out.

var kmsgMu sync.Mutex

// logScenario is a router with TUN devices and legacy rules. In the
// rules, TUNA/TUNB stand for the run's device names and PFX for its
// unique LOG prefix stem.
type logScenario struct {
	name    string
	sysctls []string
	rules   string
	packets []Packet // In: "A", "B" or Local
}

// kmsg reads the kernel log records written after it was opened.
type kmsg struct{ fd int }

func openKmsg() (*kmsg, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &kmsg{fd: fd}, nil
}

// read returns the messages of the records there are now.
func (k *kmsg) read() []string {
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // overwritten records were skipped
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := buf[:n]
		if i := bytes.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i] // dictionary lines follow
		}
		if i := bytes.IndexByte(rec, ';'); i >= 0 {
			out = append(out, string(rec[i+1:]))
		}
	}
}

func TestKernelLogLines(t *testing.T) {
	Require(t)
	testtools.Need(t, "iptables-legacy-restore", "iptables-legacy-save")
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_log_all_netns"); err != nil {
		testtools.Skipf(t, "no net.netfilter.nf_log_all_netns: %v", err)
	}
	kmsgMu.Lock()
	defer kmsgMu.Unlock()
	const sysctlFile = "/proc/sys/net/netfilter/nf_log_all_netns"
	old, err := os.ReadFile(sysctlFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sysctlFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(sysctlFile, old, 0o644) })

	total, agree := 0, 0
	for i := range logScenarios {
		scn := &logScenarios[i]
		t.Run(scn.name, func(t *testing.T) {
			n, ok := runLogScenario(t, scn)
			total += n
			agree += ok
		})
	}
	t.Logf("%d/%d kernel log lines agree", agree, total)
}

var runSeq int

// twoTUNRun is a kernelRun with the TUNs devA (NET.1.1/24) and devB
// (NET.2.1/24), up, and the raw socket.
func twoTUNRun(t *testing.T, devA, devB, net string) *kernelRun {
	t.Helper()
	k := newKernelRun(t)
	err := netnsrun.InNamed(k.ns.Name, func() error {
		for _, name := range []string{devA, devB} {
			if err := k.openDev(name, false); err != nil {
				return err
			}
		}
		return k.openRaw()
	})
	if err != nil {
		t.Fatal(err)
	}
	for dev, a := range map[string]string{devA: net + ".1.1/24", devB: net + ".2.1/24"} {
		if err := k.sh("ip", "addr", "add", a, "dev", dev); err != nil {
			t.Fatal(err)
		}
		if err := k.sh("ip", "link", "set", dev, "up"); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// runLogScenario runs scn on both sides and reports the lines compared
// and those that agree.
func runLogScenario(t *testing.T, scn *logScenario) (int, int) {
	runSeq++
	tag := fmt.Sprintf("%d%c", os.Getpid()%100000, 'a'+runSeq%26)
	devA, devB := "lga"+tag, "lgb"+tag
	pfx := "U" + tag
	rules := strings.NewReplacer("TUNA", devA, "TUNB", devB, "PFX", pfx).Replace(scn.rules)
	k := twoTUNRun(t, devA, devB, "10.70")
	ns := k.ns
	if len(scn.sysctls) > 0 {
		if err := k.sh(append([]string{"sysctl", "-q", "-w"}, scn.sysctls...)...); err != nil {
			t.Fatal(err)
		}
	}
	if _, e, c, err := ns.Run(rules, "iptables-legacy-restore"); err != nil || c != 0 {
		t.Fatalf("iptables-legacy-restore: exit %d %v: %s", c, err, e)
	}
	log, err := openKmsg()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(log.fd)
	ours := func(l string) bool {
		return strings.HasPrefix(l, pfx) || strings.Contains(l, "IN="+devA+" ") || strings.Contains(l, "OUT="+devA+" ") ||
			strings.Contains(l, "IN="+devB+" ") || strings.Contains(l, "OUT="+devB+" ")
	}
	pkts := make([]Packet, len(scn.packets))
	var kernel [][]string
	for i, p := range scn.packets {
		switch p.In {
		case "A":
			p.In = devA
		case "B":
			p.In = devB
		}
		pkts[i] = p
		log.read()
		if err := k.inject(p); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		// printk stores the record inside the write; a short wait covers
		// work a softirq finishes
		time.Sleep(20 * time.Millisecond)
		var lines []string
		for _, l := range log.read() {
			if ours(l) {
				lines = append(lines, l)
			}
		}
		kernel = append(kernel, lines)
		k.drain()
	}
	snap := filepath.Join(t.TempDir(), "snapshot")
	if err := host.Capture(snap, ns.Name); err != nil {
		t.Fatal(err)
	}
	s, err := host.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	n, ok := 0, 0
	for i, p := range pkts {
		pk := &packet.Packet{Data: p.Bytes()}
		if err := pk.Decode(); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		tr := &datapath.Tracer{Format: datapath.FormatLog}
		now := int64(time.Hour) + int64(i)*int64(time.Millisecond)
		if p.In == Local {
			pk.HasSocket = true // root's raw socket
			e.Send(pk, now, tr)
		} else {
			pk.InIf = p.In
			e.Receive(pk, now, tr)
		}
		kl, ul := normID(kernel[i]), normID(tr.Lines)
		n += len(kl)
		same := 0
		for j := 0; j < len(kl) && j < len(ul); j++ {
			if kl[j] == ul[j] {
				same++
			}
		}
		ok += same
		if dump || same != len(kl) || len(kl) != len(ul) {
			report := t.Errorf
			if same == len(kl) && len(kl) == len(ul) {
				report = t.Logf
			}
			report("packet %d (%v): %d/%d lines agree\nkernel:\n%s\nuswitch:\n%s", i+1, p, same, len(kl),
				strings.Join(kl, "\n"), strings.Join(ul, "\n"))
		}
	}
	t.Logf("%s: %d/%d lines agree", scn.name, ok, n)
	return n, ok
}

// idRE is the IP ID of a packet the host made itself (IN= empty, an ID
// other than the 0x4242 of injected local packets): the kernel picks it.
var hostIDRE = regexp.MustCompile(`^(.*?IN= OUT=\S* (?:PHYS\S* )*SRC=\S+ DST=\S+ LEN=\d+ TOS=\S+ PREC=\S+ TTL=\d+ )ID=(\d+) `)

func normID(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		if m := hostIDRE.FindStringSubmatch(l); m != nil && m[2] != "16962" {
			l = m[1] + "ID=? " + l[len(m[0]):]
		}
		out[i] = l
	}
	return out
}

// ipOpts puts four bytes of IP options (NOP NOP NOP EOL) into b.
func ipOpts(b []byte) []byte {
	o := append(append(append([]byte(nil), b[:20]...), 1, 1, 1, 0), b[20:]...)
	o[0] = 0x46
	h := packet.IPv4(o)
	o[2], o[3] = byte(len(o)>>8), byte(len(o))
	h.SetChecksum()
	return o
}

// fragment is the part of b's payload from byte off (a multiple of 8)
// on, as the last fragment.
func fragment(b []byte, off int) []byte {
	f := append(append([]byte(nil), b[:20]...), b[20+off:]...)
	f[2], f[3] = byte(len(f)>>8), byte(len(f))
	f[6], f[7] = byte(off/8>>8), byte(off/8)
	packet.IPv4(f).SetChecksum()
	return f
}

// icmpError is an ICMP error of type/code from src to dst about inner.
func icmpError(src, dst uint32, typ, code uint8, inner []byte) []byte {
	return packet.Build(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoICMP, ICMPType: typ, ICMPCode: code, Payload: inner})
}

const (
	ipA9 = 0x0a460109 // 10.70.1.9
	ipB9 = 0x0a460209 // 10.70.2.9
)

var udp9 = packet.Build(packet.Spec{Src: ipA9, Dst: ipB9, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, ID: 77, Payload: make([]byte, 40)})

var logScenarios = []logScenario{
	{
		// no nat table and no conntrack match: no defrag, so fragments
		// reach the rules as they are
		name:    "log-flags",
		sysctls: []string{"net.ipv4.ip_forward=1"},
		rules: `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j LOG --log-prefix "PFX-in " --log-uid
-A FORWARD -p tcp -j LOG --log-prefix "PFX-seq " --log-tcp-sequence
-A FORWARD -p tcp -j LOG --log-prefix "PFX-opt " --log-tcp-options --log-level 7
-A FORWARD -j LOG --log-prefix "PFX-ipopt " --log-ip-options
-A FORWARD -j LOG --log-prefix "PFX-mac " --log-macdecode
-A FORWARD -j LOG
-A OUTPUT -j LOG --log-prefix "PFX-out " --log-uid
COMMIT
`,
		packets: []Packet{
			P("tcp 10.70.1.9:40000 > 10.70.2.9:80 syn seq 1000 iif A").WithOpts(MSS(1460)...),
			P("tcp 10.70.1.9:40000 > 10.70.2.9:80 ack 7 seq 1001 psh fin iif A"),
			P("udp 10.70.1.9:5000 > 10.70.2.9:53 iif A"),
			P("icmp 10.70.1.9 > 10.70.2.9 type 8 id 7 iif A"),
			RawPacket(ipOpts(udp9), "A"),
			RawPacket(fragment(udp9, 16), "A"),
			RawPacket(icmpError(ipB9, ipA9, 3, 3, udp9[:28+8]), "B"),
			RawPacket(icmpError(ipB9, ipA9, 3, 4, packet.Build(packet.Spec{Src: ipA9, Dst: ipB9, Proto: packet.ProtoTCP, SrcPort: 1, DstPort: 2})[:28]), "B"),
			P("icmp 10.70.1.9 > 10.70.1.1 type 8 id 7 iif A"),
			P("udp 10.70.1.1:7000 > 10.70.2.9:9 local"),
		},
	},
	{
		// legacy TRACE through raw, mangle, nat and filter: a user
		// chain left by RETURN and by falling off its end, policies,
		// an unconditional rule, MARK before and after its rule; the nat
		// table has no NAT target, so conntrack is not in use and the nat
		// chains never run (on both sides)
		name:    "legacy-trace",
		sysctls: []string{"net.ipv4.ip_forward=1"},
		rules: `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -s 10.70.1.9/32 -j TRACE
-A OUTPUT -d 10.70.2.9/32 -j TRACE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -j MARK --set-mark 0x2a
-A FORWARD -p tcp -j LOG --log-prefix "PFX-mark "
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -p udp --dport 9 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:UC - [0:0]
:UG - [0:0]
-A FORWARD -p udp --dport 8 -g UG
-A FORWARD -j UC
-A FORWARD -p icmp -j ACCEPT
-A UG -p tcp -j ACCEPT
-A UC -p udp --dport 9 -j RETURN
-A UC -p tcp -j ACCEPT
-A UC -p udp --dport 53 -j ACCEPT
-A OUTPUT -p udp -j ACCEPT
-A OUTPUT -j ACCEPT
COMMIT
`,
		packets: []Packet{
			P("tcp 10.70.1.9:40000 > 10.70.2.9:80 syn iif A"),
			P("udp 10.70.1.9:5000 > 10.70.2.9:9 iif A"),
			P("udp 10.70.1.9:5000 > 10.70.2.9:53 iif A"),
			P("udp 10.70.1.9:5001 > 10.70.2.9:7 iif A"),
			P("udp 10.70.1.9:5002 > 10.70.2.9:8 iif A"), // goto UG, off its end: return, then FORWARD's policy
			P("icmp 10.70.1.9 > 10.70.2.9 type 8 id 7 iif A"),
			P("icmp 10.70.1.9 > 10.70.1.1 type 8 id 7 iif A"),
			P("udp 10.70.1.1:7000 > 10.70.2.9:9 local"),
			P("tcp 10.70.1.1:7001 > 10.70.2.9:80 syn local"),
		},
	},
	{
		// a NAT target puts conntrack in use (legacy iptable_nat alone
		// does not): the nat chains run for a connection's first packet
		name:    "legacy-trace-nat",
		sysctls: []string{"net.ipv4.ip_forward=1"},
		rules: `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -s 10.70.1.9/32 -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:NU - [0:0]
-A PREROUTING -p tcp -j NU
-A NU -p tcp --dport 81 -j DNAT --to-destination 10.70.2.9:8081
-A POSTROUTING -o TUNB -p tcp -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate NEW -j LOG --log-prefix "PFX-new "
COMMIT
`,
		packets: []Packet{
			P("tcp 10.70.1.9:40000 > 10.70.2.9:80 syn iif A"),
			P("tcp 10.70.1.9:40001 > 10.70.2.9:81 syn iif A"),
			P("tcp 10.70.1.9:40001 > 10.70.2.9:81 ack 1 seq 1 iif A"),
			P("udp 10.70.1.9:5000 > 10.70.2.9:53 iif A"),
		},
	},
}
