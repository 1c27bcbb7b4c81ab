package iptables

import (
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// tcp and udp matches (extensions/libxt_tcp.c, libxt_udp.c; kernel
// net/netfilter/xt_tcpudp.c).

// PortRange is an inclusive port range; the zero range {0, 65535} is
// "any".
type PortRange struct{ Lo, Hi uint16 }

// Any reports whether the range covers every port.
func (r PortRange) Any() bool { return r.Lo == 0 && r.Hi == 0xffff }

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + ":" + strconv.Itoa(int(r.Hi))
}

var anyPorts = PortRange{0, 0xffff}

// parsePortsTCPUDP is parse_tcp_ports / xtables' XTTYPE_PORTRC.
func parsePortsTCPUDP(s, proto string) (PortRange, error) {
	lo, hi, err := ParsePortRange(s, proto)
	if err != nil {
		return PortRange{}, err
	}
	if lo > hi {
		return PortRange{}, Errorf("invalid portrange (min > max)")
	}
	return PortRange{lo, hi}, nil
}

var tcpFlagNames = []struct {
	name string
	bit  uint8
}{
	{"FIN", packet.TCPFin}, {"SYN", packet.TCPSyn}, {"RST", packet.TCPRst}, {"PSH", packet.TCPPsh},
	{"ACK", packet.TCPAck}, {"URG", packet.TCPUrg}, {"ALL", 0x3f}, {"NONE", 0},
}

func parseTCPFlags(s string) (uint8, error) {
	var v uint8
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		found := false
		for _, n := range tcpFlagNames {
			if strings.EqualFold(n.name, f) {
				v |= n.bit
				found = true
				break
			}
		}
		if !found {
			return 0, Errorf("Unknown TCP flag `%s'", f)
		}
	}
	return v, nil
}

// formatTCPFlags is print_tcpf.
func formatTCPFlags(v uint8) string {
	if v == 0 {
		return "NONE"
	}
	var parts []string
	for _, n := range tcpFlagNames[:6] {
		if v&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// TCPMatch is "-m tcp".
type TCPMatch struct {
	Src, Dst          PortRange
	FlagMask, FlagCmp uint8
	Option            uint8
	InvSrc, InvDst    bool
	InvFlags, InvOpt  bool

	given uint8 // which of sport/dport/flags/option were given
}

const (
	tcpGivenSrc = 1 << iota
	tcpGivenDst
	tcpGivenFlags
	tcpGivenOpt
)

func (m *TCPMatch) Name() string { return "tcp" }

func (m *TCPMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "source-port", "sport":
		if m.given&tcpGivenSrc != 0 {
			return Errorf("Only one `--source-port' allowed")
		}
		r, err := parsePortsTCPUDP(o.Arg, "tcp")
		if err != nil {
			return err
		}
		m.Src, m.InvSrc = r, o.Invert
		m.given |= tcpGivenSrc
	case "destination-port", "dport":
		if m.given&tcpGivenDst != 0 {
			return Errorf("Only one `--destination-port' allowed")
		}
		r, err := parsePortsTCPUDP(o.Arg, "tcp")
		if err != nil {
			return err
		}
		m.Dst, m.InvDst = r, o.Invert
		m.given |= tcpGivenDst
	case "syn":
		if m.given&tcpGivenFlags != 0 {
			return Errorf("Only one of `--syn' or `--tcp-flags'  allowed")
		}
		m.FlagMask, m.FlagCmp = packet.TCPSyn|packet.TCPRst|packet.TCPAck|packet.TCPFin, packet.TCPSyn
		m.InvFlags = o.Invert
		m.given |= tcpGivenFlags
	case "tcp-flags":
		if m.given&tcpGivenFlags != 0 {
			return Errorf("Only one of `--syn' or `--tcp-flags'  allowed")
		}
		if o.Arg2Missing {
			return Errorf("--tcp-flags requires two args.")
		}
		mask, err := parseTCPFlags(o.Arg)
		if err != nil {
			return err
		}
		cmp, err := parseTCPFlags(o.Arg2)
		if err != nil {
			return err
		}
		m.FlagMask, m.FlagCmp, m.InvFlags = mask, cmp, o.Invert
		m.given |= tcpGivenFlags
	case "tcp-option":
		if m.given&tcpGivenOpt != 0 {
			return Errorf("Only one `--tcp-option' allowed")
		}
		v, ok := strtoul(o.Arg, 1, 255)
		if !ok {
			return Errorf("Bad TCP option \"%s\"", o.Arg)
		}
		m.Option, m.InvOpt = uint8(v), o.Invert
		m.given |= tcpGivenOpt
	}
	return nil
}

func (m *TCPMatch) Final(r *RuleContext) error {
	if m.nftNative() && r.Proto != 6 {
		return Errorf("TCP match requires '-p tcp'")
	}
	return nil
}

// RequiredProto: a tcp match that stays an xt match (with --tcp-option,
// or empty) is checked by the kernel's xt_tcpudp (.proto = IPPROTO_TCP).
func (m *TCPMatch) RequiredProto() uint8 { return 6 }

func (m *TCPMatch) allZero() bool {
	return m.Src.Any() && m.Dst.Any() && m.FlagMask == 0 && m.FlagCmp == 0 && m.Option == 0 &&
		!m.InvSrc && !m.InvDst && !m.InvFlags && !m.InvOpt
}

// nftNative is add_nft_tcp's test: iptables-nft 1.8.9 turns the match into
// nftables payload expressions unless it uses --tcp-option or is empty.
func (m *TCPMatch) nftNative() bool {
	return !m.InvOpt && m.Option == 0 && !m.allZero()
}

// nftMerge folds a later native tcp match of the rule into m, the way
// iptables-nft reassembles one tcp match from the rule's expressions.
func (m *TCPMatch) nftMerge(x Match) {
	o := x.(*TCPMatch)
	if !o.Src.Any() {
		m.Src, m.InvSrc = o.Src, o.InvSrc
	}
	if !o.Dst.Any() {
		m.Dst, m.InvDst = o.Dst, o.InvDst
	}
	if o.FlagMask != 0 {
		m.FlagMask, m.FlagCmp, m.InvFlags = o.FlagMask, o.FlagCmp, o.InvFlags
	}
}

// nftNormalize drops what the native translation cannot carry (an
// inverted full port range emits no expression).
func (m *TCPMatch) nftNormalize() (keep bool) {
	if m.Src.Any() {
		m.InvSrc = false
	}
	if m.Dst.Any() {
		m.InvDst = false
	}
	if m.FlagMask == 0 {
		m.FlagCmp, m.InvFlags = 0, false
	}
	return !m.Src.Any() || !m.Dst.Any() || m.FlagMask != 0
}

func (m *TCPMatch) Save(w *SaveWriter) {
	if !m.Src.Any() {
		w.InvOpt(m.InvSrc, "sport", m.Src.String())
	}
	if !m.Dst.Any() {
		w.InvOpt(m.InvDst, "dport", m.Dst.String())
	}
	if m.Option != 0 || m.InvOpt {
		w.InvOpt(m.InvOpt, "tcp-option", strconv.Itoa(int(m.Option)))
	}
	if m.FlagMask != 0 || m.InvFlags {
		w.InvOpt(m.InvFlags, "tcp-flags", formatTCPFlags(m.FlagMask)+" "+formatTCPFlags(m.FlagCmp))
	}
}

// UDPMatch is "-m udp".
type UDPMatch struct {
	Src, Dst       PortRange
	InvSrc, InvDst bool
	given          uint8
}

func (m *UDPMatch) Name() string { return "udp" }

func (m *UDPMatch) Parse(o *OptArg) error {
	// XTTYPE_PORTRC in 1.8.9 does not reject min > max
	lo, hi, err := ParsePortRange(o.Arg, "udp")
	if err != nil {
		return err
	}
	r := PortRange{lo, hi}
	switch o.Name {
	case "source-port", "sport":
		m.Src, m.InvSrc = r, o.Invert
	case "destination-port", "dport":
		m.Dst, m.InvDst = r, o.Invert
	}
	return nil
}

func (m *UDPMatch) Final(r *RuleContext) error {
	if m.nftNative() && r.Proto != 17 {
		return Errorf("UDP match requires '-p udp'")
	}
	return nil
}

// RequiredProto is xt_tcpudp's .proto = IPPROTO_UDP.
func (m *UDPMatch) RequiredProto() uint8 { return 17 }

func (m *UDPMatch) nftNative() bool {
	return !(m.Src.Any() && m.Dst.Any() && !m.InvSrc && !m.InvDst)
}

func (m *UDPMatch) nftMerge(x Match) {
	o := x.(*UDPMatch)
	if !o.Src.Any() {
		m.Src, m.InvSrc = o.Src, o.InvSrc
	}
	if !o.Dst.Any() {
		m.Dst, m.InvDst = o.Dst, o.InvDst
	}
}

func (m *UDPMatch) nftNormalize() bool {
	if m.Src.Any() {
		m.InvSrc = false
	}
	if m.Dst.Any() {
		m.InvDst = false
	}
	return !m.Src.Any() || !m.Dst.Any()
}

func (m *UDPMatch) Save(w *SaveWriter) {
	if !m.Src.Any() {
		w.InvOpt(m.InvSrc, "sport", m.Src.String())
	}
	if !m.Dst.Any() {
		w.InvOpt(m.InvDst, "dport", m.Dst.String())
	}
}

// CommentMatch is "-m comment".
type CommentMatch struct {
	Text  string
	given bool
}

func (m *CommentMatch) Name() string { return "comment" }

func (m *CommentMatch) Parse(o *OptArg) error {
	// struct xt_comment_info holds 256 bytes: xtopt_parse_string cuts
	// a longer comment to 255 characters
	m.Text, m.given = truncString(o.Arg, 256), true
	return nil
}

// Final: --comment is XTOPT_MAND.
func (m *CommentMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("comment", "comment")
	}
	return nil
}

func (m *CommentMatch) Save(w *SaveWriter) {
	w.WriteString(" --comment")
	SaveString(w, m.Text)
}

// SaveString is xtables_save_string: the word bare when it is made only of
// [A-Za-z0-9_-], else double-quoted with ", \ and ' backslash-escaped.
func SaveString(w *SaveWriter, s string) {
	bare := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			bare = false
			break
		}
	}
	w.WriteByte(' ')
	if bare {
		w.WriteString(s)
		return
	}
	w.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c == '\'' {
			w.WriteByte('\\')
		}
		w.WriteByte(s[i])
	}
	w.WriteByte('"')
}

func init() {
	portOpts := []Option{
		{Name: "source-port", Arg: RequiredArg, Invert: true},
		{Name: "sport", Arg: RequiredArg, Invert: true, Alias: "source-port"},
		{Name: "destination-port", Arg: RequiredArg, Invert: true},
		{Name: "dport", Arg: RequiredArg, Invert: true, Alias: "destination-port"},
	}
	// libxt_tcp.c is an old-style extension: it checks repeats itself
	RegisterMatch(&MatchSpec{Name: "tcp", Options: []Option{
		{Name: "source-port", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "sport", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "destination-port", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "dport", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "syn", Invert: true, Multi: true},
		{Name: "tcp-flags", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
		{Name: "tcp-option", Arg: RequiredArg, Invert: true, Multi: true},
	}, New: func() Match { return &TCPMatch{Src: anyPorts, Dst: anyPorts} }})
	RegisterMatch(&MatchSpec{Name: "udp", Options: portOpts,
		New: func() Match { return &UDPMatch{Src: anyPorts, Dst: anyPorts} }})
	RegisterMatch(&MatchSpec{Name: "comment", Options: []Option{{Name: "comment", Arg: RequiredArg}},
		New: func() Match { return &CommentMatch{} }})
}

// nftCombinedInv is add_nft_tcpudp's shortcut in iptables-nft 1.8.9
// (iptables/nft.c): a single non-zero source port and a single non-zero
// destination port, both inverted or neither, load the 4 port bytes and
// compare them as one word. Inverted, that is NEQ on the pair, so
// "! --sport A ! --dport B" matches unless both ports are equal (fixed
// upstream in 2024 by using the shortcut only without inversion). The
// kernel runs what iptables-nft 1.8.9 installed; checked by the
// match-tcp-udp trace scenario.
func nftCombinedInv(src, dst PortRange, invSrc, invDst bool) bool {
	return invSrc && invDst && src.Lo != 0 && src.Lo == src.Hi && dst.Lo != 0 && dst.Lo == dst.Hi
}

// Eval is tcp_mt (net/netfilter/xt_tcpudp.c) for a match iptables-nft
// keeps as an xt match, and the nftables payload expressions
// (net/netfilter/nft_payload.c) it becomes otherwise (see nftNative).
//
// Non-first fragments never match. tcp_mt drops ("hotdrops") a fragment
// at offset 1 and a first fragment too short for the 20-byte header;
// the native form instead fails the rule (NFT_BREAK) when the bytes of
// a field it loads are missing, and never drops.
func (m *TCPMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	th := p.L4
	if m.nftNative() {
		if !p.HasL4 && !p.L4Truncated {
			return false // nft_payload: no transport header in a fragment
		}
		if nftCombinedInv(m.Src, m.Dst, m.InvSrc, m.InvDst) {
			if len(th) < 4 || m.Src.Contains(be16(th, 0)) && m.Dst.Contains(be16(th, 2)) {
				return false
			}
		} else {
			if !m.Src.Any() && (len(th) < 2 || m.Src.Contains(be16(th, 0)) == m.InvSrc) {
				return false
			}
			if !m.Dst.Any() && (len(th) < 4 || m.Dst.Contains(be16(th, 2)) == m.InvDst) {
				return false
			}
		}
		if m.FlagMask != 0 && (len(th) < 14 || (th[13]&m.FlagMask == m.FlagCmp) == m.InvFlags) {
			return false
		}
		return true
	}
	if off := p.IP.FragOffset(); off != 0 {
		if off == 1 {
			c.HotDrop = true // "Dropping evil TCP offset=1 frag."
		}
		return false
	}
	if len(th) < 20 {
		c.HotDrop = true // "Dropping evil TCP offset=0 tinygram."
		return false
	}
	if m.Src.Contains(be16(th, 0)) == m.InvSrc || m.Dst.Contains(be16(th, 2)) == m.InvDst {
		return false
	}
	if (th[13]&m.FlagMask == m.FlagCmp) == m.InvFlags {
		return false
	}
	if m.Option != 0 {
		doff := int(th[12]>>4) * 4
		if doff < 20 {
			c.HotDrop = true
			return false
		}
		return tcpFindOption(c, th, doff, m.Option, m.InvOpt)
	}
	return true
}

// tcpFindOption is tcp_find_option: walk the option kinds; kinds 0 and 1
// are one byte, the others advance by their length byte (at least 1).
// Options beyond the packet hotdrop it.
func tcpFindOption(c *Ctx, th []byte, doff int, option uint8, invert bool) bool {
	optlen := doff - 20
	if optlen == 0 {
		return invert
	}
	if doff > len(th) {
		c.HotDrop = true
		return false
	}
	for i := 0; i < optlen; {
		k := th[20+i]
		if k == option {
			return !invert
		}
		if k < 2 || 20+i+1 >= len(th) {
			i++
			continue
		}
		if l := th[20+i+1]; l != 0 {
			i += int(l)
		} else {
			i++
		}
	}
	return invert
}

// Eval is udp_mt (net/netfilter/xt_tcpudp.c), or the payload expressions
// of the native form (see TCPMatch.Eval).
func (m *UDPMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	uh := p.L4
	if m.nftNative() {
		if !p.HasL4 && !p.L4Truncated {
			return false
		}
		if nftCombinedInv(m.Src, m.Dst, m.InvSrc, m.InvDst) {
			return len(uh) >= 4 && !(m.Src.Contains(be16(uh, 0)) && m.Dst.Contains(be16(uh, 2)))
		}
		if !m.Src.Any() && (len(uh) < 2 || m.Src.Contains(be16(uh, 0)) == m.InvSrc) {
			return false
		}
		if !m.Dst.Any() && (len(uh) < 4 || m.Dst.Contains(be16(uh, 2)) == m.InvDst) {
			return false
		}
		return true
	}
	if p.IP.FragOffset() != 0 {
		return false
	}
	if len(uh) < 8 {
		c.HotDrop = true // "Dropping evil UDP tinygram."
		return false
	}
	return m.Src.Contains(be16(uh, 0)) != m.InvSrc && m.Dst.Contains(be16(uh, 2)) != m.InvDst
}

// Eval: comment_mt (net/netfilter/xt_comment.c) always matches.
func (m *CommentMatch) Eval(c *Ctx) bool { return true }
