package conntrack

import "github.com/uswitch-lab/uswitch/packet"

// Filter selects entries as conntrack -L, -D and -E select them with
// their options (conntrack-tools src/conntrack.c: the tuple options go
// to the kernel as a CTA_FILTER dump filter, mark and status are checked
// in userspace; uswitch checks them all here). The zero Filter matches
// every entry.
type Filter struct {
	// Proto: -p; HasProto says it was given.
	Proto    uint8
	HasProto bool
	// Orig and Reply: -s/-d and -r/-q, each an address under a mask
	// (-s 10.0.0.0/8, or --mask-src).
	OrigSrc, OrigDst, ReplySrc, ReplyDst AddrMatch
	// Ports: --sport/--dport (--orig-port-src/-dst) and
	// --reply-port-src/-dst, for the protocols with ports.
	OrigSPort, OrigDPort, ReplySPort, ReplyDPort PortMatch
	// ICMP: --icmp-type, --icmp-code, --icmp-id.
	ICMPType, ICMPCode, ICMPID PortMatch
	// Mark: --mark value[/mask]: (mark & MarkMask) == Mark.
	Mark, MarkMask uint32
	HasMark        bool
	// Zone: -w/--zone (and --orig-zone, --reply-zone: one zone per
	// entry here).
	Zone    uint16
	HasZone bool
	// States: --state, TCP states (bit 1<<TCPState) or, with -p sctp,
	// SCTP states (bit 1<<SCTPState).
	States uint32
	// Status: -u, status bits that must be set; Unreplied: -u
	// UNREPLIED, SEEN_REPLY must be clear.
	Status    Status
	Unreplied bool
	// NoMatch: the filter names another family (-f ipv6, an IPv6
	// address): no IPv4 entry matches.
	NoMatch bool
}

// AddrMatch is one address option: the entry's address under Mask
// equals Addr (Addr is stored masked).
type AddrMatch struct {
	Addr, Mask uint32
	Set        bool
}

func (m AddrMatch) match(a uint32) bool { return !m.Set || a&m.Mask == m.Addr }

// PortMatch is one port (or ICMP field) option.
type PortMatch struct {
	V   uint16
	Set bool
}

func (m PortMatch) match(v uint16) bool { return !m.Set || v == m.V }

// Match reports whether c passes the filter.
func (f *Filter) Match(c *Conn) bool {
	if f.NoMatch {
		return false
	}
	o, r := c.th[Original].tuple, c.th[Reply].tuple
	if f.HasProto && o.Proto != f.Proto {
		return false
	}
	if !f.OrigSrc.match(o.Src) || !f.OrigDst.match(o.Dst) || !f.ReplySrc.match(r.Src) || !f.ReplyDst.match(r.Dst) {
		return false
	}
	if f.OrigSPort.Set || f.OrigDPort.Set || f.ReplySPort.Set || f.ReplyDPort.Set {
		if !hasPorts(o.Proto) || !f.OrigSPort.match(o.SrcPort) || !f.OrigDPort.match(o.DstPort) ||
			!f.ReplySPort.match(r.SrcPort) || !f.ReplyDPort.match(r.DstPort) {
			return false
		}
	}
	if f.ICMPType.Set || f.ICMPCode.Set || f.ICMPID.Set {
		if o.Proto != packet.ProtoICMP || !f.ICMPType.match(uint16(o.ICMPType())) ||
			!f.ICMPCode.match(uint16(o.ICMPCode())) || !f.ICMPID.match(o.SrcPort) {
			return false
		}
	}
	if f.HasMark && c.Mark()&f.MarkMask != f.Mark {
		return false
	}
	if f.HasZone && c.Zone() != f.Zone {
		return false
	}
	if f.States != 0 {
		switch o.Proto {
		case packet.ProtoTCP:
			if f.States&(1<<c.TCPState()) == 0 {
				return false
			}
		case packet.ProtoSCTP:
			if f.States&(1<<c.SCTPState()) == 0 {
				return false
			}
		default:
			return false
		}
	}
	st := c.Status()
	if st&f.Status != f.Status {
		return false
	}
	if f.Unreplied && st&StatusSeenReply != 0 {
		return false
	}
	return true
}
