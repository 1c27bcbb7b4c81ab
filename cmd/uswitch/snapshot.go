package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/uswitch-lab/uswitch/host"
)

// snapshot captures the host (or a namespace) into a snapshot folder and
// checks that it loads.
func snapshot(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	netns := fs.String("netns", "", "capture inside the network namespace `NAME` (ip netns exec)")
	// Accept DIR before or after the flags.
	var dir string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		dir, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if dir == "" && fs.NArg() == 1 {
		dir = fs.Arg(0)
	} else if fs.NArg() != 0 || dir == "" {
		fmt.Fprintln(stderr, "usage: uswitch snapshot DIR [--netns NAME]")
		return 2
	}
	if err := host.Capture(dir, *netns); err != nil {
		fmt.Fprintf(stderr, "uswitch: snapshot: %v\n", err)
		return 1
	}
	s, err := host.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: snapshot: written but does not load: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d links, %d addresses, %d routes, %d rules\n", dir, len(s.Links), len(s.Addrs), len(s.Routes), len(s.Rules))
	return 0
}
