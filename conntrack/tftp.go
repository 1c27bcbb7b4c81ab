package conntrack

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// The TFTP helper (net/netfilter/nf_conntrack_tftp.c): a read or write
// request expects the server's answer, which comes from a new port: an
// expectation for the reply tuple with any source port.

// TFTP opcodes (include/linux/netfilter/nf_conntrack_tftp.h).
const (
	TFTPRead  = 1
	TFTPWrite = 2
	TFTPData  = 3
	TFTPAck   = 4
	TFTPError = 5
)

// tftpHelp is tftp_help.
func tftpHelp(t *Table, p *packet.Packet, c *Conn, info CtInfo, now int64) Verdict {
	if len(p.L4) < 8+2 {
		return Accept // no opcode
	}
	switch binary.BigEndian.Uint16(p.L4[8:]) {
	case TFTPRead, TFTPWrite:
	default:
		return Accept
	}
	r := c.Tuple(Reply)
	e := &Expect{
		Tuple:   Tuple{Src: r.Src, Dst: r.Dst, DstPort: r.DstPort, Proto: packet.ProtoUDP, Zone: c.Zone()},
		SrcMask: ^uint32(0),
		Master:  c,
	}
	if n := t.natHelper; n != nil && c.Status()&StatusNATMask != 0 {
		return n.NATTFTP(t, p, c, info, e, now)
	}
	if err := t.ExpectRelated(e, now); err != nil {
		return DropHelper // "cannot add expectation"
	}
	return Accept
}
