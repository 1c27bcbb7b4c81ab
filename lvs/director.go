package lvs

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Errors of the control plane, worded as ipvsadm prints them
// (ipvs_strerror in ipvsadm's libipvs).
var (
	ErrServiceExists   = errors.New("Service already exists")
	ErrNoService       = errors.New("No such service")
	ErrDestExists      = errors.New("Destination already exists")
	ErrNoDest          = errors.New("No such destination")
	ErrNoScheduler     = errors.New("Scheduler not found")
	ErrInvalidArgument = errors.New("Invalid argument")
)

// Timeouts are the values of ipvsadm --set (seconds): TCP ESTABLISHED,
// TCP FIN_WAIT and UDP. 0 in a --set leaves a value as it is.
type Timeouts struct {
	TCP, TCPFin, UDP uint32
}

// DefaultTimeouts are the kernel's (ip_vs_proto_tcp.c, ip_vs_proto_udp.c).
var DefaultTimeouts = Timeouts{TCP: 900, TCPFin: 120, UDP: 300}

// ServiceConfig is what -A/-E set on a service.
type ServiceConfig struct {
	Key       ServiceKey
	SchedName string // "" = wlc (ipvsadm's default)
	Flags     uint32 // SvcPersistent, SvcOnePacket, SvcSched1..3
	Timeout   uint32 // persistence timeout (seconds), with SvcPersistent
	Netmask   uint32 // persistence netmask, host order; 0 = /32 unless NetmaskSet
	// NetmaskSet takes Netmask as it is, 0 included (ipvsadm -M 0.0.0.0:
	// one template for all clients).
	NetmaskSet bool
	PE         string
}

// DestConfig is what -a/-e set on a real server.
type DestConfig struct {
	Addr                   uint32
	Port                   uint16
	Fwd                    FwdMethod
	Weight                 int32
	UThreshold, LThreshold uint32
	TunType                TunType
	TunPort                uint16
	TunFlags               uint16
}

// Director is one namespace's IPVS: its virtual services, connection
// table and sysctls. The service set is copied on write and published
// through an atomic pointer, so the datapath reads it without locks; the
// control plane serialises on mu.
type Director struct {
	mu       sync.Mutex
	services atomic.Pointer[serviceSet]
	// work is the set being changed (under mu): a copy of the published
	// one made by the first change, published by commit; inside Bulk it
	// collects every change and is published once at the end
	work *serviceSet
	// fresh are services made or copied since work was taken: they are
	// not visible to the datapath and may be edited in place
	fresh    map[*Service]bool
	bulk     int
	timeouts atomic.Pointer[Timeouts]
	sysctl   atomic.Pointer[Sysctls]

	// Conns is the connection table.
	Conns *ConnTable
}

// serviceSet is an index of the services, immutable once published.
type serviceSet struct {
	byKey map[ServiceKey]*Service
	// list in insertion order; index is each key's position in it
	list  []*Service
	index map[ServiceKey]int
	// hasFwMark: lookups can skip fwmark services when there are none
	hasFwMark bool
}

// workSet returns the set to change (mu held).
func (d *Director) workSet() *serviceSet {
	if d.work == nil {
		s := d.services.Load()
		w := &serviceSet{byKey: make(map[ServiceKey]*Service, len(s.list)+1), list: append([]*Service(nil), s.list...),
			index: make(map[ServiceKey]int, len(s.list)+1), hasFwMark: s.hasFwMark}
		for k, v := range s.byKey {
			w.byKey[k] = v
		}
		for k, v := range s.index {
			w.index[k] = v
		}
		d.work = w
		d.fresh = map[*Service]bool{}
	}
	return d.work
}

// change runs f, under mu, on the set being changed and its service k,
// or fails with ErrNoService: the start of every change to a service
// (-E, -D, -a, -e, -d).
func (d *Director) change(k ServiceKey, f func(w *serviceSet, old *Service) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workSet()
	old := w.byKey[k]
	if old == nil {
		return ErrNoService
	}
	return f(w, old)
}

// commit publishes the changes (mu held), unless inside Bulk.
func (d *Director) commit() {
	if d.bulk > 0 || d.work == nil {
		return
	}
	d.services.Store(d.work)
	d.work, d.fresh = nil, nil
}

// Bulk runs f, which calls the Director's own methods, and publishes all
// their changes to the datapath at once when f returns: packets see the
// services as they were before or as they are after, never half, and a
// long restore costs one copy of the service index instead of one per
// line. When f fails, the changes are still published (the caller
// validated them first, see Restore); f must not call Bulk.
func (d *Director) Bulk(f func() error) error {
	d.mu.Lock()
	d.bulk++
	d.mu.Unlock()
	err := f()
	d.mu.Lock()
	d.bulk--
	d.commit()
	d.mu.Unlock()
	return err
}

// NewDirector makes an empty director with the kernel's default
// timeouts.
func NewDirector() *Director {
	d := &Director{}
	d.services.Store(&serviceSet{byKey: map[ServiceKey]*Service{}, index: map[ServiceKey]int{}})
	t := DefaultTimeouts
	d.timeouts.Store(&t)
	sc := DefaultSysctls
	d.sysctl.Store(&sc)
	d.Conns = newConnTable(d)
	return d
}

// Sysctls are the net.ipv4.vs.* switches the datapath follows.
type Sysctls struct {
	// Conntrack (vs.conntrack): keep netfilter connection tracking for
	// IPVS connections (the reply tuple is altered to the real server);
	// off (the default) makes scheduled packets untracked.
	Conntrack bool
	// ExpireNodestConn: a packet for a connection whose dest was
	// removed expires it at once (it is dropped either way), and a
	// new connection's first packet (SYN, INIT) on a connection whose
	// dest has weight 0 is scheduled afresh.
	ExpireNodestConn bool
	// ExpireQuiescentTemplate: a persistence template whose dest has
	// weight 0 is no longer used.
	ExpireQuiescentTemplate bool
	// SnatReroute: replies whose source became the VIP are routed
	// again as the host's own packets (default on).
	SnatReroute bool
	// ConnReuseMode: a SYN that hits a connection in TIME_WAIT or
	// CLOSE (an INIT: CLOSED) is scheduled afresh (1, the default; bit
	// 2 adds FIN_WAIT for DR/TUN); while the packet still uses the old
	// connection's confirmed conntrack entry it is dropped instead.
	ConnReuseMode int
	// SloppySCTP (vs.sloppy_sctp): a connection may be scheduled by
	// any first chunk but ABORT, not only by an INIT (to pick up
	// associations that were there before the director).
	SloppySCTP bool
	// NatICMPSend: answer a real server's packet without connection
	// with ICMP port unreachable.
	NatICMPSend bool
}

// DefaultSysctls are the kernel's defaults.
var DefaultSysctls = Sysctls{SnatReroute: true, ConnReuseMode: 1}

// Sysctls returns the current switches.
func (d *Director) Sysctls() Sysctls { return *d.sysctl.Load() }

// SetSysctls replaces the switches; existing connections keep their
// conntrack mode (IP_VS_CONN_F_NFCT is set at creation).
func (d *Director) SetSysctls(s Sysctls) { d.sysctl.Store(&s) }

// Conntrack is net.ipv4.vs.conntrack.
func (d *Director) Conntrack() bool { return d.sysctl.Load().Conntrack }

// Timeouts returns the current --set values.
func (d *Director) Timeouts() Timeouts { return *d.timeouts.Load() }

// SetTimeouts is ipvsadm --set: zero fields keep their value.
func (d *Director) SetTimeouts(t Timeouts) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := *d.timeouts.Load()
	if t.TCP != 0 {
		cur.TCP = t.TCP
	}
	if t.TCPFin != 0 {
		cur.TCPFin = t.TCPFin
	}
	if t.UDP != 0 {
		cur.UDP = t.UDP
	}
	d.timeouts.Store(&cur)
}

// Empty reports whether there is no service (the kernel registers its
// hooks only with the first service).
func (d *Director) Empty() bool { return len(d.services.Load().list) == 0 }

// Services lists the services in the order they were added.
func (d *Director) Services() []*Service {
	return append([]*Service(nil), d.services.Load().list...)
}

// Service finds a service by key.
func (d *Director) Service(k ServiceKey) *Service { return d.services.Load().byKey[k] }

// Lookup is ip_vs_service_find: a fwmark service first (when the packet
// has a mark and such services exist), then <proto, vaddr, vport>, then
// the port-0 (all ports) service <proto, vaddr, 0>.
func (d *Director) Lookup(mark uint32, proto uint8, addr uint32, port uint16) *Service {
	s := d.services.Load()
	if len(s.list) == 0 {
		return nil
	}
	if mark != 0 && s.hasFwMark {
		if svc := s.byKey[ServiceKey{FwMark: mark}]; svc != nil {
			return svc
		}
	}
	if svc := s.byKey[ServiceKey{Proto: proto, Addr: addr, Port: port}]; svc != nil {
		return svc
	}
	if port != 0 {
		// "Check if the catch-all port (port zero) exists"
		return s.byKey[ServiceKey{Proto: proto, Addr: addr}]
	}
	return nil
}

// reindex rebuilds the index after a removal from the list.
func (w *serviceSet) reindex() {
	clear(w.index)
	w.hasFwMark = false
	for i, svc := range w.list {
		w.index[svc.ServiceKey] = i
		if svc.FwMark != 0 {
			w.hasFwMark = true
		}
	}
}

// checkServiceConfig checks -A/-E's service and fills in ipvsadm's
// default scheduler.
func checkServiceConfig(c *ServiceConfig) error {
	if c.SchedName == "" {
		c.SchedName = "wlc"
	}
	if c.Key.FwMark == 0 {
		switch c.Key.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP:
		default:
			return ErrInvalidArgument
		}
	} else if c.Key.Addr != 0 || c.Key.Port != 0 || c.Key.Proto != 0 {
		return ErrInvalidArgument
	}
	return nil
}

func (svc *Service) apply(c *ServiceConfig) {
	svc.SchedName = c.SchedName
	svc.Flags = c.Flags | SvcHashed
	svc.Timeout = c.Timeout
	if svc.Flags&SvcPersistent != 0 && svc.Timeout == 0 {
		svc.Timeout = DefaultPersistTimeout
	}
	svc.Netmask = c.Netmask
	if svc.Netmask == 0 && !c.NetmaskSet {
		svc.Netmask = 0xffffffff
	}
	svc.PE = c.PE
}

// AddService is -A.
func (d *Director) AddService(c ServiceConfig) error {
	if err := checkServiceConfig(&c); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workSet()
	if w.byKey[c.Key] != nil {
		return ErrServiceExists
	}
	svc := &Service{ServiceKey: c.Key}
	svc.apply(&c)
	sched, err := NewScheduler(c.SchedName, svc)
	if err != nil {
		return ErrNoScheduler
	}
	svc.Sched = sched
	w.byKey[c.Key] = svc
	w.index[c.Key] = len(w.list)
	w.list = append(w.list, svc)
	if c.Key.FwMark != 0 {
		w.hasFwMark = true
	}
	d.fresh[svc] = true
	d.commit()
	return nil
}

// EditService is -E: a new scheduler, flags, timeout or netmask. The
// service is replaced by a copy, so a packet being scheduled sees either
// the old or the new one whole; dests and counters carry over.
func (d *Director) EditService(c ServiceConfig) error {
	if err := checkServiceConfig(&c); err != nil {
		return err
	}
	return d.change(c.Key, func(w *serviceSet, old *Service) error {
		return d.replace(w, old, func(svc *Service) error {
			// the kernel calls no scheduler callback on -E unless
			// the scheduler changes (ip_vs_edit_service)
			changed := svc.SchedName != c.SchedName
			svc.apply(&c)
			if changed {
				sched, err := NewScheduler(c.SchedName, svc)
				if err != nil {
					return ErrNoScheduler
				}
				svc.Sched = sched
			}
			return nil
		})
	})
}

// replace publishes a modified copy of old. Dests are shared (their
// counters are live) and re-pointed at the copy.
func (d *Director) replace(w *serviceSet, old *Service, edit func(*Service) error) error {
	if d.fresh[old] {
		// not published yet: change it in place
		err := edit(old)
		d.commit()
		return err
	}
	svc := &Service{ServiceKey: old.ServiceKey, SchedName: old.SchedName, Flags: old.Flags, Timeout: old.Timeout,
		Netmask: old.Netmask, PE: old.PE, Dests: append([]*Dest(nil), old.Dests...), Sched: old.Sched}
	svc.Stats.Conns.Store(old.Stats.Conns.Load())
	svc.Stats.InPkts.Store(old.Stats.InPkts.Load())
	svc.Stats.OutPkts.Store(old.Stats.OutPkts.Load())
	svc.Stats.InBytes.Store(old.Stats.InBytes.Load())
	svc.Stats.OutBytes.Store(old.Stats.OutBytes.Load())
	svc.Stats.est.copyFrom(&old.Stats.est)
	svc.Rate = old.Rate
	if err := edit(svc); err != nil {
		return err
	}
	for _, dst := range svc.Dests {
		dst.Svc.Store(svc)
	}
	old.next.Store(svc)
	w.byKey[svc.ServiceKey] = svc
	w.list[w.index[svc.ServiceKey]] = svc
	d.fresh[svc] = true
	d.commit()
	return nil
}

// DelService is -D: the service goes; its connections keep their dests
// until they expire (the kernel's dest trash).
func (d *Director) DelService(k ServiceKey) error {
	return d.change(k, func(w *serviceSet, old *Service) error {
		var list []*Service
		for _, x := range w.list {
			if x != old {
				list = append(list, x)
			}
		}
		for _, dst := range old.Dests {
			dst.Svc.Store(nil)
		}
		delete(w.byKey, k)
		w.list = list
		w.reindex()
		d.commit()
		return nil
	})
}

// Clear is -C: every service goes.
func (d *Director) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workSet()
	for _, svc := range w.list {
		for _, dst := range svc.Dests {
			dst.Svc.Store(nil)
		}
	}
	clear(w.byKey)
	w.list = nil
	w.reindex()
	d.commit()
}

func findDest(svc *Service, addr uint32, port uint16) int {
	for i, x := range svc.Dests {
		if x.Addr == addr && x.Port == port {
			return i
		}
	}
	return -1
}

func checkDestConfig(c *DestConfig) error {
	if c.Weight < 0 || (c.LThreshold > c.UThreshold && c.UThreshold != 0) {
		return ErrInvalidArgument
	}
	return nil
}

func (dst *Dest) apply(c *DestConfig) {
	dst.SetParams(DestParams{Fwd: c.Fwd, UThreshold: c.UThreshold, LThreshold: c.LThreshold,
		TunType: c.TunType, TunPort: c.TunPort, TunFlags: c.TunFlags})
	// dest->last_weight is the latest non-zero weight (mh builds its
	// table from it, so a quiesced dest keeps its slots)
	if c.Weight != 0 {
		dst.LastWeight.Store(c.Weight)
	}
	dst.Weight.Store(c.Weight)
	// __ip_vs_update_dest: the overload flag is re-evaluated only by
	// conn binding; a threshold of 0 clears it
	if c.UThreshold == 0 {
		dst.Flags.And(^DestOverload)
	}
	dst.Flags.Or(DestAvailable)
}

// AddDest is -a. The new dest goes to the head of the list, as
// __ip_vs_update_dest's list_add_rcu(&dest->n_list, &svc->destinations)
// puts it: the schedulers' scans, rr's first pick and the --nosort
// listing see the newest dest first. A dest that was removed but still
// has connections is brought back with its counters, as the kernel takes
// it out of the trash (ip_vs_trash_get_dest), and also goes to the head.
func (d *Director) AddDest(k ServiceKey, c DestConfig) error {
	if err := checkDestConfig(&c); err != nil {
		return err
	}
	return d.change(k, func(w *serviceSet, old *Service) error {
		if findDest(old, c.Addr, c.Port) >= 0 {
			return ErrDestExists
		}
		dst := d.Conns.trashGet(k, c.Addr, c.Port)
		if dst == nil {
			dst = &Dest{Addr: c.Addr, Port: c.Port}
		}
		dst.apply(&c)
		return d.replace(w, old, func(svc *Service) error {
			svc.Dests = append([]*Dest{dst}, svc.Dests...)
			svc.Sched.Update(svc)
			return nil
		})
	})
}

// EditDest is -e: the dest keeps its place in the list
// (__ip_vs_update_dest with add = 0 does not move it).
func (d *Director) EditDest(k ServiceKey, c DestConfig) error {
	if err := checkDestConfig(&c); err != nil {
		return err
	}
	return d.change(k, func(w *serviceSet, old *Service) error {
		i := findDest(old, c.Addr, c.Port)
		if i < 0 {
			return ErrNoDest
		}
		old.Dests[i].apply(&c)
		return d.replace(w, old, func(svc *Service) error {
			svc.Sched.Update(svc)
			return nil
		})
	})
}

// DelDest is -d: the dest stops taking connections at once; the ones it
// has keep it until they expire.
func (d *Director) DelDest(k ServiceKey, addr uint32, port uint16) error {
	return d.change(k, func(w *serviceSet, old *Service) error {
		i := findDest(old, addr, port)
		if i < 0 {
			return ErrNoDest
		}
		gone := old.Dests[i]
		gone.Flags.And(^DestAvailable)
		d.Conns.trashPut(k, gone)
		return d.replace(w, old, func(svc *Service) error {
			svc.Dests = append(svc.Dests[:i:i], svc.Dests[i+1:]...)
			svc.Sched.Update(svc)
			gone.Svc.Store(nil)
			return nil
		})
	})
}

// Zero is -Z: the counters of one service (or all with nil).
func (d *Director) Zero(k *ServiceKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.services.Load()
	if d.work != nil {
		s = d.work
	}
	zero := func(st *Stats) {
		st.Conns.Store(0)
		st.InPkts.Store(0)
		st.OutPkts.Store(0)
		st.InBytes.Store(0)
		st.OutBytes.Store(0)
		st.est.zero(StatsSnapshot{})
	}
	for _, svc := range s.list {
		if k != nil && svc.ServiceKey != *k {
			continue
		}
		zero(&svc.Stats)
		for _, dst := range svc.Dests {
			zero(&dst.Stats)
		}
		if k != nil {
			return nil
		}
	}
	if k != nil {
		return ErrNoService
	}
	return nil
}

// SortedServices is the order ipvsadm -L prints (unless --nosort):
// services by fwmark, protocol, address, port; see ipvsadm.c
// vs_service_cmp (the address compare is a signed 32-bit difference).
func SortedServices(list []*Service) []*Service {
	out := append([]*Service(nil), list...)
	qsortMerge(out, func(a, b *Service) bool { return serviceCmp(a, b) <= 0 })
	return out
}

func serviceCmp(a, b *Service) int32 {
	if r := int32(a.FwMark - b.FwMark); r != 0 {
		return r
	}
	if r := int32(a.Proto) - int32(b.Proto); r != 0 {
		return r
	}
	if r := int32(a.Addr - b.Addr); r != 0 {
		return r
	}
	return int32(a.Port) - int32(b.Port)
}

// SortedDests is ipvsadm's dest order (ipvs_cmp_dests): address, then
// port, sorting the list as the kernel dumps it (newest first).
func SortedDests(list []*Dest) []*Dest {
	out := append([]*Dest(nil), list...)
	qsortMerge(out, func(a, b *Dest) bool { return destCmp(a, b) <= 0 })
	return out
}

func destCmp(a, b *Dest) int32 {
	if r := int32(a.Addr - b.Addr); r != 0 {
		return r
	}
	return int32(a.Port) - int32(b.Port)
}

// qsortMerge sorts s as ipvsadm's qsort does with glibc (stdlib/msort.c
// msort_with_tmp): a top-down merge sort that halves at n/2 and takes
// from the left run while first(left, right). The signed address
// difference is not a total order (addresses 2^31 or more apart compare
// inverted), so the result depends on the input order and on the
// algorithm: this is the algorithm, and the input is the kernel's list
// order.
func qsortMerge[T any](s []T, first func(a, b T) bool) {
	if len(s) < 2 {
		return
	}
	tmp := make([]T, len(s))
	var msort func(b []T)
	msort = func(b []T) {
		n := len(b)
		if n <= 1 {
			return
		}
		n1 := n / 2
		b1, b2 := b[:n1], b[n1:]
		msort(b1)
		msort(b2)
		t := tmp[:0]
		for len(b1) > 0 && len(b2) > 0 {
			if first(b1[0], b2[0]) {
				t, b1 = append(t, b1[0]), b1[1:]
			} else {
				t, b2 = append(t, b2[0]), b2[1:]
			}
		}
		t = append(t, b1...)
		// what is left of b2 is already in place at the end of b
		copy(b, t)
	}
	msort(s)
}
