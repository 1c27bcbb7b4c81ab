package lab

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/uswitch-lab/uswitch/encap"
	"github.com/uswitch-lab/uswitch/link"
)

// Tunnel devices of a node: a [[node.interface]] of kind "vxlan" (what
// flannel and Calico make: vxlan.calico, flannel.1) or "ipip" (Calico's
// tunl0), played by uswitch itself (link/tunnel.go), with the keys of
// `ip link add NAME type vxlan|ipip ...` and the neighbour and fdb
// entries Calico and flannel program per remote node:
//
//	[[node.interface]]
//	name = "vxlan.calico"
//	kind = "vxlan"
//	vni = 4096
//	port = 4789
//	local = "192.168.0.1"
//	learning = false
//	addresses = ["10.244.0.0/32"]
//	neigh = ["10.244.1.0 lladdr 66:6b:00:00:00:02"]            # ip neigh replace ... nud permanent
//	fdb = ["66:6b:00:00:00:02 dst 192.168.0.2"]                 # bridge fdb append ... dev vxlan.calico
//
// Their routes are the node's ([node.uswitch] routes, e.g.
// "10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink").

// Tunnel holds a tunnel interface's keys.
type Tunnel struct {
	// VNI is the vxlan device's id (required for vxlan).
	VNI *uint32 `toml:"vni"`
	// Port is the UDP destination and listening port (dstport; 0: the
	// kernel's default, 8472).
	Port PortValue `toml:"port"`
	// Local is the outer source (local); Remote an ipip device's
	// other end (none: the route's next hop, as tunl0).
	Local  AddrValue `toml:"local"`
	Remote AddrValue `toml:"remote"`
	// SrcPort is the source port range [MIN, MAX] (srcport MIN MAX;
	// none: the local port range).
	SrcPort []int `toml:"srcport"`
	// TTL is a number or "inherit" (none: the route's, 64, for vxlan;
	// inherit for ipip); TOS a number or "inherit".
	TTL TTLValue `toml:"ttl"`
	TOS TOSValue `toml:"tos"`
	// DF is "unset" (default), "set" or "inherit" (vxlan).
	DF DFValue `toml:"df"`
	// UDPCsum is udpcsum (default true, as the kernel).
	UDPCsum *bool `toml:"udpcsum"`
	// Learning is the FDB's learning (default true, as `ip link add`;
	// Calico and flannel turn it off).
	Learning *bool `toml:"learning"`
	// Ageing is the learned FDB entries' lifetime in seconds (300).
	Ageing *int `toml:"ageing"`
	// PMTUDisc sets DF on every ipip outer packet (default off:
	// tunl0's nopmtudisc).
	PMTUDisc *bool `toml:"pmtudisc"`
	// FDB and Neigh are the static entries: "MAC dst IP [port P] [vni
	// N]" and "IP lladdr MAC".
	FDB   []FDBValue   `toml:"fdb"`
	Neigh []NeighValue `toml:"neigh"`
}

// TTLValue is a ttl key: 1-255 or "inherit" (Inherit).
type TTLValue struct {
	TTL     uint8
	Inherit bool
	Set     bool
}

// UnmarshalTOML reads a number or "inherit".
func (v *TTLValue) UnmarshalTOML(x any) error {
	switch t := x.(type) {
	case int64:
		if t < 0 || t > 255 {
			return fmt.Errorf("ttl %d: want 0-255 or \"inherit\"", t)
		}
		*v = TTLValue{TTL: uint8(t), Set: true}
	case string:
		if t != "inherit" {
			return fmt.Errorf("ttl %q: want 0-255 or \"inherit\"", t)
		}
		*v = TTLValue{Inherit: true, Set: true}
	default:
		return fmt.Errorf("ttl %v: want 0-255 or \"inherit\"", x)
	}
	return nil
}

// TOSValue is a tos key: 0-255 or "inherit" (stored as 1, as the
// kernel does).
type TOSValue struct {
	TOS uint8
	Set bool
}

// UnmarshalTOML reads a number or "inherit".
func (v *TOSValue) UnmarshalTOML(x any) error {
	switch t := x.(type) {
	case int64:
		if t < 0 || t > 255 || t&1 != 0 {
			return fmt.Errorf("tos %d: want an even 0-254 or \"inherit\"", t)
		}
		*v = TOSValue{TOS: uint8(t), Set: true}
	case string:
		if t != "inherit" {
			return fmt.Errorf("tos %q: want 0-254 or \"inherit\"", t)
		}
		*v = TOSValue{TOS: 1, Set: true}
	default:
		return fmt.Errorf("tos %v: want 0-254 or \"inherit\"", x)
	}
	return nil
}

// DFValue is a df key.
type DFValue struct {
	encap.DF
	Set bool
}

// UnmarshalText reads unset, set or inherit.
func (v *DFValue) UnmarshalText(b []byte) error {
	switch string(b) {
	case "unset":
		*v = DFValue{encap.DFUnset, true}
	case "set":
		*v = DFValue{encap.DFSet, true}
	case "inherit":
		*v = DFValue{encap.DFInherit, true}
	default:
		return fmt.Errorf("df %q: want unset, set or inherit", b)
	}
	return nil
}

// FDBValue is an fdb entry key.
type FDBValue struct{ encap.FDBEntry }

// UnmarshalText parses "MAC dst IP [port P] [vni N]".
func (v *FDBValue) UnmarshalText(b []byte) error {
	e, err := encap.ParseFDBEntry(string(b))
	v.FDBEntry = e
	return err
}

// NeighValue is a neigh entry key.
type NeighValue struct{ encap.Neigh }

// UnmarshalText parses "IP lladdr MAC".
func (v *NeighValue) UnmarshalText(b []byte) error {
	n, err := encap.ParseNeigh(string(b))
	v.Neigh = n
	return err
}

// hasTunnelKeys says whether any tunnel key is given.
func (t *Tunnel) hasTunnelKeys() []string {
	var k []string
	add := func(b bool, name string) {
		if b {
			k = append(k, name)
		}
	}
	add(t.VNI != nil, "vni")
	add(t.Port != 0, "port")
	add(t.Local.IsValid(), "local")
	add(t.Remote.IsValid(), "remote")
	add(t.SrcPort != nil, "srcport")
	add(t.TTL.Set, "ttl")
	add(t.TOS.Set, "tos")
	add(t.DF.Set, "df")
	add(t.UDPCsum != nil, "udpcsum")
	add(t.Learning != nil, "learning")
	add(t.Ageing != nil, "ageing")
	add(t.PMTUDisc != nil, "pmtudisc")
	add(len(t.FDB) > 0, "fdb")
	add(len(t.Neigh) > 0, "neigh")
	return k
}

// checkTunnel checks a tunnel interface's keys (node: the interface is
// a node's), and that other kinds have none.
func (it *Interface) checkTunnel(node bool, fail func(string, string, ...any) error) error {
	keys := it.Tunnel.hasTunnelKeys()
	if !it.Kind.IsTunnel() {
		if len(keys) > 0 {
			return fail("interface."+keys[0], "%q: %s is a key of a kind = \"vxlan\" or \"ipip\" interface", it.Name, keys[0])
		}
		return nil
	}
	if !node {
		return fail("interface.kind", "%q: a %s device is a node's ([[node.interface]]): its packets are the host's own", it.Name, it.Kind)
	}
	if it.Netns != "" {
		return fail("interface.netns", "%q: a tunnel device is in no namespace", it.Netns)
	}
	if it.Decap.Kind != link.DecapNone || it.Offload != nil || it.Hairpin {
		return fail("interface.kind", "%q: a tunnel device has no decap, offload or hairpin", it.Name)
	}
	t := &it.Tunnel
	not := func(allowed map[string]bool) error {
		for _, k := range keys {
			if !allowed[k] {
				return fail("interface."+k, "%q: a %s device has no %s", it.Name, it.Kind, k)
			}
		}
		return nil
	}
	switch it.Kind {
	case KindVXLAN:
		if err := not(map[string]bool{"vni": true, "port": true, "local": true, "srcport": true, "ttl": true, "tos": true, "df": true,
			"udpcsum": true, "learning": true, "ageing": true, "fdb": true, "neigh": true}); err != nil {
			return err
		}
		if t.VNI == nil {
			return fail("interface.name", "%q: a vxlan device needs vni", it.Name)
		}
		if *t.VNI >= 1<<24 {
			return fail("interface.vni", "%d: want 0-16777215", *t.VNI)
		}
		if t.SrcPort != nil {
			if len(t.SrcPort) != 2 || t.SrcPort[0] < 1 || t.SrcPort[1] > 65535 || t.SrcPort[0] > t.SrcPort[1] {
				return fail("interface.srcport", "%v: want [MIN, MAX] with 1 <= MIN <= MAX <= 65535", t.SrcPort)
			}
		}
		if t.Ageing != nil && (*t.Ageing < 0 || *t.Ageing > 1000000) {
			return fail("interface.ageing", "%d: want 0-1000000 seconds", *t.Ageing)
		}
		for _, n := range t.Neigh {
			if n.MAC == it.LinkMAC() {
				return fail("interface.neigh", "%q: the device's own MAC", n.String())
			}
		}
	case KindIPIP:
		if err := not(map[string]bool{"local": true, "remote": true, "ttl": true, "tos": true, "pmtudisc": true}); err != nil {
			return err
		}
		if t.TTL.Inherit {
			t.TTL = TTLValue{Set: true} // 0 is inherit for ipip
		}
	}
	return nil
}

// tunnelMTU is a tunnel device's MTU without an mtu key: its lower
// device's 1500 less the overhead (vxlan 1450, ipip 1480).
func tunnelMTU(k IfaceKind) int {
	if k == KindVXLAN {
		return link.DefaultMTU - encap.VXLANOverhead
	}
	return link.DefaultMTU - encap.IPIPOverhead
}

// vxlanConfig is the datapath's view of a vxlan interface.
func (it *Interface) vxlanConfig() link.VXLANConfig {
	t := &it.Tunnel
	c := link.VXLANConfig{Port: uint16(t.Port), Local: t.Local.Addr, TTL: t.TTL.TTL, TTLInherit: t.TTL.Inherit,
		TOS: t.TOS.TOS, DF: t.DF.DF, UDPCsum: true, Learning: true, MAC: it.LinkMAC(), Addrs: prefixes(it.Addresses)}
	if t.VNI != nil {
		c.VNI = *t.VNI
	}
	if len(t.SrcPort) == 2 {
		c.PortMin, c.PortMax = uint16(t.SrcPort[0]), uint16(t.SrcPort[1])
	}
	if t.UDPCsum != nil {
		c.UDPCsum = *t.UDPCsum
	}
	if t.Learning != nil {
		c.Learning = *t.Learning
	}
	if t.Ageing != nil {
		c.Ageing = int64(*t.Ageing) * 1e9
		if *t.Ageing == 0 {
			c.Ageing = -1 // no ageing
		}
	}
	for _, f := range t.FDB {
		c.FDB = append(c.FDB, f.FDBEntry)
	}
	for _, n := range t.Neigh {
		c.Neigh = append(c.Neigh, n.Neigh)
	}
	return c
}

// ipipConfig is the datapath's view of an ipip interface.
func (it *Interface) ipipConfig() link.IPIPConfig {
	t := &it.Tunnel
	c := link.IPIPConfig{Local: t.Local.Addr, Remote: t.Remote.Addr, TTL: t.TTL.TTL, TOS: t.TOS.TOS}
	if t.PMTUDisc != nil {
		c.PMTUDisc = *t.PMTUDisc
	}
	return c
}

// tunnelDescribe is a tunnel interface's line in Describe.
func (it *Interface) tunnelDescribe() string {
	t := &it.Tunnel
	var b strings.Builder
	if it.Kind == KindVXLAN {
		port := uint16(t.Port)
		if port == 0 {
			port = encap.PortLinux
		}
		fmt.Fprintf(&b, "vxlan id %d dstport %d", *t.VNI, port)
	} else {
		b.WriteString("ipip remote ")
		b.WriteString(anyAddr(t.Remote.Addr))
	}
	b.WriteString(" local " + anyAddr(t.Local.Addr))
	for _, f := range t.FDB {
		fmt.Fprintf(&b, "; fdb %s", f.FDBEntry)
	}
	for _, n := range t.Neigh {
		fmt.Fprintf(&b, "; neigh %s", n.Neigh)
	}
	return b.String()
}

func anyAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}
