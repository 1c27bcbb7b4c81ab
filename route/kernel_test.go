package route_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/route"
)

// kernelSetup builds the namespace the differential test routes in: veth
// pairs (both ends inside, nothing leaves the machine), addresses,
// several tables, and rules of every kind.
var kernelSetup = []string{
	"link set lo up",
	"link add a0 type veth peer name a0p",
	"link add b0 type veth peer name b0p",
	"link add c0 type veth peer name c0p",
	"link add d0 type veth peer name d0p",
	"link set a0 up", "link set a0p up", "link set b0 up", "link set b0p up",
	"link set c0 up", "link set c0p up", "link set d0 up",
	"addr add 10.1.0.1/24 brd + dev a0",
	"addr add 10.1.0.2/24 brd + dev a0",
	"addr add 10.2.0.1/24 brd + dev b0",
	"addr add 192.168.5.1/24 brd + dev c0",
	"addr add 172.16.0.1/16 brd + dev c0",
	"addr add 10.3.0.1/24 dev d0", // d0 is down: its routes are gone
	"route add default via 10.1.0.254",
	"route add 10.50.0.0/16 via 10.2.0.254 metric 10",
	"route add 10.50.0.0/16 via 10.1.0.254 metric 5",
	"route add 10.50.1.0/24 tos 0x10 via 10.2.0.253",
	"route add 10.50.2.0/24 tos 0x08 via 10.2.0.252 metric 50",
	"route add 10.50.2.0/24 via 10.1.0.252 metric 1",
	"route add 10.60.0.0/16 nexthop via 10.1.0.250 weight 1 nexthop via 10.2.0.250 weight 3",
	"route add unreachable 10.70.0.0/16",
	"route add prohibit 10.71.0.0/16",
	"route add blackhole 10.72.0.0/16",
	"route add throw 10.73.0.0/16",
	"route add 10.80.0.0/24 dev c0 src 172.16.0.1",
	"route add 10.81.0.0/24 via 1.1.1.1 dev b0 onlink",
	"route add 10.82.0.0/24 dev b0 scope link",
	"route add local 10.90.0.0/24 dev lo",
	"route add 10.73.0.0/16 via 10.2.0.250 table default",
	"route add 10.50.0.0/16 via 10.2.0.254 table 100",
	"route add default via 192.168.5.254 table 100",
	"route add throw 10.51.0.0/16 table 100",
	"route add blackhole 10.52.0.0/16 table 100",
	"route add 10.0.0.0/8 via 10.1.0.253 table 200",
	"route add unreachable 10.55.0.0/16 table 200",
	"route add prohibit 10.56.0.0/16 table 200",
	"route add 10.57.0.0/16 dev c0 table 200",
	"route add default via 10.2.0.254 table 300",
	"route add 10.58.0.0/16 via 10.2.0.249 table 300",
	"route add 10.59.0.0/16 via 10.2.0.248 table 401",
	"rule add pref 100 fwmark 0x1/0xff lookup 100",
	"rule add pref 110 fwmark 0x2 lookup 200",
	"rule add pref 120 from 192.168.5.0/24 lookup 100",
	"rule add pref 130 to 10.55.0.0/16 lookup 200",
	"rule add pref 140 iif b0 lookup 200",
	"rule add pref 150 oif c0 lookup 100",
	"rule add pref 160 tos 0x08 lookup 200",
	"rule add pref 170 ipproto tcp dport 8000-8100 lookup 100",
	"rule add pref 175 ipproto udp sport 53 lookup 300",
	"rule add pref 180 not from 10.0.0.0/8 fwmark 0x10/0x10 lookup 400",
	"rule add pref 190 fwmark 0x20/0x20 goto 250",
	"rule add pref 200 fwmark 0x40/0x40 unreachable",
	"rule add pref 210 fwmark 0x80/0x80 prohibit",
	"rule add pref 220 fwmark 0x100/0x100 blackhole",
	"rule add pref 230 fwmark 0x200/0x200 nop",
	"rule add pref 240 fwmark 0x200/0x200 lookup 200",
	"rule add pref 250 fwmark 0x400/0x400 lookup 300 suppress_prefixlength 0",
	"rule add pref 255 fwmark 0x400/0x400 lookup 401",
	"rule add pref 260 lookup 400",
	"rule add pref 270 uidrange 1000-2000 prohibit",
	"rule add pref 280 fwmark 0x800/0x800 goto 9999",
	"rule add pref 290 iif lo fwmark 0x1000/0x1000 lookup 100",
	"rule add pref 300 to 10.200.0.0/16 lookup 200",
	"rule add pref 310 iif a0 to 10.201.0.0/16 unreachable",
	"rule add pref 315 not fwmark 0x4000/0x4000 lookup 401",
	"rule add pref 316 fwmark 0x4000/0x4000 to 10.59.0.0/16 unreachable",
	"rule add pref 320 iif a0p lookup 100",
	"rule add pref 330 fwmark 0x2000/0x2000 lookup 300 suppress_prefixlength 8",
}

var kernelSysctls = []string{
	"net.ipv4.ip_forward=1",
	"net.ipv4.conf.c0.forwarding=0",
	"net.ipv4.conf.b0.rp_filter=1",
	"net.ipv4.conf.a0.rp_filter=2",
	"net.ipv4.conf.b0p.accept_local=1",
	"net.ipv4.conf.c0p.route_localnet=1",
}

func setupKernel(t *testing.T) (*kerneltest.Netns, *host.Snapshot) {
	kerneltest.Require(t, "sysctl")
	ns := kerneltest.NewNetns(t)
	for _, c := range kernelSetup {
		if _, e, code, err := ns.Run("", append([]string{"ip"}, strings.Fields(c)...)...); err != nil || code != 0 {
			t.Fatalf("ip %s: %v %s", c, err, e)
		}
	}
	for _, s := range kernelSysctls {
		if _, e, code, err := ns.Run("", "sysctl", "-q", "-w", s); err != nil || code != 0 {
			t.Fatalf("sysctl %s: %v %s", s, err, e)
		}
	}
	dir := filepath.Join(t.TempDir(), "snap")
	if err := host.Capture(dir, ns.Name); err != nil {
		t.Fatal(err)
	}
	snap, err := host.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ns, snap
}

type getJSON struct {
	Type    string   `json:"type"`
	Dev     string   `json:"dev"`
	Gateway string   `json:"gateway"`
	Prefsrc string   `json:"prefsrc"`
	Table   string   `json:"table"`
	Cache   []string `json:"cache"`
}

var errnoText = map[string]syscall.Errno{
	"Network is unreachable":    syscall.ENETUNREACH,
	"No route to host":          syscall.EHOSTUNREACH,
	"Permission denied":         syscall.EACCES,
	"Invalid argument":          syscall.EINVAL,
	"No such device":            syscall.ENODEV,
	"Invalid cross-device link": syscall.EXDEV,
}

type kflow struct {
	route.Flow
	iif, oif string
	args     []string
}

func genFlow(r *rand.Rand, f *route.FIB) kflow {
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	dsts := []string{"10.50.%d.%d", "10.50.1.%d", "10.50.2.%d", "10.51.0.%d", "10.52.0.%d", "10.55.0.%d",
		"10.56.0.%d", "10.57.0.%d", "10.58.0.%d", "10.59.0.%d", "10.60.%d.%d", "10.70.0.%d", "10.71.0.%d",
		"10.72.0.%d", "10.73.0.%d", "10.80.0.%d", "10.81.0.%d", "10.82.0.%d", "10.90.0.%d",
		"10.1.0.%d", "10.2.0.%d", "192.168.5.%d", "172.16.%d.%d", "8.8.%d.%d", "10.200.0.%d", "10.201.0.%d",
		"10.1.0.1", "10.1.0.2", "10.2.0.1", "192.168.5.1", "172.16.0.1", "127.0.0.1", "127.1.2.3",
		"10.1.0.255", "10.2.0.255", "192.168.5.255", "172.16.255.255", "255.255.255.255", "10.3.0.1",
		"224.0.0.1", "224.0.0.5", "239.1.1.1", "0.1.2.3", "10.99.%d.%d"}
	fill := func(s string) string {
		for strings.Contains(s, "%d") {
			s = strings.Replace(s, "%d", fmt.Sprint(1+r.IntN(254)), 1)
		}
		return s
	}
	var k kflow
	dst := fill(pick(dsts))
	k.Dst = netip.MustParseAddr(dst)
	k.args = []string{dst}
	k.Proto = 17 // inet_rtm_getroute's default
	input := r.IntN(2) == 0
	if input {
		k.iif = pick([]string{"a0", "b0", "c0", "a0p", "b0p", "c0p", "lo"})
		src := fill(pick([]string{"10.1.0.%d", "10.2.0.%d", "192.168.5.%d", "8.8.8.8", "10.50.0.%d",
			"10.1.0.%d", "10.2.0.%d", "192.168.5.%d", "172.16.7.%d", "10.82.0.%d", "10.80.0.%d",
			"10.1.0.1", "10.2.0.1", "172.16.0.1", "127.0.0.5", "0.0.0.0", "10.60.0.%d", "10.70.0.%d",
			"172.16.3.%d", "10.99.0.%d", "224.0.0.9"}))
		k.Src = netip.MustParseAddr(src)
		k.IIF = f.Ifindex(k.iif)
		k.args = append(k.args, "from", src, "iif", k.iif)
	} else {
		if r.IntN(4) == 0 {
			src := pick([]string{"10.1.0.1", "10.1.0.2", "10.2.0.1", "192.168.5.1", "172.16.0.1", "10.90.0.9",
				"127.0.0.1", "8.8.8.8", "10.1.0.7"})
			k.Src = netip.MustParseAddr(src)
			k.args = append(k.args, "from", src)
		}
		if r.IntN(6) == 0 {
			k.oif = pick([]string{"a0", "b0", "c0", "lo", "d0"})
			k.OIF = f.Ifindex(k.oif)
			k.args = append(k.args, "oif", k.oif)
		}
		if r.IntN(5) == 0 {
			k.UID = uint32(r.IntN(3000))
			k.args = append(k.args, "uid", fmt.Sprint(k.UID))
		}
	}
	if r.IntN(2) == 0 {
		bits := []uint32{0x1, 0x2, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0xff01}
		k.Mark = bits[r.IntN(len(bits))]
		if r.IntN(3) == 0 {
			k.Mark |= bits[r.IntN(len(bits))]
		}
		k.args = append(k.args, "mark", fmt.Sprintf("0x%x", k.Mark))
	}
	if r.IntN(4) == 0 {
		k.TOS = []uint8{0x08, 0x10, 0x04, 0x1c, 0x28, 0x18, 0x0c}[r.IntN(7)]
		k.args = append(k.args, "tos", fmt.Sprintf("0x%02x", k.TOS))
	}
	if r.IntN(3) == 0 {
		k.Proto = []uint8{6, 17}[r.IntN(2)]
		k.args = append(k.args, "ipproto", map[uint8]string{6: "tcp", 17: "udp"}[k.Proto])
		if r.IntN(2) == 0 {
			k.DPort = []uint16{80, 8000, 8050, 8100, 8101}[r.IntN(5)]
			k.args = append(k.args, "dport", fmt.Sprint(k.DPort))
		}
		if r.IntN(2) == 0 {
			k.SPort = []uint16{53, 54, 1234}[r.IntN(3)]
			k.args = append(k.args, "sport", fmt.Sprint(k.SPort))
		}
	}
	return k
}

func tableName(id uint32) string {
	switch id {
	case route.TableMain:
		return ""
	case route.TableLocal:
		return "local"
	case route.TableDefault:
		return "default"
	case route.TableUnspec:
		return "" // rt_fill_info reports table 0, which ip does not print
	}
	return fmt.Sprint(id)
}

// TestKernelDifferential compares Route with `ip route get` for seeded
// random flows, input and output.
func TestKernelDifferential(t *testing.T) {
	ns, snap := setupKernel(t)
	f := snap.FIB
	n := 600
	if testing.Short() {
		n = 150
	}
	seed := uint64(1)
	if s := os.Getenv("USWITCH_ROUTE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	counts := map[string]int{}
	fails := 0
	for i := 0; i < n; i++ {
		k := genFlow(r, f)
		out, stderr, code, err := ns.Run("", append([]string{"ip", "-j", "route", "get"}, k.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var want getJSON
		var wantErr syscall.Errno
		if code != 0 {
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr), "RTNETLINK answers: "))
			e, ok := errnoText[msg]
			if !ok {
				t.Fatalf("ip route get %s: %s", strings.Join(k.args, " "), stderr)
			}
			wantErr = e
		} else {
			var arr []getJSON
			if err := json.Unmarshal([]byte(out), &arr); err != nil || len(arr) != 1 {
				t.Fatalf("ip route get %s: %q: %v", strings.Join(k.args, " "), out, err)
			}
			want = arr[0]
			if want.Type == "" {
				want.Type = "unicast"
			}
		}
		got := f.Route(&k.Flow)
		kind := "out"
		if k.IIF != 0 {
			kind = "in"
		}
		if wantErr != 0 {
			counts[kind+" "+wantErr.Error()]++
		} else {
			counts[kind+" "+want.Type]++
		}
		var diffs []string
		if got.Err != wantErr {
			diffs = append(diffs, fmt.Sprintf("err %v, kernel %v", got.Err, wantErr))
		} else if wantErr == 0 {
			if got.Type.String() != want.Type {
				diffs = append(diffs, fmt.Sprintf("type %v, kernel %s", got.Type, want.Type))
			}
			if tn := tableName(got.Table); tn != want.Table {
				diffs = append(diffs, fmt.Sprintf("table %q, kernel %q", tn, want.Table))
			}
			multipath := got.Route != nil && len(got.Route.Nexthops) > 1
			gw := ""
			if got.Gateway.IsValid() {
				gw = got.Gateway.String()
			}
			if multipath {
				ok := false
				for _, nh := range got.Route.Nexthops {
					ok = ok || (nh.Dev == want.Dev && nh.Gateway.String() == want.Gateway)
				}
				if !ok {
					diffs = append(diffs, fmt.Sprintf("kernel nexthop %s/%s not in the route", want.Gateway, want.Dev))
				}
			} else {
				if d := f.LinkName(got.Dev); d != want.Dev {
					diffs = append(diffs, fmt.Sprintf("dev %q, kernel %q", d, want.Dev))
				}
				if gw != want.Gateway {
					diffs = append(diffs, fmt.Sprintf("gateway %q, kernel %q", gw, want.Gateway))
				}
			}
			if k.IIF == 0 && !k.Src.IsValid() && !multipath {
				src := ""
				if got.Src.IsValid() {
					src = got.Src.String()
				}
				if src != want.Prefsrc {
					diffs = append(diffs, fmt.Sprintf("prefsrc %q, kernel %q", src, want.Prefsrc))
				}
			}
			redirect := false
			for _, c := range want.Cache {
				redirect = redirect || c == "redirect"
			}
			if k.IIF != 0 && !multipath && redirect != got.Redirect {
				diffs = append(diffs, fmt.Sprintf("redirect %v, kernel %v", got.Redirect, redirect))
			}
		}
		if os.Getenv("USWITCH_ROUTE_DIFF_VERBOSE") != "" {
			t.Logf("%s -> %v %s %s", strings.Join(k.args, " "), got.Err, out, strings.TrimSpace(stderr))
		}
		if len(diffs) > 0 {
			fails++
			if fails <= 40 {
				t.Errorf("ip route get %s: %s (kernel %s%s)", strings.Join(k.args, " "), strings.Join(diffs, "; "), out, strings.TrimSpace(stderr))
			}
		}
	}
	t.Logf("seed %d: %d flows, %d differences; kernel answers: %v", seed, n, fails, counts)
}

// TestKernelAddrType checks AddrType on the namespace's snapshot against
// what the kernel set up: its own addresses are local, subnet
// broadcasts broadcast, the custom local route local, others unicast.
func TestKernelAddrType(t *testing.T) {
	_, snap := setupKernel(t)
	f := snap.FIB
	a0, b0 := f.Ifindex("a0"), f.Ifindex("b0")
	cases := []struct {
		addr  string
		dev   int
		limit bool
		want  route.Type
	}{
		{"10.1.0.1", 0, false, route.Local},
		{"10.1.0.2", 0, false, route.Local},
		{"10.1.0.1", a0, true, route.Local},
		{"10.1.0.1", b0, true, route.Unicast},
		{"10.2.0.1", 0, false, route.Local},
		{"127.0.0.1", 0, false, route.Local},
		{"127.9.9.9", 0, false, route.Local},
		{"10.90.0.77", 0, false, route.Local},
		{"10.1.0.255", 0, false, route.Broadcast},
		{"10.1.0.255", a0, true, route.Broadcast},
		{"10.1.0.255", b0, true, route.Unicast},
		{"192.168.5.255", 0, false, route.Broadcast},
		{"172.16.255.255", 0, false, route.Broadcast},
		{"127.255.255.255", 0, false, route.Broadcast},
		{"255.255.255.255", 0, false, route.Broadcast},
		{"0.0.0.0", 0, false, route.Broadcast},
		{"0.1.2.3", 0, false, route.Broadcast},
		{"224.0.0.1", 0, false, route.Multicast},
		{"239.255.0.1", 0, false, route.Multicast},
		{"10.1.0.7", 0, false, route.Unicast},
		{"8.8.8.8", 0, false, route.Unicast},
		{"10.1.0.0", 0, false, route.Unicast}, // no network-address broadcast route since 4.x
		{"10.3.0.1", 0, false, route.Local},   // d0 is down but its local route stays
	}
	for _, c := range cases {
		if got := f.AddrType(netip.MustParseAddr(c.addr), c.dev, c.limit); got != c.want {
			t.Errorf("AddrType(%s, %d, %v) = %v, want %v", c.addr, c.dev, c.limit, got, c.want)
		}
	}
}
