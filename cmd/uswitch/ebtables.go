package main

import (
	"fmt"
	"io"
	"os"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/control"
)

// ebtablesSave prints the running instance's ebtables rule set, or with
// --input FILE a file's canonical form.
func ebtablesSave(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("ebtables-save", stderr)
	counters := fs.Bool("c", false, "print the rules' counters")
	input := fs.String("input", "", "ebtables-restore `FILE` to load and print (default: the running instance's rule set)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *input == "" {
		return controlCall(inst.path(), inst.with(control.Request{Cmd: "ebtables-save", Counters: *counters}), stdout, stderr)
	}
	b, err := os.ReadFile(*input)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	rs, rerr := (&ebtables.Loader{}).Load(string(b))
	if rerr != nil {
		fmt.Fprint(stderr, rerr.Stderr)
		return rerr.ExitCode
	}
	rs.Save(stdout, ebtables.SaveOptions{Counters: *counters})
	return 0
}

// ebtablesRestore loads an ebtables rule set into the running instance,
// atomically (or checks it: --test).
func ebtablesRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("ebtables-restore", stderr)
	test := fs.Bool("test", false, "check the input without applying it")
	noflush := fs.Bool("noflush", false, "don't flush the tables before restoring")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	in := stdin
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "ebtables-restore: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(stderr, "ebtables-restore: %v\n", err)
		return 1
	}
	if *test {
		if _, rerr := (&ebtables.Loader{}).Load(string(data)); rerr != nil {
			fmt.Fprint(stderr, rerr.Stderr)
			return rerr.ExitCode
		}
		return 0
	}
	return controlCall(inst.path(), inst.with(control.Request{Cmd: "ebtables-restore", Input: string(data), NoFlush: *noflush}), stdout, stderr)
}
