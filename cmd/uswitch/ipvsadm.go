package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/lvs"
)

const ipvsadmUsage = `usage: uswitch ipvsadm [--snapshot DIR | --input FILE | --socket PATH | --lab NAME] IPVSADM-ARGS
  -L|-l [-n] [--stats|--rate|--thresholds|--persistent-conn|--tun-info] [--exact] [--nosort] [-t|-u|-f SERVICE]
  -L -c          connection entries
  -L --timeout   the --set timeouts
  -S [-n]        the rules (ipvsadm -Sn form)
  -R             read rules from stdin (after --snapshot/--input), print the result as -Sn
  -A -E -D -C -a -e -d -Z --set   change the running instance's table
--snapshot DIR reads DIR/ipvsadm-save (host snapshot), --input FILE an ipvsadm -S file;
without them the command goes to the running lab (--lab, default "default") or
the instance at --socket (uswitch nfqueue). Names are never resolved (-L prints
what -Ln prints).
`

// ipvsadmCmd is the offline ipvsadm: the table of a host snapshot or a
// rule file, listed or saved as ipvsadm 1.31 prints it.
func ipvsadmCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var snapshot, input string
	inst, rest, missing := cutOwnFlags(args, map[string]*string{"--snapshot": &snapshot, "--input": &input})
	if missing != "" {
		fmt.Fprintf(stderr, "uswitch ipvsadm: %s needs an argument\n%s", missing, ipvsadmUsage)
		return 2
	}
	if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" {
		fmt.Fprint(stderr, ipvsadmUsage)
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	c, err := lvs.ParseCommand(rest)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if snapshot == "" && input == "" {
		// the running instance
		req := control.Request{Cmd: "ipvsadm", Args: rest}
		if c.Cmd == lvs.CmdRestore {
			b, err := io.ReadAll(stdin)
			if err != nil {
				fmt.Fprintf(stderr, "uswitch ipvsadm: %v\n", err)
				return 1
			}
			req.Input = string(b)
		}
		return controlCall(inst.path(), inst.with(req), stdout, stderr)
	}
	switch c.Cmd {
	case lvs.CmdList, lvs.CmdSave, lvs.CmdRestore:
	default:
		fmt.Fprintf(stderr, "uswitch ipvsadm: a snapshot or file is read only: %s needs the running instance\n", c.Cmd)
		return 1
	}
	d := lvs.NewDirector()
	if snapshot != "" {
		s, err := host.LoadPartial(snapshot)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch ipvsadm: %s: %v\n", snapshot, err)
			return 1
		}
		if s.IPVS != nil {
			d = s.IPVS
		}
	}
	if input != "" {
		f, err := os.Open(input)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch ipvsadm: %v\n", err)
			return 1
		}
		err = lvs.Restore(d, f, input)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	switch {
	case c.Cmd == lvs.CmdRestore:
		if err = lvs.Restore(d, stdin, "stdin"); err == nil {
			err = lvs.Save(stdout, d)
		}
	case c.Cmd == lvs.CmdSave:
		err = lvs.PrintList(stdout, d, c.Format|lvs.FmtRule)
	case c.Has("connection"):
		// an offline table has no connections: the headers only
		err = lvs.PrintConns(stdout, d, 0, c.Format)
	case c.Has("timeout"):
		err = lvs.PrintTimeout(stdout, d)
	case c.Has("daemon"):
		// no sync daemon runs offline: ipvsadm prints nothing
	case c.Has("service-address"):
		err = lvs.PrintService(stdout, d, c.Service.Key, c.Format)
	default:
		err = lvs.PrintList(stdout, d, c.Format)
	}
	if err != nil {
		var ce *lvs.CommandError
		if !errors.As(err, &ce) {
			err = fmt.Errorf("uswitch ipvsadm: %w", err)
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
