package ebtables

import (
	"fmt"
	"io"
	"strings"
)

// Exec runs a parsed command on rs as the nf_tables batch of
// ebtables-nft 1.8.9 does at commit. What the command prints goes to
// out. next is the rule set to store: nil when the command changes
// nothing; rs itself when only counters changed (-Z, which zeroes the
// rules' counters in place, as the kernel does); otherwise a new set,
// in which the rules the command left alone are rs's own (their
// counters go on). rs is not changed but for -Z's counters; on error
// nothing is.
func (rs *Ruleset) Exec(cl *CommandLine, out io.Writer) (next *Ruleset, err *CmdError) {
	if rs == nil {
		rs = &Ruleset{}
	}
	id := cl.Table
	cur := rs.Tables[id]
	if cur == nil {
		cur = newTable(id)
	}
	switch cl.Op {
	case 'h':
		io.WriteString(out, cl.Stdout)
		return nil, nil
	case 'L':
		if cl.Chain != "" && cur.Chain(cl.Chain) == nil {
			return nil, &CmdError{Code: 1, Stderr: fmt.Sprintf("%s %s: chain `%s' in table `%s' is incompatible, use 'nft' tool.\n", cmdProg, version, cl.Chain, id)}
		}
		var b strings.Builder
		rs.List(&b, id, ListOptions{Chain: cl.Chain, Counters: cl.Counters, Numbers: cl.Numbers})
		io.WriteString(out, b.String())
		if !cl.Zero {
			return nil, nil
		}
		if err := zeroCounters(cur, cl.Chain, cl.Verbose, out); err != nil {
			return nil, err
		}
		return rs, nil
	case 'Z':
		if c := cur.Chain(cl.Chain); cl.Chain != "" && (c == nil || c.gone || rs.Tables[id] == nil) {
			return nil, cmdFailed(msgNoChain)
		}
		if err := zeroCounters(cur, cl.Chain, cl.Verbose, out); err != nil {
			return nil, err
		}
		return rs, nil
	case 'C':
		// ebtables-nft 1.8.9 parses -C and does nothing: do_commandeb
		// returns 0 and xtables_eb_main prints strerror of a stale
		// errno (ENOENT)
		return nil, cmdFailed(msgNoChain)
	case 'K':
		c := cur.Chain(cl.Chain)
		if c == nil || cl.kernelErr != nil || findRule(c, cl.Rule) < 0 {
			return nil, cmdFailed(msgBadRule)
		}
		return nil, nil
	}
	if rs.Tables[id] == nil && (cl.Op == 'F' || cl.Op == 'X') {
		// the table is not there: nothing to flush or delete (and
		// nothing made)
		if cl.Chain != "" {
			return nil, cmdFailed(msgNoChain)
		}
		return nil, nil
	}
	next = rs.Clone()
	if next.Tables[id] == nil {
		next.Tables[id] = newTable(id)
	}
	t := next.Tables[id]
	switch cl.Op {
	case 'T':
		next.Tables[id] = nil
		return next, nil
	case 'N', 'P':
		for _, name := range cl.newChains {
			if t.Chain(name) != nil {
				return nil, cmdFailed("Chain already exists")
			}
			if len(name) >= msgNFTMaxCh {
				return nil, cmdKernel("CHAIN_USER_ADD", "Numerical result out of range", "chain "+name)
			}
			t.Chains = append(t.Chains, &Chain{Name: name, Policy: VAccept})
		}
		if cl.PolicySet {
			c := t.Chain(cl.Chain)
			if c == nil {
				return nil, cmdFailed(msgNoChain)
			}
			c.Policy = cl.Policy
			c.make()
		}
	case 'X':
		if err := deleteChains(t, cl.Chain); err != nil {
			return nil, err
		}
	case 'E':
		if t.Chain(cl.NewName) != nil {
			return nil, cmdFailed("File exists")
		}
		c := t.Chain(cl.Chain)
		if c == nil || c.Builtin {
			return nil, cmdFailed(msgNoChain)
		}
		renameChain(t, c, cl.NewName)
	case 'F':
		if c := t.Chain(cl.Chain); cl.Chain != "" && (c == nil || c.gone) {
			return nil, cmdFailed(msgNoChain)
		}
		for _, c := range t.Chains {
			if cl.Chain == "" || c.Name == cl.Chain {
				if cl.Verbose {
					fmt.Fprintf(out, "Flushing chain `%s'\n", c.Name)
				}
				c.Rules = nil
			}
		}
	case 'A', 'I':
		// the jump is resolved when the rule is built, before the
		// chain is looked up
		if cl.badJump != "" && t.Chain(cl.badJump) == nil {
			return nil, cmdParam("Chain '%s' does not exist", cl.badJump)
		}
		c := t.Chain(cl.Chain)
		if c == nil {
			return nil, cmdFailed(msgNoChain)
		}
		what := "RULE_APPEND"
		if cl.Op == 'I' {
			what = "RULE_INSERT"
		}
		if cl.kernelErr != nil {
			return nil, cmdKernel(what, cl.kernelErr.msg, "rule in chain "+c.Name)
		}
		c.make()
		if cl.Op == 'A' {
			c.Rules = append(c.Rules, cl.Rule)
		} else {
			if !insertRule(c, cl.RuleNum, cl.Rule) {
				return nil, cmdFailed(msgInsertTooBig)
			}
		}
		if reachesLoop(t) {
			return nil, cmdKernel(what, "Too many links", "rule in chain "+c.Name)
		}
		if cl.Verbose {
			fmt.Fprintf(out, "%s\n", RuleString(cl.Rule))
		}
	case 'D':
		c := t.Chain(cl.Chain)
		if !cl.ByNum {
			if cl.badJump != "" && t.Chain(cl.badJump) == nil {
				return nil, cmdParam("Chain '%s' does not exist", cl.badJump)
			}
			if hasAmong(cl.Rule) {
				// nft_rule_find builds the rule with its among set,
				// which the kernel refuses outside a commit: EINVAL
				return nil, cmdFailed("Invalid argument")
			}
			i := -1
			if c != nil && cl.kernelErr == nil {
				i = findRule(c, cl.Rule)
			}
			if i < 0 {
				return nil, cmdFailed(msgBadRule)
			}
			if cl.Verbose {
				fmt.Fprintf(out, "%s\n", RuleString(c.Rules[i]))
			}
			c.Rules = append(c.Rules[:i], c.Rules[i+1:]...)
			break
		}
		if c == nil {
			return nil, cmdFailed(msgNoChain)
		}
		if msg := deleteRange(c, cl.RuleNum, cl.RuleEnd, rs.Tables[id] != nil); msg != "" {
			return nil, cmdFailed(msg)
		}
	default:
		return nil, nil
	}
	return next, nil
}

// msgInsertTooBig is -I's message for a position past the chain's end
// plus one.
const msgInsertTooBig = "Index of insertion too big"

// insertRule puts r at rule number num (1 first) of c, as -I does; false
// when num is past the end plus one.
func insertRule(c *Chain, num int, r *Rule) bool {
	pos := num - 1
	if pos > len(c.Rules) {
		return false
	}
	c.Rules = append(c.Rules[:pos], append([]*Rule{r}, c.Rules[pos:]...)...)
	return true
}

// deleteRange deletes rules from..end (1 first, end inclusive) of c as
// ebtables-nft's delete_entry does: each number is of the list as the
// previous deletions left it, so the rules deleted are every other one.
// inTable says the chain's table is in the kernel; a builtin chain no rule
// or policy made is not. It returns the command's message, or "" (rules
// deleted before a failure stay deleted: the caller drops the batch).
func deleteRange(c *Chain, from, end int, inTable bool) string {
	for n := from - 1; ; {
		switch {
		case n < 0:
			return msgBadRule
		case !inTable || c.Builtin && !c.Made:
			// no chain in the kernel to find the rule in
			return msgNoChain
		case n >= len(c.Rules):
			return "Index of deletion too big"
		}
		c.Rules = append(c.Rules[:n], c.Rules[n+1:]...)
		n++
		if n >= end {
			return ""
		}
	}
}

// renameChain renames c (-E). Jumps follow the chain (nft refers to it by
// handle); rules are shared with older rule sets, so the jumping ones
// are copied.
func renameChain(t *Table, c *Chain, name string) {
	for _, x := range t.Chains {
		for i, r := range x.Rules {
			if r.Verdict == VJump && r.Jump == c.Name {
				x.Rules[i] = r.withJump(name)
			}
		}
	}
	c.Name = name
}

func hasAmong(r *Rule) bool {
	for _, m := range r.Matches {
		if m.Name() == "among" {
			return true
		}
	}
	return false
}

// findRule is the index of the first rule of c equal to r (as
// ebtables-save prints them; counters aside), or -1.
func findRule(c *Chain, r *Rule) int {
	want := RuleString(r)
	for i, x := range c.Rules {
		if RuleString(x) == want {
			return i
		}
	}
	return -1
}

// zeroCounters zeroes the counters of a chain's rules, or of the whole
// table's (chain ""). ebtables-nft 1.8.9 zeroes a rule by replacing it
// with a copy rebuilt from what it read back (nft_rule_zero_counters),
// which the kernel refuses for a rule with an ip, ip6, arp, vlan or
// among match (the copy fails the match's check: EINVAL); rules whose
// counters are zero already are left alone. Then nothing is zeroed.
func zeroCounters(t *Table, chain string, verbose bool, out io.Writer) *CmdError {
	var cs []*Chain
	for _, c := range saveOrder(t) {
		if chain == "" || c.Name == chain {
			cs = append(cs, c)
		}
	}
	for _, c := range cs {
		for _, r := range c.Rules {
			if p, b := r.Counts(); p == 0 && b == 0 {
				continue
			}
			for _, m := range r.Matches {
				switch m.Name() {
				case "ip", "ip6", "arp", "vlan", "among":
					return cmdKernel("RULE_REPLACE", "Invalid argument", "rule in chain "+c.Name)
				}
			}
		}
	}
	for _, c := range cs {
		if verbose {
			fmt.Fprintf(out, "Zeroing chain `%s'\n", c.Name)
		}
		for _, r := range c.Rules {
			r.Hits.Set(0, 0)
		}
	}
	return nil
}

// deleteChains is -X: one chain, or every user chain (name ""). The
// kernel refuses to delete a chain that has rules or is jumped to
// (EBUSY); ebtables-nft refuses a builtin chain (ENOENT, or EBUSY when
// it has rules, which nft_strerror calls "Directory not empty").
func deleteChains(t *Table, name string) *CmdError {
	refd := func(n string) bool {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Verdict == VJump && r.Jump == n {
					return true
				}
			}
		}
		return false
	}
	if name != "" {
		c := t.Chain(name)
		switch {
		case c == nil:
			return cmdFailed(msgNoChain)
		case c.Builtin && (len(c.Rules) > 0 || c.Policy != VAccept):
			// nft_may_delete_chain: EBUSY
			return cmdFailed("Directory not empty")
		case c.Builtin && c.gone:
			return cmdFailed(msgNoChain)
		case c.Builtin:
			// an empty ACCEPT base chain is deleted (it lists as
			// before: ebtables shows builtin chains it lacks)
			if c.Made {
				c.unmake()
			}
			return nil
		case len(c.Rules) > 0 || refd(name):
			return cmdKernel("CHAIN_DEL", "Device or resource busy", "chain "+name)
		}
		t.Chains = removeChain(t.Chains, c)
		return nil
	}
	for _, c := range saveOrder(t) {
		if !c.Builtin && (len(c.Rules) > 0 || refd(c.Name)) {
			return cmdKernel("CHAIN_DEL", "Device or resource busy", "chain "+c.Name)
		}
	}
	var keep []*Chain
	for _, c := range t.Chains {
		if c.Builtin {
			if len(c.Rules) == 0 && c.Policy == VAccept && c.Made {
				c.unmake()
			}
			keep = append(keep, c)
		}
	}
	t.Chains = keep
	return nil
}

func removeChain(cs []*Chain, c *Chain) []*Chain {
	for i, x := range cs {
		if x == c {
			return append(cs[:i], cs[i+1:]...)
		}
	}
	return cs
}

// reachesLoop says whether a builtin chain reaches a jump loop (the
// kernel's nft_chain_validate refuses the rule: EMLINK). Loops among
// user chains no base chain reaches are accepted, as nf_tables does.
func reachesLoop(t *Table) bool { return jumpLoop(t, true, false) }

// jumpLoop says whether a walk of t's jumps from its chains (only the
// builtin ones with fromBuiltin) finds a loop; with dangling, a jump to
// a chain t does not have counts as one.
func jumpLoop(t *Table, fromBuiltin, dangling bool) bool {
	state := map[string]int{} // 1: on the walk's path, 2: done
	var visit func(c *Chain) bool
	visit = func(c *Chain) bool {
		switch state[c.Name] {
		case 1:
			return true
		case 2:
			return false
		}
		state[c.Name] = 1
		for _, r := range c.Rules {
			if r.Verdict != VJump {
				continue
			}
			d := t.Chain(r.Jump)
			if d == nil {
				if dangling {
					return true
				}
				continue
			}
			if visit(d) {
				return true
			}
		}
		state[c.Name] = 2
		return false
	}
	for _, c := range t.Chains {
		if (c.Builtin || !fromBuiltin) && visit(c) {
			return true
		}
	}
	return false
}
