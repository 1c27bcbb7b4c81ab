package tracetest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// Run is what uswitch did with the packets.
type Run struct {
	Lines  [][]string
	Egress [][]string
	Fates  []datapath.Fate
	// Errs holds a panic or decode error per packet ("" = none).
	Errs []string
}

// RunUswitch loads the snapshot and runs each packet through one
// datapath.Engine with a Tracer, in order, the i-th at elapsed[i] (nil:
// one millisecond apart).
func RunUswitch(snapshotDir string, packets []Packet, elapsed []time.Duration) (*Run, error) {
	s, err := host.Load(snapshotDir)
	if err != nil {
		return nil, err
	}
	startState(s)
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	r := &Run{}
	base := int64(time.Hour) // well past zero, and a whole number of 4 ms kernel ticks
	for i, p := range packets {
		now := base + int64(i)*int64(time.Millisecond)
		if i < len(elapsed) {
			now = base + int64(elapsed[i])
		}
		lines, egress, fate, perr := runOne(e, p, now, uint64(i+1))
		r.Lines = append(r.Lines, lines)
		r.Egress = append(r.Egress, egress)
		r.Fates = append(r.Fates, fate)
		r.Errs = append(r.Errs, perr)
	}
	return r, nil
}

func runOne(e *datapath.Engine, p Packet, now int64, seq uint64) (lines, egress []string, f datapath.Fate, perr string) {
	tr := &datapath.Tracer{}
	defer func() {
		if x := recover(); x != nil {
			lines = tr.Lines
			perr = fmt.Sprint("panic: ", x)
		}
	}()
	// the reassembly timers due by now fire first (ip_expire); their
	// answers and trace lines come before the packet's, as the
	// kernel's do before the packet is written
	for _, x := range e.ExpireFragments(now, tr) {
		for _, a := range x.Answers {
			egress = appendEgress(egress, a.Pkt, a.Fate)
		}
	}
	if p.Frame != nil {
		// a frame on a bridge port
		ff := e.ReceiveFrame(p.Bytes(), p.In, now, tr)
		for _, o := range ff.Out {
			egress = append(egress, FrameEgressLine(o.Port, o.Data))
		}
		if ff.Up != nil {
			// what the IP stack sent out of other devices (frames out
			// of a bridge are in ff.Out already)
			f = *ff.Up
			if f.Frames == nil && !f.ARPPending {
				egress = appendEgress(egress, f.Datagram, f)
			}
			for _, a := range f.Answers {
				if a.Fate.Frames == nil && !a.Fate.ARPPending {
					egress = appendEgress(egress, a.Pkt, a.Fate)
				}
			}
		}
		return tr.Lines, egress, f, ""
	}
	pk := &packet.Packet{Data: p.Bytes()}
	if err := pk.Decode(); err != nil {
		return tr.Lines, egress, f, "decode: " + err.Error()
	}
	pk.Seq = seq
	if p.In == Local {
		// a raw IP_HDRINCL socket of root
		pk.HasSocket = true
		f = e.Send(pk, now, tr)
	} else {
		pk.InIf = p.In
		f = e.Receive(pk, now, tr)
	}
	if f.Datagram != nil {
		// the fragment completed a datagram: the fate is the datagram's
		pk = f.Datagram
	}
	egress = appendEgress(egress, pk, f)
	for _, a := range f.Answers {
		egress = appendEgress(egress, a.Pkt, a.Fate)
	}
	return tr.Lines, egress, f, ""
}

// startState makes a snapshot taken after a kernel run describe the
// state before it: the bridges' learned entries and the neighbours the
// run resolved are what the run taught the kernel, not where it started
// (a scenario's own neighbours are permanent).
func startState(s *host.Snapshot) {
	var neighs []struct {
		Dst   string   `json:"dst"`
		State []string `json:"state"`
	}
	json.Unmarshal(s.Raw[host.FileNeigh], &neighs)
	permanent := map[uint32]bool{}
	for _, n := range neighs {
		if a, err := netip.ParseAddr(n.Dst); err == nil && a.Is4() && slices.Contains(n.State, "PERMANENT") {
			permanent[packet.AddrFrom(a)] = true
		}
	}
	for i := range s.Bridges {
		for a := range s.Bridges[i].Neighbours {
			if !permanent[a] {
				delete(s.Bridges[i].Neighbours, a)
			}
		}
		var keep []fdb.ShowEntry
		for _, en := range s.Bridges[i].Entries {
			if en.State != "" {
				keep = append(keep, en)
			}
		}
		s.Bridges[i].Entries = keep
	}
}

// appendEgress adds what left R of p: the packet, or its fragments, or
// the frames a bridge device sent.
func appendEgress(egress []string, p *packet.Packet, f datapath.Fate) []string {
	if (f.Kind != datapath.Forwarded && f.Kind != datapath.Sent) || f.OutIf == "lo" {
		return egress
	}
	if f.Frames != nil || f.ARPPending {
		for _, o := range f.Frames {
			egress = append(egress, FrameEgressLine(o.Port, o.Data))
		}
		return egress
	}
	if f.Frags != nil {
		for _, b := range f.Frags {
			egress = append(egress, EgressLine(f.OutIf, b))
		}
		return egress
	}
	return append(egress, EgressLine(f.OutIf, p.Data))
}

// EgressLine describes a packet that left R through dev: its PACKET-line
// fields without the IP ID (the kernel picks the IDs of the packets it
// generates itself).
func EgressLine(dev string, b []byte) string {
	p := &packet.Packet{Data: append([]byte(nil), b...)}
	if err := p.Decode(); err != nil {
		return fmt.Sprintf("EGRESS %s undecodable %x", dev, b)
	}
	l := trace.PacketLine(0, p, "", dev, false)
	l = l[len("PACKET: 2 00000000 "):]
	return "EGRESS " + idRE.ReplaceAllString(l, "") + wireDetail(p)
}

// FrameEgressLine describes a frame that left R through the bridge port
// dev: its Ethernet header, then an IPv4 packet as EgressLine does, an
// ARP message's fields, or the payload's length.
func FrameEgressLine(dev string, b []byte) string {
	f := &packet.Frame{Data: append([]byte(nil), b...)}
	if err := f.Decode(); err != nil {
		return fmt.Sprintf("FRAME %s undecodable %x", dev, b)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "FRAME OUT=%s MACSRC=%s MACDST=%s PROTO=%04x ", dev, f.Src, f.Dst, f.Proto)
	if f.VLAN {
		fmt.Fprintf(&s, "VLAN=%d PRIO=%d INNER=%04x ", f.VLANID(), f.VLANPrio(), f.InnerProto)
	}
	switch f.InnerProto {
	case packet.EtherTypeIPv4:
		l := EgressLine(dev, f.Payload)
		s.WriteString(strings.TrimPrefix(l, "EGRESS OUT="+dev+" "))
	case packet.EtherTypeARP:
		if a, ok := packet.ParseARP(f.Payload); ok {
			fmt.Fprintf(&s, "ARP op %d %s %s > %s %s", a.Op, a.SHA, packet.AddrOf(a.SPA), a.THA, packet.AddrOf(a.TPA))
		} else {
			fmt.Fprintf(&s, "ARP %d bytes", len(f.Payload))
		}
	default:
		fmt.Fprintf(&s, "%d bytes", len(f.Payload))
	}
	return s.String()
}

// wireDetail adds what the trace line leaves out but targets change:
// the TCP options (TCPMSS) and whether the checksums are right (TTL, TOS,
// DSCP, CHECKSUM and NAT must keep or make them right).
func wireDetail(p *packet.Packet) string {
	ip := p.IP
	var b strings.Builder
	if packet.Checksum(ip[:ip.HeaderLen()], 0) != 0xffff {
		b.WriteString("BADIPCSUM ")
	}
	if ip.FragOffset() != 0 || ip.MF() || !p.HasL4 {
		return b.String()
	}
	l4 := []byte(ip[ip.HeaderLen():ip.TotalLen()])
	switch ip.Protocol() {
	case packet.ProtoTCP:
		if doff := int(l4[12]>>4) * 4; doff > packet.TCPMinHeaderLen && doff <= len(l4) {
			fmt.Fprintf(&b, "TCPOPT=%x ", l4[packet.TCPMinHeaderLen:doff])
		}
		if packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoTCP, uint16(len(l4)))) != 0xffff {
			b.WriteString("BADL4CSUM ")
		}
	case packet.ProtoUDP:
		if binary.BigEndian.Uint16(l4[6:]) == 0 {
			b.WriteString("NOCSUM ")
		} else if packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoUDP, uint16(len(l4)))) != 0xffff {
			b.WriteString("BADL4CSUM ")
		}
	case packet.ProtoICMP:
		if len(l4) >= packet.ICMPHeaderLen {
			// type, code and the rest of the header (a redirect's
			// gateway, an echo's id and sequence)
			fmt.Fprintf(&b, "ICMP=%d/%d REST=%08x ", l4[0], l4[1], binary.BigEndian.Uint32(l4[4:]))
		}
		if packet.Checksum(l4, 0) != 0xffff {
			b.WriteString("BADL4CSUM ")
		}
	}
	return b.String()
}
