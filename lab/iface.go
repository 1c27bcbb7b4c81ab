package lab

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"

	"github.com/uswitch-lab/uswitch/link"
)

// IfaceKind is an interface's kind: "tun" (the default) or "tap".
type IfaceKind string

// The interface kinds.
const (
	KindTUN IfaceKind = "tun"
	KindTAP IfaceKind = "tap"
	// KindVXLAN and KindIPIP are a node's tunnel devices (tunnel.go).
	KindVXLAN IfaceKind = "vxlan"
	KindIPIP  IfaceKind = "ipip"
)

// IsTunnel says the kind is a tunnel device's.
func (k IfaceKind) IsTunnel() bool { return k == KindVXLAN || k == KindIPIP }

// UnmarshalText checks the kind.
func (k *IfaceKind) UnmarshalText(b []byte) error {
	switch IfaceKind(b) {
	case KindTUN, KindTAP, KindVXLAN, KindIPIP:
		*k = IfaceKind(b)
		return nil
	}
	return fmt.Errorf("kind %q: want tun, tap, vxlan or ipip", b)
}

// MACValue is a MAC address key, "02:75:73:00:00:01"; Set is false when
// the key is absent.
type MACValue struct {
	Addr [6]byte
	Set  bool
}

// UnmarshalText parses a unicast Ethernet address.
func (m *MACValue) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("mac %q: want an Ethernet address such as 02:75:73:00:00:01", b)
	}
	var a [6]byte
	copy(a[:], hw)
	if a[0]&1 != 0 || a == [6]byte{} {
		return fmt.Errorf("mac %q: want a unicast, non-zero address", b)
	}
	*m = MACValue{Addr: a, Set: true}
	return nil
}

func (m MACValue) String() string { return macString(m.Addr) }

func macString(a [6]byte) string { return net.HardwareAddr(a[:]).String() }

// DefaultMAC is uswitch's MAC on a TAP interface without a mac key:
// 02:75:73 ("us", locally administered, unicast) followed by the low
// three bytes of the FNV-1a hash of the interface's name, so it is the
// same in every run of the lab.
func DefaultMAC(iface string) [6]byte {
	h := fnv.New32a()
	h.Write([]byte(iface))
	s := h.Sum32()
	return [6]byte{0x02, 0x75, 0x73, byte(s >> 16), byte(s >> 8), byte(s)}
}

// LinkMAC is uswitch's MAC on the interface (a TAP's): mac, or
// DefaultMAC of its name.
func (it *Interface) LinkMAC() [6]byte {
	if it.MAC.Set {
		return it.MAC.Addr
	}
	return DefaultMAC(it.Name)
}

// DatapathOptions are the datapath options the config asks for: the
// TAP interfaces' Ethernet ports, and the decapsulating devices, each
// with its namespace's addresses (its TUN's, lo's and its [[link]]
// ends').
func (c *Config) DatapathOptions() []link.DatapathOption {
	var opts []link.DatapathOption
	for _, it := range c.engineIfaces() {
		switch {
		case it.Bridge != "":
			opts = append(opts, link.WithBridgePort(it.Name))
		case it.Kind == KindTAP:
			opts = append(opts, link.WithTAP(it.Name, it.LinkMAC(), prefixes(it.Addresses)))
		case it.Kind == KindVXLAN:
			opts = append(opts, link.WithVXLAN(it.Name, it.MTU, it.vxlanConfig()))
		case it.Kind == KindIPIP:
			opts = append(opts, link.WithIPIP(it.Name, it.MTU, it.ipipConfig()))
		}
		if it.Decap.Kind == link.DecapNone {
			continue
		}
		var addrs []PrefixValue
		for _, n := range c.Namespaces {
			if n.Name == it.Netns {
				addrs = append(append(addrs, n.Addresses...), n.Loopback...)
			}
		}
		for _, e := range c.linkEnds(it.Netns) {
			addrs = append(addrs, e.addrs...)
		}
		opts = append(opts, link.WithDecap(it.Name, it.Decap, prefixes(addrs)))
	}
	return opts
}

// prefixes are the prefixes of config values.
func prefixes(vs []PrefixValue) []netip.Prefix {
	out := make([]netip.Prefix, len(vs))
	for i, v := range vs {
		out[i] = v.Prefix
	}
	return out
}
