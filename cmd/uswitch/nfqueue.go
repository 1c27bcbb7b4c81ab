package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/nfqueue"
)

// nfqueueCmd binds kernel NFQUEUE queues and decides their packets with
// the engine until interrupted (see package nfq for where the kernel's
// queue rule goes).
func nfqueueCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nfqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	num := fs.Int("queue-num", -1, "bind queue `N`")
	balance := fs.String("queue-balance", "", "bind queues `A:B` (as iptables' --queue-balance)")
	netnsName := fs.String("netns", "", "bind the queues of network namespace `NAME` (and capture its state)")
	snap := fs.String("snapshot", "", "host snapshot folder to run on (default: capture the namespace now)")
	rulesFile := fs.String("rules", "", "uswitch's rule set, an iptables-save `FILE` (default: the snapshot's)")
	noBatch := fs.Bool("no-batch", false, "one sendmsg per verdict, no batch verdicts")
	inline := fs.Bool("inline", false, "each queue's reader decides what it read (no worker goroutine)")
	maxLen := fs.Uint("queue-maxlen", nfqueue.DefaultMaxQueueLen, "kernel queue length before fail-open accepts")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until SIGINT/SIGTERM)")
	sock := fs.String("socket", "", "control socket for iptables-save/-restore, conntrack, metrics (default "+control.SocketPath("nfqueue-N")+", N the first queue; \"none\": no socket)")
	faultsFile := fs.String("faults", "", "a fault `FILE` ([[fault]] tables: hook and state faults, nfqueue:verdict faults, datapath-kill and -stall on the queues)")
	faultSeed := fs.Uint64("seed", 0, "the faults' seed (default: the file's, else the clock)")
	offload := fs.Bool("offload", false, "install each accepted TCP/UDP connection in the kernel's conntrack (uswitch's NAT binding, the offload connmark) after its first packets, and a mangle rule accepting that connmark before the queue: later packets pass the kernel unqueued (the queue rule must be in mangle PREROUTING/OUTPUT)")
	offloadMark := fs.Uint("offload-mark", nfqueue.DefaultOffloadMark, "the offload's connmark bit")
	metricsAddr := fs.String("metrics", "", "also serve Prometheus metrics over HTTP at this address, e.g. 127.0.0.1:9469")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	queues, err := queueList(*num, *balance)
	if err != nil || fs.NArg() != 0 {
		if err == nil {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stderr, "uswitch nfqueue: %v\nusage: uswitch nfqueue (--queue-num N | --queue-balance A:B) [--netns NAME] [--snapshot DIR] [--rules FILE]\n", err)
		return 2
	}
	dir := *snap
	if dir == "" {
		tmp, err := os.MkdirTemp("", "uswitch-nfqueue-")
		if err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if err := host.Capture(tmp, *netnsName); err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: capture: %v\n", err)
			return 1
		}
		dir = tmp
	}
	s, err := host.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
		return 1
	}
	cfg := s.EngineConfig()
	if *rulesFile != "" {
		b, err := os.ReadFile(*rulesFile)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
			return 1
		}
		ld := &iptables.Loader{}
		if s.Sets != nil {
			ld.Sets = s.Sets
		}
		if cfg.Rules, err = ld.LoadString(string(b)); err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %s: %v\n", *rulesFile, err)
			return 1
		}
	}
	// cfgMu: the faults' rule swaps and the control socket's restores
	// change the engine's configuration one at a time
	var cfgMu sync.Mutex
	var fset *fault.Set
	if *faultsFile != "" {
		if fset, err = fault.LoadFile(*faultsFile, *faultSeed, uint64(time.Now().UnixNano())); err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
			return 1
		}
		if ifs := fset.Ifaces(); len(ifs) > 0 {
			fmt.Fprintf(stderr, "uswitch nfqueue: %s: wire placements need a lab (NFQUEUE has no wire)\n", ifs[0])
			return 1
		}
		for _, f := range fset.Hooks() {
			cfg.Faults = append(cfg.Faults, f)
		}
		for _, f := range fset.Bridge() {
			cfg.BridgeFaults = append(cfg.BridgeFaults, f)
		}
		fmt.Fprintf(stdout, "faults: %d, seed %d\n", len(fset.Faults), fset.Seed)
	}
	eng := datapath.New(cfg, s.ConntrackConfig(), uint64(time.Now().UnixNano()))
	eng.SetKernelLog(datapath.NewKernelLog()) // uswitch log, uswitch nflog
	srv, err := nfqueue.Start(eng, s.FIB.LinkName, nfqueue.Options{Queues: queues, NetNS: *netnsName,
		MaxQueueLen: uint32(*maxLen), NoBatch: *noBatch, Inline: *inline, Faults: fset,
		Offload: *offload, OffloadMark: uint32(*offloadMark),
		Logf: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }})
	if err != nil {
		fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
		return 1
	}
	defer srv.Close()
	if fset != nil {
		fset.SetEpoch(srv.Now())
		fset.BindState(eng.CT, eng.NAT)
		fset.BindHost(&faulthost.Host{Eng: eng, Sets: s.Sets, KillFn: srv.Kill, StallFn: srv.Stall, Lock: &cfgMu})
		// datapath-kill and -stall act on the clock, not at a packet
		// (a stalled datapath decides none)
		// The faults due at the start act before the queues are
		// announced: a stall from 0s holds the first packet sent after
		// "deciding queues" (the ticker's first tick could come after
		// it on a loaded machine; TestNFQueueKillAsKernel saw 10
		// packets decided so).
		fset.Tick(srv.Now())
		stopTick := make(chan struct{})
		defer close(stopTick)
		go func() {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					fset.Tick(srv.Now())
				case <-stopTick:
					return
				}
			}
		}()
	}
	// live control: the lab's server and commands over this engine
	ctl := control.NewServer(&control.Engine{Eng: eng, Now: srv.Now, Lock: &cfgMu, Metrics: func() string {
		var b strings.Builder
		srv.WriteMetrics(&b)
		control.WriteConntrack(prom.New(&b), eng)
		return b.String()
	}}, nil)
	defer ctl.Close()
	if *sock != "none" {
		p := *sock
		if p == "" {
			p = control.SocketPath(fmt.Sprintf("nfqueue-%d", queues[0]))
		}
		if err := ctl.Listen(p); err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "control socket: %s (uswitch iptables-save, iptables-restore, conntrack -L, metrics --socket %s)\n", p, p)
	}
	if *metricsAddr != "" {
		a, err := ctl.ListenMetrics(*metricsAddr)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch nfqueue: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", a)
	}
	fmt.Fprintf(stdout, "uswitch nfqueue: deciding queues %v%s\n", queues, map[bool]string{true: " in " + *netnsName}[*netnsName != ""])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var timeout <-chan time.Time
	if *duration > 0 {
		timeout = time.After(*duration)
	}
	select {
	case <-sig:
	case <-timeout:
	}
	ctl.Close()
	srv.Close()
	fmt.Fprintf(stdout, "uswitch nfqueue: %v\n", srv.Stats())
	if *offload {
		o := srv.OffloadStats()
		fmt.Fprintf(stdout, "uswitch nfqueue: offload: %d flows offloaded, kept queued %v", o.Offloaded, o.Queued)
		if o.Blocker != "" {
			fmt.Fprintf(stdout, " (rule set: %s)", o.Blocker)
		}
		fmt.Fprintln(stdout)
	}
	if fset != nil {
		if vs := srv.VerdictFaults(); vs != (nfqueue.VerdictFaultStats{}) {
			fmt.Fprintf(stdout, "verdict faults: held %d, duplicates %d (failed %d), dropped %d\n", vs.Held, vs.Duplicates, vs.DuplicateErrors, vs.Dropped)
		}
		fset.WriteList(stdout)
	}
	return 0
}

// queueList is --queue-num N or the range of --queue-balance A:B.
func queueList(num int, balance string) ([]uint16, error) {
	if (num >= 0) == (balance != "") {
		return nil, fmt.Errorf("need exactly one of --queue-num and --queue-balance")
	}
	if num >= 0 {
		if num > 65535 {
			return nil, fmt.Errorf("--queue-num %d: out of range 0-65535", num)
		}
		return []uint16{uint16(num)}, nil
	}
	a, b, ok := strings.Cut(balance, ":")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo > hi {
		return nil, fmt.Errorf("--queue-balance %q: want A:B with 0 <= A <= B <= 65535", balance)
	}
	var qs []uint16
	for n := lo; n <= hi; n++ {
		qs = append(qs, uint16(n))
	}
	return qs, nil
}
