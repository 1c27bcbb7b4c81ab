package ebtables

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// The compiled classifier against the linear walk: random rule sets over
// a small universe of MACs, ports, addresses, VLANs and marks (so frames
// match often), with user chains, RETURN, CONTINUE, targets that change
// what the index reads (mark, dnat, snat, redirect) and limit before and
// after the indexed matches; random frames from the same universe
// through broute BROUTING, nat PREROUTING, filter FORWARD and INPUT, nat
// POSTROUTING.
// Each rule set is loaded twice, one copy run linearly and the other
// through the classifier, with their own counters and limit buckets;
// every traversal's verdict, frame bytes, mark, packet type, log
// requests, ARP reply, broute decision and traced events, and in the
// end every rule's counters, must be equal.

var (
	clsMACs  = []string{"02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d", "ff:ff:ff:ff:ff:ff"}
	clsPorts = []string{"veth0", "veth1", "veth2", "tap0"}
	clsIPs   = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.2", "192.168.1.1"}
)

func clsRuleset(r *rand.Rand, nRules int) string {
	pick := func(l ...string) string { return l[r.IntN(len(l))] }
	// each rule set leans on some fields: a field every rule tests is
	// the one the index picks, so every field gets picked in some sets
	weight := map[string]int{}
	fields := []string{"proto", "ipv4", "src", "dst", "in", "out", "ipdst", "ipsrc", "arp", "vlan", "mark", "pkttype", "limit", "arpdst", "arpsrc", "lin", "lout"}
	for _, f := range fields {
		weight[f] = []int{0, 5, 30, 60, 95}[r.IntN(5)]
	}
	if r.IntN(2) == 0 {
		// one field in (nearly) every rule, the others rare
		for _, f := range fields {
			weight[f] = []int{0, 5}[r.IntN(2)]
		}
		f := fields[r.IntN(len(fields))]
		weight[f] = 100
		switch f {
		case "ipdst", "ipsrc":
			weight["ipv4"] = 100
		case "arpdst", "arpsrc":
			weight["arp"] = 100
			weight["ipv4"] = 0
		case "vlan":
			weight["ipv4"], weight["arp"] = 0, 0
		}
	}
	if weight["limit"] > 30 {
		weight["limit"] = 30
	}
	has := func(f string) bool { return r.IntN(100) < weight[f] }
	inv := func() string {
		if r.IntN(6) == 0 {
			return "! "
		}
		return ""
	}
	macSpec := func() string {
		switch r.IntN(8) {
		case 0:
			return pick("Multicast", "Unicast", "Broadcast")
		case 1:
			return pick("02:00:00:00:00:00/ff:ff:ff:00:00:00", "02:00:00:00:00:0a/ff:ff:ff:ff:ff:fe", "02:00:00:00:00:0b/ff:00:ff:00:ff:ff")
		case 2:
			// bits outside the mask: matches nothing
			return "02:00:00:00:00:0f/ff:ff:ff:ff:ff:f0"
		case 3:
			// many masks: more than a field keeps lists for
			return fmt.Sprintf("02:00:00:00:00:0%x/ff:ff:ff:ff:ff:%02x", r.IntN(16), 0xf0|r.IntN(16))
		}
		return pick(clsMACs...)
	}
	ipSpec := func() string {
		a := pick(clsIPs...)
		switch r.IntN(6) {
		case 0:
			return a + "/24"
		case 1:
			return a + "/" + pick("8", "16", "30", "31", "0", fmt.Sprint(1+r.IntN(32)), fmt.Sprint(1+r.IntN(32)))
		case 2:
			return a + "/255.0.255.0" // not a prefix: a wildcard
		}
		return a
	}
	ifSpec := func() string {
		if r.IntN(4) == 0 {
			return pick("veth+", "ve+", "tap+", "vethx+", "+", "v+", "t+", "veth0+", "veth1+", "tap0+", "vet+")
		}
		return pick(clsPorts...)
	}
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:U1 RETURN\n:U2 ACCEPT\n:U3 DROP\n")
	chains := []string{"FORWARD", "U1", "U2", "U3", "INPUT"}
	rule := func(table, chain string, userIdx int) {
		var w []string
		proto := ""
		switch {
		case has("ipv4"):
			proto = "IPv4"
		case has("arp"):
			proto = "ARP"
		case has("vlan"):
			proto = "802_1Q"
		case has("proto"):
			proto = pick("Length", "IPv6", "0x1234", "IPv4", "ARP")
		}
		if proto != "" {
			if r.IntN(8) == 0 {
				w = append(w, "-p", "!", proto)
				proto = ""
			} else {
				w = append(w, "-p", proto)
			}
		}
		if has("src") {
			w = append(w, "-s", inv()+macSpec())
		}
		if has("dst") {
			w = append(w, "-d", inv()+macSpec())
		}
		if has("in") && chain != "POSTROUTING" && chain != "OUTPUT" {
			w = append(w, "-i", inv()+ifSpec())
		}
		if has("out") && (chain == "FORWARD" || chain == "POSTROUTING" || strings.HasPrefix(chain, "U")) {
			w = append(w, "-o", inv()+ifSpec())
		}
		if has("lin") && chain != "POSTROUTING" && chain != "OUTPUT" {
			w = append(w, "--logical-in", inv()+pick("br0", "br1", "br+", "b+"))
		}
		if has("lout") && (chain == "FORWARD" || chain == "POSTROUTING" || strings.HasPrefix(chain, "U")) {
			w = append(w, "--logical-out", inv()+pick("br0", "br1", "br+", "b+"))
		}
		// limit before the indexed matches, sometimes
		limitFirst := has("limit")
		if limitFirst {
			w = append(w, "--limit", "5/sec", "--limit-burst", "2")
		}
		switch proto {
		case "IPv4":
			if has("ipdst") {
				w = append(w, "--ip-dst", inv()+ipSpec())
			}
			if has("ipsrc") {
				w = append(w, "--ip-src", inv()+ipSpec())
			}
			if r.IntN(4) == 0 {
				w = append(w, "--ip-proto", pick("tcp", "udp"), "--ip-dport", inv()+pick("22", "53", "1:100"))
			}
		case "ARP":
			if has("arpdst") {
				w = append(w, "--arp-ip-dst", inv()+ipSpec())
			}
			if has("arpsrc") {
				w = append(w, "--arp-ip-src", inv()+ipSpec())
			}
			if r.IntN(3) == 0 {
				w = append(w, "--arp-op", inv()+pick("Request", "Reply"))
			}
		case "802_1Q":
			if r.IntN(4) != 0 {
				w = append(w, "--vlan-id", inv()+pick("0", "1", "10", "20"))
			}
		}
		if has("mark") {
			w = append(w, "--mark", inv()+pick("0", "1", "2", "0x3", "0/0x1", "/0x2", "/0xffffffff"))
		}
		if has("pkttype") {
			w = append(w, "--pkttype-type", inv()+pick("host", "otherhost", "broadcast", "multicast"))
		}
		if !limitFirst && has("limit") {
			w = append(w, "--limit", "5/sec", "--limit-burst", "2")
		}
		if r.IntN(12) == 0 {
			w = append(w, "--log-prefix", fmt.Sprintf("r%d", r.IntN(100)))
		}
		// the target
		sub := func() string { return pick("CONTINUE", "CONTINUE", "CONTINUE", "ACCEPT", "DROP", "RETURN") }
		switch k := r.IntN(20); {
		case k < 4:
			w = append(w, "-j", "mark", pick("--mark-set", "--mark-or", "--mark-xor", "--mark-and"), pick("1", "2", "3", "0"), "--mark-target", sub())
		case k < 6 && (table == "nat" && chain == "PREROUTING" || table == "broute"):
			if r.IntN(2) == 0 {
				w = append(w, "-j", "dnat", "--to-dst", pick(clsMACs...), "--dnat-target", sub())
			} else {
				w = append(w, "-j", "redirect", "--redirect-target", sub())
			}
		case k < 6 && table == "nat" && chain == "POSTROUTING":
			w = append(w, "-j", "snat", "--to-src", pick(clsMACs...), "--snat-target", sub())
		case k < 7 && table == "nat" && chain == "PREROUTING" && proto == "ARP":
			w = append(w, "-j", "arpreply", "--arpreply-mac", pick(clsMACs...), "--arpreply-target", pick("DROP", "CONTINUE"))
		case k < 9:
			w = append(w, "-j", pick("ACCEPT", "DROP"))
		case k < 11 && userIdx >= 0 && userIdx < 3:
			// jumps go down the list of user chains only: no loops
			w = append(w, "-j", chains[1+userIdx+r.IntN(3-userIdx)])
		case k < 12:
			w = append(w, "-j", "RETURN")
		default:
			w = append(w, "-j", "CONTINUE")
		}
		fmt.Fprintf(&b, "-A %s %s\n", chain, strings.Join(w, " "))
	}
	for i := 0; i < nRules; i++ {
		ci := r.IntN(len(chains))
		if i < nRules/2 {
			ci = 0 // a long base chain
		}
		u := ci // user chains below ci
		if ci == 4 {
			u = 0
		}
		rule("filter", chains[ci], u)
	}
	b.WriteString("*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n")
	for i := 0; i < nRules/3; i++ {
		rule("nat", "PREROUTING", -1)
	}
	for i := 0; i < nRules/4; i++ {
		rule("nat", "POSTROUTING", -1)
	}
	// broute: DROP routes the frame, dnat and redirect use the port's MAC
	b.WriteString("*broute\n:BROUTING ACCEPT\n")
	for i := 0; i < nRules/4; i++ {
		rule("broute", "BROUTING", -1)
	}
	return b.String()
}

// clsFrame is a random frame of randomFrame's kinds from the universe.
func clsFrame(r *rand.Rand) []byte {
	b := randomFrame(r).data
	macs := []packet.MAC{macA, macB, {2, 0, 0, 0, 0, 0x0c}, {2, 0, 0, 0, 0, 0x0d}, packet.Broadcast, {0x01, 0, 0x5e, 0, 0, 1}}
	m := macs[r.IntN(len(macs))]
	copy(b[0:], m[:])
	m = macs[r.IntN(4)]
	copy(b[6:], m[:])
	if len(b) >= 14+20 && binary.BigEndian.Uint16(b[12:]) == packet.EtherTypeIPv4 && r.IntN(2) == 0 {
		a := []uint32{0x0a000001, 0x0a000002, 0x0a000003, 0x0a000102, 0xc0a80101, 0x0a00ff02}
		binary.BigEndian.PutUint32(b[14+12:], a[r.IntN(len(a))])
		binary.BigEndian.PutUint32(b[14+16:], a[r.IntN(len(a))])
	}
	if binary.BigEndian.Uint16(b[12:]) < packet.EtherTypeMin && r.IntN(2) == 0 {
		// an 802.3 length near the ethertypes
		binary.BigEndian.PutUint16(b[12:], []uint16{0x100, 0x5ff, 0x600}[r.IntN(3)])
	}
	if r.IntN(20) == 0 {
		b = b[:14+r.IntN(len(b)-13)] // truncated
	}
	return b
}

// recTracer records a traversal's events as text.
type recTracer struct{ ev []string }

func (t *recTracer) Rule(tb TableID, chain string, rule int, v Verdict, jump string) {
	t.ev = append(t.ev, fmt.Sprintf("%v:%s:%d:%v:%s", tb, chain, rule, v, jump))
}
func (t *recTracer) Policy(tb TableID, chain string, v Verdict) {
	t.ev = append(t.ev, fmt.Sprintf("%v:%s:policy:%v", tb, chain, v))
}
func (t *recTracer) Return(tb TableID, chain string) {
	t.ev = append(t.ev, fmt.Sprintf("%v:%s:return", tb, chain))
}

func ctxState(c *Ctx, v netfilter.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "verdict %v frame %x mark %#x pkttype %d route %v reply %x logs", v, c.Frame.Data, c.Mark, c.PktType, c.Route, c.Reply[:c.ReplyLen])
	for i := range c.NLogs {
		l := &c.Logs[i]
		var s strings.Builder
		l.Watcher.save(&s)
		fmt.Fprintf(&b, " [%s %v %s %s]", s.String(), l.Hook, l.In, l.Out)
	}
	return b.String()
}

func TestClassifierMatchesLinear(t *testing.T) {
	for _, size := range []int{blockRules, 64} {
		t.Run(fmt.Sprint("block", size), func(t *testing.T) {
			defer func(n int) { indexBlockRules = n }(indexBlockRules)
			indexBlockRules = size
			classifierMatchesLinear(t)
		})
	}
}

func classifierMatchesLinear(t *testing.T) {
	seeds, frames := 120, 150
	if testing.Short() {
		seeds = 30
	}
	total, indexed := 0, 0
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 0xeb))
		n := 40 + r.IntN(200)
		if seed%25 == 0 {
			n = 2200 + r.IntN(800) // more than one block
		}
		text := clsRuleset(r, n)
		rs := [2]*Ruleset{}
		for k := range rs {
			var err *RestoreError
			if rs[k], err = (&Loader{Broute: true}).Load(text); err != nil {
				t.Fatalf("seed %d: %v\n%s", seed, err, text)
			}
		}
		lin, cls := Compile(rs[0]), Compile(rs[1])
		for _, ct := range cls.tables {
			if ct != nil {
				for _, ch := range ct.chains {
					if ch.index != nil {
						indexed++
					}
				}
			}
		}
		now := int64(1e9)
		for n := range frames {
			data := clsFrame(r)
			in, out := clsPorts[r.IntN(len(clsPorts))], clsPorts[r.IntN(len(clsPorts))]
			mark := uint32(r.IntN(4))
			now += int64(r.IntN(3e8))
			var xs [2]*Ctx
			var trs [2]recTracer
			for k := range xs {
				f := &packet.Frame{Data: append([]byte(nil), data...)}
				if f.Decode() != nil {
					break
				}
				pt := PacketOtherHost
				switch {
				case f.Dst.IsBroadcast():
					pt = PacketBroadcast
				case f.Dst.IsMulticast():
					pt = PacketMulticast
				}
				xs[k] = &Ctx{Frame: f, Mark: mark, PktType: pt, Now: now, Env: testEnv{}, Linear: k == 0, Tracer: &trs[k]}
			}
			if xs[0] == nil {
				continue
			}
			steps := []struct {
				t       TableID
				h       Hook
				in, out string
			}{
				{BRoute, BRouting, in, ""},
				{NAT, PreRouting, in, ""},
				{Filter, Forward, in, out},
				{Filter, LocalIn, in, ""},
				{NAT, PostRouting, "", out},
			}
			for _, s := range steps {
				var got [2]string
				for k, p := range []*Program{lin, cls} {
					x := xs[k]
					x.Reset()
					x.In, x.Out, x.LogicalIn, x.LogicalOut = s.in, s.out, "", ""
					if s.in != "" {
						x.LogicalIn = "br0"
					}
					if s.out != "" {
						x.LogicalOut = "br0"
					}
					v := p.Run(s.t, s.h, x)
					got[k] = ctxState(x, v)
				}
				total++
				if got[0] != got[1] || strings.Join(trs[0].ev, "\n") != strings.Join(trs[1].ev, "\n") {
					t.Fatalf("seed %d frame %d (%x in %s out %s mark %d) %v %v:\nlinear:   %s\ncompiled: %s\nlinear trace:\n%s\ncompiled trace:\n%s\nrules:\n%s",
						seed, n, data, in, out, mark, s.t, s.h, got[0], got[1], strings.Join(trs[0].ev, "\n"), strings.Join(trs[1].ev, "\n"), text)
				}
			}
		}
		a, b := saveCounters(rs[0]), saveCounters(rs[1])
		if a != b {
			t.Fatalf("seed %d: counters differ:\nlinear:\n%s\ncompiled:\n%s", seed, a, b)
		}
	}
	if indexed == 0 {
		t.Fatal("no chain was indexed: the test compares nothing")
	}
	t.Logf("%d traversals compared, %d chains indexed", total, indexed)
}

func saveCounters(rs *Ruleset) string {
	var b strings.Builder
	rs.Save(&b, SaveOptions{Counters: true})
	return b.String()
}

// FuzzClassifier: whatever the frame, ports, mark and packet type, the
// compiled classifier and the linear walk agree (verdict, frame, mark,
// packet type, logs, reply, trace) on rule sets whose chains are long
// enough to be indexed; the rule set is drawn from the seed as in
// TestClassifierMatchesLinear.
func FuzzClassifier(f *testing.F) {
	f.Add(uint8(0), ipv4Frame(17, 53, 53), uint8(0), uint8(1), uint32(0), uint8(3))
	f.Add(uint8(1), arpRequest(), uint8(2), uint8(0), uint32(1), uint8(1))
	f.Add(uint8(2), vlanFrame(10, 3, 0x0800), uint8(1), uint8(3), uint32(2), uint8(0))
	f.Add(uint8(3), stpFrame(0, 1), uint8(3), uint8(2), uint32(3), uint8(2))
	var progs [8][2]*Program
	for s := range progs {
		text := clsRuleset(rand.New(rand.NewPCG(uint64(s), 0xf2)), 120)
		for k := range progs[s] {
			rs, err := (&Loader{Broute: true}).Load(text)
			if err != nil {
				f.Fatal(err)
			}
			progs[s][k] = Compile(rs)
		}
	}
	f.Fuzz(func(t *testing.T, seed uint8, data []byte, in, out uint8, mark uint32, pt uint8) {
		ps := progs[int(seed)%len(progs)]
		var xs [2]*Ctx
		var trs [2]recTracer
		for k := range xs {
			fr := &packet.Frame{Data: append([]byte(nil), data...)}
			if fr.Decode() != nil {
				return
			}
			xs[k] = &Ctx{Frame: fr, Mark: mark, PktType: PktType(pt % 8), Now: 1e9, Env: testEnv{}, Linear: k == 0, Tracer: &trs[k]}
		}
		for _, s := range []struct {
			t TableID
			h Hook
		}{{BRoute, BRouting}, {NAT, PreRouting}, {Filter, Forward}, {Filter, LocalIn}, {NAT, PostRouting}} {
			var got [2]string
			for k, x := range xs {
				x.Reset()
				x.In, x.Out = clsPorts[int(in)%len(clsPorts)], clsPorts[int(out)%len(clsPorts)]
				x.LogicalIn, x.LogicalOut = "br0", "br0"
				got[k] = ctxState(x, ps[k].Run(s.t, s.h, x))
			}
			if got[0] != got[1] || strings.Join(trs[0].ev, "\n") != strings.Join(trs[1].ev, "\n") {
				t.Fatalf("%v %v:\nlinear:   %s\ncompiled: %s", s.t, s.h, got[0], got[1])
			}
		}
	})
}
