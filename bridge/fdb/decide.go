package fdb

import (
	"math/bits"

	"github.com/uswitch-lab/uswitch/packet"
)

// PortSet is a set of port numbers (a bitmap of MaxPorts bits): the
// ports a frame leaves by. A value; it never allocates.
type PortSet struct {
	w [MaxPorts / 64]uint64
}

// Add puts port i in the set.
func (s *PortSet) Add(i int) { s.w[i>>6] |= 1 << (i & 63) }

// Has reports whether port i is in the set.
func (s *PortSet) Has(i int) bool {
	return i >= 0 && i < MaxPorts && s.w[i>>6]&(1<<(i&63)) != 0
}

// Len is the number of ports in the set.
func (s *PortSet) Len() int {
	n := 0
	for _, w := range s.w {
		n += bits.OnesCount64(w)
	}
	return n
}

// Next returns the smallest port in the set that is >= i, or -1:
//
//	for p := s.Next(0); p >= 0; p = s.Next(p + 1) { ... }
func (s *PortSet) Next(i int) int {
	if i < 0 {
		i = 0
	}
	for wi := i >> 6; wi < len(s.w); wi++ {
		w := s.w[wi]
		if wi == i>>6 {
			w &= ^uint64(0) << (i & 63)
		}
		if w != 0 {
			return wi<<6 | bits.TrailingZeros64(w)
		}
	}
	return -1
}

// AppendPorts appends the ports in the set to l, in increasing order.
func (s *PortSet) AppendPorts(l []int) []int {
	for p := s.Next(0); p >= 0; p = s.Next(p + 1) {
		l = append(l, p)
	}
	return l
}

// Kind is the frame's destination class (enum br_pkt_type).
type Kind uint8

// The kinds.
const (
	Unicast Kind = iota
	Multicast
	Broadcast
	// LinkLocal is 01:80:c2:00:00:0X not in group_fwd_mask: handled
	// before the bridge hooks and never forwarded.
	LinkLocal
)

func (k Kind) String() string {
	switch k {
	case Unicast:
		return "unicast"
	case Multicast:
		return "multicast"
	case Broadcast:
		return "broadcast"
	case LinkLocal:
		return "link-local"
	}
	return "?"
}

// Verdict is what the bridge does with a frame.
type Verdict uint8

// The verdicts.
const (
	// VerdictDrop: the frame goes nowhere (Decision.Reason says why).
	VerdictDrop Verdict = iota
	// VerdictLocal: the destination is a local entry (the bridge's or a
	// port's own address): the frame goes up to the bridge device only
	// (br_pass_frame_up).
	VerdictLocal
	// VerdictForward: a known unicast destination: one port (br_forward).
	VerdictForward
	// VerdictFlood: unknown unicast, broadcast or multicast: the ports in Out
	// (br_flood); with Up a copy also goes up.
	VerdictFlood
	// VerdictPass: not bridged: a link-local group frame stays with the
	// input port's own stack (RX_HANDLER_PASS in br_handle_frame), not the
	// bridge device's.
	VerdictPass
)

func (v Verdict) String() string {
	switch v {
	case VerdictDrop:
		return "drop"
	case VerdictLocal:
		return "local"
	case VerdictForward:
		return "forward"
	case VerdictFlood:
		return "flood"
	case VerdictPass:
		return "pass"
	}
	return "?"
}

// DropReason says why a frame was dropped.
type DropReason uint8

// The drop reasons.
const (
	DropNone DropReason = iota
	// DropInvalidSource: the source is multicast or zero (br_handle_frame:
	// !is_valid_ether_addr).
	DropInvalidSource
	// DropPause: 01:80:c2:00:00:01, IEEE 802.3x pause (br_handle_frame).
	DropPause
	// DropSamePort: a known unicast destination on the input port, which
	// has no hairpin mode (should_deliver, br_forward.c).
	DropSamePort
	// DropNoPort: flooded to no port (every port filtered by flags,
	// hairpin or isolation) and not passed up.
	DropNoPort
	// DropBadPort: the input port number is not a port of the bridge.
	DropBadPort
	numDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropNone:
		return "none"
	case DropInvalidSource:
		return "invalid-source"
	case DropPause:
		return "pause"
	case DropSamePort:
		return "same-port"
	case DropNoPort:
		return "no-port"
	case DropBadPort:
		return "bad-port"
	}
	return "?"
}

// Decision is the bridge's decision for one frame.
type Decision struct {
	Verdict Verdict
	Kind    Kind
	// Up: the frame (or, with ports in Out, a copy) goes up to the bridge
	// device (local_rcv, or a VerdictLocal).
	Up bool
	// Out: the ports the frame leaves by.
	Out    PortSet
	Reason DropReason
}

// Copies is the number of ways the frame goes (ports plus up): more than
// one means clones (deliver_clone in br_forward.c).
func (d *Decision) Copies() int {
	n := d.Out.Len()
	if d.Up {
		n++
	}
	return n
}

// isLinkLocal is is_link_local_ether_addr: 01:80:c2:00:00:0X.
func isLinkLocal(m packet.MAC) bool {
	return m[0] == 0x01 && m[1] == 0x80 && m[2] == 0xc2 && m[3] == 0 && m[4] == 0 && m[5]&0xf0 == 0
}

// Input is the whole receive path on port in without hooks in between
// (br_handle_frame + br_handle_frame_finish): the source check, the
// link-local groups, learning and the decision.
func (b *Bridge) Input(in int, f *packet.Frame, now int64) Decision {
	if in < 0 || in >= len(b.ports) {
		return b.drop(Decision{Kind: kindOf(f.Dst)}, DropBadPort)
	}
	if !f.Src.IsValidUnicast() {
		return b.drop(Decision{Kind: kindOf(f.Dst)}, DropInvalidSource)
	}
	if isLinkLocal(f.Dst) && f.Dst[5] == 1 && b.groupFwdMask&2 == 0 {
		return b.drop(Decision{Kind: Multicast}, DropPause) // before learning
	}
	b.Learn(in, f.Src, now)
	return b.Decide(in, f.Dst, now)
}

func kindOf(dst packet.MAC) Kind {
	switch {
	case dst.IsBroadcast():
		return Broadcast
	case dst.IsMulticast():
		return Multicast
	}
	return Unicast
}

func (b *Bridge) drop(d Decision, r DropReason) Decision {
	d.Verdict, d.Reason, d.Up, d.Out = VerdictDrop, r, false, PortSet{}
	b.drops[r].Add(1)
	return d
}

// Decide is the forwarding decision of br_handle_frame_finish for a frame
// from port in to dst, after Learn (the learning of the frame's own
// source counts: a frame to its own source's address is a known unicast
// on the input port). It allocates nothing.
//
//   - 01:80:c2:00:00:0X not in group_fwd_mask: :01 dropped, others up
//     only (br_handle_frame; :00 is forwarded as data since STP is off).
//   - broadcast: flooded to the ports with bcast_flood, a copy up.
//   - multicast: flooded to the ports with mcast_flood, a copy up (no
//     multicast querier: br_multicast_querier_exists is false).
//   - unicast to a local entry: up only. To a learned or static entry:
//     its port, marking the entry used, unless should_deliver refuses
//     (the input port without hairpin). Unknown: flooded to the ports
//     with flood.
//
// Flooding skips the input port unless it has hairpin, and an isolated
// port when the input port is isolated (should_deliver).
func (b *Bridge) Decide(in int, dst packet.MAC, now int64) Decision {
	d := Decision{Kind: kindOf(dst)}
	if in < 0 || in >= len(b.ports) {
		return b.drop(d, DropBadPort)
	}
	if isLinkLocal(dst) && dst[5] != 0 && b.groupFwdMask&(1<<dst[5]) == 0 {
		// dst[5] == 0 (STP BPDU group) is forwarded: stp_state is 0.
		if dst[5] == 1 {
			return b.drop(d, DropPause)
		}
		d.Kind, d.Verdict = LinkLocal, VerdictPass
		return d
	}
	d.Up = b.promisc
	var flag PortFlags
	switch d.Kind {
	case Broadcast:
		d.Up, flag = true, BcastFlood
	case Multicast:
		d.Up, flag = true, McastFlood
	default:
		if e := b.t.find(Key{MAC: dst}); e != nil {
			if e.flags.Load()&flagLocal != 0 {
				d.Verdict, d.Up = VerdictLocal, true
				return d
			}
			if timeAdvanced(e.used.Load(), now) {
				e.used.Store(now)
			}
			to := int(e.port.Load())
			if to >= 0 && b.shouldDeliver(in, to) {
				d.Verdict = VerdictForward
				d.Out.Add(to)
				return d
			}
			if d.Up {
				d.Verdict = VerdictLocal
				return d
			}
			return b.drop(d, DropSamePort)
		}
		flag = Flood
	}
	for p := range b.ports {
		if PortFlags(b.ports[p].flags.Load())&flag == 0 {
			continue
		}
		if b.shouldDeliver(in, p) {
			d.Out.Add(p)
		}
	}
	if d.Out.Len() == 0 && !d.Up {
		return b.drop(d, DropNoPort)
	}
	d.Verdict = VerdictFlood
	return d
}

// LearnForward is Learn, then Decide's answer when it is the common
// one: a known unicast destination on one port, nothing going up. It
// returns that port, or ok false, and the caller then asks Decide
// (which does again the one thing LearnForward may have done to the
// destination's entry: its used time set to now). It allocates nothing.
func (b *Bridge) LearnForward(in int, src, dst packet.MAC, now int64) (to int, ok bool) {
	b.Learn(in, src, now)
	if in < 0 || in >= len(b.ports) || dst.IsMulticast() || b.promisc {
		return -1, false
	}
	e := b.t.find(Key{MAC: dst})
	if e == nil || e.flags.Load()&flagLocal != 0 {
		return -1, false
	}
	if timeAdvanced(e.used.Load(), now) {
		e.used.Store(now)
	}
	to = int(e.port.Load())
	if to < 0 || !b.shouldDeliver(in, to) {
		return -1, false
	}
	return to, true
}

// shouldDeliver is should_deliver (br_forward.c) for a port in state
// FORWARDING without VLAN filtering: not back out of the input port
// unless the output port has hairpin mode, and not from an isolated
// port to an isolated port.
func (b *Bridge) shouldDeliver(in, to int) bool {
	tf := PortFlags(b.ports[to].flags.Load())
	if in == to && tf&Hairpin == 0 {
		return false
	}
	if tf&Isolated != 0 && PortFlags(b.ports[in].flags.Load())&Isolated != 0 {
		return false
	}
	return true
}

// Output is the decision for a frame the bridge device itself sends
// (br_dev_xmit in br_device.c: the host's own traffic routed out of br0,
// after the bridge LOCAL_OUT hook's caller): broadcast and multicast go to
// every port (br_flood lets locally originated frames past bcast_flood
// and mcast_flood), a known destination to its entry's port (a local
// entry of a port too; the bridge's own entry, without a port, drops the
// frame), an unknown unicast to the ports with flood. Nothing goes up and
// no port is excluded as the input. It allocates nothing.
func (b *Bridge) Output(dst packet.MAC) Decision {
	d := Decision{Kind: kindOf(dst)}
	flag := Flood
	if d.Kind == Unicast {
		if e := b.t.find(Key{MAC: dst}); e != nil {
			to := int(e.port.Load())
			if to == BridgePort {
				return b.drop(d, DropNoPort)
			}
			d.Verdict = VerdictForward
			d.Out.Add(to)
			return d
		}
	} else {
		flag = 0
	}
	for p := range b.ports {
		if flag != 0 && PortFlags(b.ports[p].flags.Load())&flag == 0 {
			continue
		}
		d.Out.Add(p)
	}
	if d.Out.Len() == 0 {
		return b.drop(d, DropNoPort)
	}
	d.Verdict = VerdictFlood
	return d
}
