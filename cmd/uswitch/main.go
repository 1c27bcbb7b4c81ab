// Command uswitch is the userspace Linux packet datapath. Each subcommand
// only turns flags into configuration and calls into the packages that do
// the work.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

type subcommand struct {
	run  func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
	help string
}

var subcommands = map[string]subcommand{
	"iptables-restore": {iptablesRestore, "read an iptables-restore rule set: [--test] [--noflush] [-c] [--ipset FILE] [FILE]"},
	"iptables-save":    {iptablesSave, "print the canonical iptables-save form of a rule set: [-c] [-t TABLE] [--ipset FILE] --input FILE"},
	"lab":              {labCmd, "bring up a lab of namespaces routed by uswitch through TUN devices (root): [down] [--config FILE] [--demo-only] [--no-demo]"},
	"snapshot":         {snapshot, "capture the host's network state into a folder: DIR [--netns NAME]"},
	"trace":            {traceCmd, "replay packets against a host snapshot, printing xtables-monitor --trace lines: --snapshot DIR (--pcap FILE [--iif NAME] | --packet SPEC) [--trace-all]"},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: uswitch COMMAND [ARGS]")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-18s %s\n", n, subcommands[n].help)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	sc, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "uswitch: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(sc.run(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
}
