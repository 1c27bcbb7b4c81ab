package iptables

import "testing"

// TestRestoreKeepsJumpsInTheNewSet: a table an iptables-restore leaves
// alone is carried over from the old rule set, and its jumps must land
// on its own chains, not on the old set's (whose rules would then count
// packets and give trace handles outside the running set).
func TestRestoreKeepsJumpsInTheNewSet(t *testing.T) {
	first, err := (&Loader{}).LoadString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:MYPOST - [0:0]\n-A POSTROUTING -j MYPOST\n-A MYPOST -o eth1 -j MASQUERADE\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	second, err := (&Loader{Base: first}).LoadString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tb := range second.Tables {
		if tb == nil {
			continue
		}
		for _, c := range tb.Chains {
			for _, r := range c.Rules {
				if r.Jump == nil {
					continue
				}
				checked++
				if r.Jump != tb.byName[r.Jump.Name] {
					t.Errorf("%s %s: -j %s points outside the new rule set", tb.ID, c.Name, r.Jump.Name)
				}
			}
		}
	}
	if checked != 1 {
		t.Fatalf("checked %d jumps, want 1 (the nat table was not carried over?)", checked)
	}
}
