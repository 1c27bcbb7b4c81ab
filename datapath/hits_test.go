package datapath

import (
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
)

// TestHitBatch: a worker's batch, over more recordings than it holds
// and more frames than one entry takes, adds every frame's bytes to
// each rule of the recording it replayed (classes and nat PREROUTING
// walks sharing rules too), never twice, and holds at most its bounds.
func TestHitBatch(t *testing.T) {
	rules := make([]*ebtables.Rule, 5)
	for i := range rules {
		rules[i] = &ebtables.Rule{}
	}
	var classes []*bclass
	var pres []*preEntry
	for i := range hitSlots + 3 {
		c := &bclass{nebt: 2}
		c.ebt[0], c.ebt[1] = rules[i%5], rules[(i+1)%5]
		classes = append(classes, c)
		p := &preEntry{n: 1}
		p.hits[0] = rules[(i+2)%5]
		pres = append(pres, p)
	}
	type want struct{ pkts, bytes uint64 }
	wants := make([]want, len(rules))
	var b hitBatch
	for i := range 3*hitMaxPkts + 17 {
		j := i % len(classes)
		if i%5 == 0 {
			j = 0 // a run on one class
		}
		n := 60 + i%1400
		b.addClass(classes[j], nil, n+4, n)
		for _, r := range classes[j].ebt[:2] {
			for k := range rules {
				if rules[k] == r {
					wants[k].pkts++
					wants[k].bytes += uint64(n)
				}
			}
		}
		b.addPre(pres[j], n)
		for k := range rules {
			if rules[k] == pres[j].hits[0] {
				wants[k].pkts++
				wants[k].bytes += uint64(n)
			}
		}
		if b.ncls > hitSlots || b.npre > hitSlots {
			t.Fatalf("%d classes, %d walks held", b.ncls, b.npre)
		}
		for _, e := range b.cls[:b.ncls] {
			if e.pkts > hitMaxPkts {
				t.Fatalf("an entry holds %d frames", e.pkts)
			}
		}
	}
	if b.pending() == 0 {
		t.Fatal("nothing pending before the flush")
	}
	b.flush()
	b.flush()
	if b.pending() != 0 {
		t.Fatalf("%d pending after flush", b.pending())
	}
	for k, r := range rules {
		p, by := r.Hits.Load()
		if p != wants[k].pkts || by != wants[k].bytes {
			t.Errorf("rule %d: %d packets %d bytes, want %d %d", k, p, by, wants[k].pkts, wants[k].bytes)
		}
	}
}
