package link

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The datapath's datapath-kill and datapath-stall (package fault's
// state faults, through the lab's fault Host):
//
//	Stall(d)  the readers read nothing for d ns: what the namespaces
//	          send waits in each TUN's queue towards uswitch (its
//	          txqueuelen: the lab sets 8192), and beyond that the kernel
//	          drops it (tun_net_xmit, the device's tx_dropped). What a
//	          reader had read when the stall began waits with it.
//	          Stall(0) ends a stall.
//	Kill(d)   uswitch stops as a killed process does: every device
//	          queue is closed (Queue.Detach), so the kernel frees what
//	          waited towards uswitch, the carrier goes off and what the
//	          namespaces send is dropped; what the workers held is lost
//	          (their writes fail). The devices stay (made persistent
//	          for the while: a real kill -9 of a lab also removes its
//	          non-persistent TUNs, with their addresses and routes), so
//	          after d ns the datapath restarts: the queues are opened
//	          again (Queue.Reattach) and the readers go on. d 0: for
//	          good.
//
// Fault schedules run them on the clock (fault.Set.Tick, every
// tickEvery: a stalled datapath sees no packet to run them).

// tickEvery is how often the datapath runs its fault set's clock.
const tickEvery = 10 * time.Millisecond

// detacher is a device that can be closed and opened again (*Queue).
type detacher interface {
	Detach() error
	Reattach() error
}

// killState is the datapath's kill and stall state.
type killState struct {
	// stallUntil: readers read nothing before this time (Now's clock)
	stallUntil atomic.Int64
	// killed: the devices are detached
	killed atomic.Bool
	mu     sync.Mutex // serialises Kill, restart and Close
	timer  *time.Timer
	kills  atomic.Uint64
}

// Stall stops the readers for dur ns (0: ends a stall).
func (d *Datapath) Stall(dur int64) error {
	d.kill.stallUntil.Store(d.Now() + dur)
	return nil
}

// waitStall waits while a stall lasts; false: the datapath closed.
func (d *Datapath) waitStall() bool {
	for {
		left := d.kill.stallUntil.Load() - d.Now()
		if left <= 0 {
			return true
		}
		select {
		case <-time.After(min(time.Duration(left), tickEvery)):
		case <-d.done:
			return false
		}
	}
}

// Kill detaches every device queue for dur ns (0: for good), then
// restarts. A datapath already killed, or with a device that cannot be
// detached (a test's fake), is left as it is.
func (d *Datapath) Kill(dur int64) error {
	k := &d.kill
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-d.done:
		return errors.New("link: the datapath is closed")
	default:
	}
	if k.killed.Load() {
		return errors.New("link: the datapath is killed already")
	}
	var qs []detacher
	for _, p := range d.ports {
		for _, q := range p.queues {
			dt, ok := q.dev.(detacher)
			if !ok {
				return fmt.Errorf("link: device %s cannot be detached", p.name)
			}
			qs = append(qs, dt)
		}
	}
	k.killed.Store(true)
	k.kills.Add(1)
	var err error
	for _, q := range qs {
		err = errors.Join(err, q.Detach())
	}
	if dur > 0 {
		k.timer = time.AfterFunc(time.Duration(dur), d.restart)
	}
	return err
}

// restart opens the detached queues again and lets the readers go on.
func (d *Datapath) restart() {
	k := &d.kill
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-d.done:
		return
	default:
	}
	if !k.killed.Load() {
		return
	}
	for _, p := range d.ports {
		for _, q := range p.queues {
			if err := q.dev.(detacher).Reattach(); err != nil {
				select {
				case d.errc <- err:
				default:
				}
			}
		}
	}
	k.killed.Store(false)
}

// waitRestart: a reader whose device failed while the datapath is
// killed (its file was closed under it) waits for the restart; false:
// killed for good (or the datapath closed), and the reader ends.
func (d *Datapath) waitRestart() bool {
	for d.kill.killed.Load() {
		select {
		case <-time.After(tickEvery):
		case <-d.done:
			return false
		}
	}
	select {
	case <-d.done:
		return false
	default:
	}
	return true
}

// Kills is how many times the datapath was killed.
func (d *Datapath) Kills() uint64 { return d.kill.kills.Load() }

// Stalled reports whether a stall holds the readers now.
func (d *Datapath) Stalled() bool { return d.kill.stallUntil.Load() > d.Now() }

// Killed reports whether the devices are detached now.
func (d *Datapath) Killed() bool { return d.kill.killed.Load() }

// ticker runs the fault set's clock (datapath-kill and -stall).
func (wf *wireFaults) ticker() {
	d := wf.d
	defer d.workers.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
			if tab := wf.tab.Load(); tab != nil {
				tab.set.Tick(d.Now())
			}
		}
	}
}
