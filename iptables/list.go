package iptables

import (
	"fmt"
	"strconv"
	"strings"
)

// This file prints `iptables -L` and `iptables -S` as iptables-nft 1.8.9
// does: print_header and print_rule_details (iptables/xshared.c),
// nft_ipv4_print_rule (iptables/nft-ipv4.c), xtables_print_num
// (libxtables/xtables.c) and the extensions' ->print callbacks
// (extensions/libxt_*.c; list_ext.go).

// ListOptions are -L's flags.
type ListOptions struct {
	Numeric, Verbose, Expanded, LineNumbers bool
	// Names answers name lookups without -n (nil: numeric answers).
	Names Names
}

// Names resolves numbers to names as iptables does without -n, from
// local files only (no DNS): an empty answer means "none".
type Names interface {
	// Host is getnameinfo(NI_NAMEREQD) of an address (host byte order).
	Host(addr uint32) string
	// Network is getnetbyaddr.
	Network(addr uint32) string
	// Service is getservbyport (proto "" = any).
	Service(port uint16, proto string) string
	// Proto is getprotobynumber.
	Proto(n uint8) string
	// User and Group are getpwuid and getgrgid.
	User(uid uint32) string
	Group(gid uint32) string
}

// listFmt is the FMT_* mask of do_commandx.
type listFmt struct {
	numeric, counts, via, kmg, lines bool
	// notable is FMT_NOTABLE: the one-line form -v prints for the rules
	// a command adds, deletes or checks ("in eth0 out *", "-> DST")
	notable bool
	names   Names
}

func (o ListOptions) fmt() listFmt {
	f := listFmt{numeric: o.Numeric, counts: o.Verbose, via: o.Verbose, kmg: !o.Expanded, lines: o.LineNumbers, names: o.Names}
	if f.names == nil {
		f.names = noNames{}
	}
	return f
}

type noNames struct{}

func (noNames) Host(uint32) string            { return "" }
func (noNames) Network(uint32) string         { return "" }
func (noNames) Service(uint16, string) string { return "" }
func (noNames) Proto(uint8) string            { return "" }
func (noNames) User(uint32) string            { return "" }
func (noNames) Group(uint32) string           { return "" }

// ErrNoChain is -L/-S of a chain the table lacks; iptables-nft 1.8.9
// says so in its own words (nft_chain_list_get failing).
type ErrNoChain struct{ Chain, Table string }

func (e *ErrNoChain) Error() string {
	return fmt.Sprintf("chain `%s' in table `%s' is incompatible, use 'nft' tool.", e.Chain, e.Table)
}

// List prints -L [CHAIN [RULENUM]] of the table.
func (t *Table) List(chain string, rulenum int, o ListOptions) (string, error) {
	f := o.fmt()
	var b SaveWriter
	if chain != "" && t.byName[chain] == nil {
		return "", &ErrNoChain{chain, t.ID.String()}
	}
	first := true
	for _, c := range t.Chains {
		if chain != "" && c.Name != chain {
			continue
		}
		if rulenum > 0 {
			if rulenum <= len(c.Rules) {
				t.listRule(&b, c.Rules[rulenum-1], rulenum, f)
			}
			continue
		}
		if !first {
			b.WriteByte('\n')
		}
		first = false
		t.listHeader(&b, c, f)
		for i, r := range c.Rules {
			t.listRule(&b, r, i+1, f)
		}
	}
	return b.String(), nil
}

// printNum is xtables_print_num with its trailing space.
func printNum(b *SaveWriter, n uint64, f listFmt, notable bool) {
	if !f.kmg {
		if notable {
			b.WriteString(strconv.FormatUint(n, 10) + " ")
		} else {
			fmt.Fprintf(b, "%8d ", n)
		}
		return
	}
	suffix := ""
	if n > 99999 {
		for _, s := range []string{"K", "M", "G", "T"} {
			n = (n + 500) / 1000
			suffix = s
			if n <= 9999 || s == "T" {
				break
			}
		}
	}
	switch {
	case notable:
		b.WriteString(strconv.FormatUint(n, 10) + suffix + " ")
	case suffix == "":
		fmt.Fprintf(b, "%5d ", n)
	default:
		fmt.Fprintf(b, "%4d%s ", n, suffix)
	}
}

func (t *Table) refs(c *Chain) int {
	n := 0
	for _, x := range t.Chains {
		for _, r := range x.Rules {
			if (r.Verdict == VerdictJump || r.Verdict == VerdictGoto) && r.jumpTarget() == c.Name {
				n++
			}
		}
	}
	return n
}

func (r *Rule) jumpTarget() string {
	if r.Jump != nil {
		return r.Jump.Name
	}
	return r.jumpName
}

// listHeader is print_header.
func (t *Table) listHeader(b *SaveWriter, c *Chain, f listFmt) {
	b.WriteString("Chain " + c.Name)
	if c.Builtin {
		b.WriteString(" (policy " + c.Policy.String())
		if f.counts {
			ctr := c.LiveCounters()
			b.WriteByte(' ')
			printNum(b, ctr.Packets, f, true)
			b.WriteString("packets, ")
			printNum(b, ctr.Bytes, f, true)
			b.WriteString("bytes")
		}
		b.WriteString(")\n")
	} else {
		fmt.Fprintf(b, " (%d references)\n", t.refs(c))
	}
	if f.lines {
		b.WriteString("num  ")
	}
	if f.counts {
		if f.kmg {
			b.WriteString(" pkts bytes ")
		} else {
			b.WriteString("    pkts      bytes ")
		}
	}
	b.WriteString("target    ")
	b.WriteString(" prot ")
	b.WriteString("opt")
	if f.via {
		b.WriteString(" in     out    ")
	}
	b.WriteString(" source              ")
	b.WriteString(" destination         ")
	b.WriteString("\n")
}

// listRule is nft_ipv4_print_rule.
func (t *Table) listRule(b *SaveWriter, r *Rule, num int, f listFmt) {
	ip := &r.IP
	if f.lines {
		fmt.Fprintf(b, "%-4d ", num)
	}
	if f.counts {
		ctr := r.LiveCounters()
		printNum(b, ctr.Packets, f, false)
		printNum(b, ctr.Bytes, f, false)
	}
	target := ""
	switch {
	case r.Target != nil:
		target = r.Target.Name()
		if n, ok := r.Target.(interface{ listName() string }); ok {
			target = n.listName()
		}
	case r.Verdict == VerdictJump || r.Verdict == VerdictGoto:
		target = r.jumpTarget()
	case r.Verdict != VerdictNone:
		target = r.Verdict.String()
	}
	if f.notable {
		b.WriteString(target + " ")
	} else {
		fmt.Fprintf(b, "%-9s ", target)
	}
	if ip.Inv&InvProto != 0 {
		b.WriteByte('!')
	} else {
		b.WriteByte(' ')
	}
	pname := ""
	if f.notable {
		// print_rule's proto_to_name: the fixed table even with
		// FMT_NUMERIC ("tcp", "all"), no getprotobynumber (gre is 47)
		pname = protoName(ip.Proto)
	} else if !f.numeric {
		if ip.Proto != 0 {
			pname = f.names.Proto(ip.Proto)
		}
		if pname == "" {
			pname = protoName(ip.Proto)
		}
	}
	if pname == "" {
		pname = strconv.Itoa(int(ip.Proto))
	}
	if f.notable {
		b.WriteString(pname + " ")
	} else {
		fmt.Fprintf(b, "%-4s ", pname)
	}
	// print_fragment
	if f.notable {
		b.WriteString("opt ")
	}
	if ip.Inv&InvFrag != 0 {
		b.WriteByte('!')
	} else {
		b.WriteByte('-')
	}
	if ip.Frag {
		b.WriteByte('f')
	} else {
		b.WriteByte('-')
	}
	b.WriteByte(' ')
	if f.via {
		any := "any"
		if f.numeric {
			any = "*"
		}
		in, out := ip.In.Name, ip.Out.Name
		if in == "" {
			in = any
		}
		if out == "" {
			out = any
		}
		if ip.Inv&InvIn != 0 {
			in = "!" + in
		}
		if ip.Inv&InvOut != 0 {
			out = "!" + out
		}
		if f.notable {
			b.WriteString("in " + in + " out " + out + " ")
		} else {
			fmt.Fprintf(b, " %-6s ", in)
			fmt.Fprintf(b, "%-6s ", out)
		}
	}
	listAddr(b, ip.Src, ip.SrcMask, ip.Inv&InvSrc != 0, f, "")
	listAddr(b, ip.Dst, ip.DstMask, ip.Inv&InvDst != 0, f, "-> ")
	if f.notable {
		b.WriteString("  ")
	}
	if r.Verdict == VerdictGoto {
		b.WriteString("[goto] ")
	}
	for _, m := range r.Matches {
		if l, ok := m.(lister); ok {
			l.list(b, ip, f)
		}
	}
	if r.Target != nil {
		if l, ok := r.Target.(lister); ok {
			l.list(b, ip, f)
		}
	}
	b.WriteByte('\n')
}

// lister is an extension's ->print.
type lister interface {
	list(b *SaveWriter, ip *IPHeader, f listFmt)
}

// listAddr is one address of print_ipv4_addresses; arrow is what the
// one-line form (notable) puts before it ("-> " for the destination,
// which then has no space after it).
func listAddr(b *SaveWriter, a, m uint32, inv bool, f listFmt, arrow string) {
	if inv {
		b.WriteByte('!')
	} else {
		b.WriteByte(' ')
	}
	text := f.anyname(a) + maskSuffix(m)
	if m == 0 && !f.numeric {
		text = "anywhere"
	}
	switch {
	case !f.notable:
		fmt.Fprintf(b, "%-19s ", text)
	case arrow != "":
		b.WriteString(arrow + text)
	default:
		b.WriteString(text + " ")
	}
}

// RuleLine is the line iptables -v prints for a rule that -A, -I, -R,
// -D or -C names (print_rule with FMT_PRINT_RULE: numeric, no
// counters, the one-line form), with its newline.
func RuleLine(r *Rule) string {
	var b SaveWriter
	(&Table{}).listRule(&b, r, 0, listFmt{numeric: true, via: true, notable: true, names: noNames{}})
	return b.String()
}

// anyname is xtables_ipaddr_to_anyname, or the number with -n.
func (f listFmt) anyname(a uint32) string {
	if !f.numeric {
		if n := f.names.Host(a); n != "" {
			return n
		}
		if n := f.names.Network(a); n != "" {
			return n
		}
	}
	return FormatAddr(a)
}

// maskSuffix is xtables_ipmask_to_numeric.
func maskSuffix(m uint32) string {
	if m == 0xffffffff {
		return ""
	}
	n := 0
	for x := m; x&0x80000000 != 0; x <<= 1 {
		n++
	}
	if n < 32 && m<<uint(n) != 0 {
		return "/" + FormatAddr(m)
	}
	return "/" + strconv.Itoa(n)
}

// ListRules prints -S [CHAIN [RULENUM]] (nft_rule_list_save and
// nft_chain_save); verbose adds the counters as "-c PKTS BYTES".
func (t *Table) ListRules(chain string, rulenum int, verbose bool) (string, error) {
	var b SaveWriter
	if chain != "" && t.byName[chain] == nil {
		return "", &ErrNoChain{chain, t.ID.String()}
	}
	if rulenum == 0 {
		for _, c := range t.Chains {
			if chain != "" && c.Name != chain {
				continue
			}
			if c.Builtin {
				b.WriteString("-P " + c.Name + " " + c.Policy.String())
				if verbose {
					ctr := c.LiveCounters()
					fmt.Fprintf(&b, " -c %d %d", ctr.Packets, ctr.Bytes)
				}
				b.WriteByte('\n')
			} else {
				b.WriteString("-N " + c.Name + "\n")
			}
		}
	}
	for _, c := range t.Chains {
		if chain != "" && c.Name != chain {
			continue
		}
		for i, r := range c.Rules {
			if rulenum > 0 && i+1 != rulenum {
				continue
			}
			b.WriteString("-A " + c.Name)
			body := RuleString(r)
			if verbose {
				// the counters go before the target (save_matches_and_target)
				ctr := r.LiveCounters()
				cs := fmt.Sprintf(" -c %d %d", ctr.Packets, ctr.Bytes)
				if k := targetIndex(body, r); k >= 0 {
					body = body[:k] + cs + body[k:]
				} else {
					body += cs
				}
			}
			b.WriteString(body + "\n")
		}
	}
	return b.String(), nil
}

// targetIndex finds where the rule's " -j"/" -g" part starts in its
// saved form (-1: none).
func targetIndex(body string, r *Rule) int {
	var tail string
	switch {
	case r.Target != nil:
		var w SaveWriter
		w.WriteString(" -j " + r.Target.Name())
		r.Target.Save(&w)
		tail = w.String()
	case r.Verdict == VerdictGoto:
		tail = " -g " + r.jumpTarget()
	case r.Verdict == VerdictJump:
		tail = " -j " + r.jumpTarget()
	case r.Verdict != VerdictNone:
		tail = " -j " + r.Verdict.String()
	default:
		return -1
	}
	if strings.HasSuffix(body, tail) {
		return len(body) - len(tail)
	}
	return -1
}

// ZeroCounters returns a copy of the rule set with the counters of the
// chain (all the table's chains when chain is "") or of its rule
// rulenum (1-based, 0: all) set to zero, as -Z does.
func (rs *Ruleset) ZeroCounters(table TableID, chain string, rulenum int) *Ruleset {
	n := rs.clone()
	t := n.Tables[table]
	if t == nil {
		return n
	}
	t = t.clone()
	n.Tables[table] = t
	for _, c := range t.Chains {
		if chain != "" && c.Name != chain {
			continue
		}
		if rulenum == 0 && c.Builtin {
			c.Counters = Counters{}
			c.hits = new(hitCounter)
		}
		for i, r := range c.Rules {
			if rulenum == 0 || i+1 == rulenum {
				z := r.withCounters(Counters{})
				z.hits = new(hitCounter)
				c.Rules[i] = z
			}
		}
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.Jump != nil {
				r.Jump = t.byName[r.Jump.Name]
			}
		}
	}
	n.Compile()
	n.prepareMemo()
	return n
}
