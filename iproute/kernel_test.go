package iproute_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/iproute"
	"github.com/uswitch-lab/uswitch/route"
)

// kernelSetup builds the namespace the comparison asks: veth pairs whose
// peers live in a second throw-away namespace (nothing leaves the
// machine), a TUN device nobody reads (no carrier: its routes are
// "linkdown"), addresses, routes of every kind in several tables and
// rules with every selector. IPv6 is off so that `ip route show table
// all` lists only what the FIB holds. PEER is the peer namespace.
var kernelSetup = []string{
	"link set lo up",
	"link add a0 type veth peer name a0p netns PEER",
	"link add b0 type veth peer name b0p netns PEER",
	"link add c0 type veth peer name c0p netns PEER",
	"link add d0 type veth peer name d0p",
	"tuntap add mode tun name tun1",
	"link set a0 up", "link set b0 up", "link set c0 up", "link set d0 up", "link set d0p up", "link set tun1 up",
	"addr add 10.1.0.1/24 brd + dev a0",
	"addr add 10.1.0.2/24 brd + dev a0",
	"addr add 10.2.0.1/24 brd + dev b0",
	"addr add 192.168.5.1/24 brd + dev c0",
	"addr add 172.16.0.1/16 brd + dev c0",
	"addr add 10.4.0.1/30 dev d0",
	"addr add 10.9.0.1 peer 10.9.0.2 dev tun1",
	"route add default via 10.1.0.254",
	"route add 10.50.0.0/16 via 10.2.0.254 metric 10",
	"route add 10.50.0.0/16 via 10.1.0.254 metric 5",
	"route add 10.50.1.0/24 tos 0x10 via 10.2.0.253",
	"route add 10.50.2.0/24 tos 0x08 via 10.2.0.252 metric 50",
	"route add 10.50.2.0/24 via 10.1.0.252 metric 1",
	"route add 10.60.0.0/16 nexthop via 10.1.0.250 weight 1 nexthop via 10.2.0.250 weight 3",
	"route add 10.61.0.0/16 proto static nexthop via 10.1.0.249 nexthop dev c0",
	"route add 10.63.0.0/16 nexthop via 10.1.0.240 weight 2 nexthop via 10.2.0.240 nexthop dev c0 weight 5 nexthop via 10.4.0.2 weight 3",
	"route add 10.64.0.0/24 table 100 nexthop via 192.168.5.240 nexthop via 10.1.0.241 weight 7",
	// neighbour states for fib_multipath_use_neigh: a failed and an
	// incomplete gateway are skipped, a stale one is not
	"neigh add 10.2.0.240 dev b0 lladdr 02:00:00:00:00:01 nud failed",
	"neigh add 10.4.0.2 dev d0 nud incomplete",
	"neigh add 10.1.0.241 dev a0 lladdr 02:00:00:00:00:02 nud stale",
	"route add unreachable 10.70.0.0/16",
	"route add prohibit 10.71.0.0/16",
	"route add blackhole 10.72.0.0/16",
	"route add throw 10.73.0.0/16",
	"route add 10.80.0.0/24 dev c0 src 172.16.0.1",
	"route add 10.81.0.0/24 via 1.1.1.1 dev b0 onlink",
	"route add 10.82.0.0/24 dev b0 scope link proto static metric 33",
	"route add 10.83.0.0/24 via 10.9.0.2",
	"route add 10.84.0.0/24 dev tun1 proto 99",
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
	"route add 10.58.0.0/16 via 10.2.0.249 table 300 metric 7",
	"route add 10.59.0.0/16 via 10.2.0.248 table 401",
	"route add 10.62.0.0/16 via 10.4.0.2 table 1000 src 10.4.0.1",
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
	"rule add pref 320 iif ghost0 lookup 100",
	"rule add pref 325 oif ghost1 lookup 100",
	"rule add pref 330 fwmark 0x2000/0x2000 lookup 300 suppress_prefixlength 8",
	"rule add pref 340 from 10.9.0.0/24 to 10.62.0.0/16 lookup 1000",
	"rule add pref 345 fwmark 0/0x8000 ipproto icmp lookup 1000",
	"rule add pref 350 uidrange 3000-3000 lookup 1000",
	"rule add pref 360 sport 1000-2000 dport 443 lookup main",
	"rule add pref 370 iif tun1 tos 0x10 lookup 300",
}

var kernelSysctls = []string{
	"net.ipv4.ip_forward=1",
	// a known multipath seed: with 0 the kernel draws one at boot
	"net.ipv4.fib_multipath_hash_seed=" + fmt.Sprint(mpSeed),
	"net.ipv4.conf.c0.forwarding=0",
	"net.ipv4.conf.b0.rp_filter=1",
	"net.ipv4.conf.a0.rp_filter=2",
}

// setup makes the namespaces and returns the one routed in and its
// snapshot.
func setup(t *testing.T) (*kerneltest.Netns, *host.Snapshot) {
	kerneltest.Require(t, "sysctl")
	peer := kerneltest.NewNetns(t)
	ns := kerneltest.NewNetns(t)
	for _, s := range []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.lo.disable_ipv6=1"} {
		if _, e, code, err := ns.Run("", "sysctl", "-q", "-w", s); err != nil || code != 0 {
			t.Fatalf("sysctl %s: %v %s", s, err, e)
		}
	}
	batch := strings.ReplaceAll(strings.Join(kernelSetup, "\n"), "PEER", peer.Name) + "\n"
	if _, e, code, err := ns.Run(batch, "ip", "-batch", "-"); err != nil || code != 0 {
		t.Fatalf("ip -batch (setup): %v %s", err, e)
	}
	if _, e, code, err := peer.Run("link set lo up\nlink set a0p up\nlink set b0p up\nlink set c0p up\n", "ip", "-batch", "-"); err != nil || code != 0 {
		t.Fatalf("ip -batch (peer): %v %s", err, e)
	}
	for _, s := range kernelSysctls {
		if _, e, code, err := ns.Run("", "sysctl", "-q", "-w", s); err != nil || code != 0 {
			t.Fatalf("sysctl %s: %v %s", s, err, e)
		}
	}
	return ns, capture(t, ns)
}

// mpSeed is the fib_multipath_hash_seed the namespace gets.
const mpSeed = 0x5eed1234

// capture snapshots the namespace.
func capture(t *testing.T, ns *kerneltest.Netns) *host.Snapshot {
	dir := filepath.Join(t.TempDir(), "snap")
	if err := host.Capture(dir, ns.Name); err != nil {
		t.Fatal(err)
	}
	snap, err := host.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func env(snap *host.Snapshot) iproute.Env {
	names := iproute.DefaultNames()
	names.AddRTTables(snap.Raw[host.FileRTTables])
	names.AddDSField(snap.Raw[host.FileDSField])
	return iproute.Env{FIB: snap.FIB, Names: names, UID: 0}
}

// genQuery draws one `ip route get` argument list.
func genQuery(r *rand.Rand) []string {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	fill := func(s string) string {
		for strings.Contains(s, "%d") {
			s = strings.Replace(s, "%d", fmt.Sprint(1+r.IntN(254)), 1)
		}
		return s
	}
	dst := fill(pick("10.50.%d.%d", "10.50.1.%d", "10.50.2.%d", "10.51.0.%d", "10.52.0.%d", "10.55.0.%d",
		"10.56.0.%d", "10.57.0.%d", "10.58.0.%d", "10.59.0.%d", "10.60.%d.%d", "10.61.0.%d", "10.62.0.%d",
		"10.63.%d.%d", "10.63.%d.%d", "10.64.0.%d",
		"10.70.0.%d", "10.71.0.%d", "10.72.0.%d", "10.73.0.%d", "10.80.0.%d", "10.81.0.%d", "10.82.0.%d",
		"10.83.0.%d", "10.84.0.%d", "10.90.0.%d", "10.1.0.%d", "10.2.0.%d", "192.168.5.%d", "172.16.%d.%d",
		"8.8.%d.%d", "10.200.0.%d", "10.201.0.%d", "10.4.0.2", "10.9.0.2", "10.9.0.1", "10.4.0.1",
		"10.1.0.1", "10.1.0.2", "10.2.0.1", "192.168.5.1", "172.16.0.1", "127.0.0.1", "127.1.2.3",
		"10.1.0.255", "10.2.0.255", "192.168.5.255", "172.16.255.255", "255.255.255.255", "10.4.0.3",
		"224.0.0.1", "239.1.1.1", "0.0.0.0", "10.99.%d.%d"))
	args := []string{dst}
	if r.IntN(2) == 0 {
		iif := pick("a0", "b0", "c0", "d0", "d0p", "tun1", "lo")
		src := fill(pick("10.1.0.%d", "10.2.0.%d", "192.168.5.%d", "8.8.8.8", "10.50.0.%d", "172.16.7.%d",
			"10.82.0.%d", "10.80.0.%d", "10.1.0.1", "10.2.0.1", "172.16.0.1", "127.0.0.5", "0.0.0.0",
			"10.60.0.%d", "10.70.0.%d", "10.9.0.2", "10.4.0.2", "10.99.0.%d", "224.0.0.9"))
		if r.IntN(2) == 0 {
			args = append(args, "from", src, "iif", iif)
		} else {
			args = append([]string{"iif", iif, "from", src, "to"}, args...)
		}
		if r.IntN(10) == 0 {
			args = append(args, "uid", fmt.Sprint(r.IntN(4000)))
		}
	} else {
		if r.IntN(4) == 0 {
			args = append(args, "from", pick("10.1.0.1", "10.1.0.2", "10.2.0.1", "192.168.5.1", "172.16.0.1",
				"10.90.0.9", "127.0.0.1", "8.8.8.8", "10.1.0.7", "10.9.0.1", "10.4.0.1", "0.0.0.0"))
		}
		if r.IntN(6) == 0 {
			args = append(args, "oif", pick("a0", "b0", "c0", "lo", "d0", "tun1"))
		}
		if r.IntN(5) == 0 {
			args = append(args, "uid", fmt.Sprint(r.IntN(4000)))
		}
	}
	if r.IntN(2) == 0 {
		bits := []uint32{0x1, 0x2, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0x8000, 0xff01, 0x5}
		m := bits[r.IntN(len(bits))]
		if r.IntN(3) == 0 {
			m |= bits[r.IntN(len(bits))]
		}
		args = append(args, "mark", pick(fmt.Sprintf("0x%x", m), fmt.Sprint(m)))
	}
	// numbers only: in one ip -batch, a name (AF11) read after a number
	// gets the number back from rtnl_dsfield_a2n's cache (iproute2 6.1)
	if r.IntN(4) == 0 {
		args = append(args, "tos", pick("0x08", "0x10", "0x04", "0x1c", "0x28", "0x18", "0x0c", "0x10"))
	}
	if r.IntN(3) == 0 {
		args = append(args, "ipproto", pick("tcp", "udp", "icmp", "6", "17", "tcp", "udp", "gre"))
		if r.IntN(2) == 0 {
			args = append(args, "dport", pick("80", "443", "8000", "8050", "8100", "8101"))
		}
		if r.IntN(2) == 0 {
			args = append(args, "sport", pick("53", "54", "1234", "1000", "2001"))
		}
	}
	return args
}

// genMultipathQuery draws an `ip route get` towards the multipath
// routes: sources that are and are not a nexthop's own address, input
// and output, protocols and ports, the table 100 route by mark.
func genMultipathQuery(r *rand.Rand) []string {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	n := func() string { return fmt.Sprint(r.IntN(256)) }
	dst := pick("10.60."+n()+"."+n(), "10.61.0."+n(), "10.63."+n()+"."+n(), "10.63."+n()+"."+n(), "10.64.0."+n())
	args := []string{dst}
	switch r.IntN(4) {
	case 0: // input
		args = append(args, "from", pick("10.1.0."+n(), "10.2.0."+n(), "192.168.5."+n(), "8.8."+n()+"."+n()), "iif", pick("a0", "b0", "c0", "d0p"))
	case 1: // output from one of our addresses
		args = append(args, "from", pick("10.1.0.1", "10.1.0.2", "10.2.0.1", "192.168.5.1", "172.16.0.1", "10.4.0.1", "10.9.0.1"))
	}
	if strings.HasPrefix(dst, "10.64.") {
		args = append(args, "mark", "1")
	}
	switch r.IntN(4) {
	case 0:
		args = append(args, "ipproto", "tcp", "sport", fmt.Sprint(1+r.IntN(65535)), "dport", fmt.Sprint(1+r.IntN(65535)))
	case 1:
		args = append(args, "ipproto", "udp", "sport", fmt.Sprint(1+r.IntN(65535)))
	case 2:
		args = append(args, "ipproto", "icmp", "dport", fmt.Sprint(1+r.IntN(65535)))
	}
	return args
}

// kernelAnswers runs the commands in one `ip -force -batch -` (with
// the options opts), a delimiter command after each, and returns each
// command's stdout and the stderr of the failed ones.
func kernelAnswers(t *testing.T, ns *kerneltest.Netns, opts []string, cmds []string) (outs, errs []string) {
	const delim = "rule show pref 32767"
	dOut, _, _, err := ns.Run("", append(append([]string{"ip"}, opts...), strings.Fields(delim)...)...)
	if err != nil || dOut == "" {
		t.Fatalf("delimiter: %v %q", err, dOut)
	}
	var in strings.Builder
	for _, c := range cmds {
		in.WriteString(c + "\n" + delim + "\n")
	}
	args := append(append([]string{"ip"}, opts...), "-force", "-batch", "-")
	stdout, stderr, _, err := ns.Run(in.String(), args...)
	if err != nil {
		t.Fatal(err)
	}
	outs = strings.Split(stdout, dOut)
	if len(outs) != len(cmds)+1 {
		t.Fatalf("batch answered %d commands of %d", len(outs)-1, len(cmds))
	}
	errs = make([]string, len(cmds))
	failed := regexp.MustCompile(`^Command failed -:(\d+)$`)
	var pending strings.Builder
	for _, ln := range strings.SplitAfter(stderr, "\n") {
		if m := failed.FindStringSubmatch(strings.TrimSpace(ln)); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			errs[(n-1)/2] = pending.String()
			pending.Reset()
			continue
		}
		pending.WriteString(ln)
	}
	return outs[:len(cmds)], errs
}

// nexthopFields are the parts of an answer that name the path a
// multipath route took (to tell such differences apart in the log).
var nexthopFields = regexp.MustCompile(`(via|dev|src) \S+ |"(gateway|dev|prefsrc)":"[^"]*",?`)

// TestKernelRouteGet compares `uswitch ip route get` on the snapshot
// with the real `ip route get` in the namespace, byte for byte, text and
// -j, with exit statuses; then ip route show (every table, all) and ip
// rule show.
func TestKernelRouteGet(t *testing.T) {
	ns, _ := setup(t)
	// every fib_multipath_hash_policy; policy 3 with the default fields
	// and with ports
	for _, pol := range []struct{ name, policy, fields string }{
		{"L3", "0", "7"}, {"L4", "1", "7"}, {"L3 or inner L3", "2", "7"},
		{"custom 0x0007", "3", "7"}, {"custom 0x0037", "3", "0x0037"}, {"custom 0x0030", "3", "0x0030"},
		{"custom 0x0040", "3", "0x0040"}, {"L4 use_neigh", "1", "7"},
	} {
		t.Run(pol.name, func(t *testing.T) {
			neigh := "0"
			if strings.HasSuffix(pol.name, "use_neigh") {
				neigh = "1"
			}
			for _, s := range []string{"net.ipv4.fib_multipath_hash_policy=" + pol.policy, "net.ipv4.fib_multipath_hash_fields=" + pol.fields,
				"net.ipv4.fib_multipath_use_neigh=" + neigh} {
				if _, e, code, err := ns.Run("", "sysctl", "-q", "-w", s); err != nil || code != 0 {
					t.Fatalf("sysctl %s: %v %s", s, err, e)
				}
			}
			snap := capture(t, ns)
			routeGet(t, ns, snap, "random", 2400, genQuery)
			routeGet(t, ns, snap, "multipath", 1600, genMultipathQuery)
		})
	}
}

// routeGet runs the random queries against the kernel and uswitch.
func routeGet(t *testing.T, ns *kerneltest.Netns, snap *host.Snapshot, label string, n int, genQuery func(*rand.Rand) []string) {
	e := env(snap)
	if testing.Short() {
		n /= 6
	}
	seed := uint64(1)
	if s := os.Getenv("USWITCH_IPROUTE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	r := rand.New(rand.NewPCG(seed, 14))
	queries := make([][]string, n)
	cmds := make([]string, n)
	for i := range queries {
		queries[i] = genQuery(r)
		cmds[i] = "route get " + strings.Join(queries[i], " ")
	}
	codes := map[string]int{} // kernel exit status by error text
	exitCode := func(opts []string, i int, msg string) int {
		if c, ok := codes[msg]; ok {
			return c
		}
		_, _, c, err := ns.Run("", append(append([]string{"ip"}, opts...), strings.Fields(cmds[i])...)...)
		if err != nil {
			t.Fatal(err)
		}
		codes[msg] = c
		return c
	}
	for _, opts := range [][]string{nil, {"-j"}} {
		outs, errs := kernelAnswers(t, ns, opts, cmds)
		agree, multipath, mpAgree, fails, mpAnswers := 0, 0, 0, 0, 0
		kinds := map[string]int{}
		for i, q := range queries {
			var o, eb bytes.Buffer
			code := iproute.Run(e, append(append([]string{}, opts...), append([]string{"route", "get"}, q...)...), &o, &eb)
			wantCode := 0
			if errs[i] != "" {
				wantCode = exitCode(opts, i, errs[i])
				kinds[strings.TrimSpace(errs[i])]++
			} else {
				kinds["ok"]++
			}
			same := o.String() == outs[i] && eb.String() == errs[i] && code == wantCode
			if wantCode == 0 && isMultipath(snap.FIB, e, q) {
				mpAnswers++
			}
			if same {
				agree++
				continue
			}
			if isMultipath(snap.FIB, e, q) {
				multipath++
				if code == wantCode && eb.String() == errs[i] &&
					nexthopFields.ReplaceAllString(o.String(), "") == nexthopFields.ReplaceAllString(outs[i], "") {
					mpAgree++
				}
			}
			fails++
			if fails <= 30 {
				t.Errorf("ip %s %s:\nkernel (exit %d):\n%s%s\nuswitch (exit %d):\n%s%s", strings.Join(opts, " "), cmds[i], wantCode, outs[i], errs[i], code, o.String(), eb.String())
			}
		}
		t.Logf("%s: ip %s route get: %d/%d byte-identical (%d answered by multipath routes); %d differences (%d from multipath routes, %d of them only in the nexthop taken); kernel answers: %v",
			label, strings.Join(opts, " "), agree, n, mpAnswers, fails, multipath, mpAgree, kinds)
	}
}

// isMultipath says whether the query's answer came from a multipath
// route.
func isMultipath(f *route.FIB, e iproute.Env, q []string) bool {
	c, err := iproute.Parse(append([]string{"route", "get"}, q...), e.Names)
	if err != nil {
		return false
	}
	g := c.Get
	fl := route.Flow{Dst: g.Dst, Src: g.Src, TOS: g.TOS, Mark: g.Mark, Proto: 17, SPort: g.SPort, DPort: g.DPort, UID: g.UID,
		IIF: f.Ifindex(g.IIF), OIF: f.Ifindex(g.OIF)}
	if g.HasProto {
		fl.Proto = g.Proto
	}
	res := f.Route(&fl)
	return res.Route != nil && len(res.Route.Nexthops) > 1
}

// TestKernelShow compares ip route show (each table and all) and ip
// rule show, text and -j.
func TestKernelShow(t *testing.T) {
	ns, snap := setup(t)
	e := env(snap)
	cmds := []string{"route show", "route", "route show table main", "route show table local", "route list table default",
		"route show table 100", "route show table 200", "route show table 300", "route show table 401", "route show table 400",
		"route show table 1000", "route show table 4242", "route show table all", "route show table 0",
		"rule show", "rule", "rule list"}
	for _, opts := range [][]string{nil, {"-j"}} {
		for _, c := range cmds {
			args := append(append([]string{}, opts...), strings.Fields(c)...)
			want, werr, wcode, err := ns.Run("", append([]string{"ip"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var o, eb bytes.Buffer
			code := iproute.Run(e, args, &o, &eb)
			if o.String() != want || eb.String() != werr || code != wcode {
				t.Errorf("ip %s:\nkernel (exit %d):\n%s%s\nuswitch (exit %d):\n%s%s", strings.Join(args, " "), wcode, want, werr, code, o.String(), eb.String())
			}
		}
	}
}

// TestKernelNeighShow: `ip [-j] neigh show [dev DEV]` from a snapshot's
// ip-neigh.json prints what ip prints for the same table (the kernel
// lists its hash table's order, uswitch by device and address: the lines
// are compared as sets). The states are ones that do not change within
// the test: PERMANENT, REACHABLE (30 s), STALE, FAILED.
func TestKernelNeighShow(t *testing.T) {
	peer := kerneltest.NewNetns(t)
	ns := kerneltest.NewNetns(t)
	batch := strings.ReplaceAll(`link add n0 type veth peer name n0p netns PEER
link add n1 type veth peer name n1p netns PEER
link set n0 up
link set n1 up
addr add 10.30.0.1/24 dev n0
addr add 10.31.0.1/24 dev n1
neigh add 10.30.0.5 dev n0 lladdr 02:00:00:00:00:05 nud permanent
neigh add 10.30.0.6 dev n0 lladdr 02:00:00:00:00:06 nud reachable
neigh add 10.30.0.7 dev n0 lladdr 02:00:00:00:00:07 nud stale
neigh add 10.30.0.8 dev n0 lladdr 02:00:00:00:00:08 nud failed
neigh add 10.31.0.9 dev n1 lladdr 02:00:00:00:01:09 nud permanent
neigh add 10.31.0.10 dev n1 lladdr 02:00:00:00:01:0a nud stale
`, "PEER", peer.Name)
	if _, e, code, err := ns.Run(batch, "ip", "-batch", "-"); err != nil || code != 0 {
		t.Fatalf("ip -batch: %v %s", err, e)
	}
	snap := capture(t, ns)
	e := env(snap)
	var err error
	if e.Neighbours, err = snap.IPNeighbours(); err != nil {
		t.Fatal(err)
	}
	sorted := func(s string) string {
		if strings.HasPrefix(s, "[") {
			// JSON: one object a line
			s = strings.ReplaceAll(strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "[]")), "},{", "}\n{")
		}
		l := strings.Split(strings.TrimRight(s, "\n"), "\n")
		sort.Strings(l)
		return strings.Join(l, "\n")
	}
	for _, c := range []string{"neigh show", "neigh", "neigh list", "n show dev n0", "neigh show dev n1", "-j neigh show", "-j neigh show dev n0", "neigh show dev nosuch"} {
		args := strings.Fields(c)
		want, werr, wcode, err := ns.Run("", append([]string{"ip"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var o, eb bytes.Buffer
		code := iproute.Run(e, args, &o, &eb)
		if sorted(o.String()) != sorted(want) || eb.String() != werr || code != wcode {
			t.Errorf("ip %s:\nkernel (exit %d):\n%s%s\nuswitch (exit %d):\n%s%s", c, wcode, want, werr, code, o.String(), eb.String())
		}
	}
}
