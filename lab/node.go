package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Multi-node labs. A [[node]] is a host of its own: an engine with its
// own rule set, routes, ip rules, sysctls, IPVS, ipsets, conntrack and
// bridges, written as a lab file's engine is ([node.uswitch],
// [[node.interface]], [[node.bridge]]), plus a host namespace,
// LAB-NODE-host, that holds the node's addresses and whose sockets are
// the node's (`server = [...]` starts built-in servers there):
//
//	            the lab's engine: the switch (a [[bridge]], e.g. lan)
//	   client ns ── TAP port ┤ port a-eth0 ─── wire ─── eth0 ┐ node a's engine
//	                         │ port b-eth0 ─── wire ─── eth0 ┐ node b's engine
//	                                                         ├─ cni0 ── TAP ── pod ns
//	                                                         └─ host TUNs ── b's host ns
//
// A node's interface with switch = "BRIDGE" is its link onto the lab's
// bridge of that name (an Ethernet wire: wire.go in package link), one
// with peer = "NODE:IFACE" a routed link to another node's interface;
// the others are TUN or TAP devices into the lab's namespaces (pods), as
// the lab's own. A one-node lab file ([uswitch] and no [[node]]) is what
// it always was.

// Node is a [[node]] table.
type Node struct {
	Name string `toml:"name"`
	// Uswitch is the node's engine state: the keys of [uswitch].
	Uswitch Router `toml:"uswitch"`
	// Interfaces are the node's devices: TUN/TAP into the lab's
	// namespaces, its link onto the lab's switch (switch = ...), or a
	// routed link to another node (peer = ...).
	Interfaces []Interface `toml:"interface"`
	// Bridges are the node's own bridges (cni0).
	Bridges []Bridge `toml:"bridge"`
	// Dummies are the node's dummy devices (kube-ipvs0).
	Dummies []Dummy `toml:"dummy"`
	// Servers run in the node's host namespace (hostNetwork servers).
	Servers []Server `toml:"server"`
	// SnapshotNode are the keys of a node made from a snapshot
	// (snapshot.go).
	SnapshotNode

	// HostNetns is the node's host namespace, "<lab>-<node>-host".
	HostNetns string `toml:"-"`
	// Engine is the node's engine as a one-engine lab config, checked
	// (its Ruleset, IPVS, sysctls, FIB: as a lab's).
	Engine *Config `toml:"-"`
}

// hostNetnsRe is what a host namespace's name may be: a namespace name
// (`ip netns add` refuses "/", "." and ".."; the -host suffix rules those
// out) of the characters lab names use.
var hostNetnsRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,31}$`)

// SwitchPortName is the name of the switch's port that node's interface
// iface plugs into ("a-eth0").
func SwitchPortName(node, iface string) string { return node + "-" + iface }

// HostDevName is the name a node's datapath knows the host TUN mirroring
// its device dev by ("host-eth0"); in the host namespace it is dev.
func HostDevName(dev string) string { return "host-" + dev }

// engineIfaces are the interfaces of the config's engine: its own, and
// for a lab with nodes the switch ports the nodes' links plug into.
func (c *Config) engineIfaces() []Interface {
	if len(c.switchPorts) == 0 {
		return c.Interfaces
	}
	return append(append([]Interface(nil), c.Interfaces...), c.switchPorts...)
}

// Node returns the node called name (nil: none).
func (c *Config) Node(name string) *Node {
	for i := range c.Nodes {
		if c.Nodes[i].Name == name {
			return &c.Nodes[i]
		}
	}
	return nil
}

// checkNodes checks the [[node]] tables: names, host namespaces, the
// switch ports, which namespaces the nodes attach (one device per
// namespace in the whole lab), then each node's engine as a lab file's
// (checkNode). ns and attached are the lab's namespaces and attachments
// so far; the host namespaces and the nodes' attachments are added.
func (c *Config) checkNodes(src string, ns map[string]int, attached map[string]string, ifs map[string]bool) error {
	fail := func(key string, format string, a ...any) error {
		return &ConfigError{File: c.File, Line: valueLine(src, key, a...), Key: key, Err: fmt.Errorf(format, a...)}
	}
	if len(c.Nodes) == 0 {
		return nil
	}
	if c.Name == "" {
		return &ConfigError{File: c.File, Line: 1, Key: "name", Err: errors.New("a lab with [[node]] tables needs a name (its nodes' host namespaces are NAME-NODE-host)")}
	}
	seen := map[string]bool{}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if !validDevName(n.Name) || n.Name == "lo" {
			return fail("node.name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", n.Name)
		}
		if seen[n.Name] {
			return fail("node.name", "%q appears twice", n.Name)
		}
		seen[n.Name] = true
		n.HostNetns = c.Name + "-" + n.Name + "-host"
		if !hostNetnsRe.MatchString(n.HostNetns) {
			return fail("node.name", "%q: its host namespace %q is not a valid namespace name (at most 31 characters of A-Z a-z 0-9 _ . -): shorten the lab's or the node's name", n.Name, n.HostNetns)
		}
		if _, dup := ns[n.HostNetns]; dup {
			return fail("node.name", "%q: its host namespace %q is also a [[namespace]]", n.Name, n.HostNetns)
		}
		ns[n.HostNetns] = -1
		if err := checkServers(n.Servers, n.Name, "node.server", fail); err != nil {
			return err
		}
	}
	c.switchPorts = nil
	for i := range c.Nodes {
		n := &c.Nodes[i]
		for j := range n.Interfaces {
			it := &n.Interfaces[j]
			switch {
			case it.Switch != "" && it.Peer != "":
				return fail("node.interface.switch", "%q: an interface plugs into a switch or a peer, not both", it.Switch)
			case it.Switch != "":
				found := false
				for _, b := range c.Bridges {
					found = found || b.Name == it.Switch
				}
				if !found {
					return fail("node.interface.switch", "%q: the lab has no [[bridge]] of that name (the switch the node plugs into)", it.Switch)
				}
				pn := SwitchPortName(n.Name, it.Name)
				if !validDevName(pn) {
					return fail("node.interface.name", "%q: the switch's port for it, %q, is not a valid device name (at most 15 characters)", it.Name, pn)
				}
				if ifs[pn] {
					return fail("node.interface.name", "%q: the switch's port for it, %q, is also a device of the lab's", it.Name, pn)
				}
				ifs[pn] = true
				c.switchPorts = append(c.switchPorts, Interface{Name: pn, Kind: KindTAP, Bridge: it.Switch, MTU: it.MTU})
			case it.Peer != "":
				pn, pi, ok := strings.Cut(it.Peer, ":")
				var peer *Interface
				if p := c.Node(pn); ok && p != nil {
					for k := range p.Interfaces {
						if p.Interfaces[k].Name == pi {
							peer = &p.Interfaces[k]
						}
					}
				}
				if peer == nil {
					return fail("node.interface.peer", "%q: want NODE:INTERFACE naming another node's interface", it.Peer)
				}
				if pn == n.Name {
					return fail("node.interface.peer", "%q: a node's link to itself", it.Peer)
				}
				if peer.Peer != n.Name+":"+it.Name {
					return fail("node.interface.peer", "%q: that interface's peer must be %q (a link names both ends)", it.Peer, n.Name+":"+it.Name)
				}
				if peer.Kind != it.Kind && !(peer.Kind == "" && it.Kind == KindTUN || peer.Kind == KindTUN && it.Kind == "") {
					return fail("node.interface.peer", "%q: both ends of a link are of one kind (tun or tap)", it.Peer)
				}
			case it.Kind.IsTunnel():
			default:
				if it.Netns == "" {
					continue // checkNode names it
				}
				if _, ok := ns[it.Netns]; !ok || ns[it.Netns] < 0 {
					return fail("node.interface.netns", "%q: no [[namespace]] of that name", it.Netns)
				}
				if o, dup := attached[it.Netns]; dup {
					return fail("node.interface.netns", "%q already has interface %q (one device per namespace in the lab)", it.Netns, o)
				}
				attached[it.Netns] = it.Name
			}
		}
	}
	for i := range c.Nodes {
		if err := c.checkNode(src, i); err != nil {
			return err
		}
	}
	return nil
}

// checkNode checks node i's engine as a lab file's engine: its table's
// lines are read as a file of their own ([node.uswitch] as [uswitch],
// [[node.interface]] as [[interface]]), so errors keep the file's line
// numbers and name the node's keys.
func (c *Config) checkNode(src string, i int) error {
	n := &c.Nodes[i]
	for j := range n.Interfaces {
		it := &n.Interfaces[j]
		if it.Switch != "" && it.Kind == "" {
			it.Kind = KindTAP // an Ethernet link
		}
		if it.Kind.IsTunnel() && it.MTU == 0 {
			it.MTU = tunnelMTU(it.Kind)
		}
	}
	nc := &Config{File: c.File, Name: c.Name, Uswitch: n.Uswitch, Interfaces: n.Interfaces, Bridges: n.Bridges,
		Dummies: n.Dummies, Namespaces: c.Namespaces, node: n.Name}
	if err := nc.check(nodeSource(src, i)); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			k := ce.Key
			if !strings.HasPrefix(k, "namespace") {
				k = "node." + k
			}
			return &ConfigError{File: ce.File, Line: ce.Line, Key: k, Err: fmt.Errorf("node %q: %w", n.Name, ce.Err)}
		}
		return err
	}
	// a node's devices without a mac get one of the node's own, so two
	// nodes' eth0 differ on the switch
	for j := range n.Interfaces {
		it := &n.Interfaces[j]
		if (it.Kind == KindTAP || it.Kind == KindVXLAN) && !it.MAC.Set {
			it.MAC = MACValue{Addr: DefaultMAC(n.Name + "/" + it.Name), Set: true}
		}
	}
	n.Engine = nc
	return nil
}

// nodeSource is the text of the i-th [[node]] table as a lab file of its
// own: its lines where they are, its sub-tables' headers without the
// "node." prefix, the [[node]] header and every other line blank.
func nodeSource(src string, i int) string {
	lines := strings.Split(src, "\n")
	k := -1
	in := false
	for j, ln := range lines {
		t := strings.TrimSpace(ln)
		if strings.HasPrefix(t, "[") {
			h := strings.TrimSpace(strings.Trim(t, "[]"))
			if c := strings.IndexAny(t, "#"); c >= 0 {
				h = strings.TrimSpace(strings.Trim(strings.TrimSpace(t[:c]), "[]"))
			}
			double := strings.HasPrefix(t, "[[")
			switch {
			case double && h == "node":
				k++
				in = k == i
				lines[j] = ""
				continue
			case strings.HasPrefix(h, "node."):
				if in {
					if double {
						lines[j] = "[[" + strings.TrimPrefix(h, "node.") + "]]"
					} else {
						lines[j] = "[" + strings.TrimPrefix(h, "node.") + "]"
					}
					continue
				}
			default:
				in = false
			}
		}
		if !in {
			lines[j] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// checkServers checks a namespace's or node's built-in servers: kind and
// port given, one server per protocol and port, bind and reply_src.
func checkServers(ss []Server, owner, key string, fail func(string, string, ...any) error) error {
	seen := map[string]bool{}
	for _, s := range ss {
		if s.Kind == "" || s.Port == 0 {
			return fail(key, "%q: a server needs kind and port", owner)
		}
		proto := "tcp"
		if s.Kind == UDPEcho {
			proto = "udp"
		}
		k := fmt.Sprintf("%s/%d", proto, s.Port)
		if seen[k] {
			return fail(key+".port", "%d: two %s servers on one port in %q", s.Port, proto, owner)
		}
		seen[k] = true
		if s.ReplySrc != "" && s.Kind != UDPEcho {
			return fail(key+".reply_src", "%q: only a udp-echo server chooses its reply's source", s.ReplySrc)
		}
	}
	return nil
}

// ReplySource is how a udp-echo server picks its answers' source.
type ReplySource string

// The reply sources.
const (
	// ReplyDst answers from the address the datagram was sent to
	// (IP_PKTINFO), the default.
	ReplyDst ReplySource = "dst"
	// ReplyRoute lets the kernel's route pick the source (a plain
	// sendto from a socket bound to 0.0.0.0: inet_select_addr on the
	// route's device), as most UDP servers do.
	ReplyRoute ReplySource = "route"
)

// UnmarshalText checks the value.
func (r *ReplySource) UnmarshalText(b []byte) error {
	switch ReplySource(b) {
	case ReplyDst, ReplyRoute:
		*r = ReplySource(b)
		return nil
	}
	return fmt.Errorf("reply_src %q: want dst (IP_PKTINFO) or route (the route's source address)", b)
}

// AddrValue is an IPv4 address key.
type AddrValue struct{ netip.Addr }

// UnmarshalText parses an IPv4 address.
func (a *AddrValue) UnmarshalText(b []byte) error {
	x, err := netip.ParseAddr(string(b))
	if err != nil || !x.Is4() {
		return fmt.Errorf("address %q: want an IPv4 address", b)
	}
	a.Addr = x
	return nil
}
