package rules

import "fmt"

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

func (t *DSCPTarget) CheckHooks(tb TableID, hooks HookMask) error { return tableOnly(tb, Mangle) }

// Save is DSCP_save.
func (t *DSCPTarget) Save(w *SaveWriter) { w.Opt("set-dscp", fmt.Sprintf("0x%02x", t.DSCP)) }

func init() {
	RegisterTarget(&TargetSpec{Name: "DSCP", Options: []Option{
		{Name: "set-dscp", Arg: RequiredArg},
		{Name: "set-dscp-class", Arg: RequiredArg},
	}, New: func() Target { return &DSCPTarget{} }})
}
