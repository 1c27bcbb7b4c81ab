package lab

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// snapLab loads a lab file of examples/labs whose namespaces are named
// usw-snap-X with unique names.
func snapLab(t *testing.T, file string) (*Config, func(string) string) {
	t.Helper()
	c, err := Load(filepath.Join("..", "examples", "labs", file))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-snap-") }
	return c.Rename(ren), ren
}

// saveNorm is an iptables-save text without its comments and counters,
// its tables in name order (iptables-save prints them in the kernel's
// order of their making).
func saveNorm(s string) string {
	cnt := regexp.MustCompile(`\[\d+:\d+\]`)
	var tables []string
	var cur []string
	for _, ln := range strings.Split(s, "\n") {
		if strings.HasPrefix(ln, "#") || strings.TrimSpace(ln) == "" {
			continue
		}
		cur = append(cur, cnt.ReplaceAllString(ln, "[0:0]"))
		if ln == "COMMIT" {
			tables, cur = append(tables, strings.Join(cur, "\n")), nil
		}
	}
	sort.Strings(tables)
	return strings.Join(append(tables, cur...), "\n")
}

// TestSnapshotNodeKubeIPVS runs examples/kube-ipvs as a lab node
// (examples/labs/snapshot-kube-ipvs.toml): the pods made for the IPVS
// real servers behind cni0, the NodePort and the ClusterIP of the
// snapshot's IPVS table reached from the namespace behind eth0 (and
// from a pod), and the control commands' --node a showing the
// snapshot's rules, virtual servers and routes.
func TestSnapshotNodeKubeIPVS(t *testing.T) {
	needRoot(t)
	c, ren := snapLab(t, "snapshot-kube-ipvs.toml")
	var got []string
	for _, p := range c.Nodes[0].SnapshotPods {
		got = append(got, p.Addr.String()+"@"+p.Bridge)
	}
	if want := "10.244.0.2@cni0 10.244.0.3@cni0 10.244.0.5@cni0 10.244.0.6@cni0"; strings.Join(got, " ") != want {
		t.Fatalf("pods %v, want %s", got, want)
	}
	l := upLab(t, c)
	cli, p1, p3, p4 := ren("usw-snap-a-eth0"), ren("usw-snap-a-p1"), ren("usw-snap-a-p3"), ren("usw-snap-a-p4")
	t.Run("services", func(t *testing.T) {
		for _, x := range []struct{ from, url, seen string }{
			{cli, "http://192.168.122.10:30080/", "10.244.0.1"}, // NodePort: KUBE-NODE-PORT marks, masqueraded out of cni0
			{cli, "http://10.96.100.50/", "10.244.0.1"},         // ClusterIP from outside the pod CIDR: masqueraded
			{p1, "http://10.96.100.50/", "10.244.0.2"},          // from a pod: not
		} {
			served := map[string]bool{}
			for i := 0; i < 4; i++ {
				r, err := l.HTTPGet(x.from, x.url, 3*time.Second)
				if err != nil {
					t.Fatalf("GET %s from %s: %v", x.url, x.from, err)
				}
				if r.Status != 200 || (r.ServedBy != p3 && r.ServedBy != p4) || !strings.HasPrefix(r.ClientAddr, x.seen+":") {
					t.Errorf("GET %s from %s: %d by %q seeing %q; want 200 by %s or %s seeing %s", x.url, x.from, r.Status, r.ServedBy, r.ClientAddr, p3, p4, x.seen)
				}
				served[r.ServedBy] = true
			}
			if len(served) != 2 {
				t.Errorf("GET %s from %s: served by %v; rr over both real servers wanted", x.url, x.from, served)
			}
		}
	})
	t.Run("control", func(t *testing.T) {
		r := l.Control(control.Request{Cmd: "iptables-save", Node: "a"})
		snap, err := os.ReadFile(filepath.Join("..", "examples", "kube-ipvs", "iptables-save"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 || saveNorm(r.Stdout) != saveNorm(string(snap)) {
			t.Errorf("iptables-save --node a (%d %s) differs from the snapshot's:\n%s\n--- snapshot:\n%s", r.Code, r.Stderr, saveNorm(r.Stdout), saveNorm(string(snap)))
		}
		r = l.Control(control.Request{Cmd: "ipvsadm", Args: []string{"-Ln"}, Node: "a"})
		for _, want := range []string{"TCP  192.168.122.10:30080 rr", "TCP  10.96.100.50:80 rr", "UDP  10.96.0.10:53 rr", "-> 10.244.0.5:80"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("ipvsadm -Ln --node a lacks %q:\n%s", want, r.Stdout)
			}
		}
		r = l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "10.96.100.50"}, Node: "a"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "local 10.96.100.50 dev lo") {
			t.Errorf("ip route get 10.96.100.50 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		r = l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "8.8.8.8"}, Node: "a"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "via 192.168.122.1 dev eth0") {
			t.Errorf("ip route get 8.8.8.8 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})
	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		t.Log(out.String())
	})
}

// copySnapshot copies the snapshot folder src into a new temporary
// folder and writes the files of over there (replacing or adding).
func copySnapshot(t *testing.T, src string, over map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range over {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bridgeSnapRules are examples/bridge's rules with Docker's nat rules
// for a container publishing -p 8080:80 (10.1.0.1).
const bridgeSnapRules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [2:80]
-A PREROUTING -p udp -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.1.0.0/24 ! -o br0 -j MASQUERADE
-A DOCKER -i br0 -j RETURN
-A DOCKER ! -i br0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.1:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [1:40]
-A FORWARD -m physdev --physdev-is-bridged -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
COMMIT
`

// TestSnapshotNodeBridge runs examples/bridge (br0 10.1.0.254/24,
// FORWARD DROP but for bridged traffic, br_netfilter on), with a
// neighbour behind br0 and Docker's published port added, as a lab
// node: pods for the neighbour (ip-neigh.json) and the DNAT target
// (iptables-save), pod to pod across the bridge, the published port
// from the node's own host namespace (OUTPUT's DOCKER jump), not from a
// pod (DOCKER -i br0 RETURN: refused), and iptables-save --node.
func TestSnapshotNodeBridge(t *testing.T) {
	needRoot(t)
	snap := copySnapshot(t, filepath.Join("..", "examples", "bridge"), map[string]string{
		"ip-neigh.json": `[{"dst":"10.1.0.2","dev":"br0","lladdr":"f6:83:3f:cd:a7:84","state":["REACHABLE"]},` +
			`{"dst":"10.1.0.9","dev":"br0","state":["FAILED"]}]`,
		"iptables-save": bridgeSnapRules,
	})
	src := `name = "usw-snap"
[[node]]
name = "b"
snapshot = "` + snap + `"
pods = "auto"
pod_server = [{ kind = "http", port = 80 }, { kind = "tcp-echo", port = 7 }]
`
	c0, err := Parse("bridge-snap.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-snap-") }
	c := c0.Rename(ren)
	var got []string
	for _, p := range c.Nodes[0].SnapshotPods {
		got = append(got, p.Addr.String()+"@"+p.Bridge)
	}
	if want := "10.1.0.1@br0 10.1.0.2@br0"; strings.Join(got, " ") != want {
		t.Fatalf("pods %v, want %s (not the FAILED neighbour)", got, want)
	}
	l := upLab(t, c)
	p1, p2, hostNS := ren("usw-snap-b-p1"), ren("usw-snap-b-p2"), c.Nodes[0].HostNetns
	get := func(from, url, servedBy, seen string) {
		t.Helper()
		r, err := l.HTTPGet(from, url, 3*time.Second)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, from, err)
		}
		if r.Status != 200 || r.ServedBy != servedBy || !strings.HasPrefix(r.ClientAddr, seen+":") {
			t.Errorf("GET %s from %s: %d by %q seeing %q; want 200 by %s seeing %s", url, from, r.Status, r.ServedBy, r.ClientAddr, servedBy, seen)
		}
	}
	get(p2, "http://10.1.0.1/", p1, "10.1.0.2")              // bridged: FORWARD's physdev-is-bridged accept
	get(hostNS, "http://10.1.0.254:8080/", p1, "10.1.0.254") // the published port from the host (OUTPUT -> DOCKER)
	get(hostNS, "http://10.1.0.2/", p2, "10.1.0.254")
	if _, err := l.TCPHello(p2, "10.1.0.254:8080", time.Second); err == nil {
		t.Errorf("tcp 10.1.0.254:8080 from a pod: connected; DOCKER -i br0 RETURN leaves it undNATed and the host has no listener")
	}
	r := l.Control(control.Request{Cmd: "iptables-save", Node: "b"})
	if r.Code != 0 || saveNorm(r.Stdout) != saveNorm(bridgeSnapRules) {
		t.Errorf("iptables-save --node b (%d %s) differs from the snapshot's:\n%s", r.Code, r.Stderr, r.Stdout)
	}
	r = l.Control(control.Request{Cmd: "ebtables-save", Node: "b"})
	if r.Code != 0 {
		t.Errorf("ebtables-save --node b: %d %s", r.Code, r.Stderr)
	}
}

// appendJSON is the JSON array text with the objects added.
func appendJSON(t *testing.T, file string, add ...map[string]any) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var arr []any
	if err := json.Unmarshal(b, &arr); err != nil {
		t.Fatal(err)
	}
	for _, a := range add {
		arr = append(arr, a)
	}
	out, err := json.Marshal(arr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSnapshotNodeAttachVeth runs examples/kube-ipvs with a Calico-style
// pod added (a cali device and its /32 route) and eth0 attached to a lab
// switch: a client on the switch reaches the NodePort; the cali pod (on
// a TUN called as its device) reaches the ClusterIP unmasqueraded; the
// client's own connection to the pod dies in the snapshot's FORWARD DROP
// (only KUBE-FORWARD's marked and established traffic passes).
func TestSnapshotNodeAttachVeth(t *testing.T) {
	needRoot(t)
	src := filepath.Join("..", "examples", "kube-ipvs")
	snap := copySnapshot(t, src, map[string]string{
		"ip-link.json": appendJSON(t, filepath.Join(src, "ip-link.json"), map[string]any{"ifindex": 20, "ifname": "cali1a2b",
			"flags": []string{"BROADCAST", "MULTICAST", "UP", "LOWER_UP"}, "mtu": 1500, "link_type": "ether", "address": "ee:ee:ee:ee:ee:ee"}),
		"ip-route.json": appendJSON(t, filepath.Join(src, "ip-route.json"), map[string]any{"dst": "10.244.7.7", "dev": "cali1a2b", "scope": "link", "flags": []string{}}),
	})
	text := `name = "usw-snap"
[[bridge]]
name = "lan"
[[interface]]
name = "lan-client"
kind = "tap"
bridge = "lan"
netns = "usw-snap-client"
[[namespace]]
name = "usw-snap-client"
addresses = ["192.168.122.50/24"]
routes = ["10.244.0.0/16 via 192.168.122.10", "10.96.0.0/12 via 192.168.122.10"]
[[node]]
name = "a"
snapshot = "` + snap + `"
pods = "auto"
pod_server = { kind = "http", port = 80 }
[node.attach]
eth0 = "lan"
`
	c0, err := Parse("attach-snap.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-snap-") }
	c := c0.Rename(ren)
	pods := c.Nodes[0].SnapshotPods
	if len(pods) != 5 || pods[4].Addr.String() != "10.244.7.7" || pods[4].Dev != "cali1a2b" || pods[4].Bridge != "" {
		t.Fatalf("pods %+v: want the four real servers on cni0 and 10.244.7.7 on cali1a2b", pods)
	}
	for _, n := range c.Namespaces {
		if strings.HasSuffix(n.Name, "-a-eth0") {
			t.Fatalf("eth0 is attached to lan, yet the lab makes a namespace %s behind it", n.Name)
		}
	}
	l := upLab(t, c)
	cli, cali, p3, p4 := ren("usw-snap-client"), ren("usw-snap-a-p5"), ren("usw-snap-a-p3"), ren("usw-snap-a-p4")
	get := func(from, url, seen string) {
		t.Helper()
		r, err := l.HTTPGet(from, url, 3*time.Second)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, from, err)
		}
		if r.Status != 200 || (r.ServedBy != p3 && r.ServedBy != p4) || !strings.HasPrefix(r.ClientAddr, seen+":") {
			t.Errorf("GET %s from %s: %d by %q seeing %q; want 200 by %s or %s seeing %s", url, from, r.Status, r.ServedBy, r.ClientAddr, p3, p4, seen)
		}
	}
	get(cli, "http://192.168.122.10:30080/", "10.244.0.1")
	get(cali, "http://10.96.100.50/", "10.244.7.7")
	if r, err := l.HTTPGet(cli, "http://10.244.7.7/", time.Second); err == nil {
		t.Errorf("GET http://10.244.7.7/ from the client: %d by %q; the snapshot's FORWARD DROP should drop it", r.Status, r.ServedBy)
	}
	r := l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "10.244.7.7"}, Node: "a"})
	if r.Code != 0 || !strings.Contains(r.Stdout, "dev cali1a2b") {
		t.Errorf("ip route get 10.244.7.7 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestSnapshotNodeConfigErrors: a snapshot node's bad keys and bad
// snapshots are refused with the lab file's line of the key and the
// snapshot file (and its line) at fault.
func TestSnapshotNodeConfigErrors(t *testing.T) {
	src := filepath.Join("..", "examples", "kube-ipvs")
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	lab := func(snap, extra string) string {
		return "name = \"s\"\n[[node]]\nname = \"a\"\nsnapshot = \"" + snap + "\"\npods = \"auto\"\n" + extra
	}
	c, err := Parse("ok.toml", []byte(lab(abs, "")))
	if err != nil {
		t.Fatalf("the kube-ipvs snapshot: %v", err)
	}
	if n := c.Nodes[0]; len(n.SnapshotPods) != 4 || len(n.Dummies) != 1 || len(n.Bridges) != 1 || n.Uswitch.IPVS == "" || n.Uswitch.IPSet == "" {
		t.Errorf("kube-ipvs node: pods %v, dummies %v, bridges %v, ipvs %d bytes, ipset %d bytes", n.SnapshotPods, n.Dummies, n.Bridges, len(n.Uswitch.IPVS), len(n.Uswitch.IPSet))
	}
	badRules := copySnapshot(t, src, map[string]string{"iptables-save": "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m bogus -j ACCEPT\nCOMMIT\n"})
	badRoute := copySnapshot(t, src, map[string]string{"ip-route.json": appendJSON(t, filepath.Join(src, "ip-route.json"),
		map[string]any{"dst": "10.50.0.0/16", "dev": "eth0-peer", "scope": "link", "flags": []string{}})})
	tunnel := copySnapshot(t, src, map[string]string{
		"ip-link.json": appendJSON(t, filepath.Join(src, "ip-link.json"), map[string]any{"ifindex": 30, "ifname": "vxlan.calico",
			"flags": []string{"UP"}, "mtu": 1450, "link_type": "ether", "linkinfo": map[string]any{"info_kind": "vxlan"}}),
		"ip-addr.json": appendJSON(t, filepath.Join(src, "ip-addr.json"), map[string]any{"ifindex": 30, "ifname": "vxlan.calico",
			"addr_info": []any{map[string]any{"family": "inet", "local": "10.244.0.128", "prefixlen": 32}}}),
	})
	badJSON := copySnapshot(t, src, map[string]string{"ip-addr.json": "[\n{\"ifname\": 3}\n]"})
	for _, x := range []struct{ text, want string }{
		{lab("/nonexistent/snap", ""), `ok.toml:4: node.snapshot: node "a": snapshot /nonexistent/snap: no such folder`},
		{lab(badRules, ""), `ok.toml:4: node.snapshot: node "a": ` + filepath.Join(badRules, "iptables-save") + `:3: Couldn't load match`},
		{lab(badRoute, ""), `ok.toml:4: node.snapshot: node "a": ` + filepath.Join(badRoute, "ip-route.json") + `: route entry 27 (10.50.0.0/16 dev eth0-peer): its device eth0-peer is not one the lab makes`},
		{lab(tunnel, ""), `device vxlan.calico is a vxlan device: a snapshot node does not make tunnel devices yet`},
		{lab(badJSON, ""), filepath.Join(badJSON, "ip-addr.json") + `: ip-addr.json:2:`},
		{lab(abs, "[node.attach]\neth9 = \"lan\"\n"), `ok.toml:7: node.attach.eth9: node "a": the snapshot ` + filepath.Join(abs, "ip-link.json") + ` has no device "eth9"`},
		{lab(abs, "[node.attach]\neth0 = \"lan\"\n"), `node.interface.switch: "lan": the lab has no [[bridge]]`},
		{lab(abs, "[[node.interface]]\nname = \"x\"\n"), `a snapshot node's devices are the snapshot's`},
		{lab(abs, "[node.uswitch]\nrules = \"*filter\\nCOMMIT\\n\"\n"), `[node.uswitch] may set only workers`},
		{strings.Replace(lab(abs, ""), `pods = "auto"`, `pods = "all"`, 1), `ok.toml:5: node.pods: node "a": pods "all": want "auto"`},
		{strings.Replace(lab(abs, "pod_server = { kind = \"http\", port = 80 }\n"), `pods = "auto"`, ``, 1), `node.pod_server: node "a": pod_server needs pods = "auto"`},
		{lab(abs, "pod_server = { kind = \"gopher\", port = 70 }\n"), `server kind "gopher"`},
		{lab(abs, "pod_server = [{ kind = \"http\", port = 80, colour = 1 }]\n"), `unknown key "colour"`},
		{"name = \"s\"\n[[namespace]]\nname = \"c\"\n[[node]]\nname = \"a\"\npods = \"auto\"\n[[node.interface]]\nname = \"e\"\nnetns = \"c\"\n", `pods, pod_server and attach are for a node made from a snapshot`},
		{strings.Replace(lab(abs, ""), `name = "s"`, `name = "a-long-lab"`, 1), `the namespace "a-long-lab-a-eth0" for its eth0 is not a valid namespace name`},
	} {
		_, err := Parse("ok.toml", []byte(x.text))
		if err == nil || !strings.Contains(err.Error(), x.want) {
			t.Errorf("got %v, want %q in:\n%s", err, x.want, x.text)
		}
	}
}
