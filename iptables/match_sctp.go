package iptables

import (
	"strings"
	"unicode"
)

// sctp match (extensions/libxt_sctp.c; kernel net/netfilter/xt_sctp.c).

// SCTP chunk match types (xt_sctp.h).
const (
	SCTPChunkAny  = 0x01
	SCTPChunkAll  = 0x02
	SCTPChunkOnly = 0x04
)

type sctpChunkName struct {
	name  string
	typ   uint8
	flags string // valid flag letters, bit 7 first
}

// sctpChunkNames is libxt_sctp.c's table; its order matters, see
// SCTPFlagInfo.
var sctpChunkNames = []sctpChunkName{
	{"DATA", 0, "----IUBE"}, {"INIT", 1, "--------"}, {"INIT_ACK", 2, "--------"},
	{"SACK", 3, "--------"}, {"HEARTBEAT", 4, "--------"}, {"HEARTBEAT_ACK", 5, "--------"},
	{"ABORT", 6, "-------T"}, {"SHUTDOWN", 7, "--------"}, {"SHUTDOWN_ACK", 8, "--------"},
	{"ERROR", 9, "--------"}, {"COOKIE_ECHO", 10, "--------"}, {"COOKIE_ACK", 11, "--------"},
	{"ECN_ECNE", 12, "--------"}, {"ECN_CWR", 13, "--------"}, {"SHUTDOWN_COMPLETE", 14, "-------T"},
	{"I_DATA", 64, "----IUBE"}, {"RE_CONFIG", 130, "--------"}, {"PAD", 132, "--------"},
	{"ASCONF", 193, "--------"}, {"ASCONF_ACK", 128, "--------"}, {"FORWARD_TSN", 192, "--------"},
	{"I_FORWARD_TSN", 194, "--------"},
}

// SCTPFlagInfo is one chunk's flag test. As in iptables 1.8.9, Chunk
// holds the index into the name table (parse_sctp_chunk stores i), which
// equals the chunk type only for types 0-14.
type SCTPFlagInfo struct {
	Chunk      uint8
	Flag, Mask uint8
}

// SCTPMatch is "-m sctp".
type SCTPMatch struct {
	Src, Dst       PortRange
	HasSrc, HasDst bool
	InvSrc, InvDst bool
	HasChunks      bool
	InvChunks      bool
	ChunkMatch     uint8
	ChunkMap       [256 / 32]uint32
	FlagInfo       []SCTPFlagInfo
}

func (m *SCTPMatch) Name() string { return "sctp" }

func (m *SCTPMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "source-port", "sport":
		if m.HasSrc {
			return Errorf("Only one `--source-port' allowed")
		}
		r, err := parsePortsTCPUDP(o.Arg, "sctp")
		if err != nil {
			return err
		}
		m.Src, m.HasSrc, m.InvSrc = r, true, o.Invert
	case "destination-port", "dport":
		if m.HasDst {
			return Errorf("Only one `--destination-port' allowed")
		}
		r, err := parsePortsTCPUDP(o.Arg, "sctp")
		if err != nil {
			return err
		}
		m.Dst, m.HasDst, m.InvDst = r, true, o.Invert
	case "chunk-types":
		if m.HasChunks {
			return Errorf("Only one `--chunk-types' allowed")
		}
		if o.Arg2Missing {
			return Errorf("--chunk-types requires two args")
		}
		m.HasChunks, m.InvChunks = true, o.Invert
		switch strings.ToUpper(o.Arg) {
		case "ANY":
			m.ChunkMatch = SCTPChunkAny
		case "ALL":
			m.ChunkMatch = SCTPChunkAll
		case "ONLY":
			m.ChunkMatch = SCTPChunkOnly
		default:
			return Errorf("Match type has to be one of \"ALL\", \"ANY\" or \"ONLY\"")
		}
		return m.parseChunks(o.Arg2)
	}
	return nil
}

func (m *SCTPMatch) parseChunks(s string) error {
	m.ChunkMap = [8]uint32{}
	switch strings.ToUpper(s) {
	case "ALL":
		for i := range m.ChunkMap {
			m.ChunkMap[i] = 0xffffffff
		}
		return nil
	case "NONE":
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			continue
		}
		name, flags, hasFlags := strings.Cut(item, ":")
		idx := -1
		for i, c := range sctpChunkNames {
			if strings.EqualFold(c.name, name) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return Errorf("Unknown sctp chunk `%s'", name)
		}
		t := sctpChunkNames[idx].typ
		m.ChunkMap[t/32] |= 1 << (t % 32)
		if !hasFlags {
			continue
		}
		for _, f := range flags {
			p := strings.IndexRune(sctpChunkNames[idx].flags, unicode.ToUpper(f))
			if p < 0 {
				return Errorf("Invalid flags for chunk type %d", idx)
			}
			bit := uint8(1) << (7 - p)
			if err := m.addFlag(uint8(idx), bit, unicode.IsUpper(f)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *SCTPMatch) addFlag(chunk, bit uint8, set bool) error {
	for i := range m.FlagInfo {
		if m.FlagInfo[i].Chunk == chunk {
			m.FlagInfo[i].Mask |= bit
			if set {
				m.FlagInfo[i].Flag |= bit
			}
			return nil
		}
	}
	if len(m.FlagInfo) == 4 { // XT_NUM_SCTP_FLAGS
		return Errorf("Number of chunk types with flags exceeds currently allowed limit. Increasing this limit involves changing IPT_NUM_SCTP_FLAGS and recompiling both the kernel space and user space modules")
	}
	fi := SCTPFlagInfo{Chunk: chunk, Mask: bit}
	if set {
		fi.Flag = bit
	}
	m.FlagInfo = append(m.FlagInfo, fi)
	return nil
}

func (m *SCTPMatch) Final(r *RuleContext) error { return nil }

// RequiredProto: xt_sctp.c registers .proto = IPPROTO_SCTP.
func (m *SCTPMatch) RequiredProto() uint8 { return 132 }

func (m *SCTPMatch) Save(w *SaveWriter) {
	if m.HasSrc {
		w.InvOpt(m.InvSrc, "sport", m.Src.String())
	}
	if m.HasDst {
		w.InvOpt(m.InvDst, "dport", m.Dst.String())
	}
	if !m.HasChunks {
		return
	}
	if m.InvChunks {
		w.WriteString(" !")
	}
	w.WriteString(" --chunk-types")
	switch m.ChunkMatch {
	case SCTPChunkAny:
		w.WriteString(" any")
	case SCTPChunkAll:
		w.WriteString(" all")
	case SCTPChunkOnly:
		w.WriteString(" only")
	}
	clear, all := true, true
	for _, v := range m.ChunkMap {
		if v != 0 {
			clear = false
		}
		if v != 0xffffffff {
			all = false
		}
	}
	switch {
	case clear:
		w.WriteString(" NONE")
		return
	case all:
		w.WriteString(" ALL")
		return
	}
	first := true
	for i := 0; i < 256; i++ {
		if m.ChunkMap[i/32]&(1<<(i%32)) == 0 {
			continue
		}
		if first {
			w.WriteByte(' ')
			first = false
		} else {
			w.WriteByte(',')
		}
		for _, c := range sctpChunkNames {
			if int(c.typ) == i {
				w.WriteString(c.name)
			}
		}
		for _, fi := range m.FlagInfo {
			if int(fi.Chunk) != i {
				continue
			}
			if fi.Mask != 0 {
				w.WriteByte(':')
			}
			valid := sctpChunkNames[i].flags
			for b := 7; b >= 0; b-- {
				if fi.Mask&(1<<b) == 0 {
					continue
				}
				c := valid[7-b]
				if fi.Flag&(1<<b) == 0 {
					c = byte(unicode.ToLower(rune(c)))
				}
				w.WriteByte(c)
			}
		}
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "sctp", Options: []Option{
		{Name: "source-port", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "sport", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "destination-port", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "dport", Arg: RequiredArg, Invert: true, Multi: true},
		{Name: "chunk-types", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
	}, New: func() Match { return &SCTPMatch{Src: anyPorts, Dst: anyPorts} }})
}

// Eval is sctp_mt (net/netfilter/xt_sctp.c): ports from the 12-byte
// common header, then the chunk walk of match_packet. A non-first
// fragment never matches; a truncated header or chunk, or a chunk of
// length 0, hotdrops the packet.
func (m *SCTPMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	if p.IP.FragOffset() != 0 {
		return false
	}
	sh := p.L4
	if len(sh) < 12 {
		c.HotDrop = true
		return false
	}
	if m.HasSrc && m.Src.Contains(be16(sh, 0)) == m.InvSrc {
		return false
	}
	if m.HasDst && m.Dst.Contains(be16(sh, 2)) == m.InvDst {
		return false
	}
	if m.HasChunks && m.matchChunks(c, sh) == m.InvChunks {
		return false
	}
	return true
}

func (m *SCTPMatch) chunkSet(t uint8) bool { return m.ChunkMap[t/32]&(1<<(t%32)) != 0 }

// matchFlags is match_flags. As in the kernel, flag_info's chunk type is
// compared with the chunk's type (parse_sctp_chunk stored the table
// index there; see SCTPFlagInfo).
func (m *SCTPMatch) matchFlags(typ, flags uint8) bool {
	for _, fi := range m.FlagInfo {
		if fi.Chunk == typ {
			return flags&fi.Mask == fi.Flag
		}
	}
	return true
}

// matchChunks is match_packet.
func (m *SCTPMatch) matchChunks(c *Ctx, sh []byte) bool {
	var left [8]uint32
	if m.ChunkMatch == SCTPChunkAll {
		left = m.ChunkMap
	}
	off := 12
	for {
		if off+4 > len(sh) || be16(sh, off+2) == 0 {
			c.HotDrop = true // "Dropping invalid SCTP packet."
			return false
		}
		typ, flags := sh[off], sh[off+1]
		off += (int(be16(sh, off+2)) + 3) &^ 3
		if m.chunkSet(typ) {
			switch m.ChunkMatch {
			case SCTPChunkAny:
				if m.matchFlags(typ, flags) {
					return true
				}
			case SCTPChunkAll:
				if m.matchFlags(typ, flags) {
					left[typ/32] &^= 1 << (typ % 32)
				}
			case SCTPChunkOnly:
				if !m.matchFlags(typ, flags) {
					return false
				}
			}
		} else if m.ChunkMatch == SCTPChunkOnly {
			return false
		}
		if off >= len(sh) {
			break
		}
	}
	switch m.ChunkMatch {
	case SCTPChunkAll:
		return left == [8]uint32{}
	case SCTPChunkOnly:
		return true
	}
	return false
}
