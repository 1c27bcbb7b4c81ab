package tracetest

import (
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// The conntrack helpers against the kernel: a namespace router with
// `-t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp` (and the
// TFTP one) and a NAT rule, an FTP-like session across it, every IPv4
// packet the router's devices received and sent captured (AF_PACKET in
// the router's namespace). The packets the router received are replayed
// through a uswitch engine made from the router's snapshot; what it
// sends must be the kernel's sent packets byte for byte (the PORT/227/
// EPRT payloads it rewrote, the sequence adjustment after them); the
// FORWARD counters of RELATED/helper rules, the expectation left at the
// end and the entries' helpers must agree.

// capPkt is one captured packet of the router.
type capPkt struct {
	dev  string
	out  bool
	at   time.Duration
	data []byte
}

// routerCapture records the IPv4 packets of namespace ns's devices.
type routerCapture struct {
	fd    int
	mu    sync.Mutex
	pkts  []capPkt
	names map[int]string
	done  chan struct{}
	start time.Time
}

func startCapture(t *testing.T, ns string) *routerCapture {
	t.Helper()
	rc := &routerCapture{names: map[int]string{}, done: make(chan struct{}), start: time.Now()}
	err := netnsrun.InNamed(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		rc.fd = fd
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			rc.names[i.Index] = i.Name
		}
		tv := unix.Timeval{Usec: 100000}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("capture socket: %v", err)
	}
	go func() {
		defer close(rc.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(rc.fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				select {
				case <-rc.stop():
					return
				default:
					continue
				}
			}
			if err != nil {
				return
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok || ll.Protocol != htons(unix.ETH_P_IP) {
				continue
			}
			rc.mu.Lock()
			rc.pkts = append(rc.pkts, capPkt{dev: rc.names[ll.Ifindex], out: ll.Pkttype == unix.PACKET_OUTGOING,
				at: time.Since(rc.start), data: append([]byte(nil), buf[:n]...)})
			rc.mu.Unlock()
		}
	}()
	t.Cleanup(func() { rc.Stop() })
	return rc
}

var stopped sync.Map

func (rc *routerCapture) stop() chan struct{} {
	ch, _ := stopped.LoadOrStore(rc, make(chan struct{}))
	return ch.(chan struct{})
}

// Stop ends the capture and returns the packets.
func (rc *routerCapture) Stop() []capPkt {
	ch := rc.stop()
	select {
	case <-ch:
	default:
		close(ch)
	}
	<-rc.done
	if rc.fd > 0 {
		unix.Close(rc.fd)
		rc.fd = -1
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.pkts
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// txChecksumOff turns off the transmit checksum offload of dev in ns
// (ethtool -K dev tx off, by its ioctl): the veth then carries complete
// checksums, so the captured bytes are what is on a wire.
func txChecksumOff(ns, dev string) error {
	return netnsrun.InNamed(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v := &struct{ cmd, data uint32 }{cmd: 0x17} // ETHTOOL_STXCSUM, off
		var ifr [40]byte
		copy(ifr[:15], dev)
		*(*uintptr)(unsafe.Pointer(&ifr[16])) = uintptr(unsafe.Pointer(v))
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(v)
		if e != 0 {
			return fmt.Errorf("SIOCETHTOOL %s: %v", dev, e)
		}
		return nil
	})
}

// helperTopo is client ─ router ─ server in three namespaces:
// client 10.1.0.2/24 (eth0), router 10.1.0.1/24 (r0) and
// 192.168.100.1/24 (r1), server 192.168.100.2/24 (eth0).
type helperTopo struct {
	cli, rtr, srv string
}

func newHelperTopo(t *testing.T) *helperTopo {
	labtest.Root(t, "makes network namespaces for the conntrack helper comparison")
	testtools.Need(t, "ip", "iptables-restore", "iptables-save", "conntrack")
	tp := &helperTopo{cli: labtest.Name("hlc"), rtr: labtest.Name("hlr"), srv: labtest.Name("hls")}
	for _, n := range []string{tp.cli, tp.rtr, tp.srv} {
		labtest.Netns(t, n)
	}
	in := func(ns string, args ...string) { t.Helper(); labtest.In(t, ns, args...) }
	in(tp.cli, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "r0", "netns", tp.rtr)
	in(tp.srv, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "r1", "netns", tp.rtr)
	for _, c := range [][]string{
		{tp.cli, "ip", "addr", "add", "10.1.0.2/24", "dev", "eth0"},
		{tp.cli, "ip", "link", "set", "eth0", "up"},
		{tp.cli, "ip", "link", "set", "lo", "up"},
		{tp.cli, "ip", "route", "add", "default", "via", "10.1.0.1"},
		{tp.srv, "ip", "addr", "add", "192.168.100.2/24", "dev", "eth0"},
		{tp.srv, "ip", "link", "set", "eth0", "up"},
		{tp.srv, "ip", "link", "set", "lo", "up"},
		{tp.srv, "ip", "route", "add", "default", "via", "192.168.100.1"},
		{tp.rtr, "ip", "addr", "add", "10.1.0.1/24", "dev", "r0"},
		{tp.rtr, "ip", "addr", "add", "192.168.100.1/24", "dev", "r1"},
		{tp.rtr, "ip", "link", "set", "r0", "up"},
		{tp.rtr, "ip", "link", "set", "r1", "up"},
		{tp.rtr, "ip", "link", "set", "lo", "up"},
		{tp.rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		in(c[0], c[1:]...)
	}
	for _, d := range [][2]string{{tp.cli, "eth0"}, {tp.srv, "eth0"}, {tp.rtr, "r0"}, {tp.rtr, "r1"}} {
		if err := txChecksumOff(d[0], d[1]); err != nil {
			t.Fatal(err)
		}
	}
	return tp
}

// helperRules are the router's rules: the helper template, NAT, and
// FORWARD rules that count packets by state and helper.
func helperRules(nat string) string {
	return `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
-A PREROUTING -p udp -m udp --dport 69 -j CT --helper tftp
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
` + nat + `COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED -m helper --helper ftp
-A FORWARD -m conntrack --ctstate RELATED -m helper --helper tftp
-A FORWARD -m conntrack --ctstate RELATED
-A FORWARD -m conntrack --ctstate ESTABLISHED -m helper --helper ftp
-A FORWARD -m conntrack --ctstate ESTABLISHED -m helper --helper tftp
-A FORWARD -m conntrack --ctstate NEW
-A FORWARD -m conntrack --ctstate ESTABLISHED
-A FORWARD -m conntrack --ctstate INVALID
-A FORWARD -m conntrack --ctstate DNAT,SNAT
COMMIT
`
}

var counterRE = regexp.MustCompile(`^\[(\d+):(\d+)\] (.*)$`)

// forwardCounters are the FORWARD rules' packet counts from
// iptables-save -c text.
func forwardCounters(save string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if m := counterRE.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[3], "-A FORWARD") {
			out = append(out, m[1]+" "+m[3])
		}
	}
	return out
}

// replayed is what the engine did with the captured received packets.
type replayed struct {
	sent     []capPkt
	counters []string
	conns    []string
	eng      *datapath.Engine
	now      int64
}

// replay runs the router's received packets through an engine made
// from its snapshot, each at its capture time.
func replay(t *testing.T, snap string, pkts []capPkt) *replayed {
	t.Helper()
	s, err := host.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	base := int64(time.Hour)
	r := &replayed{eng: e}
	var now int64
	for i, c := range pkts {
		if c.out {
			continue
		}
		p := &packet.Packet{Data: append([]byte(nil), c.data...)}
		if err := p.Decode(); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p.InIf = c.dev
		now = base + int64(c.at)
		f := e.Receive(p, now, nil)
		if f.Kind == datapath.Forwarded || f.Kind == datapath.Sent {
			r.sent = append(r.sent, capPkt{dev: f.OutIf, out: true, data: append([]byte(nil), p.IP...)})
		}
		for _, a := range f.Answers {
			if a.Fate.Kind == datapath.Forwarded || a.Fate.Kind == datapath.Sent {
				r.sent = append(r.sent, capPkt{dev: a.Fate.OutIf, out: true, data: append([]byte(nil), a.Pkt.IP...)})
			}
		}
	}
	var b strings.Builder
	e.Config().Rules.Save(&b, iptables.SaveOptions{Counters: true, Table: "filter"})
	r.counters = forwardCounters(b.String())
	e.CT.Range(now, func(c *conntrack.Conn) bool {
		r.conns = append(r.conns, connKey(c.Tuple(conntrack.Original), c.Tuple(conntrack.Reply), c.HelperName()))
		return true
	})
	sort.Strings(r.conns)
	r.now = now
	return r
}

func ip4(a uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", byte(a>>24), byte(a>>16), byte(a>>8), byte(a))
}

func connKey(o, rp conntrack.Tuple, helper string) string {
	s := fmt.Sprintf("proto=%d src=%s dst=%s sport=%d dport=%d src=%s dst=%s sport=%d dport=%d", o.Proto,
		ip4(o.Src), ip4(o.Dst), o.SrcPort, o.DstPort, ip4(rp.Src), ip4(rp.Dst), rp.SrcPort, rp.DstPort)
	if helper != "" {
		s += " helper=" + helper
	}
	return s
}

var ctLineRE = regexp.MustCompile(`^(tcp|udp)\s+(\d+) .*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)`)

// kernelConns reads `conntrack -L` of ns as connKey lines.
func kernelConns(t *testing.T, ns string) []string {
	out := labtest.In(t, ns, "conntrack", "-L")
	var keys []string
	for _, l := range strings.Split(out, "\n") {
		m := ctLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		k := fmt.Sprintf("proto=%s src=%s dst=%s sport=%s dport=%s src=%s dst=%s sport=%s dport=%s",
			m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10])
		if i := strings.Index(l, "helper="); i >= 0 {
			k += " " + strings.Fields(l[i:])[0]
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// byDev groups the sent packets per device, in order.
func byDev(p []capPkt, out bool) map[string][]string {
	m := map[string][]string{}
	for _, c := range p {
		if c.out == out {
			m[c.dev] = append(m[c.dev], hex.EncodeToString(c.data))
		}
	}
	return m
}

// comparePackets compares the packets each device sent, flow by flow:
// the kernel keeps a flow's packets in order, but two flows' packets
// that arrive together on a veth enter the backlogs of the CPUs that
// sent them and may leave in either order (the FTP server's "150" reply
// and its data connection's SYN did), while uswitch replays them in the
// order the capture saw them.
func comparePackets(t *testing.T, kernel []capPkt, us []capPkt) {
	t.Helper()
	k, u := byDev(kernel, true), byDev(us, true)
	for _, dev := range []string{"r0", "r1"} {
		kl, ul := k[dev], u[dev]
		kf, uf := byFlow(kl), byFlow(ul)
		var flows []string
		for f := range kf {
			flows = append(flows, f)
		}
		for f := range uf {
			if _, ok := kf[f]; !ok {
				flows = append(flows, f)
			}
		}
		sort.Strings(flows)
		bad := 0
		for _, f := range flows {
			ka, ua := kf[f], uf[f]
			for i := range max(len(ka), len(ua)) {
				var a, b string
				if i < len(ka) {
					a = ka[i]
				}
				if i < len(ua) {
					b = ua[i]
				}
				if a != b {
					bad++
					if bad <= 3 {
						t.Errorf("%s flow %s packet %d differs:\nkernel  %s\nuswitch %s\n%s", dev, f, i, a, b, describe(a, b))
					}
				}
			}
		}
		t.Logf("%s: kernel sent %d, uswitch %d, in %d flows; %d differ", dev, len(kl), len(ul), len(flows), bad)
	}
}

// byFlow groups hex packets by their addresses, protocol and ports (a
// packet that does not decode is a flow of its own kind, "?"), keeping
// their order.
func byFlow(l []string) map[string][]string {
	m := map[string][]string{}
	for _, h := range l {
		d, _ := hex.DecodeString(h)
		p := &packet.Packet{Data: d}
		f := "?"
		if p.Decode() == nil {
			f = fmt.Sprintf("%d %s:%d>%s:%d", p.Proto, ip4(p.Src), p.SrcPort, ip4(p.Dst), p.DstPort)
		}
		m[f] = append(m[f], h)
	}
	return m
}

// describe prints both packets' TCP/UDP view.
func describe(a, b string) string {
	var s strings.Builder
	for _, h := range []string{a, b} {
		d, _ := hex.DecodeString(h)
		p := &packet.Packet{Data: d}
		if p.Decode() != nil || len(p.L4) < 20 || p.Proto != packet.ProtoTCP {
			s.WriteString("  (not TCP)\n")
			continue
		}
		tc := packet.TCP(p.L4)
		fmt.Fprintf(&s, "  %s:%d > %s:%d seq=%d ack=%d payload=%q\n", ip4(p.Src), p.SrcPort, ip4(p.Dst), p.DstPort,
			tc.Seq(), tc.Ack(), p.L4[tc.DataOffset():])
	}
	return s.String()
}

// payloads returns the TCP payloads the packets carry, in order.
func payloads(p []capPkt, dev string, out bool) []string {
	var r []string
	for _, c := range p {
		if c.dev != dev || c.out != out {
			continue
		}
		k := &packet.Packet{Data: c.data}
		if k.Decode() != nil || k.Proto != packet.ProtoTCP || len(k.L4) < 20 {
			continue
		}
		if pl := k.L4[packet.TCP(k.L4).DataOffset():]; len(pl) > 0 {
			r = append(r, string(pl))
		}
	}
	return r
}

func TestFTPHelperAgainstKernel(t *testing.T) {
	for _, tc := range []struct {
		name, nat string
		server    string // what the client dials
	}{
		{"masquerade", "-A POSTROUTING -o r1 -j MASQUERADE\n", "192.168.100.2:21"},
		{"dnat", "-A PREROUTING -d 10.1.0.1/32 -p tcp -m tcp --dport 21 -j DNAT --to-destination 192.168.100.2\n", "10.1.0.1:21"},
		{"nonat", "", "192.168.100.2:21"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newHelperTopo(t)
			if out, err := exec.Command("ip", "netns", "exec", tp.rtr, "iptables-restore").CombinedOutput(); err != nil {
				_ = out
			}
			cmd := exec.Command("ip", "netns", "exec", tp.rtr, "iptables-restore")
			cmd.Stdin = strings.NewReader(helperRules(tc.nat))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("iptables-restore: %v %s", err, out)
			}
			var ln net.Listener
			err := netnsrun.InNamed(tp.srv, func() (err error) {
				ln, err = net.Listen("tcp4", "0.0.0.0:21")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			rc := startCapture(t, tp.rtr)
			srvErr := make(chan error, 1)
			go func() { srvErr <- ftpServe(ln, tp.srv) }()
			got, err := ftpClient(tc.server, tp.cli)
			if err != nil {
				t.Fatalf("client: %v (data %q)", err, got)
			}
			if err := <-srvErr; err != nil {
				t.Fatalf("server: %v", err)
			}
			if want := []string{"data for port", "data for pasv", "data for epsv", "data for eprt"}; strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("data %q, want %q", got, want)
			}
			compareWithKernel(t, tp, rc)
		})
	}
}

// compareWithKernel stops the capture and compares the kernel's run with
// uswitch's replay of it: packets sent, FORWARD counters, conntrack
// entries and their helpers, the expectations left.
func compareWithKernel(t *testing.T, tp *helperTopo, rc *routerCapture) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	kpkts := rc.Stop()
	kexp := labtest.In(t, tp.rtr, "conntrack", "-L", "expect")
	kconns := kernelConns(t, tp.rtr)
	ksave := labtest.In(t, tp.rtr, "iptables-save", "-c", "-t", "filter")
	snap := t.TempDir() + "/snap"
	if err := host.Capture(snap, tp.rtr); err != nil {
		t.Fatal(err)
	}
	r := replay(t, snap, kpkts)

	comparePackets(t, kpkts, r.sent)
	for _, dev := range []string{"r0", "r1"} {
		t.Logf("kernel payloads out %s: %q", dev, payloads(kpkts, dev, true))
	}
	kc := forwardCounters(ksave)
	if strings.Join(kc, "\n") != strings.Join(r.counters, "\n") {
		t.Errorf("FORWARD counters:\nkernel:\n%s\nuswitch:\n%s", strings.Join(kc, "\n"), strings.Join(r.counters, "\n"))
	} else {
		t.Logf("FORWARD counters agree:\n%s", strings.Join(kc, "\n"))
	}
	if strings.Join(kconns, "\n") != strings.Join(r.conns, "\n") {
		t.Errorf("conntrack -L:\nkernel:\n%s\nuswitch:\n%s", strings.Join(kconns, "\n"), strings.Join(r.conns, "\n"))
	}
	// conntrack -L expect, the leading remaining seconds aside (the
	// kernel listed after the run, uswitch at its last packet)
	cmd, err := conntrack.ParseCommand([]string{"-L", "expect"})
	if err != nil {
		t.Fatal(err)
	}
	res := cmd.Exec(r.eng.CT, r.now, 0)
	ku, uu := expectLines(t, kexp), expectLines(t, res.Stdout)
	if strings.Join(ku, "\n") != strings.Join(uu, "\n") {
		t.Errorf("conntrack -L expect:\nkernel:\n%s\nuswitch:\n%s", kexp, res.Stdout)
	} else {
		t.Logf("conntrack -L expect agrees:\n%s", res.Stdout)
	}
}

var expLineRE = regexp.MustCompile(`^(\d+) (proto=.*)$`)

// expectLines are conntrack -L expect's lines without the timeout,
// which must be 295 to 300 seconds.
func expectLines(t *testing.T, out string) []string {
	t.Helper()
	var r []string
	for _, l := range strings.Split(out, "\n") {
		m := expLineRE.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		if n := conntrackAtoi(m[1]); n < 295 || n > 300 {
			t.Errorf("expectation timeout %s in %q", m[1], l)
		}
		r = append(r, m[2])
	}
	return r
}

func conntrackAtoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestTFTPHelperAgainstKernel(t *testing.T) {
	for _, tc := range []struct {
		name, nat string
		server    string
	}{
		{"masquerade", "-A POSTROUTING -o r1 -j MASQUERADE\n", "192.168.100.2:69"},
		{"dnat", "-A PREROUTING -d 10.1.0.1/32 -p udp -m udp --dport 69 -j DNAT --to-destination 192.168.100.2\n", "10.1.0.1:69"},
		{"nonat", "", "192.168.100.2:69"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newHelperTopo(t)
			cmd := exec.Command("ip", "netns", "exec", tp.rtr, "iptables-restore")
			cmd.Stdin = strings.NewReader(helperRules(tc.nat))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("iptables-restore: %v %s", err, out)
			}
			var pc net.PacketConn
			err := netnsrun.InNamed(tp.srv, func() (err error) {
				pc, err = net.ListenPacket("udp4", "0.0.0.0:69")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			rc := startCapture(t, tp.rtr)
			srvErr := make(chan error, 1)
			go func() { srvErr <- tftpServe(pc, tp.srv) }()
			n, err := tftpClient(tc.server, tp.cli)
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if err := <-srvErr; err != nil {
				t.Fatalf("server: %v", err)
			}
			if n != 515 {
				t.Fatalf("read %d bytes, want 515", n)
			}
			// a last request nobody answers: its expectation stays
			err = netnsrun.InNamed(tp.cli, func() error {
				c, err := net.Dial("udp4", tc.server)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("\x00\x01other\x00octet\x00"))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			compareWithKernel(t, tp, rc)
		})
	}
}
