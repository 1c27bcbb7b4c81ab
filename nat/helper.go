package nat

import (
	"encoding/binary"
	"strconv"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/packet"
)

// The NAT side of the conntrack helpers: nf_nat_ftp.c, nf_nat_tftp.c and
// the generic parts of nf_nat_helper.c (payload mangling, the port
// search for an expectation, nf_nat_follow_master). The conntrack
// helpers call it through conntrack.NATHelper for entries with a NAT
// bit; Core implements it (datapath installs it with SetNATHelper).

// NATTFTP is nf_nat_tftp's help: the answer must reach the client's own
// port, so the expected entry follows the master with the original
// source port saved.
func (n *Core) NATTFTP(t *conntrack.Table, p *packet.Packet, c *conntrack.Conn, info conntrack.CtInfo, e *conntrack.Expect, now int64) conntrack.Verdict {
	e.SavedPort = c.Tuple(conntrack.Original).SrcPort
	e.Dir = conntrack.Reply
	e.NATFollow = true
	if err := t.ExpectRelated(e, now); err != nil {
		return conntrack.DropHelper // "cannot add expectation"
	}
	return conntrack.Accept
}

// NATFTP is nf_nat_ftp: the data connection will come from wherever this
// packet goes, so the announced address becomes this side's address as
// the other side sees it, with a port the expectation could take; the
// numbers in the payload are rewritten (and the TCP sequence adjusted
// when their length changed).
func (n *Core) NATFTP(t *conntrack.Table, p *packet.Packet, c *conntrack.Conn, info conntrack.CtInfo, typ conntrack.FTPType, matchOff, matchLen int, e *conntrack.Expect, now int64) conntrack.Verdict {
	dir := info.Dir()
	newAddr := c.Tuple(dir ^ 1).Dst
	e.SavedPort = e.Tuple.DstPort
	e.Dir = dir ^ 1
	e.NATFollow = true
	port := n.expFindPort(t, e, e.SavedPort, now)
	if port == 0 {
		return conntrack.DropHelper // "all ports in use"
	}
	buf := FormatFTP(nil, typ, newAddr, port)
	if !MangleTCP(p, c, info, matchOff, matchLen, buf) {
		t.UnexpectRelated(e)
		return conntrack.DropHelper // "cannot mangle packet"
	}
	return conntrack.Accept
}

// FormatFTP is nf_nat_ftp_fmt_cmd for IPv4: the numbers of a PORT/227
// (a,b,c,d,p1,p2), an EPRT (|1|a.b.c.d|port|) or an EPSV reply
// (|||port|), appended to b.
func FormatFTP(b []byte, typ conntrack.FTPType, addr uint32, port uint16) []byte {
	switch typ {
	case conntrack.FTPPort, conntrack.FTPPasv:
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(byte(addr>>(8*i))), 10)
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(port>>8), 10)
		b = append(b, ',')
		return strconv.AppendUint(b, uint64(port&0xff), 10)
	case conntrack.FTPEprt:
		b = append(b, "|1|"...)
		for i := 3; i >= 0; i-- {
			b = strconv.AppendUint(b, uint64(byte(addr>>(8*i))), 10)
			if i > 0 {
				b = append(b, '.')
			}
		}
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(port), 10)
		return append(b, '|')
	case conntrack.FTPEpsv:
		b = append(b, "|||"...)
		b = strconv.AppendUint(b, uint64(port), 10)
		return append(b, '|')
	}
	return b
}

// expFindPort is nf_nat_exp_find_port: the saved port if the
// expectation can take it, else up to 128 random ones above it; 0 when
// none could be had.
func (n *Core) expFindPort(t *conntrack.Table, e *conntrack.Expect, port uint16, now int64) uint16 {
	lo := port
	rng := 65535 - int(port)
	attempts := min(rng, 128)
	for {
		e.Tuple.DstPort = port
		err := t.ExpectRelated(e, now)
		if err == nil {
			return port
		}
		attempts--
		if err != conntrack.ErrExpectBusy || attempts < 0 || rng == 0 {
			return 0
		}
		port = lo + uint16(uint32(n.random16())%uint32(rng))
	}
}

// MangleTCP is nf_nat_mangle_tcp_packet: the match bytes at matchOff of
// the TCP payload are replaced by rep; the IP
// total length and header checksum, and the TCP checksum (from scratch,
// as nf_nat_csum_recalc does for a packet without a partial checksum)
// are fixed; a length change is recorded for the sequence adjustment
// (nf_ct_seqadj_set at the packet's sequence number). p is decoded
// again. False when the packet would pass 65,535 bytes or the match is
// not inside it.
func MangleTCP(p *packet.Packet, c *conntrack.Conn, info conntrack.CtInfo, matchOff, matchLen int, rep []byte) bool {
	if p.Proto != packet.ProtoTCP || !p.HasL4 {
		return false
	}
	hl := p.IP.HeaderLen()
	doff := packet.TCP(p.L4).DataOffset()
	tot := len(p.IP)
	if matchOff < 0 || matchLen < 0 || matchOff+matchLen > len(p.L4)-doff {
		return false
	}
	delta := len(rep) - matchLen
	if tot+delta > 65535 {
		return false
	}
	at := hl + doff + matchOff
	var d []byte
	if delta > 0 && cap(p.Data) < tot+delta {
		d = make([]byte, tot+delta, tot+delta+64)
		copy(d, p.Data[:at])
	} else {
		d = p.Data[:max(tot+delta, tot)]
	}
	copy(d[at+len(rep):], p.Data[at+matchLen:tot])
	copy(d[at:], rep)
	d = d[:tot+delta]
	ip := packet.IPv4(d)
	binary.BigEndian.PutUint16(d[2:], uint16(tot+delta))
	ip.SetChecksum()
	l4 := d[hl:]
	binary.BigEndian.PutUint16(l4[16:], 0)
	sum := packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoTCP, uint16(len(l4))))
	binary.BigEndian.PutUint16(l4[16:], ^sum)
	p.Data = d
	if err := p.Decode(); err != nil {
		return false
	}
	if delta != 0 {
		c.SeqAdjSet(info, binary.BigEndian.Uint32(l4[4:]), int32(delta))
	}
	return true
}

// FollowMaster is nf_nat_follow_master: the expected entry c gets the
// bindings the master's NAT implies: its source becomes where the
// master sends to, its destination the master's address on the other
// side with the port the expectation saved.
func (n *Core) FollowMaster(c *conntrack.Conn, e *conntrack.Expect, now int64) error {
	m := e.Master
	t := m.Tuple(e.Dir ^ 1)
	if err := n.Setup(c, &Range{Flags: MapIPs, MinIP: t.Dst, MaxIP: t.Dst}, Src, now); err != nil {
		return err
	}
	return n.Setup(c, &Range{Flags: MapIPs | ProtoSpecified, MinIP: t.Src, MaxIP: t.Src,
		MinPort: e.SavedPort, MaxPort: e.SavedPort}, Dst, now)
}
