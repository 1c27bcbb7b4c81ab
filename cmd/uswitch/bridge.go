package main

import (
	"fmt"
	"io"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
)

// bridgeCmd is `bridge fdb show` against a snapshot (--snapshot DIR) or
// the running instance (its control socket).
func bridgeCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("bridge", stderr)
	snapshot := fs.String("snapshot", "", "answer from the host snapshot in `DIR` instead of the running instance")
	jsonOut := fs.Bool("j", false, "JSON output, as bridge -j")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bArgs := fs.Args()
	if *jsonOut {
		bArgs = append([]string{"-j"}, bArgs...)
	}
	if *snapshot == "" {
		return controlCall(inst.path(), inst.with(control.Request{Cmd: "bridge", Args: bArgs}), stdout, stderr)
	}
	s, err := host.Load(*snapshot)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch bridge: %v\n", err)
		return 1
	}
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	if e.BridgeErr != nil {
		fmt.Fprintf(stderr, "uswitch bridge: %v\n", e.BridgeErr)
		return 1
	}
	return fdb.Command(e.Bridges(), bArgs, 0, stdout, stderr)
}
