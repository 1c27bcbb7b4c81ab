package fdb

import "github.com/uswitch-lab/uswitch/packet"

// Path is a known-unicast decision remembered for the datapath's flow
// cache: the entries Learn and Decide touched for a frame from port In
// with a source and a destination address, and what they held. While
// it is Valid, Learn then Decide for the same port and addresses would
// forward to Out again and change nothing but the entries' times, which
// Touch does. It holds no lock and allocates nothing.
//
// What makes a path stale: either entry removed (ageing, flush,
// delete, a reload), moved to another port, or its flags changed
// (replace), and anything that changes decisions without an entry
// (port flags, the ageing time, the bridge's address: the bridge's
// epoch).
type Path struct {
	// In and Out are the input and output port numbers.
	In, Out int
	// src is the source's entry when learning refreshes it (nil:
	// learning is off for In or for the bridge); dst the destination's
	src, dst           *entry
	srcPort, dstPort   int32
	srcFlags, dstFlags uint32
	epoch              uint64
}

// LearnDecide is Learn then Decide for a frame from port in, with a
// Path when the decision forwards to one port and can be replayed
// (ok false otherwise). It does exactly what Learn and Decide do.
func (b *Bridge) LearnDecide(in int, src, dst packet.MAC, now int64) (d Decision, path Path, ok bool) {
	ep := b.epoch.Load()
	b.Learn(in, src, now)
	d = b.Decide(in, dst, now)
	if d.Verdict != VerdictForward || d.Up {
		return d, Path{}, false
	}
	path = Path{In: in, Out: d.Out.Next(0), epoch: ep}
	if in < 0 || in >= len(b.ports) {
		return d, Path{}, false
	}
	if PortFlags(b.ports[in].flags.Load())&Learning != 0 && b.ageing.Load() != 0 {
		// Learn refreshed (or made) the source's entry; a source it did
		// not learn (fdb_max_learned reached) may be learned later
		s := b.t.find(Key{MAC: src})
		if s == nil || s.flags.Load()&flagLocal != 0 {
			return d, Path{}, false
		}
		path.src, path.srcPort, path.srcFlags = s, s.port.Load(), s.flags.Load()
	}
	t := b.t.find(Key{MAC: dst})
	if t == nil || int(t.port.Load()) != path.Out {
		return d, Path{}, false
	}
	path.dst, path.dstPort, path.dstFlags = t, t.port.Load(), t.flags.Load()
	if b.epoch.Load() != ep {
		return d, Path{}, false
	}
	return d, path, true
}

// Valid says whether p still describes what Learn and Decide would do
// for its port and addresses.
func (b *Bridge) Valid(p *Path) bool {
	if p.dst == nil || b.epoch.Load() != p.epoch {
		return false
	}
	t := p.dst
	if t.dead.Load() || t.port.Load() != p.dstPort || t.flags.Load() != p.dstFlags {
		return false
	}
	if s := p.src; s != nil {
		if s.dead.Load() || s.port.Load() != p.srcPort || s.flags.Load() != p.srcFlags {
			return false
		}
	}
	return true
}

// Touch does what Learn and Decide do to the entries of a valid path
// at now: the source's updated time, the destination's used time.
// The times are stored when they move by a jiffy (1 ms, HZ=1000's) or go
// back, as br_fdb_update and br_handle_frame_finish store jiffies only
// when they changed: a time in nanoseconds changes with every frame, and
// an atomic store is a locked exchange on amd64.
func (b *Bridge) Touch(p *Path, now int64) {
	if s := p.src; s != nil && timeAdvanced(s.updated.Load(), now) {
		s.updated.Store(now)
	}
	if t := p.dst; timeAdvanced(t.used.Load(), now) {
		t.used.Store(now)
	}
}

// timeAdvanced: now is a jiffy or more after old, or before it.
func timeAdvanced(old, now int64) bool {
	d := now - old
	return d >= 1e6 || d < 0
}

// Same says whether two paths are the same decision on the same
// entries.
func (p *Path) Same(q *Path) bool { return *p == *q }
