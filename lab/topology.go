package lab

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/route"
)

// The lab's topology beyond uswitch's TUNs: veth pairs straight between
// two namespaces ([[link]]), extra addresses on a namespace's lo, its
// routes out of any of its devices and in any table, its ip rules and
// its sysctls. The kernels of the namespaces do the work (a namespace
// with net.ipv4.ip_forward = 1 is a router); uswitch sees only what
// reaches its TUNs. Everything lives inside the lab's namespaces, so it
// goes when they go (Close, Down).

// Link is a [[link]]: a veth pair whose end AName is in namespace ANetns
// with addresses AAddresses, and whose end BName is in BNetns with
// BAddresses. Both ends are created in their namespaces (never in the
// caller's), set to MTU (0: the kernel's 1500) and up.
type Link struct {
	ANetns     string        `toml:"a_netns"`
	AName      string        `toml:"a_name"`
	AAddresses []PrefixValue `toml:"a_addresses"`
	BNetns     string        `toml:"b_netns"`
	BName      string        `toml:"b_name"`
	BAddresses []PrefixValue `toml:"b_addresses"`
	MTU        int           `toml:"mtu"`
}

// NSRule is an `ip rule` of a namespace: the syntax of [uswitch]
// ip_rules, but without a priority the kernel picks one (as `ip rule
// add` does: one below the lowest non-zero priority in use).
type NSRule struct {
	route.Rule
	// HasPriority is false when the kernel picks the priority.
	HasPriority bool
	Text        string
}

// UnmarshalText parses `ip rule add` arguments.
func (r *NSRule) UnmarshalText(b []byte) error {
	ru, hasPrio, err := parseRule(string(b))
	if err != nil {
		return err
	}
	if ru.Action == route.ActGoto && !hasPrio {
		return fmt.Errorf("ip rule %q: a goto rule needs a priority", b)
	}
	*r = NSRule{Rule: ru, HasPriority: hasPrio, Text: string(b)}
	return nil
}

// NSSysctl is one sysctl of a namespace, checked: Key is dotted
// (net.ipv4.ip_forward), Value what is written to its /proc/sys file.
type NSSysctl struct {
	Key, Value string
}

// perDevice reports whether the sysctl is a device's own
// (net.ipv4.conf.DEV.* or net.ipv4.neigh.DEV.* for a DEV other than all
// and default), which exists only once the device does.
func (s NSSysctl) perDevice() bool {
	f := strings.Split(s.Key, ".")
	return len(f) >= 5 && (f[2] == "conf" || f[2] == "neigh") && f[3] != "all" && f[3] != "default"
}

// nsSysctlRe is what a namespace may set: net.ipv4.* only (the lab is
// about the IPv4 datapath, and nothing else of the namespace's kernel
// is uswitch's business).
var nsSysctlRe = regexp.MustCompile(`^net\.ipv4(\.[A-Za-z0-9_\-]+)+$`)

// flattenSysctls turns a sysctl table (dotted keys quoted or nested)
// into key/value pairs, each key checked by valid, net.ipv4.ip_forward
// first (writing it resets every device's forwarding,
// devinet_sysctl_forward), the rest sorted. badKey is the key of the
// error, if any. Both the namespaces' sysctl tables and [uswitch.sysctl]
// are read by it.
func flattenSysctls(m map[string]any, valid func(key string) error) (out []NSSysctl, badKey string, err error) {
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			key := prefix + k
			var v string
			switch x := m[k].(type) {
			case map[string]any:
				if err := walk(key+".", x); err != nil {
					return err
				}
				continue
			case int64:
				v = strconv.FormatInt(x, 10)
			case bool:
				v = "0"
				if x {
					v = "1"
				}
			default:
				badKey = key
				return fmt.Errorf("%v: want an integer", m[k])
			}
			if err := valid(key); err != nil {
				badKey = key
				return err
			}
			out = append(out, NSSysctl{Key: key, Value: v})
		}
		return nil
	}
	if err := walk("", m); err != nil {
		return nil, badKey, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		fi, fj := out[i].Key == "net.ipv4.ip_forward", out[j].Key == "net.ipv4.ip_forward"
		if fi != fj {
			return fi
		}
		return out[i].Key < out[j].Key
	})
	return out, "", nil
}

// nsSysctl is a namespace's sysctl key check: net.ipv4.* only.
func nsSysctl(key string) error {
	if !nsSysctlRe.MatchString(key) {
		return fmt.Errorf("not a net.ipv4.* sysctl (a namespace may set only those)")
	}
	return nil
}

// checkTopology checks the [[link]] tables and the namespaces' loopback
// addresses, routes and sysctls: ns maps a namespace's name to its
// index, attached a namespace to its TUN.
func (c *Config) checkTopology(src string, ns map[string]int, attached map[string]string) error {
	fail := func(key string, format string, a ...any) error {
		return &ConfigError{File: c.File, Line: valueLine(src, key, a...), Key: key, Err: fmt.Errorf(format, a...)}
	}
	// devs are the devices of each namespace the lab makes
	devs := map[string]map[string]bool{}
	for n, t := range attached {
		devs[n] = map[string]bool{t: true}
	}
	for _, l := range c.Links {
		for _, e := range []struct{ side, netns, name string }{{"a", l.ANetns, l.AName}, {"b", l.BNetns, l.BName}} {
			if e.netns == "" || e.name == "" {
				return fail("link", "a [[link]] needs a_netns, a_name, b_netns and b_name")
			}
			if _, ok := ns[e.netns]; !ok {
				return fail("link."+e.side+"_netns", "%q: no [[namespace]] of that name", e.netns)
			}
			if !validDevName(e.name) || e.name == "lo" {
				return fail("link."+e.side+"_name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", e.name)
			}
			if devs[e.netns][e.name] {
				return fail("link."+e.side+"_name", "%q: namespace %q already has a device of that name", e.name, e.netns)
			}
			if devs[e.netns] == nil {
				devs[e.netns] = map[string]bool{}
			}
			devs[e.netns][e.name] = true
		}
		if l.MTU != 0 && (l.MTU < 68 || l.MTU > 65535) {
			return fail("link.mtu", "%d: want 68-65535", l.MTU)
		}
	}
	if err := c.checkAddresses(src); err != nil {
		return err
	}
	for i := range c.Namespaces {
		n := &c.Namespaces[i]
		for _, r := range n.Routes {
			switch {
			case r.Dev != "" && r.Dev != "lo" && !devs[n.Name][r.Dev]:
				return fail("namespace.routes", "%q: namespace %q has no device %q (its TUN or a [[link]] end)", r.Text, n.Name, r.Dev)
			case r.Dev == "" && !r.Gateway.IsValid() && attached[n.Name] == "":
				return fail("namespace.routes", "%q: namespace %q has no TUN: give dev or via", r.Text, n.Name)
			}
		}
		sc, bad, err := flattenSysctls(n.Sysctl, nsSysctl)
		if err != nil {
			return &ConfigError{File: c.File, Line: nsLine(src, n.Name, bad), Key: "namespace.sysctl." + bad, Err: err}
		}
		n.Sysctls = sc
	}
	return nil
}

// nsLine is the line of the first mention of needle (a dotted key,
// quoted or not) inside the [[namespace]] block named name, falling
// back to the first anywhere; 0 if none.
func nsLine(src, name, needle string) int {
	lines := strings.Split(src, "\n")
	nameRe := regexp.MustCompile(`^\s*name\s*=\s*"` + regexp.QuoteMeta(name) + `"`)
	inNS, first := false, 0
	var block []int // line indexes of the current namespace block
	for i, ln := range lines {
		t := strings.TrimSpace(ln)
		if strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "[namespace.") && !strings.HasPrefix(t, "[[namespace.") {
			inNS, block = t == "[[namespace]]", block[:0]
		}
		if first == 0 && strings.Contains(ln, needle) {
			first = i + 1
		}
		if !inNS {
			continue
		}
		block = append(block, i)
		if nameRe.MatchString(ln) {
			// this is the block: search it from its start to its end
			for _, j := range block {
				if strings.Contains(lines[j], needle) {
					return j + 1
				}
			}
			for j := i + 1; j < len(lines); j++ {
				t := strings.TrimSpace(lines[j])
				if strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "[namespace.") && !strings.HasPrefix(t, "[[namespace.") {
					break
				}
				if strings.Contains(lines[j], needle) {
					return j + 1
				}
			}
		}
	}
	return first
}

// linkEnds are the [[link]] ends the lab puts in the namespace.
func (c *Config) linkEnds(ns string) (ends []linkEnd) {
	for _, l := range c.Links {
		if l.ANetns == ns {
			ends = append(ends, linkEnd{l.AName, l.AAddresses})
		}
		if l.BNetns == ns {
			ends = append(ends, linkEnd{l.BName, l.BAddresses})
		}
	}
	return ends
}

type linkEnd struct {
	name  string
	addrs []PrefixValue
}

// linkAddr is an address on one of the lab's links: where it is set
// (the table, its index among the file's tables of that kind, the key)
// and which link it is on.
type linkAddr struct {
	p     netip.Prefix
	link  int
	table string
	index int
	key   string
}

// checkAddresses refuses addresses that make routing ambiguous. Each
// [[interface]] is a link between uswitch and its namespace (its
// addresses and the namespace's), each [[link]] one between two
// namespaces; the two sides of a link share its subnets, but two links
// must not have the same address nor overlapping subnets, and a
// namespace's address must not be its TUN's (uswitch's side). The
// loopback addresses are not on a link (real servers share a VIP there).
func (c *Config) checkAddresses(src string) error {
	var all []linkAddr
	nsIndex := map[string]int{}
	for i, n := range c.Namespaces {
		nsIndex[n.Name] = i
	}
	// the ports of a bridge and the bridge itself are one link (one
	// Ethernet segment)
	bridgeLink := map[string]int{}
	for k, b := range c.Bridges {
		id := len(c.Interfaces) + len(c.Links) + k
		bridgeLink[b.Name] = id
		for _, a := range b.Addresses {
			all = append(all, linkAddr{a.Prefix, id, "bridge", k, "addresses"})
		}
	}
	for i, it := range c.Interfaces {
		id := i
		if it.Bridge != "" {
			id = bridgeLink[it.Bridge]
		}
		for _, a := range it.Addresses {
			all = append(all, linkAddr{a.Prefix, id, "interface", i, "addresses"})
		}
		j, ok := nsIndex[it.Netns]
		if !ok {
			continue // a node's link to a switch or peer: in no namespace
		}
		for _, a := range c.Namespaces[j].Addresses {
			all = append(all, linkAddr{a.Prefix, id, "namespace", j, "addresses"})
		}
	}
	for i, l := range c.Links {
		for _, a := range l.AAddresses {
			all = append(all, linkAddr{a.Prefix, len(c.Interfaces) + i, "link", i, "a_addresses"})
		}
		for _, a := range l.BAddresses {
			all = append(all, linkAddr{a.Prefix, len(c.Interfaces) + i, "link", i, "b_addresses"})
		}
	}
	line := func(a linkAddr) int { return blockValueLine(src, a.table, a.index, a.key, a.p.String()) }
	where := func(a linkAddr) string {
		switch a.table {
		case "interface":
			return fmt.Sprintf("interface %q", c.Interfaces[a.index].Name)
		case "namespace":
			return fmt.Sprintf("namespace %q", c.Namespaces[a.index].Name)
		case "bridge":
			return fmt.Sprintf("bridge %q", c.Bridges[a.index].Name)
		}
		l := c.Links[a.index]
		if a.key == "a_addresses" {
			return fmt.Sprintf("link end %q in %q", l.AName, l.ANetns)
		}
		return fmt.Sprintf("link end %q in %q", l.BName, l.BNetns)
	}
	// equal addresses first: they also overlap, and are the worse news
	for pass := 0; pass < 2; pass++ {
		for i, a := range all {
			for _, b := range all[:i] {
				same := a.p.Addr() == b.p.Addr()
				if pass == 0 && !same || pass == 1 && (a.link == b.link || !a.p.Overlaps(b.p)) {
					continue
				}
				// report at the later of the two in the file
				la, lb := line(a), line(b)
				if lb > la {
					a, b, la = b, a, lb
				}
				var msg string
				switch {
				case pass == 1:
					msg = fmt.Sprintf("%s: the subnet of %s overlaps %s of %s (another link)", a.p, where(a), b.p, where(b))
				case a.link == b.link && (a.table == "interface") != (b.table == "interface"):
					msg = fmt.Sprintf("%s: a namespace's address on its TUN is uswitch's (%s's)", a.p, where(b))
					if a.table == "interface" {
						msg = fmt.Sprintf("%s: uswitch's address on a TUN is the namespace's (%s's)", a.p, where(b))
					}
				default:
					msg = fmt.Sprintf("%s: the address of %s is also that of %s", a.p, where(a), where(b))
				}
				return &ConfigError{File: c.File, Line: la, Key: a.table + "." + a.key, Err: errors.New(msg)}
			}
		}
	}
	return nil
}

// blockValueLine is the line of value v of key in the index-th
// [[table]] of the file, or of the key there, or valueLine's guess when
// the tables are not written as [[table]] headers.
func blockValueLine(src, table string, index int, key, v string) int {
	lines := strings.Split(src, "\n")
	header := "[[" + table + "]]"
	keyRe := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	n, keyLine := -1, 0
	in := false
	for i, ln := range lines {
		t := strings.TrimSpace(ln)
		if strings.HasPrefix(t, "[") {
			if t == header {
				n++
				in = n == index
				keyLine = 0
				continue
			}
			if !strings.HasPrefix(t, "["+table+".") && !strings.HasPrefix(t, "[["+table+".") {
				if in {
					break
				}
				continue
			}
		}
		if !in {
			continue
		}
		if keyRe.MatchString(ln) {
			keyLine = i + 1
		}
		if keyLine > 0 && (strings.Contains(ln, `"`+v+`"`) || strings.Contains(ln, `'`+v+`'`)) {
			return i + 1
		}
	}
	if keyLine > 0 {
		return keyLine
	}
	return valueLine(src, table+"."+key, v)
}
