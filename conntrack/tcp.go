package conntrack

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TCPState is the TCP tracker's state (enum tcp_conntrack,
// include/uapi/linux/netfilter/nf_conntrack_tcp.h).
//
//	          SYN          SYN/ACK(reply)        ACK
//	NONE ──────────► SYN_SENT ───────► SYN_RECV ──────► ESTABLISHED
//	 │ ACK (loose)      │ SYN(reply)       ▲                │ FIN
//	 └──► ESTABLISHED   ▼                  │                ▼
//	                SYN_SENT2 ─ SYN/ACK ───┘            FIN_WAIT
//	                                        ACK ┌──────────┤ FIN
//	                                            ▼          ▼
//	 RST from any state ──► CLOSE          CLOSE_WAIT ─► LAST_ACK ─ACK─► TIME_WAIT
//	 SYN in TIME_WAIT/CLOSE ──► SYN_SENT (a new entry when the old one closed)
//
// The full transition table is tcpConntracks below.
type TCPState uint8

// TCP states.
const (
	TCPNone TCPState = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2 // TCP_CONNTRACK_LISTEN's slot
	tcpMax      // sIV: invalid
	tcpIgnore   // sIG: ignored
	tcpRetrans  // timeout index
	tcpUnack    // timeout index
	tcpTimeoutMax
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "INVALID"
}

// Per-direction flags (IP_CT_TCP_FLAG_*, nf_conntrack_tcp.h) and the
// last_flags-only ones.
const (
	tcpFlagWindowScale    = 0x01
	tcpFlagSackPerm       = 0x02
	tcpFlagCloseInit      = 0x04
	tcpFlagBeLiberal      = 0x08
	tcpFlagDataUnack      = 0x10
	tcpFlagMaxAckSet      = 0x20
	tcpExpChallengeAck    = 0x40
	tcpSimultaneousOpen   = 0x80
	tcpMaxWScale          = 14
	maxAckWinConst        = 66000
	tcpHandleInvalidFloor = 120e9 // nf_tcp_handle_invalid: 120 * HZ
)

// Indexes by flags (enum tcp_bit_set).
const (
	tcpSynSet = iota
	tcpSynAckSet
	tcpFinSet
	tcpAckSet
	tcpRstSet
	tcpNoneSet
)

// tcpSeen is one direction's window data (struct ip_ct_tcp_state).
type tcpSeen struct {
	end, maxend, maxwin, maxack uint32
	scale                       uint8
	flags                       uint8
}

// tcpState is struct ip_ct_tcp.
type tcpState struct {
	seen       [2]tcpSeen
	state      TCPState
	lastDir    Dir
	retrans    uint8
	lastIndex  uint8
	lastSeq    uint32
	lastAck    uint32
	lastEnd    uint32
	lastWin    uint16
	lastWscale uint8
	lastFlags  uint8
}

const (
	sNO = TCPNone
	sSS = TCPSynSent
	sSR = TCPSynRecv
	sES = TCPEstablished
	sFW = TCPFinWait
	sCW = TCPCloseWait
	sLA = TCPLastAck
	sTW = TCPTimeWait
	sCL = TCPClose
	sS2 = TCPSynSent2
	sIV = tcpMax
	sIG = tcpIgnore
)

// tcpConntracks is tcp_conntracks[dir][index][state] of
// net/netfilter/nf_conntrack_proto_tcp.c (6.x: ORIGINAL SYN/ACK is only
// valid in SYN_SENT2/SYN_RECV; a REPLY SYN in TIME_WAIT reopens).
var tcpConntracks = [2][6][10]TCPState{
	{ // ORIGINAL
		// sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
		{sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2}, // syn
		{sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR}, // synack
		{sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV}, // fin
		{sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV}, // ack
		{sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL}, // rst
		{sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV}, // none
	},
	{ // REPLY
		// sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
		{sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2}, // syn
		{sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR}, // synack
		{sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV}, // fin
		{sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG}, // ack
		{sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL}, // rst
		{sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV}, // none
	},
}

// tcpValidFlags is tcp_valid_flags: the FIN/SYN/RST/ACK/URG combinations
// tcp_error accepts (PSH, ECE, CWR are always fine).
var tcpValidFlags = func() (v [0x40]bool) {
	const fin, syn, rst, ack, urg = packet.TCPFin, packet.TCPSyn, packet.TCPRst, packet.TCPAck, packet.TCPUrg
	for _, f := range []uint8{syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg} {
		v[f] = true
	}
	return
}()

func tcpIndex(flags uint8) uint8 {
	switch {
	case flags&packet.TCPRst != 0:
		return tcpRstSet
	case flags&packet.TCPSyn != 0:
		if flags&packet.TCPAck != 0 {
			return tcpSynAckSet
		}
		return tcpSynSet
	case flags&packet.TCPFin != 0:
		return tcpFinSet
	case flags&packet.TCPAck != 0:
		return tcpAckSet
	}
	return tcpNoneSet
}

// tcpSeg is the part of a TCP segment the tracker reads.
type tcpSeg struct {
	h        packet.TCP
	seq, ack uint32
	win      uint16
	flags    uint8
	end      uint32 // segment_seq_plus_len
}

// set fills s from p's TCP header, in place (a tcpSeg returned by
// value is copied whole from the fields just stored).
func (s *tcpSeg) set(p *packet.Packet) {
	h := packet.TCP(p.L4)
	s.h, s.seq, s.ack, s.win, s.flags = h, h.Seq(), h.Ack(), h.Window(), h.Flags()
	s.end = s.seq + uint32(len(p.L4)-h.DataOffset())
	if s.flags&packet.TCPSyn != 0 {
		s.end++
	}
	if s.flags&packet.TCPFin != 0 {
		s.end++
	}
}

func (s *tcpSeg) has(f uint8) bool { return s.flags&f != 0 }

func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return before(b, a) }

// tcpOptions is tcp_options: window scale and SACK-permitted.
func tcpOptions(h packet.TCP, st *tcpSeen) {
	opts := h.Options()
	if len(opts) == 0 {
		return
	}
	st.scale = 0
	st.flags &= tcpFlagBeLiberal
	for len(opts) > 0 {
		op := opts[0]
		switch op {
		case 0: // EOL
			return
		case 1: // NOP
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return
		}
		size := int(opts[1])
		if size < 2 || size > len(opts) {
			return
		}
		if op == 4 && size == 2 { // SACK_PERM
			st.flags |= tcpFlagSackPerm
		} else if op == 3 && size == 3 { // WINDOW
			st.scale = min(opts[2], tcpMaxWScale)
			st.flags |= tcpFlagWindowScale
		}
		opts = opts[size:]
	}
}

// tcpSack is tcp_sack: the highest right edge of the first SACK option.
func tcpSack(h packet.TCP, sack *uint32) {
	opts := h.Options()
	if len(opts) == 0 {
		return
	}
	// Fast path for the timestamp-only option.
	if len(opts) == 12 && binary.BigEndian.Uint32(opts) == 0x0101080a {
		return
	}
	for len(opts) > 0 {
		op := opts[0]
		switch op {
		case 0:
			return
		case 1:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return
		}
		size := int(opts[1])
		if size < 2 || size > len(opts) {
			return
		}
		if op == 5 && size >= 2+8 && (size-2)%8 == 0 {
			for i := 2; i < size; i += 8 {
				if tmp := binary.BigEndian.Uint32(opts[i+4:]); after(tmp, *sack) {
					*sack = tmp
				}
			}
			return
		}
		opts = opts[size:]
	}
}

type tcpAction uint8

const (
	tcpAccept tcpAction = iota
	tcpIgnoreAct
	tcpInvalid
)

func tcpInitSender(sender, receiver *tcpSeen, s *tcpSeg, end, win uint32, dir Dir) {
	sender.end = end
	sender.maxend = end
	sender.maxwin = max(win, 1)
	tcpOptions(s.h, sender)
	// RFC 1323: both sides must send the Window Scale option.
	if dir == Reply && !(sender.flags&tcpFlagWindowScale != 0 && receiver.flags&tcpFlagWindowScale != 0) {
		sender.scale = 0
		receiver.scale = 0
	}
}

func (t *Table) tcpLogInvalid(sender *tcpSeen, ret tcpAction) tcpAction {
	if sender.flags&tcpFlagBeLiberal != 0 || t.TCPBeLiberal() {
		return tcpAccept
	}
	return ret
}

func maxAckWindow(s *tcpSeen) uint32 {
	return max(s.maxwin, maxAckWinConst)
}

// tcpInWindow is tcp_in_window.
func (t *Table) tcpInWindow(c *Conn, st *tcpState, dir Dir, index uint8, s *tcpSeg) tcpAction {
	sender := &st.seen[dir]
	receiver := &st.seen[dir^1]
	seq, ack := s.seq, s.ack
	sack := ack
	win := uint32(s.win)
	end := s.end
	if receiver.flags&tcpFlagSackPerm != 0 {
		tcpSack(s.h, &sack)
	}
	// Take into account NAT sequence number mangling: the receiver's
	// sequence numbers as this packet's sender saw them
	if roff := seqOffset(c, dir^1, ack-1); roff != 0 {
		ack -= uint32(roff)
		sack -= uint32(roff)
	}

	if sender.maxwin == 0 {
		if s.has(packet.TCPSyn) {
			tcpInitSender(sender, receiver, s, end, win, dir)
			if !s.has(packet.TCPAck) {
				return tcpAccept // simultaneous open
			}
		} else {
			// Mid-connection: its history is lost for us.
			sender.end = end
			swin := win << sender.scale
			sender.maxwin = max(swin, 1)
			sender.maxend = end + sender.maxwin
			if receiver.maxwin == 0 {
				receiver.end = sack
				receiver.maxend = sack
			} else if sack == receiver.end+1 {
				receiver.end++ // likely a reply to a keepalive
			}
		}
	} else if s.has(packet.TCPSyn) && after(end, sender.end) &&
		(st.state == TCPSynSent || st.state == TCPSynRecv) {
		// RFC 793 reinitialised connection: re-init this direction.
		tcpInitSender(sender, receiver, s, end, win, dir)
		if dir == Reply && !s.has(packet.TCPAck) {
			return tcpAccept
		}
	}

	if !s.has(packet.TCPAck) {
		ack = receiver.end
		sack = ack
	} else if s.flags&(packet.TCPAck|packet.TCPRst) == packet.TCPAck|packet.TCPRst && ack == 0 {
		// Broken stacks set ACK in RST with a zero ack.
		ack = receiver.end
		sack = ack
	}

	if s.has(packet.TCPRst) && seq == 0 && st.state == TCPSynSent {
		// RST answering a SYN.
		seq = sender.end
		end = sender.end
	}

	if !before(seq, sender.maxend+1) {
		overshot := end - sender.maxend + 1
		ackOK := after(sack, receiver.end-maxAckWindow(sender)-1)
		inRecvWin := receiver.maxwin != 0 && after(end, sender.end-receiver.maxwin-1)
		if inRecvWin && ackOK && overshot <= receiver.maxwin && before(sack, receiver.end+1) {
			// TCPs that send more than the receive window allows.
			sender.end = end
			sender.flags |= tcpFlagDataUnack
			return t.tcpLogInvalid(sender, tcpIgnoreAct)
		}
		return t.tcpLogInvalid(sender, tcpInvalid) // SEQ is over upper bound
	}
	if !before(sack, receiver.end+1) {
		return t.tcpLogInvalid(sender, tcpInvalid) // ACK is over upper bound
	}
	inRecvWin := receiver.maxwin == 0 || after(end, sender.end-receiver.maxwin-1)
	if !inRecvWin {
		return t.tcpLogInvalid(sender, tcpIgnoreAct) // SEQ under lower bound
	}
	if !after(sack, receiver.end-maxAckWindow(sender)-1) {
		return t.tcpLogInvalid(sender, tcpIgnoreAct) // ACK under lower bound
	}

	if !s.has(packet.TCPSyn) {
		win <<= sender.scale
	}
	swin := win + (sack - ack)
	if sender.maxwin < swin {
		sender.maxwin = swin
	}
	if after(end, sender.end) {
		sender.end = end
		sender.flags |= tcpFlagDataUnack
	}
	if s.has(packet.TCPAck) {
		if sender.flags&tcpFlagMaxAckSet == 0 {
			sender.maxack = ack
			sender.flags |= tcpFlagMaxAckSet
		} else if after(ack, sender.maxack) {
			sender.maxack = ack
		}
	}
	if receiver.maxwin != 0 && after(end, sender.maxend) {
		receiver.maxwin += end - sender.maxend
	}
	if after(sack+win, receiver.maxend-1) {
		receiver.maxend = sack + win
		if win == 0 {
			receiver.maxend++
		}
	}
	if ack == receiver.end {
		receiver.flags &^= tcpFlagDataUnack
	}
	// Retransmissions.
	if index == tcpAckSet {
		if st.lastDir == dir && st.lastSeq == seq && st.lastAck == ack && st.lastEnd == end && st.lastWin == s.win {
			if st.retrans < 255 {
				st.retrans++
			}
		} else {
			st.lastDir = dir
			st.lastSeq = seq
			st.lastAck = ack
			st.lastEnd = end
			st.lastWin = s.win
			st.retrans = 0
		}
	}
	return tcpAccept
}

// tcpNew is tcp_new: may this packet create an entry, and its initial
// window data. Called for an unconfirmed entry.
func (t *Table) tcpNew(c *Conn, s *tcpSeg) bool {
	st := &c.proto.tcp
	newState := tcpConntracks[0][tcpIndex(s.flags)][TCPNone]
	if newState >= tcpMax {
		return false
	}
	*st = tcpState{}
	st.seen[0].end = s.end
	st.seen[0].maxwin = max(uint32(s.win), 1)
	if newState == TCPSynSent {
		st.seen[0].maxend = st.seen[0].end
		tcpOptions(s.h, &st.seen[0])
	} else {
		if !t.TCPLoose() {
			return false
		}
		st.seen[0].maxend = st.seen[0].end + st.seen[0].maxwin
		// Assume SACK and be liberal to cope with window scaling.
		st.seen[0].flags = tcpFlagSackPerm | tcpFlagBeLiberal
		st.seen[1].flags = tcpFlagSackPerm | tcpFlagBeLiberal
	}
	st.lastIndex = tcpNoneSet
	return true
}

func tcpCanEarlyDrop(s TCPState) bool {
	switch s {
	case TCPFinWait, TCPLastAck, TCPTimeWait, TCPClose, TCPCloseWait:
		return true
	}
	return false
}

// tcpEstablished is nf_conntrack_tcp_established.
func tcpEstablished(c *Conn) bool {
	return c.proto.tcp.state == TCPEstablished && c.Status()&StatusAssured != 0
}

func tcpStateReset(s *tcpSeen) {
	*s = tcpSeen{flags: s.flags & tcpFlagBeLiberal}
}

// tcpVerdict is what nf_conntrack_tcp_packet tells nf_conntrack_in.
type tcpVerdict uint8

const (
	tcpVAccept  tcpVerdict = iota // NF_ACCEPT, packet keeps the entry
	tcpVInvalid                   // -NF_ACCEPT: invalid
	tcpVRepeat                    // -NF_REPEAT: entry killed, look up again
	tcpVDrop                      // NF_DROP: could not kill
	tcpVKill                      // accept, then kill the entry (RST as only reply)
)

// tcpPacket is nf_conntrack_tcp_packet. It takes c.mu itself and never
// holds it on return; killing is left to the caller.
func (t *Table) tcpPacket(c *Conn, p *packet.Packet, info CtInfo, hook netfilter.Hook, now int64) (tcpVerdict, invalidReason) {
	if p.L4Truncated || !p.HasL4 {
		return tcpVInvalid, invTruncated
	}
	if t.cfg.Checksum && hook == netfilter.PreRouting && !p.ChecksumGood() {
		return tcpVInvalid, invChecksum
	}
	if !tcpValidFlags[p.TCPFlags&^(packet.TCPEce|packet.TCPCwr|packet.TCPPsh)] {
		return tcpVInvalid, invTCPFlags
	}
	var s tcpSeg
	s.set(p)
	if !c.Confirmed() && !t.tcpNew(c, &s) {
		return tcpVInvalid, invTCPNew
	}

	c.mu.Lock()
	st := &c.proto.tcp
	oldState := st.state
	dir := info.Dir()
	index := tcpIndex(s.flags)
	newState := tcpConntracks[dir][index][oldState]

	switch newState {
	case TCPSynSent:
		if oldState < TCPTimeWait {
			break
		}
		// RFC 1122 reopening from TIME_WAIT/CLOSE, or the client aborted
		// and starts a new connection: kill the entry and look up again.
		if (st.seen[dir].flags|st.seen[dir^1].flags)&tcpFlagCloseInit != 0 ||
			(st.lastDir == dir && st.lastIndex == tcpRstSet) {
			c.mu.Unlock()
			return tcpVRepeat, 0
		}
		fallthrough
	case tcpIgnore:
		// b) a SYN/ACK acknowledging a SYN we ignored: the ends are in
		// sync, we are not; take the annotated values.
		if index == tcpSynAckSet && st.lastIndex == tcpSynSet && st.lastDir != dir && s.ack == st.lastEnd {
			oldState = TCPSynSent
			newState = TCPSynRecv
			ld := &st.seen[st.lastDir]
			ld.end = st.lastEnd
			ld.maxend = st.lastEnd
			ld.maxwin = max(uint32(st.lastWin), 1)
			ld.scale = st.lastWscale
			st.lastFlags &^= tcpExpChallengeAck
			ld.flags = st.lastFlags
			tcpStateReset(&st.seen[dir])
			break
		}
		st.lastIndex = index
		st.lastDir = dir
		st.lastSeq = s.seq
		st.lastEnd = s.end
		st.lastWin = s.win
		// a) a SYN in ORIGINAL: annotate its options.
		if index == tcpSynSet && dir == Original {
			var seen tcpSeen
			st.lastFlags = 0
			st.lastWscale = 0
			tcpOptions(s.h, &seen)
			if seen.flags&tcpFlagWindowScale != 0 {
				st.lastFlags |= tcpFlagWindowScale
				st.lastWscale = seen.scale
			}
			if seen.flags&tcpFlagSackPerm != 0 {
				st.lastFlags |= tcpFlagSackPerm
			}
			if oldState == TCPLastAck {
				st.lastFlags |= tcpExpChallengeAck
			}
		}
		// c) a possible challenge ACK answering a SYN.
		if oldState == TCPSynSent && index == tcpAckSet && dir == Reply {
			st.lastAck = s.ack
		}
		c.mu.Unlock()
		return tcpVAccept, 0 // ignored: accepted, no refresh
	case tcpMax:
		c.mu.Unlock()
		return tcpVInvalid, invTCPState
	case TCPTimeWait:
		// RFC 5961 challenge ACK must not be taken as acking the last FIN.
		if oldState == TCPLastAck && index == tcpAckSet && st.lastDir != dir &&
			st.lastIndex == tcpSynSet && st.lastFlags&tcpExpChallengeAck != 0 {
			st.lastFlags &^= tcpExpChallengeAck
			c.mu.Unlock()
			return tcpVAccept, 0
		}
	case TCPSynSent2:
		st.lastFlags |= tcpSimultaneousOpen
	case TCPSynRecv:
		if dir == Reply && index == tcpAckSet && st.lastFlags&tcpSimultaneousOpen != 0 {
			newState = TCPEstablished
		}
	case TCPClose:
		if index != tcpRstSet {
			break
		}
		if tcpCanEarlyDrop(oldState) {
			goto inWindow
		}
		if st.seen[dir^1].flags&tcpFlagMaxAckSet != 0 && st.lastIndex != tcpSynSet {
			seq := s.seq
			if seq == 0 && !tcpEstablished(c) {
				break
			}
			if before(seq, st.seen[dir^1].maxack) && !t.cfg.TCPIgnoreInvalidRST {
				c.mu.Unlock()
				return tcpVInvalid, invTCPRst
			}
			if !tcpEstablished(c) || seq == st.seen[dir^1].maxack {
				break
			}
			// An RST in a train right after data.
			if st.lastIndex == tcpAckSet && st.lastDir == dir && seq == st.lastEnd {
				break
			}
			// Sequence not exact: keep the state for a challenge ACK.
			newState = oldState
		}
		status := c.Status()
		if ((status&StatusSeenReply != 0 && st.lastIndex == tcpSynSet) ||
			(status&StatusAssured == 0 && st.lastIndex == tcpAckSet)) && s.ack == st.lastEnd {
			// RST to an invalid SYN or ACK we let through: skip window checks.
			goto inWindow
		}
		// RST answering a challenge ACK we let through.
		if oldState == TCPSynSent && st.lastIndex == tcpAckSet && st.lastDir == Reply && s.seq == st.lastAck {
			goto inWindow
		}
	}

	switch t.tcpInWindow(c, st, dir, index, &s) {
	case tcpIgnoreAct:
		c.mu.Unlock()
		return tcpVAccept, 0
	case tcpInvalid:
		t.tcpHandleInvalid(c, dir, index, now)
		c.mu.Unlock()
		return tcpVInvalid, invTCPWindow
	}

inWindow:
	st.lastIndex = index
	st.lastDir = dir
	st.state = newState
	if oldState != newState && newState == TCPFinWait {
		st.seen[dir].flags |= tcpFlagCloseInit
	}
	to := &t.tcpTimeouts
	var timeout int64
	switch {
	case int(st.retrans) >= t.cfg.TCPMaxRetrans && to[newState] > to[tcpRetrans]:
		timeout = to[tcpRetrans]
	case index == tcpRstSet:
		timeout = to[TCPClose]
	case (st.seen[0].flags|st.seen[1].flags)&tcpFlagDataUnack != 0 && to[newState] > to[tcpUnack]:
		timeout = to[tcpUnack]
	case st.lastWin == 0 && to[newState] > to[tcpRetrans]:
		timeout = to[tcpRetrans]
	default:
		timeout = to[newState]
	}
	c.mu.Unlock()
	if oldState != newState {
		t.cacheEvent(c, ecacheProtoinfo)
	}

	status := c.Status()
	if status&StatusSeenReply == 0 {
		// Only a RST as reply: not an established connection, delete it.
		if s.has(packet.TCPRst) {
			return tcpVKill, 0
		}
		// Do not renew the timeout on a SYN retransmit.
		if index == tcpSynSet && oldState == TCPSynSent {
			return tcpVAccept, 0
		}
		// Picked up mid-stream: avoid the long ESTABLISHED timeout.
		if newState == TCPEstablished && timeout > to[tcpUnack] {
			timeout = to[tcpUnack]
		}
	} else if status&StatusAssured == 0 && (oldState == TCPSynRecv || oldState == TCPEstablished) &&
		newState == TCPEstablished {
		c.SetStatus(StatusAssured)
		t.cacheEvent(c, ecacheAssured)
	}
	c.refresh(timeout, now)
	return tcpVAccept, 0
}

// tcpHandleInvalid is nf_tcp_handle_invalid: an out-of-window FIN/RST
// answering one from the other side shortens an assured entry's timeout
// to the unacknowledged one. Called with c.mu held.
func (t *Table) tcpHandleInvalid(c *Conn, dir Dir, index uint8, now int64) {
	status := c.Status()
	if status&StatusAssured == 0 || status&StatusFixedTimeout != 0 {
		return
	}
	if index != tcpRstSet && index != tcpFinSet {
		return
	}
	st := &c.proto.tcp
	if st.lastDir != dir && (st.lastIndex == tcpFinSet || st.lastIndex == tcpRstSet) {
		expires := c.Expires(now)
		if expires < tcpHandleInvalidFloor {
			return
		}
		if timeout := t.tcpTimeouts[tcpUnack]; expires > timeout {
			c.timeout.Store(now + timeout)
		}
	} else {
		st.lastIndex = index
		st.lastDir = dir
	}
}
