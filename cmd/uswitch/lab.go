package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/web"
)

// labCmd brings up a lab (the embedded default or --config FILE), runs its
// demonstration and keeps routing until SIGINT/SIGTERM; `lab down`
// removes what a lab of that config left behind.
func labCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	down := len(args) > 0 && args[0] == "down"
	if down {
		args = args[1:]
	}
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "the lab file (TOML); default: the embedded default lab")
	demoOnly := fs.Bool("demo-only", false, "run the demonstration, then tear the lab down and exit")
	noDemo := fs.Bool("no-demo", false, "skip the demonstration")
	printCfg := fs.Bool("print-default", false, "print the embedded default lab file and exit")
	sock := fs.String("socket", "", "control socket for iptables-save/-restore, conntrack, metrics (default "+control.SocketPath("NAME")+"; \"none\": no socket)")
	metrics := fs.String("metrics", "", "also serve Prometheus metrics over HTTP at this address, e.g. 127.0.0.1:9469")
	faults := fs.String("faults", "", "a fault file: its [experiment] and [[fault]] tables join the lab's")
	webAddr := fs.String("web", "", "serve the live page (topology, rule counters, conntrack, traced packets drawn) at this address, e.g. 127.0.0.1:8080")
	webAny := fs.Bool("web-any", false, "let --web listen on an address other than loopback (the page has no authentication)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: uswitch lab [down] [--config FILE] [--faults FILE] [--demo-only | --no-demo] [--print-default]")
		return 2
	}
	if *printCfg {
		io.WriteString(stdout, lab.DefaultTOML())
		return 0
	}
	cfg := lab.Default()
	if *file != "" {
		var err error
		if cfg, err = lab.Load(*file); err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 1
		}
	}
	if *faults != "" && !down {
		b, err := os.ReadFile(*faults)
		if err == nil {
			err = cfg.AddFaults(*faults, b)
		}
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 1
		}
	}
	if down {
		removed, kept, err := lab.Down(cfg)
		for _, r := range removed {
			fmt.Fprintf(stdout, "removed %s\n", r)
		}
		for _, k := range kept {
			fmt.Fprintf(stdout, "left alone %s\n", k)
		}
		if len(removed) == 0 && len(kept) == 0 && err == nil {
			fmt.Fprintln(stdout, "nothing to remove")
		}
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: lab down: %v\n", err)
			return 1
		}
		return 0
	}
	if *webAddr != "" {
		if err := web.CheckAddr(*webAddr, *webAny); err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 2
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "uswitch: lab: needs root (it makes network namespaces and TUN devices)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Up(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
		return 1
	}
	defer l.Close()
	if *sock != "none" {
		if err := l.ListenControl(*sock); err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 1
		}
	}
	l.Describe(stdout)
	if p := l.ControlPath(); p != "" {
		fmt.Fprintf(stdout, "control socket: %s (uswitch iptables-save, iptables-restore, conntrack -L, metrics)\n", p)
	}
	if *metrics != "" {
		a, err := l.ListenMetrics(*metrics)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", a)
	}
	if *webAddr != "" {
		a, err := l.ListenWeb(*webAddr, *webAny)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "live page: http://%s/\n", a)
	}
	status := 0
	if !*noDemo {
		fmt.Fprintln(stdout, "demo (every packet below crosses uswitch):")
		if err := l.Demo(stdout); err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			status = 1
		}
	}
	if !*demoOnly {
		fmt.Fprintln(stdout, "uswitch is routing the lab; Ctrl-C (SIGINT) or SIGTERM stops it and removes the lab")
		if err := l.Run(ctx); err != nil {
			fmt.Fprintf(stderr, "uswitch: lab: %v\n", err)
			status = 1
		}
		fmt.Fprintf(stdout, "uswitch datapath: %v\n", l.Stats())
	}
	if err := l.Close(); err != nil {
		fmt.Fprintf(stderr, "uswitch: lab: removing the lab: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "lab removed")
	return status
}
