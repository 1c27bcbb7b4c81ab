package experiment

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/nfqueue"
)

// An experiment in NFQUEUE mode ([nfqueue]): the kernel of a lab
// namespace forwards and queues packets to uswitch, which decides them
// with its engine, as `uswitch nfqueue --netns NS` does, in the runner's
// process. A datapath-kill fault closes its queue sockets: for the
// kernel that is what the death of a `uswitch nfqueue` process is (the socket release
// destroys the queue instances, nfqnl_rcv_nl_event: the packets they
// held are dropped, nfqnl_flush with NF_DROP; later packets meet no
// listener and pass only with --queue-bypass, nf_queue.c).

// NFQueueResult is the NFQUEUE part of the summary.
type NFQueueResult struct {
	Netns  string   `json:"netns"`
	Queues []uint16 `json:"queues"`
	// Killed: a datapath-kill fault stopped the decider (its events in
	// the timeline say when).
	Killed bool `json:"killed"`
	// HeldAtKill are the packets the kernel held for uswitch at the
	// kill (queue_total of /proc/net/netfilter/nfnetlink_queue, per
	// queue; for a fault's kill, as last seen up to 100 ms before),
	// which it dropped; BacklogAtKill those uswitch had read and not
	// yet decided.
	HeldAtKill    map[uint16]uint32 `json:"held_at_kill,omitempty"`
	BacklogAtKill int               `json:"backlog_at_kill,omitempty"`
	// Packets, Accepted, Dropped: what uswitch decided.
	Packets  uint64 `json:"packets"`
	Accepted uint64 `json:"accepted"`
	Dropped  uint64 `json:"dropped"`
	Overruns uint64 `json:"overruns"`
}

type nfq struct {
	mu     sync.Mutex
	cfg    *lab.NFQueue
	srv    *nfqueue.Server
	eng    *datapath.Engine
	set    *fault.Set
	res    NFQueueResult
	killed bool
	// stop ends the faults' clock (Set.Tick for datapath-kill and
	// -stall)
	stop, done chan struct{}
}

// startNFQueue loads the kernel's queueing rules into the namespace and
// starts deciding its queues, with the experiment's faults (compiled
// with seed; observe sees their decisions): hook faults as stages of
// its engine, nfqueue:verdict faults on its verdict path, state faults
// bound to it, datapath-kill and -stall acting on its queues, as
// `uswitch nfqueue --faults` runs them.
func startNFQueue(c *lab.NFQueue, specs []fault.Spec, seed uint64, observe func(fault.Decision), logw io.Writer) (*nfq, error) {
	fset, err := fault.NewSet(specs, seed, nil)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	if ifs := fset.Ifaces(); len(ifs) > 0 {
		return nil, fmt.Errorf("nfqueue: fault at wire:%s: wire placements need the lab's TUN/TAP devices (NFQUEUE has no wire)", ifs[0])
	}
	fset.Observe(observe)
	qs, err := c.QueueList()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", c.Netns, "iptables-restore")
	cmd.Stdin = strings.NewReader(c.Kernel)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nfqueue: iptables-restore in %s: %v: %s", c.Netns, err, bytes.TrimSpace(out))
	}
	tmp, err := os.MkdirTemp("", "uswitch-experiment-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := host.Capture(tmp, c.Netns); err != nil {
		return nil, fmt.Errorf("nfqueue: capture %s: %w", c.Netns, err)
	}
	s, err := host.Load(tmp)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	ecfg := s.EngineConfig()
	if c.Rules != "" {
		ld := &iptables.Loader{}
		if s.Sets != nil {
			ld.Sets = s.Sets
		}
		if ecfg.Rules, err = ld.LoadString(c.Rules); err != nil {
			return nil, fmt.Errorf("nfqueue: rules: %w", err)
		}
	}
	for _, f := range fset.Hooks() {
		ecfg.Faults = append(ecfg.Faults, f)
	}
	for _, f := range fset.Bridge() {
		ecfg.BridgeFaults = append(ecfg.BridgeFaults, f)
	}
	eng := datapath.New(ecfg, s.ConntrackConfig(), seed)
	srv, err := nfqueue.Start(eng, s.FIB.LinkName, nfqueue.Options{Queues: qs, NetNS: c.Netns, Faults: fset, Offload: c.Offload,
		Logf: func(f string, a ...any) { fmt.Fprintf(logw, "nfqueue: "+f+"\n", a...) }})
	if err != nil {
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	fset.SetEpoch(srv.Now())
	fset.BindState(eng.CT, eng.NAT)
	fset.BindHost(&faulthost.Host{Eng: eng, Sets: s.Sets, KillFn: srv.Kill, StallFn: srv.Stall})
	q := &nfq{cfg: c, srv: srv, eng: eng, set: fset, res: NFQueueResult{Netns: c.Netns, Queues: qs},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fset.Tick(srv.Now())
			if i%10 == 0 {
				q.watch()
			}
			select {
			case <-t.C:
			case <-q.stop:
				return
			}
		}
	}()
	fmt.Fprintf(logw, "nfqueue: deciding queues %v of %s\n", qs, c.Netns)
	return q, nil
}

// packets is the number of packets the decider has read (the
// timeline's global packet number in NFQUEUE mode).
func (q *nfq) packets() uint64 { return q.srv.Packets() }

// watch looks at the kernel's queues every 100 ms while the decider
// lives; when a datapath-kill fault has stopped it, the last look is
// what the kernel held (up to 100 ms before the kill) and dropped.
func (q *nfq) watch() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.killed {
		return
	}
	if q.srv.Killed() {
		q.killed = true
		q.res.Killed = true
		return
	}
	st := q.srv.Stats()
	q.res.HeldAtKill = map[uint16]uint32{}
	q.res.BacklogAtKill = 0
	for _, qs := range st.Queues {
		if qs.HasKernel {
			q.res.HeldAtKill[qs.Num] = qs.Kernel.Depth
		}
		q.res.BacklogAtKill += qs.Backlog
	}
}

// result stops the decider (if it runs) and returns its part of the
// summary.
func (q *nfq) result() *NFQueueResult {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-q.stop:
	default:
		close(q.stop)
		<-q.done
	}
	if !q.killed {
		q.srv.Close()
		q.killed = true
	}
	st := q.srv.Stats()
	q.res.Packets, q.res.Accepted, q.res.Dropped, q.res.Overruns = st.Packets, st.Accepted, st.Dropped, st.Overruns
	r := q.res
	return &r
}

// metrics is the decider's Prometheus text.
func (q *nfq) metrics() string {
	var b strings.Builder
	q.srv.WriteMetrics(&b)
	return b.String()
}
