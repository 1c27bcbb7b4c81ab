package lvs

import (
	"sync"
	"sync/atomic"
)

// Connection flags (IP_VS_CONN_F_*, include/uapi/linux/ip_vs.h). The low
// bits are the forwarding method.
const (
	ConnFwdMask   uint32 = 0x0007
	ConnHashed    uint32 = 0x0040
	ConnNoOutput  uint32 = 0x0080
	ConnInactive  uint32 = 0x0100
	ConnOutSeq    uint32 = 0x0200
	ConnInSeq     uint32 = 0x0400
	ConnSeqMask   uint32 = 0x0600
	ConnNoCPort   uint32 = 0x0800
	ConnTemplate  uint32 = 0x1000
	ConnOnePacket uint32 = 0x2000
	ConnNFCT      uint32 = 1 << 16 // use netfilter conntrack
	ConnDestMask  uint32 = ConnFwdMask | ConnOnePacket | ConnNoOutput | ConnNFCT
)

// TCP states of an IPVS connection (IP_VS_TCP_S_*, ip_vs_proto_tcp.c).
const (
	TCPNone uint8 = iota
	TCPEstablished
	TCPSynSent
	TCPSynRecv
	TCPFinWait
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPSynAck
	tcpLast
)

var tcpStateNames = [...]string{"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
	"CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK"}

// UDP has one state (IP_VS_UDP_S_NORMAL) named "UDP"; the SCTP states
// are in sctp.go.
const udpNormal uint8 = 0

// States of a persistence template (IP_VS_CTPL_S_*): ASSURED once a
// connection it controls reached ESTABLISHED (ip_vs_control_assure_ct).
const (
	tmplNone    uint8 = 0
	tmplAssured uint8 = 1
)

// Conn is one IPVS connection (struct ip_vs_conn): client, virtual and
// destination address/port, the dest it is bound to and its state.
//
// The addresses and ports are fixed at creation. State, Flags' INACTIVE
// and NOOUTPUT bits, the timeout and the expiry are written under mu by
// whichever worker handles a packet of the connection.
type Conn struct {
	Proto        uint8
	CAddr, VAddr uint32
	DAddr        uint32
	CPort, VPort uint16
	DPort        uint16
	// FwMark is the service mark of a fwmark template (the kernel keeps
	// it in vaddr).
	FwMark uint32

	mu    sync.Mutex
	flags atomic.Uint32
	state atomic.Uint32
	// timeout is the current state's timeout, ns
	timeout atomic.Int64
	// expires: monotonic ns
	expires atomic.Int64
	// InPkts counts packets from the client (sync threshold in the
	// kernel; here only for -Lnc --stats)
	InPkts atomic.Uint64

	// Dest is the real server (nil for a connection whose dest is gone).
	Dest *Dest
	// Control is the persistence template that created this connection.
	Control *Conn
	// nControlled counts connections whose Control is this template
	// (a template does not expire while it controls some).
	nControlled atomic.Int32
	// svc is the service (for stats); may be nil after -D
	svc *Service
	// tkey is a template's key in the template map
	tkey connKey
	// dead: removed from the table
	dead atomic.Bool
}

// Flags are the IP_VS_CONN_F_* bits.
func (c *Conn) Flags() uint32 { return c.flags.Load() }

// Fwd is the connection's forwarding method.
func (c *Conn) Fwd() FwdMethod { return FwdMethod(c.flags.Load() & ConnFwdMask) }

// State is the protocol state (TCP*, or 0 for UDP).
func (c *Conn) State() uint8 { return uint8(c.state.Load()) }

// StateName is what ipvsadm -Lnc prints in the state column.
func (c *Conn) StateName() string {
	if c.Template() {
		// ip_vs_state_name: ip_vs_ctpl_state_name_table
		switch c.State() {
		case tmplNone:
			return "NONE"
		case tmplAssured:
			return "ASSURED"
		}
		return "ERR!"
	}
	switch c.Proto {
	case ProtoTCP:
		s := c.State()
		if int(s) < len(tcpStateNames) {
			return tcpStateNames[s]
		}
		return "ERR!"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return sctpStateName(c.State())
	}
	return "NONE"
}

// Template reports whether this is a persistence template.
func (c *Conn) Template() bool { return c.flags.Load()&ConnTemplate != 0 }

// Expires is the time left before the connection expires, ns.
func (c *Conn) Expires(now int64) int64 {
	if d := c.expires.Load() - now; d > 0 {
		return d
	}
	return 0
}

// assureControl is ip_vs_control_assure_ct: the template controlling a
// connection that became ESTABLISHED is ASSURED (cp.mu held; the
// template's state is written only here, and only ever to ASSURED).
func (c *Conn) assureControl() {
	if ct := c.Control; ct != nil && ct.Template() {
		ct.state.Store(uint32(tmplAssured))
	}
}
