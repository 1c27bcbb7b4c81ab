package lab

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// A routed client pings an address on a bridge's subnet that nobody
// holds: the router's three ARP requests go unanswered and the ping is
// answered "Destination Host Unreachable" from the router's address on
// the client's side, as a kernel router with a bridge answers it (the
// same topology is built from kernel namespaces first).
const neighFailLab = `
name = "neighfail"
[uswitch]
workers = 1
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[bridge]]
name = "br0"
addresses = ["10.21.0.1/24"]
[[interface]]
name = "tb1"
netns = "P-a"
kind = "tap"
bridge = "br0"
[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.31.0.1/24"]
[[namespace]]
name = "P-a"
addresses = ["10.21.0.2/24"]
routes = ["default via 10.21.0.1"]
[[namespace]]
name = "P-c"
addresses = ["10.31.0.2/24"]
routes = ["default via 10.31.0.1"]
`

func TestBridgeNeighbourFailsLive(t *testing.T) {
	needRoot(t)
	testtools.Need(t, "ping", "ip")
	unreachable := regexp.MustCompile(`From (\S+) icmp_seq=1 Destination Host Unreachable`)
	ping := func(ns, dst string) string {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "8", dst).CombinedOutput()
		return string(out)
	}

	// the kernel: a router namespace with br0 (one veth port to a host
	// namespace) and a veth to the client
	p := labtest.Name("nf")
	r, h, c := p+"r", p+"h", p+"c"
	for _, ns := range []string{r, h, c} {
		labtest.Netns(t, ns)
	}
	labtest.Run(t, "ip", "link", "add", "hp", "netns", r, "type", "veth", "peer", "name", "eth0", "netns", h)
	labtest.Run(t, "ip", "link", "add", "cp", "netns", r, "type", "veth", "peer", "name", "eth0", "netns", c)
	for _, cmd := range [][]string{
		{r, "ip", "link", "add", "br0", "type", "bridge"},
		{r, "ip", "link", "set", "hp", "master", "br0", "up"},
		{r, "ip", "addr", "add", "10.21.0.1/24", "dev", "br0"},
		{r, "ip", "link", "set", "br0", "up"},
		{r, "ip", "addr", "add", "10.31.0.1/24", "dev", "cp"},
		{r, "ip", "link", "set", "cp", "up"},
		{r, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{h, "ip", "addr", "add", "10.21.0.2/24", "dev", "eth0"},
		{h, "ip", "link", "set", "eth0", "up"},
		{h, "ip", "route", "add", "default", "via", "10.21.0.1"},
		{c, "ip", "addr", "add", "10.31.0.2/24", "dev", "eth0"},
		{c, "ip", "link", "set", "eth0", "up"},
		{c, "ip", "route", "add", "default", "via", "10.31.0.1"},
	} {
		labtest.In(t, cmd[0], cmd[1:]...)
	}
	kern := ping(c, "10.21.0.99")
	km := unreachable.FindStringSubmatch(kern)
	if km == nil {
		t.Fatalf("the kernel router: no host unreachable:\n%s", kern)
	}
	if out := ping(c, "10.21.0.2"); !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("the kernel router: the host behind the bridge does not answer:\n%s", out)
	}

	cfg, lp := prefixedConfig(t, "neighfail.toml", neighFailLab)
	l := upLab(t, cfg)
	client := lp + "-c"
	if out := ping(client, "10.21.0.2"); !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("uswitch: the host behind the bridge does not answer:\n%s", out)
	}
	ours := ping(client, "10.21.0.99")
	um := unreachable.FindStringSubmatch(ours)
	if um == nil || um[1] != km[1] {
		t.Fatalf("uswitch: want %q as the kernel router answers, got:\n%s", km[0], ours)
	}
	var state string
	for _, n := range l.Engine().BridgeNeighbours("br0") {
		if n.Addr == 0x0a150063 {
			state = n.State
		}
	}
	if state != "FAILED" {
		t.Errorf("10.21.0.99 in br0's neighbour table: %q, want FAILED", state)
	}
	// `uswitch ip neigh show dev br0` lists it as ip lists the kernel
	// router's
	kn := labtest.In(t, r, "ip", "neigh", "show", "dev", "br0")
	res := l.Control(control.Request{Cmd: "ip", Args: []string{"neigh", "show", "dev", "br0"}})
	if res.Code != 0 || !strings.Contains(res.Stdout, "10.21.0.99 FAILED \n") || !regexp.MustCompile(`10\.21\.0\.2 lladdr [0-9a-f:]{17} (REACHABLE|STALE|DELAY) \n`).MatchString(res.Stdout) {
		t.Errorf("uswitch ip neigh show dev br0 (exit %d):\n%s%s\nthe kernel router's:\n%s", res.Code, res.Stdout, res.Stderr, kn)
	}
	if !strings.Contains(kn, "10.21.0.99 FAILED \n") {
		t.Errorf("the kernel router's table lacks the failed entry:\n%s", kn)
	}
}

// The same on a routed TAP port (no bridge): the router's ARP for the
// missing host fails and the ping is answered "Destination Host
// Unreachable" from its client-side address, as TestBridgeNeighbourFails-
// Live shows the kernel answering.
func TestTAPNeighbourFailsLive(t *testing.T) {
	needRoot(t)
	testtools.Need(t, "ping")
	cfg, lp := prefixedConfig(t, "tapneighfail.toml", `
name = "tapneighfail"
[uswitch]
workers = 1
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "tt"
netns = "P-a"
kind = "tap"
addresses = ["10.22.0.1/24"]
[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.32.0.1/24"]
[[namespace]]
name = "P-a"
addresses = ["10.22.0.2/24"]
routes = ["default via 10.22.0.1"]
[[namespace]]
name = "P-c"
addresses = ["10.32.0.2/24"]
routes = ["default via 10.32.0.1"]
`)
	l := upLab(t, cfg)
	client := lp + "-c"
	out, _ := exec.Command("ip", "netns", "exec", client, "ping", "-n", "-c", "1", "-W", "8", "10.22.0.2").CombinedOutput()
	if !strings.Contains(string(out), " 0% packet loss") {
		t.Fatalf("the host on the TAP port does not answer:\n%s", out)
	}
	out, _ = exec.Command("ip", "netns", "exec", client, "ping", "-n", "-c", "1", "-W", "8", "10.22.0.99").CombinedOutput()
	if !strings.Contains(string(out), "From 10.32.0.1 icmp_seq=1 Destination Host Unreachable") {
		t.Fatalf("want host unreachable from 10.32.0.1, got:\n%s", out)
	}
	if s := l.Stats(); s.Unresolved == 0 {
		t.Errorf("no unresolved packet counted: %+v", s)
	}
	r := l.Control(control.Request{Cmd: "ip", Args: []string{"-j", "neigh", "show", "dev", "tt"}})
	if r.Code != 0 || !regexp.MustCompile(`^\[\{"dst":"10\.22\.0\.2","lladdr":"[0-9a-f:]{17}","state":\["REACHABLE"\]\},\{"dst":"10\.22\.0\.99","state":\["FAILED"\]\}\]\n$`).MatchString(r.Stdout) {
		t.Errorf("uswitch ip -j neigh show dev tt (exit %d):\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
