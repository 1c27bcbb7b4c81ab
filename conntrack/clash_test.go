package conntrack

import (
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestConfirmClash: an entry that loses the race to confirm meets
// nf_ct_resolve_clash (nf_conntrack_core.c) as the kernel resolves it:
// the same flow both ways, or a winner without NAT: the packet takes
// the winner's entry (clash_resolve); a winner with another NAT
// binding: the loser goes in by its reply tuple only, for one second,
// hidden from -L (clash_resolve); TCP (no allow_clash): dropped with
// insert_failed and drop.
func TestConfirmClash(t *testing.T) {
	backend2 := uint32(0x0a020003)
	natted := func(tu Tuple, src uint32) Tuple { tu.Src = src; return tu }
	for _, tc := range []struct {
		name      string
		spec      packet.Spec
		twinReply func(c *Conn) Tuple
		twinNAT   Status
		loserNAT  bool // the loser was DNATed to backend2
		want      string
	}{
		{"same flow", udpSpec(true, 5353, 53), func(c *Conn) Tuple { return c.Tuple(Reply) }, 0, false, "winner"},
		{"winner without NAT", udpSpec(true, 5353, 53), func(c *Conn) Tuple { return c.Tuple(Reply) }, 0, true, "winner"},
		{"other backend", udpSpec(true, 5353, 53), func(c *Conn) Tuple { return c.Tuple(Reply) }, StatusDstNAT | StatusDstNATDone, true, "reply-only"},
		{"tcp", tcpSpec(true, 40000, 80, packet.TCPSyn, 1, 0, 0), func(c *Conn) Tuple { return c.Tuple(Reply) }, StatusDstNAT | StatusDstNATDone, true, "drop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable(DefaultConfig(), 1)
			r, v := tb.In(mkpkt(t, tc.spec, nil), 0, netfilter.PreRouting, sec)
			if v != Accept || r.Conn == nil {
				t.Fatalf("In: %v %v", r, v)
			}
			reply := tc.twinReply(r.Conn)
			if tc.loserNAT {
				if err := r.Conn.SetReplyTuple(natted(r.Conn.Tuple(Reply), backend2)); err != nil {
					t.Fatal(err)
				}
				r.Conn.SetStatus(StatusDstNAT | StatusDstNATDone)
			}
			w, err := tb.InsertTwin(r.Conn, reply, tc.twinNAT, sec)
			if err != nil {
				t.Fatal(err)
			}
			before := tb.Stats()
			res, v := tb.Confirm(r, sec)
			st := tb.Stats()
			switch tc.want {
			case "winner":
				if v != Accept || res.Conn != w || st.Clash != before.Clash+1 || tb.Count() != 1 {
					t.Fatalf("%v %p (twin %p) clash %d count %d", v, res.Conn, w, st.Clash, tb.Count())
				}
			case "reply-only":
				c := r.Conn
				if v != Accept || res.Conn != c || st.Clash != before.Clash+1 || tb.Count() != 2 ||
					c.Status()&(StatusNATClash|StatusFixedTimeout) != StatusNATClash|StatusFixedTimeout {
					t.Fatalf("%v clash %d count %d status %v", v, st.Clash, tb.Count(), c.Status())
				}
				if got, d, ok := tb.Lookup(c.Tuple(Original), 2*sec-1); !ok || got != w || d != Original {
					t.Errorf("the original tuple finds %p %v, want the winner", got, d)
				}
				if got, d, ok := tb.Lookup(c.Tuple(Reply), 2*sec-1); !ok || got != c || d != Reply {
					t.Errorf("the loser's reply tuple finds %p %v, want the loser", got, d)
				}
				n := 0
				tb.Range(2*sec-1, func(*Conn) bool { n++; return true })
				if n != 1 {
					t.Errorf("-L shows %d entries, want the winner alone", n)
				}
				if tb.Reap(2*sec+1, 1<<20) != 1 || tb.Count() != 1 {
					t.Errorf("gc does not reap the clash entry after its second")
				}
				if _, _, ok := tb.Lookup(c.Tuple(Reply), 2*sec+1); ok {
					t.Errorf("the clash entry outlives its second")
				}
			case "drop":
				if v != DropInsertFailed || st.InsertFailed != before.InsertFailed+1 || st.Drop != before.Drop+1 {
					t.Fatalf("%v insert_failed %d drop %d", v, st.InsertFailed, st.Drop)
				}
			}
		})
	}
}
