package rules

import (
	"fmt"
	"strings"
)

// TPROXY target, revision 1 (iptables 1.8.9 extensions/libxt_TPROXY.c
// tproxy_tg1_opts, tproxy_tg1_parse, tproxy_tg_save4; libxtables
// xtopt_parse_port; kernel net/netfilter/xt_TPROXY.c: table mangle, hook
// PREROUTING, "-p tcp" or "-p udp" not inverted).

// tgParsePortXT is xtopt_parse_port (XTTYPE_PORT): getaddrinfo's service
// parsing: a decimal number (strtoul, kept as an int, then cut to 16
// bits) or a service name.
func tgParsePortXT(arg string) (uint16, error) {
	bad := Errorf("Port \"%s\" does not resolve to anything.\n", arg)
	s := strings.TrimLeft(arg, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	digits := s != ""
	var v uint64
	for i := 0; i < len(s) && digits; i++ {
		if s[i] < '0' || s[i] > '9' {
			digits = false
			break
		}
		d := uint64(s[i] - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, bad // ERANGE: strtoul gives ULONG_MAX, -1 as int
		}
		v = v*10 + d
	}
	if digits {
		if neg {
			v = -v
		}
		if int32(uint32(v)) < 0 {
			return 0, bad
		}
		return uint16(v), nil
	}
	if p, ok := lookupService(arg, ""); ok {
		return p, nil
	}
	return 0, bad
}

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
		t.Port, err = tgParsePortXT(o.Arg)
		t.given = true
	case "on-ip":
		t.Addr, err = tgParseHost(o.Arg)
	case "tproxy-mark":
		t.MarkValue, t.MarkMask, err = tgParseMarkMask("TPROXY", o.Name, o.Arg)
	}
	return err
}

func (t *TproxyTarget) Final(r *RuleContext) error {
	if !t.given {
		return Errorf("TPROXY: option \"--on-port\" must be specified\n")
	}
	t.proto, t.protoInv = r.Proto, r.ProtoInvert
	return nil
}

// CheckHooks is xt_check_target with xt_TPROXY's registration, then
// tproxy_tg4_check.
func (t *TproxyTarget) CheckHooks(tb TableID, hooks HookMask) error {
	if tb != Mangle {
		return Errorf("TPROXY: only valid in mangle table, not %s", tb)
	}
	if hooks&^Hooks(PreRouting) != 0 {
		return Errorf("TPROXY: bad hook mask")
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

func init() {
	RegisterTarget(&TargetSpec{Name: "TPROXY", Options: []Option{
		{Name: "on-port", Arg: RequiredArg},
		{Name: "on-ip", Arg: RequiredArg},
		{Name: "tproxy-mark", Arg: RequiredArg},
	}, New: func() Target { return &TproxyTarget{} }})
}
