package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
	var inst instanceFlags
	inst.lab = "default"
	var file, snap string
	var rest []string
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(args[i], "=")
		var dst *string
		switch name {
		case "--lab":
			dst = &inst.lab
		case "--socket":
			dst = &inst.socket
		case "--node":
			dst = &inst.node
		case "--file":
			dst = &file
		case "--snapshot":
			dst = &snap
		default:
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				fmt.Fprintf(stderr, "uswitch iptables: %s needs a value\n", name)
				return 2
			}
			i++
			val = args[i]
		}
		*dst = val
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
