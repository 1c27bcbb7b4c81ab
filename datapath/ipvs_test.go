package datapath

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/packet"
)

// ipvsEngine is the router of RouterFIB as a director: the VIP is its
// client-side address 10.0.0.1, real servers on eth1.
func ipvsEngine(t *testing.T, ruleText string, sched string, dests ...lvs.DestConfig) (*Engine, lvs.ServiceKey) {
	t.Helper()
	var rs *iptables.Ruleset
	if ruleText != "" {
		var err error
		if rs, err = (&iptables.Loader{}).LoadString(ruleText); err != nil {
			t.Fatal(err)
		}
	}
	e := New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
	e.LVS = lvs.NewDirector()
	k := lvs.ServiceKey{Proto: lvs.ProtoTCP, Addr: 0x0a000001, Port: 80}
	if err := e.LVS.AddService(lvs.ServiceConfig{Key: k, SchedName: sched}); err != nil {
		t.Fatal(err)
	}
	for _, d := range dests {
		if err := e.LVS.AddDest(k, d); err != nil {
			t.Fatal(err)
		}
	}
	return e, k
}

func rs(last byte, fwd lvs.FwdMethod) lvs.DestConfig {
	return lvs.DestConfig{Addr: 0xc0a80100 | uint32(last), Port: 8080, Fwd: fwd, Weight: 1}
}

func TestIPVSMasqFlow(t *testing.T) {
	// each -a puts the dest at the head of the kernel's list and rr
	// starts from the head: the dest added last (.2) is picked first
	e, _ := ipvsEngine(t, "", "rr", rs(3, lvs.Masq), rs(2, lvs.Masq))
	tr := &Tracer{All: true}
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	f := e.Receive(syn, 1e9, tr)
	if f.Kind != Forwarded || f.OutIf != "eth1" {
		t.Fatalf("fate %v\n%s", f, strings.Join(tr.Lines, "\n"))
	}
	if syn.Dst != 0xc0a80102 || syn.DstPort != 8080 || syn.Src != 0x0a000002 || syn.IP.TTL() != 63 || !syn.TransportChecksumOK() {
		t.Fatalf("scheduled %08x:%d > %08x:%d ttl %d", syn.Src, syn.SrcPort, syn.Dst, syn.DstPort, syn.IP.TTL())
	}
	if text := strings.Join(tr.Lines, "\n"); !strings.Contains(text, "ipvs:INPUT:99:schedule TCP 10.0.0.2:40000 -> 10.0.0.1:80 -> 192.168.1.2:8080 Masq SYN_RECV") {
		t.Errorf("trace lacks the IPVS step:\n%s", text)
	}
	synack := mk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:40000 syn ack 2 seq 7 iif eth1")
	f = e.Receive(synack, 1e9+1, nil)
	if f.Kind != Forwarded || f.OutIf != "eth0" {
		t.Fatalf("reply fate %v", f)
	}
	if synack.Src != 0x0a000001 || synack.SrcPort != 80 || synack.Dst != 0x0a000002 || synack.DstPort != 40000 || !synack.TransportChecksumOK() {
		t.Fatalf("reply %08x:%d > %08x:%d", synack.Src, synack.SrcPort, synack.Dst, synack.DstPort)
	}
	ack := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 iif eth0")
	if f = e.Receive(ack, 1e9+2, nil); f.Kind != Forwarded || ack.Dst != 0xc0a80102 {
		t.Fatalf("ack fate %v dst %08x", f, ack.Dst)
	}
	// rr: the next client goes to the other server
	syn2 := mk(t, "tcp 10.0.0.3:40001 > 10.0.0.1:80 syn seq 1 iif eth0")
	if f = e.Receive(syn2, 1e9+3, nil); f.Kind != Forwarded || syn2.Dst != 0xc0a80103 {
		t.Fatalf("second connection %v to %08x", f, syn2.Dst)
	}
	svc := e.LVS.Services()[0]
	d2, d3 := svc.Dests[0], svc.Dests[1]
	// rs2's connection is ESTABLISHED, rs3's SYN_RECV: both active
	// (tcp_state_active)
	if d2.ActiveConns.Load() != 1 || d2.InactConns.Load() != 0 || d3.ActiveConns.Load() != 1 || d3.InactConns.Load() != 0 {
		t.Errorf("counters: rs2 %d/%d rs3 %d/%d", d2.ActiveConns.Load(), d2.InactConns.Load(), d3.ActiveConns.Load(), d3.InactConns.Load())
	}
	if st := svc.Stats.Snapshot(); st.Conns != 2 || st.InPkts != 3 || st.OutPkts != 1 {
		t.Errorf("service stats %+v", st)
	}
	// a packet to the VIP on another port is the host's: RST
	other := mk(t, "tcp 10.0.0.2:40002 > 10.0.0.1:81 syn seq 1 iif eth0")
	if f = e.Receive(other, 1e9+4, nil); f.Kind != Delivered {
		t.Fatalf("VIP other port: %v", f)
	}
}

func TestIPVSDirectRouteAndTunnel(t *testing.T) {
	// added last, the DR dest is at the head of the list: rr's first pick
	e, _ := ipvsEngine(t, "", "rr", lvs.DestConfig{Addr: 0xc0a80105, Port: 80, Fwd: lvs.Tunnel, Weight: 1}, rs(4, lvs.Route))
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	orig := append([]byte(nil), syn.IP...)
	// DR: only the TTL changed; the next hop is the real server
	if f := e.Receive(syn, 1e9, nil); f.Kind != Forwarded || f.OutIf != "eth1" || f.NextHop != 0xc0a80104 {
		t.Fatalf("DR fate %v next hop %08x", f, f.NextHop)
	}
	if syn.Dst != 0x0a000001 || syn.DstPort != 80 || syn.IP.TTL() != orig[8]-1 || string(syn.IP[20:]) != string(orig[20:]) {
		t.Fatalf("DR rewrote the packet: %x", syn.IP)
	}
	syn2 := mk(t, "tcp 10.0.0.3:40000 > 10.0.0.1:80 syn seq 1 iif eth0 ")
	if f := e.Receive(syn2, 1e9, nil); f.Kind != Forwarded || f.OutIf != "eth1" {
		t.Fatalf("TUN fate %v", f)
	}
	if syn2.Proto != 4 || syn2.Src != 0xc0a80101 || syn2.Dst != 0xc0a80105 {
		t.Fatalf("TUN outer %08x > %08x proto %d", syn2.Src, syn2.Dst, syn2.Proto)
	}
	inner, ok := lvs.Decap(syn2.IP, 0)
	if !ok {
		t.Fatal("not decapsulable")
	}
	q := &packet.Packet{Data: inner}
	if err := q.Decode(); err != nil || q.Src != 0x0a000003 || q.Dst != 0x0a000001 || q.DstPort != 80 || q.IP.TTL() != syn2.IP.TTL() {
		t.Fatalf("inner %v %08x > %08x:%d", err, q.Src, q.Dst, q.DstPort)
	}
}

const ipvsFilter = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
COMMIT
`

// With vs.conntrack=1 the reply matches the connection IPVS altered
// (ESTABLISHED); without it the scheduled packets are untracked.
func TestIPVSConntrack(t *testing.T) {
	for _, ctOn := range []bool{false, true} {
		e, _ := ipvsEngine(t, ipvsFilter, "rr", rs(2, lvs.Masq))
		sc := e.LVS.Sysctls()
		sc.Conntrack = ctOn
		e.LVS.SetSysctls(sc)
		syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
		if f := e.Receive(syn, 1e9, nil); f.Kind != Forwarded {
			t.Fatalf("conntrack=%v: syn %v", ctOn, f)
		}
		// untracked (conntrack=0): the SYN's unconfirmed entry is
		// dropped, nothing is confirmed
		if want := map[bool]int{false: 0, true: 1}[ctOn]; e.CT.Count() != want {
			t.Fatalf("conntrack=%v: %d entries after the SYN, want %d", ctOn, e.CT.Count(), want)
		}
		synack := mk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:40000 syn ack 2 seq 7 iif eth1")
		f := e.Receive(synack, 1e9+1, nil)
		if ctOn {
			if f.Kind != Forwarded || synack.Src != 0x0a000001 {
				t.Fatalf("conntrack=1: reply %v from %08x", f, synack.Src)
			}
			if e.CT.Count() != 1 {
				t.Errorf("conntrack=1: %d entries", e.CT.Count())
			}
			var seen bool
			e.CT.Range(1e9+2, func(c *conntrack.Conn) bool {
				r := c.Tuple(conntrack.Reply)
				seen = r.Src == 0xc0a80102 && r.SrcPort == 8080
				return true
			})
			if !seen {
				t.Error("conntrack=1: reply tuple not altered to the real server")
			}
		} else if f.Kind != Dropped {
			// the reply is a NEW connection to the filter
			t.Fatalf("conntrack=0: reply %v (want dropped by FORWARD policy)", f)
		}
	}
}

func TestIPVSLeave(t *testing.T) {
	d := rs(2, lvs.Masq)
	d.Weight = 0
	e, _ := ipvsEngine(t, "", "wlc", d)
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	f := e.Receive(syn, 1e9, nil)
	if f.Kind != Dropped || len(f.Answers) != 1 {
		t.Fatalf("fate %v answers %d", f, len(f.Answers))
	}
	a := f.Answers[0].Pkt
	if a.Proto != packet.ProtoICMP || a.ICMPType != 3 || a.ICMPCode != 3 || a.Dst != 0x0a000002 {
		t.Fatalf("answer %d/%d/%d to %08x", a.Proto, a.ICMPType, a.ICMPCode, a.Dst)
	}
}

const kubeIPVSRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x4000/0x4000
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`

// kube-proxy's IPVS mode: vs.conntrack=1, the scheduled packet is
// masqueraded in POSTROUTING (its nat SRC binding is made there, from the
// reply tuple IPVS altered), the real server answers the director, and
// the reply is de-masqueraded by conntrack and given the VIP by IPVS.
func TestIPVSMasqueradedScheduling(t *testing.T) {
	e, _ := ipvsEngine(t, kubeIPVSRules, "rr", rs(2, lvs.Masq))
	sc := e.LVS.Sysctls()
	sc.Conntrack = true
	e.LVS.SetSysctls(sc)
	tr := &Tracer{All: true}
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	f := e.Receive(syn, 1e9, tr)
	if f.Kind != Forwarded || f.OutIf != "eth1" || syn.Src != 0xc0a80101 || syn.Dst != 0xc0a80102 || syn.DstPort != 8080 || !syn.TransportChecksumOK() {
		t.Fatalf("fate %v, %08x:%d > %08x:%d\n%s", f, syn.Src, syn.SrcPort, syn.Dst, syn.DstPort, strings.Join(tr.Lines, "\n"))
	}
	text := strings.Join(tr.Lines, "\n")
	iIPVS := strings.Index(text, "ipvs:INPUT:99")
	iPost := strings.Index(text, "nat:POSTROUTING:rule")
	if iIPVS < 0 || iPost < iIPVS {
		t.Errorf("want the IPVS step before nat POSTROUTING:\n%s", text)
	}
	synack := mk(t, "tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7 iif eth1")
	synack.SetDstPort(syn.SrcPort)
	f = e.Receive(synack, 1e9+1, nil)
	if f.Kind != Forwarded || f.OutIf != "eth0" || synack.Src != 0x0a000001 || synack.SrcPort != 80 || synack.Dst != 0x0a000002 || synack.DstPort != 40000 || !synack.TransportChecksumOK() {
		t.Fatalf("reply %v: %08x:%d > %08x:%d", f, synack.Src, synack.SrcPort, synack.Dst, synack.DstPort)
	}
}

// A client on the director itself (OUTPUT -98) is scheduled too.
func TestIPVSLocalClient(t *testing.T) {
	e, _ := ipvsEngine(t, "", "rr", rs(2, lvs.Masq))
	p := mk(t, "tcp 192.168.1.1:40000 > 10.0.0.1:80 syn seq 1")
	f := e.Send(p, 1e9, nil)
	if f.Kind != Sent || f.OutIf != "eth1" || p.Dst != 0xc0a80102 {
		t.Fatalf("local client: %v to %08x", f, p.Dst)
	}
	// the reply comes to the director's own address: LOCAL_IN 98 gives
	// it the VIP back before the socket sees it
	r := mk(t, "tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7 iif eth1")
	if f := e.Receive(r, 1e9+1, nil); f.Kind != Delivered || r.Src != 0x0a000001 || r.SrcPort != 80 {
		t.Fatalf("reply to a local client: %v from %08x:%d", f, r.Src, r.SrcPort)
	}
}

func icmpErr(t *testing.T, src, dst uint32, typ, code uint8, in string, inIf string) *packet.Packet {
	t.Helper()
	inner := mk(t, in)
	p := &packet.Packet{Data: packet.Build(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoICMP, ICMPType: typ, ICMPCode: code,
		Payload: inner.IP[:28]}), Meta: packet.Meta{InIf: inIf}}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

func icmpOK(p *packet.Packet) bool { return packet.Checksum(p.L4, 0) == 0xffff }

// ICMP errors about a VS/NAT connection are translated both ways: the
// real server's port unreachable reaches the client from the VIP about
// its packet to the VIP (ip_vs_out_icmp), and an error about a reply the
// director sent reaches the real server about its own packet
// (ip_vs_in_icmp).
func TestIPVSICMPErrors(t *testing.T) {
	e, _ := ipvsEngine(t, "", "rr", rs(2, lvs.Masq))
	uk := lvs.ServiceKey{Proto: lvs.ProtoUDP, Addr: 0x0a000001, Port: 53}
	if err := e.LVS.AddService(lvs.ServiceConfig{Key: uk, SchedName: "rr"}); err != nil {
		t.Fatal(err)
	}
	if err := e.LVS.AddDest(uk, lvs.DestConfig{Addr: 0xc0a80102, Port: 5353, Fwd: lvs.Masq, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	q := mk(t, "udp 10.0.0.2:4000 > 10.0.0.1:53 iif eth0")
	if f := e.Receive(q, 1e9, nil); f.Kind != Forwarded || q.Dst != 0xc0a80102 || q.DstPort != 5353 {
		t.Fatalf("query %v to %08x:%d", f, q.Dst, q.DstPort)
	}
	// the real server has nothing on 5353
	unreach := icmpErr(t, 0xc0a80102, 0x0a000002, 3, 3, "udp 10.0.0.2:4000 > 192.168.1.2:5353", "eth1")
	if f := e.Receive(unreach, 1e9+1, nil); f.Kind != Forwarded || f.OutIf != "eth0" {
		t.Fatalf("port unreachable: %v", f)
	}
	in := packet.IPv4(unreach.L4[8:])
	if unreach.Src != 0x0a000001 || in.Dst() != 0x0a000001 || in.Src() != 0x0a000002 || uint16(in[22])<<8|uint16(in[23]) != 53 ||
		!icmpOK(unreach) || in.CalculateChecksum() != 0 {
		t.Fatalf("error to the client (icmp ok %v, inner csum %04x/%04x): from %08x, quoted %08x > %08x:%d", icmpOK(unreach), in.CalculateChecksum(), in.Checksum(), unreach.Src, in.Src(), in.Dst(), uint16(in[22])<<8|uint16(in[23]))
	}
	// a router on the client's side cannot deliver a reply from the VIP
	noHost := icmpErr(t, 0x0a0000fe, 0x0a000001, 3, 1, "udp 10.0.0.1:53 > 10.0.0.2:4000", "eth0")
	tr := &Tracer{All: true}
	if f := e.Receive(noHost, 1e9+2, tr); f.Kind != Forwarded || f.OutIf != "eth1" {
		t.Fatalf("host unreachable: %v\n%s", f, strings.Join(tr.Lines, "\n"))
	}
	in = packet.IPv4(noHost.L4[8:])
	if noHost.Dst != 0xc0a80102 || in.Src() != 0xc0a80102 || uint16(in[20])<<8|uint16(in[21]) != 5353 || !icmpOK(noHost) {
		t.Fatalf("error to the real server: to %08x, quoted from %08x:%d", noHost.Dst, in.Src(), uint16(in[20])<<8|uint16(in[21]))
	}
}

// A DF packet that does not fit the tunnel is answered with
// fragmentation needed and the tunnel's MTU (ensure_mtu_is_adequate).
func TestIPVSTunnelMTU(t *testing.T) {
	e, _ := ipvsEngine(t, "", "rr", lvs.DestConfig{Addr: 0xc0a80105, Port: 80, Fwd: lvs.Tunnel, Weight: 1})
	big := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 len 1460 df iif eth0")
	f := e.Receive(big, 1e9, nil)
	if f.Kind != Dropped || len(f.Answers) != 1 {
		t.Fatalf("fate %v, %d answers", f, len(f.Answers))
	}
	a := f.Answers[0].Pkt
	if a.ICMPType != 3 || a.ICMPCode != 4 || uint16(a.L4[6])<<8|uint16(a.L4[7]) != 1480 {
		t.Fatalf("answer %d/%d mtu %d", a.ICMPType, a.ICMPCode, uint16(a.L4[6])<<8|uint16(a.L4[7]))
	}
	small := mk(t, "tcp 10.0.0.2:40001 > 10.0.0.1:80 syn seq 1 len 1400 df iif eth0")
	if f := e.Receive(small, 1e9, nil); f.Kind != Forwarded || len(small.IP) != 1400+40+20 {
		t.Fatalf("small: %v len %d", f, len(small.IP))
	}
}

// vs.conntrack=1: after the real server resets a connection, the
// client's next SYN from the same port meets IPVS's CLOSE connection
// (conn_reuse_mode) while conntrack still has the old, confirmed entry
// (a server's RST does not let a SYN reopen it): IPVS drops that SYN
// and expires its connection; the retransmission is scheduled afresh.
func TestIPVSReuseOldConntrackDrop(t *testing.T) {
	e, _ := ipvsEngine(t, ipvsFilter, "rr", rs(2, lvs.Masq))
	sc := e.LVS.Sysctls()
	sc.Conntrack = true
	e.LVS.SetSysctls(sc)
	now := int64(1e9)
	for i, s := range []string{
		"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0",
		"tcp 192.168.1.2:8080 > 10.0.0.2:40000 syn ack 2 seq 7 iif eth1",
		"tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 iif eth0",
		"tcp 192.168.1.2:8080 > 10.0.0.2:40000 rst seq 8 iif eth1",
	} {
		if f := e.Receive(mk(t, s), now, nil); f.Kind != Forwarded {
			t.Fatalf("packet %d: %v", i, f)
		}
		now++
	}
	tr := &Tracer{All: true}
	f := e.Receive(mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 100 iif eth0"), now, tr)
	if f.Kind != Dropped || !strings.Contains(strings.Join(tr.Lines, "\n"), "still uses its old conntrack entry") {
		t.Fatalf("the SYN reusing the port: %v\n%s", f, strings.Join(tr.Lines, "\n"))
	}
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 100 iif eth0")
	if f := e.Receive(syn, now+1e9, nil); f.Kind != Forwarded || syn.Dst != 0xc0a80102 {
		t.Fatalf("its retransmission: %v to %08x", f, syn.Dst)
	}
}

// nat_icmp_send: a VS/NAT real server's packet that belongs to no
// connection is dropped and answered with ICMP port unreachable (a TCP
// RST is left alone, as is anyone else's packet); off, it is forwarded.
func TestIPVSNatICMPSend(t *testing.T) {
	for _, on := range []bool{false, true} {
		e, _ := ipvsEngine(t, "", "rr", rs(2, lvs.Masq))
		sc := e.LVS.Sysctls()
		sc.NatICMPSend = on
		e.LVS.SetSysctls(sc)
		tr := &Tracer{All: true}
		f := e.Receive(mk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:40000 ack 5 seq 9 iif eth1"), 1e9, tr)
		if !on {
			if f.Kind != Forwarded {
				t.Fatalf("off: %v", f)
			}
			continue
		}
		if f.Kind != Dropped || len(f.Answers) != 1 {
			t.Fatalf("on: %v, %d answers\n%s", f, len(f.Answers), strings.Join(tr.Lines, "\n"))
		}
		a := f.Answers[0].Pkt
		if a.Proto != packet.ProtoICMP || a.ICMPType != packet.ICMPDestUnreach || a.ICMPCode != 3 || a.Dst != 0xc0a80102 || a.Src != 0xc0a80101 {
			t.Errorf("the answer: %08x > %08x type %d code %d", a.Src, a.Dst, a.ICMPType, a.ICMPCode)
		}
		if !strings.Contains(strings.Join(tr.Lines, "\n"), "nat_icmp_send") {
			t.Errorf("trace:\n%s", strings.Join(tr.Lines, "\n"))
		}
		for _, s := range []string{
			"tcp 192.168.1.2:8080 > 10.0.0.2:40000 rst seq 9 iif eth1",   // a reset
			"tcp 192.168.1.3:8080 > 10.0.0.2:40000 ack 5 seq 9 iif eth1", // not a real server
			"tcp 192.168.1.2:8081 > 10.0.0.2:40000 ack 5 seq 9 iif eth1", // another port
		} {
			if f := e.Receive(mk(t, s), 2e9, nil); f.Kind != Forwarded || len(f.Answers) != 0 {
				t.Errorf("%s: %v, %d answers", s, f, len(f.Answers))
			}
		}
	}
}
