package lab

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
)

// TestBridgeLab: namespaces on TAP ports of a uswitch bridge reach each
// other (ARP and IPv4 bridged, br_netfilter's FORWARD with physdev),
// the bridge's own address, the wan through a MASQUERADE, and a
// service DNATed to a host on the same bridge (bridged DNAT).
func TestBridgeLab(t *testing.T) {
	needRoot(t)
	src, err := os.ReadFile("testdata/bridge.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, p := prefixedConfig(t, "bridge.toml", string(src))
	l := upLab(t, c)
	a, b, wan := p+"-a", p+"-b", p+"-wan"
	const to = 2 * time.Second
	t.Run("ping", func(t *testing.T) {
		for _, c := range []struct{ ns, dst string }{{a, "10.20.0.3"}, {b, "10.20.0.4"}, {a, "10.20.0.1"}, {a, "203.0.113.2"}} {
			if _, err := l.Ping(c.ns, netip.MustParseAddr(c.dst), to); err != nil {
				t.Errorf("ping %s from %s: %v", c.dst, c.ns, err)
			}
		}
	})
	t.Run("ping -s 3000 across the bridge", func(t *testing.T) {
		testtools.Need(t, "ping")
		out, err := exec.Command("ip", "netns", "exec", a, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000", "10.20.0.3").CombinedOutput()
		if err != nil || !strings.Contains(string(out), " 0% packet loss") {
			t.Errorf("ping -s 3000: %v\n%s", err, out)
		}
	})
	t.Run("udp to the wan, masqueraded", func(t *testing.T) {
		r, err := l.UDPExchange(a, "203.0.113.2:7", []byte("hello"), to)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(r), wan+" 203.0.113.1:") {
			t.Errorf("answer %q", r)
		}
	})
	t.Run("bridged DNAT", func(t *testing.T) {
		r, err := l.HTTPGet(a, "http://10.96.0.10/", to)
		if err != nil {
			t.Fatal(err)
		}
		if r.ServedBy != b || !strings.HasPrefix(r.ClientAddr, "10.20.0.2:") {
			t.Errorf("served by %q, client seen as %q", r.ServedBy, r.ClientAddr)
		}
	})
	t.Run("ebtables", func(t *testing.T) {
		// FORWARD drops UDP to 10.20.0.4 at the bridge level
		if _, err := l.UDPExchange(a, "10.20.0.4:7", []byte("x"), 300*time.Millisecond); err == nil {
			t.Errorf("UDP to 10.20.0.4 crossed the bridge despite ebtables")
		}
		if _, err := l.UDPExchange(a, "10.20.0.3:7", []byte("x"), to); err != nil {
			t.Errorf("UDP to 10.20.0.3: %v", err)
		}
		rs := l.Engine().Config().Ebtables
		if rs == nil {
			t.Fatal("no ebtables rule set in the engine")
		}
		var b strings.Builder
		rs.Save(&b, ebtables.SaveOptions{Counters: true})
		if !regexp.MustCompile(`\[[1-9]\d*:\d+\] -A FORWARD -p IPv4 --ip-dst 10\.20\.0\.4 --ip-proto udp -j DROP`).MatchString(b.String()) {
			t.Errorf("the DROP rule's counters did not count the datagram:\n%s", b.String())
		}
	})
	t.Run("counters of replayed frames", func(t *testing.T) {
		// one UDP flow across the bridge, answered datagram by
		// datagram: after the first exchange its frames replay the
		// bridged flow cache, whose counters the workers gather and
		// add at the end of each batch (datapath.Worker.FlushHits),
		// so every frame shows once its answer is back
		const n = 50
		est := func() uint64 {
			var b strings.Builder
			if err := l.Engine().Config().Rules.Save(&b, iptables.SaveOptions{Counters: true}); err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`\[(\d+):\d+\] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`).FindStringSubmatch(b.String())
			if m == nil {
				t.Fatalf("no ESTABLISHED rule in\n%s", b.String())
			}
			v, _ := strconv.ParseUint(m[1], 10, 64)
			return v
		}
		before := est()
		c, err := l.Dial(a, "udp", "10.20.0.3:7", to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 64)
		for i := range n {
			c.SetDeadline(time.Now().Add(to))
			if _, err := c.Write([]byte("datagram " + strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		// all but the first request are ESTABLISHED
		if d := est() - before; d < 2*n-1 {
			t.Errorf("the ESTABLISHED rule counted %d of the flow's %d established frames", d, 2*n-1)
		}
	})
	fdb := l.Engine().Bridge("br0")
	if fdb == nil {
		t.Fatal("no bridge br0 in the engine")
	}
	if n := len(fdb.ShowEntries(time.Now().UnixNano(), false)); n == 0 {
		t.Errorf("empty forwarding database")
	}
	t.Logf("datapath: %v", l.Stats())
}
