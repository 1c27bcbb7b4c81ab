package lvs

import (
	"encoding/binary"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// SCTP in IPVS, as net/netfilter/ipvs/ip_vs_proto_sctp.c (6.x) handles
// it: the first chunk of a packet is its event (sctp_events), the event
// moves the connection through sctp_states (INPUT, OUTPUT, INPUT-ONLY),
// each state has its timeout (sctp_timeouts, which ipvsadm --set does not
// change), and the dest's active/inactive counts move when a connection
// enters or leaves ESTABLISHED.
//
// The states are the real server's view of the association (the
// kernel's comment): INIT1 and INIT while the client's INIT waits for an
// answer, C-SENT and C-REPLIED for the cookie exchange the client
// started, C-WAIT, COOKIE and C-ECHOED when the real server initiates,
// REJECTED after an ABORT answers an INIT (a short timeout):
//
//	client INIT ──► INIT1 ─INIT(again)─► INIT
//	   server INIT-ACK ──► C-SENT ─client COOKIE-ECHO─► C-REPLIED
//	   server COOKIE-ACK ──► ESTABLISHED ─SHUTDOWN─► S-SENT / S-RECEIVED
//	   ─SHUTDOWN-ACK─► S-ACK-SENT ─SHUTDOWN-COMPLETE─► CLOSED
//	ABORT ──► CLOSED (REJECTED from INIT1 or C-WAIT)
//
// The whole table is sctpStates below; ipvsadm -Lnc prints the kernel's
// names (sctp_state_name_table) as /proc/net/ip_vs_conn gives them.

// SCTP states of an IPVS connection (enum ip_vs_sctp_states,
// include/net/ip_vs.h).
const (
	SCTPNone uint8 = iota
	SCTPInit1
	SCTPInit
	SCTPCookieSent
	SCTPCookieReplied
	SCTPCookieWait
	SCTPCookie
	SCTPCookieEchoed
	SCTPEstablished
	SCTPShutdownSent
	SCTPShutdownReceived
	SCTPShutdownAckSent
	SCTPRejected
	SCTPClosed
	sctpLast
)

// sctpStateNames is sctp_state_name_table.
var sctpStateNames = [sctpLast]string{"NONE", "INIT1", "INIT", "C-SENT", "C-REPLIED", "C-WAIT", "COOKIE",
	"C-ECHOED", "ESTABLISHED", "S-SENT", "S-RECEIVED", "S-ACK-SENT", "REJECTED", "CLOSED"}

// sctpStateName is sctp_state_name: "ERR!" past the last state.
func sctpStateName(s uint8) string {
	if s >= sctpLast {
		return "ERR!"
	}
	return sctpStateNames[s]
}

// SCTP chunk types (RFC 9260 section 3.2) IPVS looks at.
const (
	sctpChunkData             = 0
	sctpChunkInit             = 1
	sctpChunkInitAck          = 2
	sctpChunkSack             = 3
	sctpChunkHeartbeat        = 4
	sctpChunkHeartbeatAck     = 5
	sctpChunkAbort            = 6
	sctpChunkShutdown         = 7
	sctpChunkShutdownAck      = 8
	sctpChunkError            = 9
	sctpChunkCookieEcho       = 10
	sctpChunkCookieAck        = 11
	sctpChunkECNE             = 12
	sctpChunkCWR              = 13
	sctpChunkShutdownComplete = 14

	sctpHeaderLen      = packet.SCTPHeaderLen // ports, vtag, checksum
	sctpChunkHeaderLen = 4
)

// Events of the state table (enum ipvs_sctp_event_t).
const (
	sctpEvData = iota // DATA, SACK, HEARTBEATs, ECN and unknown chunks
	sctpEvInit
	sctpEvInitAck
	sctpEvCookieEcho
	sctpEvCookieAck
	sctpEvShutdown
	sctpEvShutdownAck
	sctpEvShutdownComplete
	sctpEvError
	sctpEvAbort
	sctpEvLast
)

// sctpEvents is sctp_events: a chunk type's event. The array ends at
// SHUTDOWN COMPLETE; types past it, and the ones it leaves out (AUTH,
// ASCONF, FORWARD TSN, ...), are DATA.
var sctpEvents = [sctpChunkShutdownComplete + 1]uint8{
	sctpChunkData:             sctpEvData,
	sctpChunkInit:             sctpEvInit,
	sctpChunkInitAck:          sctpEvInitAck,
	sctpChunkSack:             sctpEvData,
	sctpChunkHeartbeat:        sctpEvData,
	sctpChunkHeartbeatAck:     sctpEvData,
	sctpChunkAbort:            sctpEvAbort,
	sctpChunkShutdown:         sctpEvShutdown,
	sctpChunkShutdownAck:      sctpEvShutdownAck,
	sctpChunkError:            sctpEvError,
	sctpChunkCookieEcho:       sctpEvCookieEcho,
	sctpChunkCookieAck:        sctpEvCookieAck,
	sctpChunkECNE:             sctpEvData,
	sctpChunkCWR:              sctpEvData,
	sctpChunkShutdownComplete: sctpEvShutdownComplete,
}

const (
	sNO = SCTPNone
	sI1 = SCTPInit1
	sIN = SCTPInit
	sCS = SCTPCookieSent
	sCR = SCTPCookieReplied
	sCW = SCTPCookieWait
	sCO = SCTPCookie
	sCE = SCTPCookieEchoed
	sES = SCTPEstablished
	sSS = SCTPShutdownSent
	sSR = SCTPShutdownReceived
	sSA = SCTPShutdownAckSent
	sRJ = SCTPRejected
	sCL = SCTPClosed
)

// sctpStates is sctp_states[direction][event][state] of
// ip_vs_proto_sctp.c: INPUT (client to real server), OUTPUT (real
// server's replies, VS/NAT), INPUT-ONLY (client packets of a connection
// that has seen no reply: DR/TUN, IP_VS_CONN_F_NOOUTPUT).
var sctpStates = [3][sctpEvLast][sctpLast]uint8{
	{ // INPUT
		//  sNO, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL
		{sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // data
		{sI1, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN}, // init
		{sCW, sCW, sCW, sCS, sCR, sCO, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // init_ack
		{sCR, sIN, sIN, sCR, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_echo
		{sES, sI1, sIN, sCS, sCR, sCW, sCO, sES, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_ack
		{sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL}, // shutdown
		{sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sCL, sSR, sCL, sRJ, sCL}, // shutdown_ack
		{sCL, sCL, sCL, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sCL, sRJ, sCL}, // shutdown_complete
		{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCL, sES, sSS, sSR, sSA, sRJ, sCL}, // error
		{sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL}, // abort
	},
	{ // OUTPUT
		//  sNO, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL
		{sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // data
		{sCW, sCW, sCW, sCW, sCW, sCW, sCW, sCW, sES, sCW, sCW, sCW, sCW, sCW}, // init
		{sCS, sCS, sCS, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // init_ack
		{sCE, sCE, sCE, sCE, sCE, sCE, sCE, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_echo
		{sES, sES, sES, sES, sES, sES, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_ack
		{sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSR, sSA, sRJ, sCL}, // shutdown
		{sSA, sSA, sSA, sSA, sSA, sCW, sCO, sCE, sES, sSA, sSA, sSA, sRJ, sCL}, // shutdown_ack
		{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // shutdown_complete
		{sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // error
		{sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL}, // abort
	},
	{ // INPUT-ONLY
		//  sNO, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL
		{sES, sI1, sIN, sCS, sCR, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // data
		{sI1, sIN, sIN, sIN, sIN, sIN, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN}, // init
		{sCE, sCE, sCE, sCE, sCE, sCE, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // init_ack
		{sES, sES, sES, sES, sES, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_echo
		{sES, sI1, sIN, sES, sES, sCW, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL}, // cookie_ack
		{sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL}, // shutdown
		{sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sCL, sCL, sSR, sCL, sRJ, sCL}, // shutdown_ack
		{sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sCL, sCL, sRJ, sCL}, // shutdown_complete
		{sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL}, // error
		{sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL}, // abort
	},
}

// sctpMaxRTO is IP_VS_SCTP_MAX_RTO: (60 + 1) s.
const sctpMaxRTO = 61 * time.Second

// sctpTimeouts is sctp_timeouts, per state. ipvsadm --set does not reach
// them (ip_vs_set_timeout changes TCP and UDP only).
var sctpTimeouts = [sctpLast]time.Duration{
	SCTPNone:             2 * time.Second,
	SCTPInit1:            (0 + 3 + 1) * time.Second,
	SCTPInit:             sctpMaxRTO,
	SCTPCookieSent:       sctpMaxRTO,
	SCTPCookieReplied:    sctpMaxRTO,
	SCTPCookieWait:       sctpMaxRTO,
	SCTPCookie:           sctpMaxRTO,
	SCTPCookieEchoed:     sctpMaxRTO,
	SCTPEstablished:      15 * 60 * time.Second,
	SCTPShutdownSent:     sctpMaxRTO,
	SCTPShutdownReceived: sctpMaxRTO,
	SCTPShutdownAckSent:  sctpMaxRTO,
	SCTPRejected:         (0 + 3 + 1) * time.Second,
	SCTPClosed:           sctpMaxRTO,
}

// sctpFirstChunk returns the type of the chunk after the common header,
// false when fewer than 16 bytes are there (skb_header_pointer on the
// chunk header fails).
func sctpFirstChunk(l4 []byte) (uint8, bool) {
	if len(l4) < sctpHeaderLen+sctpChunkHeaderLen {
		return 0, false
	}
	return l4[sctpHeaderLen], true
}

// sctpEvent is the event set_sctp_state derives from a packet: the first
// chunk's, except that a COOKIE ECHO or COOKIE ACK followed by an ABORT
// is the ABORT (RFC 9260 3.3.7: control chunks may precede an ABORT).
// false: no whole chunk header, no transition.
func sctpEvent(l4 []byte) (int, bool) {
	typ, ok := sctpFirstChunk(l4)
	if !ok {
		return 0, false
	}
	if typ == sctpChunkCookieEcho || typ == sctpChunkCookieAck {
		clen := int(binary.BigEndian.Uint16(l4[sctpHeaderLen+2:]))
		if clen >= sctpChunkHeaderLen {
			next := sctpHeaderLen + (clen+3)&^3
			if next+sctpChunkHeaderLen <= len(l4) && l4[next] == sctpChunkAbort {
				typ = sctpChunkAbort
			}
		}
	}
	if int(typ) < len(sctpEvents) {
		return int(sctpEvents[typ]), true
	}
	return sctpEvData, true
}

// sctpSetState is set_sctp_state under the connection's lock.
func (cp *Conn) sctpSetState(dir int, l4 []byte) {
	ev, ok := sctpEvent(l4)
	if !ok {
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	// INPUT-ONLY until the first reply is seen; the first reply clears
	// NOOUTPUT for good
	if cp.flags.Load()&ConnNoOutput != 0 {
		if dir == dirOutput {
			cp.flags.And(^ConnNoOutput)
		} else {
			dir = dirInputOnly
		}
	}
	cur := uint8(cp.state.Load())
	if cur >= sctpLast {
		// never stored: states come from the table
		return
	}
	next := sctpStates[dir][ev][cur]
	if next != cur {
		cp.moveActive(next == SCTPEstablished)
		if next == SCTPEstablished {
			cp.assureControl()
		}
	}
	cp.state.Store(uint32(next))
	cp.timeout.Store(int64(sctpTimeouts[next]))
}

// moveActive moves the connection between the dest's active and
// inactive counts as the protocols' set_state do on a state change
// (IP_VS_CONN_F_INACTIVE; cp.mu held).
func (cp *Conn) moveActive(active bool) {
	dest := cp.Dest
	if dest == nil {
		return
	}
	fl := cp.flags.Load()
	if fl&ConnInactive == 0 && !active {
		dest.ActiveConns.Add(-1)
		dest.InactConns.Add(1)
		cp.flags.Or(ConnInactive)
	} else if fl&ConnInactive != 0 && active {
		dest.ActiveConns.Add(1)
		dest.InactConns.Add(-1)
		cp.flags.And(^ConnInactive)
	}
}

// sctpScheduleVerdict is the first half of sctp_conn_schedule for a
// packet without a connection: sched reports whether it may create one
// (an INIT first chunk, or with sloppy_sctp any first chunk but ABORT);
// drop reports a packet too short for the common and a chunk header,
// which the kernel drops (NF_DROP: no ports to look the service up
// with).
func sctpScheduleVerdict(l4 []byte, sloppy bool) (sched, drop bool) {
	typ, ok := sctpFirstChunk(l4)
	if !ok {
		return false, true
	}
	if typ == sctpChunkAbort || !(sloppy || typ == sctpChunkInit) {
		return false, false
	}
	return true, false
}

// sctpIsInit is is_new_conn for SCTP: the first chunk is an INIT.
func sctpIsInit(l4 []byte) bool {
	typ, ok := sctpFirstChunk(l4)
	return ok && typ == sctpChunkInit
}
