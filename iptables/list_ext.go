package iptables

import (
	"fmt"
	"strconv"
)

// The extensions' ->print callbacks: how `iptables -L` shows a match or
// target after the rule's addresses. Each names the iptables 1.8.9
// extension file it follows. Every print starts with a space.

// service is port_to_service, or the number with -n.
func (f listFmt) port(p uint16, proto string) string {
	if !f.numeric {
		if s := f.names.Service(p, proto); s != "" {
			return s
		}
	}
	return strconv.Itoa(int(p))
}

// listPorts is print_ports (libxt_tcp.c, libxt_udp.c).
func listPorts(b *SaveWriter, name string, r PortRange, inv bool, proto string, f listFmt) {
	if r.Lo == 0 && r.Hi == 0xffff && !inv {
		return
	}
	i := ""
	if inv {
		i = "!"
	}
	if r.Lo == r.Hi {
		b.WriteString(" " + name + ":" + i + f.port(r.Lo, proto))
		return
	}
	b.WriteString(" " + name + "s:" + i + f.port(r.Lo, proto) + ":" + f.port(r.Hi, proto))
}

var tcpFlagPrint = []struct {
	name string
	bit  uint8
}{{"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04}, {"PSH", 0x08}, {"ACK", 0x10}, {"URG", 0x20}, {"ALL", 0x3f}, {"NONE", 0}}

func listTCPFlags(b *SaveWriter, flags uint8) {
	have := false
	for flags != 0 {
		i := 0
		for flags&tcpFlagPrint[i].bit == 0 {
			i++
		}
		if have {
			b.WriteByte(',')
		}
		b.WriteString(tcpFlagPrint[i].name)
		have = true
		flags &^= tcpFlagPrint[i].bit
	}
	if !have {
		b.WriteString("NONE")
	}
}

// list is tcp_print (libxt_tcp.c).
func (m *TCPMatch) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	b.WriteString(" tcp")
	listPorts(b, "spt", m.Src, m.InvSrc, "tcp", f)
	listPorts(b, "dpt", m.Dst, m.InvDst, "tcp", f)
	if m.Option != 0 || m.InvOpt {
		i := ""
		if m.InvOpt {
			i = "!"
		}
		fmt.Fprintf(b, " option=%s%d", i, m.Option)
	}
	if m.FlagMask != 0 || m.InvFlags {
		b.WriteString(" flags:")
		if m.InvFlags {
			b.WriteByte('!')
		}
		if f.numeric {
			fmt.Fprintf(b, "0x%02X/0x%02X", m.FlagMask, m.FlagCmp)
		} else {
			listTCPFlags(b, m.FlagMask)
			b.WriteByte('/')
			listTCPFlags(b, m.FlagCmp)
		}
	}
}

// list is udp_print (libxt_udp.c).
func (m *UDPMatch) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	b.WriteString(" udp")
	listPorts(b, "spt", m.Src, m.InvSrc, "udp", f)
	listPorts(b, "dpt", m.Dst, m.InvDst, "udp", f)
}

// list is comment_print (libxt_comment.c).
func (m *CommentMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" /* " + m.Text + " */")
}

// list is icmp_print (libipt_icmp.c): a name when one has the type and
// code range exactly, else "type N" (after "icmp" with no space).
func (m *ICMPMatch) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	b.WriteString(" icmp")
	if !f.numeric {
		for _, n := range icmpNames {
			if n.typ == m.Type && n.codeMin == m.CodeMin && n.codeMax == m.CodeMax {
				b.WriteByte(' ')
				if m.Invert {
					b.WriteByte('!')
				}
				b.WriteString(n.name)
				return
			}
		}
	}
	if m.Invert {
		b.WriteString(" !")
	}
	fmt.Fprintf(b, "type %d", m.Type)
	if m.CodeMin == m.CodeMax {
		fmt.Fprintf(b, " code %d", m.CodeMin)
	} else if m.CodeMin != 0 || m.CodeMax != 0xff {
		fmt.Fprintf(b, " codes %d-%d", m.CodeMin, m.CodeMax)
	}
}

// list is multiport_print_v1 (libxt_multiport.c).
func (m *MultiportMatch) list(b *SaveWriter, ip *IPHeader, f listFmt) {
	b.WriteString(" multiport ")
	switch m.Mode {
	case MultiportSource:
		b.WriteString("sports ")
	case MultiportDestination:
		b.WriteString("dports ")
	default:
		b.WriteString("ports ")
	}
	if m.Invert {
		b.WriteString(" !")
	}
	proto := ""
	if ip.Inv&InvProto == 0 {
		switch ip.Proto {
		case 6:
			proto = "tcp"
		case 17:
			proto = "udp"
		case 136:
			proto = "udplite"
		case 132:
			proto = "sctp"
		case 33:
			proto = "dccp"
		}
	}
	for i, p := range m.Ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.port(p.Lo, proto))
		if p.Hi != p.Lo {
			b.WriteString(":" + f.port(p.Hi, proto))
		}
	}
}

// list is conntrack_mt_print / state_print (libxt_conntrack.c).
func (m *ConntrackMatch) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	fl, inv := m.MatchFlags, m.InvFlags
	not := func(bit uint16) {
		if inv&bit != 0 {
			b.WriteString(" !")
		}
	}
	if fl&ctFlagState != 0 {
		not(ctFlagState)
		if m.StateAlias {
			b.WriteString(" state")
		} else {
			b.WriteString(" ctstate")
		}
		sep := " "
		for _, n := range ctStatePrint {
			if m.StateMask&n.bit != 0 {
				b.WriteString(sep + n.name)
				sep = ","
			}
		}
	}
	if fl&ctFlagProto != 0 {
		not(ctFlagProto)
		fmt.Fprintf(b, " ctproto %d", m.L4Proto)
	}
	for i := 0; i < 4; i++ {
		bit := uint16(ctFlagOrigSrc << uint(i))
		if fl&bit == 0 {
			continue
		}
		not(bit)
		b.WriteString(" " + ctAddrNames[i])
		if !f.numeric && m.Addr[i] == 0 {
			b.WriteString(" anywhere")
		} else {
			b.WriteString(" " + f.anyname(m.Addr[i]) + maskSuffix(m.Mask[i]))
		}
	}
	for i := 0; i < 4; i++ {
		bit := uint16(ctFlagOrigSrcPort << uint(i))
		if fl&bit == 0 {
			continue
		}
		not(bit)
		lo, hi := m.Port[i][0], m.Port[i][1]
		fmt.Fprintf(b, " %s %d", ctPortNames[i], lo)
		if hi != 0 && hi != lo {
			fmt.Fprintf(b, ":%d", hi)
		}
	}
	if fl&ctFlagStatus != 0 {
		not(ctFlagStatus)
		b.WriteString(" ctstatus")
		sep := " "
		if m.StatusMask == 0 {
			b.WriteString(" NONE")
		}
		for _, n := range ctStatusNames[1:] {
			if m.StatusMask&n.bit != 0 {
				b.WriteString(sep + n.name)
				sep = ","
			}
		}
	}
	if fl&ctFlagExpires != 0 {
		not(ctFlagExpires)
		fmt.Fprintf(b, " ctexpire %d", m.ExpMin)
		if m.ExpMax != m.ExpMin {
			fmt.Fprintf(b, ":%d", m.ExpMax)
		}
	}
	if fl&ctFlagDirection != 0 {
		if inv&ctFlagDirection != 0 {
			b.WriteString(" ctdir REPLY")
		} else {
			b.WriteString(" ctdir ORIGINAL")
		}
	}
}

// list is mac_print (libxt_mac.c); iptables-nft 1.8.9 prints the
// address it reads back from nftables in lower case.
func (m *MACMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" MAC")
	if m.Invert {
		b.WriteString(" !")
	}
	a := m.Src
	fmt.Fprintf(b, " %02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5])
}

// list is limit_print (libxt_limit.c).
func (m *LimitMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	rate := formatLimitRate(m.Avg)
	if rate == "inf" {
		rate = "inf"
	}
	fmt.Fprintf(b, " limit: avg %s burst %d", listRate(rate), m.Burst)
}

// listRate turns the saved rate unit into print_rate's.
func listRate(r string) string {
	for _, u := range [][2]string{{"/second", "/sec"}, {"/minute", "/min"}} {
		if len(r) > len(u[0]) && r[len(r)-len(u[0]):] == u[0] {
			return r[:len(r)-len(u[0])] + u[1]
		}
	}
	return r
}

func listMark(b *SaveWriter, mark, mask uint32) {
	if mask != 0xffffffff {
		fmt.Fprintf(b, "0x%x/0x%x", mark, mask)
	} else {
		fmt.Fprintf(b, "0x%x", mark)
	}
}

// list is mark_mt_print (libxt_mark.c).
func (m *MarkMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" mark match")
	if m.Invert {
		b.WriteString(" !")
	}
	b.WriteByte(' ')
	listMark(b, m.Mark, m.Mask)
}

// list is connmark_mt_print (libxt_connmark.c).
func (m *ConnmarkMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" connmark match ")
	if m.Invert {
		b.WriteByte('!')
	}
	listMark(b, m.Mark, m.Mask)
}

// list is addrtype_print_v1 (libxt_addrtype.c).
func (m *AddrtypeMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" ADDRTYPE match")
	if m.Source != 0 {
		b.WriteString(" src-type ")
		if m.Flags&AddrtypeInvertSource != 0 {
			b.WriteByte('!')
		}
		b.WriteString(addrtypeString(m.Source))
	}
	if m.Dest != 0 {
		b.WriteString(" dst-type ")
		if m.Flags&AddrtypeInvertDest != 0 {
			b.WriteByte('!')
		}
		b.WriteString(addrtypeString(m.Dest))
	}
	if m.Flags&AddrtypeLimitIn != 0 {
		b.WriteString(" limit-in")
	}
	if m.Flags&AddrtypeLimitOut != 0 {
		b.WriteString(" limit-out")
	}
}

// list is REJECT_print (libipt_REJECT.c).
func (t *RejectTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" reject-with " + rejectNames[t.With].name)
}

// logLevelNames are nft's: iptables-nft 1.8.9 prints the log
// expression's level back under those names.
var logLevelNames = [...]string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"}

// list is LOG_print (libxt_LOG.c).
func (t *LogTarget) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	b.WriteString(" LOG")
	if f.numeric {
		fmt.Fprintf(b, " flags %d level %d", t.Flags, t.Level)
	} else {
		if int(t.Level) < len(logLevelNames) {
			b.WriteString(" level " + logLevelNames[t.Level])
		} else {
			fmt.Fprintf(b, " UNKNOWN level %d", t.Level)
		}
		for _, x := range []struct {
			bit  uint8
			name string
		}{{LogTCPSeq, "tcp-sequence"}, {LogTCPOpt, "tcp-options"}, {LogIPOpt, "ip-options"}, {LogUID, "uid"}, {LogMACDecode, "macdecode"}} {
			if t.Flags&x.bit != 0 {
				b.WriteString(" " + x.name)
			}
		}
	}
	if t.Prefix != "" {
		b.WriteString(" prefix \"" + t.Prefix + "\"")
	}
}

func listNATFlags(b *SaveWriter, r *NATRange) {
	if r.Flags&NATProtoRandom != 0 {
		b.WriteString(" random")
	}
	if r.Flags&NATProtoRandomFull != 0 {
		b.WriteString(" random-fully")
	}
	if r.Flags&NATPersistent != 0 {
		b.WriteString(" persistent")
	}
}

// list is MASQUERADE_print (libipt_MASQUERADE.c).
func (t *MasqueradeTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	r := &t.Range
	if r.Flags&NATProtoSpecified != 0 {
		fmt.Fprintf(b, " masq ports: %d", r.MinPort)
		if r.MaxPort != r.MinPort {
			fmt.Fprintf(b, "-%d", r.MaxPort)
		}
	}
	listNATFlags(b, r)
}

// list is DNAT_print (libxt_NAT.c).
func (t *DNATTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" to:" + t.Range.String(false))
	listNATFlags(b, &t.Range)
}

// list is SNAT_print (libxt_NAT.c).
func (t *SNATTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" to:" + t.Range.String(false))
	listNATFlags(b, &t.Range)
}

// list is REDIRECT_print (libipt_REDIRECT.c).
func (t *RedirectTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	r := &t.Range
	if r.Flags&NATProtoSpecified != 0 {
		fmt.Fprintf(b, " redir ports %d", r.MinPort)
		if r.MaxPort != r.MinPort {
			fmt.Fprintf(b, "-%d", r.MaxPort)
		}
	}
	if r.Flags&NATProtoRandom != 0 {
		b.WriteString(" random")
	}
}

// list is mark_tg_print (libxt_MARK.c, revision 2).
func (t *MarkTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	switch {
	case t.Mark == 0:
		fmt.Fprintf(b, " MARK and 0x%x", ^t.Mask)
	case t.Mark == t.Mask:
		fmt.Fprintf(b, " MARK or 0x%x", t.Mark)
	case t.Mask == 0:
		fmt.Fprintf(b, " MARK xor 0x%x", t.Mark)
	case t.Mask == 0xffffffff:
		fmt.Fprintf(b, " MARK set 0x%x", t.Mark)
	default:
		fmt.Fprintf(b, " MARK xset 0x%x/0x%x", t.Mark, t.Mask)
	}
}

// list is checksum_tg_print (libxt_CHECKSUM.c).
func (t *ChecksumTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" CHECKSUM")
	if t.Fill {
		b.WriteString(" fill")
	}
}

// list is TCPMSS_print (libxt_TCPMSS.c).
func (t *TCPMSSTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	if t.MSS == 0xffff {
		b.WriteString(" TCPMSS clamp to PMTU")
	} else {
		fmt.Fprintf(b, " TCPMSS set %d", t.MSS)
	}
}

// list is iprange_mt4_print (libxt_iprange.c).
func (m *IPRangeMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	if m.HasSrc {
		b.WriteString(" source IP range")
		if m.InvSrc {
			b.WriteString(" !")
		}
		b.WriteString(" " + FormatAddr(m.Src.Lo) + "-" + FormatAddr(m.Src.Hi))
	}
	if m.HasDst {
		b.WriteString(" destination IP range")
		if m.InvDst {
			b.WriteString(" !")
		}
		b.WriteString(" " + FormatAddr(m.Dst.Lo) + "-" + FormatAddr(m.Dst.Hi))
	}
}

// list is recent_print (libxt_recent.c).
func (m *RecentMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	if m.Invert {
		b.WriteString(" !")
	}
	b.WriteString(" recent:")
	for _, x := range []struct {
		bit  uint8
		name string
	}{{RecentSet, " SET"}, {RecentCheck, " CHECK"}, {RecentUpdate, " UPDATE"}, {RecentRemove, " REMOVE"}} {
		if m.CheckSet&x.bit != 0 {
			b.WriteString(x.name)
		}
	}
	if m.Seconds != 0 {
		fmt.Fprintf(b, " seconds: %d", m.Seconds)
	}
	if m.CheckSet&RecentReap != 0 {
		b.WriteString(" reap")
	}
	if m.HitCount != 0 {
		fmt.Fprintf(b, " hit_count: %d", m.HitCount)
	}
	if m.CheckSet&RecentTTL != 0 {
		b.WriteString(" TTL-Match")
	}
	b.WriteString(" name: " + m.Name_)
	if m.Dest {
		b.WriteString(" side: dest")
	} else {
		b.WriteString(" side: source")
	}
	b.WriteString(" mask: " + FormatAddr(m.Mask))
}

// list is rpfilter_print (libxt_rpfilter.c).
func (m *RPFilterMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" rpfilter")
	for _, x := range []struct {
		bit  uint8
		name string
	}{{RPFilterLoose, "loose"}, {RPFilterValidMark, "validmark"}, {RPFilterAcceptLocal, "accept-local"}, {RPFilterInvert, "invert"}} {
		if m.Flags&x.bit != 0 {
			b.WriteString(" " + x.name)
		}
	}
}

// list is ttl_print (libipt_ttl.c).
func (m *TTLMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" TTL match ")
	switch m.Mode {
	case TTLEq:
		b.WriteString("TTL == ")
	case TTLNe:
		b.WriteString("TTL != ")
	case TTLLt:
		b.WriteString("TTL < ")
	case TTLGt:
		b.WriteString("TTL > ")
	}
	fmt.Fprintf(b, "%d", m.Value)
}

// list is pkttype_print (libxt_pkttype.c).
func (m *PktTypeMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	if m.Invert {
		b.WriteString(" PKTTYPE != ")
	} else {
		b.WriteString(" PKTTYPE = ")
	}
	for _, t := range pktTypes {
		if t.typ == m.Type {
			b.WriteString(t.name)
			return
		}
	}
	fmt.Fprintf(b, "%d", m.Type)
}

// list is owner_mt_print (libxt_owner.c); names from the user and
// group databases without -n.
func (m *OwnerMatch) list(b *SaveWriter, _ *IPHeader, f listFmt) {
	item := func(bit uint8, label string, lo, hi uint32, name func(uint32) string) {
		if m.Match&bit == 0 {
			return
		}
		if m.Invert&bit != 0 {
			b.WriteString(" !")
		}
		b.WriteString(" " + label)
		switch {
		case name == nil:
		case lo != hi:
			fmt.Fprintf(b, " %d-%d", lo, hi)
		case !f.numeric && name(lo) != "":
			b.WriteString(" " + name(lo))
		default:
			fmt.Fprintf(b, " %d", lo)
		}
	}
	item(OwnerSocket, "owner socket exists", 0, 0, nil)
	item(OwnerUID, "owner UID match", m.UIDMin, m.UIDMax, f.names.User)
	item(OwnerGID, "owner GID match", m.GIDMin, m.GIDMax, f.names.Group)
}

// listName is the name iptables-nft shows in the target column: NOTRACK
// is the CT target to it.
func (t *NoTrackTarget) listName() string { return "CT" }

// list is notrack_ct0_tg_print (libxt_CT.c).
func (t *NoTrackTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) { b.WriteString(" NOTRACK") }

// list is ct_print_v1 (libxt_CT.c).
func (t *CTTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	b.WriteString(" CT")
	if t.Flags&CTNoTrack != 0 {
		b.WriteString(" notrack")
	}
	if t.Helper != "" {
		b.WriteString(" helper " + t.Helper)
	}
	if t.Timeout != "" {
		b.WriteString(" timeout " + t.Timeout)
	}
	if t.Flags&CTZoneMark != 0 {
		b.WriteString(" zone mark")
	} else if t.Zone != 0 {
		fmt.Fprintf(b, " zone %d", t.Zone)
	}
}

// list is connlimit_print4 (libxt_connlimit.c).
func (m *ConnlimitMatch) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	side, op := "src", ">"
	if m.Daddr {
		side = "dst"
	}
	if m.Invert {
		op = "<="
	}
	n := 0
	for x := m.Mask; x != 0; x &= x - 1 {
		n++
	}
	fmt.Fprintf(b, " #conn %s/%d %s %d", side, n, op, m.Limit)
}

// list is NFLOG_print (libxt_NFLOG.c), with the threshold as
// iptables-nft reads it back (printed unless 0, as Save does).
func (t *NFLogTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	if t.Prefix != "" {
		b.WriteString(" nflog-prefix")
		SaveString(b, t.Prefix)
	}
	if t.Group != 0 {
		fmt.Fprintf(b, " nflog-group %d", t.Group)
	}
	if t.CopyLen {
		fmt.Fprintf(b, " nflog-size %d", t.Size)
	} else if t.Size != 0 {
		fmt.Fprintf(b, " nflog-range %d", t.Size)
	}
	if t.Threshold != 0 {
		fmt.Fprintf(b, " nflog-threshold %d", t.Threshold)
	}
}

// list is connmark_tg_print_v2 (libxt_CONNMARK.c).
func (t *ConnmarkTarget) list(b *SaveWriter, _ *IPHeader, _ listFmt) {
	shift := func() {
		if t.ShiftBits != 0 {
			op := "left-shift-mark"
			if t.ShiftDir != 0 {
				op = "right-shift-mark"
			}
			fmt.Fprintf(b, " %s %d", op, t.ShiftBits)
		}
	}
	switch t.Mode {
	case ConnmarkSet:
		switch {
		case t.CtMark == 0:
			fmt.Fprintf(b, " CONNMARK and 0x%x", ^t.CtMask)
		case t.CtMark == t.CtMask:
			fmt.Fprintf(b, " CONNMARK or 0x%x", t.CtMark)
		case t.CtMask == 0:
			fmt.Fprintf(b, " CONNMARK xor 0x%x", t.CtMark)
		case t.CtMask == 0xffffffff:
			fmt.Fprintf(b, " CONNMARK set 0x%x", t.CtMark)
		default:
			fmt.Fprintf(b, " CONNMARK xset 0x%x/0x%x", t.CtMark, t.CtMask)
		}
	case ConnmarkSave:
		switch {
		case t.NfMask == 0xffffffff && t.CtMask == 0xffffffff:
			b.WriteString(" CONNMARK save")
		case t.NfMask == t.CtMask:
			fmt.Fprintf(b, " CONNMARK save mask 0x%x", t.NfMask)
		default:
			fmt.Fprintf(b, " CONNMARK save nfmask 0x%x ctmask ~0x%x", t.NfMask, t.CtMask)
		}
		shift()
	case ConnmarkRestore:
		switch {
		case t.CtMask == 0xffffffff && t.NfMask == 0xffffffff:
			b.WriteString(" CONNMARK restore")
		case t.CtMask == t.NfMask:
			fmt.Fprintf(b, " CONNMARK restore mask 0x%x", t.CtMask)
		default:
			fmt.Fprintf(b, " CONNMARK restore ctmask 0x%x nfmask ~0x%x", t.CtMask, t.NfMask)
		}
		shift()
	}
}
