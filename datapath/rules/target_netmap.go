package rules

// NETMAP target (iptables 1.8.9 extensions/libipt_NETMAP.c NETMAP_opts,
// NETMAP_parse, NETMAP_save; libxtables/xtoptions.c
// xtopt_parse_hostmask; kernel net/netfilter/xt_NETMAP.c: table nat,
// hooks PREROUTING, INPUT, OUTPUT and POSTROUTING).

// NetmapTarget is "-j NETMAP": the network part of the address becomes
// that of MinAddr/MaxAddr (range MinAddr = net, MaxAddr = net|^mask).
type NetmapTarget struct {
	MinAddr, MaxAddr uint32
	given            bool
}

func (t *NetmapTarget) Name() string { return "NETMAP" }

func (t *NetmapTarget) Parse(o *OptArg) error {
	a, m, err := parseHostMask("NETMAP", "to", o.Arg)
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
		return mustBeSpecified("NETMAP", "to")
	}
	return nil
}

// Mask is the mapped network's mask.
func (t *NetmapTarget) Mask() uint32 { return ^(t.MinAddr ^ t.MaxAddr) }

func (t *NetmapTarget) CheckHooks(tb TableID, hooks HookMask) error {
	return checkTableHooks("NETMAP", tb, Nat, hooks, Hooks(PreRouting, LocalIn, LocalOut, PostRouting))
}

func (t *NetmapTarget) Save(w *SaveWriter) {
	w.Opt("to", FormatAddr(t.MinAddr)+"/"+FormatMask(t.Mask()))
}

func init() {
	RegisterTarget(&TargetSpec{Name: "NETMAP", Options: []Option{
		{Name: "to", Arg: RequiredArg},
	}, New: func() Target { return &NetmapTarget{} }})
}
