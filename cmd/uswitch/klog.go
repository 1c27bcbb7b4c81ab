package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/uswitch-lab/uswitch/control"
)

// logCmd is dmesg for a running instance: the kernel log lines its
// engine wrote (-j LOG, iptables-legacy TRACE, ebtables --log), as the
// kernel's dmesg shows them; -f follows (dmesg -w), -t drops the
// timestamps (dmesg -t).
func logCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("log", stderr)
	follow := fs.Bool("f", false, "print the buffered lines, then the new ones as they are written, until interrupted (dmesg -w)")
	noTime := fs.Bool("t", false, "no timestamps (dmesg -t)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: uswitch log [-f] [-t] [--socket PATH | --lab NAME] [--node NAME]")
		return 2
	}
	req := control.Request{Cmd: "log", Follow: *follow, NoTime: *noTime}
	if !*follow {
		return controlCall(inst.path(), inst.with(req), stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return streamCall(ctx, inst.path(), inst.with(req), stdout, stderr)
}

// nflogCmd is tcpdump -i nflog:N -w FILE for a running instance: a pcap
// (link type NFLOG) of the packets its NFLOG rules of group N log,
// until interrupted or -c records.
func nflogCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("nflog", stderr)
	group := fs.Int("g", 0, "the NFLOG group (--nflog-group) to listen to")
	file := fs.String("w", "-", "the pcap file to write (\"-\": stdout, e.g. | tcpdump -vr -)")
	count := fs.Int("c", 0, "stop after this many packets")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *count < 0 {
		fmt.Fprintln(stderr, "usage: uswitch nflog [-g GROUP] [-w FILE] [-c COUNT] [--socket PATH | --lab NAME] [--node NAME]")
		return 2
	}
	if *group < 0 || *group > 0xffff {
		fmt.Fprintf(stderr, "uswitch: nflog: Netfilter group range from 0 to 65535 (got %d)\n", *group)
		return 2
	}
	return streamToFile(inst, control.Request{Cmd: "nflog", Group: *group, Count: *count}, *file, stdout, stderr)
}
