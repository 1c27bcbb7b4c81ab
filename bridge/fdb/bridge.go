package fdb

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// MaxPorts is BR_MAX_PORTS (1 << BR_PORT_BITS, net/bridge/br_private.h).
const MaxPorts = 1024

// BridgePort is the port number of the bridge device itself: the port of
// the bridge's own local entry (an FDB entry whose dst is NULL).
const BridgePort = -1

// DefaultAgeingTime is BR_DEFAULT_AGEING_TIME, 300 s (include/linux/if_bridge.h
// via br_private.h), in nanoseconds.
const DefaultAgeingTime = int64(300e9)

// PortFlags are a port's BR_* flags (include/linux/if_bridge.h) that
// change forwarding; `bridge link set dev X NAME on|off` sets them.
type PortFlags uint32

// The port flags.
const (
	// Learning is BR_LEARNING ("learning"): source addresses seen on the
	// port are learned.
	Learning PortFlags = 1 << iota
	// Flood is BR_FLOOD ("flood"): unknown unicast is flooded to the port.
	Flood
	// McastFlood is BR_MCAST_FLOOD ("mcast_flood"): multicast is flooded
	// to the port.
	McastFlood
	// BcastFlood is BR_BCAST_FLOOD ("bcast_flood"): broadcast is flooded
	// to the port.
	BcastFlood
	// Hairpin is BR_HAIRPIN_MODE ("hairpin"): frames may leave by the port
	// they came in on (should_deliver, br_forward.c).
	Hairpin
	// Isolated is BR_ISOLATED ("isolated"): frames from an isolated port
	// are not delivered to another isolated port (br_skb_isolated).
	Isolated
)

// DefaultPortFlags are a new port's flags (new_nbp in br_if.c: BR_LEARNING
// | BR_FLOOD | BR_MCAST_FLOOD | BR_BCAST_FLOOD; `bridge -d link show`:
// learning on flood on mcast_flood on bcast_flood on, hairpin off).
const DefaultPortFlags = Learning | Flood | McastFlood | BcastFlood

// String lists the flags that are on, as `bridge -d link` names them.
func (f PortFlags) String() string {
	names := []string{"learning", "flood", "mcast_flood", "bcast_flood", "hairpin", "isolated"}
	var b []byte
	for i, n := range names {
		if f&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, n...)
		}
	}
	return string(b)
}

// PortConfig is one bridge port.
type PortConfig struct {
	// Name is the port device's name, Index its ifindex (what `bridge fdb
	// show` prints and orders by).
	Name  string
	Index int
	// MAC is the port device's address: a local (permanent) FDB entry.
	MAC   packet.MAC
	Flags PortFlags
	// Self is the device's own address list (dev->uc and dev->mc) that
	// `bridge fdb show` prints as "self permanent" after the port's master
	// entries; nil is DefaultSelf(MAC, false).
	Self []packet.MAC
}

// Config is a bridge device and its ports, in the order they were added.
type Config struct {
	Name  string
	Index int
	// MAC is the bridge's address when MACSet (`ip link set br0 address`,
	// NET_ADDR_SET); otherwise the bridge takes its lowest port address
	// (br_stp_recalculate_bridge_id, br_stp_if.c) and MAC is used only
	// when there is no port.
	MAC    packet.MAC
	MACSet bool
	// AgeingTime in nanoseconds; 0 is DefaultAgeingTime unless
	// AgeingZero (ageing_time 0: never learn, always flood).
	AgeingTime int64
	AgeingZero bool
	// GroupFwdMask is group_fwd_mask: bit n forwards 01:80:c2:00:00:0n
	// instead of passing it up (bit 1, pause, cannot be set in the kernel).
	GroupFwdMask uint16
	// MaxLearned is fdb_max_learned: at most this many learned entries
	// (0: no limit, the default).
	MaxLearned uint32
	// Promisc is the bridge device in promiscuous mode: every frame also
	// goes up (local_rcv = promisc in br_handle_frame_finish).
	Promisc bool
	// Self is the bridge device's own address list (see PortConfig.Self);
	// nil is DefaultSelf(the bridge's MAC, true).
	Self  []packet.MAC
	Ports []PortConfig
}

// Port is a port of a built bridge.
type Port struct {
	Name  string
	Index int
	MAC   packet.MAC
	Self  []packet.MAC
	flags atomic.Uint32 // PortFlags
}

// Flags returns the port's flags.
func (p *Port) Flags() PortFlags { return PortFlags(p.flags.Load()) }

// Bridge is one bridge device: its ports and its FDB.
type Bridge struct {
	Name  string
	Index int
	// MAC is the bridge's own address (fixed at New).
	MAC  packet.MAC
	Self []packet.MAC

	ports        []Port // fixed at New; flags atomic
	groupFwdMask uint16
	promisc      bool
	maxLearned   uint32
	ageing       atomic.Int64 // ns; 0 disables learning
	// epoch counts the changes that can alter a decision without
	// touching an entry (port flags, ageing time, the bridge's address):
	// a Path made before one is stale
	epoch atomic.Uint64

	t table

	// Counters.
	drops          [numDropReasons]atomic.Uint64
	ownSrcWarnings atomic.Uint64 // "received packet on %s with own address as source address"
	learned        atomic.Uint64 // entries created by learning
	moved          atomic.Uint64 // entries moved to another port by learning
}

// Errors of the control plane.
var (
	ErrExist    = errors.New("fdb entry exists")
	ErrNotFound = errors.New("fdb entry not found")
	ErrInvalid  = errors.New("invalid fdb entry")
)

// New builds a bridge with its ports. The local entries are added as
// the kernel adds them: each port's address as it joins (br_add_if ->
// br_fdb_add_local; a second port with the same address shares the first
// one's entry), then the bridge's own address, which gets an entry of its
// own (port BridgePort) only when no port has it.
func New(cfg Config) (*Bridge, error) {
	if len(cfg.Ports) > MaxPorts {
		return nil, fmt.Errorf("bridge %s: %d ports, at most %d", cfg.Name, len(cfg.Ports), MaxPorts)
	}
	b := &Bridge{
		Name:         cfg.Name,
		Index:        cfg.Index,
		groupFwdMask: cfg.GroupFwdMask &^ 2, // BR_GROUPFWD_RESTRICTED keeps pause out
		promisc:      cfg.Promisc,
		maxLearned:   cfg.MaxLearned,
		ports:        make([]Port, len(cfg.Ports)),
	}
	b.t.init()
	switch {
	case cfg.AgeingZero:
		b.ageing.Store(0)
	case cfg.AgeingTime > 0:
		b.ageing.Store(cfg.AgeingTime)
	default:
		b.ageing.Store(DefaultAgeingTime)
	}
	seen := map[string]bool{}
	for i, pc := range cfg.Ports {
		if pc.Name == "" || seen[pc.Name] {
			return nil, fmt.Errorf("bridge %s: port %d: empty or duplicate name %q", cfg.Name, i, pc.Name)
		}
		seen[pc.Name] = true
		p := &b.ports[i]
		p.Name, p.Index, p.MAC = pc.Name, pc.Index, pc.MAC
		p.flags.Store(uint32(pc.Flags))
		p.Self = pc.Self
		if p.Self == nil {
			p.Self = DefaultSelf(pc.MAC, false)
		}
	}
	b.MAC = ChooseMAC(cfg)
	if b.MAC.IsZero() {
		return nil, fmt.Errorf("bridge %s: no address: no port and no MAC", cfg.Name)
	}
	b.Self = cfg.Self
	if b.Self == nil {
		b.Self = DefaultSelf(b.MAC, true)
	}
	for i := range b.ports {
		b.addLocal(i, b.ports[i].MAC, 0)
	}
	b.addLocal(BridgePort, b.MAC, 0)
	return b, nil
}

// ChooseMAC is the bridge's address: cfg.MAC when set explicitly,
// otherwise the numerically lowest port address
// (br_stp_recalculate_bridge_id in br_stp_if.c: skipped when the
// address was assigned, NET_ADDR_SET; else the minimum over the ports),
// or cfg.MAC when there is no port.
func ChooseMAC(cfg Config) packet.MAC {
	if cfg.MACSet || len(cfg.Ports) == 0 {
		return cfg.MAC
	}
	low := cfg.Ports[0].MAC
	for _, p := range cfg.Ports[1:] {
		if bytes.Compare(p.MAC[:], low[:]) < 0 {
			low = p.MAC
		}
	}
	return low
}

// DefaultSelf is the address list a device has on this kernel when it is
// up with IPv4 and IPv6 (what `bridge fdb show` prints as "self
// permanent"): ff02::1 (33:33:00:00:00:01), for the bridge the multicast
// snooping groups 224.0.0.106 and ff02::6a (br_multicast_open), 224.0.0.1
// (01:00:5e:00:00:01), and the solicited-node group of the link-local
// address made from mac (33:33:ff + its last three bytes). Observed on
// Linux 6.18 with iproute2 6.1; a snapshot carries the real list.
func DefaultSelf(mac packet.MAC, bridge bool) []packet.MAC {
	l := []packet.MAC{{0x33, 0x33, 0, 0, 0, 1}}
	if bridge {
		l = append(l, packet.MAC{0x01, 0x00, 0x5e, 0, 0, 0x6a}, packet.MAC{0x33, 0x33, 0, 0, 0, 0x6a})
	}
	return append(l, packet.MAC{0x01, 0x00, 0x5e, 0, 0, 1}, packet.MAC{0x33, 0x33, 0xff, mac[3], mac[4], mac[5]})
}

// SetMAC is `ip link set BRIDGE address MAC` (br_set_mac_address ->
// br_stp_change_bridge_id -> br_fdb_change_mac_address): the bridge's
// own entry without a port, if it has one, is removed, and mac gets a
// local entry unless a port's local entry has it. The device's own
// address list (Self) is left as it is, as the kernel leaves it. Like
// Load, it is for setting up: not while frames are handled.
func (b *Bridge) SetMAC(mac packet.MAC, now int64) error {
	if !mac.IsValidUnicast() {
		return ErrInvalid
	}
	if e := b.t.find(Key{MAC: b.MAC}); e != nil && e.port.Load() == BridgePort &&
		e.flags.Load()&(flagLocal|flagAddedByUser) == flagLocal {
		// fdb_delete_local: a port with the same address keeps the entry
		if i := b.portWithMAC(b.MAC); i >= 0 {
			e.port.Store(int32(i))
		} else {
			b.t.remove(e)
		}
	}
	b.MAC = mac
	b.addLocal(BridgePort, mac, now)
	b.epoch.Add(1)
	return nil
}

func (b *Bridge) portWithMAC(mac packet.MAC) int {
	for i := range b.ports {
		if b.ports[i].MAC == mac {
			return i
		}
	}
	return -1
}

// NumPorts is the number of ports.
func (b *Bridge) NumPorts() int { return len(b.ports) }

// Port returns port i (0 <= i < NumPorts).
func (b *Bridge) Port(i int) *Port { return &b.ports[i] }

// PortByName returns the number of the port called name, or -1.
func (b *Bridge) PortByName(name string) int {
	for i := range b.ports {
		if b.ports[i].Name == name {
			return i
		}
	}
	return -1
}

// SetPortFlags replaces port i's flags (`bridge link set`).
func (b *Bridge) SetPortFlags(i int, f PortFlags) {
	b.ports[i].flags.Store(uint32(f))
	b.epoch.Add(1)
}

// AgeingTime returns the ageing time in nanoseconds (0: learning off).
func (b *Bridge) AgeingTime() int64 { return b.ageing.Load() }

// SetAgeingTime sets the ageing time in nanoseconds (`ip link set br0
// type bridge ageing_time` in centiseconds); 0 turns learning off and
// ages every dynamic entry out at the next Expire.
func (b *Bridge) SetAgeingTime(ns int64) {
	if ns < 0 {
		ns = 0
	}
	b.ageing.Store(ns)
	b.epoch.Add(1)
}

// Counters are the bridge's event counts.
type Counters struct {
	Drops [numDropReasons]uint64
	// OwnSourceWarnings counts frames whose source is a local entry (the
	// kernel's rate-limited "received packet on %s with own address as
	// source address").
	OwnSourceWarnings uint64
	Learned, Moved    uint64
}

// Counters returns a copy of the counters.
func (b *Bridge) Counters() Counters {
	var c Counters
	for i := range b.drops {
		c.Drops[i] = b.drops[i].Load()
	}
	c.OwnSourceWarnings = b.ownSrcWarnings.Load()
	c.Learned, c.Moved = b.learned.Load(), b.moved.Load()
	return c
}

func (b *Bridge) portName(i int) string {
	if i == BridgePort {
		return b.Name
	}
	return b.ports[i].Name
}
