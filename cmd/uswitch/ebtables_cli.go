package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	ebtcli "github.com/uswitch-lab/uswitch/bridge/ebtables/cli"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/host"
)

// ebtablesCmd is `uswitch ebtables ARGS`: uswitch's own options (--lab,
// --socket, --node, --file, --snapshot) are taken out wherever they are, the
// rest is ebtables' command line, run by the instance (control
// "ebtables") or here on a file.
func ebtablesCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var file, snap string
	inst, rest, missing := cutOwnFlags(args, map[string]*string{"--file": &file, "--snapshot": &snap})
	if missing != "" {
		fmt.Fprintf(stderr, "uswitch ebtables: %s needs a value\n", missing)
		return 2
	}
	switch {
	case file != "" && snap != "":
		fmt.Fprintln(stderr, "uswitch ebtables: give --file or --snapshot, not both")
		return 2
	case file != "":
		return ebtcli.Run(rest, &ebtcli.File{Path: file}, ebtables.CmdOptions{}, stdout, stderr)
	case snap != "":
		return ebtcli.Run(rest, &ebtcli.File{Path: filepath.Join(snap, host.FileEbtables), ReadOnly: true}, ebtables.CmdOptions{}, stdout, stderr)
	}
	// -h, -V and command lines ebtables refuses need no instance
	if cl, err := ebtables.ParseCommandLine(rest, ebtables.CmdOptions{}); err != nil || cl.Op == 'h' {
		return ebtcli.Run(rest, &ebtcli.File{Path: os.DevNull, ReadOnly: true}, ebtables.CmdOptions{}, stdout, stderr)
	}
	return controlCall(inst.path(), inst.with(control.Request{Cmd: "ebtables", Args: rest}), stdout, stderr)
}
