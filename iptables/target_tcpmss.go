package iptables

import (
	"encoding/binary"
	"strconv"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TCPMSS target (iptables 1.8.9 extensions/libxt_TCPMSS.c; kernel
// net/netfilter/xt_TCPMSS.c). The kernel target has no table restriction
// but .proto = IPPROTO_TCP, which xt_check_target enforces against the
// rule's "-p" (EINVAL unless "-p tcp" without "!"). tcpmss_tg4_check's
// "-p tcp --syn" requirement is skipped under nft_compat (par->nft_compat),
// and its path-MTU hook test sees only a base chain's own hook.

// tcpmssClampPMTU is XT_TCPMSS_CLAMP_PMTU.
const tcpmssClampPMTU = 0xffff

// TCPMSSTarget is "-j TCPMSS".
type TCPMSSTarget struct {
	// MSS is the value to set, or 0xffff for --clamp-mss-to-pmtu.
	MSS uint16

	given uint32
	tcp   bool // the rule has "-p tcp", not inverted
}

func (t *TCPMSSTarget) Name() string { return "TCPMSS" }

// ClampPMTU reports whether the target clamps to the path MTU.
func (t *TCPMSSTarget) ClampPMTU() bool { return t.MSS == tcpmssClampPMTU }

func (t *TCPMSSTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-mss":
		// max UINT16_MAX - sizeof(struct iphdr)
		v, err := parseUintOpt("TCPMSS", o.Name, o.Arg, 0, 0xffff-20)
		if err != nil {
			return err
		}
		t.MSS = uint16(v)
		t.given |= 1
	case "clamp-mss-to-pmtu":
		t.MSS = tcpmssClampPMTU
		t.given |= 2
	}
	return nil
}

// Final is TCPMSS_check.
func (t *TCPMSSTarget) Final(r *RuleContext) error {
	if t.given == 0 {
		return Errorf("TCPMSS target: At least one parameter is required")
	}
	t.tcp = r.Proto == 6 && !r.ProtoInvert
	return nil
}

// CheckHooks is xt_check_target's protocol test.
func (t *TCPMSSTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if !t.tcp {
		return Errorf("TCPMSS needs -p tcp")
	}
	return nil
}

// CheckEntry is tcpmss_tg4_check's hook test for --clamp-mss-to-pmtu.
func (t *TCPMSSTarget) CheckEntry(tb TableID, own netfilter.HookMask) error {
	if t.ClampPMTU() && own&^netfilter.Hooks(netfilter.Forward, netfilter.LocalOut, netfilter.PostRouting) != 0 {
		return Errorf("path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks")
	}
	return nil
}

// Save is TCPMSS_save.
func (t *TCPMSSTarget) Save(w *SaveWriter) {
	if t.ClampPMTU() {
		w.Opt("clamp-mss-to-pmtu", "")
	} else {
		w.Opt("set-mss", strconv.Itoa(int(t.MSS)))
	}
}

// PathMTUEnv is the optional part of Env that TCPMSS --clamp-mss-to-pmtu
// needs (tcpmss_mangle_packet in net/netfilter/xt_TCPMSS.c). An Env
// without it knows no path MTU, and the kernel drops a packet whose path
// MTU is unknown, so an engine that runs such rules must implement it.
type PathMTUEnv interface {
	// PathMTU returns dst_mtu(skb_dst(skb)), the MTU of the route the
	// packet already has (0 when it has none), and tcpmss_reverse_mtu,
	// the MTU of a plain route lookup towards the packet's source
	// (0xffffffff when there is no such route).
	PathMTU(p *packet.Packet) (out, reverse uint32)
}

// TCP option kinds and the MSS option length (include/net/tcp.h).
const (
	tcpoptNOP    = 1
	tcpoptMSS    = 2
	tcpolenMSS   = 4
	tcpmssMinLen = packet.IPv4MinHeaderLen + packet.TCPMinHeaderLen
	// tcpmssDefault is RFC 1122's default send MSS, the cap on an MSS
	// option the target adds.
	tcpmssDefault = 536
)

// Exec is tcpmss_tg4 (net/netfilter/xt_TCPMSS.c): tcpmss_mangle_packet
// either lowers an existing MSS option to the new value (never raising
// it), or, when the segment carries no data, has room for four more
// option bytes and no MSS option, inserts one with min(new, 536); it
// drops the packet when the TCP header is truncated or the path MTU is
// unknown or at most 40. Non-first fragments pass untouched. Checksums
// are updated incrementally as the kernel does (inet_proto_csum_replace2
// and 4, csum_replace2 for the total length).
//
// Growing the packet uses the buffer's spare capacity past the IPv4 total
// length (what skb_tailroom is); only when there is none is the buffer
// reallocated, as pskb_expand_head does — the one allocating path, taken
// once per SYN that carries no MSS option and has no tailroom.
func (t *TCPMSSTarget) Exec(c *Ctx) TVerdict {
	p := c.Pkt
	h := p.IP
	if h.FragOffset() != 0 || p.Proto != packet.ProtoTCP {
		return TContinue
	}
	hl := h.HeaderLen()
	l := len(h) - hl
	if l < packet.TCPMinHeaderLen {
		return TDrop
	}
	tcph := []byte(h[hl:])
	thl := int(tcph[12]>>4) * 4
	if l < thl || thl < packet.TCPMinHeaderLen {
		return TDrop
	}

	var newmss uint16
	if t.ClampPMTU() {
		var out, rev uint32
		if e, ok := c.Env.(PathMTUEnv); ok {
			out, rev = e.PathMTU(p)
		}
		m := min(out, rev)
		if m <= tcpmssMinLen {
			return TDrop // "unknown or invalid path-MTU"
		}
		newmss = uint16(m - tcpmssMinLen)
	} else {
		newmss = t.MSS
	}

	for i := packet.TCPMinHeaderLen; i <= thl-tcpolenMSS; i += tcpOptLen(tcph, i) {
		if tcph[i] == tcpoptMSS && tcph[i+1] == tcpolenMSS {
			old := binary.BigEndian.Uint16(tcph[i+2:])
			if old <= newmss {
				return TContinue
			}
			binary.BigEndian.PutUint16(tcph[i+2:], newmss)
			tcpCsumReplace2(tcph, old, newmss)
			return TContinue
		}
	}

	// no MSS option: add one, unless data follows the header or the data
	// offset is at its 4-bit maximum
	if l > thl || thl >= 15*4 {
		return TContinue
	}
	tot := len(h)
	if cap(p.Data) < tot+tcpolenMSS {
		nd := make([]byte, tot+tcpolenMSS)
		copy(nd, p.Data[:tot])
		p.Data = nd
	} else {
		p.Data = p.Data[:max(len(p.Data), tot+tcpolenMSS)]
	}
	h = packet.IPv4(p.Data[:tot+tcpolenMSS])
	tcph = h[hl:]
	newmss = min(newmss, tcpmssDefault)

	opt := tcph[packet.TCPMinHeaderLen:]
	copy(opt[tcpolenMSS:], opt[:l-packet.TCPMinHeaderLen])
	// the pseudo-header's TCP length
	tcpCsumReplace2(tcph, uint16(l), uint16(l+tcpolenMSS))
	opt[0], opt[1] = tcpoptMSS, tcpolenMSS
	binary.BigEndian.PutUint16(opt[2:], newmss)
	binary.BigEndian.PutUint16(tcph[16:], packet.UpdateChecksum32(binary.BigEndian.Uint16(tcph[16:]), 0, binary.BigEndian.Uint32(opt)))
	oldw := binary.BigEndian.Uint16(tcph[12:])
	tcph[12] += tcpolenMSS / 4 << 4
	tcpCsumReplace2(tcph, oldw, binary.BigEndian.Uint16(tcph[12:]))

	// tcpmss_tg4: the IPv4 total length and its checksum
	oldLen := uint16(tot)
	newLen := uint16(tot + tcpolenMSS)
	binary.BigEndian.PutUint16(h[2:], newLen)
	binary.BigEndian.PutUint16(h[10:], packet.UpdateChecksum16(h.Checksum(), oldLen, newLen))
	p.IP = h
	p.L4 = tcph
	return TContinue
}

// tcpOptLen is optlen: the length to step over the option at off, 1 for
// EOL/NOP and for a zero length (finite progress on garbage).
func tcpOptLen(opt []byte, off int) int {
	if opt[off] <= tcpoptNOP || opt[off+1] == 0 {
		return 1
	}
	return int(opt[off+1])
}

// tcpCsumReplace2 updates the TCP checksum for a 16-bit word of the
// segment (or the pseudo-header) changing from old to new.
func tcpCsumReplace2(tcph []byte, old, new uint16) {
	binary.BigEndian.PutUint16(tcph[16:], packet.UpdateChecksum16(binary.BigEndian.Uint16(tcph[16:]), old, new))
}

func init() {
	RegisterTarget(&TargetSpec{Name: "TCPMSS", Options: []Option{
		{Name: "set-mss", Arg: RequiredArg},
		{Name: "clamp-mss-to-pmtu"},
	}, New: func() Target { return &TCPMSSTarget{} }})
}
