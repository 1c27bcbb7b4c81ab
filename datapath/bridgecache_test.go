package datapath

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestBridgeFlowCacheMatchesReference runs the same frames — UDP and
// TCP flows between hosts on the ports of a bridge, both ways, with odd
// TOS, sizes, broadcasts, unknown and local destinations — through an
// engine with the bridged flow cache and through one without
// (NoFlowCache), over seeded random iptables and ebtables rule sets
// (br_netfilter on; physdev, mac, pkttype, conntrack, marks, ebtables
// ip, among, mark and pkttype matches and the mark target, and matches
// and watchers the cache may not rely on: limit, log, statistic,
// length), while hosts move between ports, FDB entries are deleted,
// port flags change, entries age out and configurations are swapped.
// Every frame must leave by the same ports with the same bytes or be
// dropped alike, and in the end every iptables and ebtables counter
// and every FDB entry (with its times) must agree. The cache must be
// used, or the comparison proves nothing.
func TestBridgeFlowCacheMatchesReference(t *testing.T) {
	const sets, perSet = 20, 3000
	total, cached, fast := 0, 0, 0
	for seed := range uint64(sets) {
		n, c, f := bridgeCacheRun(t, seed, perSet)
		t.Logf("seed %d: %d of %d replayed, %d by bridgeFast", seed, c, n, f)
		total += n
		cached += c
		fast += f
	}
	t.Logf("%d frames, %d (%.0f%%) replayed from the bridged flow cache, %d by bridgeFast", total, cached, 100*float64(cached)/float64(total), fast)
	if cached < total/5 {
		t.Fatalf("only %d of %d frames came from the bridged flow cache", cached, total)
	}
	if fast < cached/10 {
		t.Fatalf("only %d of the %d replayed frames took bridgeFast", fast, cached)
	}
}

var bcPorts = []string{"p1", "p2", "p3", "p4"}

// bcHost is a host behind a bridge port.
type bcHost struct {
	mac  packet.MAC
	ip   uint32
	port int
}

func bridgeCacheRules(r *rand.Rand) (ipt, ebt string) {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	impure := []float64{0, 0.05, 0.2}[r.IntN(3)]
	var b strings.Builder
	imatch := func() string {
		if r.Float64() < impure {
			return pick("-m statistic --mode nth --every 3 --packet 0 ", "-m limit --limit 20/sec --limit-burst 2 ",
				"-m length --length 0:80 ", "-m length --length 60:100 ", "-p tcp --tcp-flags SYN,ACK SYN ", "-m ttl --ttl-lt 64 ")
		}
		switch r.IntN(10) {
		case 0:
			return "-m physdev --physdev-in " + pick(bcPorts...) + " "
		case 1:
			return "-m physdev --physdev-out " + pick(bcPorts...) + " "
		case 2:
			return "-m physdev --physdev-is-bridged "
		case 3:
			return "-m mac --mac-source 02:00:00:00:00:0" + pick("1", "2", "3") + " "
		case 4:
			return "-m pkttype --pkt-type " + pick("unicast", "broadcast") + " "
		case 5:
			return "-m conntrack --ctstate " + pick("NEW", "ESTABLISHED", "RELATED,ESTABLISHED") + " "
		case 6:
			return "-m mark --mark " + pick("0x1", "0x2", "0x0/0x1") + " "
		case 7:
			return pick("-p udp --dport 53 ", "-p tcp --dport 80 ", "-p udp ! --sport 53 ")
		case 8:
			return "-m tos --tos " + pick("0x10", "0x00") + " "
		}
		return pick("-s 10.1.0.1/32 ", "-d 10.1.0.2/32 ", "-s 10.1.0.0/29 ", "")
	}
	iverdict := func() string {
		if r.Float64() < impure {
			return pick("-j LOG", "-j MARK --set-mark 0x2")
		}
		return pick("-j ACCEPT", "", "", "-j RETURN", "-j DROP")
	}
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD " + pick("ACCEPT", "DROP") + " [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	n := r.IntN(12)
	est := r.IntN(n + 3)
	for i := range n {
		if i == est {
			b.WriteString("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
		}
		v := iverdict()
		if v == "-j RETURN" {
			v = "-j ACCEPT"
		}
		fmt.Fprintf(&b, "-A FORWARD %s%s\n", imatch(), v)
	}
	b.WriteString("-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT\nCOMMIT\n")
	b.WriteString("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	for _, h := range []string{"PREROUTING", "FORWARD", "POSTROUTING"} {
		for range r.IntN(3) {
			v := iverdict()
			if v == "-j DROP" || v == "-j RETURN" {
				v = ""
			}
			m := imatch()
			if h == "POSTROUTING" && strings.HasPrefix(m, "-m mac") {
				m = ""
			}
			fmt.Fprintf(&b, "-A %s %s%s\n", h, m, v)
		}
	}
	b.WriteString("COMMIT\n")
	switch r.IntN(3) {
	case 1:
		// the NAT hooks on; bridged connections get null bindings
		b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
			"-A POSTROUTING -s 192.168.99.0/24 -j MASQUERADE\nCOMMIT\n")
	case 2:
		// raw before conntrack: bridgeFast stays off
		b.WriteString("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp --dport 7 -j ACCEPT\nCOMMIT\n")
	}
	ipt = b.String()

	b.Reset()
	// ebtables' impure rules keep the cache off for the whole rule set
	// (ebtMemoizable): in a third of the sets
	eimpure := []float64{0, 0, 0.15}[r.IntN(3)]
	ematch := func() string {
		if r.Float64() < eimpure {
			return pick("--limit 30/sec --limit-burst 3 ", "--limit 200/sec --limit-burst 5 ", "--log-prefix x ", "-p ARP --arp-op Request ")
		}
		switch r.IntN(9) {
		case 0:
			return "-p IPv4 --ip-proto " + pick("udp", "tcp") + " "
		case 1:
			return "-p IPv4 --ip-dst 10.1.0." + pick("1", "2", "3") + " "
		case 2:
			return "-p IPv4 --ip-proto udp --ip-dport " + pick("53", "1000:2000") + " "
		case 3:
			return "-s 02:00:00:00:00:0" + pick("1", "2", "4") + " "
		case 4:
			return "-i " + pick(bcPorts...) + " "
		case 5:
			return "--mark " + pick("0x1", "0x4/0x4") + " "
		case 6:
			return "--among-dst 02:00:00:00:00:0" + pick("1", "3") + " "
		case 7:
			return "-p IPv6 --ip6-proto tcp "
		case 8:
			return "-p IPv4 --ip-tos 0x10 "
		}
		return ""
	}
	everdict := func(user bool) string {
		n := r.IntN(12)
		switch {
		case n < 2:
			return "-j mark --mark-or 0x" + pick("1", "4") + " --mark-target " + pick("CONTINUE", "ACCEPT")
		case n < 3:
			return "-j DROP"
		case n < 5:
			return "-j ACCEPT"
		case n < 7 && !user:
			return "-j U1"
		case n < 8 && user:
			return "-j RETURN"
		}
		return "-j CONTINUE"
	}
	b.WriteString("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:U1 RETURN\n")
	for range r.IntN(8) {
		fmt.Fprintf(&b, "-A FORWARD %s%s\n", ematch(), everdict(false))
	}
	for range r.IntN(4) {
		fmt.Fprintf(&b, "-A U1 %s%s\n", ematch(), everdict(true))
	}
	b.WriteString("*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n")
	for range r.IntN(3) {
		fmt.Fprintf(&b, "-A PREROUTING %s-j mark --mark-or 0x%d --mark-target CONTINUE\n", ematch(), 1+r.IntN(4))
	}
	for range r.IntN(4) {
		v := everdict(false)
		if v == "-j U1" {
			v = "-j CONTINUE"
		}
		fmt.Fprintf(&b, "-A POSTROUTING %s%s\n", strings.Replace(ematch(), "-i ", "-o ", 1), v)
	}
	return ipt, b.String()
}

func bridgeCacheRun(t *testing.T, seed uint64, nframes int) (total, cached, fast int) {
	r := rand.New(rand.NewPCG(seed, 0xb1d))
	iptText, ebtText := bridgeCacheRules(r)
	mk := func(nocache bool) (*Engine, *iptables.Ruleset, *ebtables.Ruleset) {
		rs, err := (&iptables.Loader{}).LoadString(iptText)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, iptText)
		}
		es, eerr := (&ebtables.Loader{}).Load(ebtText)
		if eerr != nil {
			t.Fatalf("seed %d: %v\n%s", seed, eerr, ebtText)
		}
		fib, err := datapathtest.RouterFIB()
		if err != nil {
			t.Fatal(err)
		}
		var ports []fdb.PortConfig
		for i, n := range bcPorts {
			ports = append(ports, fdb.PortConfig{Name: n, MAC: packet.MAC{2, 0, 0, 0, 1, byte(i)}, Flags: fdb.DefaultPortFlags})
		}
		cfg := Config{Rules: rs, FIB: fib, Ebtables: es, NoFlowCache: nocache, Bridges: []BridgeConfig{{
			CallIPTables: true,
			FDB:          fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, AgeingTime: 30e9, Ports: ports},
		}}}
		e := New(cfg, conntrack.DefaultConfig(), seed)
		if e.BridgeErr != nil {
			t.Fatal(e.BridgeErr)
		}
		return e, rs, es
	}
	ref, refRS, refES := mk(true)
	eng, engRS, engES := mk(false)
	// the conntrack events of both, in order
	var events [2][]string
	for i, e := range []*Engine{ref, eng} {
		cancel := e.CT.Subscribe(func(ev *conntrack.Event) {
			events[i] = append(events[i], fmt.Sprint(ev.Type, ev.Mark, " ", ev.Conn.Format(ev.Now, true)))
		})
		t.Cleanup(cancel)
	}
	// three seeds in four run the cached engine's frames on a Worker,
	// whose replayed counters wait in its hit batch until a FlushHits
	// (at random here, as a front end's batches end)
	var w *Worker
	if seed%4 != 0 {
		w = eng.NewWorker(0)
	}
	both := func(f func(e *Engine)) { f(ref); f(eng) }

	var hosts []*bcHost
	for i := range 6 {
		hosts = append(hosts, &bcHost{mac: packet.MAC{2, 0, 0, 0, 0, byte(1 + i)}, ip: 0x0a010001 + uint32(i), port: i % len(bcPorts)})
	}
	type flow struct {
		proto        uint8
		a, b         *bcHost
		aport, bport uint16
		aseq, bseq   uint32
		state        int // TCP: 0 nothing, 1 SYN sent, 2 SYN/ACK sent, 3 established
		tos          uint8
	}
	var flows []*flow
	newFlow := func() *flow {
		i, j := r.IntN(len(hosts)), r.IntN(len(hosts)-1)
		if j >= i {
			j++
		}
		f := &flow{proto: packet.ProtoUDP, a: hosts[i], b: hosts[j], aport: uint16(1024 + r.IntN(60000)),
			bport: []uint16{53, 80, 1500, 9}[r.IntN(4)], aseq: r.Uint32(), bseq: r.Uint32()}
		if r.IntN(3) == 0 {
			f.proto = packet.ProtoTCP
		}
		if r.IntN(5) == 0 {
			f.tos = 0x10
		}
		return f
	}
	now := int64(1e9)
	for total < nframes {
		now += int64(1 + r.IntN(3e6))
		switch x := r.IntN(800); {
		case x < 3:
			h := hosts[r.IntN(len(hosts))]
			h.port = r.IntN(len(bcPorts))
			continue
		case x < 5:
			mac := hosts[r.IntN(len(hosts))].mac
			both(func(e *Engine) { e.Bridge("br0").Delete(mac) })
			continue
		case x < 7:
			i := r.IntN(len(bcPorts))
			f := fdb.DefaultPortFlags
			switch r.IntN(4) {
			case 0:
				f |= fdb.Hairpin
			case 1:
				f &^= fdb.Learning
			}
			both(func(e *Engine) { e.Bridge("br0").SetPortFlags(i, f) })
			continue
		case x < 8:
			now += int64(r.IntN(40e9))
			both(func(e *Engine) { e.Bridge("br0").Expire(now) })
			continue
		case x < 9:
			both(func(e *Engine) { e.Swap(e.Config()) })
			continue
		}
		if len(flows) < 8 || r.IntN(60) == 0 {
			flows = append(flows, newFlow())
		}
		f := flows[r.IntN(len(flows))]
		fromB := f.state >= 1 && r.IntN(2) == 0
		if f.proto == packet.ProtoTCP && f.state == 1 {
			fromB = true
		}
		if f.proto == packet.ProtoTCP && f.state == 2 {
			fromB = false
		}
		src, dst := f.a, f.b
		sp := packet.Spec{Proto: f.proto, Src: f.a.ip, Dst: f.b.ip, SrcPort: f.aport, DstPort: f.bport, TOS: f.tos, Payload: make([]byte, r.IntN(100))}
		if fromB {
			src, dst = f.b, f.a
			sp.Src, sp.Dst, sp.SrcPort, sp.DstPort = f.b.ip, f.a.ip, f.bport, f.aport
		}
		if r.IntN(40) == 0 {
			sp.TOS ^= 0x10
		}
		if f.proto == packet.ProtoTCP {
			switch f.state {
			case 0:
				sp.TCPFlags, sp.Seq, sp.Payload = packet.TCPSyn, f.aseq, nil
				f.aseq++
				f.state = 1
			case 1:
				sp.TCPFlags, sp.Seq, sp.Ack, sp.Payload = packet.TCPSyn|packet.TCPAck, f.bseq, f.aseq, nil
				f.bseq++
				f.state = 2
			default:
				sp.TCPFlags = packet.TCPAck
				n := uint32(len(sp.Payload))
				if r.IntN(40) == 0 {
					// a FIN: conntrack's state changes (an event
					// cached for confirmation), its status does not
					sp.TCPFlags |= packet.TCPFin
					n++
				}
				if fromB {
					sp.Seq, sp.Ack = f.bseq, f.aseq
					f.bseq += n
				} else {
					sp.Seq, sp.Ack = f.aseq, f.bseq
					f.aseq += n
				}
				f.state = 3
			}
		} else if f.state == 0 {
			f.state = 1
		}
		dmac := dst.mac
		switch r.IntN(60) {
		case 0:
			dmac = packet.Broadcast
		case 1:
			dmac = packet.MAC{2, 0, 0, 0, 0, 0x77} // unknown: flooded
		case 2:
			dmac = packet.MAC{2, 0, 0, 0, 0, 0xfe} // the bridge: up
		}
		frame := packet.BuildFrame(dmac, src.mac, packet.EtherTypeIPv4, packet.Build(sp))
		port := bcPorts[src.port]
		fa := ref.ReceiveFrame(append([]byte(nil), frame...), port, now, nil)
		var fb FrameFate
		if w != nil {
			w.ReceiveFrameInto(&fb, append([]byte(nil), frame...), port, now, nil)
			if d := callResetDiff(w.bc); d != "" {
				t.Fatalf("seed %d frame %d (%v on %s, %v): the call's state after reset: %s", seed, total, sp, port, fb, d)
			}
			if r.IntN(64) == 0 {
				w.FlushHits()
			}
		} else {
			fb = eng.ReceiveFrame(append([]byte(nil), frame...), port, now, nil)
		}
		total++
		if fb.FlowCached {
			cached++
		}
		if fa.FlowCached {
			t.Fatalf("seed %d: the reference replayed a frame", seed)
		}
		if d := frameFateDiff(&fa, &fb); d != "" {
			t.Fatalf("seed %d frame %d (%v on %s): %s\nreference %v\ncached    %v\niptables:\n%s\nebtables:\n%s", seed, total, sp, port, d, fa, fb, iptText, ebtText)
		}
	}
	save := func(rs *iptables.Ruleset, es *ebtables.Ruleset) string {
		var b bytes.Buffer
		if err := rs.Save(&b, iptables.SaveOptions{Counters: true}); err != nil {
			t.Fatal(err)
		}
		if err := es.Save(&b, ebtables.SaveOptions{Counters: true}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if w != nil {
		w.FlushHits()
	}
	if a, b := save(refRS, refES), save(engRS, engES); a != b {
		t.Fatalf("seed %d: counters differ\nreference:\n%s\ncached:\n%s", seed, a, b)
	}
	ea, eb := ref.Bridge("br0").Entries(), eng.Bridge("br0").Entries()
	if fmt.Sprint(ea) != fmt.Sprint(eb) {
		t.Fatalf("seed %d: FDB differs\nreference %v\ncached    %v", seed, ea, eb)
	}
	if a, b := strings.Join(events[0], "\n"), strings.Join(events[1], "\n"); a != b {
		t.Fatalf("seed %d: conntrack events differ\nreference:\n%s\ncached:\n%s", seed, a, b)
	}
	if a, b := ctDump(ref, now), ctDump(eng, now); a != b {
		t.Fatalf("seed %d: conntrack tables differ\nreference:\n%s\ncached:\n%s", seed, a, b)
	}
	if w != nil {
		fast = int(w.bridgeFast)
	}
	return total, cached, fast
}

// ctDump is e's conntrack table at now, sorted, with counters.
func ctDump(e *Engine, now int64) string {
	var l []string
	e.CT.Range(now, func(c *conntrack.Conn) bool {
		l = append(l, c.Format(now, true))
		return true
	})
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// callResetDiff says what of a reset call state is not as a new one's
// ("" when all is): everything zero but the worker, the traversal stack
// and the ebtables context's buffers.
func callResetDiff(bc *bridgeCall) string {
	v := reflect.ValueOf(bc).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch name {
		case "w", "ebt":
			continue
		case "k":
			hot, cold := f.Field(0), f.Field(1)
			for j := range hot.NumField() {
				if kn := hot.Type().Field(j).Name; kn != "scratch" && !hot.Field(j).IsZero() {
					return "k." + kn + " is not zero"
				}
			}
			for j := range cold.NumField() {
				if !cold.Field(j).IsZero() {
					return "k." + cold.Type().Field(j).Name + " is not zero (written without setting cold?)"
				}
			}
			continue
		}
		if !f.IsZero() {
			return name + " is not zero"
		}
	}
	x := &bc.ebt
	if x.Frame != nil || x.Env != nil || x.Tracer != nil {
		return "the ebtables context keeps pointers"
	}
	return ""
}

// frameFateDiff says how two frame fates differ ("" when alike).
func frameFateDiff(a, b *FrameFate) string {
	if a.Drop != b.Drop {
		return fmt.Sprintf("drop %q vs %q", a.Drop, b.Drop)
	}
	if len(a.Out) != len(b.Out) {
		return fmt.Sprintf("%d frames out vs %d", len(a.Out), len(b.Out))
	}
	for i := range a.Out {
		if a.Out[i].Port != b.Out[i].Port || !bytes.Equal(a.Out[i].Data, b.Out[i].Data) {
			return fmt.Sprintf("frame %d: %s % x vs %s % x", i, a.Out[i].Port, a.Out[i].Data, b.Out[i].Port, b.Out[i].Data)
		}
	}
	if (a.Up == nil) != (b.Up == nil) || a.Up != nil && a.Up.String() != b.Up.String() {
		return "up: " + fmt.Sprint(a.Up) + " vs " + fmt.Sprint(b.Up)
	}
	if a.UpARP != b.UpARP || a.Held != b.Held || a.Pass != b.Pass || a.ARPPending != b.ARPPending {
		return "flags differ"
	}
	return ""
}

// TestBridgeFlowCacheUsed: the established bridged flow of
// BenchmarkBridgeEstablished comes from the cache (after the frames
// that record it), and a changed FDB or rule set sends it back to the
// full way once.
func TestBridgeFlowCacheUsed(t *testing.T) {
	e := bridgeEngine(t)
	ab := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	ba := udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	now := int64(1)
	send := func(f []byte, port string) FrameFate {
		now++
		return e.ReceiveFrame(append([]byte(nil), f...), port, now, nil)
	}
	send(ab, "p1")
	send(ba, "p2")
	send(ab, "p1") // records
	if f := send(ab, "p1"); !f.FlowCached || len(f.Out) != 1 || f.Out[0].Port != "p2" {
		t.Fatalf("established frame not replayed: %v (cached %v)", f, f.FlowCached)
	}
	// hostB moves to p1 then back: the recorded path is stale
	send(udpFrame(hostA, hostB, "udp 10.9.0.2:1 > 10.9.0.1:1"), "p1")
	if f := send(ab, "p1"); f.FlowCached {
		t.Fatalf("replayed across an FDB move: %v", f)
	}
	send(ba, "p2")
	send(ab, "p1")
	if f := send(ab, "p1"); !f.FlowCached || f.Out[0].Port != "p2" {
		t.Fatalf("not replayed again: %v", f)
	}
	e.Swap(e.Config())
	if f := send(ab, "p1"); f.FlowCached {
		t.Fatalf("replayed across a swap: %v", f)
	}
	if f := send(ab, "p1"); !f.FlowCached {
		t.Fatalf("not replayed after the swap: %v", f)
	}
	e.Bridge("br0").SetPortFlags(1, fdb.DefaultPortFlags|fdb.Isolated)
	if f := send(ab, "p1"); f.FlowCached {
		t.Fatalf("replayed across a port flag change: %v", f)
	}
}

// TestBridgePreroutingCache: a replayed ebtables nat PREROUTING walk
// gives each frame the mark its own walk would: frames of one
// established flow that differ only in TOS (or in pkt_type, through the
// destination MAC) get different marks from a chain that reads them,
// and the rule counts every frame it marked.
func TestBridgePreroutingCache(t *testing.T) {
	e := bridgeEngine(t)
	ipt, err := (&iptables.Loader{}).LoadString(`*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m mark --mark 0x1/0x1 -j DROP
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m physdev --physdev-is-bridged -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`)
	if err != nil {
		t.Fatal(err)
	}
	ebt, eerr := (&ebtables.Loader{}).Load(`*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 --ip-tos 0x10 -j mark --mark-or 0x1 --mark-target CONTINUE
-A PREROUTING -p IPv4 --ip-proto udp -j mark --mark-or 0x2 --mark-target CONTINUE
`)
	if eerr != nil {
		t.Fatal(eerr)
	}
	cfg := e.Config()
	cfg.Rules, cfg.Ebtables = ipt, ebt
	e.Swap(cfg)
	if !e.cfg.Load().ebtPreOn {
		t.Fatal("the PREROUTING cache is off")
	}
	ab := establishBridgeFlow(e)
	tos := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53 tos 0x10")
	now := int64(10)
	marked := 0
	for i := range 40 {
		f, want := ab, 1
		if i%3 == 1 {
			f, want = tos, 0
			marked++
		}
		now++
		ff := e.ReceiveFrame(append([]byte(nil), f...), "p1", now, nil)
		if len(ff.Out) != want {
			t.Fatalf("frame %d (tos %v): %v", i, i%3 == 1, ff)
		}
	}
	r := e.Config().Ebtables.Tables[ebtables.NAT].Chain("PREROUTING").Rules[0]
	if n := r.Packets(); n != uint64(marked) {
		t.Errorf("the TOS rule counted %d frames, want %d", n, marked)
	}
	if n := e.Config().Ebtables.Tables[ebtables.NAT].Chain("PREROUTING").Rules[1].Packets(); n < 40 {
		t.Errorf("the udp rule counted %d frames, want at least 40", n)
	}
}

// FuzzPreKey: preKeyOf never panics on a frame's bytes, and a key it
// makes holds the frame's MACs and, for a packet that decodes with its
// transport header, the packet's addresses, protocol and ports (what
// ebt_ip reads).
func FuzzPreKey(f *testing.F) {
	f.Add(udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53 tos 0x10"), uint16(1), uint8(3))
	f.Add(udpFrame(hostB, hostA, "tcp 10.1.0.1:1000 > 10.1.0.2:80"), uint16(0), uint8(0))
	f.Add(udpFrame(hostB, hostA, "icmp 10.1.0.1 > 10.1.0.2 id 1 seq 1"), uint16(2), uint8(1))
	f.Add(packet.BuildFrame(packet.Broadcast, hostA, packet.EtherTypeARP, make([]byte, 28)), uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, in uint16, pktType uint8) {
		fr := packet.Frame{Data: b}
		if fr.Decode() != nil {
			return
		}
		var k preKey
		ok := preKeyOf(&k, &fr, int(in), pktType)
		if !ok {
			return
		}
		mac := func(m packet.MAC) uint64 {
			return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
		}
		if k[0] != mac(fr.Src)<<16|uint64(in) || k[1]>>16 != mac(fr.Dst) || uint8(k[1]>>8) != pktType {
			t.Fatalf("key %x: MACs %v %v, port %d, pkt_type %d", k, fr.Src, fr.Dst, in, pktType)
		}
		p := packet.Packet{Data: fr.Payload}
		if p.Decode() != nil || !p.HasL4 {
			return
		}
		if uint32(k[2]>>32) != p.Src || uint32(k[2]) != p.Dst || uint8(k[3]) != p.Proto ||
			uint16(k[3]>>32) != p.SrcPort || uint16(k[3]>>16) != p.DstPort || uint8(k[1]) != p.IP.TOS() {
			t.Fatalf("key %x, packet %v:%d > %v:%d proto %d tos %#x", k, p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto, p.IP.TOS())
		}
	})
}

// TestBridgeCallResetDNAT: a Worker's call state is as new after a
// bridged frame that a DNAT took out of the bridge (what the random
// frames of TestBridgeFlowCacheMatchesReference do not do: the frame
// is marked unrecordable, bframe.noRec).
func TestBridgeCallResetDNAT(t *testing.T) {
	rs, err := (&iptables.Loader{}).LoadString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p udp --dport 53 -j DNAT --to-destination 192.168.1.7\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Rules: rs, FIB: fib, Bridges: []BridgeConfig{{CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
	}}}, conntrack.DefaultConfig(), 1)
	w := e.NewWorker(0)
	var ff FrameFate
	for i := range 3 {
		w.ReceiveFrameInto(&ff, udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53"), "p1", int64(1+i), nil)
		if ff.Up == nil && !strings.Contains(ff.Drop, "DNAT") {
			t.Fatalf("frame %d: no DNAT: %v", i, ff)
		}
		if d := callResetDiff(w.bc); d != "" {
			t.Fatalf("frame %d (%v): %s", i, ff, d)
		}
	}
}
