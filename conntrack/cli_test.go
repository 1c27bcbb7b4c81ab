package conntrack

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// cliTable is a table with one entry of each kind the filters tell
// apart, and the events it made:
//
//	tcp 1001->80   ESTABLISHED, ASSURED
//	tcp 1002->80   SYN_SENT, unreplied, mark 0x17
//	udp 5000->53   replied
//	udp 5001->53   unreplied, zone 3
//	icmp echo 77   replied
type cliFixture struct {
	tb     *Table
	now    int64
	events []string
}

func newCLIFixture(t *testing.T) *cliFixture {
	f := &cliFixture{tb: testTable(), now: 10 * sec}
	f.tb.Subscribe(func(e *Event) {
		f.events = append(f.events, string(AppendEvent(nil, e, 0, 0)))
	})
	isn, rsn := uint32(1000), uint32(5000)
	feed := func(zone uint16, s packet.Spec) *Conn {
		p := mkpkt(t, s, nil)
		ref, _ := f.tb.In(p, zone, netfilter.PreRouting, f.now)
		ref, _ = f.tb.Confirm(ref, f.now)
		return ref.Conn
	}
	feed(0, tcpSpec(true, 1001, 80, fS, isn, 0, 0))
	feed(0, tcpSpec(false, 80, 1001, fS|fA, rsn, isn+1, 0))
	feed(0, tcpSpec(true, 1001, 80, fA, isn+1, rsn+1, 0))
	c := feed(0, tcpSpec(true, 1002, 80, fS, isn, 0, 0))
	c.SetMark(0x17)
	feed(0, udpSpec(true, 5000, 53))
	feed(0, udpSpec(false, 53, 5000))
	feed(3, udpSpec(true, 5001, 53))
	feed(0, icmpSpec(cliIP, srvIP, 8, 0, 77, nil))
	feed(0, icmpSpec(srvIP, cliIP, 0, 0, 77, nil))
	return f
}

func (f *cliFixture) run(t *testing.T, args ...string) Result {
	t.Helper()
	c, err := ParseCommand(args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return c.Exec(f.tb, f.now, 4242)
}

// TestCLIEvents: the events of the fixture's packets, one per packet
// that changed something, as conntrack -E prints them (the sequence the
// kernel gives, kernel_cli_test.go checks it against the kernel).
func TestCLIEvents(t *testing.T) {
	f := newCLIFixture(t)
	want := []string{
		"    [NEW] tcp      6 120 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001",
		" [UPDATE] tcp      6 60 SYN_RECV src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001",
		" [UPDATE] tcp      6 432000 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001 [ASSURED]",
		"    [NEW] tcp      6 120 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=1002 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1002",
		"    [NEW] udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000",
		" [UPDATE] udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000",
		"    [NEW] udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=5001 dport=53 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5001 zone=3",
		"    [NEW] icmp     1 30 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77",
		" [UPDATE] icmp     1 30 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77",
	}
	if got := strings.Join(f.events, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	// the mark set after confirm waits for the entry's next packet
	f.events = nil
	f.now += sec
	p := mkpkt(t, tcpSpec(true, 1002, 80, fS, 1000, 0, 0), nil)
	ref, _ := f.tb.In(p, 0, netfilter.PreRouting, f.now)
	f.tb.Confirm(ref, f.now)
	if len(f.events) != 1 || !strings.HasSuffix(f.events[0], " mark=23") || !strings.HasPrefix(f.events[0], " [UPDATE] ") {
		t.Errorf("mark change: %q", f.events)
	}
	// -D: DESTROY with the requester
	f.events = nil
	if r := f.run(t, "-D", "-p", "udp", "--dport", "53", "-w", "3"); r.Code != 0 {
		t.Fatalf("-D: %+v", r)
	}
	want = []string{"[DESTROY] udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5001 dport=53 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5001 zone=3 [USERSPACE] portid=4242"}
	if strings.Join(f.events, "\n") != want[0] {
		t.Errorf("-D events %q, want %q", f.events, want)
	}
	// expiry: DESTROY without [USERSPACE]
	f.events = nil
	f.tb.Reap(f.now+200*sec, 1<<20)
	for _, e := range f.events {
		if !strings.HasPrefix(e, "[DESTROY] ") || strings.Contains(e, "USERSPACE") {
			t.Errorf("reaped: %q", e)
		}
	}
	if len(f.events) != 3 { // tcp 1002, udp 5000, icmp
		t.Errorf("reaped %d: %q", len(f.events), f.events)
	}
}

// TestCLIFilters: each filter option selects the entries it names.
func TestCLIFilters(t *testing.T) {
	f := newCLIFixture(t)
	key := func(line string) string {
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, "sport=") || strings.HasPrefix(w, "id=") {
				return w[strings.IndexByte(w, '=')+1:]
			}
		}
		return line
	}
	for _, c := range []struct {
		args string
		want string // the entries' first sport (or ICMP id), sorted
	}{
		{"", "1001 1002 5000 5001 77"},
		{"-p tcp", "1001 1002"},
		{"-p 6", "1001 1002"},
		{"--protonum udp", "5000 5001"},
		{"-p icmp", "77"},
		{"-p gre", ""},
		{"-s 10.1.0.2", "1001 1002 5000 5001 77"},
		{"-s 10.1.0.0/16", "1001 1002 5000 5001 77"},
		{"-s 10.2.0.0/16", ""},
		{"--orig-src 10.1.0.2 --mask-src 255.0.0.0", "1001 1002 5000 5001 77"},
		{"-d 10.2.0.2", "1001 1002 5000 5001 77"},
		{"--orig-dst 10.1.0.2", ""},
		{"-r 10.2.0.2", "1001 1002 5000 5001 77"},
		{"--reply-src 10.1.0.2", ""},
		{"-q 10.1.0.2", "1001 1002 5000 5001 77"},
		{"--reply-dst 10.1.0.3", ""},
		{"-s ::1", ""},
		{"-f ipv6", ""},
		{"-f ipv4", "1001 1002 5000 5001 77"},
		{"-p tcp --sport 1001", "1001"},
		{"-p tcp --orig-port-src 1002", "1002"},
		{"-p udp --dport 53", "5000 5001"},
		{"-p udp --orig-port-dst 54", ""},
		{"-p udp --reply-port-src 53", "5000 5001"},
		{"-p udp --reply-port-dst 5001", "5001"},
		{"-p tcp --state ESTABLISHED", "1001"},
		{"-p tcp --state SYN_SENT", "1002"},
		{"-p tcp --state TIME_WAIT", ""},
		{"-p icmp --icmp-type 8", "77"},
		{"-p icmp --icmp-id 78", ""},
		{"-p icmp --icmp-code 0 --icmp-id 77", "77"},
		{"-m 0x17", "1002"},
		{"--mark 23", "1002"},
		{"-m 0x10/0xf0", "1002"},
		{"-m 0", "1001 5000 5001 77"},
		{"-m 1/0x1", "1002"},
		{"-w 3", "5001"},
		{"--zone 0", "1001 1002 5000 77"},
		{"--orig-zone 3", "5001"},
		{"-u ASSURED", "1001"},
		{"-u SEEN_REPLY", "1001 5000 77"},
		{"-u UNREPLIED", "1002 5001"},
		{"--status ASSURED,SEEN_REPLY", "1001"},
		{"-p udp -s 10.1.0.2 --dport 53 -u UNREPLIED -w 3", "5001"},
		{"-l foo", ""},
	} {
		args := append([]string{"-L"}, strings.Fields(c.args)...)
		r := f.run(t, args...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			if l != "" {
				got = append(got, key(l))
			}
		}
		sort.Strings(got)
		if g := strings.Join(got, " "); g != c.want || r.Code != 0 {
			t.Errorf("conntrack %s: %q (exit %d), want %q", strings.Join(args, " "), g, r.Code, c.want)
		}
		if w := fmt.Sprintf("%s: %d flow entries have been shown.\n", Program, len(got)); r.Stderr != w {
			t.Errorf("conntrack %s: stderr %q, want %q", strings.Join(args, " "), r.Stderr, w)
		}
	}
}

// TestCLIOutput: -o formats, -G, -C, -S, -D, -F as the tool prints them.
func TestCLIOutput(t *testing.T) {
	f := newCLIFixture(t)
	var tcp *Conn
	f.tb.Range(f.now, func(c *Conn) bool {
		if c.Tuple(Original).SrcPort == 1001 {
			tcp = c
		}
		return true
	})
	id := fmt.Sprint(tcp.ID())
	line := "tcp      6 432000 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001 [ASSURED] mark=0 use=1"
	lineGet := strings.Replace(line, "use=1", "use=2", 1)
	xml := `<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.1.0.2</src><dst>10.2.0.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>1001</sport><dport>80</dport></layer4></meta>` +
		`<meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.2.0.2</src><dst>10.1.0.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>80</sport><dport>1001</dport></layer4></meta>` +
		`<meta direction="independent"><state>ESTABLISHED</state><timeout>432000</timeout><mark>0</mark><use>1</use><id>` + id + `</id><assured/></meta></flow>`
	shown := Program + ": 1 flow entries have been shown.\n"
	for _, c := range []struct {
		args string
		want Result
	}{
		{"-L -p tcp --sport 1001", Result{Stdout: line + "\n", Stderr: shown}},
		{"--dump -p tcp --sport 1001 -o extended", Result{Stdout: "ipv4     2 " + line + "\n", Stderr: shown}},
		{"-L -p tcp --sport 1001 -o id", Result{Stdout: line + " id=" + id + "\n", Stderr: shown}},
		{"-L -p tcp --sport 1001 -o extended,id", Result{Stdout: "ipv4     2 " + line + " id=" + id + "\n", Stderr: shown}},
		{"-L -p tcp --sport 1001 -o xml", Result{Stdout: XMLHeader + xml + "\n" + XMLFooter, Stderr: shown}},
		{"-L -p tcp --sport 1001 -o xml,id -o extended", Result{Stdout: XMLHeader + xml + "\n" + XMLFooter, Stderr: shown}},
		{"-L -p tcp --sport 9 -o xml", Result{Stderr: Program + ": 0 flow entries have been shown.\n"}},
		{"-L -p icmp -o xml", Result{Stdout: XMLHeader + `<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.1.0.2</src><dst>10.2.0.2</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta>`}},
		{"-L expect", Result{Stderr: Program + ": 0 expectations have been shown.\n"}},
		{"-L dying", Result{Stderr: Program + ": 0 flow entries have been shown.\n"}},
		{"-G -p tcp -s 10.1.0.2 -d 10.2.0.2 --sport 1001 --dport 80", Result{Stdout: lineGet + "\n", Stderr: shown}},
		{"-G -p tcp -r 10.2.0.2 -q 10.1.0.2 --reply-port-src 80 --reply-port-dst 1001", Result{Stdout: lineGet + "\n", Stderr: shown}},
		{"-G -p tcp -s 10.1.0.2 -d 10.2.0.2 --sport 1001 --dport 81", Result{Stderr: Program + ": Operation failed: such conntrack doesn't exist\n", Code: 1}},
		{"-G -p icmp -s 10.1.0.2 -d 10.2.0.2 --icmp-type 8 --icmp-code 0 --icmp-id 77", Result{Stdout: "icmp     1 30 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77 mark=0 use=2\n", Stderr: shown}},
		{"-C", Result{Stdout: "5\n"}},
		{"--count expect", Result{Stdout: "0\n"}},
		{"-S", Result{Stdout: "cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n"}},
		{"-V", Result{Stdout: Program + "\n"}},
		{"-D -p tcp --sport 1001 -o id", Result{Stdout: line + " id=" + id + "\n", Stderr: Program + ": 1 flow entries have been deleted.\n"}},
		{"-D -p tcp --sport 1001", Result{Stderr: Program + ": 0 flow entries have been deleted.\n", Code: 1}},
		{"-C", Result{Stdout: "4\n"}},
		{"-F", Result{Stderr: Program + ": connection tracking table has been emptied.\n"}},
		{"-C", Result{Stdout: "0\n"}},
		{"-D", Result{Stderr: Program + ": 0 flow entries have been deleted.\n", Code: 1}},
	} {
		r := f.run(t, strings.Fields(c.args)...)
		if strings.HasPrefix(c.args, "-L -p icmp -o xml") {
			// the ICMP flow: no layer 4 fields in XML
			if !strings.HasPrefix(r.Stdout, c.want.Stdout) || !strings.HasSuffix(r.Stdout, "</id></meta></flow>\n"+XMLFooter) {
				t.Errorf("conntrack %s:\n%s", c.args, r.Stdout)
			}
			continue
		}
		if r != c.want {
			t.Errorf("conntrack %s:\n got %+v\nwant %+v", c.args, r, c.want)
		}
	}
}

// TestCLIStats: conntrack -S counts where the kernel counts.
func TestCLIStats(t *testing.T) {
	tb := testTable()
	now := 10 * sec
	feed := func(s packet.Spec) {
		p := mkpkt(t, s, nil)
		ref, _ := tb.In(p, 0, netfilter.PreRouting, now)
		tb.Confirm(ref, now)
	}
	feed(udpSpec(true, 5000, 53))
	feed(icmpErr(srvIP, cliIP, 3, 3, udpSpec(true, 6000, 7))) // about no flow: error
	feed(tcpSpec(true, 1, 80, fA|fS|fF|fR, 1, 1, 0))          // bad flags: invalid
	feed(icmpSpec(cliIP, srvIP, 9, 0, 1, nil))                // cannot be inverted: invalid
	tu := Tuple{Src: cliIP, Dst: srvIP, SrcPort: 5000, DstPort: 53, Proto: packet.ProtoUDP}
	if !tb.TupleTaken(tu, nil, now) { // found
		t.Fatal("tuple not taken")
	}
	got := string(tb.AppendStats(nil))
	want := "cpu=0   \tfound=1 invalid=2 insert=0 insert_failed=0 drop=0 early_drop=0 error=1 search_restart=0 clash_resolve=0 chaintoolong=0 \n"
	if got != want {
		t.Errorf("-S:\n%q\nwant\n%q", got, want)
	}
}

// TestCLIErrors: refused command lines, with conntrack's messages and
// exit statuses (each checked against conntrack v1.4.7).
func TestCLIErrors(t *testing.T) {
	try := "Try `conntrack -h' or 'conntrack --help' for more information.\n"
	for _, c := range []struct{ args, msg string }{
		{"-L -o foo", "Bad parameter `foo'"},
		{"-L -o xml -o foo", "Bad parameter `foo'"},
		{"-L -p foo", "`foo' unsupported protocol"},
		{"-L -p 300", "`300' unsupported protocol"},
		{"-L -p foo -s", "`foo' unsupported protocol"},
		{"-L -s", "option `-s' requires an argument"},
		{"-L -p tcp --sport", "option `--sport' requires an argument"},
		{"-L -e", "option `-e' requires an argument"},
		{"-X", "unknown option `-X'"},
		{"-L --foo", "unknown option `--foo'"},
		{"-L --state ESTABLISHED", "unknown option `--state'"},
		{"-L --sport 1", "unknown option `--sport'"},
		{"-L --sport 80 -p tcp", "unknown option `--sport'"},
		{"-L -p icmp --sport 1", "unknown option `--sport'"},
		{"-L -p udp --state ESTABLISHED", "unknown option `--state'"},
		{"-L -p tcp --state FOO", "unknown TCP state `FOO'"},
		{"-L -p tcp --state ESTABLISHED,TIME_WAIT", "unknown TCP state `ESTABLISHED,TIME_WAIT'"},
		{"-D -p tcp --state FOO", "unknown TCP state `FOO'"},
		{"-L -s nonsense", "Invalid IP address `nonsense'"},
		{"-L -s 1.1.1.1/40", "Invalid netmask"},
		{"-L -s 1.1.1.1/x", "Invalid netmask"},
		{"-L --mask-src 255.0.0.0", "Can't use --mask-src without --src"},
		{"-L -u FOO", "Bad parameter `FOO'"},
		{"-L -f foo", "`foo' unsupported protocol"},
		{"-L -L", "Invalid commands combination"},
		{"-L -D", "Invalid commands combination"},
		{"-C -C", "Invalid commands combination"},
		{"-L -E", "Invalid commands combination"},
		{"-L extra", "unknown type `extra'"},
		{"-L -e NEW", "Illegal option `--event-mask' with this command"},
		{"-C -p udp", "Illegal option `--protonum' with this command"},
		{"-S -p udp", "Illegal option `--protonum' with this command"},
		{"-F -p udp", "Illegal option `--protonum' with this command"},
		{"-C -s 1.1.1.1", "Illegal option `--src' with this command"},
		{"-C -d 1.1.1.1", "Illegal option `--dst' with this command"},
		{"-C -r 1.1.1.1", "Illegal option `--reply-src' with this command"},
		{"-C -q 1.1.1.1", "Illegal option `--reply-dst' with this command"},
		{"-C -m 1", "Illegal option `--mark' with this command"},
		{"-C -w 1", "Illegal option `--zone' with this command"},
		{"-C -o xml", "Illegal option `--output' with this command"},
		{"-C -u ASSURED", "Illegal option `--status' with this command"},
		{"-C -f ipv4", "Illegal option `--family' with this command"},
		{"-S -o xml", "Illegal option `--output' with this command"},
		{"-F -o xml", "Illegal option `--output' with this command"},
		{"-G -p tcp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 -m 1", "Illegal option `--mark' with this command"},
		{"-E -e FOO", "Bad parameter `FOO'"},
		{"-E -e NEW,FOO", "Bad parameter `FOO'"},
		{"-G -s 127.0.0.1", "You need to supply the `--protonum' option for this command"},
		{"-G -p udp -s 127.0.0.1", "you have to specify `--src' and `--dst'"},
		{"-G -p udp -d 127.0.0.2 --sport 1 --dport 9001", "you have to specify `--src' and `--dst'"},
		{"-G -p udp -s 127.0.0.1 -d 127.0.0.2", "you have to specify `--sport' and `--dport'"},
		{"-I -p tcp", "You need to supply the `--timeout' option for this command"},
	} {
		_, err := ParseCommand(strings.Fields(c.args))
		ce, ok := err.(*CLIError)
		if !ok {
			t.Errorf("conntrack %s: %v, want %q", c.args, err, c.msg)
			continue
		}
		if want := Program + ": " + c.msg + "\n" + try; ce.Stderr() != want || ce.Code != 2 {
			t.Errorf("conntrack %s: %q (exit %d), want %q (exit 2)", c.args, ce.Stderr(), ce.Code, want)
		}
	}
	// accepted as the tool accepts them
	for _, args := range []string{"-L -s 1.2.3", "-L -p tcp --sport abc", "-L -w x", "-L -m x", "-L --mark 1/0x",
		"-L -p 253", "-L -p sctp", "-L -s 1.1.1.1 -s 2.2.2.2", "-L -p tcp -p udp", "-E -e all", "-Lexpect",
		"-L --src=1.1.1.1", "-L -z", "-D -o xml", "--dump", "-L -o extended -o id", "-E -o xml,timestamp,id"} {
		if _, err := ParseCommand(strings.Fields(args)); err != nil {
			t.Errorf("conntrack %s: %v", args, err)
		}
	}
	if c, err := ParseCommand(nil); err != nil || c.Op != OpHelp {
		t.Errorf("no arguments: %v %v", c, err)
	}
	if c, _ := ParseCommand([]string{"-L", "-s", "1.2.3"}); c.Filter.OrigSrc.Addr != 0x01020003 {
		t.Errorf("inet_aton 1.2.3: %#x", c.Filter.OrigSrc.Addr)
	}
}

// TestEventFormats: -o xml, id, extended and timestamp on events.
func TestEventFormats(t *testing.T) {
	f := newCLIFixture(t)
	var lines []string
	cancel := f.tb.Subscribe(func(e *Event) {
		for _, out := range []Output{OutXML, OutID | OutExtended, OutTimestamp} {
			lines = append(lines, string(AppendEvent(nil, e, out, 1796593363049117)))
		}
	})
	if r := f.run(t, "-D", "-p", "icmp"); r.Code != 0 {
		t.Fatal(r)
	}
	cancel()
	if f.tb.Listening() != true { // the fixture's own listener stays
		t.Error("cancel removed the other listener")
	}
	if len(lines) != 3 {
		t.Fatalf("%q", lines)
	}
	if !strings.HasPrefix(lines[0], `<flow type="destroy"><meta direction="original">`) || !strings.HasSuffix(lines[0], `</meta></flow> [USERSPACE] portid=4242`) ||
		strings.Contains(lines[0], "<use>") || strings.Contains(lines[0], "<mark>") {
		t.Errorf("xml event %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "[DESTROY] ipv4     2 icmp     1 30 ") || !strings.Contains(lines[1], " id=77 id=") || !strings.HasSuffix(lines[1], " [USERSPACE] portid=4242") {
		t.Errorf("extended,id event %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "[1796593363.49117 ]\t[DESTROY] icmp ") {
		t.Errorf("timestamp event %q", lines[2])
	}
}

// FuzzParseCommand: any argument list parses or is refused with a
// CLIError (exit 2), and what parses runs on a table without panicking,
// with its exit status one of the tool's.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"-L", "-L -p tcp --sport 1 --state ESTABLISHED -o xml,id", "-D -s 10.0.0.0/8 -m 1/0xff",
		"-G -p icmp -s 1.1.1.1 -d 2.2.2.2 --icmp-type 8 --icmp-code 0 --icmp-id 1", "-E -e NEW,DESTROY -p udp -u UNREPLIED",
		"-C", "-S", "-F", "-L -s", "-L --src=1.2.3.4/33", "-I -t 10", "-L expect", "-h", "--mask-dst 1.1.1.1 -d 1.1.1.1 -L"} {
		f.Add(s)
	}
	tb := testTable()
	p := mkpkt(f, udpSpec(true, 5000, 53), nil)
	ref, _ := tb.In(p, 0, netfilter.PreRouting, sec)
	tb.Confirm(ref, sec)
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, " ")
		c, err := ParseCommand(args)
		if err != nil {
			ce, ok := err.(*CLIError)
			if !ok || ce.Code != 2 || !strings.HasPrefix(ce.Stderr(), Program+": ") {
				t.Fatalf("%q: %#v", args, err)
			}
			return
		}
		if c.Op == OpDelete || c.Op == OpFlush {
			return // keep the entry for the other inputs
		}
		if r := c.Exec(tb, sec, 1); r.Code < 0 || r.Code > 2 {
			t.Fatalf("%q: exit %d", args, r.Code)
		}
		e := Event{Type: EventUpdate, Conn: ref.Conn, Now: sec}
		c.WantEvent(&e)
		AppendEvent(nil, &e, c.Out, 0)
	})
}

// TestEventsNoListener: without a listener nothing is cached; after the
// last cancel, nobody listens.
func TestEventsNoListener(t *testing.T) {
	tb := testTable()
	cancel := tb.Subscribe(func(*Event) {})
	cancel2 := tb.Subscribe(func(*Event) {})
	cancel()
	cancel()
	if !tb.Listening() {
		t.Fatal("one listener left")
	}
	cancel2()
	if tb.Listening() {
		t.Fatal("listening after cancel")
	}
	p := mkpkt(t, udpSpec(true, 5000, 53), nil)
	ref, _ := tb.In(p, 0, netfilter.PreRouting, sec)
	tb.Confirm(ref, sec)
	p = mkpkt(t, udpSpec(false, 53, 5000), nil)
	ref, _ = tb.In(p, 0, netfilter.PreRouting, sec)
	tb.Confirm(ref, sec)
	if ref.Conn.proto.ecache.Load() != 0 {
		t.Errorf("cached %#x without a listener", ref.Conn.proto.ecache.Load())
	}
	// an entry made before the listener came reports nothing, not even
	// its end (the kernel's nf_conntrack_events=2)
	var got []string
	tb.Subscribe(func(e *Event) { got = append(got, e.Type.String()) })
	p = mkpkt(t, udpSpec(true, 5000, 53), nil)
	ref, _ = tb.In(p, 0, netfilter.PreRouting, sec)
	ref.Conn.SetMark(1)
	tb.Confirm(ref, sec)
	tb.Kill(ref.Conn, sec, 1)
	p = mkpkt(t, udpSpec(true, 5001, 53), nil)
	ref, _ = tb.In(p, 0, netfilter.PreRouting, sec)
	tb.Confirm(ref, sec)
	tb.Kill(ref.Conn, sec, 1)
	if strings.Join(got, " ") != "NEW DESTROY" {
		t.Errorf("events %q, want the second entry's NEW DESTROY only", got)
	}
}
