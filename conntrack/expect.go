package conntrack

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Expectations (net/netfilter/nf_conntrack_expect.c): a helper that saw
// a data connection announced (FTP PORT/PASV, a TFTP request) expects
// it; the first packet of a new connection that matches an expectation
// makes an entry that is RELATED, has the helper's entry as its master,
// and (NAT) follows the master's bindings.

// Expect is one expectation (struct nf_conntrack_expect). Tuple holds
// the expected original tuple (its Zone the master's); SrcMask and
// SrcPortMask say which of its source fields must match (all ones, or 0
// for "any": nf_ct_expect_init with a NULL source), the destination and
// protocol always must.
type Expect struct {
	Tuple       Tuple
	SrcMask     uint32
	SrcPortMask uint16
	Master      *Conn
	// Helper is what the expected entry gets (exp->helper). The FTP and
	// TFTP helpers leave it nil: on this kernel (6.18) their data
	// connections show no helper in conntrack -L, as compared.
	Helper *Helper
	// Permanent keeps the expectation after it is used
	// (NF_CT_EXPECT_PERMANENT); no helper here sets it
	Permanent bool

	// NAT (nf_nat_follow_master): the expected entry's DST manip goes
	// to the master's tuple[!Dir] source address and SavedPort; its SRC
	// manip to the master's tuple[!Dir] destination.
	NATFollow bool
	SavedPort uint16
	Dir       Dir

	// deadline is when the expectation times out (now-nanoseconds);
	// seq orders expectations by insertion (older first)
	deadline int64
	seq      uint64
}

// matches is nf_ct_tuple_mask_cmp: destination and protocol exactly,
// the source under the mask; the zone as nf_ct_exp_zone_equal_any.
func (e *Expect) matches(tu *Tuple) bool {
	return tu.Dst == e.Tuple.Dst && tu.DstPort == e.Tuple.DstPort && tu.Proto == e.Tuple.Proto &&
		(tu.Src^e.Tuple.Src)&e.SrcMask == 0 && (tu.SrcPort^e.Tuple.SrcPort)&e.SrcPortMask == 0 &&
		tu.Zone == e.Tuple.Zone
}

// equal is expect_matches: the same tuple and the same masks.
func (e *Expect) equal(o *Expect) bool {
	return e.Tuple == o.Tuple && e.SrcMask == o.SrcMask && e.SrcPortMask == o.SrcPortMask
}

// clash is expect_clash: equal under the intersection of their masks.
func (e *Expect) clash(o *Expect) bool {
	am, pm := e.SrcMask&o.SrcMask, e.SrcPortMask&o.SrcPortMask
	a, b := &e.Tuple, &o.Tuple
	return a.Dst == b.Dst && a.DstPort == b.DstPort && a.Proto == b.Proto && a.Zone == b.Zone &&
		(a.Src^b.Src)&am == 0 && (a.SrcPort^b.SrcPort)&pm == 0
}

// Remaining is the expectation's remaining lifetime at now (ns, >= 0).
func (e *Expect) Remaining(now int64) int64 { return max(e.deadline-now, 0) }

// expectTable is the per-netns expectation hash (nf_ct_expect_hash):
// few entries, so one list under one lock (nf_conntrack_expect_lock);
// count lets the new-connection path skip it without the lock.
type expectTable struct {
	mu    sync.Mutex
	list  []*Expect // guarded by mu; insertion order
	count atomic.Int32
	seq   uint64
}

// Errors of ExpectRelated, as nf_ct_expect_related_report returns them.
var (
	ErrExpectShutdown = errors.New("conntrack: master has no helper")             // -ESHUTDOWN
	ErrExpectBusy     = errors.New("conntrack: expectation clashes with another") // -EBUSY
	ErrExpectFull     = errors.New("conntrack: too many expectations")            // -EMFILE
)

// ExpectMax is nf_conntrack_expect_max: nf_ct_expect_hsize (the table's
// buckets / 256, at least 1) times 4.
func (t *Table) ExpectMax() int {
	return max(t.cfg.Buckets/256, 1) * 4
}

// ExpectCount is the number of live expectations (nf_conntrack_count's
// sibling, cnet->expect_count).
func (t *Table) ExpectCount() int { return int(t.exp.count.Load()) }

// ExpectRelated inserts e (nf_ct_expect_related): an expectation equal
// to e from the same master replaces the old one; one that clashes
// makes ErrExpectBusy; a master at its helper's max_expected loses its
// oldest; a full table is ErrExpectFull. The deadline is the master
// helper's timeout from now.
func (t *Table) ExpectRelated(e *Expect, now int64) error {
	m := e.Master
	if m == nil || m.ext == nil || m.ext.helper == nil {
		return ErrExpectShutdown
	}
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, i := range x.list {
		if i.Master == e.Master && i.equal(e) {
			t.unlinkExpect(i)
			break
		} else if i.clash(e) {
			return ErrExpectBusy
		}
	}
	h := m.ext.helper
	if h.MaxExpected > 0 && m.ext.expecting >= h.MaxExpected {
		// evict_oldest_expect
		for _, i := range x.list {
			if i.Master == m {
				t.unlinkExpect(i)
				break
			}
		}
		if m.ext.expecting >= h.MaxExpected {
			return ErrExpectFull
		}
	}
	if len(x.list) >= t.ExpectMax() {
		return ErrExpectFull
	}
	x.seq++
	e.seq = x.seq
	e.deadline = now + int64(h.ExpectTimeout)
	x.list = append(x.list, e)
	m.ext.expecting++
	x.count.Add(1)
	return nil
}

// UnexpectRelated removes e if it is still there (nf_ct_unexpect_related).
func (t *Table) UnexpectRelated(e *Expect) {
	t.exp.mu.Lock()
	t.unlinkExpect(e)
	t.exp.mu.Unlock()
}

// unlinkExpect removes e from the list; the caller holds exp.mu.
func (t *Table) unlinkExpect(e *Expect) {
	x := &t.exp
	for k, i := range x.list {
		if i == e {
			x.list = slices.Delete(x.list, k, k+1)
			x.count.Add(-1)
			if e.Master.ext != nil {
				e.Master.ext.expecting--
			}
			return
		}
	}
}

// findExpectation is nf_ct_find_expectation: the live expectation tu
// matches, unlinked unless permanent; nil when none, or when its master
// is not confirmed yet or is dying. Expired ones found on the way go
// (their timer would have removed them).
func (t *Table) findExpectation(tu *Tuple, now int64) *Expect {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := 0; k < len(x.list); k++ {
		e := x.list[k]
		if e.deadline-now <= 0 {
			t.unlinkExpect(e)
			k--
			continue
		}
		if !e.matches(tu) {
			continue
		}
		st := e.Master.Status()
		if st&StatusConfirmed == 0 || st&StatusDying != 0 {
			return nil
		}
		if !e.Permanent {
			t.unlinkExpect(e)
		}
		return e
	}
	return nil
}

// removeExpectations drops every expectation of master c
// (nf_ct_remove_expectations, when the master goes).
func (t *Table) removeExpectations(c *Conn) {
	if c.ext == nil || t.exp.count.Load() == 0 {
		return
	}
	x := &t.exp
	x.mu.Lock()
	for k := 0; k < len(x.list); k++ {
		if x.list[k].Master == c {
			t.unlinkExpect(x.list[k])
			k--
		}
	}
	x.mu.Unlock()
}

// reapExpectations removes the expectations timed out by now (their
// timers); Reap calls it.
func (t *Table) reapExpectations(now int64) int {
	if t.exp.count.Load() == 0 {
		return 0
	}
	x := &t.exp
	x.mu.Lock()
	n := 0
	for k := 0; k < len(x.list); k++ {
		if x.list[k].deadline-now <= 0 {
			t.unlinkExpect(x.list[k])
			k--
			n++
		}
	}
	x.mu.Unlock()
	return n
}

// Expectations returns a copy of the live expectations at now, newest
// first, as the kernel's hash chains list them for `conntrack -L
// expect` (the copies' Master pointers are the live entries).
func (t *Table) Expectations(now int64) []Expect {
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Expect, 0, len(x.list))
	for k := len(x.list) - 1; k >= 0; k-- {
		if e := x.list[k]; e.deadline-now > 0 {
			out = append(out, *e)
		}
	}
	return out
}

// expected is init_conntrack's expectation step for a new entry c of
// tuple tu: when an expectation matches, c is EXPECTED, gets the
// master, the expectation's helper and the master's connmark, and
// remembers the expectation for NAT to follow.
func (t *Table) expected(c *Conn, tu *Tuple, now int64) bool {
	if t.exp.count.Load() == 0 {
		return false
	}
	e := t.findExpectation(tu, now)
	if e == nil {
		return false
	}
	c.SetStatus(StatusExpected)
	c.ext = &connExt{master: e.Master, helper: e.Helper}
	c.mark.Store(e.Master.Mark())
	if e.NATFollow {
		c.ext.follow = e
	}
	t.stats.expectNew.Add(1)
	return true
}

// FlushExpectations removes every expectation (conntrack -F expect).
func (t *Table) FlushExpectations() {
	x := &t.exp
	x.mu.Lock()
	for len(x.list) > 0 {
		t.unlinkExpect(x.list[0])
	}
	x.mu.Unlock()
}

// AppendExpect appends e as conntrack -L expect prints it
// (libnetfilter_conntrack's default expectation format): the remaining
// whole seconds, the expected tuple, its mask, the master's original
// tuple, the class and the master's helper.
func AppendExpect(b []byte, e *Expect, now int64) []byte {
	b = strconv.AppendInt(b, e.Remaining(now)/int64(time.Second), 10)
	b = append(b, " proto="...)
	b = strconv.AppendUint(b, uint64(e.Tuple.Proto), 10)
	tu := e.Tuple
	b = appendAddrKV(b, " src=", tu.Src)
	b = appendAddrKV(b, " dst=", tu.Dst)
	b = appendPortKV(b, " sport=", tu.SrcPort)
	b = appendPortKV(b, " dport=", tu.DstPort)
	b = appendAddrKV(b, " mask-src=", e.SrcMask)
	b = appendAddrKV(b, " mask-dst=", ^uint32(0))
	b = appendPortKV(b, " sport=", e.SrcPortMask)
	b = appendPortKV(b, " dport=", 0xffff)
	if m := e.Master; m != nil {
		mt := m.Tuple(Original)
		b = appendAddrKV(b, " master-src=", mt.Src)
		b = appendAddrKV(b, " master-dst=", mt.Dst)
		b = appendPortKV(b, " sport=", mt.SrcPort)
		b = appendPortKV(b, " dport=", mt.DstPort)
	}
	if e.Permanent {
		b = append(b, " PERMANENT"...)
	}
	b = append(b, " class=0"...)
	if e.Master != nil {
		if h := e.Master.HelperName(); h != "" {
			b = append(b, " helper="...)
			b = append(b, h...)
		}
	}
	return b
}

func appendAddrKV(b []byte, k string, a uint32) []byte {
	b = append(b, k...)
	for i := 3; i >= 0; i-- {
		b = strconv.AppendUint(b, uint64(byte(a>>(8*i))), 10)
		if i > 0 {
			b = append(b, '.')
		}
	}
	return b
}

func appendPortKV(b []byte, k string, p uint16) []byte {
	return strconv.AppendUint(append(b, k...), uint64(p), 10)
}
