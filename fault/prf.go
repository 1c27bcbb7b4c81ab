package fault

import "github.com/uswitch-lab/uswitch/packet"

// Draws. A fault's random numbers are not a sequential stream, as
// netem's prandom_u32_state is, but a function of where they are used:
//
//	key  = H(seed, fault name)                  one per fault (Key)
//	draw = H(key, flow, n, lane)                one per use
//
// where flow is the packet's directional 5-tuple, n its index among the
// packets of that flow the fault has seen (1, 2, ...) and lane what the
// number is for (the duplicate decision, the loss decision...). Which
// worker runs a flow, how flows interleave and how many workers there
// are change none of the inputs, so they change no decision; adding a
// fault changes no other fault's key (the streams are named, not
// numbered). H is splitmix64's finalizer (Steele, Lea and Flood, 2014),
// chained.

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Key is the stream key of the fault called name in an experiment with
// seed (FNV-1a of the name, mixed with the seed).
func Key(seed uint64, name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return mix(seed ^ mix(h))
}

// Flow is a packet's directional flow: addresses, protocol and ports
// (ICMP echo: the identifier as both ports, as packet.Decode gives it;
// non-first fragments and protocols without ports: zero ports). A fault
// with scope "fault" uses the zero Flow for every packet.
type Flow struct {
	Src, Dst     uint32
	SPort, DPort uint16
	Proto        uint8
}

// FlowOf is p's flow.
func FlowOf(p *packet.Packet) Flow {
	f := Flow{Src: p.Src, Dst: p.Dst, Proto: p.Proto}
	if p.HasL4 && !(p.IP.IsFragment() && p.IP.FragOffset() != 0) {
		f.SPort, f.DPort = p.SrcPort, p.DstPort
	}
	return f
}

func (f Flow) hash() uint64 {
	return mix(uint64(f.Src)<<32|uint64(f.Dst)) ^ mix(uint64(f.SPort)<<24|uint64(f.DPort)<<8|uint64(f.Proto)+1)
}

// lanes: what a draw is for. A duplicate's draws are its original's
// lane + dupLanes.
const (
	laneDup = iota
	laneLoss
	laneLoss2
	laneCorrupt
	laneCorruptPos
	laneCorruptBit
	laneReorder
	laneDelay
	dupLanes
	// the initial `last` of the correlated streams (n = 0)
	laneInit = 2 * dupLanes
)

// draw is the 32-bit number for lane of packet n of the flow whose
// hashed key is fk.
func draw(fk, n uint64, lane int) uint32 {
	return uint32(mix(mix(fk^n*0xd6e8feb86659fd93)^uint64(lane)) >> 32)
}
