package ebtables

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// Targets (mark, dnat, snat, redirect, arpreply) and watchers (log,
// nflog): parsing and printing after libebt_*.c, effects after
// net/bridge/netfilter/ebt_*.c.

func parseSubTarget(opt, arg string) (Verdict, error) {
	v, ok := parseVerdict(arg)
	if !ok {
		return 0, paramErr("Illegal --%s target", opt)
	}
	return v, nil
}

func init() {
	register(&extDef{name: "mark", kind: kTarget, opts: []optDef{
		{name: "mark-set", hasArg: true}, {name: "set-mark", hasArg: true},
		{name: "mark-or", hasArg: true}, {name: "mark-and", hasArg: true},
		{name: "mark-xor", hasArg: true}, {name: "mark-target", hasArg: true},
	}, make: func() extParser { return &MarkTarget{verdict: VAccept} }})
	register(&extDef{name: "dnat", kind: kTarget, opts: []optDef{
		{name: "to-destination", hasArg: true}, {name: "to-dst", hasArg: true}, {name: "dnat-target", hasArg: true},
	}, make: func() extParser { return &DNATTarget{verdict: VAccept} }})
	register(&extDef{name: "snat", kind: kTarget, opts: []optDef{
		{name: "to-source", hasArg: true}, {name: "to-src", hasArg: true}, {name: "snat-target", hasArg: true},
		{name: "snat-arp"},
	}, make: func() extParser { return &SNATTarget{verdict: VAccept} }})
	register(&extDef{name: "redirect", kind: kTarget, opts: []optDef{{name: "redirect-target", hasArg: true}},
		make: func() extParser { return &RedirectTarget{verdict: VAccept} }})
	register(&extDef{name: "arpreply", kind: kTarget, opts: []optDef{
		{name: "arpreply-mac", hasArg: true}, {name: "arpreply-target", hasArg: true},
	}, make: func() extParser { return &ARPReplyTarget{verdict: VDrop} }})
	register(&extDef{name: "log", kind: kWatcher, opts: []optDef{
		{name: "log"}, {name: "log-level", hasArg: true}, {name: "log-prefix", hasArg: true},
		{name: "log-ip"}, {name: "log-arp"}, {name: "log-ip6"},
	}, make: func() extParser { return &LogWatcher{Level: 5} }})
	register(&extDef{name: "nflog", kind: kWatcher, opts: []optDef{
		{name: "nflog"}, {name: "nflog-group", hasArg: true}, {name: "nflog-prefix", hasArg: true},
		{name: "nflog-range", hasArg: true}, {name: "nflog-threshold", hasArg: true},
	}, make: func() extParser { return &NFLogWatcher{Group: 1, Threshold: 1} }})
}

// --- mark ---

// MarkOp is what the mark target does to skb->mark.
type MarkOp uint8

// The mark operations (MARK_SET_VALUE ... MARK_XOR_VALUE).
const (
	MarkSet MarkOp = iota
	MarkOr
	MarkAnd
	MarkXor
)

var markOpNames = []string{"--mark-set", "--mark-or", "--mark-and", "--mark-xor"}

// MarkTarget is -j mark (ebt_mark.c).
type MarkTarget struct {
	Op      MarkOp
	Value   uint32
	opSet   bool
	verdict Verdict
}

// Name is the extension's name as ebtables knows it.
func (t *MarkTarget) Name() string { return "mark" }

func (t *MarkTarget) parse(opt, arg string, inv bool) error {
	if opt == "mark-target" {
		v, err := parseSubTarget(opt, arg)
		t.verdict = v
		return err
	}
	if t.opSet {
		return paramErr("--%s cannot be used together with specific --mark option", opt)
	}
	t.opSet = true
	switch opt {
	case "mark-set", "set-mark":
		t.Op = MarkSet
	case "mark-or":
		t.Op = MarkOr
	case "mark-and":
		t.Op = MarkAnd
	case "mark-xor":
		t.Op = MarkXor
	}
	v, err := strconv.ParseUint(arg, 0, 32)
	if err != nil {
		return paramErr("Bad MARK value '%s'", arg)
	}
	t.Value = uint32(v)
	return nil
}

func (t *MarkTarget) final(p *ruleParser) error {
	if !t.opSet {
		return paramErr("You must specify some option")
	}
	return nil
}

func (t *MarkTarget) save(b *strings.Builder) {
	fmt.Fprintf(b, " %s 0x%x --mark-target %s", markOpNames[t.Op], t.Value, t.verdict)
}

func (t *MarkTarget) target(c *Ctx, h Hook) Verdict {
	switch t.Op {
	case MarkSet:
		c.Mark = t.Value
	case MarkOr:
		c.Mark |= t.Value
	case MarkAnd:
		c.Mark &= t.Value
	case MarkXor:
		c.Mark ^= t.Value
	}
	return t.verdict
}

// --- dnat / snat ---

// DNATTarget is -j dnat (ebt_dnat.c): rewrite the destination MAC.
type DNATTarget struct {
	MAC     packet.MAC
	macSet  bool
	verdict Verdict
}

// Name is the extension's name as ebtables knows it.
func (t *DNATTarget) Name() string { return "dnat" }

func (t *DNATTarget) parse(opt, arg string, inv bool) error {
	if opt == "dnat-target" {
		v, err := parseSubTarget(opt, arg)
		t.verdict = v
		return err
	}
	m, ok := etherAton(arg)
	if !ok {
		return paramErr("Problem with specified --to-destination mac")
	}
	t.MAC, t.macSet = m, true
	return nil
}

// final: ebt_dnat_tg_check allows nat PREROUTING and OUTPUT and broute
// BROUTING only.
func (t *DNATTarget) final(p *ruleParser) error {
	if !t.macSet {
		return paramErr("You must specify proper arguments")
	}
	if p.ch.table == Filter || !p.hookIn(PreRouting, LocalOut, BRouting) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (t *DNATTarget) save(b *strings.Builder) {
	fmt.Fprintf(b, " --to-dst %s --dnat-target %s", t.MAC, t.verdict)
}

func setMAC(c *Ctx, off int, m packet.MAC) {
	copy(c.Frame.Data[off:off+6], m[:])
	if off == 0 {
		c.Frame.Dst = m
	} else {
		c.Frame.Src = m
	}
}

func (t *DNATTarget) target(c *Ctx, h Hook) Verdict {
	setMAC(c, 0, t.MAC)
	switch {
	case t.MAC.IsBroadcast():
		c.PktType = PacketBroadcast
	case t.MAC.IsMulticast():
		c.PktType = PacketMulticast
	default:
		// the device whose address makes the frame "for us": the
		// bridge on PREROUTING, the port on BROUTING, none on OUTPUT
		var dev packet.MAC
		ok := false
		if c.Env != nil {
			switch h {
			case BRouting:
				dev, ok = c.Env.PortMAC(c.In)
			case PreRouting:
				dev, ok = c.Env.BridgeMAC(c.In)
			}
		}
		if ok {
			if dev == t.MAC {
				c.PktType = PacketHost
			} else {
				c.PktType = PacketOtherHost
			}
		}
	}
	return t.verdict
}

// SNATTarget is -j snat (ebt_snat.c): rewrite the source MAC, and with
// --snat-arp an ARP packet's sender hardware address too.
type SNATTarget struct {
	MAC     packet.MAC
	ARP     bool
	macSet  bool
	verdict Verdict
}

// Name is the extension's name as ebtables knows it.
func (t *SNATTarget) Name() string { return "snat" }

func (t *SNATTarget) parse(opt, arg string, inv bool) error {
	switch opt {
	case "snat-target":
		v, err := parseSubTarget(opt, arg)
		t.verdict = v
		return err
	case "snat-arp":
		t.ARP = true
		return nil
	}
	m, ok := etherAton(arg)
	if !ok {
		return paramErr("Problem with specified --to-source mac")
	}
	t.MAC, t.macSet = m, true
	return nil
}

func (t *SNATTarget) final(p *ruleParser) error {
	if !t.macSet {
		return paramErr("You must specify proper arguments")
	}
	if p.ch.table != NAT || !p.hookIn(PostRouting) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (t *SNATTarget) save(b *strings.Builder) {
	fmt.Fprintf(b, " --to-src %s", t.MAC)
	if t.ARP {
		b.WriteString(" --snat-arp")
	}
	fmt.Fprintf(b, " --snat-target %s", t.verdict)
}

func (t *SNATTarget) target(c *Ctx, h Hook) Verdict {
	setMAC(c, 6, t.MAC)
	if t.ARP && c.Frame.Proto == packet.EtherTypeARP {
		a := c.netHeader()
		if len(a) >= 8+6 && a[4] == 6 {
			copy(a[8:14], t.MAC[:])
		}
	}
	return t.verdict
}

// --- redirect ---

// RedirectTarget is -j redirect (ebt_redirect.c): the destination MAC
// becomes the bridge's (PREROUTING) or the input port's (BROUTING) and
// the frame is for this host.
type RedirectTarget struct{ verdict Verdict }

// Name is the extension's name as ebtables knows it.
func (t *RedirectTarget) Name() string { return "redirect" }

func (t *RedirectTarget) parse(opt, arg string, inv bool) error {
	v, err := parseSubTarget(opt, arg)
	t.verdict = v
	return err
}

func (t *RedirectTarget) final(p *ruleParser) error {
	if p.ch.table == Filter || !p.hookIn(PreRouting, BRouting) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (t *RedirectTarget) save(b *strings.Builder) {
	if t.verdict == VAccept {
		b.WriteString(" ")
		return
	}
	fmt.Fprintf(b, " --redirect-target %s", t.verdict)
}

func (t *RedirectTarget) target(c *Ctx, h Hook) Verdict {
	if c.Env != nil {
		var m packet.MAC
		ok := false
		if h == BRouting {
			m, ok = c.Env.PortMAC(c.In)
		} else {
			m, ok = c.Env.BridgeMAC(c.In)
		}
		if ok {
			setMAC(c, 0, m)
		}
	}
	c.PktType = PacketHost
	return t.verdict
}

// --- arpreply ---

// ARPReplyTarget is -j arpreply (ebt_arpreply.c): answer an IPv4 ARP
// request with MAC, out of the input port.
type ARPReplyTarget struct {
	MAC     packet.MAC
	verdict Verdict
}

// Name is the extension's name as ebtables knows it.
func (t *ARPReplyTarget) Name() string { return "arpreply" }

func (t *ARPReplyTarget) parse(opt, arg string, inv bool) error {
	if opt == "arpreply-target" {
		v, err := parseSubTarget(opt, arg)
		t.verdict = v
		return err
	}
	m, ok := etherAton(arg)
	if !ok {
		return paramErr("Problem with specified --arpreply-mac mac")
	}
	t.MAC = m
	return nil
}

// final: ebt_arpreply_tg_check wants -p ARP/RARP and the nat
// PREROUTING (or broute) chain.
func (t *ARPReplyTarget) final(p *ruleParser) error {
	if !p.protoIs(packet.EtherTypeARP, 0x8035) || p.ch.table == Filter || !p.hookIn(PreRouting, BRouting) {
		return &ruleError{kind: errKernel, msg: "Invalid argument"}
	}
	return nil
}

func (t *ARPReplyTarget) save(b *strings.Builder) {
	fmt.Fprintf(b, " --arpreply-mac %s", t.MAC)
	if t.verdict != VDrop {
		fmt.Fprintf(b, " --arpreply-target %s", t.verdict)
	}
}

// target builds the reply as arp_send(ARPOP_REPLY, ETH_P_ARP, sip, in,
// tip, sha, mac, sha) does; anything but an Ethernet/IPv4 request is
// left alone (EBT_CONTINUE).
func (t *ARPReplyTarget) target(c *Ctx, h Hook) Verdict {
	a := c.netHeader()
	if len(a) < 28 || binary.BigEndian.Uint16(a[6:]) != 1 || a[4] != 6 ||
		binary.BigEndian.Uint16(a[2:]) != packet.EtherTypeIPv4 || a[5] != 4 {
		return VContinue
	}
	r := c.Reply[:]
	copy(r[0:6], a[8:14]) // to the requester
	copy(r[6:12], t.MAC[:])
	binary.BigEndian.PutUint16(r[12:], packet.EtherTypeARP)
	p := r[14:]
	binary.BigEndian.PutUint16(p[0:], 1)
	binary.BigEndian.PutUint16(p[2:], packet.EtherTypeIPv4)
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], 2)
	copy(p[8:14], t.MAC[:])
	copy(p[14:18], a[24:28]) // sender IP: the address asked for
	copy(p[18:24], a[8:14])
	copy(p[24:28], a[14:18])
	c.ReplyLen = 42
	return t.verdict
}

// --- log / nflog ---

var logLevels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// LogWatcher is --log (ebt_log.c). Flags: IP, ARP, IP6 header logging.
type LogWatcher struct {
	Level        uint8
	Prefix       string
	IP, ARP, IP6 bool
}

// Name is the extension's name as ebtables knows it.
func (w *LogWatcher) Name() string { return "log" }

func (w *LogWatcher) parse(opt, arg string, inv bool) error {
	switch opt {
	case "log-level":
		for i, n := range logLevels {
			if n == arg {
				w.Level = uint8(i)
				return nil
			}
		}
		v, err := strconv.ParseUint(arg, 10, 8)
		if err != nil || v > 7 {
			return paramErr("Problem with the log-level")
		}
		w.Level = uint8(v)
	case "log-prefix":
		if len(arg) > 29 {
			return paramErr("Prefix too long")
		}
		if strings.Contains(arg, "\"") {
			return paramErr("Use of \\\" is not allowed in the prefix")
		}
		w.Prefix = arg
	case "log-ip":
		w.IP = true
	case "log-arp":
		w.ARP = true
	case "log-ip6":
		w.IP6 = true
	}
	return nil
}

func (w *LogWatcher) final(p *ruleParser) error { return nil }

func (w *LogWatcher) save(b *strings.Builder) {
	fmt.Fprintf(b, " --log-level %s", logLevels[w.Level])
	if w.Prefix != "" {
		fmt.Fprintf(b, " --log-prefix \"%s\"", w.Prefix)
	}
	if w.IP {
		b.WriteString(" --log-ip")
	}
	if w.ARP {
		b.WriteString(" --log-arp")
	}
	if w.IP6 {
		b.WriteString(" --log-ip6")
	}
}

func (w *LogWatcher) watch(c *Ctx, r *Rule) { c.log(w, c.hook) }

// NFLogWatcher is --nflog (ebt_nflog.c).
type NFLogWatcher struct {
	Group     uint16
	Prefix    string
	Range     uint32
	Threshold uint16
}

// Name is the extension's name as ebtables knows it.
func (w *NFLogWatcher) Name() string { return "nflog" }

func (w *NFLogWatcher) parse(opt, arg string, inv bool) error {
	switch opt {
	case "nflog-group":
		v, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return paramErr("--nflog-group must be a number!")
		}
		w.Group = uint16(v)
	case "nflog-prefix":
		if len(arg) > 63 {
			return paramErr("Prefix too long")
		}
		w.Prefix = arg
	case "nflog-range":
		v, err := strconv.ParseUint(arg, 10, 32)
		if err != nil {
			return paramErr("--nflog-range must be a number!")
		}
		w.Range = uint32(v)
	case "nflog-threshold":
		v, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return paramErr("--nflog-threshold must be a number!")
		}
		w.Threshold = uint16(v)
	}
	return nil
}

func (w *NFLogWatcher) final(p *ruleParser) error { return nil }

func (w *NFLogWatcher) save(b *strings.Builder) {
	if w.Prefix != "" {
		fmt.Fprintf(b, " --nflog-prefix \"%s\"", w.Prefix)
	}
	fmt.Fprintf(b, " --nflog-group %d", w.Group)
	if w.Range != 0 {
		fmt.Fprintf(b, " --nflog-range %d", w.Range)
	}
	if w.Threshold != 1 {
		fmt.Fprintf(b, " --nflog-threshold %d", w.Threshold)
	}
}

func (w *NFLogWatcher) watch(c *Ctx, r *Rule) { c.log(w, c.hook) }
