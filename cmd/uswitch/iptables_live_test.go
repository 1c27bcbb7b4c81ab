package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/packet"
)

// iptLiveLab routes between a client and a wan namespace with no NAT;
// the wan answers UDP on port 7.
const iptLiveLab = `
name = "LAB"
[uswitch]
workers = 2
seed = 5
rules = """
RULES"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "uc"
netns = "LAB-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "uw"
netns = "LAB-w"
addresses = ["203.0.113.1/24"]
[[namespace]]
name = "LAB-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "LAB-w"
addresses = ["203.0.113.2/24"]
routes = ["default via 203.0.113.1"]
server = [{ kind = "udp-echo", port = 7 }]
`

// iptLiveRules is the starting filter table: replies by conntrack, a
// counting rule for UDP that no command below touches, ping to the
// router allowed.
const iptLiveRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
-A FORWARD -p udp
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`

// iptSide is one of the two routers the command sequence runs on: the
// lab (uswitch iptables over the control socket) or the kernel in a
// namespace (iptables), each with its client and wan.
type iptSide struct {
	name     string
	ipt      func(args ...string) (string, string, int)
	ping     func(dst string) error
	udp      func() error
	wanLabel int // length of the wan's name, which the echo prefixes
}

// udpExchange sends a datagram from namespace ns to the wan's echo
// server from source port port and waits for the answer. Both sides
// use the same port for the same exchange (udpPorts), so their
// connections are the same and neither meets, by chance, an entry an
// earlier exchange left on a port the kernel picked again.
func udpExchange(ns string, port int) error {
	var conn net.Conn
	if err := netnsrun.InNamed(ns, func() error {
		var err error
		conn, err = net.DialUDP("udp4", &net.UDPAddr{Port: port}, &net.UDPAddr{IP: net.IPv4(203, 0, 113, 2), Port: 7})
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(400 * time.Millisecond))
	if _, err := conn.Write([]byte("iptables live test payload")); err != nil {
		return err
	}
	buf := make([]byte, 65536)
	_, err := conn.Read(buf)
	return err
}

// udpPorts returns the source ports of one side's exchanges, in order.
func udpPorts() func() int {
	next := 41000
	return func() int { next++; return next }
}

// TestLiveIptablesCmd runs iptables commands over a running lab's
// control socket while traffic crosses it, and the same commands with
// the kernel's iptables in a namespace router with the same traffic:
// after each command the listings (-L -v -n --line-numbers, -L -v -x
// -n, -S, -S -v) with their counters are byte for byte the kernel's.
// Then errors over the socket against the offline form (--file) and the
// kernel, and changes made under continuous traffic: none is lost with
// a DROP policy (each change is one swap) and an untouched rule counts
// every packet across all of them.
func TestLiveIptablesCmd(t *testing.T) {
	labtest.TUN(t)
	kerneltest.Require(t, "sysctl")
	p := labtest.Name("uipt")
	l := upLab(t, "ipt.toml", strings.ReplaceAll(strings.ReplaceAll(iptLiveLab, "RULES", iptLiveRules), "LAB", p))
	if err := l.ListenControl(""); err != nil {
		t.Fatal(err)
	}
	S := []string{"--socket", l.ControlPath()}
	const to = 2 * time.Second
	labPorts := udpPorts()
	lab := &iptSide{name: "uswitch",
		ipt: func(args ...string) (string, string, int) {
			return cli(iptablesCmd, "", append(append([]string{}, S...), args...)...)
		},
		ping: func(dst string) error {
			_, err := l.Ping(p+"-c", netip.MustParseAddr(dst), 400*time.Millisecond)
			return err
		},
		udp: func() error { return udpExchange(p+"-c", labPorts()) }}

	kern := kernelRouter(t, len(p+"-w"))
	if e, code, err := kern.router.Restore(iptLiveRules); err != nil || code != 0 {
		t.Fatalf("kernel: iptables-restore: %d %s %v", code, e, err)
	}

	// the same traffic through both after each command
	traffic := func(s *iptSide) string {
		var res []string
		for _, dst := range []string{"203.0.113.2", "203.0.113.2", "10.10.1.1"} {
			res = append(res, fmt.Sprintf("ping %s: %v", dst, s.ping(dst) == nil))
		}
		for range 2 {
			res = append(res, fmt.Sprintf("udp: %v", s.udp() == nil))
		}
		return strings.Join(res, ", ")
	}
	listings := [][]string{{"-L", "-v", "-n", "--line-numbers"}, {"-L", "-v", "-x", "-n"}, {"-S"}, {"-S", "-v"}, {"-L", "FORWARD", "-v", "-n"}}
	steps := [][]string{
		nil, // the starting rules
		{"-N", "CNT"},
		{"-A", "CNT", "-p", "udp", "-j", "ACCEPT"},
		{"-A", "CNT", "-p", "icmp", "-j", "ACCEPT"},
		{"-I", "FORWARD", "2", "-i", "uc", "-j", "CNT"},
		{"-R", "CNT", "1", "-p", "udp", "--dport", "7", "-j", "ACCEPT"},
		{"-I", "CNT", "1", "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT"},
		{"-D", "CNT", "3"},
		{"-E", "CNT", "COUNTING"},
		{"-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"},
		{"-P", "INPUT", "DROP"},
		{"-D", "INPUT", "1"},
		{"-P", "INPUT", "ACCEPT"},
		{"-Z", "FORWARD"},
		{"-A", "COUNTING", "-j", "RETURN"},
		{"-D", "FORWARD", "-i", "uc", "-j", "COUNTING"},
		{"-F", "COUNTING"},
		{"-X", "COUNTING"},
		{"-Z"},
		{"-I", "FORWARD", "-p", "icmp", "-j", "ACCEPT"},
	}
	compared := 0
	for i, step := range steps {
		for _, s := range []*iptSide{lab, kern.side} {
			if step != nil {
				if o, e, c := s.ipt(step...); c != 0 || o != "" || e != "" {
					t.Fatalf("step %d: %s: iptables %s: exit %d %q %q", i, s.name, strings.Join(step, " "), c, o, e)
				}
			}
		}
		lt, kt := traffic(lab), traffic(kern.side)
		if lt != kt {
			t.Errorf("step %d (iptables %s): traffic through uswitch %s; through the kernel %s", i, strings.Join(step, " "), lt, kt)
		}
		for _, ls := range listings {
			ko, ke, kc := kern.side.ipt(ls...)
			uo, ue, uc := lab.ipt(ls...)
			compared++
			if testing.Verbose() && compared%len(listings) == 1 && (i == 8 || i == len(steps)-1) {
				t.Logf("step %d (iptables %s), traffic %s; the kernel's iptables %s:\n%s", i, strings.Join(step, " "), kt, strings.Join(ls, " "), ko)
			}
			if ko != uo || ke != ue || kc != uc {
				t.Errorf("step %d (iptables %s): iptables %s differs:\n%s", i, strings.Join(step, " "), strings.Join(ls, " "),
					kerneltest.LineDiff(ko+ke+strconv.Itoa(kc), uo+ue+strconv.Itoa(uc), 8))
			}
		}
	}

	t.Logf("%d commands, %d listings compared with the kernel's", len(steps)-1, compared)

	// errors: over the socket as offline (--file on the same rules) and
	// as the kernel's iptables
	save, _, code := cli(iptablesSave, "", S...)
	if code != 0 {
		t.Fatal("iptables-save")
	}
	file := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(file, []byte(save), 0o600)
	bad := [][]string{
		{"-D", "FORWARD", "99"},
		{"-D", "FORWARD", "-p", "tcp", "-j", "REJECT"},
		{"-I", "FORWARD", "50", "-j", "ACCEPT"},
		{"-R", "FORWARD", "9", "-j", "ACCEPT"},
		{"-A", "NOPE", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-j", "NOPE"},
		{"-X", "NOPE"},
		{"-N", "FORWARD"},
		{"-P", "NOPE", "DROP"},
		{"-P", "FORWARD", "BOGUS"},
		{"-E", "NOPE", "X"},
		{"-L", "NOPE"},
		{"-S", "NOPE"},
		{"-Z", "NOPE"},
		{"-F", "NOPE"},
		{"-t", "bogus", "-L"},
		{"-A", "FORWARD", "-p", "tcp", "--dport", "99999", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-m", "nosuchmatch", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-j", "DNAT", "--to-destination", "1.2.3.4"},
		{"-C", "FORWARD", "-p", "tcp", "-j", "ACCEPT"},
	}
	// a chain that is referenced or not empty
	for _, s := range []*iptSide{lab, kern.side} {
		for _, c := range [][]string{{"-N", "BUSY"}, {"-A", "BUSY", "-j", "ACCEPT"}, {"-A", "FORWARD", "-j", "BUSY"}} {
			s.ipt(c...)
		}
	}
	iptcliFile := func(args ...string) (string, string, int) {
		return cli(iptablesCmd, "", append([]string{"--file", file}, args...)...)
	}
	iptcliFile("-N", "BUSY")
	iptcliFile("-A", "BUSY", "-j", "ACCEPT")
	iptcliFile("-A", "FORWARD", "-j", "BUSY")
	bad = append(bad, []string{"-X", "BUSY"}, []string{"-N", "BUSY"}, []string{"-E", "BUSY", "FORWARD"})
	for _, args := range bad {
		uo, ue, uc := lab.ipt(args...)
		fo, fe, fc := iptcliFile(args...)
		ko, ke, kc := kern.side.ipt(args...)
		if uc == 0 {
			t.Errorf("iptables %s over the socket succeeded: %q", strings.Join(args, " "), uo)
		}
		if uo != fo || ue != fe || uc != fc {
			t.Errorf("iptables %s: socket exit %d %q %q; --file exit %d %q %q", strings.Join(args, " "), uc, uo, ue, fc, fo, fe)
		}
		if uo != ko || ue != ke || uc != kc {
			t.Errorf("iptables %s: socket exit %d %q %q; kernel exit %d %q %q", strings.Join(args, " "), uc, uo, ue, kc, ko, ke)
		}
	}
	if after, _, _ := cli(iptablesSave, "", S...); after == save {
		t.Errorf("the BUSY chain did not reach the lab")
	}

	// changes under continuous traffic: the FORWARD policy drops, so a
	// packet that met a half-made rule set would be lost
	for _, c := range [][]string{{"-D", "FORWARD", "-j", "BUSY"}, {"-F", "BUSY"}, {"-X", "BUSY"}, {"-Z"},
		{"-N", "UDP"}, {"-A", "UDP", "-p", "udp", "-j", "ACCEPT"}, {"-I", "FORWARD", "3", "-j", "UDP"}} {
		if o, e, code := lab.ipt(c...); code != 0 {
			t.Fatalf("iptables %s: %d %q %q", strings.Join(c, " "), code, o, e)
		}
	}
	var sent, lost atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if _, err := l.UDPExchange(p+"-c", "203.0.113.2:7", []byte("under change"), to); err != nil {
					lost.Add(1)
				}
			}
		}()
	}
	changes := [][]string{
		{"-I", "UDP", "1", "-p", "udp", "--dport", "7", "-j", "ACCEPT"},
		{"-D", "UDP", "2"},
		{"-R", "UDP", "1", "-p", "udp", "-m", "comment", "--comment", "replaced", "-j", "ACCEPT"},
		{"-E", "UDP", "UDP2"},
		{"-N", "SPARE"},
		{"-A", "SPARE", "-j", "DROP"},
		{"-P", "INPUT", "DROP"},
		{"-P", "INPUT", "ACCEPT"},
		{"-X", "SPARE"},
		{"-A", "UDP2", "-j", "DROP"},
		{"-I", "UDP2", "1", "-p", "udp", "-j", "ACCEPT"},
		{"-D", "UDP2", "2"},
		{"-E", "UDP2", "UDP"},
	}
	const rounds = 3
	for round := 0; round < rounds; round++ {
		for _, c := range changes {
			if o, e, code := lab.ipt(c...); code != 0 {
				t.Fatalf("under traffic: iptables %s: %d %q %q", strings.Join(c, " "), code, o, e)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// back to the round's start: UDP holds one udp ACCEPT
		if o, e, code := lab.ipt("-D", "UDP", "2"); code != 0 {
			t.Fatalf("under traffic: iptables -D UDP 2: %d %q %q", code, o, e)
		}
	}
	close(stop)
	wg.Wait()
	if lost.Load() != 0 || sent.Load() < 20 {
		t.Errorf("under change: %d of %d UDP exchanges lost", lost.Load(), sent.Load())
	}
	out, _, _ := cli(iptablesSave, "", append([]string{"-c", "-t", "filter"}, S...)...)
	if n, _ := ruleCounters(t, out, "-A FORWARD -p udp"); n != uint64(2*sent.Load()) {
		t.Errorf("the untouched udp rule counted %d packets, want %d (2 per exchange): counters lost across the changes\n%s", n, 2*sent.Load(), out)
	}
	t.Logf("%d UDP exchanges across %d changes, none lost; %d bad commands answered as offline and as the kernel", sent.Load(), rounds*(len(changes)+1), len(bad))
}

// kernelRouterT is the kernel's router: namespaces client, router
// (devices uc and uw, as the lab's) and wan, joined by veth pairs.
type kernelRouterT struct {
	router *kerneltest.Netns
	side   *iptSide
}

func kernelRouter(t *testing.T, wanLabel int) *kernelRouterT {
	kernPorts := udpPorts()
	t.Helper()
	c, r, w := kerneltest.NewNetns(t), kerneltest.NewNetns(t), kerneltest.NewNetns(t)
	run := func(ns *kerneltest.Netns, batch string) {
		t.Helper()
		if _, e, code, err := ns.Run(batch, "ip", "-batch", "-"); err != nil || code != 0 {
			t.Fatalf("ip -batch in %s: %v %s", ns.Name, err, e)
		}
	}
	run(r, fmt.Sprintf("link set lo up\nlink add uc type veth peer name c0 netns %s\nlink add uw type veth peer name w0 netns %s\n"+
		"addr add 10.10.1.1/24 dev uc\naddr add 203.0.113.1/24 dev uw\nlink set uc up\nlink set uw up\n", c.Name, w.Name))
	run(c, "link set lo up\nlink set c0 up\naddr add 10.10.1.2/24 dev c0\nroute add default via 10.10.1.1\n")
	run(w, "link set lo up\nlink set w0 up\naddr add 203.0.113.2/24 dev w0\nroute add default via 203.0.113.1\n")
	if _, e, code, err := r.Run("", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil || code != 0 {
		t.Fatalf("sysctl in the router namespace: %v %s", err, e)
	}
	// the wan's UDP echo answers as the lab's does: a label of the
	// wan's name length, the client's address, the payload
	var pc net.PacketConn
	labtest.InNetns(t, w.Name, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", "203.0.113.2:7")
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(strings.Repeat("w", wanLabel)+" "+from.String()+" "), buf[:n]...), from)
		}
	}()
	var id atomic.Uint32
	side := &iptSide{name: "kernel",
		ipt: func(args ...string) (string, string, int) {
			o, e, code, err := r.Run("", append([]string{"iptables"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			return o, e, code
		},
		ping: func(dst string) error {
			// the lab's echo request: 32 bytes of data
			var conn net.PacketConn
			if err := netnsrun.InNamed(c.Name, func() error {
				var err error
				conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
				return err
			}); err != nil {
				return err
			}
			defer conn.Close()
			msg := make([]byte, packet.ICMPHeaderLen+32)
			msg[0] = packet.ICMPEcho
			eid := uint16(id.Add(1)) ^ 0x3c00
			binary.BigEndian.PutUint16(msg[4:], eid)
			binary.BigEndian.PutUint16(msg[6:], 1)
			copy(msg[8:], "uswitch lab ping ................")
			binary.BigEndian.PutUint16(msg[2:], ^packet.Checksum(msg, 0))
			conn.SetDeadline(time.Now().Add(400 * time.Millisecond))
			if _, err := conn.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
				return err
			}
			buf := make([]byte, 1500)
			for {
				n, _, err := conn.ReadFrom(buf)
				if err != nil {
					return err
				}
				if n >= 8 && buf[0] == packet.ICMPEchoReply && binary.BigEndian.Uint16(buf[4:]) == eid {
					return nil
				}
			}
		},
		udp: func() error { return udpExchange(c.Name, kernPorts()) }}
	return &kernelRouterT{router: r, side: side}
}
