package conntrack

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// TCP sequence adjustment after a helper changed a payload's length
// (net/netfilter/nf_conntrack_seqadj.c): per direction, the offset of
// sequence numbers before and after correctionPos.

// seqAdj is struct nf_ct_seqadj.
type seqAdj struct {
	correctionPos uint32
	offsetBefore  int32
	offsetAfter   int32
}

// SeqAdjSet records that the packet of direction info.Dir() with
// sequence number seq changed its payload length by off
// (nf_ct_seqadj_set): later sequence numbers of that direction move by
// the sum of the changes. A second change before the first was passed
// (a retransmission) is not added again.
func (c *Conn) SeqAdjSet(info CtInfo, seq uint32, off int32) {
	if off == 0 || c.ext == nil {
		return
	}
	c.SetStatus(StatusSeqAdjust)
	x := c.ext
	x.mu.Lock()
	w := &x.seqadj[info.Dir()]
	if w.offsetBefore == w.offsetAfter || before(w.correctionPos, seq) {
		w.correctionPos = seq
		w.offsetBefore = w.offsetAfter
		w.offsetAfter += off
	}
	x.mu.Unlock()
}

// SeqOffset is nf_ct_seq_offset: the offset of direction dir's
// sequence number seq.
func (c *Conn) SeqOffset(dir Dir, seq uint32) int32 { return seqOffset(c, dir, seq) }

func seqOffset(c *Conn, dir Dir, seq uint32) int32 {
	if c.ext == nil || c.Status()&StatusSeqAdjust == 0 {
		return 0
	}
	x := c.ext
	x.mu.Lock()
	w := x.seqadj[dir&1]
	x.mu.Unlock()
	if after(seq, w.correctionPos) {
		return w.offsetAfter
	}
	return w.offsetBefore
}

// seqAdjust is nf_ct_seq_adjust: the packet's sequence number moves by
// its direction's offset, its ack (and SACK blocks) back by the other
// direction's, with incremental checksum updates. False when the TCP
// header or its options are malformed (the kernel drops).
func seqAdjust(p *packet.Packet, c *Conn, info CtInfo) bool {
	h := p.L4
	if len(h) < 20 {
		return false
	}
	dir := info.Dir()
	x := c.ext
	x.mu.Lock()
	this, other := x.seqadj[dir], x.seqadj[dir^1]
	x.mu.Unlock()

	seq := binary.BigEndian.Uint32(h[4:])
	off := this.offsetBefore
	if after(seq, this.correctionPos) {
		off = this.offsetAfter
	}
	setSeq32(p, 4, seq+uint32(off))
	if h[13]&packet.TCPAck == 0 {
		return true
	}
	ack := binary.BigEndian.Uint32(h[8:])
	aoff := other.offsetBefore
	if after(ack-uint32(other.offsetBefore), other.correctionPos) {
		aoff = other.offsetAfter
	}
	setSeq32(p, 8, ack-uint32(aoff))
	return sackAdjust(p, &other)
}

// setSeq32 writes a 32-bit word of the TCP header at off, updating the
// checksum incrementally.
func setSeq32(p *packet.Packet, off int, v uint32) {
	h := p.L4
	old := binary.BigEndian.Uint32(h[off:])
	if old == v {
		return
	}
	binary.BigEndian.PutUint32(h[off:], v)
	cs := binary.BigEndian.Uint16(h[16:])
	binary.BigEndian.PutUint16(h[16:], packet.UpdateChecksum32(cs, old, v))
}

// sackAdjust is nf_ct_sack_adjust: each SACK block's edges move back by
// the other direction's offset. False on a partial option.
func sackAdjust(p *packet.Packet, w *seqAdj) bool {
	h := p.L4
	end := int(h[12]>>4) * 4
	if end > len(h) {
		return false
	}
	for o := 20; o < end; {
		switch h[o] {
		case 0: // EOL
			return true
		case 1: // NOP
			o++
			continue
		}
		if o+1 == end || o+int(h[o+1]) > end || h[o+1] < 2 {
			return false
		}
		if n := int(h[o+1]); h[o] == 5 && n >= 2+8 && (n-2)%8 == 0 {
			for b := o + 2; b < o+n; b += 4 {
				v := binary.BigEndian.Uint32(h[b:])
				adj := w.offsetBefore
				if after(v-uint32(w.offsetBefore), w.correctionPos) {
					adj = w.offsetAfter
				}
				setSeq32(p, b, v-uint32(adj))
			}
		}
		o += int(h[o+1])
	}
	return true
}
