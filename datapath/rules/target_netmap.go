package rules

import "strings"

// NETMAP target (iptables 1.8.9 extensions/libipt_NETMAP.c NETMAP_opts,
// NETMAP_parse, NETMAP_save; libxtables/xtoptions.c
// xtopt_parse_hostmask; kernel net/netfilter/xt_NETMAP.c: table nat,
// hooks PREROUTING, INPUT, OUTPUT and POSTROUTING).

// tgInetAton is glibc's exact inet_aton, which getaddrinfo uses for
// numeric IPv4 hosts: one to four parts, each decimal, 0x hex or 0
// octal; the last part fills the remaining bytes ("1.2.3" = 1.2.0.3).
func tgInetAton(s string) (uint32, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return 0, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' {
			return 0, false
		}
		base := uint64(10)
		switch {
		case len(p) > 1 && (p[1] == 'x' || p[1] == 'X') && p[0] == '0':
			base, p = 16, p[2:]
		case p[0] == '0':
			base = 8
		}
		var v uint64
		for j := 0; j < len(p); j++ {
			d := tgHexDigit(p[j])
			if d < 0 || uint64(d) >= base {
				return 0, false
			}
			v = v*base + uint64(d)
			if v > 0xffffffff {
				return 0, false
			}
		}
		vals[i] = v
	}
	var a uint32
	n := len(vals)
	for i := 0; i < n-1; i++ {
		if vals[i] > 0xff {
			return 0, false
		}
		a |= uint32(vals[i]) << (24 - 8*i)
	}
	last := vals[n-1]
	if last > 0xffffffff>>(8*(n-1)) {
		return 0, false
	}
	return a | uint32(last), true
}

// tgParseHost is xtopt_parse_host for IPv4 (XTTYPE_HOST): a numeric
// address as getaddrinfo reads it. Names are not resolved, except
// "localhost", which every /etc/hosts maps to 127.0.0.1.
func tgParseHost(arg string) (uint32, error) {
	if a, ok := tgInetAton(arg); ok {
		return a, nil
	}
	if arg == "localhost" {
		return 0x7f000001, nil
	}
	return 0, Errorf("getaddrinfo: Name or service not known\n")
}

// tgParseHostMask is xtopt_parse_hostmask: "host[/len|/mask]".
func tgParseHostMask(ext, opt, arg string) (addr, mask uint32, err error) {
	host, m, has := strings.Cut(arg, "/")
	if addr, err = tgParseHost(host); err != nil {
		return 0, 0, err
	}
	if !has {
		return addr, 0xffffffff, nil
	}
	// xtopt_parse_plenmask: a prefix length, or a dotted mask
	if l, rest, ok := tgStrtoul(m, 0, 32); ok && rest == "" {
		if l == 0 {
			return addr, 0, nil
		}
		return addr, 0xffffffff << (32 - l), nil
	}
	if mv, ok := tgInetAton(m); ok {
		// xtopt_parse_mask keeps only the prefix length
		// (xtables_ipmask_to_cidr), and plenmask rebuilds the mask
		// from it: a mask with holes (length -1) leaves all ones
		if l := MaskLen(mv); l >= 0 {
			if l == 0 {
				return addr, 0, nil
			}
			return addr, 0xffffffff << (32 - l), nil
		}
		return addr, 0xffffffff, nil
	}
	return 0, 0, Errorf("%s: bad value for option \"--%s\", neither a valid network mask nor valid CIDR (%d-%d).\n", ext, opt, 0, 32)
}

// NetmapTarget is "-j NETMAP": the network part of the address becomes
// that of MinAddr/MaxAddr (range MinAddr = net, MaxAddr = net|^mask).
type NetmapTarget struct {
	MinAddr, MaxAddr uint32
	given            bool
}

func (t *NetmapTarget) Name() string { return "NETMAP" }

func (t *NetmapTarget) Parse(o *OptArg) error {
	a, m, err := tgParseHostMask("NETMAP", "to", o.Arg)
	if err != nil {
		return err
	}
	t.MinAddr = a & m
	t.MaxAddr = t.MinAddr | ^m
	t.given = true
	return nil
}

func (t *NetmapTarget) Final(r *RuleContext) error {
	if !t.given {
		return Errorf("NETMAP: option \"--to\" must be specified\n")
	}
	return nil
}

// Mask is the mapped network's mask.
func (t *NetmapTarget) Mask() uint32 { return ^(t.MinAddr ^ t.MaxAddr) }

func (t *NetmapTarget) CheckHooks(tb TableID, hooks HookMask) error {
	return natCheck("NETMAP", tb, hooks, Hooks(PreRouting, LocalIn, LocalOut, PostRouting))
}

func (t *NetmapTarget) Save(w *SaveWriter) {
	w.Opt("to", FormatAddr(t.MinAddr)+"/"+FormatMask(t.Mask()))
}

func init() {
	RegisterTarget(&TargetSpec{Name: "NETMAP", Options: []Option{
		{Name: "to", Arg: RequiredArg},
	}, New: func() Target { return &NetmapTarget{} }})
}
