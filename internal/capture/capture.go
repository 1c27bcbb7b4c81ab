// Package capture reads pcap and pcapng captures packet by packet, with
// every claimed length checked against its bound before anything is
// allocated for it (gopacket's pcapgo readers allocate what a record
// claims), so a hostile or truncated capture costs at most MaxLen bytes
// and is reported with its record number.
package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/google/gopacket/layers"
)

// MaxLen bounds the length of a captured packet whatever the
// capture's snapshot length says (tcpdump's own maximum).
const MaxLen = 262144

// maxBlockLen bounds a pcapng block: a packet of MaxLen and room
// for its header and options.
const maxBlockLen = MaxLen + 65536

// maxInterfaces bounds the interfaces of a pcapng section.
const maxInterfaces = 1 << 16

// Packet is one packet read from a capture. data is only valid
// until the next read.
type Packet struct {
	Data  []byte
	Link  layers.LinkType
	Iface string // pcapng interface name
	Time  int64  // Unix nanoseconds
}

// Reader reads a pcap or pcapng capture packet by packet, with
// every length checked against its bounds before anything is allocated
// for it. Next returns io.EOF at the clean end of the capture and
// ErrTruncated when it ends inside a record.
//
// NextAppend is Next reading the packet's record straight into dst's
// spare room (dst grows when it has too little): it returns dst
// extended by the record (the packet's bytes, and for pcapng its block
// header and options around them), with Packet.Data within it, valid as
// long as the caller keeps that array; a reader that batches records
// so copies nothing more. On an error dst comes back as it was.
type Reader interface {
	Next() (Packet, error)
	NextAppend(dst []byte) (Packet, []byte, error)
}

// ErrTruncated is a capture that ends in the middle of a record.
var ErrTruncated = errors.New("truncated capture: the record ends early")

func NewReader(r io.Reader) (Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng file: %v", err)
	}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		return &ngReader{r: br}, nil
	}
	return newPcapReader(br)
}

// readFull is io.ReadFull with a short read reported as ErrTruncated.
func readFull(r io.Reader, b []byte) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return ErrTruncated
		}
		return err
	}
	return nil
}

// pcapReader reads a classic pcap file.
type pcapReader struct {
	r     *bufio.Reader
	bo    binary.ByteOrder
	nano  bool
	lt    layers.LinkType
	bound uint32 // min(snaplen, MaxLen)
	hdr   [16]byte
	buf   []byte
}

func newPcapReader(r *bufio.Reader) (*pcapReader, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng file: short header")
	}
	p := &pcapReader{r: r}
	switch {
	case binary.LittleEndian.Uint32(h[:]) == 0xa1b2c3d4:
		p.bo = binary.LittleEndian
	case binary.BigEndian.Uint32(h[:]) == 0xa1b2c3d4:
		p.bo = binary.BigEndian
	case binary.LittleEndian.Uint32(h[:]) == 0xa1b23c4d:
		p.bo, p.nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(h[:]) == 0xa1b23c4d:
		p.bo, p.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file: magic %x", h[:4])
	}
	p.bound = p.bo.Uint32(h[16:20])
	if p.bound == 0 || p.bound > MaxLen {
		p.bound = MaxLen
	}
	p.lt = layers.LinkType(p.bo.Uint32(h[20:24]) & 0xffff)
	return p, nil
}

func (p *pcapReader) Next() (Packet, error) {
	pk, buf, err := p.NextAppend(p.buf[:0])
	p.buf = buf[:0]
	return pk, err
}

func (p *pcapReader) NextAppend(dst []byte) (Packet, []byte, error) {
	if n, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Packet{}, dst, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Packet{}, dst, ErrTruncated
		}
		return Packet{}, dst, err
	}
	caplen := p.bo.Uint32(p.hdr[8:12])
	if caplen > p.bound {
		return Packet{}, dst, fmt.Errorf("capture length %d exceeds the bound of %d bytes (the snapshot length, at most %d)", caplen, p.bound, MaxLen)
	}
	base := len(dst)
	out := slices.Grow(dst, int(caplen))
	data := out[base : base+int(caplen)]
	if err := readFull(p.r, data); err != nil {
		return Packet{}, dst, err
	}
	sec, frac := int64(p.bo.Uint32(p.hdr[0:4])), int64(p.bo.Uint32(p.hdr[4:8]))
	if !p.nano {
		frac *= 1000
	}
	return Packet{Data: data, Link: p.lt, Time: sec*1e9 + frac}, out[:base+int(caplen)], nil
}

// ngInterface is a pcapng interface description.
type ngInterface struct {
	name  string
	lt    layers.LinkType
	bound uint32 // min(snaplen, MaxLen)
	units uint64 // timestamp units per second
	off   int64  // timestamp offset in seconds
}

// ngReader reads a pcapng file block by block.
type ngReader struct {
	r      *bufio.Reader
	bo     binary.ByteOrder
	ifaces []ngInterface
	hdr    [8]byte
	buf    []byte
}

func (g *ngReader) Next() (Packet, error) {
	pk, buf, err := g.NextAppend(g.buf[:0])
	g.buf = buf[:0]
	return pk, err
}

func (g *ngReader) NextAppend(dst []byte) (Packet, []byte, error) {
	base := len(dst)
	for {
		if n, err := io.ReadFull(g.r, g.hdr[:]); err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				return Packet{}, dst[:base], io.EOF
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return Packet{}, dst[:base], ErrTruncated
			}
			return Packet{}, dst[:base], err
		}
		typ := binary.BigEndian.Uint32(g.hdr[0:4])
		if typ == 0x0a0d0d0a { // section header: its byte order follows
			m, err := g.r.Peek(4)
			if err != nil {
				return Packet{}, dst[:base], ErrTruncated
			}
			switch {
			case binary.BigEndian.Uint32(m) == 0x1a2b3c4d:
				g.bo = binary.BigEndian
			case binary.LittleEndian.Uint32(m) == 0x1a2b3c4d:
				g.bo = binary.LittleEndian
			default:
				return Packet{}, dst[:base], fmt.Errorf("pcapng section header with a bad byte order magic %x", m)
			}
			g.ifaces = g.ifaces[:0]
		} else if g.bo == nil {
			return Packet{}, dst[:base], errors.New("pcapng block before the section header")
		} else {
			typ = g.bo.Uint32(g.hdr[0:4])
		}
		total := g.bo.Uint32(g.hdr[4:8])
		if total < 12 || total%4 != 0 {
			return Packet{}, dst[:base], fmt.Errorf("pcapng block of type %#x has a bad length %d", typ, total)
		}
		if total > maxBlockLen {
			return Packet{}, dst[:base], fmt.Errorf("pcapng block of type %#x is %d bytes, more than the bound of %d", typ, total, maxBlockLen)
		}
		dst = slices.Grow(dst[:base], int(total)-8)
		end := base + int(total) - 8
		body := dst[base:end]
		if err := readFull(g.r, body); err != nil {
			return Packet{}, dst[:base], err
		}
		if g.bo.Uint32(body[len(body)-4:]) != total {
			return Packet{}, dst[:base], fmt.Errorf("pcapng block of type %#x: trailing length %d is not %d", typ, g.bo.Uint32(body[len(body)-4:]), total)
		}
		body = body[:len(body)-4]
		switch typ {
		case 1: // interface description
			if err := g.iface(body); err != nil {
				return Packet{}, dst[:base], err
			}
		case 6, 2: // enhanced packet, obsolete packet
			if len(body) < 20 {
				return Packet{}, dst[:base], fmt.Errorf("pcapng packet block of %d bytes", total)
			}
			id := g.bo.Uint32(body[0:4])
			if typ == 2 {
				id = uint32(g.bo.Uint16(body[0:2]))
			}
			if id >= uint32(len(g.ifaces)) {
				return Packet{}, dst[:base], fmt.Errorf("pcapng packet on interface %d: the section has %d", id, len(g.ifaces))
			}
			ifc := &g.ifaces[id]
			caplen := g.bo.Uint32(body[12:16])
			if caplen > ifc.bound {
				return Packet{}, dst[:base], fmt.Errorf("capture length %d exceeds the bound of %d bytes (the snapshot length, at most %d)", caplen, ifc.bound, MaxLen)
			}
			if caplen > uint32(len(body)-20) {
				return Packet{}, dst[:base], fmt.Errorf("capture length %d exceeds its block of %d bytes", caplen, total)
			}
			ts := uint64(g.bo.Uint32(body[4:8]))<<32 | uint64(g.bo.Uint32(body[8:12]))
			return Packet{Data: body[20 : 20+caplen], Link: ifc.lt, Iface: ifc.name, Time: ifc.nanos(ts)}, dst[:end], nil
		case 3: // simple packet: interface 0, no timestamp
			if len(body) < 4 || len(g.ifaces) == 0 {
				return Packet{}, dst[:base], errors.New("pcapng simple packet block without an interface or a length")
			}
			ifc := &g.ifaces[0]
			caplen := min(g.bo.Uint32(body[0:4]), ifc.bound, uint32(len(body)-4))
			return Packet{Data: body[4 : 4+caplen], Link: ifc.lt, Iface: ifc.name}, dst[:end], nil
		}
		// any other block (statistics, name resolution, ...) is skipped
	}
}

// iface reads an interface description block.
func (g *ngReader) iface(body []byte) error {
	if len(body) < 8 {
		return errors.New("pcapng interface description block too short")
	}
	ifc := ngInterface{lt: layers.LinkType(g.bo.Uint16(body[0:2])), bound: g.bo.Uint32(body[4:8]), units: 1e6}
	if ifc.bound == 0 || ifc.bound > MaxLen {
		ifc.bound = MaxLen
	}
	for o := body[8:]; len(o) >= 4; {
		code, n := g.bo.Uint16(o[0:2]), int(g.bo.Uint16(o[2:4]))
		if code == 0 || 4+n > len(o) {
			break
		}
		v := o[4 : 4+n]
		switch {
		case code == 2: // if_name
			ifc.name = string(v)
			for i, c := range v {
				if c == 0 {
					ifc.name = string(v[:i])
					break
				}
			}
		case code == 9 && n >= 1: // if_tsresol
			e := uint(v[0] & 0x7f)
			if v[0]&0x80 != 0 {
				if e > 63 {
					return fmt.Errorf("pcapng interface timestamp resolution 2^-%d", e)
				}
				ifc.units = 1 << e
			} else {
				if e > 19 {
					return fmt.Errorf("pcapng interface timestamp resolution 10^-%d", e)
				}
				ifc.units = 1
				for range e {
					ifc.units *= 10
				}
			}
		case code == 14 && n >= 8: // if_tsoffset
			ifc.off = int64(g.bo.Uint64(v))
		}
		o = o[min(len(o), 4+(n+3)&^3):]
	}
	if len(g.ifaces) >= maxInterfaces {
		return fmt.Errorf("pcapng section with more than %d interfaces", maxInterfaces)
	}
	g.ifaces = append(g.ifaces, ifc)
	return nil
}

// nanos converts a timestamp in the interface's units to Unix ns.
func (ifc *ngInterface) nanos(ts uint64) int64 {
	sec, frac := ts/ifc.units, ts%ifc.units
	hi, lo := bits.Mul64(frac, 1e9)
	ns, _ := bits.Div64(hi, lo, ifc.units)
	return (int64(sec)+ifc.off)*1e9 + int64(ns)
}
