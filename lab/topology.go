package lab

import (
	"fmt"
	"maps"
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
			if !ifNameRe.MatchString(e.name) || e.name == "lo" {
				return fail("link."+e.side+"_name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo)", e.name)
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
