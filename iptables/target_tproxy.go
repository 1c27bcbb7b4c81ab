package iptables

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TPROXY target, revision 1 (iptables 1.8.9 extensions/libxt_TPROXY.c
// tproxy_tg1_opts, tproxy_tg1_parse, tproxy_tg_save4; libxtables
// xtopt_parse_port; kernel net/netfilter/xt_TPROXY.c: table mangle, hook
// PREROUTING, "-p tcp" or "-p udp" not inverted).

// TproxyTarget is "-j TPROXY" (struct xt_tproxy_target_info_v1).
type TproxyTarget struct {
	Port                uint16
	Addr                uint32
	MarkValue, MarkMask uint32
	given               bool
	proto               uint8
	protoInv            bool
}

func (t *TproxyTarget) Name() string { return "TPROXY" }

func (t *TproxyTarget) Parse(o *OptArg) error {
	var err error
	switch o.Name {
	case "on-port":
		t.Port, err = parsePortOpt(o.Arg)
		t.given = true
	case "on-ip":
		t.Addr, err = parseHost(o.Arg)
	case "tproxy-mark":
		t.MarkValue, t.MarkMask, err = parseMarkMask("TPROXY", o.Name, o.Arg)
	}
	return err
}

func (t *TproxyTarget) Final(r *RuleContext) error {
	if !t.given {
		return mustBeSpecified("TPROXY", "on-port")
	}
	t.proto, t.protoInv = r.Proto, r.ProtoInvert
	return nil
}

// CheckHooks is xt_check_target with xt_TPROXY's registration, then
// tproxy_tg4_check.
func (t *TproxyTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if err := checkTableHooks("TPROXY", tb, Mangle, hooks, netfilter.Hooks(netfilter.PreRouting)); err != nil {
		return err
	}
	if (t.proto != 6 && t.proto != 17) || t.protoInv {
		return Errorf("TPROXY: Can be used only in combination with either -p tcp or -p udp")
	}
	return nil
}

func (t *TproxyTarget) Save(w *SaveWriter) {
	w.Opt("on-port", fmt.Sprint(t.Port))
	w.Opt("on-ip", FormatAddr(t.Addr))
	w.Opt("tproxy-mark", fmt.Sprintf("0x%x/0x%x", t.MarkValue, t.MarkMask))
}

// Exec is tproxy_tg4 (net/netfilter/xt_TPROXY.c; the lookups are
// nf_tproxy_get_sock_v4 in net/ipv4/netfilter/nf_tproxy_ipv4.c): without
// an 8-byte transport header the packet is dropped; otherwise an
// established socket for the packet's 4-tuple is looked up, then a
// listener on on-ip:on-port (laddr defaulting to the first primary
// address of the input device, lport to the destination port), and
// only a transparent socket found that way gets the packet (mark set to
// (mark & ~mask) ^ value, NF_ACCEPT). uswitch models no local sockets,
// so no lookup can succeed and the kernel's no-socket path applies to
// every packet: NF_DROP, the mark untouched.
func (t *TproxyTarget) Exec(c *Ctx) TVerdict { return TDrop }

func init() {
	RegisterTarget(&TargetSpec{Name: "TPROXY", Options: []Option{
		{Name: "on-port", Arg: RequiredArg},
		{Name: "on-ip", Arg: RequiredArg},
		{Name: "tproxy-mark", Arg: RequiredArg},
	}, New: func() Target { return &TproxyTarget{} }})
}
