package lab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/route"
)

// TestTopologyConfig: every topology key parses into what Up uses.
func TestTopologyConfig(t *testing.T) {
	const text = `name = "t"
[[interface]]
name = "tg"
netns = "gw"
addresses = ["10.10.9.1/24"]
decap = "gue:6080"
[[interface]]
name = "tx"
netns = "x"
addresses = ["10.10.8.1/24"]
decap = "ipip"
[[namespace]]
name = "x"
addresses = ["10.10.8.2/24"]
[[namespace]]
name = "gw"
addresses = ["10.10.9.2/24"]
loopback = ["10.20.0.100/32", "10.20.0.101/32"]
routes = ["default via 10.10.9.1", "10.20.0.0/24 via 10.30.1.2 dev vg table 100", "10.40.0.0/16 dev vg", "10.50.0.0/16 via 10.10.9.1 table main"]
ip_rules = ["from 10.30.1.0/24 lookup 100", "not fwmark 0x1/0xff iif vg oif tg to 10.0.0.0/8 lookup main priority 50", "to 192.0.2.0/24 blackhole priority 60"]
sysctl = { "net.ipv4.conf.vg.rp_filter" = 0, "net.ipv4.ip_forward" = 1, "net.ipv4.conf.all.rp_filter" = false }
[[namespace]]
name = "rs"
routes = ["default via 10.30.1.1"]
[namespace.sysctl]
net.ipv4.conf.all.arp_ignore = 1
[[link]]
a_netns = "rs"
a_name = "vr"
a_addresses = ["10.30.1.2/24"]
b_netns = "gw"
b_name = "vg"
b_addresses = ["10.30.1.1/24"]
mtu = 1400
`
	c, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Interfaces[0].Decap; d.Kind != link.DecapGUE || d.Port != 6080 || d.String() != "gue:6080" {
		t.Errorf("decap %+v", d)
	}
	if d := c.Interfaces[1].Decap; d.Kind != link.DecapIPIP {
		t.Errorf("decap %+v", d)
	}
	gw := c.Namespaces[1]
	if len(gw.Loopback) != 2 || gw.Loopback[1].String() != "10.20.0.101/32" {
		t.Errorf("loopback %v", gw.Loopback)
	}
	wantRoutes := []NSRoute{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: mustAddr("10.10.9.1")},
		{Dst: netip.MustParsePrefix("10.20.0.0/24"), Gateway: mustAddr("10.30.1.2"), Dev: "vg", Table: 100},
		{Dst: netip.MustParsePrefix("10.40.0.0/16"), Dev: "vg"},
		{Dst: netip.MustParsePrefix("10.50.0.0/16"), Gateway: mustAddr("10.10.9.1")},
	}
	for i, w := range wantRoutes {
		r := gw.Routes[i]
		r.Text = ""
		if r != w {
			t.Errorf("route %d: %+v, want %+v", i, r, w)
		}
	}
	r0, r1, r2 := gw.IPRules[0], gw.IPRules[1], gw.IPRules[2]
	if r0.HasPriority || r0.Src != netip.MustParsePrefix("10.30.1.0/24") || r0.Action != route.ActToTable || r0.Table != 100 {
		t.Errorf("rule 0 %+v", r0)
	}
	if !r1.HasPriority || r1.Priority != 50 || !r1.Not || r1.Mark != 1 || r1.Mask != 0xff || r1.IIF != "vg" || r1.OIF != "tg" ||
		r1.Dst != netip.MustParsePrefix("10.0.0.0/8") || r1.Table != route.TableMain {
		t.Errorf("rule 1 %+v", r1)
	}
	if r2.Action != route.ActBlackhole || r2.Priority != 60 {
		t.Errorf("rule 2 %+v", r2)
	}
	// ip_forward first, then sorted; conf.vg is the device's own
	want := []NSSysctl{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.vg.rp_filter", "0"}}
	if len(gw.Sysctls) != len(want) {
		t.Fatalf("sysctls %v", gw.Sysctls)
	}
	for i := range want {
		if gw.Sysctls[i] != want[i] {
			t.Errorf("sysctl %d: %v, want %v", i, gw.Sysctls[i], want[i])
		}
	}
	if gw.Sysctls[1].perDevice() || !gw.Sysctls[2].perDevice() {
		t.Errorf("perDevice wrong: %v", gw.Sysctls)
	}
	if s := c.Namespaces[2].Sysctls; len(s) != 1 || s[0] != (NSSysctl{"net.ipv4.conf.all.arp_ignore", "1"}) {
		t.Errorf("nested sysctl %v", s)
	}
	l := c.Links[0]
	if l.ANetns != "rs" || l.AName != "vr" || l.AAddresses[0].String() != "10.30.1.2/24" || l.BNetns != "gw" || l.BName != "vg" ||
		l.BAddresses[0].String() != "10.30.1.1/24" || l.MTU != 1400 {
		t.Errorf("link %+v", l)
	}
	r := c.Rename(func(s string) string { return "p-" + s })
	if r.Links[0].ANetns != "p-rs" || r.Links[0].BNetns != "p-gw" || c.Links[0].ANetns != "rs" {
		t.Errorf("rename: %+v (original %+v)", r.Links[0], c.Links[0])
	}
	// the decap option carries the namespace's addresses: TUN, lo, link ends
	d := link.NewDatapath(testEngine(t, c), []link.Device{linktest.New("tg"), linktest.New("tx")}, nil, 1, c.DatapathOptions()...)
	defer d.Close()
	if p, _ := d.Port("tg"); p.Decap != (link.DecapValue{Kind: link.DecapGUE, Port: 6080}) || len(p.DecapAddrs) != 4 {
		t.Errorf("tg decap %+v", p)
	}
	if p, _ := d.Port("tx"); p.Decap.Kind != link.DecapIPIP || len(p.DecapAddrs) != 1 {
		t.Errorf("tx decap %+v", p)
	}
}

// TestTopologyConfigErrors: bad topology keys name the key and the line.
func TestTopologyConfigErrors(t *testing.T) {
	const base = `name = "x"
[[interface]]
name = "t0"
netns = "a"
addresses = ["10.0.0.1/24"]
[[namespace]]
name = "a"
addresses = ["10.0.0.2/24"]
[[namespace]]
name = "b"
`
	inA := func(line string) string {
		return strings.Replace(base, `addresses = ["10.0.0.2/24"]`, "addresses = [\"10.0.0.2/24\"]\n"+line, 1)
	}
	link := "[[link]]\na_netns = \"a\"\na_name = \"v0\"\nb_netns = \"b\"\nb_name = \"v1\"\n"
	for _, tc := range []struct {
		name, text, key, msg string
		line                 int
	}{
		{"bad loopback", base + `loopback = ["10.20.0.300/32"]` + "\n", "namespace.loopback", "10.20.0.300/32", 11},
		{"loopback not a list", base + `loopback = "10.20.0.1/32"` + "\n", "namespace.loopback", "", 11},
		{"route unknown word", base + `routes = ["10.1.0.0/16 via 10.0.0.1 metric 5"]` + "\n", "namespace.routes", `unknown word "metric"`, 11},
		{"route bad table", inA(`routes = ["10.1.0.0/16 dev t0 table zero"]`), "namespace.routes", "bad table", 9},
		{"route dev twice", inA(`routes = ["10.1.0.0/16 dev t0 dev t0"]`), "namespace.routes", "twice", 9},
		{"route dev needs value", inA(`routes = ["10.1.0.0/16 via 10.0.0.1 dev"]`), "namespace.routes", "needs a value", 9},
		{"route no such dev", base + `routes = ["10.1.0.0/16 dev t0"]` + "\n", "namespace.routes", `no device "t0"`, 11},
		{"route without TUN", base + `routes = ["10.1.0.0/16"]` + "\n", "namespace.routes", "no TUN", 11},
		{"ip rule no action", base + `ip_rules = ["from 10.0.0.0/8"]` + "\n", "namespace.ip_rules", "no action", 11},
		{"ip rule unknown word", base + `ip_rules = ["from 10.0.0.0/8 lookup 100 realms 3"]` + "\n", "namespace.ip_rules", `unknown word "realms"`, 11},
		{"ip rule bad fwmark", inA(`ip_rules = ["fwmark x lookup 100"]`), "namespace.ip_rules", "bad fwmark", 9},
		{"ip rule goto without priority", base + `ip_rules = ["goto 100"]` + "\n", "namespace.ip_rules", "priority", 11},
		{"sysctl not ipv4", base + `sysctl = { "net.core.somaxconn" = 1 }` + "\n", "namespace.sysctl.net.core.somaxconn", "net.ipv4", 11},
		{"sysctl bad value", base + `sysctl = { "net.ipv4.ip_forward" = "yes" }` + "\n", "namespace.sysctl.net.ipv4.ip_forward", "integer", 11},
		{"sysctl table form", base + "[namespace.sysctl]\n\"net.ipv6.conf.all.forwarding\" = 1\n", "namespace.sysctl.net.ipv6.conf.all.forwarding", "net.ipv4", 12},
		{"sysctl in the right namespace", inA(`sysctl = { "net.ipv4.ip_forward" = 1 }`) + `sysctl = { "net.ipv4.ip_forward" = 2.5 }` + "\n",
			"namespace.sysctl.net.ipv4.ip_forward", "integer", 12},
		{"decap unknown", strings.Replace(base, "netns = \"a\"\n", "netns = \"a\"\ndecap = \"vxlan\"\n", 1), "interface.decap", "vxlan", 5},
		{"decap gue port", strings.Replace(base, "netns = \"a\"\n", "netns = \"a\"\ndecap = \"gue:0\"\n", 1), "interface.decap", "gue:PORT", 5},
		{"link unknown key", base + "[[link]]\na_netns = \"a\"\nanme = \"x\"\n", "link.anme", "unknown key", 13},
		{"link unknown netns", base + strings.Replace(link, `a_netns = "a"`, `a_netns = "zz"`, 1), "link.a_netns", "no [[namespace]]", 12},
		{"link end clashes with the TUN", base + strings.Replace(link, `a_name = "v0"`, `a_name = "t0"`, 1), "link.a_name", "already has a device", 13},
		{"link ends clash", base + strings.Replace(link, `a_netns = "a"`, `a_netns = "b"`, 1) + strings.Replace(link, `"v0"`, `"v9"`, 1), "link.b_name", `"v1"`, 15},
		{"link bad name", base + strings.Replace(link, `b_name = "v1"`, `b_name = "lo"`, 1), "link.b_name", "not lo", 15},
		{"link incomplete", base + "[[link]]\na_netns = \"a\"\na_name = \"v0\"\n", "link", "needs a_netns, a_name, b_netns and b_name", 11},
		{"link bad mtu", base + link + "mtu = 10\n", "link.mtu", "68-65535", 16},
		{"link bad address", base + link + "b_addresses = [\"10.1.1.1\"]\n", "link.b_addresses", "10.1.1.1", 16},
		{"link route device ok elsewhere", base + link + "[[namespace]]\nname = \"c\"\nroutes = [\"10.9.0.0/16 dev v1\"]\n", "namespace.routes", `no device "v1"`, 18},
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
		})
	}
}

// topoLab: a client behind uswitch; a kernel router namespace gw
// (ip_forward = 1) behind uswitch; a real server rs reached only through
// gw over a [[link]] veth, holding a VIP on its lo. gw's main table has
// no route back to the client: replies from rs's net get back to
// uswitch only by gw's ip rule into table 100.
const topoLab = `
name = "topo"
[uswitch]
workers = 2
routes = ["10.30.1.0/24 via 10.10.9.2", "10.20.0.0/24 via 10.10.9.2"]
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "tg"
netns = "P-gw"
addresses = ["10.10.9.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]

[[namespace]]
name = "P-gw"
addresses = ["10.10.9.2/24"]
routes = ["10.20.0.0/24 via 10.30.1.2 dev vrs", "default via 10.10.9.1 dev tg table 100"]
ip_rules = ["from 10.30.1.0/24 lookup 100 priority 100", "from 10.20.0.0/24 lookup 100"]
sysctl = { "net.ipv4.ip_forward" = 1, "net.ipv4.conf.all.rp_filter" = 0, "net.ipv4.conf.vrs.rp_filter" = 0 }

[[namespace]]
name = "P-rs"
loopback = ["10.20.0.100/32"]
routes = ["default via 10.30.1.1"]
server = [{ kind = "udp-echo", port = 7 }, { kind = "tcp-echo", port = 7 }]

[[link]]
a_netns = "P-rs"
a_name = "vgw"
a_addresses = ["10.30.1.2/24"]
b_netns = "P-gw"
b_name = "vrs"
b_addresses = ["10.30.1.1/24"]
mtu = 1400
`

// TestLabLinkRouter: traffic from the client crosses uswitch, the
// kernel router gw and the veth to rs and comes back by gw's policy
// rule; the namespaces' devices, addresses, rules and sysctls are what
// the config says.
func TestLabLinkRouter(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "topo.toml", topoLab)
	l := upLab(t, c)
	cli, gw, rs := p+"-c", p+"-gw", p+"-rs"
	const to = 2 * time.Second

	t.Run("udp over the veth", func(t *testing.T) {
		b, err := l.UDPExchange(cli, "10.30.1.2:7", []byte("hi"), to)
		if err != nil {
			t.Fatal(err)
		}
		// rs saw the client itself: routed, not NATed
		if !strings.HasPrefix(string(b), rs+" 10.10.1.2:") || !strings.HasSuffix(string(b), " hi") {
			t.Errorf("answer %q", b)
		}
	})
	t.Run("ping", func(t *testing.T) {
		for _, dst := range []string{"10.30.1.1", "10.30.1.2"} {
			if _, err := l.Ping(cli, mustAddr(dst), to); err != nil {
				t.Errorf("ping %s: %v", dst, err)
			}
		}
	})
	t.Run("tcp to the VIP on rs's lo", func(t *testing.T) {
		conn, err := l.Dial(cli, "tcp4", "10.20.0.100:7", to)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(to))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(buf[:n]), rs+" 10.10.1.2:") {
			t.Errorf("greeting %q", buf[:n])
		}
	})
	t.Run("devices", func(t *testing.T) {
		h, err := netlink.NewHandleAt(l.nss[rs])
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		v, err := h.LinkByName("vgw")
		if err != nil {
			t.Fatal(err)
		}
		if v.Type() != "veth" || v.Attrs().MTU != 1400 || v.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("vgw: %s mtu %d flags %v", v.Type(), v.Attrs().MTU, v.Attrs().Flags)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		as, err := h.AddrList(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range as {
			found = found || a.IPNet.String() == "10.20.0.100/32"
		}
		if !found {
			t.Errorf("lo addresses %v: no 10.20.0.100/32", as)
		}
	})
	t.Run("ip rule and table 100", func(t *testing.T) {
		h, err := netlink.NewHandleAt(l.nss[gw])
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		// main alone has no way back to the client ...
		if rs, err := h.RouteGet(net.ParseIP("10.10.1.2")); err == nil {
			t.Errorf("gw's main table routes the client: %v", rs)
		}
		// ... but what comes from rs's net looks up table 100
		rts, err := h.RouteGetWithOptions(net.ParseIP("10.10.1.2"), &netlink.RouteGetOptions{SrcAddr: net.ParseIP("10.30.1.2"), Iif: "vrs"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rts) != 1 || !rts[0].Gw.Equal(net.ParseIP("10.10.9.1")) || rts[0].Table != 100 {
			t.Errorf("route get from 10.30.1.2 iif vrs: %+v", rts)
		}
		rules, err := h.RuleList(netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rules {
			if r.Table == 100 {
				got = append(got, r.Src.String())
				if r.Src.String() == "10.30.1.0/24" && r.Priority != 100 {
					t.Errorf("rule %v: priority %d, want 100", r.Src, r.Priority)
				}
			}
		}
		if len(got) != 2 {
			t.Errorf("rules into table 100: %v, want both", got)
		}
	})
	t.Run("sysctls", func(t *testing.T) {
		for k, want := range map[string]string{"ip_forward": "1", "conf/vrs/rp_filter": "0", "conf/all/rp_filter": "0"} {
			var got []byte
			if err := inNetns(l.nss[gw], func() error {
				var err error
				got, err = os.ReadFile("/proc/sys/net/ipv4/" + k)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) != want {
				t.Errorf("%s = %q, want %s", k, got, want)
			}
		}
		// the client's namespace was left alone
		var got []byte
		inNetns(l.nss[cli], func() error {
			got, _ = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			return nil
		})
		if strings.TrimSpace(string(got)) != "0" {
			t.Errorf("client ip_forward = %q", got)
		}
	})
	if s := l.Stats(); s.Forwarded == 0 {
		t.Errorf("stats %v", s)
	}
}

// decapLab: two real servers holding the VIP on lo behind uswitch, one
// whose TUN opens IPIP and one GUE on port 6080.
const decapLab = `
name = "decap"
[uswitch]
workers = 2
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "t1"
netns = "P-r1"
addresses = ["10.10.2.1/24"]
decap = "ipip"
[[interface]]
name = "t2"
netns = "P-r2"
addresses = ["10.10.3.1/24"]
decap = "gue:6080"
[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "P-r1"
addresses = ["10.10.2.2/24"]
loopback = ["10.20.0.100/32"]
routes = ["default via 10.10.2.1"]
server = [{ kind = "udp-echo", port = 7 }]
[[namespace]]
name = "P-r2"
addresses = ["10.10.3.2/24"]
loopback = ["10.20.0.100/32"]
routes = ["default via 10.10.3.1"]
server = [{ kind = "udp-echo", port = 7 }]
`

// TestLabDecap: the client sends a UDP datagram for the VIP inside a
// tunnel packet to a real server's own address (a raw socket, as a
// director's ip_vs_tunnel_xmit would); uswitch forwards it and, as the
// real server's tunnel device, hands the server the inner datagram,
// which reaches the echo server on the VIP. The echo comes straight
// back to the client (direct return, no tunnel).
func TestLabDecap(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "decap.toml", decapLab)
	l := upLab(t, c)
	cli := p + "-c"
	for _, tc := range []struct{ kind, rip, rs string }{{"ipip", "10.10.2.2", p + "-r1"}, {"gue", "10.10.3.2", p + "-r2"}} {
		t.Run(tc.kind, func(t *testing.T) {
			// the client's UDP socket the answer comes back to
			var pc net.PacketConn
			var raw int
			err := inNetns(l.nss[cli], func() error {
				var err error
				if pc, err = net.ListenPacket("udp4", "10.10.1.2:0"); err != nil {
					return err
				}
				raw, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			defer syscall.Close(raw)
			sport := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
			pkt := linktest.Encap(tc.kind, tc.rip, linktest.InnerUDP(sport, "tunnelled "+tc.kind))
			to := &syscall.SockaddrInet4{Addr: netip.MustParseAddr(tc.rip).As4()}
			if err := syscall.Sendto(raw, pkt, 0, to); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no answer: %v (datapath: %v)", err, l.Stats())
			}
			// the echo server got the inner datagram, from the client
			want := tc.rs + " 10.10.1.2:"
			if got := string(buf[:n]); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " tunnelled "+tc.kind) {
				t.Errorf("answer %q from %v, want %q...", got, from, want)
			}
		})
	}
}
