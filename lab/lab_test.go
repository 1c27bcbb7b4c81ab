package lab

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// needRoot skips tests that make namespaces and TUN devices.
func needRoot(t *testing.T) {
	t.Helper()
	labtest.TUN(t)
}

// uniquePrefix gives namespace names no other test or run uses.
func uniquePrefix() string { return labtest.Name("ul") }

// testLab is a client, two web servers behind the service 10.96.0.10:80
// (statistic DNAT) and a wan host behind MASQUERADE; P is the prefix.
const testLab = `
name = "test"
[uswitch]
workers = 2
seed = 7
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SVC - [0:0]
-A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.10.2.2:8080
-A SVC -p tcp -j DNAT --to-destination 10.10.3.2:8080
-A POSTROUTING -o tw -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT
-A FORWARD -i tc -o tw -j ACCEPT
-A FORWARD -i tc -p tcp -j REJECT --reject-with tcp-reset
-A FORWARD -i tc -p udp -j REJECT
COMMIT
"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "t1"
netns = "P-w1"
addresses = ["10.10.2.1/24"]
[[interface]]
name = "t2"
netns = "P-w2"
addresses = ["10.10.3.1/24"]
[[interface]]
name = "tw"
netns = "P-wan"
addresses = ["203.0.113.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "P-w1"
addresses = ["10.10.2.2/24"]
routes = ["default via 10.10.2.1"]
server = [{ kind = "http", port = 8080 }, { kind = "tcp-echo", port = 7 }, { kind = "udp-echo", port = 7 }]
[[namespace]]
name = "P-w2"
addresses = ["10.10.3.2/24"]
routes = ["default via 10.10.3.1"]
server = [{ kind = "http", port = 8080 }]
[[namespace]]
name = "P-wan"
addresses = ["203.0.113.2/24"]
server = [{ kind = "udp-echo", port = 7 }, { kind = "tcp-echo", port = 7 }]
`

func testConfig(t *testing.T) (*Config, string) {
	t.Helper()
	return prefixedConfig(t, "test.toml", testLab)
}

// prefixedConfig parses the lab src with its "P-" names made unique to
// the test; it returns the config and the prefix.
func prefixedConfig(t *testing.T, name, src string) (*Config, string) {
	t.Helper()
	p := uniquePrefix()
	c, err := Parse(name, []byte(strings.ReplaceAll(src, "P-", p+"-")))
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// upLab brings a lab up and removes it at the end of the test, also on
// failure (and checks nothing is left).
func upLab(t *testing.T, c *Config) *Lab {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range c.Namespaces {
			if nsExists(n.Name) {
				t.Errorf("namespace %s left behind", n.Name)
			}
		}
	})
	return labtest.Up(t, func() (*Lab, error) { return Up(c, nil) }, func() error {
		_, _, err := Down(c)
		return err
	})
}

func TestLabTraffic(t *testing.T) {
	needRoot(t)
	c, p := testConfig(t)
	l := upLab(t, c)
	cli, w1, w2, wan := p+"-c", p+"-w1", p+"-w2", p+"-wan"
	const to = 2 * time.Second

	t.Run("ping", func(t *testing.T) {
		// uswitch's own address (the engine answers) and forwarded
		for _, dst := range []string{"10.10.1.1", "203.0.113.2"} {
			if _, err := l.Ping(cli, netip.MustParseAddr(dst), to); err != nil {
				t.Errorf("ping %s: %v", dst, err)
			}
		}
	})
	t.Run("ping -s 3000", func(t *testing.T) {
		// fragments both ways: reassembled by uswitch (conntrack's
		// defrag, or before INPUT), the datagram and the echo reply
		// fragmented again to the MTU (issue 12)
		testtools.Need(t, "ping")
		for _, c := range []struct{ ns, dst string }{{cli, "10.10.1.1"}, {cli, "203.0.113.2"}, {wan, "203.0.113.1"}} {
			out, err := exec.Command("ip", "netns", "exec", c.ns, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000", c.dst).CombinedOutput()
			if err != nil || !strings.Contains(string(out), " 0% packet loss") || !strings.Contains(string(out), "3008 bytes from "+c.dst) ||
				strings.Contains(string(out), "truncated") {
				t.Errorf("ping -s 3000 %s from %s: %v\n%s", c.dst, c.ns, err, out)
			}
		}
	})
	t.Run("udp 3000 bytes", func(t *testing.T) {
		msg := bytes.Repeat([]byte("0123456789abcdef"), 3000/16)
		b, err := l.UDPExchange(cli, "203.0.113.2:7", msg, to)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(b, msg) {
			t.Errorf("UDP answer of %d bytes does not end in the %d sent", len(b), len(msg))
		}
	})
	t.Run("service spread over both servers", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && (seen[w1] == 0 || seen[w2] == 0); i++ {
			r, err := l.HTTPGet(cli, "http://10.96.0.10/", to)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != 200 || strings.TrimSpace(r.Body) != r.ServedBy {
				t.Fatalf("GET: %d %q served by %q", r.Status, r.Body, r.ServedBy)
			}
			// no SNAT towards the web servers: they see the client
			if !strings.HasPrefix(r.ClientAddr, "10.10.1.2:") {
				t.Errorf("server saw the client as %s", r.ClientAddr)
			}
			seen[r.ServedBy]++
		}
		if seen[w1] == 0 || seen[w2] == 0 {
			t.Errorf("service answered by %v, want both %s and %s", seen, w1, w2)
		}
	})
	t.Run("udp masquerade", func(t *testing.T) {
		b, err := l.UDPExchange(cli, "203.0.113.2:7", []byte("ping-udp"), to)
		if err != nil {
			t.Fatal(err)
		}
		// the wan host has no route to 10.10.1.0/24: it saw uswitch
		if !strings.HasPrefix(string(b), wan+" 203.0.113.1:") || !strings.HasSuffix(string(b), " ping-udp") {
			t.Errorf("UDP answer %q", b)
		}
	})
	t.Run("tcp transfer", func(t *testing.T) {
		conn, err := l.Dial(cli, "tcp4", "203.0.113.2:7", to)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		const size = 10 << 20 // the issue asks for at least 10 MB
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7 >> 3)
		}
		go func() {
			conn.Write(data)
		}()
		greeting := wan + " 203.0.113.1:"
		got := make([]byte, 0, size+64)
		buf := make([]byte, 64<<10)
		for len(got) < size+len(greeting)+6 {
			n, err := conn.Read(buf)
			got = append(got, buf[:n]...)
			if i := bytes.IndexByte(got, '\n'); i >= 0 && len(got)-i-1 == size {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
		}
		i := bytes.IndexByte(got, '\n')
		if i < 0 || !strings.HasPrefix(string(got[:i]), greeting) {
			t.Fatalf("greeting %q", got[:min(len(got), 64)])
		}
		if sha256.Sum256(got[i+1:]) != sha256.Sum256(data) {
			t.Errorf("echoed %d bytes differ from the %d sent", len(got)-i-1, size)
		}
	})
	t.Run("reject", func(t *testing.T) {
		// straight at a web server: FORWARD rejects with a reset
		_, err := l.Dial(cli, "tcp4", "10.10.2.2:7", to)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("dial 10.10.2.2:7: %v, want connection refused", err)
		}
		// UDP: ICMP port unreachable makes the read fail with refused
		_, err = l.UDPExchange(cli, "10.10.2.2:7", []byte("x"), to)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("UDP to 10.10.2.2:7: %v, want connection refused", err)
		}
		// and web1 can't reach the wan at all (policy DROP)
		if _, err := l.UDPExchange(w1, "203.0.113.2:7", []byte("x"), 300*time.Millisecond); err == nil {
			t.Errorf("web1 reached the wan")
		}
	})
	s := l.Stats()
	t.Logf("datapath: %v", s)
	if s.Forwarded == 0 || s.Malformed != 0 {
		t.Errorf("stats %v", s)
	}
}

// TestDownAfterCrash: a lab whose process was killed leaves namespaces
// behind (its TUNs die with the process); Down removes them by name.
func TestDownAfterCrash(t *testing.T) {
	needRoot(t)
	c, p := testConfig(t)
	t.Cleanup(func() { Down(c) })
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "USWITCH_LAB_CRASH_PREFIX="+p)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var got []byte
	deadline := time.Now().Add(20 * time.Second)
	for !bytes.Contains(got, []byte("LAB UP")) && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
	}
	if !bytes.Contains(got, []byte("LAB UP")) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not bring the lab up:\n%s", got)
	}
	cmd.Process.Kill() // SIGKILL: no cleanup runs
	cmd.Wait()
	for _, n := range c.Namespaces {
		if !nsExists(n.Name) {
			t.Fatalf("namespace %s did not survive the crash (test is not testing anything)", n.Name)
		}
	}
	removed, _, err := Down(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(c.Namespaces) {
		t.Errorf("removed %v", removed)
	}
	for _, n := range c.Namespaces {
		if nsExists(n.Name) {
			t.Errorf("namespace %s still there", n.Name)
		}
	}
	for _, it := range c.Interfaces {
		if ok, _ := deleteHostLink(it.Name); ok {
			t.Errorf("device %s was left in the host namespace", it.Name)
		}
	}
	// a second Down finds nothing and is no error
	if removed, _, err := Down(c); err != nil || len(removed) != 0 {
		t.Errorf("second down: %v %v", removed, err)
	}
}

// TestMain runs the test binary as the lab process TestDownAfterCrash
// kills when USWITCH_LAB_CRASH_PREFIX is set (no test runs then).
func TestMain(m *testing.M) {
	if p := os.Getenv("USWITCH_LAB_CRASH_PREFIX"); p != "" {
		os.Exit(crashHelper(p))
	}
	os.Exit(m.Run())
}

// crashHelper brings up a lab with the prefix, says so, and waits to be
// killed.
func crashHelper(p string) int {
	c, err := Parse("test.toml", []byte(strings.ReplaceAll(testLab, "P-", p+"-")))
	if err == nil {
		_, err = Up(c, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 1
	}
	fmt.Println("LAB UP")
	time.Sleep(time.Minute)
	return 0
}

// TestDefaultLabDemo brings up the default lab under unique names (its
// rules name only interfaces, which live inside the namespaces) and runs
// its demonstration.
func TestDefaultLabDemo(t *testing.T) {
	needRoot(t)
	p := uniquePrefix()
	c := Default().Rename(func(s string) string { return p + strings.TrimPrefix(s, "usw") })
	l := upLab(t, c)
	var out bytes.Buffer
	if err := l.Demo(&out); err != nil {
		t.Errorf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if !strings.Contains(out.String(), "203.0.113.1:") {
		t.Errorf("the wan did not see the masqueraded address:\n%s", out.String())
	}
}
