package lvs

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Protocol numbers of the services IPVS balances (IPPROTO_*).
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// FwdMethod is how a destination is reached (IP_VS_CONN_F_FWD_MASK,
// include/uapi/linux/ip_vs.h).
type FwdMethod uint8

const (
	Masq      FwdMethod = 0 // NAT: destination rewritten to the real server
	LocalNode FwdMethod = 1 // the director itself serves
	Tunnel    FwdMethod = 2 // IP-in-IP (or GUE/GRE) encapsulation
	Route     FwdMethod = 3 // direct routing: only the MAC changes
	Bypass    FwdMethod = 4
)

var fwdNames = [...]string{"Masq", "Local", "Tunnel", "Route", "Bypass"}

// String is the name ipvsadm -L prints in the Forward column.
func (m FwdMethod) String() string {
	if int(m) < len(fwdNames) {
		return fwdNames[m]
	}
	return fmt.Sprintf("fwd(%d)", m)
}

// TunType is the encapsulation of a Tunnel destination (IP_VS_CONN_F_TUNNEL_TYPE_*).
type TunType uint8

const (
	TunIPIP TunType = 0
	TunGUE  TunType = 1
	TunGRE  TunType = 2
)

var tunNames = [...]string{"ipip", "gue", "gre"}

func (t TunType) String() string {
	if int(t) < len(tunNames) {
		return tunNames[t]
	}
	return fmt.Sprintf("tun(%d)", t)
}

// Tunnel flags (IP_VS_TUNNEL_ENCAP_FLAG_*).
const (
	TunFlagNoCsum  uint16 = 0
	TunFlagCsum    uint16 = 1 << 0
	TunFlagRemCsum uint16 = 1 << 1
)

// Service flags (IP_VS_SVC_F_*, include/uapi/linux/ip_vs.h).
const (
	SvcPersistent uint32 = 0x0001
	SvcHashed     uint32 = 0x0002
	SvcOnePacket  uint32 = 0x0004
	SvcSched1     uint32 = 0x0008 // sh-fallback / mh-fallback
	SvcSched2     uint32 = 0x0010 // sh-port / mh-port
	SvcSched3     uint32 = 0x0020
)

// Destination flags (IP_VS_DEST_F_*).
const (
	DestAvailable uint32 = 0x0001
	DestOverload  uint32 = 0x0002
)

// DefaultPersistTimeout is ipvsadm's -p default (IPVS_SVC_PERSISTENT_TIMEOUT).
const DefaultPersistTimeout = 360

// ServiceKey names a virtual service: <protocol, VIP, port> or a
// firewall mark (FwMark != 0, the other fields zero).
type ServiceKey struct {
	FwMark uint32
	Addr   uint32 // host order
	Port   uint16
	Proto  uint8
}

// String is the service as ipvsadm -Ln names it: "TCP  10.0.0.1:80" or
// "FWM  1".
func (k ServiceKey) String() string {
	if k.FwMark != 0 {
		return fmt.Sprintf("FWM  %d", k.FwMark)
	}
	return fmt.Sprintf("%-4s %s:%d", ProtoName(k.Proto), Addr(k.Addr), k.Port)
}

// ProtoName is ipvsadm's protocol column.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("%d", p)
}

// Addr converts a host-order IPv4 address.
func Addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// U32 converts an IPv4 address to host order.
func U32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Stats are the counters ipvsadm --stats prints (struct ip_vs_kstats):
// packets and bytes in each direction and connections, counted as the
// kernel counts them (ip_vs_in_stats, ip_vs_out_stats, ip_vs_conn_stats).
type Stats struct {
	Conns    atomic.Uint64
	InPkts   atomic.Uint64
	OutPkts  atomic.Uint64
	InBytes  atomic.Uint64
	OutBytes atomic.Uint64

	est estimator
}

// StatsSnapshot is a copy of Stats at one moment.
type StatsSnapshot struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// Snapshot reads the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{s.Conns.Load(), s.InPkts.Load(), s.OutPkts.Load(), s.InBytes.Load(), s.OutBytes.Load()}
}

// RateSnapshot is the rate estimator's view (ip_vs_est.c: per-second
// rates, ipvsadm --rate): connections/s, packets/s and bytes/s.
type RateSnapshot struct {
	CPS, InPPS, OutPPS, InBPS, OutBPS uint64
}

// Service is one virtual service and its real servers.
//
// Its configuration fields are written only under the Director's lock
// while the service is not yet published, or by the control plane through
// Director methods; the datapath reads them.
type Service struct {
	ServiceKey
	// SchedName is the scheduler's name ("wlc", "rr", ...).
	SchedName string
	// Flags are IP_VS_SVC_F_*.
	Flags uint32
	// Timeout is the persistence timeout in seconds (with SvcPersistent).
	Timeout uint32
	// Netmask is the persistence netmask (host order; 0xffffffff = /32).
	Netmask uint32
	// PE is the persistence engine name ("sip"), unused by the datapath.
	PE string

	// Dests are the real servers in the order of the kernel's
	// svc->destinations list: each added one goes to the head, so the
	// newest is first; -e keeps a dest's place.
	Dests []*Dest

	// Sched is the scheduler instance bound to the service.
	Sched Scheduler

	Stats Stats
	Rate  RateSnapshot

	// next is the copy that replaced this service (-E, -a, -e, -d copy
	// the service): connections made before count into the newest.
	next atomic.Pointer[Service]
}

// current follows the chain of replacements to the live copy.
func (svc *Service) current() *Service {
	for {
		n := svc.next.Load()
		if n == nil {
			return svc
		}
		svc = n
	}
}

// Dest is one real server of a service.
type Dest struct {
	Addr uint32
	Port uint16
	// params are the forwarding method, thresholds and tunnel; -e
	// replaces them whole while packets read them (P).
	params atomic.Pointer[DestParams]
	// Weight: 0 takes no new connections (quiesced).
	Weight atomic.Int32

	// Flags are IP_VS_DEST_F_*.
	Flags atomic.Uint32
	// ActiveConns, InactConns and PersistConns are the counts ipvsadm
	// shows (ip_vs_bind_dest/unbind_dest, set_tcp_state).
	ActiveConns  atomic.Int32
	InactConns   atomic.Int32
	PersistConns atomic.Int32

	// LastWeight is the weight before the dest was last edited (lblcr
	// and friends read it); kept as the kernel keeps dest->last_weight.
	LastWeight atomic.Int32

	Stats Stats
	Rate  RateSnapshot

	// Svc is the service the dest belongs to (nil once removed).
	Svc atomic.Pointer[Service]
}

// DestParams are what -a and -e set on a dest besides its weight.
type DestParams struct {
	// Fwd is the forwarding method (IP_VS_CONN_F_FWD_MASK).
	Fwd FwdMethod
	// UThreshold/LThreshold are the upper/lower connection thresholds
	// (0 = none): at total >= upper the dest is overloaded until total
	// falls below lower (or 3/4 of upper when lower is 0).
	UThreshold, LThreshold uint32
	TunType                TunType
	TunPort                uint16
	TunFlags               uint16
}

var noParams DestParams

// P is the dest's current parameters (all zero before any were set).
func (d *Dest) P() *DestParams {
	if p := d.params.Load(); p != nil {
		return p
	}
	return &noParams
}

// SetParams replaces the dest's parameters.
func (d *Dest) SetParams(p DestParams) { d.params.Store(&p) }

// Available is the scheduler's test that a dest can take a new
// connection: weight > 0 and not overloaded (every scheduler skips
// IP_VS_DEST_F_OVERLOAD and weight-0 dests).
func (d *Dest) Available() bool {
	return d.Weight.Load() > 0 && d.Flags.Load()&DestOverload == 0
}

// Overhead is the lc/wlc cost: activeconns*256 + inactconns
// (ip_vs_dest_conn_overhead).
func (d *Dest) Overhead() int64 {
	return int64(d.ActiveConns.Load())<<8 + int64(d.InactConns.Load())
}

// TotalConns is activeconns + inactconns + persistconns
// (ip_vs_dest_totalconns), compared with the thresholds.
func (d *Dest) TotalConns() int64 {
	return int64(d.ActiveConns.Load()) + int64(d.InactConns.Load()) + int64(d.PersistConns.Load())
}

// AddrPort is the dest as "a.b.c.d:port".
func (d *Dest) AddrPort() netip.AddrPort { return netip.AddrPortFrom(Addr(d.Addr), d.Port) }

// Flow is what a scheduler may look at in the packet that opens a
// connection (the kernel passes the skb and its parsed ip_vs_iphdr).
type Flow struct {
	Proto        uint8
	Src, Dst     uint32
	SPort, DPort uint16
	// Now is the time in monotonic nanoseconds (lblc/lblcr ageing).
	Now int64
	// Rand is the random source (twos); deterministic from the seed.
	Rand func() uint32
}

// Scheduler is one IPVS scheduling module (struct ip_vs_scheduler).
//
// Schedule runs in the datapath and may be called from several workers
// at once: an implementation guards its own state. Update is called by
// the control plane after the service's destination list or a weight
// changed (the kernel's add_dest/upd_dest/del_dest callbacks), before
// the change is visible to Schedule.
type Scheduler interface {
	Name() string
	// Schedule picks the destination of a new connection, or nil when
	// none is available (the kernel then answers "no destination
	// available" and drops, or bypasses for a cache cluster).
	Schedule(svc *Service, f *Flow) *Dest
	// Update re-reads svc.Dests and the weights.
	Update(svc *Service)
}

// SchedulerFactory makes a scheduler instance for one service.
type SchedulerFactory func(svc *Service) Scheduler

var schedulers = map[string]SchedulerFactory{}

// RegisterScheduler adds a scheduler module by name (as
// register_ip_vs_scheduler).
func RegisterScheduler(name string, f SchedulerFactory) { schedulers[name] = f }

// NewScheduler makes the named scheduler for svc.
func NewScheduler(name string, svc *Service) (Scheduler, error) {
	f, ok := schedulers[name]
	if !ok {
		return nil, fmt.Errorf("scheduler %q not found", name)
	}
	return f(svc), nil
}

// SchedulerNames lists the registered schedulers.
func SchedulerNames() []string {
	var n []string
	for k := range schedulers {
		n = append(n, k)
	}
	return n
}
