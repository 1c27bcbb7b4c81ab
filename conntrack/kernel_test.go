package conntrack

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestMain doubles as the packet sender of the kernel differential test:
// run inside a namespace (ip netns exec) with USW_CT_SENDER=1, it reads
// hex-encoded IPv4 packets from stdin, one a line, sends each through a
// raw socket and answers "ok" (or the error) on stdout; it exits at EOF.
func TestMain(m *testing.M) {
	if os.Getenv("USW_CT_SENDER") == "1" {
		os.Exit(sender())
	}
	os.Exit(m.Run())
}

func sender() int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer syscall.Close(fd)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	for in.Scan() {
		b, err := hex.DecodeString(in.Text())
		if err == nil && len(b) < 20 {
			err = fmt.Errorf("%d bytes", len(b))
		}
		if err == nil {
			var dst syscall.SockaddrInet4
			copy(dst.Addr[:], b[16:20])
			err = syscall.Sendto(fd, b, 0, &dst)
		}
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println("ok")
	}
	return 0
}

// senderProc is a running sender in one namespace.
type senderProc struct {
	in  io.WriteCloser
	out *bufio.Reader
}

func startSender(t *testing.T, ns *kerneltest.Netns, exe string) *senderProc {
	cmd := exec.Command("ip", "netns", "exec", ns.Name, exe)
	cmd.Env = append(os.Environ(), "USW_CT_SENDER=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the namespace cleanups, so it runs before them.
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return &senderProc{in: in, out: bufio.NewReader(out)}
}

// ctLab is router R forwarding between namespaces A (10.1.0.2, the
// clients) and B (10.2.0.2, the servers). A and B drop whatever they
// receive and do not track, so only the crafted packets exist. R counts
// each packet's ctstate/ctdir in filter FORWARD.
type ctLab struct {
	t       *testing.T
	r, a, b *kerneltest.Netns
	sa, sb  *senderProc
	prev    []uint64
}

var ctRules = []string{
	"-m conntrack --ctstate INVALID",
	"-m conntrack --ctstate NEW",
	"-m conntrack --ctstate ESTABLISHED",
	"-m conntrack --ctstate RELATED",
	"-m conntrack --ctstate UNTRACKED",
	"-m conntrack --ctdir ORIGINAL",
	"-m conntrack --ctdir REPLY",
}

func must(t *testing.T, n *kerneltest.Netns, args ...string) {
	t.Helper()
	if o, e, c, err := n.Run("", args...); err != nil || c != 0 {
		t.Fatalf("%s: %v %s%s", strings.Join(args, " "), err, o, e)
	}
}

func newCtLab(t *testing.T) *ctLab {
	kerneltest.Require(t, "conntrack", "ping", "sysctl")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := &ctLab{t: t, r: kerneltest.NewNetns(t), a: kerneltest.NewNetns(t), b: kerneltest.NewNetns(t)}
	// Device names are per namespace; the veths are created inside R.
	for _, side := range []struct {
		ns       *kerneltest.Netns
		dev, net string
	}{{l.a, "a", "10.1.0"}, {l.b, "b", "10.2.0"}} {
		must(t, l.r, "ip", "link", "add", side.dev+"0", "type", "veth", "peer", "name", side.dev+"1", "netns", side.ns.Name)
		must(t, l.r, "ip", "addr", "add", side.net+".1/24", "dev", side.dev+"0")
		must(t, l.r, "ip", "link", "set", side.dev+"0", "up")
		must(t, side.ns, "ip", "addr", "add", side.net+".2/24", "dev", side.dev+"1")
		must(t, side.ns, "ip", "link", "set", side.dev+"1", "up")
		must(t, side.ns, "ip", "link", "set", "lo", "up")
		must(t, side.ns, "ip", "route", "add", "default", "via", side.net+".1")
		if e, c, err := side.ns.Restore("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j DROP\n-A OUTPUT -j NOTRACK\nCOMMIT\n"); err != nil || c != 0 {
			t.Fatalf("restore: %v %s", err, e)
		}
	}
	must(t, l.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	must(t, l.r, "ip", "neigh", "add", "10.1.0.3", "lladdr", "02:00:00:00:00:03", "dev", "a0")
	rules := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
	for _, r := range ctRules {
		rules += "-A FORWARD " + r + "\n"
	}
	if e, c, err := l.r.Restore(rules + "COMMIT\n"); err != nil || c != 0 {
		t.Fatalf("restore: %v %s", err, e)
	}
	// Warm up neighbour entries so the first crafted packets are not
	// queued behind ARP (the echo replies are dropped by A's and B's raw
	// table, so the exit status says nothing).
	l.a.Run("", "ping", "-c1", "-W1", "10.1.0.1")
	l.b.Run("", "ping", "-c1", "-W1", "10.2.0.1")
	must(t, l.r, "conntrack", "-F")
	l.sa, l.sb = startSender(t, l.a, exe), startSender(t, l.b, exe)
	l.prev = l.counters()
	return l
}

var counterRE = regexp.MustCompile(`^\[(\d+):\d+\] -A FORWARD (.*)$`)

func (l *ctLab) counters() []uint64 {
	out, err := l.r.Save("-c", "-t", "filter")
	if err != nil {
		l.t.Fatal(err)
	}
	var c []uint64
	for _, line := range strings.Split(out, "\n") {
		if m := counterRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			c = append(c, n)
		}
	}
	if len(c) != len(ctRules) {
		l.t.Fatalf("counters: %q", out)
	}
	return c
}

// send injects b from the namespace owning its source address and
// returns the ctstate bits and direction R's kernel gave it.
// sendBoth sends b through the kernel and through tb (lookup and
// confirm at PREROUTING, time from now): the decoded packet and the
// state and direction each gave it.
func (l *ctLab) sendBoth(t *testing.T, tb *Table, b []byte, now func() int64) (p *packet.Packet, ks StateBits, kdir string, us StateBits, udir string) {
	t.Helper()
	ks, kdir = l.send(b)
	p = &packet.Packet{Data: b}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	at := now()
	ref, _ := tb.In(p, 0, netfilter.PreRouting, at)
	tb.Confirm(ref, at)
	us = ref.State()
	if ref.Conn != nil {
		udir = ref.Info.Dir().String()
	}
	return p, ks, kdir, us, udir
}

func (l *ctLab) send(b []byte) (StateBits, string) {
	sp := l.sa
	if b[12] == 10 && b[13] == 2 {
		sp = l.sb
	}
	if _, err := io.WriteString(sp.in, hex.EncodeToString(b)+"\n"); err != nil {
		l.t.Fatal(err)
	}
	if ans, err := sp.out.ReadString('\n'); err != nil || ans != "ok\n" {
		l.t.Fatalf("send: %q %v", ans, err)
	}
	var now []uint64
	for i := 0; i < 50; i++ {
		time.Sleep(5 * time.Millisecond)
		now = l.counters()
		if now[0]+now[1]+now[2]+now[3]+now[4] != l.prev[0]+l.prev[1]+l.prev[2]+l.prev[3]+l.prev[4] {
			break
		}
	}
	bitsFor := []StateBits{StateInvalid, StateNew, StateEstablished, StateRelated, StateUntracked}
	var s StateBits
	for i, b := range bitsFor {
		if now[i] != l.prev[i] {
			s |= b
		}
	}
	dir := ""
	if now[5] != l.prev[5] {
		dir = "ORIGINAL"
	}
	if now[6] != l.prev[6] {
		dir += "REPLY"
	}
	l.prev = now
	return s, dir
}

// entries lists R's conntrack table in -o extended form, sorted, with
// the timeout column split off.
func (l *ctLab) entries() map[string]int {
	o, e, c, err := l.r.Run("", "conntrack", "-L", "-o", "extended")
	if err != nil || c != 0 {
		l.t.Fatalf("conntrack -L: %v %s", err, e)
	}
	return splitTimeouts(strings.Split(strings.TrimSpace(o), "\n"))
}

var timeoutRE = regexp.MustCompile(`^(ipv4 +2 \S+ +\d+) (\d+) (.*)$`)

func splitTimeouts(lines []string) map[string]int {
	m := map[string]int{}
	for _, line := range lines {
		if line == "" {
			continue
		}
		if s := timeoutRE.FindStringSubmatch(line); s != nil {
			n, _ := strconv.Atoi(s[2])
			m[s[1]+" _ "+s[3]] = n
		} else {
			m[line] = -1
		}
	}
	return m
}

// TestKernelDifferential sends crafted TCP, UDP, ICMP and generic
// sequences through a forwarding namespace and through a Table, and
// compares the ctstate of every packet and the final entries.
func TestKernelDifferential(t *testing.T) {
	l := newCtLab(t)
	tb := testTable()
	start := time.Now()
	nowNS := func() int64 { return int64(time.Since(start)) + 1e9 }

	c, s := true, false
	isn, rsn := uint32(1000), uint32(5000)
	var pk []packet.Spec
	hs := func(sp uint16) {
		pk = append(pk, tcpSpec(c, sp, 80, fS, isn, 0, 0), tcpSpec(s, 80, sp, fS|fA, rsn, isn+1, 0), tcpSpec(c, sp, 80, fA, isn+1, rsn+1, 0))
	}
	// 1. full life: handshake, data, FIN both ways, TIME_WAIT, reopen.
	hs(1001)
	pk = append(pk,
		tcpSpec(c, 1001, 80, fP|fA, isn+1, rsn+1, 100), tcpSpec(s, 80, 1001, fA, rsn+1, isn+101, 0),
		tcpSpec(c, 1001, 80, fF|fA, isn+101, rsn+1, 0), tcpSpec(s, 80, 1001, fA, rsn+1, isn+102, 0),
		tcpSpec(s, 80, 1001, fF|fA, rsn+1, isn+102, 0), tcpSpec(c, 1001, 80, fA, isn+102, rsn+2, 0),
		tcpSpec(c, 1001, 80, fS, isn+100000, 0, 0))
	// 2. RST after the handshake.
	hs(1002)
	pk = append(pk, tcpSpec(s, 80, 1002, fR|fA, rsn+1, isn+1, 0))
	// 3. RST as the only reply.
	pk = append(pk, tcpSpec(c, 1003, 80, fS, isn, 0, 0), tcpSpec(s, 80, 1003, fR|fA, 0, isn+1, 0))
	// 4. SYN/ACK first, FIN first, SYN+FIN, bad checksum.
	pk = append(pk, tcpSpec(s, 80, 1004, fS|fA, rsn, isn+1, 0), tcpSpec(c, 1005, 80, fF|fA, isn, 1, 0), tcpSpec(c, 1006, 80, fS|fF, isn, 0, 0))
	// 5. loose pick-up.
	pk = append(pk, tcpSpec(c, 1007, 80, fA, isn, rsn, 10), tcpSpec(s, 80, 1007, fA, rsn, isn+10, 0), tcpSpec(c, 1007, 80, fA, isn+10, rsn, 0))
	// 6. out of window.
	hs(1008)
	pk = append(pk, tcpSpec(c, 1008, 80, fP|fA, isn+1+10_000_000, rsn+1, 10), tcpSpec(s, 80, 1008, fA, rsn+1, isn+1+500_000, 0),
		tcpSpec(c, 1008, 80, fP|fA, isn+1, rsn+1, 10), tcpSpec(c, 1008, 80, fA, isn-70000, rsn+1, 0))
	// 7. simultaneous open, SYN retransmit.
	pk = append(pk, tcpSpec(c, 1010, 80, fS, isn, 0, 0), tcpSpec(c, 1010, 80, fS, isn, 0, 0), tcpSpec(s, 80, 1010, fS, rsn, 0, 0), tcpSpec(c, 1010, 80, fS|fA, isn, rsn+1, 0))
	// 8. UDP, ICMP echo, errors.
	udp := udpSpec(c, 6000, 7)
	pk = append(pk, udpSpec(c, 5000, 53), udpSpec(s, 53, 5000), udpSpec(c, 5000, 53), udpSpec(c, 5001, 53),
		icmpSpec(cliIP, srvIP, 8, 0, 77, nil), icmpSpec(srvIP, cliIP, 0, 0, 77, nil), icmpSpec(srvIP, cliIP, 0, 0, 78, nil),
		icmpSpec(cliIP, srvIP, 13, 0, 79, make([]byte, 12)), icmpSpec(cliIP, srvIP, 19, 0, 80, nil),
		icmpErr(srvIP, cliIP, 3, 3, udp), udp, icmpErr(srvIP, cliIP, 3, 3, udp), icmpErr(srvIP, 0x0a010003, 3, 3, udp),
		udpSpec(s, 7, 6000), icmpErr(cliIP, srvIP, 11, 0, udpSpec(s, 7, 6000)),
		icmpErr(srvIP, cliIP, 11, 0, tcpSpec(c, 1008, 80, fA, isn+11, rsn+1, 0)),
		icmpErr(srvIP, cliIP, 3, 1, icmpErr(cliIP, srvIP, 3, 3, udp)),
		packet.Spec{Proto: 253, Src: cliIP, Dst: srvIP, Payload: []byte("abcd")},
		packet.Spec{Proto: 253, Src: srvIP, Dst: cliIP, Payload: []byte("abcd")},
		udpSpec(c, 5000, 53),
	)
	type result struct {
		state StateBits
		dir   string
	}
	bad := 0
	for i, spec := range pk {
		if i == len(pk)-1 {
			// The last packet continues the replied UDP flow after the
			// two seconds that make it a stream (ASSURED, 120 s).
			time.Sleep(2100 * time.Millisecond)
		}
		b := packet.Build(spec)
		p, ks, kdir, us, udir := l.sendBoth(t, tb, b, nowNS)
		if (result{ks, kdir}) != (result{us, udir}) {
			bad++
			t.Errorf("packet %d %s: kernel %s/%s, uswitch %s/%s", i, describe(p), stateString(ks), kdir, stateString(us), udir)
		}
	}
	// A checksum-broken SYN.
	b := packet.Build(tcpSpec(c, 1009, 80, fS, isn, 0, 0))
	b[36] ^= 0xff
	ks, _ := l.send(b)
	p := &packet.Packet{Data: b}
	_ = p.Decode()
	ref, _ := tb.In(p, 0, netfilter.PreRouting, nowNS())
	if ks != ref.State() {
		t.Errorf("bad-checksum SYN: kernel %s, uswitch %s", stateString(ks), stateString(ref.State()))
	}

	kern := l.entries()
	now := nowNS()
	compareListings(t, kern, tb, now)
	t.Logf("%d packets and %d kernel entries compared; %d per-packet differences", len(pk)+1, len(kern), bad)
}

// compareListings compares the kernel's `conntrack -L -o extended`
// entries (kern: the line with its timeout cut out -> timeout, as
// splitTimeouts gives) with tb's listing now: the same entries, and
// timeouts within 2 s.
func compareListings(t *testing.T, kern map[string]int, tb *Table, now int64) {
	t.Helper()
	var lines []string
	tb.Range(now, func(c *Conn) bool { lines = append(lines, c.Format(now, true)); return true })
	ours := splitTimeouts(lines)
	var keys []string
	for k := range kern {
		keys = append(keys, k)
	}
	for k := range ours {
		if _, ok := kern[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("kernel %3d uswitch %3d  %s", kern[k], ours[k], k)
	}
	for _, k := range keys {
		kt, inK := kern[k]
		ut, inU := ours[k]
		switch {
		case !inK:
			t.Errorf("only uswitch has: %s (timeout %d)", k, ut)
		case !inU:
			t.Errorf("only the kernel has: %s (timeout %d)", k, kt)
		case kt-ut > 2 || ut-kt > 2:
			t.Errorf("timeout %d (kernel) vs %d: %s", kt, ut, k)
		}
	}
}

func describe(p *packet.Packet) string {
	switch p.Proto {
	case packet.ProtoTCP:
		return fmt.Sprintf("tcp %d->%d flags %#x seq %d ack %d", p.SrcPort, p.DstPort, p.TCPFlags, packet.TCP(p.L4).Seq(), packet.TCP(p.L4).Ack())
	case packet.ProtoUDP:
		return fmt.Sprintf("udp %d->%d", p.SrcPort, p.DstPort)
	case packet.ProtoICMP:
		return fmt.Sprintf("icmp type %d code %d id %d", p.ICMPType, p.ICMPCode, p.ICMPID)
	}
	return fmt.Sprintf("proto %d", p.Proto)
}
