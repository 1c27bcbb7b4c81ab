package conntrack

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestInHintMatchesIn: InHint, whatever hint it gets (none, the flow's
// entry, a stale one: expired, deleted or killed by a RST, another
// flow's, an unconfirmed one), does what In does: two tables get the same
// random packets (UDP and TCP flows both ways, RSTs, deletions, time
// passing beyond the timeouts), one through In, the other through
// InHint; every packet's verdict, ctinfo and entry, and both tables at
// the end, are compared.
func TestInHintMatchesIn(t *testing.T) {
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 0x41a7))
		ta, tb, tu := NewTable(DefaultConfig(), 1), NewTable(DefaultConfig(), 1), NewTable(DefaultConfig(), 1)
		// the entries of each table by the flow's original tuple, as
		// a cache would keep them (never cleaned: they go stale)
		seen := [2]map[Tuple]*Conn{{}, {}}
		var hints []*Conn // every entry table b ever gave
		type flow struct {
			proto        uint8
			sport, dport uint16
			seqC, seqS   uint32
			state        int
		}
		var flows []*flow
		now := sec
		used := 0
		for i := range 4000 {
			now += int64(r.IntN(int(sec / 2)))
			if r.IntN(200) == 0 {
				now += int64(r.IntN(200)) * sec
			}
			if len(flows) < 6 || r.IntN(30) == 0 {
				f := &flow{proto: packet.ProtoUDP, sport: uint16(1000 + r.IntN(8)), dport: 53, seqC: r.Uint32(), seqS: r.Uint32()}
				if r.IntN(2) == 0 {
					f.proto, f.dport = packet.ProtoTCP, 80
				}
				flows = append(flows, f)
			}
			f := flows[r.IntN(len(flows))]
			fromCli := f.state == 0 || r.IntN(2) == 0
			var s packet.Spec
			if f.proto == packet.ProtoUDP {
				s = udpSpec(fromCli, f.sport, f.dport)
				f.state = 1
			} else {
				switch {
				case f.state == 0:
					s = tcpSpec(true, f.sport, f.dport, packet.TCPSyn, f.seqC, 0, 0)
					f.seqC++
					f.state = 1
				case f.state == 1:
					s = tcpSpec(false, f.sport, f.dport, packet.TCPSyn|packet.TCPAck, f.seqS, f.seqC, 0)
					f.seqS++
					f.state = 2
				case f.state == 3:
					// the server's FIN after the client's
					s = tcpSpec(false, f.sport, f.dport, packet.TCPFin|packet.TCPAck, f.seqS, f.seqC, 0)
					f.seqS++
					f.state = 4
				case f.state == 4:
					// the last ACK: TIME_WAIT, where the next SYN
					// re-opens the flow (the lookup repeated)
					s = tcpSpec(true, f.sport, f.dport, packet.TCPAck, f.seqC, f.seqS, 0)
					f.seqC += 100000
					f.state = 0
				case r.IntN(25) == 0:
					s = tcpSpec(true, f.sport, f.dport, packet.TCPFin|packet.TCPAck, f.seqC, f.seqS, 0)
					f.seqC++
					f.state = 3
				case r.IntN(25) == 0:
					s = tcpSpec(fromCli, f.sport, f.dport, packet.TCPRst|packet.TCPAck, f.seqC, f.seqS, 0)
					if !fromCli {
						s.Seq, s.Ack = f.seqS, f.seqC
					}
					f.state = 0
				default:
					n := r.IntN(20)
					if fromCli {
						s = tcpSpec(true, f.sport, f.dport, packet.TCPAck, f.seqC, f.seqS, n)
						f.seqC += uint32(n)
					} else {
						s = tcpSpec(false, f.sport, f.dport, packet.TCPAck, f.seqS, f.seqC, n)
						f.seqS += uint32(n)
					}
				}
			}
			pa, pb := mkpkt(t, s, nil), mkpkt(t, s, nil)
			var key Tuple
			key.setFromL4(s.Proto, cliIP, srvIP, nil, 0)
			key.SrcPort, key.DstPort = f.sport, f.dport
			if r.IntN(40) == 0 {
				// a deletion (conntrack -D) in both
				for k, tab := range []*Table{ta, tb} {
					if c := seen[k][key]; c != nil {
						tab.Delete(c)
					}
				}
			}
			var hint *Conn
			switch x := r.IntN(10); {
			case x < 6:
				hint = seen[1][key]
			case x < 8 && len(hints) > 0:
				hint = hints[r.IntN(len(hints))]
			case x < 9:
				// an unconfirmed entry of the packet's own tuple (of a
				// third table: in b it would count)
				if u, v := tu.In(mkpkt(t, s, nil), 0, netfilter.PreRouting, now); v == Accept && u.Conn != nil && !u.Conn.Confirmed() {
					hint = u.Conn
				}
			}
			ra, va := ta.In(pa, 0, netfilter.PreRouting, now)
			rb, vb := tb.InHint(pb, hint, netfilter.PreRouting, now)
			if hint != nil && hint == rb.Conn {
				used++
			}
			got := func(r Ref, v Verdict) string {
				if r.Conn == nil {
					return fmt.Sprint(v, " ", r.Info, " no entry")
				}
				return fmt.Sprint(v, " ", r.Info, " ", r.Conn.Format(now, true))
			}
			if a, b := got(ra, va), got(rb, vb); a != b {
				t.Fatalf("seed %d packet %d (%v, hint %p): In %s\nInHint %s", seed, i, s, hint, a, b)
			}
			if ra.Conn != nil && va == Accept {
				ra, _ = ta.Confirm(ra, now)
				rb, _ = tb.Confirm(rb, now)
				seen[0][key], seen[1][key] = ra.Conn, rb.Conn
				if !slices.Contains(hints, rb.Conn) {
					hints = append(hints, rb.Conn)
				}
			}
		}
		dump := func(tab *Table) string {
			var l []string
			tab.Range(now, func(c *Conn) bool { l = append(l, c.Format(now, true)); return true })
			slices.Sort(l)
			return strings.Join(l, "\n")
		}
		if a, b := dump(ta), dump(tb); a != b {
			t.Fatalf("seed %d: tables differ\nIn:\n%s\nInHint:\n%s", seed, a, b)
		}
		if used < 500 {
			t.Fatalf("seed %d: only %d packets took their hint", seed, used)
		}
	}
}
