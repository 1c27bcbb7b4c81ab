package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/control"
)

const faultUsage = `usage: uswitch fault list [--socket PATH | --lab NAME]
       uswitch fault add [--socket PATH | --lab NAME] --file FILE
       uswitch fault add [--socket PATH | --lab NAME] --at PLACEMENT [--match M] [--action A] [--start D] [--stop D]
                         [--skip N] [--every N] [--offset N] [--nth N,N...] [--times N] [--order fifo] [--scope fault] NAME [NETEM WORDS...]
       uswitch fault del|pause|resume [--socket PATH | --lab NAME] NAME`

// faultCmd changes and lists the faults of a running lab: add takes a
// fault file's [[fault]] tables, or one fault from flags and netem's
// words (uswitch fault add --at wire:tun-web1:egress slow delay 40ms
// 10ms loss 5% 25%).
func faultCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, faultUsage)
		return 2
	}
	op := args[0]
	if op == "-h" || op == "-help" || op == "--help" {
		fmt.Fprintln(stderr, faultUsage)
		op, args = "add", []string{"add", "-h"} // add's flags
	}
	fs, inst := newFlags("fault "+op, stderr)
	var file, at, match, action, start, stop, nth, order, scope string
	var skip, every, offset, times uint64
	if op == "add" {
		fs.StringVar(&file, "file", "", "a fault file: its [[fault]] tables are added")
		fs.StringVar(&at, "at", "", "placement: wire:IFACE:ingress|egress or hook:ipv4:HOOK[@PRIORITY]")
		fs.StringVar(&match, "match", "", "iptables match, e.g. '-p udp --dport 53'")
		fs.StringVar(&action, "action", "", "loss, duplicate, corrupt, delay, rate (default: the netem words)")
		fs.StringVar(&start, "start", "", "when the fault starts, from the lab's start (e.g. 5s)")
		fs.StringVar(&stop, "stop", "", "when it stops")
		fs.Uint64Var(&skip, "skip", 0, "let the first N packets of each flow pass")
		fs.Uint64Var(&every, "every", 0, "act on every N-th packet of each flow")
		fs.Uint64Var(&offset, "offset", 0, "with --every: act on k ≡ offset (mod N)")
		fs.StringVar(&nth, "nth", "", "act on these packets of each flow (1,2,...)")
		fs.Uint64Var(&times, "times", 0, "act at most N times per flow")
		fs.StringVar(&order, "order", "", "fifo: delayed packets keep their order")
		fs.StringVar(&scope, "scope", "", "fault: one state for all flows (netem's)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	req := control.Request{Cmd: "fault", Op: op}
	switch op {
	case "list":
		if fs.NArg() != 0 {
			fmt.Fprintln(stderr, faultUsage)
			return 2
		}
	case "del", "pause", "resume":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, faultUsage)
			return 2
		}
		req.Name = fs.Arg(0)
	case "add":
		if file != "" {
			if fs.NArg() != 0 || at != "" {
				fmt.Fprintln(stderr, faultUsage)
				return 2
			}
			b, err := os.ReadFile(file)
			if err != nil {
				fmt.Fprintf(stderr, "uswitch fault: %v\n", err)
				return 1
			}
			req.Input = string(b)
			break
		}
		if fs.NArg() < 1 || at == "" || (fs.NArg() == 1 && action == "") {
			fmt.Fprintln(stderr, faultUsage)
			return 2
		}
		var b strings.Builder
		b.WriteString("[[fault]]\n")
		kv := func(k, v string) {
			if v != "" {
				fmt.Fprintf(&b, "%s = %s\n", k, strconv.Quote(v))
			}
		}
		kn := func(k string, v uint64) {
			if v != 0 {
				fmt.Fprintf(&b, "%s = %d\n", k, v)
			}
		}
		kv("name", fs.Arg(0))
		kv("at", at)
		kv("match", match)
		kv("action", action)
		kv("netem", strings.Join(fs.Args()[1:], " "))
		kv("start", start)
		kv("stop", stop)
		kv("order", order)
		kv("scope", scope)
		kn("skip", skip)
		kn("every", every)
		kn("offset", offset)
		kn("times", times)
		if nth != "" {
			var ns []string
			for _, x := range strings.Split(nth, ",") {
				if _, err := strconv.ParseUint(x, 10, 64); err != nil {
					fmt.Fprintf(stderr, "uswitch fault: --nth %q: packet numbers separated by commas\n", nth)
					return 2
				}
				ns = append(ns, x)
			}
			fmt.Fprintf(&b, "nth = [%s]\n", strings.Join(ns, ", "))
		}
		req.Input = b.String()
	default:
		fmt.Fprintln(stderr, faultUsage)
		return 2
	}
	return controlCall(inst.path(), inst.with(req), stdout, stderr)
}
