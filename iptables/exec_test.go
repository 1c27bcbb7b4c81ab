package iptables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Tests of the targets' Exec: one rule set holding every target (each
// case's rules select its packets by a source address of their own), run
// through Table.Run on built packets.

// execEnv is a fake Env: fixed answers, a seeded LCG for Rand32, and the
// path MTUs TCPMSS --clamp-mss-to-pmtu asks for (PathMTUEnv).
type execEnv struct {
	rnd      uint32
	out, rev uint32
}

func (e *execEnv) AddrType(addr uint32, dev string) uint8 { return 1 } // RTN_UNICAST
func (e *execEnv) Now() int64                             { return 0 }
func (e *execEnv) Rand32() uint32 {
	e.rnd = e.rnd*1664525 + 1013904223
	return e.rnd
}
func (e *execEnv) ReversePath(src, dst uint32, inIf string, mark uint32, tos uint8, loose, validMark, acceptLocal bool) bool {
	return true
}
func (e *execEnv) PathMTU(p *packet.Packet) (out, reverse uint32) { return e.out, e.rev }

// plainEnv is an Env without PathMTU.
type plainEnv struct{ execEnv }

func (e *plainEnv) PathMTU() {} // shadows the promoted method: not a PathMTUEnv

// verdictTracer records the verdict of the first target that ran.
type verdictTracer struct {
	seen bool
	v    TVerdict
}

func (tr *verdictTracer) Rule(t *Table, c *Chain, r *Rule, v TVerdict, jump *Chain, gotoFlag bool) {
	if r.Target != nil && !tr.seen {
		tr.seen, tr.v = true, v
	}
}
func (tr *verdictTracer) Return(t *Table, c *Chain, r *Rule)    {}
func (tr *verdictTracer) Policy(t *Table, c *Chain, v TVerdict) {}

func ip4(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

const execDst = "192.0.2.1"

// tcpPacket builds a TCP segment with options and data, and tail spare
// bytes of capacity after it.
func tcpPacket(s packet.Spec, opts, data []byte, tail int) []byte {
	s.Proto = packet.ProtoTCP
	s.Payload = append(append([]byte(nil), opts...), data...)
	b := packet.Build(s)
	l4 := b[packet.IPv4MinHeaderLen:]
	l4[12] = byte((packet.TCPMinHeaderLen+len(opts))/4) << 4
	binary.BigEndian.PutUint16(l4[16:], 0)
	sum := packet.PseudoHeaderSum(s.Src, s.Dst, packet.ProtoTCP, uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[16:], ^packet.Checksum(l4, sum))
	out := make([]byte, len(b), len(b)+tail)
	copy(out, b)
	return out
}

// syn is the default packet: a TCP SYN with an MSS option of 1460.
func syn(src uint32) []byte {
	return tcpPacket(packet.Spec{Src: src, Dst: ip4(execDst), SrcPort: 40000, DstPort: 80, TCPFlags: packet.TCPSyn},
		[]byte{2, 4, 0x05, 0xb4}, nil, 0)
}

func withTOS(tos uint8) func(uint32) []byte {
	return func(src uint32) []byte {
		return packet.Build(packet.Spec{Src: src, Dst: ip4(execDst), Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, TOS: tos, Payload: []byte("abc")})
	}
}

func withMSSOpts(opts, data []byte, tail int) func(uint32) []byte {
	return func(src uint32) []byte {
		return tcpPacket(packet.Spec{Src: src, Dst: ip4(execDst), SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPSyn}, opts, data, tail)
	}
}

type execCase struct {
	name  string
	table TableID
	hook  netfilter.Hook
	// rules are the options after "-A CHAIN -s SRC/32"
	rules  []string
	pkt    func(src uint32) []byte // nil: syn
	mark   uint32
	ct     bool   // the packet has a conntrack entry
	ctMark uint32 // its mark
	ref    *conntrack.Ref
	env    Env // nil: execEnv{out: 1500, rev: 1500}
	tv, rv TVerdict
	check  func(t *testing.T, c *Ctx, ct *conntrack.Conn)
}

func natReq(m NATManip, r NATRange) *NATRequest { return &NATRequest{Manip: m, Range: r} }

func wantNAT(want *NATRequest) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if c.NAT == nil {
			t.Fatalf("no NAT request")
		}
		if *c.NAT != *want {
			t.Errorf("NAT request %+v, want %+v", *c.NAT, *want)
		}
	}
}

func wantMark(m uint32) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if c.Pkt.Mark != m {
			t.Errorf("mark 0x%x, want 0x%x", c.Pkt.Mark, m)
		}
	}
}

func wantCTMark(m, pkt uint32) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, ct *conntrack.Conn) {
		t.Helper()
		if ct.Mark() != m {
			t.Errorf("ctmark 0x%x, want 0x%x", ct.Mark(), m)
		}
		if c.Pkt.Mark != pkt {
			t.Errorf("mark 0x%x, want 0x%x", c.Pkt.Mark, pkt)
		}
	}
}

func wantTTL(ttl uint8) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if got := c.Pkt.IP.TTL(); got != ttl {
			t.Errorf("TTL %d, want %d", got, ttl)
		}
	}
}

func wantTOS(tos uint8) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if got := c.Pkt.IP.TOS(); got != tos {
			t.Errorf("TOS 0x%02x, want 0x%02x", got, tos)
		}
	}
}

func wantReject(r RejectRequest) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if c.Reject == nil || *c.Reject != r {
			t.Errorf("reject %+v, want %+v", c.Reject, r)
		}
	}
}

func wantQueue(q uint16, bypass bool) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		if c.QueueNum != q || c.QueueBypass != bypass {
			t.Errorf("queue %d bypass %v, want %d %v", c.QueueNum, c.QueueBypass, q, bypass)
		}
	}
}

// tcpMSSOf returns the MSS option's value (0 = none), the data offset
// and the IPv4 total length.
func tcpMSSOf(p *packet.Packet) (mss uint16, doff, tot int) {
	tcph := p.L4
	doff = int(tcph[12]>>4) * 4
	for i := 20; i <= doff-4; i += tcpOptLen(tcph, i) {
		if tcph[i] == 2 && tcph[i+1] == 4 {
			mss = binary.BigEndian.Uint16(tcph[i+2:])
			break
		}
	}
	return mss, doff, int(p.IP.TotalLen())
}

func wantMSS(mss uint16, doff, tot int) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
		t.Helper()
		m, d, l := tcpMSSOf(c.Pkt)
		if m != mss || d != doff || l != tot {
			t.Errorf("MSS %d doff %d len %d, want %d %d %d", m, d, l, mss, doff, tot)
		}
	}
}

func all(fs ...func(*testing.T, *Ctx, *conntrack.Conn)) func(*testing.T, *Ctx, *conntrack.Conn) {
	return func(t *testing.T, c *Ctx, ct *conntrack.Conn) {
		t.Helper()
		for _, f := range fs {
			f(t, c, ct)
		}
	}
}

const (
	natTCP = NATMapIPs | NATProtoSpecified
)

var execCases = []execCase{
	// MARK (xt_mark.c mark_tg), every option form, from mark 0xff
	{name: "MARK set-xmark", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j MARK --set-xmark 0x10/0xf0"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0x1f)},
	{name: "MARK set-mark", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j MARK --set-mark 0x5"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0x5)},
	{name: "MARK set-mark/mask", table: Mangle, hook: netfilter.Forward, rules: []string{"-j MARK --set-mark 0x5/0xf"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0xf5)},
	{name: "MARK and-mark", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j MARK --and-mark 0x0f"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0x0f)},
	{name: "MARK or-mark", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j MARK --or-mark 0x100"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0x1ff)},
	{name: "MARK xor-mark", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j MARK --xor-mark 0x0f"}, mark: 0xff, tv: TContinue, rv: TAccept, check: wantMark(0xf0)},
	{name: "MARK chained", table: Mangle, hook: netfilter.LocalOut, rules: []string{"-j MARK --set-mark 0x1", "-j MARK --or-mark 0x10"}, tv: TContinue, rv: TAccept, check: wantMark(0x11)},

	// CONNMARK (xt_connmark.c connmark_tg_shift), ctmark 0x1234, mark 0xab
	{name: "CONNMARK set-xmark", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --set-xmark 0x10/0xf0"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1214, 0xab)},
	{name: "CONNMARK set-mark", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --set-mark 0x5"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x5, 0xab)},
	{name: "CONNMARK set-mark/mask", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --set-mark 0x5/0xf"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1235, 0xab)},
	{name: "CONNMARK and-mark", table: Filter, hook: netfilter.Forward, rules: []string{"-j CONNMARK --and-mark 0xff"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x34, 0xab)},
	{name: "CONNMARK or-mark", table: Filter, hook: netfilter.Forward, rules: []string{"-j CONNMARK --or-mark 0x1"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1235, 0xab)},
	{name: "CONNMARK xor-mark", table: Filter, hook: netfilter.Forward, rules: []string{"-j CONNMARK --xor-mark 0xffff"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0xedcb, 0xab)},
	{name: "CONNMARK save-mark", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j CONNMARK --save-mark"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0xab, 0xab)},
	{name: "CONNMARK save-mark masks", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j CONNMARK --save-mark --nfmask 0xf0 --ctmask 0xff00"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x94, 0xab)},
	{name: "CONNMARK save-mark --mask", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j CONNMARK --save-mark --mask 0xff"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x12ab, 0xab)},
	{name: "CONNMARK restore-mark", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --restore-mark"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1234, 0x1234)},
	{name: "CONNMARK restore-mark masks", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1234, 0x12ab)},
	{name: "CONNMARK set left-shift", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --set-xmark 0x3/0xf --left-shift-mark 4"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x12330, 0xab)},
	{name: "CONNMARK save right-shift", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --save-mark --right-shift-mark 4"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0xa, 0xab)},
	{name: "CONNMARK restore left-shift", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff --left-shift-mark 8"}, ct: true, ctMark: 0x1234, mark: 0xab, tv: TContinue, rv: TAccept, check: wantCTMark(0x1234, 0x34ab)},
	{name: "CONNMARK no ct", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j CONNMARK --restore-mark"}, mark: 0xab, tv: TContinue, rv: TAccept, check: wantMark(0xab)},

	// TTL (xt_HL.c ttl_tg), from 64
	{name: "TTL set", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j TTL --ttl-set 10"}, tv: TContinue, rv: TAccept, check: wantTTL(10)},
	{name: "TTL set same", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j TTL --ttl-set 64"}, tv: TContinue, rv: TAccept, check: wantTTL(64)},
	{name: "TTL inc", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TTL --ttl-inc 10"}, tv: TContinue, rv: TAccept, check: wantTTL(74)},
	{name: "TTL inc clamps", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TTL --ttl-inc 250"}, tv: TContinue, rv: TAccept, check: wantTTL(255)},
	{name: "TTL dec", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j TTL --ttl-dec 5"}, tv: TContinue, rv: TAccept, check: wantTTL(59)},
	{name: "TTL dec to 0", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j TTL --ttl-dec 100"}, tv: TContinue, rv: TAccept, check: wantTTL(0)},

	// TOS (xt_DSCP.c tos_tg)
	{name: "TOS set-tos", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j TOS --set-tos 0x10"}, pkt: withTOS(0x1e), tv: TContinue, rv: TAccept, check: wantTOS(0x10)},
	{name: "TOS set-tos/mask", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j TOS --set-tos 0x10/0x3f"}, pkt: withTOS(0xfe), tv: TContinue, rv: TAccept, check: wantTOS(0xd0)},
	{name: "TOS set-tos symbolic", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j TOS --set-tos Minimize-Delay"}, pkt: withTOS(0xfe), tv: TContinue, rv: TAccept, check: wantTOS(0xd0)},
	{name: "TOS and-tos", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TOS --and-tos 0x0f"}, pkt: withTOS(0x1e), tv: TContinue, rv: TAccept, check: wantTOS(0x0e)},
	{name: "TOS or-tos", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TOS --or-tos 0x01"}, pkt: withTOS(0x1e), tv: TContinue, rv: TAccept, check: wantTOS(0x1f)},
	{name: "TOS xor-tos", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TOS --xor-tos 0xff"}, pkt: withTOS(0x1e), tv: TContinue, rv: TAccept, check: wantTOS(0xe1)},
	{name: "TOS unchanged", table: Mangle, hook: netfilter.Forward, rules: []string{"-j TOS --or-tos 0x02"}, pkt: withTOS(0x1e), tv: TContinue, rv: TAccept, check: wantTOS(0x1e)},

	// DSCP (xt_DSCP.c dscp_tg): keeps the ECN bits
	{name: "DSCP set-dscp", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j DSCP --set-dscp 0x2e"}, pkt: withTOS(0x03), tv: TContinue, rv: TAccept, check: wantTOS(0xbb)},
	{name: "DSCP set-dscp-class", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j DSCP --set-dscp-class AF41"}, pkt: withTOS(0x01), tv: TContinue, rv: TAccept, check: wantTOS(0x89)},
	{name: "DSCP same", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-j DSCP --set-dscp 0x2e"}, pkt: withTOS(0xba), tv: TContinue, rv: TAccept, check: wantTOS(0xba)},

	// TCPMSS (xt_TCPMSS.c)
	{name: "TCPMSS set-mss lowers", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 1400"}, tv: TContinue, rv: TAccept, check: wantMSS(1400, 24, 44)},
	{name: "TCPMSS set-mss never raises", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 1500"}, tv: TContinue, rv: TAccept, check: wantMSS(1460, 24, 44)},
	{name: "TCPMSS after other options", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 1000"},
		pkt: withMSSOpts([]byte{1, 1, 4, 2, 0, 0, 2, 4, 0x05, 0xb4, 1, 0}, nil, 0), tv: TContinue, rv: TAccept, check: wantMSS(1000, 32, 52)},
	{name: "TCPMSS clamp", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-p tcp -j TCPMSS --clamp-mss-to-pmtu"},
		env: &execEnv{out: 1500, rev: 1400}, tv: TContinue, rv: TAccept, check: wantMSS(1360, 24, 44)},
	{name: "TCPMSS clamp reverse route missing", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-p tcp -j TCPMSS --clamp-mss-to-pmtu"},
		env: &execEnv{out: 1280, rev: 0xffffffff}, tv: TContinue, rv: TAccept, check: wantMSS(1240, 24, 44)},
	{name: "TCPMSS clamp MTU too small", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-p tcp -j TCPMSS --clamp-mss-to-pmtu"},
		env: &execEnv{out: 40, rev: 1500}, tv: TDrop, rv: TDrop},
	{name: "TCPMSS clamp without PathMTU", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --clamp-mss-to-pmtu"},
		env: &plainEnv{}, tv: TDrop, rv: TDrop},
	{name: "TCPMSS adds option", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 1400"},
		pkt: withMSSOpts(nil, nil, 0), tv: TContinue, rv: TAccept, check: wantMSS(536, 24, 44)},
	{name: "TCPMSS adds option into tailroom", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 500"},
		pkt: withMSSOpts([]byte{1, 1, 4, 2}, nil, 16), tv: TContinue, rv: TAccept, check: wantMSS(500, 28, 48)},
	{name: "TCPMSS no room with data", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 500"},
		pkt: withMSSOpts(nil, []byte("GET /"), 16), tv: TContinue, rv: TAccept, check: wantMSS(0, 20, 45)},
	{name: "TCPMSS doff at maximum", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 500"},
		pkt: withMSSOpts(make([]byte, 40), nil, 16), tv: TContinue, rv: TAccept, check: wantMSS(0, 60, 80)},
	{name: "TCPMSS truncated header", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 500"},
		pkt: func(src uint32) []byte {
			b := syn(src)
			b[20+12] = 15 << 4 // data offset past the end
			return b
		}, tv: TDrop, rv: TDrop},
	{name: "TCPMSS fragment", table: Mangle, hook: netfilter.Forward, rules: []string{"-p tcp -j TCPMSS --set-mss 500"},
		pkt: func(src uint32) []byte {
			b := syn(src)
			binary.BigEndian.PutUint16(b[6:], 3) // offset 24 bytes
			packet.IPv4(b).SetChecksum()
			return b
		}, tv: TContinue, rv: TAccept},

	// CHECKSUM (xt_CHECKSUM.c): no partial checksums in uswitch
	{name: "CHECKSUM fill", table: Mangle, hook: netfilter.PostRouting, rules: []string{"-p udp -j CHECKSUM --checksum-fill"}, pkt: withTOS(0), tv: TContinue, rv: TAccept, check: wantTOS(0)},

	// TRACE, LOG, NFLOG: continue
	{name: "TRACE", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j TRACE"}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if !c.Pkt.Trace {
				t.Errorf("nf_trace not set")
			}
		}},
	{name: "LOG", table: Filter, hook: netfilter.LocalIn, rules: []string{`-j LOG --log-prefix "in: " --log-level 6 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid --log-macdecode`}, tv: TContinue, rv: TAccept},
	{name: "NFLOG", table: Filter, hook: netfilter.Forward, rules: []string{"-j NFLOG --nflog-group 5 --nflog-prefix x --nflog-size 128 --nflog-threshold 2"}, tv: TContinue, rv: TAccept},
	{name: "NFLOG range", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j NFLOG --nflog-range 64"}, tv: TContinue, rv: TAccept},

	// NOTRACK and CT (xt_CT.c)
	{name: "NOTRACK", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j NOTRACK"}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if !c.Notrack || !c.CT.IsUntracked() {
				t.Errorf("not untracked: %v %+v", c.Notrack, c.CT)
			}
		}},
	{name: "CT notrack", table: Raw, hook: netfilter.LocalOut, rules: []string{"-j CT --notrack", "-j CT --zone 9"}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if !c.Notrack || !c.CT.IsUntracked() || c.CTTemplate != nil || c.HasZone {
				t.Errorf("CT --notrack: %+v", c)
			}
		}},
	{name: "CT zone", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j CT --zone 5", "-j CT --zone 6", "-j CT --notrack"}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if c.Notrack || !c.HasZone || c.CTZone != 5 || c.CTTemplate == nil || c.CTTemplate.Zone != 5 {
				t.Errorf("CT --zone 5: notrack %v zone %v/%d", c.Notrack, c.HasZone, c.CTZone)
			}
		}},
	{name: "CT zone mark", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j CT --zone-orig mark"}, mark: 0x10007, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if !c.HasZone || c.CTZone != 7 || c.CTTemplate.Flags&(CTZoneMark|CTZoneDirOrig) != CTZoneMark|CTZoneDirOrig {
				t.Errorf("CT --zone-orig mark: zone %v/%d", c.HasZone, c.CTZone)
			}
		}},
	{name: "CT helper", table: Raw, hook: netfilter.PreRouting, rules: []string{"-p tcp -j CT --helper ftp --ctevents new,mark --expevents new"}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if c.CTTemplate == nil || c.CTTemplate.Helper != "ftp" || c.CTZone != 0 || c.Notrack {
				t.Errorf("CT --helper ftp: %+v", c.CTTemplate)
			}
		}},
	{name: "CT previously seen", table: Raw, hook: netfilter.LocalOut, rules: []string{"-j CT --zone 5", "-j NOTRACK"}, ct: true, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if c.Notrack || c.HasZone || c.CTTemplate != nil || c.CT.Conn == nil {
				t.Errorf("packet with a ct was changed: %+v", c)
			}
		}},
	{name: "NOTRACK already untracked", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j NOTRACK"}, ref: &conntrack.Ref{Info: conntrack.CtUntracked}, tv: TContinue, rv: TAccept,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			if c.Notrack {
				t.Errorf("untracked packet re-marked")
			}
		}},

	// NFQUEUE (xt_NFQUEUE.c nfqueue_tg_v3)
	{name: "NFQUEUE default", table: Filter, hook: netfilter.Forward, rules: []string{"-j NFQUEUE"}, tv: TQueue, rv: TQueue, check: wantQueue(0, false)},
	{name: "NFQUEUE num", table: Filter, hook: netfilter.Forward, rules: []string{"-j NFQUEUE --queue-num 3"}, tv: TQueue, rv: TQueue, check: wantQueue(3, false)},
	{name: "NFQUEUE bypass", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-j NFQUEUE --queue-num 65535 --queue-bypass"}, tv: TQueue, rv: TQueue, check: wantQueue(65535, true)},
	{name: "NFQUEUE balance", table: Raw, hook: netfilter.PreRouting, rules: []string{"-j NFQUEUE --queue-balance 4:7"}, tv: TQueue, rv: TQueue,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			want := 4 + uint16(reciprocalScale(nfqHashV4(c.Pkt, nfqHashInitval(c.State, c.Env)), 4))
			if c.QueueNum != want || c.QueueBypass {
				t.Errorf("queue %d, want %d", c.QueueNum, want)
			}
		}},
	{name: "NFQUEUE cpu-fanout", table: Filter, hook: netfilter.LocalOut, rules: []string{"-j NFQUEUE --queue-balance 10:12 --queue-cpu-fanout --queue-bypass"}, tv: TQueue, rv: TQueue,
		check: func(t *testing.T, c *Ctx, _ *conntrack.Conn) {
			want := 10 + uint16(fanoutHash(c.Pkt, nfqHashInitval(c.State, c.Env))%3)
			if c.QueueNum != want || !c.QueueBypass {
				t.Errorf("queue %d bypass %v, want %d", c.QueueNum, c.QueueBypass, want)
			}
		}},

	// REJECT (ipt_REJECT.c reject_tg)
	{name: "REJECT default", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j REJECT"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 3})},
	{name: "REJECT net-unreach", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j REJECT --reject-with icmp-net-unreachable"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 0})},
	{name: "REJECT host-unreach", table: Filter, hook: netfilter.Forward, rules: []string{"-j REJECT --reject-with host-unreach"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 1})},
	{name: "REJECT proto-unreach", table: Filter, hook: netfilter.Forward, rules: []string{"-j REJECT --reject-with icmp-proto-unreachable"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 2})},
	{name: "REJECT port-unreach", table: Filter, hook: netfilter.LocalOut, rules: []string{"-j REJECT --reject-with icmp-port-unreachable"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 3})},
	{name: "REJECT net-prohib", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j REJECT --reject-with icmp-net-prohibited"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 9})},
	{name: "REJECT host-prohib", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j REJECT --reject-with icmp-host-prohibited"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 10})},
	{name: "REJECT admin-prohib", table: Filter, hook: netfilter.LocalIn, rules: []string{"-j REJECT --reject-with admin-prohib"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{Type: 3, Code: 13})},
	{name: "REJECT tcp-reset", table: Filter, hook: netfilter.LocalIn, rules: []string{"-p tcp -j REJECT --reject-with tcp-reset"}, tv: TDrop, rv: TDrop, check: wantReject(RejectRequest{TCPReset: true})},

	// NAT targets (xt_nat.c, xt_MASQUERADE.c, xt_REDIRECT.c, xt_NETMAP.c)
	{name: "DNAT address", table: Nat, hook: netfilter.PreRouting, rules: []string{"-j DNAT --to-destination 192.168.1.10"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipDst, NATRange{Flags: NATMapIPs, MinAddr: ip4("192.168.1.10"), MaxAddr: ip4("192.168.1.10")}))},
	{name: "DNAT address:port", table: Nat, hook: netfilter.LocalOut, rules: []string{"-p tcp -j DNAT --to-destination 192.168.1.10:8080"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipDst, NATRange{Flags: natTCP, MinAddr: ip4("192.168.1.10"), MaxAddr: ip4("192.168.1.10"), MinPort: 8080, MaxPort: 8080}))},
	{name: "DNAT range base random persistent", table: Nat, hook: netfilter.PreRouting, rules: []string{"-p tcp -j DNAT --to-destination 10.9.0.1-10.9.0.4:1000-2000/1500 --random --persistent"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipDst, NATRange{Flags: natTCP | NATProtoOffset | NATProtoRandom | NATPersistent,
			MinAddr: ip4("10.9.0.1"), MaxAddr: ip4("10.9.0.4"), MinPort: 1000, MaxPort: 2000, BasePort: 1500}))},
	{name: "DNAT port only", table: Nat, hook: netfilter.PreRouting, rules: []string{"-p udp -j DNAT --to-destination :53"}, pkt: withTOS(0), ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipDst, NATRange{Flags: NATProtoSpecified, MinPort: 53, MaxPort: 53}))},
	{name: "SNAT", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j SNAT --to-source 1.2.3.4"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipSrc, NATRange{Flags: NATMapIPs, MinAddr: ip4("1.2.3.4"), MaxAddr: ip4("1.2.3.4")}))},
	{name: "SNAT range random-fully", table: Nat, hook: netfilter.LocalIn, rules: []string{"-p udp -j SNAT --to-source 1.2.3.4-1.2.3.10:1024-2048 --random-fully"}, pkt: withTOS(0), ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipSrc, NATRange{Flags: natTCP | NATProtoRandomFull, MinAddr: ip4("1.2.3.4"), MaxAddr: ip4("1.2.3.10"), MinPort: 1024, MaxPort: 2048}))},
	{name: "SNAT random persistent", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j SNAT --to-source 1.2.3.4 --random --persistent"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipSrc, NATRange{Flags: NATMapIPs | NATProtoRandom | NATPersistent, MinAddr: ip4("1.2.3.4"), MaxAddr: ip4("1.2.3.4")}))},
	{name: "MASQUERADE", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j MASQUERADE"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipSrc, Masquerade: true})},
	{name: "MASQUERADE ports random", table: Nat, hook: netfilter.PostRouting, rules: []string{"-p tcp -j MASQUERADE --to-ports 1000-2000 --random"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipSrc, Masquerade: true, Range: NATRange{Flags: NATProtoSpecified | NATProtoRandom, MinPort: 1000, MaxPort: 2000}})},
	{name: "MASQUERADE random-fully", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j MASQUERADE --random-fully"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipSrc, Masquerade: true, Range: NATRange{Flags: NATProtoRandomFull}})},
	{name: "REDIRECT", table: Nat, hook: netfilter.PreRouting, rules: []string{"-j REDIRECT"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipDst, Redirect: true})},
	{name: "REDIRECT ports random", table: Nat, hook: netfilter.LocalOut, rules: []string{"-p tcp -j REDIRECT --to-ports 8080-8081 --random"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipDst, Redirect: true, Range: NATRange{Flags: NATProtoSpecified | NATProtoRandom, MinPort: 8080, MaxPort: 8081}})},
	{name: "NETMAP PREROUTING", table: Nat, hook: netfilter.PreRouting, rules: []string{"-j NETMAP --to 10.1.0.0/16"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipDst, Netmap: true, NetmapMask: 0xffff0000, Range: NATRange{Flags: NATMapIPs, MinAddr: ip4("10.1.0.0"), MaxAddr: ip4("10.1.255.255")}})},
	{name: "NETMAP OUTPUT", table: Nat, hook: netfilter.LocalOut, rules: []string{"-j NETMAP --to 10.1.2.0/24"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipDst, Netmap: true, NetmapMask: 0xffffff00, Range: NATRange{Flags: NATMapIPs, MinAddr: ip4("10.1.2.0"), MaxAddr: ip4("10.1.2.255")}})},
	{name: "NETMAP POSTROUTING", table: Nat, hook: netfilter.PostRouting, rules: []string{"-j NETMAP --to 10.1.0.0/16"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipSrc, Netmap: true, NetmapMask: 0xffff0000, Range: NATRange{Flags: NATMapIPs, MinAddr: ip4("10.1.0.0"), MaxAddr: ip4("10.1.255.255")}})},
	{name: "NETMAP INPUT", table: Nat, hook: netfilter.LocalIn, rules: []string{"-j NETMAP --to 172.16.0.0/12"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(&NATRequest{Manip: ManipSrc, Netmap: true, NetmapMask: 0xfff00000, Range: NATRange{Flags: NATMapIPs, MinAddr: ip4("172.16.0.0"), MaxAddr: ip4("172.31.255.255")}})},
	{name: "NAT then ACCEPT not reached", table: Nat, hook: netfilter.PreRouting, rules: []string{"-j DNAT --to-destination 192.168.1.11", "-j DNAT --to-destination 192.168.1.12"}, ct: true, tv: TAccept, rv: TAccept,
		check: wantNAT(natReq(ManipDst, NATRange{Flags: NATMapIPs, MinAddr: ip4("192.168.1.11"), MaxAddr: ip4("192.168.1.11")}))},

	// TPROXY (xt_TPROXY.c): no sockets, so the no-socket path: drop
	{name: "TPROXY", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-p tcp -j TPROXY --on-port 3128 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1"}, mark: 0x10, tv: TDrop, rv: TDrop, check: wantMark(0x10)},
	{name: "TPROXY udp", table: Mangle, hook: netfilter.PreRouting, rules: []string{"-p udp -j TPROXY --on-port 53"}, pkt: withTOS(0), tv: TDrop, rv: TDrop},
}

// execSrc is the source address that selects case i's rules.
func execSrc(i int) uint32 { return ip4("10.0.0.1") + uint32(i)<<8 }

// execRuleset loads one rule set with every case's rules.
func execRuleset(t testing.TB) *Ruleset {
	t.Helper()
	var lines [NumTables][]string
	for i, c := range execCases {
		for _, r := range c.rules {
			lines[c.table] = append(lines[c.table], fmt.Sprintf("-A %s -s %s/32 %s", c.hook.String(), FormatAddr(execSrc(i)), r))
		}
	}
	var b strings.Builder
	for tb := TableID(0); tb < NumTables; tb++ {
		if len(lines[tb]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", tb)
		for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
			if TableHooks(tb).Has(h) {
				fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", h.String())
			}
		}
		for _, l := range lines[tb] {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	rs, err := (&Loader{}).LoadString(b.String())
	if err != nil {
		t.Fatalf("load: %v\n%s", err, b.String())
	}
	return rs
}

// checkSums verifies the IPv4 header and transport checksums and that
// the packet still decodes.
func checkSums(t *testing.T, p *packet.Packet) {
	t.Helper()
	h := p.IP
	if packet.Checksum(h[:h.HeaderLen()], 0) != 0xffff {
		t.Errorf("IPv4 header checksum 0x%04x wrong (want 0x%04x)", h.Checksum(), recomputed(h))
	}
	if !p.TransportChecksumOK() {
		t.Errorf("transport checksum wrong")
	}
	q := &packet.Packet{Data: append([]byte(nil), p.Data...)}
	if err := q.Decode(); err != nil {
		t.Errorf("rewritten packet does not decode: %v", err)
	}
}

func recomputed(h packet.IPv4) uint16 {
	c := append(packet.IPv4(nil), h...)
	c.SetChecksum()
	return c.Checksum()
}

func TestExecTargets(t *testing.T) {
	rs := execRuleset(t)
	seen := map[string]bool{}
	for i, tc := range execCases {
		t.Run(tc.name, func(t *testing.T) {
			src := execSrc(i)
			mk := tc.pkt
			if mk == nil {
				mk = syn
			}
			p := &packet.Packet{Data: mk(src)}
			if err := p.Decode(); err != nil {
				t.Fatal(err)
			}
			p.Mark = tc.mark
			env := tc.env
			if env == nil {
				env = &execEnv{out: 1500, rev: 1500}
			}
			c := &Ctx{Pkt: p, Hook: tc.hook, Env: env}
			var ct *conntrack.Conn
			if tc.ct {
				ct = &conntrack.Conn{}
				ct.SetMark(tc.ctMark)
				c.CT = conntrack.Ref{Conn: ct, Info: conntrack.CtNew}
			}
			if tc.ref != nil {
				c.CT = *tc.ref
			}
			tb := rs.Tables[tc.table]
			var logged uint64
			r0 := tb.Builtin(tc.hook).Rules
			var target Target
			for _, r := range r0 {
				if r.IP.Src == src {
					target = r.Target
					break
				}
			}
			if target == nil {
				t.Fatalf("rule not loaded")
			}
			seen[target.Name()] = true
			if l, ok := target.(interface{ Logged() uint64 }); ok {
				logged = l.Logged()
			}
			tr := &verdictTracer{}
			v := tb.Run(c, tr)
			if !tr.seen || tr.v != tc.tv {
				t.Errorf("target verdict %v (ran %v), want %v", tr.v, tr.seen, tc.tv)
			}
			if v != tc.rv {
				t.Errorf("Run verdict %v, want %v", v, tc.rv)
			}
			if l, ok := target.(interface{ Logged() uint64 }); ok && l.Logged() != logged+1 {
				t.Errorf("logged %d, want %d", l.Logged(), logged+1)
			}
			if tc.tv != TAccept && c.NAT != nil {
				t.Errorf("NAT request from %s", target.Name())
			}
			if tc.tv != TDrop && c.Reject != nil {
				t.Errorf("reject request from %s", target.Name())
			}
			if tc.check != nil {
				tc.check(t, c, ct)
			}
			if tc.rv != TDrop {
				checkSums(t, p)
			}
		})
	}
	for _, name := range Targets() {
		if !seen[name] {
			t.Errorf("target %s has no Exec case", name)
		}
	}
}

// TestExecTCPMSSBytes checks the inserted option byte by byte and the
// options that were moved behind it.
func TestExecTCPMSSBytes(t *testing.T) {
	tg := &TCPMSSTarget{MSS: 1200}
	b := tcpPacket(packet.Spec{Src: ip4("10.0.0.1"), Dst: ip4(execDst), SrcPort: 1, DstPort: 2, TCPFlags: packet.TCPSyn},
		[]byte{1, 1, 4, 2}, nil, 4)
	p := &packet.Packet{Data: b}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	before := &p.Data[0]
	if v := tg.Exec(&Ctx{Pkt: p}); v != TContinue {
		t.Fatalf("verdict %v", v)
	}
	if &p.Data[0] != before {
		t.Errorf("buffer reallocated despite tailroom")
	}
	got := p.L4[20:28]
	want := []byte{2, 4, 0x02, 0x18, 1, 1, 4, 2} // min(1200, 536) = 0x218
	if string(got) != string(want) {
		t.Errorf("options % x, want % x", got, want)
	}
	checkSums(t, p)

	// without tailroom the buffer grows
	b = tcpPacket(packet.Spec{Src: ip4("10.0.0.1"), Dst: ip4(execDst), SrcPort: 1, DstPort: 2, TCPFlags: packet.TCPSyn}, nil, nil, 0)
	p = &packet.Packet{Data: b}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	tg.Exec(&Ctx{Pkt: p})
	if p.Len() != 44 || string(p.L4[20:24]) != string([]byte{2, 4, 0x02, 0x18}) {
		t.Errorf("option not added: % x", p.IP)
	}
	checkSums(t, p)
}

// TestExecDSFieldChecksum compares ipv4_change_dsfield's update with a
// full recompute over every TOS transition of one header.
func TestExecDSFieldChecksum(t *testing.T) {
	b := packet.Build(packet.Spec{Src: ip4("10.0.0.1"), Dst: ip4(execDst), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	h := packet.IPv4(b)
	for from := 0; from < 256; from++ {
		for to := 0; to < 256; to++ {
			h[1] = uint8(from)
			h.SetChecksum()
			changeDSField(h, 0, uint8(to))
			if h.TOS() != uint8(to) || packet.Checksum(h[:20], 0) != 0xffff {
				t.Fatalf("TOS 0x%02x -> 0x%02x: checksum 0x%04x, want 0x%04x", from, to, h.Checksum(), recomputed(h))
			}
		}
	}
}

// TestExecNFQueueBalance: both directions of a flow share a queue, and
// the flows spread over every queue of the range.
func TestExecNFQueueBalance(t *testing.T) {
	for _, fanout := range []bool{false, true} {
		tg := &NFQueueTarget{QueueNum: 8, QueuesTotal: 4}
		if fanout {
			tg.Flags = NFQCPUFanout
		}
		env := &execEnv{}
		hit := map[uint16]int{}
		for i := 0; i < 256; i++ {
			a, b := ip4("10.0.0.1")+uint32(i)*7919, ip4("172.16.0.1")+uint32(i)
			var q [2]uint16
			for d := 0; d < 2; d++ {
				s := packet.Spec{Src: a, Dst: b, Proto: packet.ProtoUDP, SrcPort: uint16(1000 + i), DstPort: 53}
				if d == 1 {
					s.Src, s.Dst, s.SrcPort, s.DstPort = b, a, 53, uint16(1000+i)
				}
				p := &packet.Packet{Data: packet.Build(s)}
				if err := p.Decode(); err != nil {
					t.Fatal(err)
				}
				c := &Ctx{Pkt: p, Env: env}
				if v := tg.Exec(c); v != TQueue {
					t.Fatalf("verdict %v", v)
				}
				q[d] = c.QueueNum
			}
			if q[0] != q[1] {
				t.Errorf("fanout %v: flow %d: queues %d and %d", fanout, i, q[0], q[1])
			}
			if q[0] < 8 || q[0] > 11 {
				t.Errorf("fanout %v: queue %d out of 8:11", fanout, q[0])
			}
			hit[q[0]]++
		}
		if len(hit) != 4 {
			t.Errorf("fanout %v: queues used %v", fanout, hit)
		}
	}
}

// TestExecNoAllocs runs every case's packet through its table in the
// steady state: no allocation per packet.
func TestExecNoAllocs(t *testing.T) {
	rs := execRuleset(t)
	type run struct {
		tb   *Table
		c    Ctx // the case's context, copied into ctx per packet
		ctx  Ctx // reused, as the engine's per-worker context is
		orig []byte
		buf  []byte
		p    packet.Packet
		mark uint32
	}
	runs := make([]*run, len(execCases))
	ct := &conntrack.Conn{}
	for i, tc := range execCases {
		mk := tc.pkt
		if mk == nil {
			mk = syn
		}
		orig := mk(execSrc(i))
		env := tc.env
		if env == nil {
			env = &execEnv{out: 1500, rev: 1500}
		}
		r := &run{tb: rs.Tables[tc.table], orig: orig, buf: make([]byte, len(orig), len(orig)+64), mark: tc.mark}
		r.c = Ctx{Hook: tc.hook, Env: env}
		if tc.ct {
			r.c.CT = conntrack.Ref{Conn: ct, Info: conntrack.CtNew}
		}
		if tc.ref != nil {
			r.c.CT = *tc.ref
		}
		runs[i] = r
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, r := range runs {
			r.buf = r.buf[:len(r.orig)]
			copy(r.buf, r.orig)
			r.p.Data = r.buf
			if r.p.Decode() != nil {
				panic("decode")
			}
			r.p.Mark, r.p.Trace = r.mark, false
			r.ctx = r.c
			r.ctx.Pkt = &r.p
			r.tb.Run(&r.ctx, nil)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run of %d packets", allocs, len(runs))
	}
}

func BenchmarkExecTargets(b *testing.B) {
	rs := execRuleset(b)
	tb := rs.Tables[Mangle]
	orig := syn(execSrc(0))
	buf := make([]byte, len(orig), len(orig)+64)
	env := &execEnv{out: 1500, rev: 1500}
	var p packet.Packet
	c := &Ctx{}
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, orig)
		p.Data = buf
		_ = p.Decode()
		*c = Ctx{Pkt: &p, Hook: netfilter.PreRouting, Env: env}
		tb.Run(c, nil)
	}
}
