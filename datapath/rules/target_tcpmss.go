package rules

import "strconv"

// TCPMSS target (iptables 1.8.9 extensions/libxt_TCPMSS.c; kernel
// net/netfilter/xt_TCPMSS.c). The kernel target has no table restriction
// but .proto = IPPROTO_TCP, which xt_check_target enforces against the
// rule's "-p" (EINVAL unless "-p tcp" without "!"). tcpmss_tg4_check's
// "-p tcp --syn" requirement is skipped under nft_compat (par->nft_compat),
// and its path-MTU hook test sees only a base chain's own hook.

// tcpmssClampPMTU is XT_TCPMSS_CLAMP_PMTU.
const tcpmssClampPMTU = 0xffff

// TCPMSSTarget is "-j TCPMSS".
type TCPMSSTarget struct {
	// MSS is the value to set, or 0xffff for --clamp-mss-to-pmtu.
	MSS uint16

	given uint32
	tcp   bool // the rule has "-p tcp", not inverted
}

func (t *TCPMSSTarget) Name() string { return "TCPMSS" }

// ClampPMTU reports whether the target clamps to the path MTU.
func (t *TCPMSSTarget) ClampPMTU() bool { return t.MSS == tcpmssClampPMTU }

func (t *TCPMSSTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-mss":
		// max UINT16_MAX - sizeof(struct iphdr)
		v, err := parseUintOpt("TCPMSS", o.Name, o.Arg, 0, 0xffff-20)
		if err != nil {
			return err
		}
		t.MSS = uint16(v)
		t.given |= 1
	case "clamp-mss-to-pmtu":
		t.MSS = tcpmssClampPMTU
		t.given |= 2
	}
	return nil
}

// Final is TCPMSS_check.
func (t *TCPMSSTarget) Final(r *RuleContext) error {
	if t.given == 0 {
		return Errorf("TCPMSS target: At least one parameter is required")
	}
	t.tcp = r.Proto == 6 && !r.ProtoInvert
	return nil
}

// CheckHooks is xt_check_target's protocol test.
func (t *TCPMSSTarget) CheckHooks(tb TableID, hooks HookMask) error {
	if !t.tcp {
		return Errorf("TCPMSS needs -p tcp")
	}
	return nil
}

// CheckEntry is tcpmss_tg4_check's hook test for --clamp-mss-to-pmtu.
func (t *TCPMSSTarget) CheckEntry(tb TableID, own HookMask) error {
	if t.ClampPMTU() && own&^Hooks(Forward, LocalOut, PostRouting) != 0 {
		return Errorf("path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks")
	}
	return nil
}

// Save is TCPMSS_save.
func (t *TCPMSSTarget) Save(w *SaveWriter) {
	if t.ClampPMTU() {
		w.Opt("clamp-mss-to-pmtu", "")
	} else {
		w.Opt("set-mss", strconv.Itoa(int(t.MSS)))
	}
}

func init() {
	RegisterTarget(&TargetSpec{Name: "TCPMSS", Options: []Option{
		{Name: "set-mss", Arg: RequiredArg},
		{Name: "clamp-mss-to-pmtu"},
	}, New: func() Target { return &TCPMSSTarget{} }})
}
