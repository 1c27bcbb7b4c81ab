package main

import (
	"fmt"
	"io"
	"os"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/iproute"
)

// ipCmd is `ip route get|show`, `ip rule show` and `ip neigh show` against a snapshot
// (--snapshot DIR) or the running instance (its control socket).
func ipCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("ip", stderr)
	snapshot := fs.String("snapshot", "", "answer from the host snapshot in `DIR` instead of the running instance")
	jsonOut := fs.Bool("j", false, "JSON output, as ip -j")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ipArgs := fs.Args()
	if *jsonOut {
		ipArgs = append([]string{"-j"}, ipArgs...)
	}
	if *snapshot == "" {
		return controlCall(inst.path(), inst.with(control.Request{Cmd: "ip", Args: ipArgs}), stdout, stderr)
	}
	s, err := host.Load(*snapshot)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch ip: %v\n", err)
		return 1
	}
	names := iproute.DefaultNames()
	names.AddRTTables(s.Raw[host.FileRTTables])
	names.AddDSField(s.Raw[host.FileDSField])
	neigh, err := s.IPNeighbours()
	if err != nil {
		fmt.Fprintf(stderr, "uswitch ip: %v\n", err)
		return 1
	}
	return iproute.Run(iproute.Env{FIB: s.FIB, Names: names, UID: uint32(os.Getuid()), Neighbours: neigh}, ipArgs, stdout, stderr)
}
