package conntrack

import (
	"strconv"
	"unsafe"

	"github.com/uswitch-lab/uswitch/packet"
)

// protoName is conntrack-tools' protocol name table.
func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoUDPLite:
		return "udplite"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoSCTP:
		return "sctp"
	case packet.ProtoGRE:
		return "gre"
	case packet.ProtoDCCP:
		return "dccp"
	}
	return "unknown"
}

func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return b
}

func appendIPv4(b []byte, a uint32) []byte {
	b = strconv.AppendUint(b, uint64(a>>24), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a>>16&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a>>8&0xff), 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(a&0xff), 10)
}

func appendKV(b []byte, k string, v uint64) []byte {
	b = append(b, k...)
	b = append(b, '=')
	b = strconv.AppendUint(b, v, 10)
	return append(b, ' ')
}

func appendTuple(b []byte, t Tuple) []byte {
	b = append(b, "src="...)
	b = appendIPv4(b, t.Src)
	b = append(b, " dst="...)
	b = appendIPv4(b, t.Dst)
	b = append(b, ' ')
	switch {
	case hasPorts(t.Proto):
		b = appendKV(b, "sport", uint64(t.SrcPort))
		b = appendKV(b, "dport", uint64(t.DstPort))
	case t.Proto == packet.ProtoICMP:
		b = appendKV(b, "type", uint64(t.ICMPType()))
		b = appendKV(b, "code", uint64(t.ICMPCode()))
		b = appendKV(b, "id", uint64(t.SrcPort))
	case t.Proto == packet.ProtoGRE:
		b = append(b, "srckey=0x"...)
		b = strconv.AppendUint(b, uint64(t.SrcPort), 16)
		b = append(b, " dstkey=0x"...)
		b = strconv.AppendUint(b, uint64(t.DstPort), 16)
		b = append(b, ' ')
	}
	return b
}

// Output is a set of conntrack -o formats.
type Output uint8

// Output formats (conntrack -o extended,xml,id,timestamp).
const (
	// OutExtended prefixes each entry with the layer 3 protocol.
	OutExtended Output = 1 << iota
	// OutXML prints libnetfilter_conntrack's XML form.
	OutXML
	// OutID appends the entry's id (always in XML).
	OutID
	// OutTimestamp prefixes an event with the time it was printed.
	OutTimestamp

	// outGet: the entry as -G prints it, use=2 (ctnetlink_get_conntrack
	// holds a reference of its own while it fills the answer).
	outGet Output = 1 << 7
)

// AppendText appends the entry as `conntrack -L` prints it
// (libnetfilter_conntrack's default output, checked against conntrack
// v1.4.7), with the `-o extended` "ipv4     2 " prefix when extended.
// The timeout is the whole seconds left at now (nf_ct_expires / HZ).
//
//	tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1234 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1234 [ASSURED] mark=0 use=1
func (c *Conn) AppendText(b []byte, now int64, extended bool) []byte {
	var out Output
	if extended {
		out = OutExtended
	}
	return c.AppendEntry(b, now, out)
}

// AppendEntry appends the entry as `conntrack -L -o out` prints it: one
// line without its newline, or an XML <flow> element.
func (c *Conn) AppendEntry(b []byte, now int64, out Output) []byte {
	if out&OutXML != 0 {
		return c.appendXML(b, now, out, nil)
	}
	return c.appendLine(b, now, out, nil)
}

// appendLine is snprintf_default.c's line: for an event (ev non-nil)
// without use= and with mark= only when set or changed, as ctnetlink's
// event messages carry them (ctnetlink_conntrack_event).
func (c *Conn) appendLine(b []byte, now int64, out Output, ev *Event) []byte {
	orig, repl := c.th[Original].tuple, c.th[Reply].tuple
	st := c.Status()
	if out&OutExtended != 0 {
		b = append(b, "ipv4     2 "...)
	}
	b = appendPadded(b, protoName(orig.Proto), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(orig.Proto), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(c.Expires(now)/1e9), 10)
	b = append(b, ' ')
	switch orig.Proto {
	case packet.ProtoTCP:
		b = append(b, c.TCPState().String()...)
		b = append(b, ' ')
	case packet.ProtoSCTP:
		b = append(b, c.SCTPState().String()...)
		b = append(b, ' ')
	}
	b = appendTuple(b, orig)
	if st&StatusSeenReply == 0 {
		b = append(b, "[UNREPLIED] "...)
	}
	b = appendTuple(b, repl)
	if st&StatusOffload != 0 {
		b = append(b, "[OFFLOAD] "...)
	}
	if st&StatusAssured != 0 {
		b = append(b, "[ASSURED] "...)
	}
	if m := c.Mark(); ev == nil || m != 0 || ev.Mark {
		b = appendKV(b, "mark", uint64(m))
	}
	if z := c.Zone(); z != 0 {
		b = appendKV(b, "zone", uint64(z))
	}
	if h := c.HelperName(); h != "" {
		b = append(b, "helper="...)
		b = append(b, h...)
		b = append(b, ' ')
	}
	switch {
	case ev != nil:
	case out&outGet != 0:
		b = append(b, "use=2 "...)
	default:
		b = append(b, "use=1 "...)
	}
	if out&OutID != 0 {
		b = appendKV(b, "id", uint64(c.ID()))
	}
	// the last blank goes, as snprintf_default.c deletes it
	return b[:len(b)-1]
}

// ID is the entry's id (CTA_ID): a hash of its address, stable for its
// life and reused only after it is freed, as nf_ct_get_id hashes the
// nf_conn pointer.
func (c *Conn) ID() uint32 {
	h := uint64(uintptr(unsafe.Pointer(c)))
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h)
}

// XMLHeader and XMLFooter enclose conntrack -o xml's flows; conntrack
// prints the header before the first flow and the footer after the
// last, nothing when there is none.
const (
	XMLHeader = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n"
	XMLFooter = "</conntrack>\n"
)

func appendXMLTuple(b []byte, dir string, t Tuple) []byte {
	b = append(b, `<meta direction="`...)
	b = append(b, dir...)
	b = append(b, `"><layer3 protonum="2" protoname="ipv4"><src>`...)
	b = appendIPv4(b, t.Src)
	b = append(b, "</src><dst>"...)
	b = appendIPv4(b, t.Dst)
	b = append(b, `</dst></layer3><layer4 protonum="`...)
	b = strconv.AppendUint(b, uint64(t.Proto), 10)
	b = append(b, `" protoname="`...)
	b = append(b, protoName(t.Proto)...)
	b = append(b, `">`...)
	if hasPorts(t.Proto) {
		b = append(b, "<sport>"...)
		b = strconv.AppendUint(b, uint64(t.SrcPort), 10)
		b = append(b, "</sport><dport>"...)
		b = strconv.AppendUint(b, uint64(t.DstPort), 10)
		b = append(b, "</dport>"...)
	}
	return append(b, "</layer4></meta>"...)
}

func appendXMLElem(b []byte, name string, v uint64) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = strconv.AppendUint(b, v, 10)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// appendXML is snprintf_xml.c's <flow> element (ICMP and GRE carry no
// layer 4 fields there); ev non-nil adds the event type attribute and
// leaves out what event messages lack (use, a zero mark).
func (c *Conn) appendXML(b []byte, now int64, out Output, ev *Event) []byte {
	st := c.Status()
	b = append(b, "<flow"...)
	if ev != nil {
		b = append(b, ` type="`...)
		switch ev.Type {
		case EventNew:
			b = append(b, "new"...)
		case EventUpdate:
			b = append(b, "update"...)
		default:
			b = append(b, "destroy"...)
		}
		b = append(b, '"')
	}
	b = append(b, '>')
	b = appendXMLTuple(b, "original", c.th[Original].tuple)
	b = appendXMLTuple(b, "reply", c.th[Reply].tuple)
	b = append(b, `<meta direction="independent">`...)
	switch c.th[Original].tuple.Proto {
	case packet.ProtoTCP:
		b = append(b, "<state>"...)
		b = append(b, c.TCPState().String()...)
		b = append(b, "</state>"...)
	case packet.ProtoSCTP:
		// libnetfilter_conntrack's XML names the SCTP state from the
		// TCP table (ESTABLISHED, 4, prints FIN_WAIT), as the kernel's
		// conntrack -o xml shows
		b = append(b, "<state>"...)
		b = append(b, TCPState(c.SCTPState()).String()...)
		b = append(b, "</state>"...)
	}
	b = appendXMLElem(b, "timeout", uint64(c.Expires(now)/1e9))
	if m := c.Mark(); ev == nil || m != 0 || ev.Mark {
		b = appendXMLElem(b, "mark", uint64(m))
	}
	if z := c.Zone(); z != 0 {
		b = appendXMLElem(b, "zone", uint64(z))
	}
	switch {
	case ev != nil:
	case out&outGet != 0:
		b = appendXMLElem(b, "use", 2)
	default:
		b = appendXMLElem(b, "use", 1)
	}
	b = appendXMLElem(b, "id", uint64(c.ID()))
	if st&StatusAssured != 0 {
		b = append(b, "<assured/>"...)
	}
	if st&StatusSeenReply == 0 {
		b = append(b, "<unreplied/>"...)
	}
	return append(b, "</meta></flow>"...)
}

// AppendEvent appends e as `conntrack -E -o out` prints it, without the
// newline: "    [NEW] ", " [UPDATE] " or "[DESTROY] " and the entry
// (or its <flow type=...> element), then "[USERSPACE] portid=N" for a
// deletion a userspace request made. With OutTimestamp, wall (Unix
// microseconds) prefixes it as "[sec.usec]\t".
func AppendEvent(b []byte, e *Event, out Output, wall int64) []byte {
	if out&OutTimestamp != 0 {
		b = append(b, '[')
		b = strconv.AppendInt(b, wall/1e6, 10)
		b = append(b, '.')
		// "%-6.ld": left-justified, so padded with blanks after
		n := len(b)
		b = strconv.AppendInt(b, wall%1e6, 10)
		for i := len(b) - n; i < 6; i++ {
			b = append(b, ' ')
		}
		b = append(b, "]\t"...)
	}
	if out&OutXML != 0 {
		b = e.Conn.appendXML(b, e.Now, out, e)
	} else {
		switch e.Type {
		case EventNew:
			b = append(b, "    [NEW] "...)
		case EventUpdate:
			b = append(b, " [UPDATE] "...)
		default:
			b = append(b, "[DESTROY] "...)
		}
		b = e.Conn.appendLine(b, e.Now, out, e)
	}
	if e.User {
		b = append(b, " [USERSPACE] portid="...)
		b = strconv.AppendUint(b, uint64(e.PortID), 10)
	}
	return b
}

// AppendStats appends `conntrack -S`'s line for the table: uswitch has
// one set of counters, printed as CPU 0's. The counters are the
// kernel's (ctnetlink_ct_stat_cpu_fill_info) where the kernel counts
// them: found in nf_conntrack_tuple_taken, invalid and drop in
// nf_conntrack_in, error in nf_conntrack_handle_icmp, insert only for
// entries ctnetlink creates (none here), insert_failed and clash_resolve
// at confirm, early_drop in early_drop; search_restart and chaintoolong
// cannot happen here (no resize, no chain limit).
func (t *Table) AppendStats(b []byte) []byte {
	s := t.Stats()
	var inv uint64
	for _, n := range s.Invalid {
		inv += n
	}
	inv -= s.Errors
	b = append(b, "cpu=0   \t"...)
	for _, f := range [...]struct {
		k string
		v uint64
	}{{"found", s.Found}, {"invalid", inv}, {"insert", 0}, {"insert_failed", s.InsertFailed},
		{"drop", s.Drop}, {"early_drop", s.EarlyDrop}, {"error", s.Errors}, {"search_restart", 0},
		{"clash_resolve", s.Clash}, {"chaintoolong", 0}} {
		b = appendKV(b, f.k, f.v)
	}
	return append(b, '\n')
}

// Format returns AppendText as a string.
func (c *Conn) Format(now int64, extended bool) string {
	return string(c.AppendText(nil, now, extended))
}
