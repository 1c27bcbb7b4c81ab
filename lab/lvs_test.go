package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/lvs"
)

// End-to-end tests of the IPVS example labs (examples/labs/lvs-*.toml):
// each lab file is loaded as it is, its namespaces renamed to names no
// other test or run uses, brought up, and real TCP and UDP sockets in
// the client namespace talk to the VIP; the built-in servers answer
// with their namespace's name, so every check knows which real server
// answered. The tables are changed live through the lab's director, as
// `uswitch ipvsadm` does over the control socket (lvs.Exec).

const (
	lvsVIP = "10.10.1.100"
	lvsTO  = 2 * time.Second
)

// lvsLab brings up examples/labs/<file>, renamed: "usw-nat-rs1" becomes
// P+"-rs1". role returns a role's namespace name ("client", "rs1"...).
// extra addresses are added to the client's TUN (sources for sh and mh).
func lvsLab(t *testing.T, file string, extra ...string) (l *Lab, role func(string) string) {
	t.Helper()
	needRoot(t)
	c, err := Load(filepath.Join("..", "examples", "labs", file))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	strip := func(s string) string {
		// usw-<lab>-<role>
		if i := strings.LastIndex(s, "-"); i >= 0 {
			return s[i+1:]
		}
		return s
	}
	c = c.Rename(func(s string) string { return p + "-" + strip(s) })
	for i := range c.Namespaces {
		n := &c.Namespaces[i]
		if strip(n.Name) == "client" && len(extra) > 0 {
			a := append([]PrefixValue(nil), n.Addresses...)
			for _, e := range extra {
				a = append(a, PrefixValue{netip.MustParsePrefix(e)})
			}
			n.Addresses = a
		}
	}
	return upLab(t, c), func(r string) string { return p + "-" + r }
}

// ipvsadm runs one ipvsadm command against the lab's director, as
// `uswitch ipvsadm ... --lab NAME` does, and returns what it prints.
func ipvsadm(t *testing.T, l *Lab, args string) string {
	t.Helper()
	c, err := lvs.ParseCommand(strings.Fields(args))
	if err != nil {
		t.Fatalf("ipvsadm %s: %v", args, err)
	}
	var out bytes.Buffer
	if err := lvs.Exec(l.Engine().LVS, c, nil, &out, l.now()); err != nil {
		t.Fatalf("ipvsadm %s: %v", args, err)
	}
	return out.String()
}

// dialFrom connects from inside ns, from the source address src (zero:
// the kernel's choice).
func dialFrom(l *Lab, ns string, src netip.Addr, network, addr string, timeout time.Duration) (net.Conn, error) {
	h, ok := l.nss[ns]
	if !ok {
		return nil, fmt.Errorf("no namespace %q", ns)
	}
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		if strings.HasPrefix(network, "udp") {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
	}
	var c net.Conn
	err := inNetns(h, func() error {
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// getFrom does one GET on a new connection from src in ns and returns
// the real server that answered and the body.
func getFrom(l *Lab, ns string, src netip.Addr, url string) (servedBy, body string, err error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialFrom(l, ns, src, network, addr, lvsTO)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: lvsTO}).Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-Served-By"), string(b), nil
}

// gets does n GETs of VIP:port from the client's primary address and
// returns who answered each, in order.
func gets(t *testing.T, l *Lab, cli string, port, n int) []string {
	t.Helper()
	var by []string
	for range n {
		s, _, err := getFrom(l, cli, netip.Addr{}, fmt.Sprintf("http://%s:%d/", lvsVIP, port))
		if err != nil {
			t.Fatalf("after %v: %v", by, err)
		}
		by = append(by, s)
	}
	return by
}

// tcpEcho opens a connection to a tcp-echo server, reads its greeting
// and returns the connection and the server's name.
func tcpEcho(t *testing.T, l *Lab, cli, addr string) (net.Conn, string) {
	t.Helper()
	c, err := dialFrom(l, cli, netip.Addr{}, "tcp4", addr, lvsTO)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(lvsTO))
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			c.Close()
			t.Fatalf("%s greeting: %v (got %q)", addr, err, line)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	name, _, _ := strings.Cut(string(line), " ")
	return c, name
}

// echoRoundTrip sends size bytes on a tcp-echo connection and checks
// they all come back.
func echoRoundTrip(t *testing.T, c net.Conn, size int) {
	t.Helper()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i*7 + i>>8)
	}
	c.SetDeadline(time.Now().Add(lvsTO))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo of %d bytes: %v", size, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("echo write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes came back different", size)
	}
}

// udpFrom sends one datagram from src and returns the server's name and
// the payload it echoed.
func udpFrom(l *Lab, ns string, src netip.Addr, addr, payload string) (name, echoed string, err error) {
	c, err := dialFrom(l, ns, src, "udp4", addr, lvsTO)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(lvsTO))
	if _, err := c.Write([]byte(payload)); err != nil {
		return "", "", err
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return "", "", err
	}
	// "NAME CLIENT PAYLOAD"
	f := strings.SplitN(string(buf[:n]), " ", 3)
	if len(f) != 3 {
		return "", "", fmt.Errorf("udp-echo answer %q", buf[:n])
	}
	return f[0], f[2], nil
}

func names(role func(string) string, rs ...string) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = role(r)
	}
	return out
}

func count(by []string) map[string]int {
	m := map[string]int{}
	for _, s := range by {
		m[s]++
	}
	return m
}

// checkForwarding: TCP (HTTP GETs, a large download, tcp-echo round trips
// of 64 KiB) and UDP (udp-echo) through the lab's VIP, rr over rs1-rs3,
// every real server answering in turn. The labs add rs1, rs2, rs3 in
// that order; each -a puts the dest at the head of the kernel's list and
// rr starts from the head, so rs3 answers first.
func checkForwarding(t *testing.T, l *Lab, role func(string) string) {
	cli := role("client")
	want := names(role, "rs3", "rs2", "rs1")
	t.Run("tcp-http", func(t *testing.T) {
		by := gets(t, l, cli, 80, 3)
		if fmt.Sprint(by) != fmt.Sprint(want) {
			t.Errorf("GETs answered by %v, want %v (rr)", by, want)
		}
		// a download of 256 KiB, 3 times: every real server's replies
		// cross the director
		for i := range 3 {
			s, body, err := getFrom(l, cli, netip.Addr{}, "http://"+lvsVIP+"/bytes/262144")
			if err != nil {
				t.Fatal(err)
			}
			if len(body) != 262144 || body[1000] != byte(1000%256) {
				t.Errorf("download from %s: %d bytes", s, len(body))
			}
			if s != want[i] {
				t.Errorf("download %d answered by %s, want %s", i, s, want[i])
			}
		}
	})
	t.Run("tcp-echo", func(t *testing.T) {
		var seen []string
		for range 3 {
			c, name := tcpEcho(t, l, cli, lvsVIP+":7")
			seen = append(seen, name)
			echoRoundTrip(t, c, 64<<10)
			c.Close()
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("tcp-echo answered by %v, want %v", seen, want)
		}
	})
	t.Run("udp", func(t *testing.T) {
		var seen []string
		for i := range 3 {
			p := fmt.Sprintf("datagram %d", i)
			name, echoed, err := udpFrom(l, cli, netip.Addr{}, lvsVIP+":7", p)
			if err != nil {
				t.Fatal(err)
			}
			if echoed != p {
				t.Errorf("udp-echo of %q: %q", p, echoed)
			}
			seen = append(seen, name)
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("udp-echo answered by %v, want %v", seen, want)
		}
	})
}

// TestLVSLabFiles: the example labs load (no root needed) with their
// IPVS tables, and only the NAT-reply lab's broken step expects to fail.
func TestLVSLabFiles(t *testing.T) {
	for file, want := range map[string]struct {
		name                  string
		rules, services, fail int
	}{
		"lvs-nat.toml": {"lvs-nat", 12, 3, 0}, "lvs-dr.toml": {"lvs-dr", 12, 3, 0},
		"lvs-tun.toml": {"lvs-tun", 12, 3, 0}, "lvs-nat-reply.toml": {"lvs-nat-reply", 6, 3, 1},
	} {
		c, err := Load(filepath.Join("..", "examples", "labs", file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		fail := 0
		for _, d := range c.Demo {
			if d.ExpectFail {
				fail++
			}
		}
		if c.Name != want.name || len(c.IPVSRules) != want.rules || fail != want.fail {
			t.Errorf("%s: name %q, %d ipvs rules, %d expect_fail steps; want %+v", file, c.Name, len(c.IPVSRules), fail, want)
		}
		d, err := c.Director()
		if err != nil {
			t.Errorf("%s: director: %v", file, err)
		} else if n := len(d.Services()); n != want.services {
			t.Errorf("%s: %d services, want %d", file, n, want.services)
		}
	}
}

func TestLVSDirectRouting(t *testing.T) {
	l, role := lvsLab(t, "lvs-dr.toml")
	checkForwarding(t, l, role)
}

func TestLVSTunnel(t *testing.T) {
	// rs1 and rs2 are IPIP real servers, rs3 a GUE one: checkForwarding
	// has each of them answer
	l, role := lvsLab(t, "lvs-tun.toml")
	out := ipvsadm(t, l, "-Ln --tun-info -t "+lvsVIP+":80")
	if !strings.Contains(out, "10.10.4.2:80") || !strings.Contains(out, "gue") {
		t.Errorf("the GUE dest is missing:\n%s", out)
	}
	checkForwarding(t, l, role)
}

// clientSources are the extra client addresses the scheduler checks
// connect from.
func clientSources(n int) (prefixes []string, addrs []netip.Addr) {
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 10, 1, byte(10 + i)})
		prefixes = append(prefixes, a.String()+"/24")
		addrs = append(addrs, a)
	}
	return prefixes, addrs
}

func TestLVSNAT(t *testing.T) {
	pfx, srcs := clientSources(20)
	l, role := lvsLab(t, "lvs-nat.toml", pfx...)
	cli := role("client")
	rs1, rs2, rs3 := role("rs1"), role("rs2"), role("rs3")
	svc := "-t " + lvsVIP + ":80"
	// setSched gives the service a fresh scheduler (and its other
	// options: -E sets what it is given)
	setSched := func(t *testing.T, svc, opts string) {
		t.Helper()
		ipvsadm(t, l, "-E "+svc+" -s wlc")
		ipvsadm(t, l, "-E "+svc+" "+opts)
	}

	t.Run("forwarding", func(t *testing.T) {
		checkForwarding(t, l, role)
		// NAT: the real server saw the client's own address
		_, body, err := getFrom(l, cli, netip.MustParseAddr("10.10.1.10"), "http://"+lvsVIP+"/")
		if err != nil || body == "" {
			t.Fatalf("GET from 10.10.1.10: %q %v", body, err)
		}
		r, err := l.HTTPGet(cli, "http://"+lvsVIP+"/", lvsTO)
		if err != nil || !strings.HasPrefix(r.ClientAddr, "10.10.1.2:") {
			t.Errorf("the real server saw the client as %q (%v), want 10.10.1.2", r.ClientAddr, err)
		}
	})

	t.Run("rr", func(t *testing.T) {
		setSched(t, svc, "-s rr")
		by := gets(t, l, cli, 80, 12)
		// a fresh rr starts at the head of the list: rs3 (added last)
		for i, s := range by {
			if w := []string{rs3, rs2, rs1}[i%3]; s != w {
				t.Fatalf("rr: connection %d answered by %s, want %s (all: %v)", i, s, w, by)
			}
		}
	})

	t.Run("wrr", func(t *testing.T) {
		ipvsadm(t, l, "-e "+svc+" -r 10.10.2.2:8080 -m -w 3")
		ipvsadm(t, l, "-e "+svc+" -r 10.10.3.2:8080 -m -w 2")
		defer func() {
			ipvsadm(t, l, "-e "+svc+" -r 10.10.2.2:8080 -m -w 1")
			ipvsadm(t, l, "-e "+svc+" -r 10.10.3.2:8080 -m -w 1")
		}()
		setSched(t, svc, "-s wrr")
		by := gets(t, l, cli, 80, 12)
		n := count(by)
		if n[rs1] != 6 || n[rs2] != 4 || n[rs3] != 2 {
			t.Errorf("wrr 3,2,1 over 12: %v, want 6, 4, 2", n)
		}
		// ip_vs_wrr_schedule: the current weight starts at the maximum
		// (3) and steps down by the gcd (1) each time the cursor wraps;
		// a dest is picked when its weight reaches the current weight.
		// The list is rs3 (w 1), rs2 (w 2), rs1 (w 3), newest first:
		// cw 3 picks rs1; cw 2 rs2, rs1; cw 1 rs3, rs2, rs1.
		cycle := []string{rs1, rs2, rs1, rs3, rs2, rs1}
		for i, s := range by {
			if s != cycle[i%6] {
				t.Fatalf("wrr order %v, want %v twice", by, cycle)
			}
		}
	})

	t.Run("sh", func(t *testing.T) {
		setSched(t, svc, "-s sh")
		defer setSched(t, svc, "-s rr")
		// one client, a new source port each time: one real server
		by := gets(t, l, cli, 80, 10)
		if n := count(by); len(n) != 1 {
			t.Errorf("sh moved one client: %v", by)
		}
		// other clients keep theirs too, and are spread
		all := map[string]bool{}
		for _, src := range srcs[:8] {
			first := ""
			for range 3 {
				s, _, err := getFrom(l, cli, src, "http://"+lvsVIP+"/")
				if err != nil {
					t.Fatal(err)
				}
				if first == "" {
					first = s
				} else if s != first {
					t.Errorf("sh: client %v went to %s and %s", src, first, s)
				}
				all[s] = true
			}
		}
		if len(all) < 2 {
			t.Errorf("sh put 8 clients on %v", all)
		}
	})

	t.Run("mh", func(t *testing.T) {
		setSched(t, svc, "-s mh")
		defer func() {
			ipvsadm(t, l, "-a "+svc+" -r 10.10.3.2:8080 -m -w 1")
			setSched(t, svc, "-s rr")
		}()
		before := map[netip.Addr]string{}
		for _, src := range srcs {
			for range 2 {
				s, _, err := getFrom(l, cli, src, "http://"+lvsVIP+"/")
				if err != nil {
					t.Fatal(err)
				}
				if b, ok := before[src]; ok && b != s {
					t.Errorf("mh: client %v went to %s and %s", src, b, s)
				}
				before[src] = s
			}
		}
		onRS2 := 0
		for _, s := range before {
			if s == rs2 {
				onRS2++
			}
		}
		if onRS2 == 0 || onRS2 == len(srcs) {
			t.Fatalf("mh put %d of %d clients on rs2: %v", onRS2, len(srcs), before)
		}
		ipvsadm(t, l, "-d "+svc+" -r 10.10.3.2:8080")
		moved := 0
		for _, src := range srcs {
			s, _, err := getFrom(l, cli, src, "http://"+lvsVIP+"/")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case s == rs2:
				t.Errorf("mh: client %v still sent to the removed rs2", src)
			case before[src] != rs2 && s != before[src]:
				t.Errorf("mh: client %v moved from %s to %s, though its server stayed", src, before[src], s)
			case s != before[src]:
				moved++
			}
		}
		if moved != onRS2 {
			t.Errorf("mh: %d clients moved, want the %d that were on rs2", moved, onRS2)
		}
	})

	t.Run("persistence", func(t *testing.T) {
		// TCP: -p keeps one client on one real server, although rr would
		// move every connection
		setSched(t, svc, "-s rr -p 360")
		by := gets(t, l, cli, 80, 6)
		if n := count(by); len(n) != 1 {
			t.Errorf("persistent rr moved the client: %v", by)
		}
		setSched(t, svc, "-s rr")
		if by := gets(t, l, cli, 80, 3); len(count(by)) != 3 {
			t.Errorf("without -p rr should spread: %v", by)
		}

		// UDP with a 1 s persistence and 1 s UDP timeout: the client
		// stays on its server until the template expires, then rr gives
		// it the next one
		usvc := "-u " + lvsVIP + ":7"
		ipvsadm(t, l, "--set 0 0 1")
		defer ipvsadm(t, l, "--set 0 0 300")
		setSched(t, usvc, "-s rr -p 1")
		defer setSched(t, usvc, "-s rr")
		var first string
		for i := range 5 {
			name, _, err := udpFrom(l, cli, netip.Addr{}, lvsVIP+":7", "p")
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = name
			} else if name != first {
				t.Fatalf("persistent UDP: answer %d from %s, the first from %s", i, name, first)
			}
		}
		// the UDP service's list is rs3, rs2, rs1 (added rs1 first)
		if first != rs3 {
			t.Errorf("a fresh rr picked %s first, want %s", first, rs3)
		}
		// wait for the template to go: its connections expire after 1 s,
		// it after them (reaped by the datapath's 1 s tick)
		deadline := time.Now().Add(6 * time.Second)
		for hasTemplate(l, lvs.ProtoUDP, lvsVIP, 7) {
			if time.Now().After(deadline) {
				t.Fatalf("the persistence template is still there after 6 s:\n%s", ipvsadm(t, l, "-Lnc"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		name, _, err := udpFrom(l, cli, netip.Addr{}, lvsVIP+":7", "p")
		if err != nil {
			t.Fatal(err)
		}
		if name != rs2 {
			t.Errorf("after the template expired: %s, want rr's next, %s", name, rs2)
		}
	})

	t.Run("weight0", func(t *testing.T) {
		esvc := "-t " + lvsVIP + ":7"
		setSched(t, esvc, "-s rr")
		c, name := tcpEcho(t, l, cli, lvsVIP+":7")
		defer c.Close()
		echoRoundTrip(t, c, 4096)
		rip := map[string]string{rs1: "10.10.2.2", rs2: "10.10.3.2", rs3: "10.10.4.2"}[name]
		ipvsadm(t, l, "-e "+esvc+" -r "+rip+":7 -m -w 0")
		defer ipvsadm(t, l, "-e "+esvc+" -r "+rip+":7 -m -w 1")
		// new connections go elsewhere
		for range 6 {
			c2, n2 := tcpEcho(t, l, cli, lvsVIP+":7")
			c2.Close()
			if n2 == name {
				t.Errorf("a new connection went to %s, whose weight is 0", name)
			}
		}
		// the established one keeps working
		echoRoundTrip(t, c, 32<<10)
		out := ipvsadm(t, l, "-Ln "+esvc)
		if !strings.Contains(out, rip+":7") {
			t.Errorf("the weight-0 dest is not listed:\n%s", out)
		}
	})
}

// hasTemplate reports whether the director holds a persistence template
// for the service.
func hasTemplate(l *Lab, proto uint8, vip string, port uint16) bool {
	found := false
	v := lvs.U32(netip.MustParseAddr(vip))
	l.Engine().LVS.Conns.Range(l.now(), func(c *lvs.Conn) bool {
		if c.Template() && c.Proto == proto && c.VAddr == v && c.VPort == port {
			found = true
			return false
		}
		return true
	})
	return found
}

func TestLVSNATReply(t *testing.T) {
	l, role := lvsLab(t, "lvs-nat-reply.toml")
	cli := role("client")

	t.Run("broken", func(t *testing.T) {
		// rs1's default route is gw: its SYN-ACK reaches the client through
		// gw, from 10.10.2.2:8080, not from the VIP; the client never sees
		// the connection open. A packet socket on the client's veth sees
		// the SYN-ACK arrive there.
		synack := watchSYNACK(t, l, cli, "veth-gw", netip.MustParseAddr("10.10.2.2"), 8080)
		c, err := dialFrom(l, cli, netip.Addr{}, "tcp4", lvsVIP+":80", 1500*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatal("VIP:80 connected, though rs1 answers around the director")
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Errorf("VIP:80: %v, want a timeout (the connection hangs)", err)
		}
		if !synack() {
			t.Errorf("no SYN-ACK from 10.10.2.2:8080 arrived on the client's veth from gw")
		}
	})
	t.Run("demo", func(t *testing.T) {
		// the lab's own demo: its VIP:80 step is expect_fail, so the
		// hang is printed as expected and the demo succeeds
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("demo: %v\n%s", err, out.String())
		}
		for _, w := range []string{":80/ from " + cli + ": failed, as expected", "answered by: nobody",
			"answered by: " + role("rs2") + " 2", "answered by: " + role("rs3") + " 2"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("demo output lacks %q:\n%s", w, out.String())
			}
		}
	})
	t.Run("fixes", func(t *testing.T) {
		for port, want := range map[int]string{81: role("rs2"), 82: role("rs3")} {
			by := gets(t, l, cli, port, 2)
			for _, s := range by {
				if s != want {
					t.Errorf("VIP:%d answered by %s, want %s", port, s, want)
				}
			}
		}
	})
}

// watchSYNACK listens on a device of ns (an AF_PACKET socket) for a TCP
// SYN-ACK from src:sport; the returned function stops listening and
// reports whether one arrived.
func watchSYNACK(t *testing.T, l *Lab, ns, dev string, src netip.Addr, sport uint16) func() bool {
	t.Helper()
	const ethPIP = 0x0800
	htons := func(v uint16) uint16 { return v<<8 | v>>8 }
	var fd int
	err := inNetns(l.nss[ns], func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(ethPIP)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPIP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("packet socket on %s/%s: %v", ns, dev, err)
	}
	stop := make(chan struct{})
	seen := make(chan bool, 1)
	a := src.As4()
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				seen <- false
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 20 {
				continue
			}
			b := buf[:n]
			ihl := int(b[0]&0x0f) * 4
			if b[9] != 6 || !bytes.Equal(b[12:16], a[:]) || n < ihl+14 {
				continue
			}
			tcp := b[ihl:]
			if uint16(tcp[0])<<8|uint16(tcp[1]) == sport && tcp[13]&0x12 == 0x12 {
				seen <- true
				return
			}
		}
	}()
	return func() bool {
		select {
		case v := <-seen:
			return v
		default:
		}
		close(stop)
		return <-seen
	}
}
