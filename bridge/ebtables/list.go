package ebtables

import (
	"fmt"
	"io"
	"strings"
)

// ListOptions are ebtables -L's variants.
type ListOptions struct {
	Chain    string // one chain ("" for all)
	Counters bool   // --Lc: ", pcnt = P -- bcnt = B" after each rule
	Numbers  bool   // --Ln: the rule's number before it
}

// List prints table t as "ebtables -t T -L" does (nft_bridge_print_header
// and the rule printer of iptables/nft-bridge.c): "Bridge table: T",
// then per chain a blank line, "Bridge chain: C, entries: N, policy: P"
// and its rules in the save form without "-A C". A table that is not
// loaded lists its builtin chains empty, as ebtables-nft does. It
// returns false when o.Chain names no chain.
func (rs *Ruleset) List(w io.Writer, t TableID, o ListOptions) (bool, error) {
	tbl := rs.Tables[t]
	if tbl == nil {
		tbl = newTable(t)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Bridge table: %s\n", t)
	found := false
	for _, c := range saveOrder(tbl) {
		if o.Chain != "" && c.Name != o.Chain {
			continue
		}
		found = true
		// a user chain lists as "policy: RETURN" whatever its policy
		// (ebtables-nft 1.8.9 keeps it as a trailing rule, which -L
		// neither counts nor shows; ebtables-save shows it)
		pol := c.Policy
		if !c.Builtin {
			pol = VReturn
		}
		fmt.Fprintf(&b, "\nBridge chain: %s, entries: %d, policy: %s\n", c.Name, len(c.Rules), pol)
		for i, r := range c.Rules {
			if o.Numbers {
				fmt.Fprintf(&b, "%d ", i+1)
			}
			writeRule(&b, r)
			if o.Counters {
				p, n := r.Counts()
				fmt.Fprintf(&b, " , pcnt = %d -- bcnt = %d", p, n)
			}
			b.WriteString("\n")
		}
	}
	if !found {
		return false, nil
	}
	_, err := io.WriteString(w, b.String())
	return true, err
}
