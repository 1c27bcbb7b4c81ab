package lab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/route"
)

func TestDefaultLoads(t *testing.T) {
	c := Default()
	if len(c.Namespaces) != 4 || len(c.Interfaces) != 4 || c.Ruleset == nil || !c.Sysctl.IPForward {
		t.Fatalf("default lab: %d namespaces, %d interfaces, rules %v, ip_forward %v", len(c.Namespaces), len(c.Interfaces), c.Ruleset != nil, c.Sysctl.IPForward)
	}
	ec, _, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	// the kernel's routes for the interface addresses are there
	fib := ec.FIB
	for _, tc := range []struct {
		dst  string
		typ  route.Type
		want string
	}{
		{"10.10.1.1", route.Local, "tun-client"},
		{"10.10.2.7", route.Unicast, "tun-web1"},
		{"203.0.113.2", route.Unicast, "tun-wan"},
		{"10.10.3.255", route.Broadcast, "tun-web2"},
	} {
		r := fib.Output(&route.Flow{Dst: mustAddr(tc.dst)})
		if r.Err != 0 || r.Type != tc.typ || (tc.typ != route.Local && fib.LinkName(r.Dev) != tc.want) {
			t.Errorf("route to %s: %+v (dev %s), want %v via %s", tc.dst, r, fib.LinkName(r.Dev), tc.typ, tc.want)
		}
	}
	if r := fib.Output(&route.Flow{Dst: mustAddr("8.8.8.8")}); r.Err == 0 {
		t.Errorf("the default lab routes 8.8.8.8 (%+v): it must not route out of the machine", r)
	}
}

// TestConfigErrors: unknown keys and bad values name the key and the line.
func TestConfigErrors(t *testing.T) {
	const base = `name = "x"
[uswitch]
workers = 1
[[interface]]
name = "t0"
netns = "a"
addresses = ["10.0.0.1/24"]
[[namespace]]
name = "a"
addresses = ["10.0.0.2/24"]
`
	for _, tc := range []struct {
		name, text, key, msg string
		line                 int
	}{
		{"unknown top key", "colour = 1\n" + base, "colour", "unknown key", 1},
		{"unknown nested key", base + "mtux = 3\n", "namespace.mtux", "unknown key", 11},
		{"unknown server key", base + "[[namespace.server]]\nkind = \"http\"\nprot = 80\n", "namespace.server.prot", "unknown key", 13},
		{"bad address", strings.Replace(base, `"10.0.0.2/24"`, `"10.0.0.300/24"`, 1), "namespace.addresses", "10.0.0.300/24", 10},
		{"bad server kind", base + "server = [{ kind = \"gopher\", port = 70 }]\n", "namespace.server.kind", "gopher", 11},
		{"bad port", base + "[[namespace.server]]\nkind = \"http\"\nport = 70000\n", "namespace.server.port", "70000", 13},
		{"wrong type", strings.Replace(base, "workers = 1", `workers = "two"`, 1), "uswitch.workers", "incompatible types", 3},
		{"bad route", base + "routes = [\"10.1.0.0/16 via nowhere\"]\n", "namespace.routes", "nowhere", 11},
		{"unknown netns", strings.Replace(base, `netns = "a"`, `netns = "b"`, 1), "interface.netns", "no [[namespace]]", 6},
		{"bad rule set", strings.Replace(base, "workers = 1", "workers = 1\nrules = \"\"\"\n*filter\n-A FORWARD -j NOPE\nCOMMIT\n\"\"\"", 1), "uswitch.rules", "rule set line 3: Chain 'NOPE' does not exist", 7},
		{"unknown sysctl", base + "[uswitch.sysctl]\n\"net.ipv4.ip_forwarding\" = 1\n", "uswitch.sysctl.net.ipv4.ip_forwarding", "not a sysctl", 12},
		{"bad sysctl value", base + "[uswitch.sysctl]\n\"net.ipv4.ip_forward\" = \"yes\"\n", "uswitch.sysctl.net.ipv4.ip_forward", "integer", 12},
		{"syntax", base + "[[namespace]\n", "namespace", "delimiter", 11},
		{"demo from nowhere", base + "[[demo]]\nfrom = \"zz\"\nping = \"10.0.0.1\"\n", "demo.from", "zz", 12},
		{"refusal on a ping", base + "[[demo]]\nfrom = \"a\"\nping = \"10.0.0.1\"\nexpect_refused = true\n", "demo.expect_refused", "only a tcp step", 14},
		{"bad queues", strings.Replace(base, "workers = 1", "workers = 1\nqueues = 300", 1), "uswitch.queues", "300", 4},
		{"empty file", "", "namespace", "no [[namespace]]", 1},
		{"namespace lo", strings.ReplaceAll(base, `"a"`, `"lo"`), "namespace.name", `"lo": want`, 9},
		{"namespace ..", strings.ReplaceAll(base, `"a"`, `".."`), "namespace.name", `"..": want`, 9},
		{"namespace with a slash", strings.ReplaceAll(base, `"a"`, `"a/b"`), "namespace.name", `"a/b": want`, 9},
		{"namespace with a space", strings.ReplaceAll(base, `"a"`, `"a b"`), "namespace.name", `"a b": want`, 9},
		{"namespace name too long", strings.ReplaceAll(base, `"a"`, `"abcdefghijklmnop"`), "namespace.name", "1-15 characters", 9},
		{"interface .", strings.Replace(base, `"t0"`, `"."`, 1), "interface.name", `".": want`, 5},
		{"interface with a colon", strings.Replace(base, `"t0"`, `"t:0"`, 1), "interface.name", `"t:0": want`, 5},
		{"link end ..", base + "[[namespace]]\nname = \"b\"\n[[link]]\na_netns = \"a\"\na_name = \"..\"\nb_netns = \"b\"\nb_name = \"v1\"\n", "link.a_name", `"..": want`, 15},
		{"namespace address is its TUN's", strings.Replace(base, `"10.0.0.2/24"`, `"10.0.0.1/24"`, 1), "namespace.addresses", `10.0.0.1/24: a namespace's address on its TUN is uswitch's (interface "t0"'s)`, 10},
		{"same address on two links", base + "[[interface]]\nname = \"t1\"\nnetns = \"b\"\naddresses = [\"10.0.1.1/24\"]\n[[namespace]]\nname = \"b\"\naddresses = [\"10.0.0.2/24\"]\n",
			"namespace.addresses", `10.0.0.2/24: the address of namespace "b" is also that of namespace "a"`, 17},
		{"overlapping subnets on two links", base + "[[interface]]\nname = \"t1\"\nnetns = \"b\"\naddresses = [\"10.0.0.129/25\"]\n[[namespace]]\nname = \"b\"\naddresses = [\"10.0.0.130/25\"]\n",
			"interface.addresses", `10.0.0.129/25: the subnet of interface "t1" overlaps 10.0.0.1/24 of interface "t0" (another link)`, 14},
		{"veth subnet overlaps a TUN's", base + "[[namespace]]\nname = \"b\"\n[[link]]\na_netns = \"a\"\na_name = \"v0\"\na_addresses = [\"10.0.0.5/24\"]\nb_netns = \"b\"\nb_name = \"v1\"\nb_addresses = [\"10.0.0.6/24\"]\n",
			"link.a_addresses", `10.0.0.5/24: the subnet of link end "v0" in "a" overlaps`, 16},
		{"same address on both veth ends", base + "[[namespace]]\nname = \"b\"\n[[link]]\na_netns = \"a\"\na_name = \"v0\"\na_addresses = [\"10.1.0.5/24\"]\nb_netns = \"b\"\nb_name = \"v1\"\nb_addresses = [\"10.1.0.5/24\"]\n",
			"link.b_addresses", `10.1.0.5/24: the address of link end "v1" in "b" is also that of link end "v0" in "a"`, 19},
		{"TUN address is its namespace's, multi-line", "name = \"x\"\n[[namespace]]\nname = \"a\"\naddresses = [\n  \"10.0.0.2/24\",\n]\n[[interface]]\nname = \"t0\"\nnetns = \"a\"\naddresses = [\n  \"10.0.0.9/24\",\n  \"10.0.0.2/24\",\n]\n",
			"interface.addresses", `10.0.0.2/24: uswitch's address on a TUN is the namespace's (namespace "a"'s)`, 12},
		{"key not lower case", base + "[[Namespace]]\nname = \"b\"\n", "Namespace", "keys are lower case", 11},
		{"nested key not lower case", base + "Addresses = []\n", "namespace.Addresses", "keys are lower case", 11},
		{"offload not a bool", strings.Replace(base, "workers = 1", "workers = 1\noffload = 1", 1), "uswitch.offload", "incompatible types", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("lab.toml", []byte(tc.text))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *ConfigError", err, err)
			}
			if ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q (line %d, key %q), want line %d, key %q, containing %q", err, ce.Line, ce.Key, tc.line, tc.key, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "lab.toml:") {
				t.Errorf("%q does not name the file", err)
			}
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestAddFaults: a fault file's tables join a lab's, checked as the lab
// file's own.
func TestAddFaults(t *testing.T) {
	c := Default()
	if err := c.AddFaults("f.toml", []byte("[experiment]\nseed = 9\n[[fault]]\nname = \"x\"\nat = \"hook:ipv4:FORWARD\"\naction = \"loss\"\nevery = 2\n")); err != nil {
		t.Fatal(err)
	}
	if len(c.Faults) != 1 || c.FaultSeed(1) != 9 {
		t.Errorf("faults %d, seed %d", len(c.Faults), c.FaultSeed(1))
	}
	err := c.AddFaults("g.toml", []byte("[[fault]]\nname = \"y\"\nat = \"wire:nosuch:egress\"\nnetem = \"loss 1%\"\n"))
	if err == nil || !strings.Contains(err.Error(), "g.toml") || !strings.Contains(err.Error(), "no interface nosuch") || len(c.Faults) != 1 {
		t.Errorf("bad placement: %v, %d faults", err, len(c.Faults))
	}
}
