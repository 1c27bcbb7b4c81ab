package iptables

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// recTracer records the events of a traversal as short strings.
type recTracer struct{ ev []string }

func (r *recTracer) Rule(t *Table, c *Chain, x *Rule, v TVerdict, jump *Chain, gotoFlag bool) {
	n := 0
	for i, y := range c.Rules {
		if y == x {
			n = i + 1
		}
	}
	switch {
	case jump != nil && gotoFlag:
		r.ev = append(r.ev, fmt.Sprintf("%s:%d:GOTO:%s", c.Name, n, jump.Name))
	case jump != nil:
		r.ev = append(r.ev, fmt.Sprintf("%s:%d:JUMP:%s", c.Name, n, jump.Name))
	default:
		r.ev = append(r.ev, fmt.Sprintf("%s:%d:%s", c.Name, n, v))
	}
}
func (r *recTracer) Return(t *Table, c *Chain, x *Rule) { r.ev = append(r.ev, c.Name+":return") }
func (r *recTracer) Policy(t *Table, c *Chain, v TVerdict) {
	r.ev = append(r.ev, c.Name+":policy:"+v.String())
}

// TestTraversal checks the jump stack semantics of ipt_do_table /
// nft_do_chain (net/ipv4/netfilter/ip_tables.c, net/netfilter/nf_tables_core.c)
// and the trace events nft emits.
func TestTraversal(t *testing.T) {
	for _, c := range []struct {
		name, rules string
		verdict     TVerdict
		events      string
	}{
		{"policy", "-A INPUT -p udp -j ACCEPT", TDrop, "INPUT:policy:DROP"},
		{"jump and implicit return", "-A INPUT -j A\n-A INPUT -j ACCEPT\n-A A -p tcp", TAccept,
			"INPUT:1:JUMP:A A:1:CONTINUE A:return INPUT:2:ACCEPT"},
		{"explicit RETURN", "-A INPUT -j A\n-A INPUT -j ACCEPT\n-A A -j RETURN\n-A A -j DROP", TAccept,
			"INPUT:1:JUMP:A A:1:RETURN A:return INPUT:2:ACCEPT"},
		{"goto returns to the last jump", "-A INPUT -j A\n-A INPUT -j ACCEPT\n-A A -g B\n-A A -j DROP\n-A B -p tcp", TAccept,
			"INPUT:1:JUMP:A A:1:GOTO:B B:1:CONTINUE B:return INPUT:2:ACCEPT"},
		{"goto from the base chain: policy", "-A INPUT -g B\n-A INPUT -j ACCEPT\n-A B -p tcp", TDrop,
			"INPUT:1:GOTO:B B:1:CONTINUE B:return INPUT:policy:DROP"},
		{"RETURN in the base chain: policy", "-A INPUT -j RETURN\n-A INPUT -j ACCEPT", TDrop,
			"INPUT:1:RETURN INPUT:policy:DROP"},
		{"depth", "-A INPUT -j A\n-A A -j B\n-A B -j C\n-A C -j DROP", TDrop,
			"INPUT:1:JUMP:A A:1:JUMP:B B:1:JUMP:C C:1:DROP"},
		{"unwinding at depth", "-A INPUT -j A\n-A INPUT -j ACCEPT\n-A A -j B\n-A A -j DROP\n-A B -j C\n-A C -j RETURN", TDrop,
			"INPUT:1:JUMP:A A:1:JUMP:B B:1:JUMP:C C:1:RETURN C:return B:return A:2:DROP"},
		{"mark set along the way", "-A INPUT -j MARK --set-mark 0x5\n-A INPUT -m mark --mark 0x5 -j ACCEPT", TAccept,
			"INPUT:1:CONTINUE INPUT:2:ACCEPT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := "*filter\n:INPUT DROP [0:0]\n"
			for _, ch := range []string{"A", "B", "C"} {
				in += ":" + ch + " - [0:0]\n"
			}
			in += c.rules + "\nCOMMIT\n"
			rs, err := (&Loader{}).LoadString(in)
			if err != nil {
				t.Fatal(err)
			}
			p := &packet.Packet{Data: packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoTCP, SrcPort: 1, DstPort: 2})}
			if err := p.Decode(); err != nil {
				t.Fatal(err)
			}
			tr := &recTracer{}
			ctx := &Ctx{Pkt: p, Hook: netfilter.LocalIn, Env: nil, State: &State{}}
			v := rs.Tables[Filter].Run(ctx, tr)
			if v != c.verdict || strings.Join(tr.ev, " ") != c.events {
				t.Errorf("verdict %v, events\n  %s\nwant %v\n  %s", v, strings.Join(tr.ev, " "), c.verdict, c.events)
			}
		})
	}
}
