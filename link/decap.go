package link

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/lvs"
)

// Decapsulation on a TUN: the lab's namespaces have no tunnel devices
// (this kernel has no ipip module, and a lab should not need one), so
// for an interface with `decap` uswitch plays the real server's tunnel
// device itself. It does so as the packet leaves uswitch for that TUN:
// a tunnel packet of the interface's kind addressed to one of the
// namespace's own addresses is written as its inner packet, which the
// namespace's kernel then receives as if from its tunl0 (ipip_rcv,
// net/ipv4/ipip.c; gre_rcv, net/ipv4/ip_gre.c; gue_udp_recv,
// net/ipv4/fou_core.c). Anything else is written unchanged. A packet
// capture of the TUN shows the packet as uswitch routed it (the outer
// one), as tcpdump on the real server's wire would.

// DecapKind is the tunnel an interface decapsulates.
type DecapKind uint8

// The decapsulations.
const (
	DecapNone DecapKind = iota
	DecapIPIP           // IPv4 in IPv4 (protocol 4)
	DecapGRE            // IPv4 in GRE (protocol 47, ethertype 0x0800)
	DecapGUE            // IPIP in GUE over UDP on DecapValue.Port
)

func (k DecapKind) String() string {
	return [...]string{"none", "ipip", "gre", "gue"}[k]
}

// DecapValue is an interface's decap key: "ipip", "gre" or "gue:PORT".
type DecapValue struct {
	Kind DecapKind
	Port uint16 // DecapGUE's UDP port
}

// UnmarshalText parses the kind.
func (d *DecapValue) UnmarshalText(b []byte) error {
	s := string(b)
	switch {
	case s == "ipip":
		*d = DecapValue{Kind: DecapIPIP}
	case s == "gre":
		*d = DecapValue{Kind: DecapGRE}
	case strings.HasPrefix(s, "gue:"):
		n, err := strconv.ParseUint(s[4:], 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("decap %q: want gue:PORT with PORT 1-65535", b)
		}
		*d = DecapValue{Kind: DecapGUE, Port: uint16(n)}
	default:
		return fmt.Errorf("decap %q: want ipip, gre or gue:PORT", b)
	}
	return nil
}

func (d DecapValue) String() string {
	if d.Kind == DecapGUE {
		return fmt.Sprintf("gue:%d", d.Port)
	}
	return d.Kind.String()
}

// decapSpec is a device's decapsulation, fixed when the datapath starts
// and only read afterwards.
type decapSpec struct {
	v       DecapValue
	proto   uint8  // the outer protocol: 4, 47 or 17
	guePort uint16 // DecapGUE's port, else 0
	// addrs are the namespace's addresses (big-endian uint32, as
	// packet.Packet's): only tunnel packets to one of them are opened.
	addrs []uint32
}

// newDecapSpec makes the spec of a decap value for a namespace holding
// addrs; nil for DecapNone.
func newDecapSpec(v DecapValue, addrs []netip.Prefix) *decapSpec {
	var proto uint8
	switch v.Kind {
	case DecapIPIP:
		proto = 4
	case DecapGRE:
		proto = 47
	case DecapGUE:
		proto = 17
	default:
		return nil
	}
	s := &decapSpec{v: v, proto: proto, guePort: v.Port}
	for _, a := range addrs {
		b := a.Addr().As4()
		s.addrs = append(s.addrs, binary.BigEndian.Uint32(b[:]))
	}
	return s
}

// apply returns what to write to the device for the packet b: its inner
// packet (a subslice of b, no copy) when b is a tunnel packet of the
// spec's kind to one of the namespace's addresses, else b. A nil spec
// returns b. It does not allocate.
func (s *decapSpec) apply(b []byte) []byte {
	if s == nil || len(b) < 20 || b[9] != s.proto {
		return b
	}
	dst := binary.BigEndian.Uint32(b[16:20])
	mine := false
	for _, a := range s.addrs {
		if a == dst {
			mine = true
			break
		}
	}
	if !mine {
		return b
	}
	if inner, ok := lvs.Decap(b, s.guePort); ok {
		return inner
	}
	return b
}

// DatapathOption changes a datapath before it starts (NewDatapath).
type DatapathOption func(*Datapath)

// WithDecap makes the datapath decapsulate the tunnel packets of kind v
// it writes to the device dev that are addressed to one of addrs (the
// namespace's addresses): see decap.go.
func WithDecap(dev string, v DecapValue, addrs []netip.Prefix) DatapathOption {
	s := newDecapSpec(v, addrs)
	return func(d *Datapath) {
		if p := d.byName[dev]; p != nil {
			p.decap = s
		}
	}
}
