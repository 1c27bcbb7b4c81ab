package fault

import "github.com/uswitch-lab/uswitch/internal/prom"

// WriteMetrics writes the faults' counters: packets matched and acted
// on, and actions by kind (labels bounded by the set's faults).
func (s *Set) WriteMetrics(m *prom.Writer) {
	if s == nil || len(s.Faults) == 0 {
		return
	}
	const matched, acted, actions = "uswitch_fault_matched_total", "uswitch_fault_acted_total", "uswitch_fault_actions_total"
	m.Family(matched, "counter", "Packets each fault matched while active (its match and schedule).")
	for _, f := range s.Faults {
		m.Sample(matched, f.Matched.Load(), "fault", f.Name)
	}
	m.Family(acted, "counter", "Packets each fault acted on: matched and picked by skip, every, nth and times.")
	for _, f := range s.Faults {
		m.Sample(acted, f.Acted.Load(), "fault", f.Name)
	}
	m.Family(actions, "counter", "What each fault did: drop (loss, partition), duplicate, corrupt, delay, reorder, ecn, mangle, limit (the queue limit dropped).")
	for _, f := range s.Faults {
		for _, a := range []struct {
			k string
			v uint64
		}{{"drop", f.Dropped.Load()}, {"duplicate", f.Duplicated.Load()}, {"corrupt", f.Corrupted.Load()}, {"delay", f.Delayed.Load()},
			{"reorder", f.Reordered.Load()}, {"ecn", f.Marked.Load()}, {"mangle", f.Mangled.Load()}, {"limit", f.LimitDrops.Load()}} {
			m.Sample(actions, a.v, "fault", f.Name, "action", a.k)
		}
	}
}
