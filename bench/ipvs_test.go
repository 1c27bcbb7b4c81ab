package bench

import (
	"fmt"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/packet"
)

// ipvsDirector is an engine with no rule set and an IPVS director of
// nsvc TCP services 10.96.x.y:80, each with per real servers
// 172.16.x.y:8080 (NAT, behind the default gateway), scheduler sched.
func ipvsDirector(b testing.TB, nsvc, per int, sched string) (*datapath.Engine, []lvs.ServiceKey) {
	b.Helper()
	fib, err := datapathtest.DirectorFIB()
	if err != nil {
		b.Fatal(err)
	}
	e := datapath.New(datapath.Config{FIB: fib, IPForward: true}, conntrack.DefaultConfig(), 1)
	d := lvs.NewDirector()
	keys := make([]lvs.ServiceKey, nsvc)
	n := uint32(0)
	for i := range keys {
		k := lvs.ServiceKey{Proto: lvs.ProtoTCP, Addr: 0x0a600000 + uint32(i) + 1, Port: 80}
		if err := d.AddService(lvs.ServiceConfig{Key: k, SchedName: sched}); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < per; j++ {
			n++
			if err := d.AddDest(k, lvs.DestConfig{Addr: 0xac100000 + n, Port: 8080, Fwd: lvs.Masq, Weight: 1}); err != nil {
				b.Fatal(err)
			}
		}
		keys[i] = k
	}
	e.LVS = d
	return e, keys
}

// BenchmarkIPVSNewConn: the SYN of a new connection to one of 1,000
// services with 10,000 real servers in all, through PREROUTING, INPUT,
// IPVS scheduling, OUTPUT and POSTROUTING. Every iteration is a new
// client port, so the connection table grows with b.N.
func BenchmarkIPVSNewConn(b *testing.B) {
	for _, sched := range []string{"rr", "wlc", "sh", "mh"} {
		b.Run(sched, func(b *testing.B) {
			e, keys := ipvsDirector(b, 1000, 10, sched)
			tmpl := build(b, "tcp 10.0.0.2:1024 > 10.96.0.1:80 syn seq 1")
			buf := make([]byte, 2048)
			p := &packet.Packet{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(buf, tmpl)
				*p = packet.Packet{Data: buf[:len(tmpl)], Meta: packet.Meta{InIf: "eth0"}}
				if err := p.Decode(); err != nil {
					b.Fatal(err)
				}
				p.SetDst(keys[i%len(keys)].Addr)
				p.SetSrcPort(uint16(1024 + i%60000))
				p.SetSrc(p.Src + uint32(i/60000))
				if f := e.Receive(p, 1e9, nil); f.Kind != datapath.Forwarded {
					b.Fatalf("fate %v", f)
				}
			}
		})
	}
}

// BenchmarkIPVSEstablished: a packet of an established NAT connection
// each way (client -> real server through the scheduling hook, real
// server -> client through the FORWARD reply hook), per packet.
func BenchmarkIPVSEstablished(b *testing.B) {
	e, _ := ipvsDirector(b, 1000, 10, "wlc")
	buf := make([]byte, 2048)
	p := &packet.Packet{}
	syn := build(b, "tcp 10.0.0.2:40000 > 10.96.1.244:80 syn seq 1")
	if f := runPkt(b, e, buf, syn, p, "eth0", 1e9); f.Kind != datapath.Forwarded {
		b.Fatalf("syn: %v", f)
	}
	rip := fmt.Sprintf("%d.%d.%d.%d", byte(p.Dst>>24), byte(p.Dst>>16), byte(p.Dst>>8), byte(p.Dst))
	in := build(b, "tcp 10.0.0.2:40000 > 10.96.1.244:80 ack 1 seq 2 len 64")
	out := build(b, "tcp "+rip+":8080 > 10.0.0.2:40000 ack 2 seq 1 len 64")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i&1 == 0 {
			if f := runPkt(b, e, buf, in, p, "eth0", 1e9); f.Kind != datapath.Forwarded {
				b.Fatalf("in: %v", f)
			}
		} else if f := runPkt(b, e, buf, out, p, "eth1", 1e9); f.Kind != datapath.Forwarded {
			b.Fatalf("out: %v", f)
		}
	}
}

func TestIPVSEstablishedNoAllocs(t *testing.T) {
	e, _ := ipvsDirector(t, 10, 10, "wlc")
	buf := make([]byte, 2048)
	p := &packet.Packet{}
	if f := runPkt(t, e, buf, build(t, "tcp 10.0.0.2:40000 > 10.96.0.5:80 syn seq 1"), p, "eth0", 1e9); f.Kind != datapath.Forwarded {
		t.Fatalf("syn: %v", f)
	}
	rip := fmt.Sprintf("%d.%d.%d.%d", byte(p.Dst>>24), byte(p.Dst>>16), byte(p.Dst>>8), byte(p.Dst))
	in := build(t, "tcp 10.0.0.2:40000 > 10.96.0.5:80 ack 1 seq 2 len 64")
	out := build(t, "tcp "+rip+":8080 > 10.0.0.2:40000 ack 2 seq 1 len 64")
	n := testing.AllocsPerRun(200, func() {
		if f := runPkt(t, e, buf, in, p, "eth0", 1e9); f.Kind != datapath.Forwarded {
			t.Fatalf("in: %v", f)
		}
		if f := runPkt(t, e, buf, out, p, "eth1", 1e9); f.Kind != datapath.Forwarded {
			t.Fatalf("out: %v", f)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per established packet pair", n)
	}
}
