package lvs

import (
	"sync"
	"time"
)

// ConnTable holds the IPVS connections of a director (ip_vs_conn.c).
//
// The kernel keeps one hash table of connections looked up two ways:
// from the client side (ip_vs_conn_in_get: <proto, caddr, cport, vaddr,
// vport>) and from the real server's side (ip_vs_conn_out_get: <proto,
// daddr, dport, caddr, cport>), plus persistence templates
// (ip_vs_ct_in_get). Here each is a map with a comparable key, in shards
// chosen by the client address and port, which both directions know.
//
// There is no timer per connection: a connection's expiry is moved
// forward by every packet (ip_vs_conn_put re-arms the timer with the
// current state's timeout), lookups treat an expired entry as absent and
// remove it, and Reap sweeps the rest on the caller's clock.
//
// Lock order: a shard's mu, then a Conn's mu. Dest counters are atomics.
type ConnTable struct {
	d      *Director
	shards [connShards]connShard

	mu sync.Mutex // guards trash
	// trash keeps removed dests that still have connections, so a dest
	// added back gets its counters (ip_vs_trash_get_dest)
	trash map[trashKey]*Dest
}

const connShards = 64

type connShard struct {
	mu   sync.Mutex
	in   map[connKey]*Conn
	out  map[connKey]*Conn
	tmpl map[connKey]*Conn
	// all holds every live connection and template, for Range and Reap
	all map[*Conn]struct{}
}

// connKey is one direction's lookup key.
type connKey struct {
	a1, a2 uint32
	p1, p2 uint16
	proto  uint8
}

type trashKey struct {
	svc  ServiceKey
	addr uint32
	port uint16
}

func newConnTable(d *Director) *ConnTable {
	t := &ConnTable{d: d, trash: map[trashKey]*Dest{}}
	for i := range t.shards {
		s := &t.shards[i]
		s.in, s.out, s.tmpl, s.all = map[connKey]*Conn{}, map[connKey]*Conn{}, map[connKey]*Conn{}, map[*Conn]struct{}{}
	}
	return t
}

func shardOf(addr uint32, port uint16) int {
	h := (addr ^ uint32(port)<<16 ^ uint32(port)) * 0x9e3779b1
	return int(h >> (32 - 6))
}

func (t *ConnTable) trashGet(k ServiceKey, addr uint32, port uint16) *Dest {
	t.mu.Lock()
	defer t.mu.Unlock()
	dst := t.trash[trashKey{k, addr, port}]
	delete(t.trash, trashKey{k, addr, port})
	return dst
}

func (t *ConnTable) trashPut(k ServiceKey, dst *Dest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if dst.TotalConns() > 0 {
		t.trash[trashKey{k, dst.Addr, dst.Port}] = dst
	}
}

// inKey is the client-side key of a packet from the client.
func inKey(proto uint8, saddr uint32, sport uint16, daddr uint32, dport uint16) connKey {
	return connKey{a1: saddr, p1: sport, a2: daddr, p2: dport, proto: proto}
}

// lookupIn is ip_vs_conn_in_get for a packet client -> VIP.
func (t *ConnTable) lookupIn(proto uint8, saddr uint32, sport uint16, daddr uint32, dport uint16, now int64) *Conn {
	s := &t.shards[shardOf(saddr, sport)]
	return t.get(s, s.in, inKey(proto, saddr, sport, daddr, dport), now)
}

// lookupOut is ip_vs_conn_out_get for a packet real server -> client.
func (t *ConnTable) lookupOut(proto uint8, saddr uint32, sport uint16, daddr uint32, dport uint16, now int64) *Conn {
	s := &t.shards[shardOf(daddr, dport)]
	return t.get(s, s.out, connKey{a1: saddr, p1: sport, a2: daddr, p2: dport, proto: proto}, now)
}

// lookupTemplate is ip_vs_ct_in_get.
func (t *ConnTable) lookupTemplate(k connKey, now int64) *Conn {
	s := &t.shards[shardOf(k.a1, 0)]
	return t.get(s, s.tmpl, k, now)
}

// get is the lookup of k in m, one of shard s's maps (which are made
// once, so m is read without the lock): an expired entry that cannot be
// re-armed counts as absent and is removed.
func (t *ConnTable) get(s *connShard, m map[connKey]*Conn, k connKey, now int64) *Conn {
	s.mu.Lock()
	c := m[k]
	if c != nil && c.expired(now) && !t.rearm(c, now) {
		t.unlink(s, c)
		c = nil
	}
	s.mu.Unlock()
	return c
}

// dropTemplate unhashes an invalid template (ip_vs_check_template): it
// stays bound to its dest until it expires.
func (t *ConnTable) dropTemplate(k connKey, c *Conn) {
	s := &t.shards[shardOf(k.a1, 0)]
	s.mu.Lock()
	if s.tmpl[k] == c {
		delete(s.tmpl, k)
	}
	s.mu.Unlock()
}

// newConn is ip_vs_conn_new + ip_vs_bind_dest: the connection is bound
// to dest and hashed (unless one-packet).
func (t *ConnTable) newConn(c *Conn, dest *Dest, svc *Service, tk connKey, now int64) {
	flags := c.flags.Load()
	if dest != nil {
		// dest->conn_flags: the forwarding method, NOOUTPUT for
		// anything but NAT, and INACTIVE: a new connection starts
		// inactive until its protocol says otherwise
		fwd := dest.P().Fwd
		df := uint32(fwd) | ConnInactive
		if fwd != Masq {
			df |= ConnNoOutput
		}
		if c.Proto != ProtoUDP {
			flags &^= ConnOnePacket
		}
		flags |= df
	}
	if t.d.Conntrack() {
		flags |= ConnNFCT
	}
	c.flags.Store(flags)
	c.Dest, c.svc = dest, svc
	c.timeout.Store(int64(3 * time.Second))
	c.expires.Store(now + int64(3*time.Second))
	if dest != nil {
		if flags&ConnTemplate != 0 {
			dest.PersistConns.Add(1)
		} else if flags&ConnInactive != 0 {
			dest.InactConns.Add(1)
		} else {
			dest.ActiveConns.Add(1)
		}
		if u := dest.P().UThreshold; u != 0 && dest.TotalConns() >= int64(u) {
			dest.Flags.Or(DestOverload)
		}
	}
	if flags&ConnOnePacket != 0 {
		return
	}
	if flags&ConnTemplate != 0 {
		c.tkey = tk
		s := &t.shards[shardOf(tk.a1, 0)]
		s.mu.Lock()
		s.tmpl[tk] = c
		s.all[c] = struct{}{}
		s.mu.Unlock()
		return
	}
	s := &t.shards[shardOf(c.CAddr, c.CPort)]
	s.mu.Lock()
	s.in[inKey(c.Proto, c.CAddr, c.CPort, c.VAddr, c.VPort)] = c
	s.out[connKey{a1: c.DAddr, p1: c.DPort, a2: c.CAddr, p2: c.CPort, proto: c.Proto}] = c
	s.all[c] = struct{}{}
	s.mu.Unlock()
}

// rearm is the expiry of a template that still controls connections:
// the kernel's ip_vs_conn_expire puts it back for another timeout.
func (t *ConnTable) rearm(c *Conn, now int64) bool {
	if c.nControlled.Load() > 0 {
		c.expires.Store(now + c.timeout.Load())
		return true
	}
	return false
}

// unlink removes c from the shard and unbinds it (s.mu held).
func (t *ConnTable) unlink(s *connShard, c *Conn) {
	if _, ok := s.all[c]; !ok {
		return
	}
	delete(s.all, c)
	if c.Template() {
		if s.tmpl[c.tkey] == c {
			delete(s.tmpl, c.tkey)
		}
	} else {
		ik := inKey(c.Proto, c.CAddr, c.CPort, c.VAddr, c.VPort)
		if s.in[ik] == c {
			delete(s.in, ik)
		}
		ok := connKey{a1: c.DAddr, p1: c.DPort, a2: c.CAddr, p2: c.CPort, proto: c.Proto}
		if s.out[ok] == c {
			delete(s.out, ok)
		}
	}
	t.release(c)
}

// release is the end of a connection: ip_vs_unbind_dest and
// ip_vs_control_del.
func (t *ConnTable) release(c *Conn) {
	if c.dead.Swap(true) {
		return
	}
	if ct := c.Control; ct != nil {
		ct.nControlled.Add(-1)
	}
	dest := c.Dest
	if dest == nil {
		return
	}
	if c.Template() {
		dest.PersistConns.Add(-1)
	} else if c.flags.Load()&ConnInactive != 0 {
		dest.InactConns.Add(-1)
	} else {
		dest.ActiveConns.Add(-1)
	}
	dp := dest.P()
	switch {
	case dp.LThreshold != 0:
		if dest.TotalConns() < int64(dp.LThreshold) {
			dest.Flags.And(^DestOverload)
		}
	case dp.UThreshold != 0:
		if dest.TotalConns()*4 < int64(dp.UThreshold)*3 {
			dest.Flags.And(^DestOverload)
		}
	default:
		dest.Flags.And(^DestOverload)
	}
}

// expireNow removes a connection at once (ip_vs_conn_expire_now).
func (t *ConnTable) expireNow(c *Conn) {
	s := &t.shards[shardOf(c.CAddr, c.CPort)]
	if c.Template() {
		s = &t.shards[shardOf(c.tkey.a1, 0)]
	}
	s.mu.Lock()
	t.unlink(s, c)
	s.mu.Unlock()
}

// Reap removes the connections that expired by now (the kernel's
// per-connection timers) and returns how many went.
func (t *ConnTable) Reap(now int64) int {
	n := 0
	// connections first, then templates: a template whose last
	// connection expires in the same sweep goes too (the kernel's timers
	// fire in expiry order)
	for pass := 0; pass < 2; pass++ {
		for i := range t.shards {
			s := &t.shards[i]
			s.mu.Lock()
			for c := range s.all {
				if c.Template() == (pass == 1) && c.expired(now) && !t.rearm(c, now) {
					t.unlink(s, c)
					n++
				}
			}
			s.mu.Unlock()
		}
	}
	if n > 0 {
		t.mu.Lock()
		for k, dst := range t.trash {
			if dst.TotalConns() == 0 {
				delete(t.trash, k)
			}
		}
		t.mu.Unlock()
	}
	return n
}

// Flush removes every connection (ipvsadm -C does not; this is for
// tests and teardown).
func (t *ConnTable) Flush() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for c := range s.all {
			t.unlink(s, c)
		}
		s.mu.Unlock()
	}
}

// Len is the number of connections and templates held.
func (t *ConnTable) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.all)
		s.mu.Unlock()
	}
	return n
}

// Range calls f for every live connection (templates included) until f
// returns false. The order is not defined; ipvsadm -Lnc prints the
// kernel's hash order, which is not reproducible either.
func (t *ConnTable) Range(now int64, f func(*Conn) bool) {
	var list []*Conn
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for c := range s.all {
			if !c.expired(now) || c.nControlled.Load() > 0 {
				list = append(list, c)
			}
		}
		s.mu.Unlock()
	}
	for _, c := range list {
		if !f(c) {
			return
		}
	}
}

func (c *Conn) expired(now int64) bool { return now >= c.expires.Load() }

// touch is ip_vs_conn_put: the timer restarts with the current timeout.
func (c *Conn) touch(now int64) { c.expires.Store(now + c.timeout.Load()) }
