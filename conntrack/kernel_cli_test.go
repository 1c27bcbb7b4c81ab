package conntrack_test

import (
	"bufio"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/packet"
)

// The conntrack(8) differential test: the same packets go through the
// forwarding namespace R of CtLab (veths to namespaces A and B, whose
// raw sockets send them; R's kernel tracks them: its FORWARD rules match
// on --ctstate, a mangle rule CONNMARKs one flow) and through a
// datapath.Engine built from a snapshot of R (its addresses, routes,
// sysctls and iptables rules, as uswitch trace loads one); then
// conntrack -L with filter combinations and output formats, -G, -C, -S,
// and the event lines of conntrack -E (NEW, UPDATE on the reply and on
// ASSURED, the TCP state changes, the mark, DESTROY on -D and -F) are
// compared line for line: conntrack v1.4.7 on the kernel's table, and
// the conntrack package's command line on the engine's.
//
// Masked, because they cannot agree: the timeout column (the kernel's
// clock runs on between the packets and the listing) and entry ids
// (the kernel hashes its nf_conn pointer), and in DESTROY events the
// requester's portid and progname (a different process asked).

var (
	maskTimeoutRE = regexp.MustCompile(`^((?:\[[0-9. ]+\]\t)?(?: *\[[A-Z]+\] )?(?:ipv4 +2 )?\S+ +\d+ )\d+( |$)`)
	maskIDRE      = regexp.MustCompile(` id=\d+$| id=\d+( \[USERSPACE\])`)
	maskXMLRE     = regexp.MustCompile(`<timeout>\d+</timeout>|<id>\d+</id>`)
	maskUserRE    = regexp.MustCompile(` \[USERSPACE\] portid=\d+.*$`)
)

func maskLine(l string, ids bool) string {
	l = maskTimeoutRE.ReplaceAllString(l, "${1}_$2")
	l = maskXMLRE.ReplaceAllStringFunc(l, func(s string) string {
		if strings.HasPrefix(s, "<timeout>") {
			return "<timeout>_</timeout>"
		}
		return "<id>_</id>"
	})
	if ids {
		l = maskIDRE.ReplaceAllString(l, " id=_$1")
	}
	return maskUserRE.ReplaceAllString(l, " [USERSPACE] portid=_")
}

// kernelEvents is a conntrack -E running in a namespace.
type kernelEvents struct {
	cmd      *exec.Cmd
	out, err strings.Builder
	done     chan struct{}
}

func startKernelEvents(t *testing.T, ns string, args ...string) *kernelEvents {
	k := &kernelEvents{done: make(chan struct{})}
	k.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "conntrack", "-E"}, args...)...)
	stdout, err := k.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	k.cmd.Stderr = &k.err
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			k.out.WriteString(sc.Text() + "\n")
		}
		close(k.done)
	}()
	t.Cleanup(func() { k.cmd.Process.Kill(); k.cmd.Wait() })
	return k
}

// stop interrupts it as ^C would and returns its lines and stderr.
func (k *kernelEvents) stop() ([]string, string) {
	k.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		k.cmd.Process.Kill()
		<-k.done
	}
	k.cmd.Wait()
	return strings.Split(strings.TrimSuffix(k.out.String(), "\n"), "\n"), k.err.String()
}

func TestKernelCLI(t *testing.T) {
	l := NewCtLab(t)
	r := l.R()
	// no IPv6 chatter in R's table or counters
	Must(t, r, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
	if e, c, err := r.Restore("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp --sport 5001 -j CONNMARK --set-mark 0x17\nCOMMIT\n", "--noflush"); err != nil || c != 0 {
		t.Fatalf("restore: %v %s", err, e)
	}
	snap := t.TempDir()
	if err := host.Capture(snap, r.Name); err != nil {
		t.Fatal(err)
	}
	s, err := host.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	tb := eng.CT

	statsBefore := kernelStats(t, r)
	evPlain := startKernelEvents(t, r.Name, "-f", "ipv4")
	evExt := startKernelEvents(t, r.Name, "-f", "ipv4", "-o", "extended,id", "-e", "NEW,DESTROY", "-p", "udp")
	evXML := startKernelEvents(t, r.Name, "-f", "ipv4", "-o", "xml", "-p", "tcp", "--dport", "443")
	time.Sleep(200 * time.Millisecond) // the listeners subscribe

	start := time.Now()
	nowNS := func() int64 { return int64(time.Since(start)) + int64(time.Hour) }
	type listener struct {
		cmd   *Command
		lines []string
	}
	var ours []*listener
	for _, args := range [][]string{{"-E", "-f", "ipv4"}, {"-E", "-f", "ipv4", "-o", "extended,id", "-e", "NEW,DESTROY", "-p", "udp"},
		{"-E", "-f", "ipv4", "-o", "xml", "-p", "tcp", "--dport", "443"}} {
		c, err := ParseCommand(args)
		if err != nil {
			t.Fatal(err)
		}
		ls := &listener{cmd: c}
		ours = append(ours, ls)
		tb.Subscribe(func(e *Event) {
			if ls.cmd.WantEvent(e) {
				ls.lines = append(ls.lines, string(AppendEvent(nil, e, ls.cmd.Out, 0)))
			}
		})
	}

	c, sv := true, false
	isn, rsn := uint32(1000), uint32(5000)
	fS, fA, fF, fP := uint8(FS), uint8(FA), uint8(FF), uint8(FP)
	tcpSpec, udpSpec, icmpSpec, icmpErr := TCPSpec, UDPSpec, ICMPSpec, ICMPErr
	cliIP, srvIP := uint32(CliIP), uint32(SrvIP)
	pk := []packet.Spec{
		// a TCP connection's whole life
		tcpSpec(c, 2001, 80, fS, isn, 0, 0), tcpSpec(sv, 80, 2001, fS|fA, rsn, isn+1, 0), tcpSpec(c, 2001, 80, fA, isn+1, rsn+1, 0),
		tcpSpec(c, 2001, 80, fP|fA, isn+1, rsn+1, 100), tcpSpec(sv, 80, 2001, fA, rsn+1, isn+101, 0),
		tcpSpec(c, 2001, 80, fF|fA, isn+101, rsn+1, 0), tcpSpec(sv, 80, 2001, fA, rsn+1, isn+102, 0),
		tcpSpec(sv, 80, 2001, fF|fA, rsn+1, isn+102, 0), tcpSpec(c, 2001, 80, fA, isn+102, rsn+2, 0),
		// established, left open
		tcpSpec(c, 2003, 443, fS, isn, 0, 0), tcpSpec(sv, 443, 2003, fS|fA, rsn, isn+1, 0), tcpSpec(c, 2003, 443, fA, isn+1, rsn+1, 0),
		// a SYN unanswered
		tcpSpec(c, 2002, 80, fS, isn, 0, 0),
		// UDP replied, UDP one way (connmarked), ICMP echo and reply
		udpSpec(c, 5000, 53), udpSpec(sv, 53, 5000), udpSpec(c, 5001, 53),
		icmpSpec(cliIP, srvIP, 8, 0, 77, nil), icmpSpec(srvIP, cliIP, 0, 0, 77, nil),
		// a generic protocol
		{Proto: 253, Src: cliIP, Dst: srvIP, Payload: []byte("abcd")},
		// counted: invalid flags, an ICMP error about no flow
		tcpSpec(c, 2009, 80, fS|fF, isn, 0, 0),
		icmpErr(srvIP, cliIP, 3, 3, udpSpec(c, 6000, 7)),
		// an SCTP association (ports 5000 -> 9) established, and a
		// DATA chunk with a wrong verification tag (counted invalid)
		SCTPSpec(c, 0, packet.SCTPChunk(1, 0, packet.SCTPInitValue(0xa1, 10))),
		SCTPSpec(sv, 0xa1, packet.SCTPChunk(2, 0, packet.SCTPInitValue(0xb2, 10))),
		SCTPSpec(c, 0xb2, packet.SCTPChunk(10, 0, make([]byte, 8))),
		SCTPSpec(sv, 0xa1, packet.SCTPChunk(11, 0, nil)),
		SCTPSpec(c, 0xb2, packet.SCTPChunk(0, 3, make([]byte, 16))),
		SCTPSpec(c, 0xa1, packet.SCTPChunk(0, 3, make([]byte, 16))),
	}
	fates := map[string]int{}
	for i, spec := range pk {
		b := packet.Build(spec)
		l.Send(b)
		p := &packet.Packet{Data: append([]byte(nil), b...)}
		p.InIf, p.Seq = "a0", uint64(i+1)
		if spec.Src == srvIP {
			p.InIf = "b0"
		}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		f := eng.Receive(p, nowNS(), nil)
		fates[f.Kind.String()]++
	}
	t.Logf("the engine's fates: %v", fates)

	// conntrack -L (and -G, -C) with filters and formats
	lists := [][]string{
		{"-L"}, {"-L", "-p", "tcp"}, {"-L", "-p", "udp", "--dport", "53"},
		{"-L", "-s", "10.1.0.2", "-p", "tcp", "--state", "ESTABLISHED"},
		{"-L", "-p", "tcp", "--state", "SYN_SENT"}, {"-L", "-p", "tcp", "--state", "TIME_WAIT"},
		{"-L", "-d", "10.2.0.0/16"}, {"-L", "-d", "10.3.0.0/16"},
		{"-L", "-r", "10.2.0.2", "-p", "udp", "--reply-port-dst", "5001"},
		{"-L", "-q", "10.1.0.2", "-p", "tcp", "--reply-port-src", "443"},
		{"-L", "-u", "UNREPLIED"}, {"-L", "-u", "ASSURED"}, {"-L", "-u", "SEEN_REPLY"},
		{"-L", "-p", "icmp"}, {"-L", "-p", "icmp", "--icmp-type", "8", "--icmp-id", "77"},
		{"-L", "-p", "sctp"}, {"-L", "-p", "sctp", "--state", "ESTABLISHED", "-o", "xml"},
		{"-L", "-p", "sctp", "--dport", "9", "-o", "extended"}, {"-L", "-p", "253"}, {"-L", "-m", "0x17"}, {"-L", "-m", "0x10/0x10"}, {"-L", "-m", "0"},
		{"-L", "-w", "0"}, {"-L", "-w", "1"}, {"-L", "-f", "ipv6"},
		{"-L", "-o", "extended"}, {"-L", "-o", "xml"}, {"-L", "-o", "id"}, {"-L", "-o", "extended,id"},
		{"-L", "-p", "udp", "-o", "xml"}, {"-L", "-p", "tcp", "--dport", "443", "-o", "xml,id"},
		{"-G", "-p", "tcp", "-s", "10.1.0.2", "-d", "10.2.0.2", "--sport", "2003", "--dport", "443"},
		{"-G", "-p", "udp", "-s", "10.1.0.2", "-d", "10.2.0.2", "--sport", "5001", "--dport", "53", "-o", "extended"},
		{"-G", "-p", "udp", "-s", "10.1.0.2", "-d", "10.2.0.2", "--sport", "5009", "--dport", "53"},
		{"-C"},
	}
	compared, lines := 0, 0
	for _, args := range lists {
		kargs := args
		if args[0] == "-L" && !contains(args, "-f") {
			kargs = append(append([]string{}, args...), "-f", "ipv4")
		}
		ko, ke, kc, err := r.Run("", append([]string{"conntrack"}, kargs...)...)
		if err != nil {
			t.Fatal(err)
		}
		cmd, perr := ParseCommand(args)
		if perr != nil {
			t.Fatalf("%q: %v", args, perr)
		}
		r := cmd.Exec(tb, nowNS(), 1)
		ids := cmd.Out&(OutID|OutXML) != 0
		kl, ul := sortedMasked(ko, ids), sortedMasked(r.Stdout, ids)
		compared++
		lines += len(kl)
		if strings.Join(kl, "\n") != strings.Join(ul, "\n") || ke != r.Stderr || kc != r.Code {
			t.Errorf("conntrack %s:\nkernel (exit %d):\n%s\n%s\nuswitch (exit %d):\n%s\n%s", strings.Join(args, " "),
				kc, strings.Join(kl, "\n"), ke, r.Code, strings.Join(ul, "\n"), r.Stderr)
		}
	}

	// conntrack -S: the counters' changes over the packets, summed
	// over the kernel's CPUs
	statsAfter := kernelStats(t, r)
	var ks []string
	for i, name := range statNames {
		ks = append(ks, name+"="+itoa(statsAfter[i]-statsBefore[i]))
	}
	us := strings.Fields(strings.TrimPrefix(string(tb.AppendStats(nil)), "cpu=0"))
	if strings.Join(ks, " ") != strings.Join(us, " ") {
		t.Errorf("conntrack -S:\nkernel  %s\nuswitch %s", strings.Join(ks, " "), strings.Join(us, " "))
	} else {
		t.Logf("conntrack -S agrees: %s", strings.Join(us, " "))
	}

	// -D with a filter, then -F: the DESTROY events
	for _, args := range [][]string{{"-D", "-p", "udp", "--dport", "53", "-s", "10.1.0.2"}, {"-D", "-p", "tcp", "--state", "TIME_WAIT"}} {
		ko, ke, kc, _ := r.Run("", append([]string{"conntrack"}, args...)...)
		cmd, _ := ParseCommand(args)
		r := cmd.Exec(tb, nowNS(), 1)
		if kl, ul := sortedMasked(ko, false), sortedMasked(r.Stdout, false); strings.Join(kl, "\n") != strings.Join(ul, "\n") || ke != r.Stderr || kc != r.Code {
			t.Errorf("conntrack %s:\nkernel (exit %d):\n%s\n%s\nuswitch (exit %d):\n%s\n%s", strings.Join(args, " "),
				kc, strings.Join(kl, "\n"), ke, r.Code, strings.Join(ul, "\n"), r.Stderr)
		}
		compared++
	}
	_, ke, _, _ := r.Run("", "conntrack", "-F")
	if r := (&Command{Op: OpFlush, Table: "conntrack"}).Exec(tb, nowNS(), 1); r.Stderr != ke {
		t.Errorf("-F: kernel %q, uswitch %q", ke, r.Stderr)
	}
	time.Sleep(300 * time.Millisecond)

	// the event lines: in order up to the flush, whose DESTROYs come in
	// each table's hash order (compared sorted)
	evCompared := 0
	for i, k := range []*kernelEvents{evPlain, evExt, evXML} {
		kl, kerr := k.stop()
		ul := ours[i].lines
		uout, uerr := EventsTrailer(ours[i].cmd.Out, len(ul))
		if ours[i].cmd.Out&OutXML != 0 && len(ul) > 0 {
			// the header before the first event, the footer at the end
			ul = append(strings.Split(strings.TrimSuffix(XMLHeader, "\n"), "\n"), ul...)
			ul = append(ul, strings.TrimSuffix(uout, "\n"))
		}
		evCompared += len(kl)
		ids := ours[i].cmd.Out&(OutID|OutXML) != 0
		km, um := maskEvents(kl, ids), maskEvents(ul, ids)
		t.Logf("conntrack -E %d, the kernel's (masked):\n%s\n%s", i, strings.Join(km, "\n"), kerr)
		if strings.Join(km, "\n") != strings.Join(um, "\n") || kerr != uerr {
			t.Errorf("conntrack -E %d:\nkernel:\n%s\n%s\nuswitch:\n%s\n%s", i, strings.Join(km, "\n"), kerr, strings.Join(um, "\n"), uerr)
		}
	}
	t.Logf("%d packets; %d listings (%d kernel lines) and %d event lines compared", len(pk), compared, lines, evCompared)
}

var statNames = []string{"found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error", "search_restart", "clash_resolve", "chaintoolong"}

// kernelStats sums conntrack -S over the CPUs.
func kernelStats(t *testing.T, r *kerneltest.Netns) []uint64 {
	o, e, c, err := r.Run("", "conntrack", "-S")
	if err != nil || c != 0 {
		t.Fatalf("conntrack -S: %v %s", err, e)
	}
	sum := make([]uint64, len(statNames))
	for _, line := range strings.Split(o, "\n") {
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			for i, n := range statNames {
				if n == k {
					sum[i] += Atoi(v)
				}
			}
		}
	}
	return sum
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func contains(a []string, s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}

func sortedMasked(out string, ids bool) []string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" {
			ls = append(ls, maskLine(l, ids))
		}
	}
	sort.Strings(ls)
	return ls
}

// maskEvents masks the lines and sorts the final run of DESTROY lines
// (the flush's, in hash order).
func maskEvents(lines []string, ids bool) []string {
	var m []string
	for _, l := range lines {
		if l != "" {
			m = append(m, maskLine(l, ids))
		}
	}
	i := len(m)
	for i > 0 && strings.HasPrefix(m[i-1], "[DESTROY]") {
		i--
	}
	sort.Strings(m[i:])
	return m
}
