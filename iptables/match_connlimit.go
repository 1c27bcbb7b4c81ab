package iptables

import (
	"math/bits"
	"sync"

	"github.com/uswitch-lab/uswitch/conntrack"
)

// connlimit match (extensions/libxt_connlimit.c, revision 1; kernel
// net/netfilter/xt_connlimit.c).

// ConnlimitMatch is "-m connlimit" (xt_connlimit_info).
type ConnlimitMatch struct {
	Limit  uint32
	Mask   uint32
	Invert bool // XT_CONNLIMIT_INVERT: "upto" semantics
	Daddr  bool // XT_CONNLIMIT_DADDR

	upto, above, saddr, daddr bool

	// mu guards lists: the rule's connection lists by masked address
	// (the nf_conncount_data the kernel allocates per rule).
	mu    sync.Mutex
	lists map[clKey][]clConn
}

// clKey is the kernel's key: the masked address and the zone.
type clKey struct {
	addr uint32
	zone uint16
}

// clConn is struct nf_conncount_tuple: a counted connection.
type clConn struct {
	tuple conntrack.Tuple
	conn  *conntrack.Conn // nil: the packet had no connection
}

func (m *ConnlimitMatch) Name() string { return "connlimit" }

func (m *ConnlimitMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "connlimit-upto", "connlimit-above":
		v, err := parseUintOpt("connlimit", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		m.Limit = uint32(v)
		if o.Name == "connlimit-upto" {
			m.upto = true
			if !o.Invert {
				m.Invert = true
			}
		} else {
			m.above = true
			if o.Invert {
				m.Invert = true
			}
		}
	case "connlimit-mask":
		l, err := parsePlen("connlimit", "connlimit-mask", o.Arg)
		if err != nil {
			return err
		}
		m.Mask = plenToMask(l)
	case "connlimit-saddr":
		m.saddr = true
		m.Daddr = false
	case "connlimit-daddr":
		m.daddr = true
		m.Daddr = true
	}
	return nil
}

// Final is connlimit_check and the excl checks of connlimit_opts.
func (m *ConnlimitMatch) Final(r *RuleContext) error {
	if !m.upto && !m.above {
		return Errorf("You must specify \"--connlimit-above\" or \"--connlimit-upto\".")
	}
	if m.upto && m.above {
		return cannotCombine("connlimit", "connlimit-upto", "connlimit-above")
	}
	if m.saddr && m.daddr {
		return cannotCombine("connlimit", "connlimit-saddr", "connlimit-daddr")
	}
	return nil
}

// countBits4 is libxt_connlimit.c count_bits4: 32 minus the position of
// the highest zero bit of the mask.
func countBits4(mask uint32) int { return 32 - bits.Len32(^mask) }

func (m *ConnlimitMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.Opt("connlimit-upto", uitoa(uint64(m.Limit)))
	} else {
		w.Opt("connlimit-above", uitoa(uint64(m.Limit)))
	}
	w.Opt("connlimit-mask", uitoa(uint64(countBits4(m.Mask))))
	if m.Daddr {
		w.Opt("connlimit-daddr", "")
	} else {
		w.Opt("connlimit-saddr", "")
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "connlimit", Options: []Option{
		{Name: "connlimit-upto", Arg: RequiredArg, Invert: true},
		{Name: "connlimit-above", Arg: RequiredArg, Invert: true},
		{Name: "connlimit-mask", Arg: RequiredArg},
		{Name: "connlimit-saddr"},
		{Name: "connlimit-daddr"},
	}, New: func() Match { return &ConnlimitMatch{Mask: 0xffffffff} }})
}

// connGCMax is CONNCOUNT_GC_MAX_NODES: evictions per walk.
const connGCMax = 8

// alive is find_or_evict on a single CPU: the entry's connection is still
// in the table (confirmed, not dying, not expired). An unconfirmed one
// (a NEW packet that was dropped before the confirm hook, or a packet
// without a connection) is not, and is evicted.
func (e *clConn) alive(now int64) bool {
	c := e.conn
	return c != nil && c.Confirmed() && c.Status()&conntrack.StatusDying == 0 && c.Expires(now) > 0
}

// connlimitTuple is the tuple counted for the packet: the connection's
// ORIGINAL one, or the packet's own (nf_ct_get_tuplepr) when it has no
// connection; ok false when the packet's transport header is too short.
func connlimitTuple(c *Ctx) (t conntrack.Tuple, ok bool) {
	if ct := c.CT.Conn; ct != nil {
		return ct.Tuple(conntrack.Original), true
	}
	p := c.Pkt
	t = conntrack.Tuple{Src: p.Src, Dst: p.Dst, Proto: p.Proto}
	switch p.Proto {
	case 6, 17, 136:
		if len(p.L4) < 4 {
			return t, p.IP.FragOffset() != 0
		}
		t.SrcPort, t.DstPort = be16(p.L4, 0), be16(p.L4, 2)
	case 1:
		if len(p.L4) < 8 {
			return t, p.IP.FragOffset() != 0
		}
		t.SrcPort, t.DstPort = be16(p.L4, 4), uint16(p.L4[0])<<8|uint16(p.L4[1])
	}
	return t, true
}

// Eval is connlimit_mt (net/netfilter/xt_connlimit.c) over
// nf_conncount_count (net/netfilter/nf_conncount.c): the rule keeps, per
// masked source (or destination) address and zone, a list of the
// connections it has seen; each packet prunes the list (connections no
// longer in the table, TCP ones in TIME_WAIT or CLOSE), adds its own
// connection unless already listed, and compares the count with the
// limit. The lists belong to the rule, as the kernel's per-rule data
// does, and start empty when a rule set is loaded.
//
// Approximations: a single CPU (an entry that is not in the table is
// evicted at once rather than kept briefly for another CPU), and the
// per-jiffy GC skip of newer kernels is not modelled (the list is
// walked on every packet, so a connection is never counted twice).
func (m *ConnlimitMatch) Eval(c *Ctx) bool {
	tuple, ok := connlimitTuple(c)
	if !ok {
		c.HotDrop = true
		return false
	}
	key := clKey{zone: tuple.Zone}
	if m.Daddr {
		key.addr = c.Pkt.Dst & m.Mask
	} else {
		key.addr = c.Pkt.Src & m.Mask
	}
	now := c.Env.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lists == nil {
		m.lists = make(map[clKey][]clConn)
	}
	list := m.lists[key]
	exists, collected := false, 0
	out := list[:0]
	for i := range list {
		e := list[i]
		if collected > connGCMax || exists {
			out = append(out, e)
			continue
		}
		if !e.alive(now) {
			collected++
			continue
		}
		if e.tuple == tuple {
			exists = true
		} else if e.tuple.Proto == 6 {
			if s := e.conn.TCPState(); s == conntrack.TCPTimeWait || s == conntrack.TCPClose {
				collected++
				continue
			}
		}
		out = append(out, e)
	}
	if !exists {
		out = append(out, clConn{tuple: tuple, conn: c.CT.Conn})
	}
	for i := len(out); i < len(list); i++ {
		list[i] = clConn{} // drop references
	}
	if len(out) == 0 {
		delete(m.lists, key)
	} else {
		m.lists[key] = out
	}
	return (uint32(len(out)) > m.Limit) != m.Invert
}
