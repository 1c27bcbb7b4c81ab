package lab

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// TestK8sCalicoVXLAN brings up examples/labs/k8s-calico-vxlan.toml (two
// nodes whose vxlan.calico devices uswitch plays) and checks its cases
// by real requests: who answered and the source it saw (pod to pod
// without SNAT, pod to outside masqueraded to the node, a's host bound
// to eth0's address masqueraded to vxlan.calico's by felix's rule, the
// ClusterIP case), the conntrack entries that show it (and none for the
// untracked udp 4789), the tunnel counters, then the demo with its
// expected failures.
func TestK8sCalicoVXLAN(t *testing.T) {
	needRoot(t)
	c, err := Load(filepath.Join("..", "examples", "labs", "k8s-calico-vxlan.toml"))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-cal-") }
	c = c.Rename(ren)
	l := upLab(t, c)
	pa, pb, ext, aHost, bHost := ren("usw-cal-pa"), ren("usw-cal-pb"), ren("usw-cal-ext"), ren("usw-cal-a-host"), ren("usw-cal-b-host")
	const to = 3 * time.Second
	get := func(t *testing.T, from, src, url, servedBy, clientIP string) {
		t.Helper()
		var a netip.Addr
		if src != "" {
			a = netip.MustParseAddr(src)
		}
		r, err := l.HTTPGetFrom(from, a, url, to)
		if err != nil {
			t.Fatalf("GET %s from %s (src %q): %v", url, from, src, err)
		}
		if r.Status != 200 || r.ServedBy != servedBy || !strings.HasPrefix(r.ClientAddr, clientIP+":") {
			t.Errorf("GET %s from %s (src %q): %d served by %q seeing %q; want 200 by %q seeing %s", url, from, src, r.Status, r.ServedBy, r.ClientAddr, servedBy, clientIP)
		}
	}
	get(t, pa, "", "http://10.244.1.5/", pb, "10.244.0.5")               // pod to pod: no SNAT
	get(t, pb, "", "http://192.168.0.100/", ext, "192.168.0.2")          // pod to outside: cali-nat-outgoing
	get(t, aHost, "", "http://10.244.1.5/", pb, "10.244.0.0")            // unbound: vxlan.calico's source
	get(t, aHost, "192.168.0.1", "http://10.244.1.5/", pb, "10.244.0.0") // bound: felix's MASQUERADE
	get(t, aHost, "", "http://10.96.0.10/", pb, "10.244.0.0")            // ClusterIP: DNAT, reroute, MASQUERADE
	get(t, bHost, "", "http://10.96.0.10/", pb, "192.168.0.2")           // the local endpoint: no tunnel
	if _, err := l.Ping(pb, netip.MustParseAddr("10.244.0.5"), to); err != nil {
		t.Errorf("ping pod b -> pod a: %v", err)
	}

	r := l.Control(control.Request{Cmd: "conntrack", Args: []string{"-L"}, Node: "a"})
	if r.Code != 0 {
		t.Fatalf("conntrack -L --node a: %d %s", r.Code, r.Stderr)
	}
	masq := regexp.MustCompile(`(?m)^tcp .* src=192\.168\.0\.1 dst=10\.244\.1\.5 sport=\d+ dport=80 src=10\.244\.1\.5 dst=10\.244\.0\.0 sport=80 `)
	if !masq.MatchString(r.Stdout) {
		t.Errorf("node a has no conntrack entry of the masqueraded host connection:\n%s", r.Stdout)
	}
	if strings.Contains(r.Stdout, "dport=4789") {
		t.Errorf("node a tracks udp 4789 although raw cali-OUTPUT/cali-PREROUTING NOTRACK it:\n%s", r.Stdout)
	}
	for _, n := range []string{"a", "b"} {
		_, dp, err := l.Node(n)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := dp.Tunnel("vxlan.calico")
		if !ok || s.Encapsulated == 0 || s.Decapsulated == 0 || s.RxDropped != 0 || s.TxDropped != 0 {
			t.Errorf("node %s's vxlan.calico: %+v (%v)", n, s, ok)
		}
	}

	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		for _, want := range []string{"failed, as expected", "it saw the client as 10.244.0.0:", "it saw the client as 10.244.0.5:", "masqueraded, answered"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("demo output lacks %q:\n%s", want, out.String())
			}
		}
		if n := strings.Count(out.String(), "failed, as expected"); n != 3 {
			t.Errorf("%d expected failures, want 3:\n%s", n, out.String())
		}
	})
}

// TestTunnelConfigErrors: a tunnel interface's mistakes are refused with
// the key and line.
func TestTunnelConfigErrors(t *testing.T) {
	base := `name = "n"
[[namespace]]
name = "c"
[[node]]
name = "a"
[[node.interface]]
name = "eth0"
peer = "b:eth0"
addresses = ["192.168.0.1/24"]
[[node]]
name = "b"
[[node.interface]]
name = "eth0"
peer = "a:eth0"
addresses = ["192.168.0.2/24"]
[[node.interface]]
name = "t0"
`
	for _, c := range []struct{ extra, key, msg string }{
		{"kind = \"vxlan\"\n", "node.interface.name", "needs vni"},
		{"kind = \"vxlan\"\nvni = 16777216\n", "node.interface.vni", "want 0-16777215"},
		{"kind = \"vxlan\"\nvni = 1\nremote = \"1.2.3.4\"\n", "node.interface.remote", "has no remote"},
		{"kind = \"ipip\"\nfdb = [\"66:00:00:00:00:01 dst 1.2.3.4\"]\n", "node.interface.fdb", "has no fdb"},
		{"kind = \"vxlan\"\nvni = 1\nfdb = [\"66:00:00:00:00:01 to 1.2.3.4\"]\n", "node.interface.fdb", "unknown word"},
		{"kind = \"vxlan\"\nvni = 1\nneigh = [\"10.0.0.1 66:00:00:00:00:01\"]\n", "node.interface.neigh", "want IP lladdr MAC"},
		{"kind = \"vxlan\"\nvni = 1\nsrcport = [2000, 1000]\n", "node.interface.srcport", "MIN <= MAX"},
		{"kind = \"vxlan\"\nvni = 1\nnetns = \"c\"\n", "node.interface.netns", "in no namespace"},
		{"kind = \"vxlan\"\nvni = 1\nttl = \"always\"\n", "node.interface.ttl", "inherit"},
		{"kind = \"tun\"\nnetns = \"c\"\nvni = 1\n", "node.interface.vni", "key of a kind"},
	} {
		_, err := Parse("t.toml", []byte(base+c.extra))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != c.key || ce.Line == 0 || !strings.Contains(ce.Err.Error(), c.msg) {
			t.Errorf("%q: %v (key %q), want key %q containing %q", c.extra, err, keyOf(ce), c.key, c.msg)
		}
	}
	// on a lab's own engine
	_, err := Parse("t.toml", []byte("[[namespace]]\nname = \"c\"\n[[interface]]\nname = \"v\"\nkind = \"vxlan\"\nvni = 1\n"))
	if err == nil || !strings.Contains(err.Error(), "a node's") {
		t.Errorf("vxlan on the lab's engine: %v", err)
	}
}

func keyOf(ce *ConfigError) string {
	if ce == nil {
		return ""
	}
	return ce.Key
}
