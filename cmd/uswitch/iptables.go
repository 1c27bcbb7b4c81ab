package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/iptables"
)

// loadFlags are shared by iptables-restore and iptables-save.
type loadFlags struct {
	counters bool
	ipset    string
}

func (l *loadFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.counters, "c", false, "use the [pkts:bytes] counters of the input")
	fs.BoolVar(&l.counters, "counters", false, "same as -c")
	fs.StringVar(&l.ipset, "ipset", "", "`ipset save` output defining the sets -m set refers to")
}

func (l *loadFlags) loader() (*iptables.Loader, error) {
	ld := &iptables.Loader{Counters: l.counters}
	if l.ipset != "" {
		f, err := os.Open(l.ipset)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sets, err := iptables.ParseIPSetSave(f, l.ipset)
		if err != nil {
			return nil, err
		}
		ld.Sets = sets
	}
	return ld, nil
}

// load reads a rule set and reports errors as iptables-restore does.
func load(ld *iptables.Loader, r io.Reader, stderr io.Writer) (*iptables.Ruleset, int) {
	rs, err := ld.Load(r)
	if err != nil {
		var re *iptables.RestoreError
		if errors.As(err, &re) {
			fmt.Fprint(stderr, re.Stderr())
			return nil, re.ExitCode()
		}
		fmt.Fprintf(stderr, "%s: %v\n", iptables.Program, err)
		return nil, 1
	}
	return rs, 0
}

func iptablesRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("iptables-restore", stderr)
	var lf loadFlags
	lf.register(fs)
	test := fs.Bool("test", false, "check the input without applying it")
	fs.BoolVar(test, "t", false, "same as --test")
	noflush := fs.Bool("noflush", false, "don't flush the tables before restoring")
	fs.BoolVar(noflush, "n", false, "same as --noflush")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*test {
		return restoreLive(inst.path(), inst.node, &lf, *noflush, fs.Arg(0), stdin, stdout, stderr)
	}
	ld, err := lf.loader()
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	ld.NoFlush = *noflush
	ld.Test = true
	in := stdin
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", iptables.Program, err)
			return 1
		}
		defer f.Close()
		in = f
	}
	if _, code := load(ld, in, stderr); code != 0 {
		return code
	}
	return 0
}

// restoreLive sends the rule set to the running instance, which loads it
// over its own (Base) and swaps it in atomically, or keeps the old one
// and answers with iptables-restore's error and exit code.
func restoreLive(sock, node string, lf *loadFlags, noflush bool, file string, stdin io.Reader, stdout, stderr io.Writer) int {
	in := stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", iptables.Program, err)
			return 1
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", iptables.Program, err)
		return 1
	}
	req := control.Request{Cmd: "iptables-restore", Input: string(data), NoFlush: noflush, Counters: lf.counters, Node: node}
	if lf.ipset != "" {
		b, err := os.ReadFile(lf.ipset)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: %v\n", err)
			return 1
		}
		req.IPSet = string(b)
	}
	return controlCall(sock, req, stdout, stderr)
}

func iptablesSave(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("iptables-save", stderr)
	var lf loadFlags
	lf.register(fs)
	table := fs.String("t", "", "print only this table")
	fs.StringVar(table, "table", "", "same as -t")
	input := fs.String("input", "", "iptables-restore file to load and print (default: the running instance's rule set)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *input == "" {
		return controlCall(inst.path(), inst.with(control.Request{Cmd: "iptables-save", Counters: lf.counters, Table: *table}), stdout, stderr)
	}
	ld, err := lf.loader()
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	f, err := os.Open(*input)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	defer f.Close()
	rs, code := load(ld, f, stderr)
	if code != 0 {
		return code
	}
	if *table != "" {
		if _, ok := iptables.ParseTable(*table); !ok {
			fmt.Fprintf(stderr, "Table `%s' does not exist\n", *table)
			return 1
		}
	}
	if err := rs.Save(stdout, iptables.SaveOptions{Counters: lf.counters, Table: *table}); err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	return 0
}
