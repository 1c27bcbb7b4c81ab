package conntrack

import (
	"encoding/binary"
	"unsafe"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// SCTPState is the SCTP tracker's state (enum sctp_conntrack,
// include/uapi/linux/netfilter/nf_conntrack_sctp.h; 6.x has no
// HEARTBEAT_ACKED state any more).
//
//	INIT ──► CLOSED ─INIT-ACK(reply)─► COOKIE_WAIT ─COOKIE-ECHO─► COOKIE_ECHOED
//	                                                  COOKIE-ACK(reply) ─► ESTABLISHED
//	ESTABLISHED ─SHUTDOWN─► SHUTDOWN_SENT/RECD ─SHUTDOWN-ACK─► SHUTDOWN_ACK_SENT
//	                                     ─SHUTDOWN-COMPLETE─► CLOSED
//	ABORT from any state ──► CLOSED; HEARTBEAT on a new flow ──► HEARTBEAT_SENT
//
// The full transition table is sctpConntracks below.
type SCTPState uint8

// SCTP states.
const (
	SCTPNone SCTPState = iota
	SCTPClosed
	SCTPCookieWait
	SCTPCookieEchoed
	SCTPEstablished
	SCTPShutdownSent
	SCTPShutdownRecd
	SCTPShutdownAckSent
	SCTPHeartbeatSent
	sctpMax // sIV: invalid
)

var sctpStateNames = [...]string{"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
	"SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT"}

func (s SCTPState) String() string {
	if int(s) < len(sctpStateNames) {
		return sctpStateNames[s]
	}
	return "INVALID"
}

// SCTP chunk types (RFC 9260 section 3.2) the tracker looks at.
const (
	sctpData             = 0
	sctpInit             = 1
	sctpInitAck          = 2
	sctpHeartbeat        = 4
	sctpHeartbeatAck     = 5
	sctpAbort            = 6
	sctpShutdown         = 7
	sctpShutdownAck      = 8
	sctpError            = 9
	sctpCookieEcho       = 10
	sctpCookieAck        = 11
	sctpShutdownComplete = 14

	sctpFlagT             = 0x01 // chunk flag T of ABORT / SHUTDOWN COMPLETE
	sctpHeartbeatVtagFail = 1    // SCTP_FLAG_HEARTBEAT_VTAG_FAILED
	sctpHeaderLen         = 12
	sctpChunkHeaderLen    = 4
	sctpInitTagLen        = 4 // the initiate tag that follows an INIT/INIT-ACK chunk header
)

// sctpState is struct ip_ct_sctp.
type sctpState struct {
	vtag    [2]uint32
	state   SCTPState
	lastDir Dir
	flags   uint8
	init    [2]bool
}

// sctp returns the SCTP state, which lives in the TCP state's bytes as
// in the kernel's union (an entry is one protocol for life; neither
// struct holds pointers). This keeps Conn in its 320-byte size class.
func (ps *protoState) sctp() *sctpState {
	return (*sctpState)(unsafe.Pointer(&ps.tcp))
}

// the union must hold: sctpState fits in tcpState and needs no more
// alignment
var _ [unsafe.Sizeof(tcpState{}) - unsafe.Sizeof(sctpState{})]byte
var _ [unsafe.Alignof(tcpState{}) - unsafe.Alignof(sctpState{})]byte

const (
	cNO = SCTPNone
	cCL = SCTPClosed
	cCW = SCTPCookieWait
	cCE = SCTPCookieEchoed
	cES = SCTPEstablished
	cSS = SCTPShutdownSent
	cSR = SCTPShutdownRecd
	cSA = SCTPShutdownAckSent
	cHS = SCTPHeartbeatSent
	cIV = sctpMax
)

// sctpConntracks is sctp_conntracks[dir][chunk][state] of
// net/netfilter/nf_conntrack_proto_sctp.c (6.18).
var sctpConntracks = [2][11][9]SCTPState{
	{ // ORIGINAL
		// cNO, cCL, cCW, cCE, cES, cSS, cSR, cSA, cHS
		{cCL, cCL, cCW, cCE, cES, cCL, cCL, cSA, cCW}, // init
		{cCL, cCL, cCW, cCE, cES, cSS, cSR, cSA, cCL}, // init_ack
		{cCL, cCL, cCL, cCL, cCL, cCL, cCL, cCL, cCL}, // abort
		{cCL, cCL, cCW, cCE, cSS, cSS, cSR, cSA, cCL}, // shutdown
		{cSA, cCL, cCW, cCE, cES, cSA, cSA, cSA, cSA}, // shutdown_ack
		{cCL, cCL, cCW, cCE, cES, cSS, cSR, cSA, cCL}, // error
		{cCL, cCL, cCE, cCE, cES, cSS, cSR, cSA, cCL}, // cookie_echo
		{cCL, cCL, cCW, cES, cES, cSS, cSR, cSA, cCL}, // cookie_ack
		{cCL, cCL, cCW, cCE, cES, cSS, cSR, cCL, cCL}, // shutdown_comp
		{cHS, cCL, cCW, cCE, cES, cSS, cSR, cSA, cHS}, // heartbeat
		{cCL, cCL, cCW, cCE, cES, cSS, cSR, cSA, cHS}, // heartbeat_ack
	},
	{ // REPLY
		// cNO, cCL, cCW, cCE, cES, cSS, cSR, cSA, cHS
		{cIV, cCL, cCW, cCE, cES, cSS, cSR, cSA, cIV}, // init
		{cIV, cCW, cCW, cCE, cES, cSS, cSR, cSA, cIV}, // init_ack
		{cIV, cCL, cCL, cCL, cCL, cCL, cCL, cCL, cIV}, // abort
		{cIV, cCL, cCW, cCE, cSR, cSS, cSR, cSA, cIV}, // shutdown
		{cIV, cCL, cCW, cCE, cES, cSA, cSA, cSA, cIV}, // shutdown_ack
		{cIV, cCL, cCW, cCL, cES, cSS, cSR, cSA, cIV}, // error
		{cIV, cCL, cCE, cCE, cES, cSS, cSR, cSA, cIV}, // cookie_echo
		{cIV, cCL, cCW, cES, cES, cSS, cSR, cSA, cIV}, // cookie_ack
		{cIV, cCL, cCW, cCE, cES, cSS, cSR, cCL, cIV}, // shutdown_comp
		{cIV, cCL, cCW, cCE, cES, cSS, cSR, cSA, cHS}, // heartbeat
		{cIV, cCL, cCW, cCE, cES, cSS, cSR, cSA, cES}, // heartbeat_ack
	},
}

// sctpChunkIndex maps a chunk type to its row of sctpConntracks; -1:
// DATA, SACK and the rest do not change the state.
func sctpChunkIndex(typ uint8) int {
	switch typ {
	case sctpInit:
		return 0
	case sctpInitAck:
		return 1
	case sctpAbort:
		return 2
	case sctpShutdown:
		return 3
	case sctpShutdownAck:
		return 4
	case sctpError:
		return 5
	case sctpCookieEcho:
		return 6
	case sctpCookieAck:
		return 7
	case sctpShutdownComplete:
		return 8
	case sctpHeartbeat:
		return 9
	case sctpHeartbeatAck:
		return 10
	}
	return -1
}

// sctpNewState is sctp_new_state.
func sctpNewState(dir Dir, cur SCTPState, typ uint8) SCTPState {
	i := sctpChunkIndex(typ)
	if i < 0 {
		return cur
	}
	return sctpConntracks[dir&1][i][cur]
}

// sctpChunk is one chunk header found by sctpWalk.
type sctpChunk struct {
	off   int // offset of the chunk header in the SCTP packet
	typ   uint8
	flags uint8
	len   uint16
}

// sctpNextChunk is one step of for_each_sctp_chunk: the chunk at off, or
// false when no whole chunk header starts there. The next chunk is at
// off + the length rounded up to 4.
func sctpNextChunk(l4 []byte, off int) (sctpChunk, bool) {
	if off < sctpHeaderLen || off+sctpChunkHeaderLen > len(l4) {
		return sctpChunk{}, false
	}
	return sctpChunk{off: off, typ: l4[off], flags: l4[off+1], len: binary.BigEndian.Uint16(l4[off+2:])}, true
}

func (ch sctpChunk) next() int { return ch.off + (int(ch.len)+3)&^3 }

// sctpBasicChecks is do_basic_checks: it walks the chunks, sets one bit
// per chunk type seen in m, and reports false (invalid) for a packet
// without chunks, a zero-length chunk, a COOKIE-ECHO or COOKIE-ACK that is
// not the first chunk, or an INIT, INIT-ACK or SHUTDOWN-COMPLETE that is
// not alone (any chunk after one is refused).
func sctpBasicChecks(l4 []byte, m *[4]uint64) bool {
	flag := false
	count := 0
	for off := sctpHeaderLen; ; count++ {
		ch, ok := sctpNextChunk(l4, off)
		if !ok {
			break
		}
		if ch.typ == sctpInit || ch.typ == sctpInitAck || ch.typ == sctpShutdownComplete {
			flag = true
		}
		if ((ch.typ == sctpCookieAck || ch.typ == sctpCookieEcho || flag) && count != 0) || ch.len == 0 {
			return false
		}
		m[ch.typ>>6] |= 1 << (ch.typ & 63)
		off = ch.next()
	}
	return count != 0
}

func sctpHas(m *[4]uint64, typ uint8) bool { return m[typ>>6]&(1<<(typ&63)) != 0 }

// sctpInitTag reads the initiate tag after the INIT/INIT-ACK chunk header
// at ch (skb_header_pointer on sctp_inithdr: the whole 16-byte header
// must be there).
func sctpInitTag(l4 []byte, ch sctpChunk) (uint32, bool) {
	o := ch.off + sctpChunkHeaderLen
	if o+16 > len(l4) {
		return 0, false
	}
	return binary.BigEndian.Uint32(l4[o:]), true
}

// sctpPacket is nf_conntrack_sctp_packet, sctp_error and sctp_new. It
// returns a reason when the packet is invalid (-NF_ACCEPT: no entry).
func (t *Table) sctpPacket(c *Conn, p *packet.Packet, info CtInfo, hook netfilter.Hook, now int64) invalidReason {
	l4 := p.L4
	// sctp_error
	if !p.HasL4 || len(l4) < sctpHeaderLen {
		return invTruncated
	}
	if hook == netfilter.PreRouting && t.cfg.Checksum && !p.CsumValid && !packet.SCTPChecksumOK(l4) {
		return invChecksum
	}
	vtag := binary.BigEndian.Uint32(l4[4:])
	var m [4]uint64
	if !sctpBasicChecks(l4, &m) {
		return invSCTPChunks
	}
	dir := info.Dir()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.proto.sctp()
	if !c.Confirmed() {
		// Out of the blue packets with these chunks are discarded (8.4).
		if sctpHas(&m, sctpAbort) || sctpHas(&m, sctpShutdownComplete) || sctpHas(&m, sctpCookieAck) {
			return invSCTPNew
		}
		if r := sctpNew(s, l4, vtag); r != invNone {
			return r
		}
	}
	// Verification tag (8.5) for packets without the special chunks.
	if !sctpHas(&m, sctpInit) && !sctpHas(&m, sctpShutdownComplete) && !sctpHas(&m, sctpCookieEcho) &&
		!sctpHas(&m, sctpAbort) && !sctpHas(&m, sctpShutdownAck) && !sctpHas(&m, sctpHeartbeat) &&
		!sctpHas(&m, sctpHeartbeatAck) && vtag != s.vtag[dir] {
		return invSCTPVtag
	}
	oldState, newState := SCTPNone, SCTPNone
	ignore := false
	for off := sctpHeaderLen; ; {
		ch, ok := sctpNextChunk(l4, off)
		if !ok {
			break
		}
		off = ch.next()
		switch ch.typ {
		case sctpInit:
			if vtag != 0 { // 8.5.1 (A)
				return invSCTPVtag
			}
		case sctpAbort, sctpShutdownComplete: // 8.5.1 (B), (C)
			want := s.vtag[dir]
			if ch.flags&sctpFlagT != 0 {
				want = s.vtag[dir^1]
			}
			if vtag != want {
				return invSCTPVtag
			}
		case sctpCookieEcho: // (D)
			if vtag != s.vtag[dir] {
				return invSCTPVtag
			}
		case sctpCookieAck:
			s.init = [2]bool{}
		case sctpHeartbeat:
			switch {
			case s.vtag[dir] == 0:
				s.vtag[dir] = vtag
			case vtag != s.vtag[dir]:
				if sctpHas(&m, sctpData) || ignore {
					return invSCTPVtag
				}
				s.flags |= sctpHeartbeatVtagFail
				s.lastDir = dir
				ignore = true
				continue
			default:
				s.flags &^= sctpHeartbeatVtagFail
			}
		case sctpHeartbeatAck:
			switch {
			case s.vtag[dir] == 0:
				s.vtag[dir] = vtag
			case vtag != s.vtag[dir]:
				if sctpHas(&m, sctpData) || ignore {
					return invSCTPVtag
				}
				if s.flags&sctpHeartbeatVtagFail == 0 || s.lastDir == dir {
					return invSCTPVtag
				}
				s.flags &^= sctpHeartbeatVtagFail
				s.vtag[dir] = vtag
				s.vtag[dir^1] = 0
			default:
				s.flags &^= sctpHeartbeatVtagFail
			}
		}
		oldState = s.state
		newState = sctpNewState(dir, oldState, ch.typ)
		if newState == sctpMax {
			return invSCTPState
		}
		switch ch.typ {
		case sctpInit:
			tag, ok := sctpInitTag(l4, ch)
			if !ok {
				return invTruncated
			}
			// A stale or retransmitted INIT (its tag already the
			// peer's) is not recorded.
			if oldState == SCTPNone || s.vtag[dir^1] != tag {
				if s.init[dir] && s.init[dir^1] {
					s.init[dir^1] = false
				}
				s.init[dir] = true
			}
			s.vtag[dir^1] = tag
			// an INIT retransmitted on a closed entry does not renew
			// its timeout
			if newState == SCTPClosed && oldState == SCTPClosed && c.Confirmed() {
				ignore = true
			}
		case sctpInitAck:
			tag, ok := sctpInitTag(l4, ch)
			if !ok {
				return invTruncated
			}
			v := s.vtag[dir^1]
			if !s.init[dir^1] && v != 0 && v != tag {
				return invSCTPVtag
			}
			if s.init[dir] && s.init[dir^1] && v != tag { // collision
				return invSCTPVtag
			}
			s.vtag[dir^1] = tag
		}
		s.state = newState
		if oldState != newState {
			t.cacheEvent(c, ecacheProtoinfo)
			if newState == SCTPEstablished && c.Status()&StatusAssured == 0 {
				c.SetStatus(StatusAssured)
				t.cacheEvent(c, ecacheAssured)
			}
		}
	}
	if ignore {
		return invNone
	}
	c.refresh(t.sctpTimeout(newState), now)
	return invNone
}

// sctpNew is sctp_new: the state of an entry a packet creates, from its
// chunks in the original direction.
func sctpNew(s *sctpState, l4 []byte, vtag uint32) invalidReason {
	*s = sctpState{}
	for off := sctpHeaderLen; ; {
		ch, ok := sctpNextChunk(l4, off)
		if !ok {
			break
		}
		off = ch.next()
		ns := sctpNewState(Original, SCTPNone, ch.typ)
		if ns == SCTPNone || ns == sctpMax {
			return invSCTPNew
		}
		switch ch.typ {
		case sctpInit:
			if vtag != 0 { // 8.5.1 (A)
				return invSCTPVtag
			}
			tag, ok := sctpInitTag(l4, ch)
			if !ok {
				return invTruncated
			}
			s.vtag[Reply] = tag
		case sctpHeartbeat:
			s.vtag[Original] = vtag // a secondary path's entry
		case sctpShutdownAck:
			// out of the blue: a SHUTDOWN COMPLETE is expected back
			s.vtag[Reply] = vtag
		}
		s.state = SCTPNone
	}
	return invNone
}

// sctpTimeout is timeouts[state] (state NONE takes CLOSED's).
func (t *Table) sctpTimeout(s SCTPState) int64 {
	c := &t.cfg
	switch s {
	case SCTPCookieWait:
		return int64(c.SCTPTimeoutCookieWait)
	case SCTPCookieEchoed:
		return int64(c.SCTPTimeoutCookieEchoed)
	case SCTPEstablished:
		return int64(c.SCTPTimeoutEstablished)
	case SCTPShutdownSent:
		return int64(c.SCTPTimeoutShutdownSent)
	case SCTPShutdownRecd:
		return int64(c.SCTPTimeoutShutdownRecd)
	case SCTPShutdownAckSent:
		return int64(c.SCTPTimeoutShutdownAckSent)
	case SCTPHeartbeatSent:
		return int64(c.SCTPTimeoutHeartbeatSent)
	}
	return int64(c.SCTPTimeoutClosed)
}

// sctpCanEarlyDrop is sctp_can_early_drop.
func sctpCanEarlyDrop(s SCTPState) bool {
	return s == SCTPShutdownSent || s == SCTPShutdownRecd || s == SCTPShutdownAckSent
}

// SCTPState returns the SCTP tracker's state (SCTPNone for other
// protocols).
func (c *Conn) SCTPState() SCTPState {
	if c.th[0].tuple.Proto != packet.ProtoSCTP {
		return SCTPNone
	}
	c.mu.Lock()
	s := c.proto.sctp().state
	c.mu.Unlock()
	return s
}

// SCTPVtags returns the verification tags expected in each direction.
func (c *Conn) SCTPVtags() (orig, reply uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.proto.sctp()
	return s.vtag[Original], s.vtag[Reply]
}
