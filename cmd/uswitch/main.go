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
	"conntrack":        {conntrackCmd, "conntrack(8) on the running instance's connection tracking table, as conntrack-tools 1.4.7: -L|-G|-D [filters] [-o extended,xml,id] | -F | -C | -S | -E [-e NEW,UPDATE,DESTROY] [filters] [--socket PATH | --lab NAME] [--node NAME]"},
	"fault":            {faultCmd, "list, add, delete, pause or resume the faults of a running lab: list | add (--file FILE | --at PLACEMENT [--match M] [--action A] [--start D --stop D] [--every N [--offset K]] [--nth N,...] [--times N] [--skip N] [--order fifo] [--scope fault] NAME [NETEM WORDS]) | del|pause|resume NAME [--socket PATH | --lab NAME] [--node NAME]"},
	"iptables-restore": {iptablesRestore, "load a rule set into the running instance, atomically (or check it: --test): [--noflush] [-c] [--ipset FILE] [--socket PATH | --lab NAME] [--node NAME] [FILE]"},
	"iptables":         {iptablesCmd, "the iptables 1.8.9 command line (-A -C -D -I -R -L -S -F -Z -N -X -P -E, -t -n -v -x --line-numbers, -h) on the running instance ([--socket PATH | --lab NAME] [--node NAME]) or offline (--file FILE: an iptables-save text, rewritten atomically | --snapshot DIR: read-only)"},
	"ipvsadm":          {ipvsadmCmd, "list, save or change an IPVS table as ipvsadm 1.31 does: a running instance's ([--socket PATH | --lab NAME] [--node NAME] -Ln|-Sn|-Lnc|-A|-E|-D|-a|-e|-d|-C|-Z|--set ...) or offline (--snapshot DIR | --input FILE) -Ln|-Sn|-Lnc|-L --timeout [--stats|--rate] | -R < FILE"},
	"ebtables":         {ebtablesCmd, "the ebtables 1.8.9 (nf_tables) command line (-A -I -D -L [--Ln --Lc --Lx --Lmac2] -N -X -F -Z -P -E, -t filter|nat, -h [TARGET]) on the running instance ([--socket PATH | --lab NAME] [--node NAME]) or offline (--file FILE: an ebtables-save text, rewritten atomically | --snapshot DIR: read-only)"},
	"ebtables-save":    {ebtablesSave, "print the running instance's ebtables rule set (or, with --input FILE, a file's canonical form): [-c] [--socket PATH | --lab NAME] [--node NAME]"},
	"ebtables-restore": {ebtablesRestore, "load an ebtables rule set into the running instance, atomically (or check it: --test): [--noflush] [--socket PATH | --lab NAME] [--node NAME] [FILE]"},
	"bridge":           {bridgeCmd, "answer bridge fdb show [br NAME] (-j: JSON) as iproute2 6.1 prints it, from a host snapshot (--snapshot DIR) or the running instance (--socket PATH | --lab NAME [--node NAME])"},
	"ip":               {ipCmd, "answer ip route get ADDR [from A] [iif D] [oif D] [mark N] [tos T] [ipproto P] [sport N] [dport N] [uid N], ip route show [table T|all] and ip rule show as iproute2 6.1 prints them (-j: JSON), from a host snapshot (--snapshot DIR) or the running instance (--socket PATH | --lab NAME [--node NAME])"},
	"iptables-save":    {iptablesSave, "print the running instance's rule set (or, with --input FILE, a file's canonical form): [-c] [-t TABLE] [--ipset FILE] [--socket PATH | --lab NAME] [--node NAME]"},
	"nfqueue":          {nfqueueCmd, "decide the packets of kernel NFQUEUE queues with the engine (root): (--queue-num N | --queue-balance A:B) [--netns NAME] [--snapshot DIR] [--rules FILE] [--queue-maxlen N] [--no-batch] [--inline] [--duration D] [--socket PATH] [--metrics ADDR] [--faults FILE] [--seed N] [--offload [--offload-mark M]]"},
	"experiment":       {experimentCmd, "run an experiment (root): run FILE [--faults FILE] [--out DIR] [--seed N] [--short] [--trace]: bring the lab up, run its workloads while its faults and steps act, write the report (summary.txt, summary.json, timeline.jsonl, timeline.svg, metrics.prom), bring it down"},
	"lab":              {labCmd, "bring up a lab of namespaces routed by uswitch through TUN/TAP devices (root): [down] [--config FILE] [--faults FILE] [--demo-only] [--no-demo] [--print-default] [--socket PATH] [--metrics ADDR] [--web ADDR [--web-any]]"},
	"monitor":          {monitorCmd, "print the running instance's live trace lines of packets marked by -j TRACE, as xtables-monitor --trace: --trace [--socket PATH | --lab NAME] [--node NAME]"},
	"pcap":             {pcapCmd, "write a pcap of the packets a running lab's device reads and writes (tcpdump -r): [-i DEVICE|any] [-w FILE|-] [-c COUNT] [--socket PATH | --lab NAME] [--node NAME]"},
	"log":              {logCmd, "print the running instance's kernel log lines (-j LOG, iptables-legacy TRACE, ebtables --log) as dmesg shows them: [-f] [-t] [--socket PATH | --lab NAME] [--node NAME]"},
	"nflog":            {nflogCmd, "write a pcap (link type NFLOG, as tcpdump -i nflog:N -w) of the packets the running instance's NFLOG rules of a group log: [-g GROUP] [-w FILE|-] [-c COUNT] [--socket PATH | --lab NAME] [--node NAME]"},
	"metrics":          {metricsCmd, "print the running instance's Prometheus metrics: [--socket PATH | --lab NAME] [--node NAME]"},
	"snapshot":         {snapshot, "capture the host's network state into a folder: DIR [--netns NAME]"},
	"trace":            {traceCmd, "replay packets against a host snapshot, printing xtables-monitor --trace lines (or the kernel log's LOG and legacy TRACE lines with --format log): --snapshot DIR (--pcap FILE [--iif NAME] | --packet SPEC) [--trace-all] [--format monitor|log] [--faults FILE [--seed N]] [--svg DIR] [--html FILE] [--stats] [--write-pcap FILE]; exit 1 on a truncated or oversized capture record, after tracing the packets before it"},
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
