package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/link"
)

// Lab is a running lab. Its life:
//
//	Up ──> running ──Close──> closed
//	 │  (namespaces, TUNs, datapath and servers exist; Run waits)
//	 └─ on any failure Up removes what it made and returns the error
//
// Close is idempotent and removes everything in reverse order: control
// socket, servers, datapath (closing the TUNs), namespaces.
type Lab struct {
	cfg *Config
	log io.Writer
	// nss holds a handle of every namespace the lab made, by name;
	// immutable after Up.
	nss  map[string]netns.NsHandle
	made []string // namespaces made, in order
	eng  *datapath.Engine
	dp   *link.Datapath
	// dpa is dp for the fault Host's kill and stall, set when dp is up
	dpa atomic.Pointer[link.Datapath]
	// cfgMu serialises changes of the engine's configuration: the
	// control socket's restores and commands, the faults' rule swaps
	// and sysctls, fault add and del
	cfgMu sync.Mutex
	srv   []*server
	ctl   *control.Server // live control socket and metrics listener (nil: none)
	// ec answers the control commands; set up by the first request
	ec     control.Engine
	ecInit sync.Once
	// fmu serialises live fault changes (faults.go)
	fmu sync.Mutex
	// webStop stops the live pages' servers (web.go)
	webStop []func()
	closed  sync.Once
	cerr    error
	// nodes are the lab's nodes' engines (nodes_linux.go), in config
	// order; immutable after Up
	nodes []*nodeRun
}

// Up makes the lab: namespaces, one TUN (or TAP, kind = "tap") per
// attached namespace, made inside it, with its addresses and routes, uswitch's engine over them, and
// the built-in servers. It fails if a namespace of the lab already
// exists (a crashed lab: run Down). log receives progress lines (nil:
// none).
func Up(cfg *Config, log io.Writer) (l *Lab, err error) {
	return UpWith(cfg, log, UpOptions{})
}

// UpOptions are what a caller adds to a lab at Up.
type UpOptions struct {
	// Observe, when set, sees every decision of the lab's faults
	// (fault.Set.Observe: it runs on the datapath's goroutines, under
	// the fault's flow lock, so it must be quick); the experiment
	// runner records them.
	Observe func(fault.Decision)
}

// UpWith is Up with options.
func UpWith(cfg *Config, log io.Writer, o UpOptions) (l *Lab, err error) {
	if log == nil {
		log = io.Discard
	}
	allNS, _ := cfg.Names()
	for _, n := range allNS {
		if nsExists(n) {
			return nil, fmt.Errorf("namespace %s already exists (a lab left behind? `uswitch lab down` removes it)", n)
		}
	}
	l = &Lab{cfg: cfg, log: log, nss: map[string]netns.NsHandle{}}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	for _, n := range allNS {
		h, err := createNamedNS(n)
		if err != nil {
			return l, fmt.Errorf("namespace %s: %w", n, err)
		}
		l.nss[n] = h
		l.made = append(l.made, n)
		if err := markNS(n); err != nil {
			return l, err
		}
	}
	if err := upTopology(cfg, l.nss); err != nil {
		return l, err
	}
	// the devices of each engine: the lab's (top) and each node's
	top := &engineDevs{mtus: map[string]int{}}
	for _, n := range cfg.Nodes {
		l.nodes = append(l.nodes, &nodeRun{n: n, devs: engineDevs{mtus: map[string]int{}}})
	}
	defer func() {
		if err != nil && l.dp == nil {
			top.close()
		}
		if err != nil {
			for _, nr := range l.nodes {
				if nr.dp == nil {
					nr.devs.close()
				}
			}
		}
	}()
	workers, queues := cfg.Uswitch.threads()
	for _, n := range cfg.Namespaces {
		owner, it := cfg.attachment(n.Name)
		if it == nil {
			if err := configureNS(l.nss[n.Name], "", 0, &n); err != nil {
				return l, fmt.Errorf("namespace %s: %w", n.Name, err)
			}
			continue
		}
		ed, q := top, queues
		if owner != cfg {
			nr := l.node(owner.node)
			ed = &nr.devs
			_, q = nr.n.Engine.Uswitch.threads()
		}
		open := link.OpenTUN
		if it.Kind == KindTAP {
			open = link.OpenTAP // an Ethernet port (tap.go)
		}
		offload := owner.Uswitch.Offload == nil || *owner.Uswitch.Offload
		if it.Offload != nil {
			offload = *it.Offload
		}
		qs, err := open(l.nss[n.Name], it.Name, link.Options{Queues: q, Offload: offload})
		for _, q := range qs {
			ed.devs = append(ed.devs, q)
		}
		if err != nil {
			return l, fmt.Errorf("namespace %s: %w", n.Name, err)
		}
		mtu := it.MTU
		if mtu == 0 {
			mtu = link.DefaultMTU
		}
		ed.mtus[it.Name] = mtu
		if err := configureNS(l.nss[n.Name], it.Name, mtu, &n); err != nil {
			return l, fmt.Errorf("namespace %s: %w", n.Name, err)
		}
	}
	if err := l.upNodeDevices(top); err != nil {
		return l, err
	}
	if err := upRouting(cfg, l.nss); err != nil {
		return l, err
	}
	devs, mtus := top.devs, top.mtus
	ecfg, ctcfg, err := cfg.EngineConfig()
	if err != nil {
		return l, err
	}
	seed := cfg.Uswitch.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	fs, err := cfg.FaultSet(cfg.FaultSeed(seed))
	if err != nil {
		return l, err
	}
	if o.Observe != nil {
		fs.Observe(o.Observe)
	}
	ecfg.Faults = faultStages(fs)
	ecfg.BridgeFaults = bridgeFaultStages(fs)
	if len(fs.Faults) > 0 {
		fmt.Fprintf(log, "faults: %d, seed %d\n", len(fs.Faults), fs.Seed)
	}
	l.eng = datapath.New(ecfg, ctcfg, seed)
	// the kernel log and NFLOG groups of `uswitch log` and `uswitch nflog`
	l.eng.SetKernelLog(datapath.NewKernelLog())
	fs.BindState(l.eng.CT, l.eng.NAT)
	fs.BindHost(l.faultHost())
	if l.eng.LVS, err = cfg.Director(); err != nil {
		return l, err
	}
	opts := cfg.DatapathOptions()
	if cfg.Uswitch.Inline == nil || *cfg.Uswitch.Inline {
		opts = append(opts, link.WithInline())
	}
	opts = append(opts, link.WithFaults(fs))
	l.dp = link.NewDatapath(l.eng, devs, mtus, workers, opts...)
	l.dpa.Store(l.dp)
	for _, nr := range l.nodes {
		if err := nr.start(seed); err != nil {
			return l, fmt.Errorf("node %s: %w", nr.n.Name, err)
		}
	}
	for _, n := range cfg.Namespaces {
		for _, s := range n.Servers {
			sv, err := startServer(l.nss[n.Name], n.Name, s)
			if err != nil {
				return l, err
			}
			l.srv = append(l.srv, sv)
		}
	}
	for _, n := range cfg.Nodes {
		for _, s := range n.Servers {
			sv, err := startServer(l.nss[n.HostNetns], n.HostNetns, s)
			if err != nil {
				return l, fmt.Errorf("node %s: %w", n.Name, err)
			}
			l.srv = append(l.srv, sv)
		}
	}
	return l, nil
}

// threads are the workers and queues of each TUN the [uswitch] table
// asks for (0: one per CPU; as many queues as workers).
func (r *Router) threads() (workers, queues int) {
	workers = r.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	queues = r.Queues
	if queues == 0 {
		queues = workers
	}
	return workers, queues
}

// Config is the lab's configuration.
func (l *Lab) Config() *Config { return l.cfg }

// Engine is the lab's packet engine.
func (l *Lab) Engine() *datapath.Engine { return l.eng }

// link.Stats are the datapath's counters.
func (l *Lab) Stats() link.Stats {
	if l.dp == nil {
		return link.Stats{}
	}
	return l.dp.Stats()
}

// Run waits until ctx is done or a device fails.
func (l *Lab) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-l.dp.Err():
		return err
	}
}

// Close closes the control socket and metrics listener, stops the
// servers and the datapath and removes the namespaces (their TUNs go
// with them). Idempotent; the error of the first call is
// returned by every call.
func (l *Lab) Close() error {
	l.closed.Do(func() {
		var errs []error
		for _, stop := range l.webStop {
			stop()
		}
		if l.ctl != nil {
			errs = append(errs, l.ctl.Close())
		}
		for i := len(l.srv) - 1; i >= 0; i-- {
			errs = append(errs, l.srv[i].Close())
		}
		if l.dp != nil {
			errs = append(errs, l.dp.Close())
		}
		for _, nr := range l.nodes {
			if nr.dp != nil {
				errs = append(errs, nr.dp.Close())
			}
		}
		for i := len(l.made) - 1; i >= 0; i-- {
			n := l.made[i]
			if h, ok := l.nss[n]; ok {
				h.Close()
			}
			if err := deleteNS(n); err != nil {
				errs = append(errs, fmt.Errorf("namespace %s: %w", n, err))
			}
		}
		l.cerr = errors.Join(errs...)
	})
	return l.cerr
}

// Down removes what a lab of this config made, found by the config's
// fixed names: its namespaces (with the TUNs in them) and the control
// socket a dead lab left. It works after a crash, when no Lab value
// exists. A namespace of a lab's name that no lab made (one that existed
// before, or was made since) is left alone: Up marks each namespace it
// makes with the namespace's identity (markNS), and Down removes only
// marked ones. removed lists what it removed, kept what it left alone.
func Down(cfg *Config) (removed, kept []string, err error) {
	nss, _ := cfg.Names()
	var errs []error
	for _, n := range nss {
		if !nsExists(n) {
			unmarkNS(n)
			continue
		}
		if !madeByLab(n) {
			kept = append(kept, "namespace "+n+" (not made by a uswitch lab)")
			continue
		}
		if e := deleteNS(n); e != nil {
			errs = append(errs, fmt.Errorf("namespace %s: %w", n, e))
			continue
		}
		removed = append(removed, "namespace "+n)
	}
	// a control socket nothing answers on: its lab died (kill -9)
	if p := control.SocketPath(cfg.Name); staleSocket(p) {
		if e := os.Remove(p); e != nil {
			errs = append(errs, e)
		} else {
			removed = append(removed, "control socket "+p)
		}
	}
	return removed, kept, errors.Join(errs...)
}

// staleSocket reports whether path is a Unix socket nothing listens on.
func staleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
