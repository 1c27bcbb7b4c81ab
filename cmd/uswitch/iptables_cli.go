package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/iptables"
	iptcli "github.com/uswitch-lab/uswitch/iptables/cli"
)

// iptablesCmd is `uswitch iptables ARGS`: uswitch's own options (--lab,
// --socket, --node, --file, --snapshot) are taken out wherever they are, the rest
// is iptables' command line, run by the instance (control "iptables") or
// here on a file.
func iptablesCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var file, snap string
	inst, rest, missing := cutOwnFlags(args, map[string]*string{"--file": &file, "--snapshot": &snap})
	if missing != "" {
		fmt.Fprintf(stderr, "uswitch iptables: %s needs a value\n", missing)
		return 2
	}
	switch {
	case file != "" && snap != "":
		fmt.Fprintln(stderr, "uswitch iptables: give --file or --snapshot, not both")
		return 2
	case file != "":
		return iptcli.Run(rest, &iptcli.File{Path: file}, &iptcli.FileNames{}, stdout, stderr)
	case snap != "":
		return iptcli.Run(rest, &iptcli.File{Path: filepath.Join(snap, host.FileIPTables), ReadOnly: true}, &iptcli.FileNames{}, stdout, stderr)
	}
	// -h, -V and command lines iptables refuses need no instance
	if cl, err := iptables.ParseCommandLine(rest); err != nil || cl.Help != "" || cl.Version {
		return iptcli.Run(rest, &iptcli.File{Path: os.DevNull, ReadOnly: true}, nil, stdout, stderr)
	}
	return controlCall(inst.path(), inst.with(control.Request{Cmd: "iptables", Args: rest}), stdout, stderr)
}
