package main

import "strings"

// cutOwnFlags takes uswitch's own options out of a tool's command line
// (ebtables, iptables, ipvsadm), wherever they stand: --lab, --socket and
// --node into inst (lab "default" unless given), and the names in extra
// (e.g. "--file") into their strings, as "--x=V" or "--x V". rest is the
// tool's own command line, in order. missing is the option that ended
// the line without its value ("": none).
func cutOwnFlags(args []string, extra map[string]*string) (inst instanceFlags, rest []string, missing string) {
	inst.lab = "default"
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
		default:
			if dst = extra[name]; dst == nil {
				rest = append(rest, args[i])
				continue
			}
		}
		if !hasVal {
			if i+1 >= len(args) {
				return inst, rest, name
			}
			i++
			val = args[i]
		}
		*dst = val
	}
	return inst, rest, ""
}
