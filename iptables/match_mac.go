package iptables

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// mac match (extensions/libxt_mac.c, libxtables/xtoptions.c
// xtopt_parse_ethermac; kernel net/netfilter/xt_mac.c, registered for the
// PREROUTING, INPUT and FORWARD hooks).

// MACMatch is "-m mac".
type MACMatch struct {
	Src    [6]byte
	Invert bool
	given  bool
}

func (m *MACMatch) Name() string { return "mac" }

// parseEtherMAC is xtopt_parse_ethermac: six ':'-separated fields, each
// read by strtoul(..., 16) and at most two characters long.
func parseEtherMAC(s string) ([6]byte, error) {
	var mac [6]byte
	bad := Errorf("Invalid MAC address specified.")
	for i := 0; i < 6; i++ {
		v, n, _ := strtoumax(s, 16)
		if n > 2 {
			return mac, bad
		}
		mac[i] = byte(v)
		s = s[n:]
		if i < 5 {
			if s == "" || s[0] != ':' {
				return mac, bad
			}
			s = s[1:]
		} else if s != "" {
			return mac, bad
		}
	}
	return mac, nil
}

func (m *MACMatch) Parse(o *OptArg) error {
	mac, err := parseEtherMAC(o.Arg)
	if err != nil {
		return err
	}
	m.Src, m.given = mac, true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *MACMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("mac", "mac-source")
	}
	return nil
}

// CheckHooks: xt_mac's .hooks.
func (m *MACMatch) CheckHooks(t TableID, hooks netfilter.HookMask) error {
	return hooksOutside(hooks, netfilter.Hooks(netfilter.PreRouting, netfilter.LocalIn, netfilter.Forward))
}

func (m *MACMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	a := m.Src
	fmt.Fprintf(w, " --mac-source %02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5])
}

func init() {
	RegisterMatch(&MatchSpec{Name: "mac", Options: []Option{
		{Name: "mac-source", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &MACMatch{} }})
}

// Eval is mac_mt (net/netfilter/xt_mac.c): the Ethernet source address.
// A packet without an Ethernet header (TUN, NFQUEUE, locally made) never
// matches, "!" or not.
func (m *MACMatch) Eval(c *Ctx) bool {
	l2 := c.Pkt.L2
	if len(l2) < 14 {
		return false
	}
	return ([6]byte(l2[6:12]) == m.Src) != m.Invert
}
