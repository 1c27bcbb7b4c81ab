// Package rulegen generates iptables-restore rule sets for tests and
// benchmarks: kube-proxy-shaped NAT tables by number of services, long
// filter chains, and random rule sets drawn from the supported matches and
// targets. Everything is deterministic from its parameters and seed.
package rulegen

import (
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// chainHash makes a kube-proxy-like chain suffix (16 base32 characters of
// a hash), as kube-proxy's servicePortChainName does with SHA-256.
func chainHash(kind string, i, j int) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", kind, i, j)
	var b [10]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	b[8], b[9] = byte(i), byte(j)
	return base32.StdEncoding.EncodeToString(b[:])[:16]
}

func ip(base uint32, n int) string {
	a := base + uint32(n)
	return fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
}

// KubeProxy returns a kube-proxy (iptables mode) shaped nat and filter
// rule set with n ClusterIP services; every third service has two
// endpoints, the others one. It has about 5.7 nat rules per service.
func KubeProxy(n int) string {
	var b strings.Builder
	b.Grow(n * 900)
	svcBase := uint32(10)<<24 | 96<<16 // 10.96.0.0
	podBase := uint32(10)<<24 | 244<<16
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	b.WriteString(":KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n")
	type svc struct {
		name, chain string
		seps        []string
		eps         []string
	}
	svcs := make([]svc, n)
	for i := range svcs {
		s := svc{name: fmt.Sprintf("ns%d/svc%d:http", i%50, i), chain: "KUBE-SVC-" + chainHash("svc", i, 0)}
		neps := 1
		if i%3 == 0 {
			neps = 2
		}
		for j := 0; j < neps; j++ {
			s.seps = append(s.seps, "KUBE-SEP-"+chainHash("sep", i, j))
			s.eps = append(s.eps, ip(podBase, 2*i+j+1))
		}
		svcs[i] = s
		fmt.Fprintf(&b, ":%s - [0:0]\n", s.chain)
		for _, sep := range s.seps {
			fmt.Fprintf(&b, ":%s - [0:0]\n", sep)
		}
	}
	b.WriteString("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n")
	b.WriteString("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n")
	b.WriteString("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n")
	b.WriteString("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n")
	b.WriteString("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n")
	for i, s := range svcs {
		vip := ip(svcBase, i+10)
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j %s\n", vip, s.name, s.chain)
		fmt.Fprintf(&b, "-A %s ! -s 10.244.0.0/16 -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n", s.chain, vip, s.name)
		for j, sep := range s.seps {
			if j < len(s.seps)-1 {
				fmt.Fprintf(&b, "-A %s -m comment --comment \"%s -> %s:8080\" -m statistic --mode random --probability %.11f -j %s\n",
					s.chain, s.name, s.eps[j], 1/float64(len(s.seps)-j), sep)
			} else {
				fmt.Fprintf(&b, "-A %s -m comment --comment \"%s -> %s:8080\" -j %s\n", s.chain, s.name, s.eps[j], sep)
			}
		}
		for j, sep := range s.seps {
			fmt.Fprintf(&b, "-A %s -s %s/32 -m comment --comment %s -j KUBE-MARK-MASQ\n", sep, s.eps[j], strings.ReplaceAll(s.name, ":", "_"))
			fmt.Fprintf(&b, "-A %s -p tcp -m comment --comment %s -m tcp -j DNAT --to-destination %s:8080\n", sep, strings.ReplaceAll(s.name, ":", "_"), s.eps[j])
		}
	}
	b.WriteString("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n")
	b.WriteString("COMMIT\n")
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n")
	b.WriteString("-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n")
	b.WriteString("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n")
	b.WriteString("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n")
	b.WriteString("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	b.WriteString("COMMIT\n")
	return b.String()
}

// FilterChain returns a filter table whose FORWARD chain has n rules
// matching distinct source /32s and TCP ports, none matching 10.0.0.0/8
// traffic, then an ACCEPT.
func FilterChain(n int) string {
	var b strings.Builder
	b.Grow(n * 80)
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	base := uint32(172)<<24 | 16<<16
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A FORWARD -s %s/32 -p tcp -m tcp --dport %d -j DROP\n", ip(base, i), 1024+i%60000)
	}
	b.WriteString("-A FORWARD -j ACCEPT\nCOMMIT\n")
	return b.String()
}

// fragment is a rule part valid in the given tables.
type fragment struct {
	text   string
	tables string // tables it may appear in ("" = all)
}

var randMatches = []fragment{
	{"-p tcp -m tcp --dport %PORT%", ""},
	{"-p tcp -m tcp --sport %PORT%:%PORT2%", ""},
	{"-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN", ""},
	{"-p udp -m udp --dport %PORT%", ""},
	{"-p udp -m udp ! --sport %PORT%", ""},
	{"-p icmp -m icmp --icmp-type 8", ""},
	{"-p tcp -m multiport --dports %PORT%,%PORT2%", ""},
	{"-m comment --comment \"%WORD% rule\"", ""},
	{"-m mark --mark 0x%HEX%/0xff", ""},
	{"-m connmark --mark 0x%HEX%", ""},
	{"-m conntrack --ctstate RELATED,ESTABLISHED", ""},
	{"-m conntrack --ctstate NEW --ctproto tcp", ""},
	{"-m state --state INVALID", ""},
	{"-m addrtype --dst-type LOCAL", ""},
	{"-m statistic --mode nth --every 3 --packet 1", ""},
	{"-m iprange --src-range 10.1.0.1-10.1.0.9", ""},
	{"-m length --length 64:1500", ""},
	{"-m ttl --ttl-gt 5", ""},
	{"-m limit --limit 5/sec --limit-burst 10", ""},
	{"-m pkttype --pkt-type broadcast", ""},
	{"-m tos --tos 0x10/0x3f", ""},
	{"-m dscp --dscp 0x0a", ""},
	{"-m helper --helper ftp", ""},
	{"-m recent --rcheck --seconds 60 --name %WORD%", ""},
}

var randTargets = []fragment{
	{"-j ACCEPT", "raw mangle filter security nat"},
	{"-j DROP", "raw mangle filter security"},
	{"-j RETURN", ""},
	{"-j LOG --log-prefix \"%WORD%: \"", ""},
	{"-j MARK --set-xmark 0x%HEX%/0xffffffff", "raw mangle filter security nat"},
	{"-j CONNMARK --save-mark", "mangle"},
	{"", ""},
}

// Random returns a random rule set for table: a few user chains, jumps
// only forward (no loops), rules combining up to three match fragments
// with a target. Rule sets from the same seed are identical.
func Random(seed uint64, table string, rules int) string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	chainsByTable := map[string][]string{
		"raw":      {"PREROUTING", "OUTPUT"},
		"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
		"filter":   {"INPUT", "FORWARD", "OUTPUT"},
		"security": {"INPUT", "FORWARD", "OUTPUT"},
		"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	}
	builtin := chainsByTable[table]
	user := []string{"U-A", "U-B", "U-C", "U-D"}
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range builtin {
		pol := "ACCEPT"
		if table != "nat" && r.IntN(4) == 0 {
			pol = "DROP"
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
	}
	for _, c := range user {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	subst := func(s string) string {
		p := 1 + r.IntN(60000)
		s = strings.ReplaceAll(s, "%PORT%", fmt.Sprint(p))
		s = strings.ReplaceAll(s, "%PORT2%", fmt.Sprint(p+1+r.IntN(100)))
		s = strings.ReplaceAll(s, "%HEX%", fmt.Sprintf("%x", r.IntN(256)))
		s = strings.ReplaceAll(s, "%WORD%", fmt.Sprintf("w%d", r.IntN(1000)))
		return s
	}
	for i := 0; i < rules; i++ {
		ci := r.IntN(len(builtin) + len(user))
		var chain string
		if ci < len(builtin) {
			chain = builtin[ci]
		} else {
			chain = user[ci-len(builtin)]
		}
		parts := []string{"-A", chain}
		if r.IntN(3) == 0 {
			parts = append(parts, "-s", fmt.Sprintf("192.168.%d.0/%d", r.IntN(256), 16+r.IntN(17)))
		}
		if r.IntN(4) == 0 {
			parts = append(parts, "!", "-d", fmt.Sprintf("10.%d.0.0/16", r.IntN(256)))
		}
		if r.IntN(4) == 0 && chain != "OUTPUT" && chain != "POSTROUTING" {
			parts = append(parts, "-i", []string{"eth0", "veth+", "br-1"}[r.IntN(3)])
		}
		proto := false
		for k := r.IntN(3); k > 0; k-- {
			f := randMatches[r.IntN(len(randMatches))]
			if strings.HasPrefix(f.text, "-p ") {
				if proto {
					continue
				}
				proto = true
			}
			parts = append(parts, subst(f.text))
		}
		// a jump to a later user chain (never backwards: no loops)
		if r.IntN(4) == 0 {
			from := -1
			for k, u := range user {
				if u == chain {
					from = k
				}
			}
			if from < len(user)-1 {
				parts = append(parts, "-j", user[from+1+r.IntN(len(user)-from-1)])
				b.WriteString(strings.Join(parts, " ") + "\n")
				continue
			}
		}
		for {
			tg := randTargets[r.IntN(len(randTargets))]
			if tg.tables == "" || strings.Contains(tg.tables, table) {
				if tg.text != "" {
					parts = append(parts, subst(tg.text))
				}
				break
			}
		}
		b.WriteString(strings.Join(parts, " ") + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Ebtables frames: EbtablesForward's rules never match a frame from
// EbtSrcMAC to EbtDstMAC (IPv4, 10.0.1.2 to 192.168.1.2, UDP, in any
// port but vm*); EbtablesForwardLast adds a last rule that does.
const (
	EbtSrcMAC = "02:00:00:00:00:0a"
	EbtDstMAC = "02:00:00:00:00:0b"
)

// EbtablesForward returns an ebtables-restore filter table whose FORWARD
// chain (policy ACCEPT) has n rules of four shapes in turn, the kinds a
// virtualisation host's bridge carries: a blocked source MAC; per-VM
// port IPv4 and ARP anti-spoofing (-i vmN with an inverted --ip-src /
// --arp-ip-src); a destination MAC with an IPv4 service (--ip-dst,
// --ip-proto tcp, --ip-dport).
func EbtablesForward(n int) string {
	var b strings.Builder
	b.Grow(n * 80)
	b.WriteString("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n")
	ebtRules(&b, n)
	return b.String()
}

// EbtablesForwardLast is EbtablesForward with policy DROP and a last,
// n+1st rule accepting the frame EbtablesForward lets through.
func EbtablesForwardLast(n int) string {
	var b strings.Builder
	b.Grow(n*80 + 100)
	b.WriteString("*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n")
	ebtRules(&b, n)
	fmt.Fprintf(&b, "-A FORWARD -p IPv4 -s %s -d %s --ip-dst 192.168.1.2 -j ACCEPT\n", EbtSrcMAC, EbtDstMAC)
	return b.String()
}

func ebtRules(b *strings.Builder, n int) {
	mac := func(pfx byte, i int) string {
		return fmt.Sprintf("02:%02x:00:%02x:%02x:%02x", pfx, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	base := uint32(10)<<24 | 8<<16
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(b, "-A FORWARD -s %s -j DROP\n", mac(0x10, i))
		case 1:
			fmt.Fprintf(b, "-A FORWARD -p IPv4 -i vm%d --ip-src ! %s -j DROP\n", i/4, ip(base, i))
		case 2:
			fmt.Fprintf(b, "-A FORWARD -p ARP -i vm%d --arp-ip-src ! %s -j DROP\n", i/4, ip(base, i))
		case 3:
			fmt.Fprintf(b, "-A FORWARD -p IPv4 -d %s --ip-dst %s --ip-proto tcp --ip-dport %d -j ACCEPT\n",
				mac(0x20, i), ip(uint32(172)<<24|16<<16, i), 1024+i%60000)
		}
	}
}
