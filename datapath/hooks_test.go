package datapath

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// allTables has every table with its builtin chains, a rule that needs
// conntrack and a nat table.
var allTables = datapathtest.Table("raw") + datapathtest.Table("mangle") + datapathtest.Table("security") +
	datapathtest.Table("nat") + datapathtest.Table("filter", "-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT")

// stageNames lists a hook's stages as the diagram in doc.go names them.
func stageNames(l []stage) string {
	s := make([]string, len(l))
	for i, st := range l {
		s[i] = st.String()
	}
	return strings.Join(s, ", ")
}

// TestHookStages: the stage lists are those drawn in doc.go, in
// priority order, and hold only what the configuration needs.
func TestHookStages(t *testing.T) {
	load := func(rules string) *Engine {
		rs, err := (&iptables.Loader{}).LoadString(rules)
		if err != nil {
			t.Fatal(err)
		}
		return New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
	}
	full := [netfilter.NumHooks]string{
		netfilter.PreRouting:  "defrag -400, raw -300, conntrack -200, flowcache -200, mangle -150, nat -100",
		netfilter.LocalIn:     "mangle -150, filter 0, nat 100, security 150, confirm",
		netfilter.Forward:     "mangle -150, filter 0, security 150",
		netfilter.LocalOut:    "defrag -400, raw -300, conntrack -200, mangle -150, nat -100, filter 0, security 150",
		netfilter.PostRouting: "mangle -150, nat 100, confirm",
	}
	ipvs := [netfilter.NumHooks]string{
		netfilter.PreRouting:  "defrag -400, raw -300, conntrack -200, mangle -150, nat -100",
		netfilter.LocalIn:     "mangle -150, filter 0, ipvs-out 98, ipvs-in 99, nat 100, security 150, confirm",
		netfilter.Forward:     "mangle -150, filter 0, ipvs-icmp 99, ipvs-out 100, security 150",
		netfilter.LocalOut:    "defrag -400, raw -300, conntrack -200, mangle -150, nat -100, ipvs-out -99, ipvs-in -98, filter 0, security 150",
		netfilter.PostRouting: "mangle -150, nat 100, confirm",
	}
	// no rule needs conntrack: no conntrack, NAT or confirm stage
	// (nf_ct_netns_get was never called), an empty list where no table
	// has a chain
	filterOnly := [netfilter.NumHooks]string{
		netfilter.LocalIn:  "filter 0",
		netfilter.Forward:  "filter 0",
		netfilter.LocalOut: "filter 0",
	}
	e := load(allTables)
	fo := load("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
		for _, c := range []struct {
			name string
			got  []stage
			want string
		}{
			{"all tables", e.cfg.Load().hooks[0][h], full[h]},
			{"all tables, IPVS", e.cfg.Load().hooks[1][h], ipvs[h]},
			{"filter only", fo.cfg.Load().hooks[0][h], filterOnly[h]},
		} {
			if got := stageNames(c.got); got != c.want {
				t.Errorf("%s, %v:\n got %s\nwant %s", c.name, h, got, c.want)
			}
		}
	}
}
