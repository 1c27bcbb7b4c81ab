package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// physdev match (extensions/libxt_physdev.c; kernel
// net/netfilter/xt_physdev.c physdev_mt_check).

// Physdev option bits (XT_PHYSDEV_OP_* in linux/netfilter/xt_physdev.h).
const (
	PhysdevIn      = 0x01
	PhysdevOut     = 0x02
	PhysdevBridged = 0x04
	PhysdevIsIn    = 0x08
	PhysdevIsOut   = 0x10
)

// PhysdevMatch is "-m physdev".
type PhysdevMatch struct {
	In, Out Iface // bridge port names; a trailing '+' is a wildcard
	Bitmask uint8 // Physdev* bits given
	Invert  uint8 // Physdev* bits inverted
}

func (m *PhysdevMatch) Name() string { return "physdev" }

// physdevIface is xtables_parse_interface: names of at most 15 bytes; an
// empty name matches any port.
func physdevIface(arg string) (Iface, error) {
	if len(arg)+1 > 16 {
		return Iface{}, Errorf("interface name `%s' must be shorter than IFNAMSIZ (%d)", arg, 15)
	}
	f := Iface{Name: arg, Prefix: arg}
	if arg == "" || arg[len(arg)-1] == '+' {
		f.Wildcard = true
		if arg != "" {
			f.Prefix = arg[:len(arg)-1]
		}
	}
	return f, nil
}

func (m *PhysdevMatch) Parse(o *OptArg) error {
	var bit uint8
	switch o.Name {
	case "physdev-in", "physdev-out":
		f, err := physdevIface(o.Arg)
		if err != nil {
			return err
		}
		if o.Name == "physdev-in" {
			m.In, bit = f, PhysdevIn
		} else {
			m.Out, bit = f, PhysdevOut
		}
	case "physdev-is-in":
		bit = PhysdevIsIn
	case "physdev-is-out":
		bit = PhysdevIsOut
	case "physdev-is-bridged":
		bit = PhysdevBridged
	}
	m.Bitmask |= bit
	if o.Invert {
		m.Invert |= bit
	}
	return nil
}

func (m *PhysdevMatch) Final(r *RuleContext) error {
	if m.Bitmask == 0 {
		return Errorf("PHYSDEV: no physdev option specified")
	}
	return nil
}

// CheckEntry is physdev_mt_check: the output port is only known for
// bridged traffic, so --physdev-out/--physdev-is-out without
// --physdev-is-bridged are refused in OUTPUT.
func (m *PhysdevMatch) CheckEntry(t TableID, hooks netfilter.HookMask) error {
	if m.Bitmask&(PhysdevOut|PhysdevIsOut) != 0 &&
		(m.Bitmask&PhysdevBridged == 0 || m.Invert&PhysdevBridged != 0) &&
		hooks.Has(netfilter.LocalOut) {
		return Errorf("--physdev-out and --physdev-is-out only supported in the FORWARD and POSTROUTING chains with bridged traffic")
	}
	return nil
}

// Save is physdev_save's order: is-in, in, is-out, out, is-bridged.
func (m *PhysdevMatch) Save(w *SaveWriter) {
	inv := func(b uint8) bool { return m.Invert&b != 0 }
	if m.Bitmask&PhysdevIsIn != 0 {
		w.InvOpt(inv(PhysdevIsIn), "physdev-is-in", "")
	}
	if m.Bitmask&PhysdevIn != 0 {
		w.InvOpt(inv(PhysdevIn), "physdev-in", "")
		w.WriteString(" " + m.In.Name)
	}
	if m.Bitmask&PhysdevIsOut != 0 {
		w.InvOpt(inv(PhysdevIsOut), "physdev-is-out", "")
	}
	if m.Bitmask&PhysdevOut != 0 {
		w.InvOpt(inv(PhysdevOut), "physdev-out", "")
		w.WriteString(" " + m.Out.Name)
	}
	if m.Bitmask&PhysdevBridged != 0 {
		w.InvOpt(inv(PhysdevBridged), "physdev-is-bridged", "")
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "physdev", Options: []Option{
		{Name: "physdev-in", Arg: RequiredArg, Invert: true},
		{Name: "physdev-out", Arg: RequiredArg, Invert: true},
		{Name: "physdev-is-in", Invert: true},
		{Name: "physdev-is-out", Invert: true},
		{Name: "physdev-is-bridged", Invert: true},
	}, New: func() Match { return &PhysdevMatch{} }})
}

// Eval is physdev_mt (net/netfilter/xt_physdev.c).
// Bridge information exists when br_netfilter recorded the input port
// (Meta.PhysIn); the output port (Meta.PhysOut) is known in FORWARD and
// POSTROUTING of bridged traffic only.
func (m *PhysdevMatch) Eval(c *Ctx) bool {
	in, out := c.Pkt.PhysIn, c.Pkt.PhysOut
	given := func(b uint8) bool { return m.Bitmask&b != 0 }
	inv := func(b uint8) bool { return m.Invert&b != 0 }
	if in == "" && out == "" {
		// no bridge info: match only if every option given is negated
		return m.Bitmask&^m.Invert == 0
	}
	if given(PhysdevBridged) && (out != "") == inv(PhysdevBridged) {
		return false
	}
	if given(PhysdevIsIn) && (in != "") == inv(PhysdevIsIn) {
		return false
	}
	if given(PhysdevIsOut) && (out != "") == inv(PhysdevIsOut) {
		return false
	}
	// an unknown input port skips the --physdev-in test
	if given(PhysdevIn) && in != "" && m.In.Match(in) == inv(PhysdevIn) {
		return false
	}
	if !given(PhysdevOut) {
		return true
	}
	if out == "" {
		return false // unknown output port: no match even with "!"
	}
	return m.Out.Match(out) != inv(PhysdevOut)
}
