package fault

import (
	"fmt"
	"sync"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/nat"
)

// State faults act on the engine's state rather than on packets.
//
// conntrack-full emulates nf_conntrack_max = Max for the lab while its
// schedule is active (the sysctl is read-only in a child namespace, so
// the kernel cannot stage this per lab): new connections then meet the
// kernel's behaviour, which package conntrack implements
// (__nf_conntrack_alloc, early_drop in nf_conntrack_core.c): up to 8
// buckets from the new tuple's are searched for an entry that is not
// ASSURED to evict (conntrack -S early_drop), else the packet is
// dropped (drop; the kernel logs "nf_conntrack: table full, dropping
// packet", uswitch's fate says "conntrack: DROP(table full)").
// Established connections are untouched. The fault is a stage before
// conntrack that only watches the clock: the limit switches on and off
// with the first packet at or after the schedule's start and stop, the
// moment it can first matter, the same live and offline.

// TableFullMessage is the kernel's log line for a packet dropped on a
// full table (net_warn_ratelimited in __nf_conntrack_alloc).
const TableFullMessage = "nf_conntrack: table full, dropping packet"

// nat-exhaust cuts every source NAT's port pool (SNAT, MASQUERADE) to
// its first Ports ports while active (nat.Core.SetPoolLimit): once they
// are taken towards a destination, the kernel's search
// (nf_nat_l4proto_unique_tuple: up to 128 attempts from a random
// offset) finds none and the new connection's packet is dropped at
// confirm with insert_failed (conntrack -S), "At worst ... we will end
// up with a final duplicate in __nf_conntrack_confirm and drop the
// packet" (nf_nat_core.c get_unique_tuple).

// stateFault is a state fault's runtime state.
type stateFault struct {
	mu     sync.Mutex
	ct     *conntrack.Table
	nat    *nat.Core
	active bool
	// base are the table's drop and early_drop counters when the fault
	// became active; acc what earlier windows added
	base, acc conntrack.Stats
	windows   int

	// the state faults of actions.go
	host     Host
	fired    int // instants done
	saved    string
	swapping bool  // a non-atomic swap runs its command lines
	line     int   // a non-atomic swap's next command line
	lineAt   int64 // and when its first ran
	undo     [][2]string
	affected uint64
	errs     uint64
	lastErr  string
}

// BindState gives the set's state faults the engine's conntrack table
// and NAT core. Call it before packets flow.
func (s *Set) BindState(t *conntrack.Table, n *nat.Core) {
	for _, f := range s.Faults {
		if f.Kind.stateKind() || f.Kind == KindConntrackClash {
			f.state.mu.Lock()
			f.state.ct, f.state.nat = t, n
			f.state.mu.Unlock()
		}
	}
}

// set applies the fault's change (on) or undoes it.
func (f *Fault) set(on bool) {
	st := &f.state
	switch f.Kind {
	case KindConntrackFull:
		if on {
			st.ct.SetMax(f.Max)
		} else {
			st.ct.SetMax(0)
		}
	case KindNATExhaust:
		if st.nat == nil {
			return
		}
		if on {
			st.nat.SetPoolLimit(f.Ports)
		} else {
			st.nat.SetPoolLimit(0)
		}
	}
}

// tick switches the limit at the schedule's edges; for the faults of
// actions.go it fires their instants, or their windows' edges.
func (f *Fault) tick(now int64) {
	if f.Kind != KindConntrackFull && f.Kind != KindNATExhaust {
		f.tickAction(now)
		return
	}
	on := f.active(now)
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if on == st.active || st.ct == nil {
		return
	}
	st.active = on
	f.set(on)
	if on {
		st.base = st.ct.Stats()
		st.windows++
		f.Acted.Add(1)
		return
	}
	cur := st.ct.Stats()
	st.acc.Drop += cur.Drop - st.base.Drop
	st.acc.EarlyDrop += cur.EarlyDrop - st.base.EarlyDrop
	st.acc.InsertFailed += cur.InsertFailed - st.base.InsertFailed
}

// Release lifts a conntrack-full fault's limit (a fault deleted live).
func (f *Fault) Release() {
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if f.Kind != KindConntrackFull && f.Kind != KindNATExhaust {
		if st.active {
			f.unfire()
			st.active = false
		}
		return
	}
	if st.active && st.ct != nil {
		f.set(false)
		st.active = false
	}
}

// TableFull reports the packets a conntrack-full fault's windows have
// seen dropped for a full table, and the entries early-dropped.
func (f *Fault) TableFull() (drop, earlyDrop uint64) {
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	drop, earlyDrop = st.acc.Drop, st.acc.EarlyDrop
	if st.active && st.ct != nil {
		cur := st.ct.Stats()
		drop += cur.Drop - st.base.Drop
		earlyDrop += cur.EarlyDrop - st.base.EarlyDrop
	}
	return drop, earlyDrop
}

// InsertFailed reports the connections a nat-exhaust fault's windows
// have seen dropped at confirm (conntrack -S insert_failed).
func (f *Fault) InsertFailed() uint64 {
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	n := st.acc.InsertFailed
	if st.active && st.ct != nil {
		n += st.ct.Stats().InsertFailed - st.base.InsertFailed
	}
	return n
}

func (f *Fault) stateText() string {
	st := &f.state
	st.mu.Lock()
	active, windows := st.active, st.windows
	st.mu.Unlock()
	if f.Kind == KindNATExhaust {
		return fmt.Sprintf("active %v, windows %d: conntrack -S insert_failed %d", active, windows, f.InsertFailed())
	}
	drop, early := f.TableFull()
	s := fmt.Sprintf("active %v, windows %d: conntrack -S drop %d early_drop %d", active, windows, drop, early)
	if drop > 0 {
		s += fmt.Sprintf(" (%q x%d)", TableFullMessage, drop)
	}
	return s
}

// tickAction fires the instants that came (schedule at), or the
// window's edges, and the next lines of a non-atomic swap.
func (f *Fault) tickAction(now int64) {
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.swapping && st.host != nil {
		if n, err := f.swapLines(now); err != nil {
			st.errs++
			st.lastErr = err.Error()
		} else {
			st.affected += uint64(n)
		}
	}
	if at := f.sched.at; len(at) > 0 {
		if f.paused.Load() {
			return
		}
		rel := now - f.epoch
		if f.sched.trig != trigNone {
			t, ok := f.Triggered()
			if !ok {
				return
			}
			rel -= t
		}
		for st.fired < len(at) && at[st.fired] <= rel {
			st.fired++
			f.fire(now)
		}
		return
	}
	on := f.active(now)
	if on == st.active {
		return
	}
	st.active = on
	if on {
		st.windows++
		f.fire(now)
	} else {
		f.unfire()
	}
}
