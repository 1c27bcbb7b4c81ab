package ebtables

import "testing"

// TestJumpLoop covers both uses of jumpLoop: the command's EMLINK check
// (loops a builtin chain reaches; a dangling jump is not one) and the
// restore's ELOOP check (any loop; a dangling jump counts).
func TestJumpLoop(t *testing.T) {
	jump := func(to string) *Rule { return &Rule{Verdict: VJump, Jump: to} }
	chain := func(name string, builtin bool, to ...string) *Chain {
		c := &Chain{Name: name, Builtin: builtin}
		for _, d := range to {
			c.Rules = append(c.Rules, jump(d))
		}
		return c
	}
	for _, tc := range []struct {
		name                 string
		chains               []*Chain
		fromBuiltin, restore bool // want for reachesLoop, for loops
	}{
		{"none", []*Chain{chain("FORWARD", true, "a"), chain("a", false, "b"), chain("b", false)}, false, false},
		{"diamond", []*Chain{chain("FORWARD", true, "a", "b"), chain("a", false, "c"), chain("b", false, "c"), chain("c", false)}, false, false},
		{"reached loop", []*Chain{chain("FORWARD", true, "a"), chain("a", false, "b"), chain("b", false, "a")}, true, true},
		{"self", []*Chain{chain("INPUT", true, "a"), chain("a", false, "a")}, true, true},
		{"unreached loop", []*Chain{chain("FORWARD", true), chain("a", false, "b"), chain("b", false, "a")}, false, true},
		{"dangling", []*Chain{chain("FORWARD", true, "gone")}, false, true},
	} {
		tab := &Table{Chains: tc.chains}
		if got := reachesLoop(tab); got != tc.fromBuiltin {
			t.Errorf("%s: reachesLoop = %v, want %v", tc.name, got, tc.fromBuiltin)
		}
		if got := jumpLoop(tab, false, true); got != tc.restore {
			t.Errorf("%s: jumpLoop(all, dangling) = %v, want %v", tc.name, got, tc.restore)
		}
	}
}
