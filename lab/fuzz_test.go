package lab

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig feeds the lab file loader arbitrary text: it never panics,
// every error is a *ConfigError naming the file with a line >= 0, and a
// text it accepts loads again to the same lab.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(DefaultTOML()))
	f.Add([]byte(""))
	f.Add([]byte("name = \"x\"\n[[interface]]\nname = \"t0\"\nnetns = \"a\"\naddresses = [\"10.0.0.1/24\"]\n[[namespace]]\nname = \"a\"\naddresses = [\"10.0.0.2/24\"]\n"))
	// multi-node labs: [[node]] with its [node.uswitch] (inline rules,
	// sysctls), switch and peer links, a pod behind a node's bridge,
	// host servers with bind and reply_src, demo rule swaps on a node
	f.Add([]byte(nodeSeed))
	f.Add([]byte(strings.Replace(nodeSeed, `peer = "b:p0"`, `peer = "b:p9"`, 1)))
	f.Add([]byte(strings.Replace(nodeSeed, `switch = "lan"`, `switch = "lan"\nnetns = "c"`, 1)))
	f.Add([]byte("name = \"n\"\n[[namespace]]\nname = \"c\"\n[[node]]\nname = \"a\"\n[[node]]\nname = \"a\"\n"))
	f.Add([]byte("name = \"n\"\nnode = [{name = \"a\", interface = [{name = \"e\", switch = \"x\"}]}]\n[[namespace]]\nname = \"c\"\n"))
	for _, p := range []string{"testdata/*.toml", "../examples/labs/*.toml", "../examples/experiments/*.toml"} {
		fs, _ := filepath.Glob(p)
		for _, fn := range fs {
			if b, err := os.ReadFile(fn); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// rules_file and ipvs_file name files to read: /dev/zero
		// would never end (a node's snapshot names a folder)
		if bytes.Contains(data, []byte("_file")) || bytes.Contains(data, []byte("snapshot")) || bytes.Contains(data, []byte(`\u`)) || bytes.Contains(data, []byte(`\U`)) {
			t.Skip("names a file")
		}
		const file = "fuzz.toml"
		c, err := Parse(file, data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is no *ConfigError", err, err)
			}
			if ce.Line < 0 || ce.File != file || !strings.HasPrefix(err.Error(), file) {
				t.Fatalf("error %q: line %d, file %q", err, ce.Line, ce.File)
			}
			if n := strings.Count(string(data), "\n") + 1; ce.Line > n {
				t.Fatalf("error %q: line %d of a %d-line file", err, ce.Line, n)
			}
			return
		}
		if len(c.Namespaces) == 0 {
			t.Fatalf("accepted a lab without namespaces")
		}
		d, err := Parse(file, data)
		if err != nil {
			t.Fatalf("accepted once, refused again: %v", err)
		}
		n1, i1 := c.Names()
		n2, i2 := d.Names()
		if strings.Join(n1, ",") != strings.Join(n2, ",") || strings.Join(i1, ",") != strings.Join(i2, ",") {
			t.Fatalf("two loads differ: %v %v, %v %v", n1, i1, n2, i2)
		}
	})
}

// nodeSeed is a two-node lab with every node key.
const nodeSeed = `name = "nf"
[uswitch.sysctl]
"net.bridge.bridge-nf-call-iptables" = 0
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
[[namespace]]
name = "pod"
addresses = ["10.244.1.5/24"]
routes = ["default via 10.244.1.1"]
server = [{ kind = "http", port = 80 }]
[[node]]
name = "a"
server = [{ kind = "udp-echo", port = 81, reply_src = "route" }, { kind = "http", port = 82, bind = "192.168.0.1" }]
[node.uswitch]
workers = 1
seed = 3
routes = ["10.244.1.0/24 via 192.168.0.2"]
rules = """
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.2:8080
COMMIT
"""
[node.uswitch.sysctl]
"net.ipv4.ip_forward" = 1
"net.ipv4.conf.all.route_localnet" = 1
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.1/24"]
[[node.interface]]
name = "p0"
peer = "b:p0"
addresses = ["10.0.0.1/30"]
[[node]]
name = "b"
[node.uswitch]
ipset = "create S hash:ip\nadd S 10.244.1.5\n"
[[node.bridge]]
name = "cni0"
addresses = ["10.244.1.1/24"]
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.2/24"]
[[node.interface]]
name = "p0"
peer = "a:p0"
addresses = ["10.0.0.2/30"]
[[node.interface]]
name = "vp"
kind = "tap"
bridge = "cni0"
netns = "pod"
[[demo]]
node = "a"
iptables_restore = """
*filter
:FORWARD DROP [0:0]
COMMIT
"""
[[demo]]
from = "nf-b-host"
http = "http://10.244.1.5/"
`
