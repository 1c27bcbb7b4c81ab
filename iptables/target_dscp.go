package iptables

import (
	"encoding/binary"
	"fmt"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// DSCP target (iptables 1.8.9 extensions/libxt_DSCP.c, dscp_helper.c;
// kernel net/netfilter/xt_DSCP.c, .table = "mangle").

// DSCPTarget is "-j DSCP".
type DSCPTarget struct {
	DSCP uint8 // 0-63

	given uint32
}

var dscpEntries = []optEntry{
	{name: "set-dscp", id: 0, excl: 2},
	{name: "set-dscp-class", id: 1, excl: 1},
}

func (t *DSCPTarget) Name() string { return "DSCP" }

func (t *DSCPTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-dscp":
		v, err := parseUintOpt("DSCP", o.Name, o.Arg, 0, 0x3f)
		if err != nil {
			return err
		}
		t.DSCP = uint8(v)
		t.given |= 1
	case "set-dscp-class":
		// class_to_dscp (classToDSCP, shared with the dscp match)
		v, err := classToDSCP(o.Arg)
		if err != nil {
			return err
		}
		t.DSCP = v
		t.given |= 2
	}
	return nil
}

// Final is DSCP_check, then the options' mutual exclusion.
func (t *DSCPTarget) Final(r *RuleContext) error {
	if t.given == 0 {
		return Errorf("DSCP target: Parameter --set-dscp is required")
	}
	return fcheck("DSCP", dscpEntries, t.given)
}

func (t *DSCPTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return tableOnly(tb, Mangle)
}

// Save is DSCP_save.
func (t *DSCPTarget) Save(w *SaveWriter) { w.Opt("set-dscp", fmt.Sprintf("0x%02x", t.DSCP)) }

// dscpShift and dscpECNMask are XT_DSCP_SHIFT and XT_DSCP_ECN_MASK
// (linux/netfilter/xt_dscp.h).
const (
	dscpShift   = 2
	dscpECNMask = 0x03
)

// Exec is dscp_tg (net/netfilter/xt_DSCP.c): when the packet's DSCP (TOS
// >> 2) differs, replace it keeping the two ECN bits.
func (t *DSCPTarget) Exec(c *Ctx) TVerdict {
	h := c.Pkt.IP
	if h.TOS()>>dscpShift != t.DSCP {
		changeDSField(h, dscpECNMask, t.DSCP<<dscpShift)
	}
	return TContinue
}

// changeDSField is ipv4_change_dsfield (include/net/dsfield.h): TOS =
// (TOS & mask) | value, with that function's own incremental update of
// the header checksum (computed on the stored checksum rather than its
// complement, so the result is bit-identical to the kernel's, including
// which of 0x0000/0xffff it writes).
func changeDSField(h packet.IPv4, mask, value uint8) {
	check := uint32(binary.BigEndian.Uint16(h[10:]))
	ds := h[1]&mask | value
	check += uint32(h[1])
	if (check+1)>>16 != 0 {
		check = (check + 1) & 0xffff
	}
	check -= uint32(ds)
	check += check >> 16 // adjust carry
	binary.BigEndian.PutUint16(h[10:], uint16(check))
	h[1] = ds
}

func init() {
	RegisterTarget(&TargetSpec{Name: "DSCP", Options: []Option{
		{Name: "set-dscp", Arg: RequiredArg},
		{Name: "set-dscp-class", Arg: RequiredArg},
	}, New: func() Target { return &DSCPTarget{} }})
}
