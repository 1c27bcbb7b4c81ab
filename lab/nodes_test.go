package lab

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// k8sLab loads examples/labs/k8s-nodeport-hostnetwork.toml with unique
// namespace names (usw-k8s-X becomes PREFIX-X, so the host namespaces
// stay apart) and returns it with the rename.
func k8sLab(t *testing.T) (*Config, func(string) string) {
	t.Helper()
	return k8sLabFile(t, "k8s-nodeport-hostnetwork.toml")
}

// k8sLabFile is k8sLab for another lab file of examples/labs whose
// namespaces are named usw-k8s-X.
func k8sLabFile(t *testing.T, file string) (*Config, func(string) string) {
	t.Helper()
	c, err := Load(filepath.Join("..", "examples", "labs", file))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-k8s-") }
	return c.Rename(ren), ren
}

// TestK8sNodePortHostNetwork brings up the two-node lab of the NodePort +
// hostNetwork research note and checks its cases with real requests from
// the client, the pod and the nodes' host namespaces: who answered and
// which source it saw (the SNAT each path does or not), the UDP case
// that fails as it fails on the kernel and the conntrack entries that
// show why, the per-node control commands, and then the whole demo,
// whose expected failures must fail.
func TestK8sNodePortHostNetwork(t *testing.T) {
	needRoot(t)
	c, ren := k8sLab(t)
	l := upLab(t, c)
	cli, pod, aHost, bHost := ren("usw-k8s-client"), ren("usw-k8s-pod"), ren("usw-k8s-a-host"), ren("usw-k8s-b-host")
	const to = 3 * time.Second
	get := func(t *testing.T, from, url, servedBy, clientIP string) {
		t.Helper()
		r, err := l.HTTPGet(from, url, to)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, from, err)
		}
		if r.Status != 200 || r.ServedBy != servedBy || !strings.HasPrefix(r.ClientAddr, clientIP+":") {
			t.Errorf("GET %s from %s: %d served by %q seeing %q; want 200 by %q seeing %s", url, from, r.Status, r.ServedBy, r.ClientAddr, servedBy, clientIP)
		}
	}
	t.Run("tcp", func(t *testing.T) {
		get(t, cli, "http://192.168.0.2:30080/", bHost, "192.168.0.100") // E1: no SNAT
		get(t, cli, "http://192.168.0.2:30081/", pod, "10.244.1.1")      // E1c: MASQUERADE out of cni0
		get(t, cli, "http://192.168.0.1:30080/", bHost, "192.168.0.1")   // E2: a DNATs and masquerades
		get(t, cli, "http://192.168.0.1:30081/", pod, "192.168.0.1")
		get(t, pod, "http://192.168.0.2:30080/", bHost, "10.244.1.5")
		get(t, pod, "http://192.168.0.1:30080/", bHost, "192.168.0.1")
		get(t, aHost, "http://192.168.0.2:30080/", bHost, "192.168.0.1") // a's own socket: OUTPUT
		get(t, bHost, "http://192.168.0.2:30080/", bHost, "192.168.0.2") // b to itself through its engine
		get(t, bHost, "http://127.0.0.1:30080/", bHost, "192.168.0.2")   // E6: lo, DNAT, MASQUERADE
		get(t, aHost, "http://127.0.0.1:30080/", bHost, "192.168.0.1")   // E6 with route_localnet = 1
		get(t, bHost, "http://10.244.1.5/", pod, "10.244.1.1")           // the node to its pod: source from cni0's route
		get(t, aHost, "http://10.244.1.5/", pod, "192.168.0.1")          // routed via b
		get(t, cli, "http://192.168.0.2:8080/", bHost, "192.168.0.100")  // the host port itself
	})
	t.Run("udp", func(t *testing.T) {
		for _, x := range []struct{ from, to, seen string }{
			{cli, "192.168.0.2:30082", "192.168.0.100"},
			{cli, "192.168.0.1:30082", "192.168.0.1"},
			{pod, "192.168.0.1:30082", "192.168.0.1"},
		} {
			b, err := l.UDPExchange(x.from, x.to, []byte("hi"), to)
			if err != nil {
				t.Errorf("UDP %s from %s: %v", x.to, x.from, err)
				continue
			}
			if want := bHost + " " + x.seen + ":"; !strings.HasPrefix(string(b), want) {
				t.Errorf("UDP %s from %s: %q, want %q...", x.to, x.from, b, want)
			}
		}
		// E7: the pod to its own node's hostNetwork UDP NodePort: the
		// echo answers from cni0's 10.244.1.1, the route's source
		if b, err := l.UDPExchange(pod, "192.168.0.2:30082", []byte("hi"), time.Second); err == nil {
			t.Errorf("E7: the pod got an answer %q; the kernel's answer is lost", b)
		}
		r := l.Control(control.Request{Cmd: "conntrack", Args: []string{"-L", "-p", "udp"}, Node: "b"})
		if r.Code != 0 {
			t.Fatalf("conntrack -L --node b: %d %s", r.Code, r.Stderr)
		}
		unreplied := regexp.MustCompile(`(?m)^udp .* src=10\.244\.1\.5 dst=192\.168\.0\.2 sport=\d+ dport=30082 \[UNREPLIED\] src=192\.168\.0\.2 dst=10\.244\.1\.5 sport=8081 `)
		stray := regexp.MustCompile(`(?m)^udp .* src=10\.244\.1\.1 dst=10\.244\.1\.5 sport=8081 dport=\d+ \[UNREPLIED\]`)
		if !unreplied.MatchString(r.Stdout) || !stray.MatchString(r.Stdout) {
			t.Errorf("E7: node b's conntrack lacks the unreplied DNAT entry or the stray answer's:\n%s", r.Stdout)
		}
		// node a never saw that flow
		if r := l.Control(control.Request{Cmd: "conntrack", Args: []string{"-L", "-s", "10.244.1.1"}, Node: "a"}); strings.Contains(r.Stdout, "sport=8081") {
			t.Errorf("node a's conntrack has node b's flow:\n%s", r.Stdout)
		}
	})
	t.Run("control", func(t *testing.T) {
		for _, node := range []string{"a", "b"} {
			r := l.Control(control.Request{Cmd: "iptables-save", Counters: true, Table: "nat", Node: node})
			m := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB$`).FindStringSubmatch(r.Stdout)
			if r.Code != 0 || m == nil || m[1] == "0" {
				t.Errorf("iptables-save -c --node %s: no counted NodePort rule (%d %s):\n%s", node, r.Code, r.Stderr, r.Stdout)
			}
		}
		// the lab's own engine is the switch: no kube-proxy rules
		if r := l.Control(control.Request{Cmd: "iptables-save"}); strings.Contains(r.Stdout, "KUBE") {
			t.Errorf("the switch has node rules:\n%s", r.Stdout)
		}
		if r := l.Control(control.Request{Cmd: "ipvsadm", Args: []string{"-Ln"}, Node: "b"}); r.Code != 0 || !strings.Contains(r.Stdout, "IP Virtual Server") {
			t.Errorf("ipvsadm -Ln --node b: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		if r := l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "10.244.1.5"}, Node: "a"}); r.Code != 0 || !strings.Contains(r.Stdout, "via 192.168.0.2 dev eth0 src 192.168.0.1") {
			t.Errorf("ip route get --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		if r := l.Control(control.Request{Cmd: "metrics", Node: "b"}); !strings.Contains(r.Stdout, "uswitch_packets_total") {
			t.Errorf("metrics --node b: %q", r.Stdout)
		}
		r := l.Control(control.Request{Cmd: "iptables-save", Node: "c"})
		if r.Code != 2 || !strings.Contains(r.Stderr, "no node of that name") || !strings.Contains(r.Stderr, "[a b]") {
			t.Errorf("--node c: %d %q", r.Code, r.Stderr)
		}
		// a swap on one node leaves the other alone
		if r := l.Control(control.Request{Cmd: "iptables-restore", Node: "a", Input: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"}); r.Code != 0 {
			t.Fatalf("iptables-restore --node a: %d %s", r.Code, r.Stderr)
		}
		if _, err := l.HTTPGet(cli, "http://192.168.0.1:30080/", time.Second); err == nil {
			t.Errorf("node a forwards with FORWARD DROP")
		}
		get(t, cli, "http://192.168.0.2:30080/", bHost, "192.168.0.100")
		if r := l.Control(control.Request{Cmd: "iptables-restore", Node: "a", Input: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"}); r.Code != 0 {
			t.Fatalf("iptables-restore --node a: %d %s", r.Code, r.Stderr)
		}
		get(t, cli, "http://192.168.0.1:30080/", bHost, "192.168.0.1")
	})
	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		for _, want := range []string{"E3: the SYN-ACK", "failed, as expected", "E5 fix: pod -> b",
			"sysctl -w net.ipv4.conf.all.route_localnet=0 on node a (was 1)",
			"udp-echo server restarted on 192.168.0.2:8081",
			`UDP echo 192.168.0.2:30082 from ` + pod + `: "` + bHost + ` 10.244.1.5:`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("demo output lacks %q:\n%s", want, out.String())
			}
		}
	})
}

// TestNodeConfigErrors: the new keys' mistakes are refused with the line
// and the node's key.
func TestNodeConfigErrors(t *testing.T) {
	base := `name = "n"
[[bridge]]
name = "lan"
[[interface]]
name = "lc"
kind = "tap"
bridge = "lan"
netns = "c"
[[namespace]]
name = "c"
addresses = ["192.168.0.100/24"]
`
	node := func(extra string) string {
		return base + `[[node]]
name = "a"
[node.uswitch]
routes = ["10.1.0.0/16 via 192.168.0.9"]
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.1/24"]
` + extra
	}
	if _, err := Parse("ok.toml", []byte(node(""))); err != nil {
		t.Fatalf("a good node lab: %v", err)
	}
	for _, x := range []struct{ text, want string }{
		{node("[[node.interface]]\nname = \"eth1\"\nswitch = \"nope\"\n"), `ok.toml:22: node.interface.switch: "nope": the lab has no [[bridge]]`},
		{node("[node.uswitch.sysctl]\n\"net.ipv4.bogus\" = 1\n"), `ok.toml:21: node.uswitch.sysctl.net.ipv4.bogus: node "a": not a sysctl uswitch reads`},
		{node("[[node]]\nname = \"a\"\n"), `node.name: "a" appears twice`},
		{node("[[node.interface]]\nname = \"eth1\"\npeer = \"b:eth0\"\naddresses = [\"10.9.0.1/30\"]\n"), `node.interface.peer: "b:eth0": want NODE:INTERFACE`},
		{strings.Replace(node(""), `"10.1.0.0/16 via 192.168.0.9"`, `"10.1.0.0/16 via 172.16.0.9"`, 1), `ok.toml:15: node.uswitch.routes: node "a": route "10.1.0.0/16 via 172.16.0.9": gateway 172.16.0.9 is on no interface's subnet`},
		{strings.Replace(node(""), `name = "n"`, `name = "a-very-long-lab-name-of-the-cluster"`, 1), `its host namespace "a-very-long-lab-name-of-the-cluster-a-host" is not a valid namespace name`},
		{base + "[[interface]]\nname = \"x\"\nswitch = \"lan\"\n", `interface.name: "x": switch and peer are for a node's interfaces`},
		{node("[[demo]]\nnode = \"z\"\niptables_restore = \"*filter\\nCOMMIT\\n\"\n"), `demo.node: "z": no [[node]] of that name`},
		{node("[[demo]]\nnode = \"a\"\niptables_restore = \"*filter\\n-A NOPE -j ACCEPT\\nCOMMIT\\n\"\n"), `demo.iptables_restore`},
		{strings.Replace(base, "name = \"c\"\n", "name = \"c\"\nserver = [{ kind = \"http\", port = 80, reply_src = \"route\" }]\n", 1), `only a udp-echo server chooses its reply's source`},
		{node("[[node.dummy]]\nname = \"kube-ipvs0\"\n"), `node.dummy.name: node "a": "kube-ipvs0": a dummy device is there for its addresses`},
		{node("[[node.dummy]]\nname = \"eth0\"\naddresses = [\"10.96.0.1/32\"]\n"), `"eth0" is also an interface's or bridge's name`},
		{node("[[demo]]\nnode = \"a\"\nsysctl = { \"net.ipv4.tcp_syncookies\" = 1 }\n"), `demo.sysctl: "net.ipv4.tcp_syncookies": a demo step can change`},
		{node("[[demo]]\nnode = \"a\"\nsysctl = { \"net.ipv4.ip_forward\" = 1.5 }\n"), `want a number or a boolean`},
		{node("[[demo]]\nserver = { kind = \"udp-echo\", port = 53 }\n"), `demo.server: "udp-echo": a server step names the node`},
		{node("[[demo]]\nnode = \"a\"\nserver = { kind = \"udp-echo\", port = 53 }\n"), `node "a" has no udp-echo server on port 53 to replace`},
		{node("[[demo]]\nfrom = \"c\"\nping = \"192.168.0.1\"\ntimeout = \"forever\"\n"), `timeout "forever": want a duration`},
	} {
		_, err := Parse("ok.toml", []byte(x.text))
		if err == nil || !strings.Contains(err.Error(), x.want) {
			t.Errorf("got %v, want %q in:\n%s", err, x.want, x.text)
		}
	}
}

// TestNodePeerLink: two nodes joined by a routed link (peer = ...) and
// no switch: a's host reaches b's host server over it, from a's address
// on the link, and b's host answers a ping from a's host.
func TestNodePeerLink(t *testing.T) {
	needRoot(t)
	p := uniquePrefix()
	text := strings.ReplaceAll(`name = "P"
[[namespace]]
name = "P-x"
[[node]]
name = "a"
[[node.interface]]
name = "p0"
peer = "b:p0"
addresses = ["10.0.0.1/30"]
[[node]]
name = "b"
server = [{ kind = "http", port = 8080 }, { kind = "udp-echo", port = 7 }]
[[node.interface]]
name = "p0"
peer = "a:p0"
addresses = ["10.0.0.2/30"]
`, "P", p)
	c, err := Parse("peer.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	l := upLab(t, c)
	aHost, bHost := p+"-a-host", p+"-b-host"
	r, err := l.HTTPGet(aHost, "http://10.0.0.2:8080/", 3*time.Second)
	if err != nil || r.ServedBy != bHost || !strings.HasPrefix(r.ClientAddr, "10.0.0.1:") {
		t.Fatalf("GET over the peer link: %+v %v", r, err)
	}
	if b, err := l.UDPExchange(aHost, "10.0.0.2:7", []byte("x"), 3*time.Second); err != nil || !strings.HasPrefix(string(b), bHost+" 10.0.0.1:") {
		t.Errorf("UDP over the peer link: %q %v", b, err)
	}
	if _, err := l.Ping(aHost, netip.MustParseAddr("10.0.0.2"), 3*time.Second); err != nil {
		t.Errorf("ping b from a: %v", err)
	}
}
