package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// NETMAP target (iptables 1.8.9 extensions/libipt_NETMAP.c NETMAP_opts,
// NETMAP_parse, NETMAP_save; libxtables/xtoptions.c
// xtopt_parse_hostmask; kernel net/netfilter/xt_NETMAP.c: table nat,
// hooks PREROUTING, INPUT, OUTPUT and POSTROUTING).

// NetmapTarget is "-j NETMAP": the network part of the address becomes
// that of MinAddr/MaxAddr (range MinAddr = net, MaxAddr = net|^mask).
type NetmapTarget struct {
	MinAddr, MaxAddr uint32
	given            bool
	// reqSrc/reqDst are the binding requests Exec hands out by hook,
	// built by Final.
	reqSrc, reqDst NATRequest
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
	req := NATRequest{Netmap: true, NetmapMask: t.Mask(), Range: NATRange{
		Flags: NATMapIPs, MinAddr: t.MinAddr, MaxAddr: t.MaxAddr}}
	t.reqSrc, t.reqDst = req, req
	t.reqSrc.Manip, t.reqDst.Manip = ManipSrc, ManipDst
	return nil
}

// Exec is netmap_tg4 (net/netfilter/xt_NETMAP.c): the manip type follows
// the hook (HOOK2MANIP: PREROUTING and OUTPUT rewrite the destination,
// INPUT and POSTROUTING the source) and the new address is the packet's
// host part under the rule's network, a single-address range with
// NF_NAT_RANGE_MAP_IPS. The address is per packet, so the request
// carries the rule's network (Range.MinAddr) and mask (NetmapMask) and
// the engine's NAT stage computes
//
//	new = addr &^ NetmapMask | Range.MinAddr & NetmapMask
//
// from the manipulated address (destination for ManipDst, source for
// ManipSrc) before nf_nat_setup_info; the protocol range stays unset.
func (t *NetmapTarget) Exec(c *Ctx) TVerdict {
	if c.Hook == netfilter.PreRouting || c.Hook == netfilter.LocalOut {
		c.NAT = &t.reqDst
	} else {
		c.NAT = &t.reqSrc
	}
	return TAccept
}

// Mask is the mapped network's mask.
func (t *NetmapTarget) Mask() uint32 { return ^(t.MinAddr ^ t.MaxAddr) }

func (t *NetmapTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return checkTableHooks("NETMAP", tb, Nat, hooks, netfilter.Hooks(netfilter.PreRouting, netfilter.LocalIn, netfilter.LocalOut, netfilter.PostRouting))
}

func (t *NetmapTarget) Save(w *SaveWriter) {
	w.Opt("to", FormatAddr(t.MinAddr)+"/"+FormatMask(t.Mask()))
}

func init() {
	RegisterTarget(&TargetSpec{Name: "NETMAP", Options: []Option{
		{Name: "to", Arg: RequiredArg},
	}, New: func() Target { return &NetmapTarget{} }})
}
