package nfqueue

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
)

// offloadRuleSet is uswitch's rule set of the offload tests: DNATs of
// the service 10.77.9.9 (TCP 80 to the echo server 8001, UDP 53 to the
// echo server 9001), a MASQUERADE, a FORWARD policy of DROP.
const offloadRuleSet = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.77.9.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.77.2.2:8001
-A PREROUTING -d 10.77.9.9/32 -p udp -m udp --dport 53 -m statistic --mode random --probability 1.0 -j DNAT --to-destination 10.77.2.2:9001
-A POSTROUTING -o rb -p tcp -m tcp --dport 8003 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8001 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8003 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9001 -j ACCEPT
COMMIT
`

// offloadTopo is the test topology with the queue rule in mangle
// PREROUTING (after the kernel's conntrack) and uswitch deciding with
// rs, offload as given.
func offloadTopo(t *testing.T, rs string, offload bool) (*topo, *Server) {
	tp := newTopo(t, "-t mangle -A PREROUTING -j NFQUEUE --queue-num %[1]d")
	testtools.Need(t, "conntrack")
	// a MASQUERADEd first packet has the router's own address as its
	// source when the kernel routes it
	run(t, "ip", "netns", "exec", tp.router, "sysctl", "-qw", "net.ipv4.conf.ra.accept_local=1")
	eng, _, names := tp.engine(t, rs)
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf, Offload: offload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	return tp, srv
}

// udpFlow sends n datagrams of one flow (one socket) to dst and waits
// for each one's echo; it returns the echoes that came back.
func (tp *topo) udpFlow(t *testing.T, dst string, n int) int {
	var c *net.UDPConn
	inNS(t, tp.client, func() {
		a, _ := net.ResolveUDPAddr("udp4", dst)
		var err error
		if c, err = net.DialUDP("udp4", nil, a); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	got := 0
	buf := make([]byte, 64)
	for i := range n {
		msg := fmt.Sprintf("datagram %d", i)
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(buf)
		if err == nil && string(buf[:k]) == msg {
			got++
		}
	}
	return got
}

// kernelCT is the router's kernel conntrack table (conntrack -L).
func (tp *topo) kernelCT(t *testing.T) string {
	return run(t, "ip", "netns", "exec", tp.router, "conntrack", "-L")
}

// TestOffloadUDP: 1,000 datagrams of one DNATed UDP flow; uswitch sees
// the first (and what arrives before the kernel has the entry), the
// kernel's conntrack shows uswitch's binding with the offload mark.
func TestOffloadUDP(t *testing.T) {
	tp, srv := offloadTopo(t, offloadRuleSet, true)
	const n = 1000
	if got := tp.udpFlow(t, "10.77.9.9:53", n); got != n {
		t.Errorf("%d of %d echoes came back", got, n)
	}
	st := srv.Stats()
	if st.Packets == 0 || st.Packets > 4 {
		t.Errorf("the queue saw %d packets of the flow, want the first (a few at most): %v", st.Packets, st)
	}
	ct := tp.kernelCT(t)
	want := "dst=10.77.9.9 sport="
	found := false
	for _, l := range strings.Split(ct, "\n") {
		if strings.Contains(l, want) && strings.Contains(l, "dport=53 src=10.77.2.2 dst=10.77.1.2 sport=9001") &&
			strings.Contains(l, fmt.Sprintf("mark=%d", DefaultOffloadMark)) {
			found = true
		}
	}
	if !found {
		t.Errorf("kernel conntrack has no offloaded binding 10.77.9.9:53 -> 10.77.2.2:9001 with mark %d:\n%s", DefaultOffloadMark, ct)
	}
	os := srv.OffloadStats()
	if os.Offloaded != 1 {
		t.Errorf("offloaded %d flows, want 1: %+v", os.Offloaded, os)
	}
	var mb strings.Builder
	srv.WriteMetrics(&mb)
	if !strings.Contains(mb.String(), "uswitch_nfqueue_offloaded_flows_total 1") {
		t.Errorf("metrics: no offloaded flow:\n%s", mb.String())
	}
	// uswitch's own conntrack keeps the entry
	if c, _, ok := srv.eng.CT.Lookup(srvTuple(t, ct), srv.Now()); !ok || c == nil {
		t.Errorf("uswitch's conntrack lost the flow's entry")
	}
	kq := srv.kernelQueues()[tp.queue]
	t.Logf("queue: uswitch read %d packets, kernel ids given %d; %+v", st.Packets, kq.IDSequence, os)
	if kq.IDSequence > 4 {
		t.Errorf("the kernel queued %d packets, want the first (a few at most)", kq.IDSequence)
	}
}

// srvTuple is the original tuple of the UDP flow to 10.77.9.9:53 in
// the kernel table ct.
func srvTuple(t *testing.T, ct string) (tu conntrack.Tuple) {
	for _, l := range strings.Split(ct, "\n") {
		if !strings.Contains(l, "dst=10.77.9.9") || !strings.Contains(l, "dport=53") {
			continue
		}
		var sport int
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "sport=") {
				fmt.Sscan(f[6:], &sport)
				break
			}
		}
		return conntrack.Tuple{Src: 10<<24 | 77<<16 | 1<<8 | 2, Dst: 10<<24 | 77<<16 | 9<<8 | 9, SrcPort: uint16(sport), DstPort: 53, Proto: 17}
	}
	t.Errorf("no flow to 10.77.9.9:53 in\n%s", ct)
	return tu
}

// TestOffloadTCP: a 4 MB transfer to a DNATed service, SHA-256
// checked; the queue sees the SYN (and what came before the kernel's
// entry), not the transfer. A MASQUERADEd connection too.
func TestOffloadTCP(t *testing.T) {
	tp, srv := offloadTopo(t, offloadRuleSet, true)
	c, err := tp.dialFrom(t, "10.77.1.2", "10.77.9.9:80", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	transferOn(t, c, 4<<20)
	st := srv.Stats()
	if st.Packets == 0 || st.Packets > 6 {
		t.Errorf("the queue saw %d packets, want the connection's first (a few at most): %v", st.Packets, st)
	}
	ct := tp.kernelCT(t)
	if !strings.Contains(ct, "dst=10.77.9.9 sport=") || !strings.Contains(ct, "dport=80 src=10.77.2.2 dst=10.77.1.2 sport=8001") {
		t.Errorf("kernel conntrack has no 10.77.9.9:80 -> 10.77.2.2:8001 binding:\n%s", ct)
	}
	if seen, err := tp.tcpSeen(t, 8003); err != nil || seen != "10.77.2.1" {
		t.Errorf("tcp 8003 MASQUERADEd: seen %q, want 10.77.2.1: %v", seen, err)
	}
	if os := srv.OffloadStats(); os.Offloaded != 2 {
		t.Errorf("offloaded %d flows, want 2: %+v", os.Offloaded, os)
	}
	t.Logf("stats: %v; offload %+v", srv.Stats(), srv.OffloadStats())
}

// transferOn echoes n random bytes through c (the echo server's 16-byte
// greeting first) and checks their SHA-256.
func transferOn(t *testing.T, c net.Conn, n int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 16)); err != nil {
		t.Fatalf("transfer: greeting: %v", err)
	}
	data := make([]byte, n)
	rand.Read(data)
	go c.Write(data)
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(n)); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if sha256.Sum256(data) != [32]byte(h.Sum(nil)) {
		t.Errorf("transfer: the %d bytes came back different", n)
	}
}

// TestOffloadStaysQueued: a rule every packet meets (statistic in
// FORWARD) keeps the flow queued: uswitch sees every datagram, the
// kernel's entry has no offload mark, the reason is counted.
func TestOffloadStaysQueued(t *testing.T) {
	rs := strings.Replace(offloadRuleSet, "-A FORWARD -m conntrack", "-A FORWARD -m statistic --mode random --probability 0.5 -j ACCEPT\n-A FORWARD -m conntrack", 1)
	tp, srv := offloadTopo(t, rs, true)
	const n = 200
	if got := tp.udpFlow(t, "10.77.9.9:53", n); got != n {
		t.Errorf("%d of %d echoes came back", got, n)
	}
	if st := srv.Stats(); st.Packets < 2*n {
		t.Errorf("the queue saw %d packets, want every one of %d datagrams and echoes", st.Packets, 2*n)
	}
	os := srv.OffloadStats()
	if os.Offloaded != 0 || os.Queued["match:statistic"] == 0 {
		t.Errorf("offload %+v: want none offloaded, queued for match:statistic", os)
	}
	var mb strings.Builder
	srv.WriteMetrics(&mb)
	if !strings.Contains(mb.String(), `uswitch_nfqueue_queued_flows_total{reason="match:statistic"} 1`) {
		t.Errorf("metrics: no queued flow for match:statistic:\n%s", mb.String())
	}
	if ct := tp.kernelCT(t); strings.Contains(ct, fmt.Sprintf("mark=%d", DefaultOffloadMark)) {
		t.Errorf("an offloaded entry in the kernel:\n%s", ct)
	}
}

// TestOffloadOtherProtocol: a per-packet rule only TCP reaches keeps
// TCP connections queued and lets UDP flows go to the kernel.
func TestOffloadOtherProtocol(t *testing.T) {
	rs := strings.Replace(offloadRuleSet, "-A FORWARD -m conntrack", "-A FORWARD -p tcp -m limit --limit 10000/sec --limit-burst 10000 -j ACCEPT\n-A FORWARD -m conntrack", 1)
	tp, srv := offloadTopo(t, rs, true)
	if got := tp.udpFlow(t, "10.77.9.9:53", 100); got != 100 {
		t.Errorf("%d of 100 echoes came back", got)
	}
	c, err := tp.dialFrom(t, "10.77.1.2", "10.77.9.9:80", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	transferOn(t, c, 256<<10)
	os := srv.OffloadStats()
	if os.Offloaded != 1 || os.Queued["match:limit"] != 1 {
		t.Errorf("offload %+v: want the UDP flow offloaded, the TCP connection queued for match:limit", os)
	}
	if st := srv.Stats(); st.Packets < 20 {
		t.Errorf("the queue saw %d packets: the TCP transfer went by", st.Packets)
	}
}

// TestOffloadOff: the same topology without offload: every datagram is
// queued (the old behaviour), no kernel rule is added.
func TestOffloadOff(t *testing.T) {
	tp, srv := offloadTopo(t, offloadRuleSet, false)
	const n = 100
	if got := tp.udpFlow(t, "10.77.9.9:53", n); got != n {
		t.Errorf("%d of %d echoes came back", got, n)
	}
	if st := srv.Stats(); st.Packets < 2*n {
		t.Errorf("the queue saw %d packets, want all %d", st.Packets, 2*n)
	}
	if out := run(t, "ip", "netns", "exec", tp.router, "iptables-save", "-t", "mangle"); strings.Contains(out, "connmark") {
		t.Errorf("offload off installed a rule:\n%s", out)
	}
}

// TestOffloadProbes: uswitch's rules treat a UDP flow's later packets
// differently from its first. Offloading the flow at its first datagram
// would let the kernel accept them by the connmark; the probes keep the
// flow queued, so as many echoes come back as without offload, and the
// reason names the rule. TCP connections still go to the kernel.
//   - replies: a FORWARD rule drops the server's UDP replies (no echo);
//   - established: FORWARD accepts UDP datagrams that are NEW only, so
//     after the first echo the flow's datagrams are dropped (one echo).
func TestOffloadProbes(t *testing.T) {
	for _, c := range []struct {
		name, rs, reason string
		echoes           int
	}{
		{"replies", strings.Replace(offloadRuleSet, "-A FORWARD -m conntrack", "-A FORWARD -s 10.77.2.2/32 -p udp -m udp --sport 9001 -j DROP\n-A FORWARD -m conntrack", 1),
			"reply: filter FORWARD rule 1", 0},
		{"established", strings.NewReplacer("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A FORWARD -i rb -j ACCEPT\n-A FORWARD -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"--dport 9001 -j ACCEPT", "--dport 9001 -m conntrack --ctstate NEW -j ACCEPT").Replace(offloadRuleSet),
			"original: filter FORWARD policy", 1},
	} {
		for _, offload := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/offload=%v", c.name, offload), func(t *testing.T) {
				tp, srv := offloadTopo(t, c.rs, offload)
				const n = 3
				if got := tp.udpFlow(t, "10.77.9.9:53", n); got != c.echoes {
					t.Errorf("%d of %d echoes came back; uswitch's rules let %d through", got, n, c.echoes)
				}
				if st := srv.Stats(); st.Packets < uint64(n+c.echoes) {
					t.Errorf("the queue saw %d packets, want every one of %d datagrams and %d echoes", st.Packets, n, c.echoes)
				}
				if !offload {
					return
				}
				conn, err := tp.dialFrom(t, "10.77.1.2", "10.77.9.9:80", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				transferOn(t, conn, 64<<10)
				os := srv.OffloadStats()
				if os.Offloaded != 1 || os.Queued[c.reason] != 1 {
					t.Errorf("offload %+v: want the UDP flow queued for %q, the TCP connection offloaded", os, c.reason)
				}
				var mb strings.Builder
				srv.WriteMetrics(&mb)
				if !strings.Contains(mb.String(), `uswitch_nfqueue_queued_flows_total{reason="`+c.reason+`"} 1`) {
					t.Errorf("metrics: no queued flow for %q:\n%s", c.reason, mb.String())
				}
				for _, l := range strings.Split(tp.kernelCT(t), "\n") {
					if strings.Contains(l, "udp") && strings.Contains(l, fmt.Sprintf("mark=%d", DefaultOffloadMark)) {
						t.Errorf("the UDP flow was offloaded: %s", l)
					}
				}
			})
		}
	}
}

// TestOffloadRulesRemoved: Close deletes the connmark rules.
func TestOffloadRulesRemoved(t *testing.T) {
	tp, srv := offloadTopo(t, offloadRuleSet, true)
	if out := run(t, "ip", "netns", "exec", tp.router, "iptables-save", "-t", "mangle"); strings.Count(out, "connmark") != 2 {
		t.Errorf("want the two connmark rules:\n%s", out)
	}
	srv.Close()
	if out := run(t, "ip", "netns", "exec", tp.router, "iptables-save", "-t", "mangle"); strings.Contains(out, "connmark") {
		t.Errorf("Close left rules:\n%s", out)
	}
}

// TestOffloadBlocker: each kind of per-packet rule keeps connections
// queued, in every table but nat (a nat statistic, kube-proxy's, does
// not), for the protocols that can reach it: its -p and those of the
// jumps to its chain, ICMP (a flow's errors) reaching every flow.
func TestOffloadBlocker(t *testing.T) {
	base := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:T - [0:0]\n%sCOMMIT\n"
	for _, c := range []struct{ rules, tcp, udp string }{
		{"", "", ""},
		{"-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\n", "", ""},
		{"-A FORWARD -m statistic --mode random --probability 0.5 -j ACCEPT\n", "match:statistic", "match:statistic"},
		{"-A FORWARD -m limit --limit 10/sec -j ACCEPT\n", "match:limit", "match:limit"},
		{"-A FORWARD -m hashlimit --hashlimit-upto 10/sec --hashlimit-name h -j ACCEPT\n", "match:hashlimit", "match:hashlimit"},
		{"-A FORWARD -m recent --name r --set\n", "match:recent", "match:recent"},
		{"-A FORWARD -m string --string abc --algo bm -j DROP\n", "match:string", "match:string"},
		{"-A FORWARD -m length --length 0:100 -j ACCEPT\n", "match:length", "match:length"},
		{"-A FORWARD -m connbytes --connbytes 10 --connbytes-dir both --connbytes-mode packets -j ACCEPT\n", "match:connbytes", "match:connbytes"},
		{"-A FORWARD -m quota --quota 1000 -j ACCEPT\n", "match:quota", "match:quota"},
		{"-A FORWARD -j LOG\n", "target:LOG", "target:LOG"},
		{"-A OUTPUT -j MARK --set-mark 1\n", "target:MARK", "target:MARK"},
		// by protocol
		{"-A FORWARD -p tcp -m limit --limit 10/sec -j ACCEPT\n", "match:limit", ""},
		{"-A FORWARD -p udp -j LOG\n", "", "target:LOG"},
		{"-A FORWARD ! -p udp -j LOG\n", "target:LOG", "target:LOG"}, // ICMP errors of UDP flows
		{"-A FORWARD -p icmp -j LOG\n", "target:LOG", "target:LOG"},
		{"-A FORWARD -p sctp -j LOG\n", "", ""},
		{"-A FORWARD -p tcp -j T\n-A T -j LOG\n", "target:LOG", ""},
		{"-A FORWARD -p udp -j T\n-A T -p tcp -j LOG\n", "", ""},
		{"-A T -j LOG\n", "", ""}, // T unreachable
		// TCP flags and options differ between a flow's packets
		{"-A FORWARD -p tcp -m tcp --tcp-flags RST RST -j DROP\n", "match:tcp-flags", ""},
		{"-A FORWARD -p tcp -m tcp --syn -j ACCEPT\n", "match:tcp-flags", ""},
		{"-A FORWARD -p tcp -m tcp ! --tcp-option 2 -j DROP\n", "match:tcp-flags", ""},
		{"-A FORWARD -p tcp -m tcp --sport 80 -j DROP\n", "", ""},
		{"-A FORWARD -p udp -j T\n-A T -p tcp -m tcp --syn -j DROP\n", "", ""},
		// ... unless only a connection's first packets reach the test
		{"-A FORWARD -p tcp -m tcp ! --syn -m conntrack --ctstate NEW -j DROP\n", "", ""},
		{"-A FORWARD -p tcp -m tcp ! --syn -m state --state NEW -j DROP\n", "", ""},
		{"-A FORWARD -p tcp -m tcp ! --syn -m conntrack --ctstate NEW,INVALID -j DROP\n", "match:tcp-flags", ""},
		{"-A FORWARD -p tcp -m tcp ! --syn -m conntrack ! --ctstate NEW -j DROP\n", "match:tcp-flags", ""},
		{"-A FORWARD -p tcp -m tcp ! --syn -m conntrack --ctstate NEW,DNAT -j DROP\n", "match:tcp-flags", ""},
	} {
		rs, err := (&iptables.Loader{}).LoadString(fmt.Sprintf(base, c.rules))
		if err != nil && strings.Contains(err.Error(), "Couldn't load") {
			// the loader checks the rule with this machine's iptables,
			// which lacks the extension
			t.Logf("%q: not checked here: %v", c.rules, err)
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.rules, err)
			continue
		}
		b := offloadBlockers(rs)
		if b.of(6) != c.tcp || b.of(17) != c.udp {
			t.Errorf("%q: blockers TCP %q (%s), UDP %q (%s); want %q, %q", c.rules, b.of(6), b.where[0], b.of(17), b.where[1], c.tcp, c.udp)
		}
	}
	// the matches this machine's iptables cannot load (string,
	// connbytes, quota): a loaded rule's match under their names
	for _, name := range []string{"string", "connbytes", "quota"} {
		rs, err := (&iptables.Loader{}).LoadString(fmt.Sprintf(base, "-A FORWARD -m limit --limit 10/sec -j ACCEPT\n"))
		if err != nil {
			t.Fatal(err)
		}
		r := rs.Tables[iptables.Filter].Chain("FORWARD").Rules[0]
		r.Matches[0] = renamed{r.Matches[0], name}
		if b := offloadBlockers(rs); b.of(6) != "match:"+name || b.of(17) != "match:"+name {
			t.Errorf("%s: blockers %+v", name, b)
		}
	}
	// TRACE is raw's; a statistic in nat is decided once a connection
	rs, err := (&iptables.Loader{}).LoadString("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -j TRACE\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	if b := offloadBlockers(rs); b.of(17) != "target:TRACE" || b.of(6) != "" {
		t.Errorf("TRACE: blockers %+v", b)
	}
	rs, err = (&iptables.Loader{}).LoadString(offloadRuleSet)
	if err != nil {
		t.Fatal(err)
	}
	if b := offloadBlockers(rs); b.of(6) != "" || b.of(17) != "" {
		t.Errorf("a nat statistic blocks: %+v", b)
	}
}

// TestOffloadVerdictFault: an nfqueue:verdict fault on the queue keeps
// every flow queued (the fault must see each packet).
func TestOffloadVerdictFault(t *testing.T) {
	tp := newTopo(t, "-t mangle -A PREROUTING -j NFQUEUE --queue-num %[1]d")
	testtools.Need(t, "conntrack")
	srv, _, _ := tp.faultServer(t, offloadRuleSet, "[[fault]]\nname = \"slow\"\nat = \"nfqueue:verdict\"\nmatch = \"-p tcp --dport 8001\"\naction = \"delay\"\ndelay = \"1ms\"\n", true)
	tp.servers(t)
	const n = 50
	if got := tp.udpFlow(t, "10.77.9.9:53", n); got != n {
		t.Errorf("%d of %d echoes came back", got, n)
	}
	if st := srv.Stats(); st.Packets < 2*n {
		t.Errorf("the queue saw %d packets, want all %d", st.Packets, 2*n)
	}
	if os := srv.OffloadStats(); os.Offloaded != 0 || os.Queued["fault:nfqueue:verdict"] != 1 {
		t.Errorf("offload %+v: want the flow queued for the fault", os)
	}
}

// TestCtMsgInstall: the messages of a DNATed TCP flow (delete of the
// original and the reply tuple, create with the NAT range, mark, TCP
// state) and of a flow without NAT (a mark update), read back; the
// builder reuses its buffer.
func TestCtMsgInstall(t *testing.T) {
	f := flowReq{Orig: conntrack.Tuple{Src: 0x0a4d0102, Dst: 0x0a4d0909, SrcPort: 40000, DstPort: 80, Proto: 6},
		Reply:    conntrack.Tuple{Src: 0x0a4d0202, Dst: 0x0a4d0102, SrcPort: 8001, DstPort: 40000, Proto: 6},
		TCPState: conntrack.TCPEstablished, Install: true}
	var m ctMsg
	m.reset()
	m.install(&f, DefaultOffloadMark, 7)
	type msg struct {
		typ, flags uint16
		attrs      map[uint16][]byte
	}
	var got []msg
	for b := m.b; len(b) >= nlmsgHdrLen; {
		l := int(binary.NativeEndian.Uint32(b))
		ad, err := netlink.NewAttributeDecoder(b[nlmsgHdrLen+4 : l])
		if err != nil {
			t.Fatal(err)
		}
		mm := msg{typ: binary.NativeEndian.Uint16(b[4:]), flags: binary.NativeEndian.Uint16(b[6:]), attrs: map[uint16][]byte{}}
		for ad.Next() {
			mm.attrs[ad.Type()] = ad.Bytes()
		}
		got = append(got, mm)
		b = b[nlmsgAlign(l):]
	}
	if len(got) != 3 || got[0].typ != 1<<8|2 || got[1].typ != 1<<8|2 || got[2].typ != 1<<8 || got[2].flags != 0x601 {
		t.Fatalf("messages %+v: want delete, delete, create (NLM_F_REQUEST|CREATE|EXCL)", got)
	}
	c := got[2].attrs
	if binary.BigEndian.Uint32(c[ctaMark]) != DefaultOffloadMark || binary.BigEndian.Uint32(c[ctaTimeout]) != offloadTimeout {
		t.Errorf("mark/timeout: %x %x", c[ctaMark], c[ctaTimeout])
	}
	if c[ctaNatDst] == nil || c[ctaNatSrc] != nil || c[ctaProtoinfo] == nil {
		t.Errorf("DNAT only, with TCP protoinfo: %v", c)
	}
	nat, _ := netlink.UnmarshalAttributes(c[ctaNatDst])
	if len(nat) != 3 || binary.BigEndian.Uint32(nat[0].Data) != 0x0a4d0202 || binary.BigEndian.Uint32(nat[1].Data) != 0x0a4d0202 {
		t.Errorf("NAT range %+v", nat)
	}
	if m.msgs[0] != 7 || len(m.msgs) != 3 {
		t.Errorf("flows of the messages %v", m.msgs)
	}
	plain := flowReq{Orig: f.Orig, Reply: conntrack.Tuple{Src: f.Orig.Dst, Dst: f.Orig.Src, SrcPort: 80, DstPort: 40000, Proto: 6}, Install: true}
	m.reset()
	m.install(&plain, DefaultOffloadMark, 0)
	if l := binary.NativeEndian.Uint32(m.b); int(l) != len(m.b) || binary.NativeEndian.Uint16(m.b[6:]) != 1 {
		t.Errorf("no-NAT flow: want one update message, got %d bytes of %d, flags %x", l, len(m.b), binary.NativeEndian.Uint16(m.b[6:]))
	}
	if n := testing.AllocsPerRun(100, func() { m.reset(); m.install(&f, DefaultOffloadMark, 1) }); n != 0 {
		t.Errorf("install allocates %v times", n)
	}
}

// TestParseCtErrors: an NLMSG_ERROR naming the failed request, an
// acknowledgement, and a message that is not an error.
func TestParseCtErrors(t *testing.T) {
	var b []byte
	errMsg := func(errno int32, typ uint16, seq uint32) {
		b = binary.NativeEndian.AppendUint32(b, 16+4+16)
		b = binary.NativeEndian.AppendUint16(b, 2)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint32(b, seq)
		b = binary.NativeEndian.AppendUint32(b, 0)
		b = binary.NativeEndian.AppendUint32(b, uint32(-errno))
		b = binary.NativeEndian.AppendUint32(b, 16)
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint32(b, seq)
		b = binary.NativeEndian.AppendUint32(b, 0)
	}
	errMsg(17, 1<<8, 5)
	errMsg(0, 1<<8|2, 6)
	b = append(b, 16, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // NLMSG_DONE
	got, err := parseCtErrors(b, nil)
	if err != nil || len(got) != 2 || got[0] != (ctError{Seq: 5, Errno: 17, Type: 1 << 8}) || got[1].Errno != 0 || got[1].Type != 1<<8|2 {
		t.Errorf("parseCtErrors: %+v, %v", got, err)
	}
	if _, err := parseCtErrors(b[:20], nil); err == nil {
		t.Errorf("a cut message: no error")
	}
}

// renamed is a match under another name.
type renamed struct {
	iptables.Match
	name string
}

func (m renamed) Name() string { return m.name }
