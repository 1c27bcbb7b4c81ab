package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/uswitch-lab/uswitch/experiment"
)

const experimentUsage = "usage: uswitch experiment run FILE [--faults FILE] [--out DIR] [--seed N] [--short] [--trace]"

// experimentCmd runs an experiment: a lab file with [experiment],
// [[workload]], [[step]] and [[fault]] tables (package experiment).
func experimentCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("experiment run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	faults := fs.String("faults", "", "a fault file: its [experiment], [[fault]], [[workload]] and [[step]] tables join the lab file's")
	out := fs.String("out", "", "the report folder (default: [experiment] report, else out/NAME)")
	seed := fs.Uint64("seed", 0, "the seed (default: [experiment] seed, else the clock; printed either way)")
	short := fs.Bool("short", false, "the short form: every time of the run scaled to [experiment] short")
	trace := fs.Bool("trace", false, "also write the live trace lines (fault decisions among them) to trace.txt")
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(stderr, experimentUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.PrintDefaults()
		}
		return 2
	}
	// the file may come before the flags
	rest := args[1:]
	var file string
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() != 0 || file == "" {
		fmt.Fprintln(stderr, experimentUsage)
		return 2
	}
	cfg, src, err := experiment.Load(file, *faults)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: experiment: %v\n", err)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "uswitch: experiment: needs root (it makes network namespaces and TUN devices)")
		return 1
	}
	sum, err := experiment.Run(cfg, src, experiment.Options{Out: *out, Seed: *seed, Short: *short, Trace: *trace, Log: stderr})
	if sum != nil && sum.Out != "" {
		if b, rerr := os.ReadFile(sum.Out + "/summary.txt"); rerr == nil {
			stdout.Write(b)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: experiment: %v\n", err)
		return 1
	}
	return 0
}
