package iproute

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
)

// Neighbour is one entry of a neighbour table, as `ip neigh show` lists
// it: the address, the device, the link-layer address when the entry has
// one (not INCOMPLETE or FAILED), and the NUD state's name (REACHABLE,
// STALE, DELAY, PROBE, INCOMPLETE, FAILED, PERMANENT).
type Neighbour struct {
	Dst    netip.Addr
	Dev    string
	LLAddr [6]byte
	HasLL  bool
	State  string
}

// parseNeigh reads the arguments of `ip neigh show` (ipneigh.c
// do_show_or_flush): `dev DEV` is the one selector uswitch takes.
func parseNeigh(args []string) (dev string, err *Error) {
	if len(args) > 0 {
		verb := args[0]
		switch {
		case matches(verb, "show") || matches(verb, "list") || verb == "lst":
			args = args[1:]
		default:
			return "", unsupported("neigh " + verb)
		}
	}
	for len(args) > 0 {
		switch {
		case args[0] == "dev":
			if len(args) < 2 {
				return "", &Error{Msg: "Command line is not complete. Try option \"help\"\n", Code: 255}
			}
			dev = args[1]
			args = args[2:]
		default:
			return "", unsupported("neigh show " + args[0] + " (uswitch takes dev DEV)")
		}
	}
	return dev, nil
}

// ShowNeighbours is `ip neigh show [dev DEV]` over env.Neighbours, as
// print_neigh prints each entry ("DST dev DEV lladdr MAC STATE ", the
// device left out when it is the filter). The kernel lists its hash
// table's order; uswitch lists by device, then address.
func ShowNeighbours(env Env, dev string, json bool) (string, *Error) {
	if dev != "" && env.FIB != nil && env.FIB.Ifindex(dev) == 0 {
		return "", &Error{Msg: fmt.Sprintf("Cannot find device \"%s\"\n", dev), Code: 1}
	}
	ns := append([]Neighbour(nil), env.Neighbours...)
	sort.Slice(ns, func(i, j int) bool {
		if ns[i].Dev != ns[j].Dev {
			return ns[i].Dev < ns[j].Dev
		}
		return ns[i].Dst.Less(ns[j].Dst)
	})
	var objs []string
	for _, n := range ns {
		if dev != "" && n.Dev != dev {
			continue
		}
		o := newObj(json)
		o.open("", false)
		o.str("dst", n.Dst.String(), n.Dst.String()+" ")
		if dev == "" {
			o.str("dev", n.Dev, "dev "+n.Dev+" ")
		}
		if n.HasLL {
			mac := net.HardwareAddr(n.LLAddr[:]).String()
			o.str("lladdr", mac, "lladdr "+mac+" ")
		}
		o.strList("state", []string{n.State}, n.State+" ")
		o.text("\n")
		o.close(false)
		objs = append(objs, o.b.String())
	}
	return list(json, objs), nil
}
