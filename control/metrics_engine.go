package control

import (
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/prom"
)

// WriteConntrack writes the engine's conntrack table size and statistics
// (conntrack -S).
func WriteConntrack(m *prom.Writer, eng *datapath.Engine) {
	ct := eng.CT.Stats()
	m.Gauge("uswitch_conntrack_entries", "Connections in the conntrack table.", uint64(eng.CT.Count()))
	const events = "uswitch_conntrack_events_total"
	m.Family(events, "counter", "Conntrack statistics (conntrack -S).")
	for _, f := range []struct {
		k string
		v uint64
	}{{"found", ct.Found}, {"new", ct.New}, {"insert", ct.Insert}, {"insert_failed", ct.InsertFailed},
		{"drop", ct.Drop}, {"early_drop", ct.EarlyDrop}, {"ignore", ct.Ignore}, {"expired", ct.Expired}, {"clash", ct.Clash}} {
		m.Sample(events, f.v, "event", f.k)
	}
}
