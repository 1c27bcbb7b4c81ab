package fault

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// Where a fault acts.
//
//	wire:IFACE:ingress     right after uswitch reads the packet from IFACE,
//	                       before any hook (a lossy cable into uswitch)
//	wire:IFACE:egress      right before uswitch writes it to IFACE (where
//	                       netem as the device's root qdisc would act)
//	hook:ipv4:HOOK[@PRIO]  a stage in the engine's list for the IPv4 hook
//	                       (PREROUTING, INPUT, FORWARD, OUTPUT,
//	                       POSTROUTING) at priority PRIO (default
//	                       NF_IP_PRI_FIRST+1: before every other stage);
//	                       a fault runs after the engine's own stages of
//	                       the same priority
//	hook:bridge:HOOK[@PRIO] the same for the bridge family (BROUTING,
//	                       PREROUTING, INPUT, FORWARD, OUTPUT,
//	                       POSTROUTING): a stage of the bridge level
//	nfqueue:verdict        uswitch nfqueue's verdict path: after the engine
//	nfqueue:N:verdict      decided a queued packet (of any queue, or of
//	                       queue N), before its verdict goes to the
//	                       kernel: a drop turns ACCEPT into DROP, a delay
//	                       holds the verdict (the packet waits in the
//	                       kernel's queue, counting towards queue_maxlen),
//	                       a duplicate sends a copy through the
//	                       namespace's raw socket (nfqueue/verdictfault.go)

// PlaceKind is a placement's kind.
type PlaceKind uint8

const (
	WireIngress PlaceKind = iota
	WireEgress
	HookIPv4
	HookBridge
	// WireBoth is wire:IFACE, both ways (link faults)
	WireBoth
	// NFQueueVerdict is nfqueue:[N:]verdict: uswitch nfqueue's
	// verdict path (Queue: the queue number, -1 every queue)
	NFQueueVerdict
)

// BridgeBRouting is the bridge family's BROUTING hook, numbered after
// the five hooks it shares with IPv4.
const BridgeBRouting = netfilter.NumHooks

// Placement is a parsed placement.
type Placement struct {
	Kind  PlaceKind
	Iface string         // wire placements
	Hook  netfilter.Hook // hook placements (BridgeBRouting: the bridge's BROUTING)
	Prio  netfilter.Priority
	// Queue is an NFQueueVerdict placement's queue (-1: every queue)
	Queue int32
}

var bridgeHookNames = [...]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"}

// ParsePlacement reads a placement.
func ParsePlacement(s string) (Placement, error) {
	parts := strings.Split(s, ":")
	bad := func(why string) (Placement, error) {
		return Placement{}, fmt.Errorf("placement %q: %s (want wire:IFACE:ingress|egress, hook:ipv4|bridge:HOOK[@PRIORITY] or nfqueue:[N:]verdict)", s, why)
	}
	switch parts[0] {
	case "nfqueue":
		switch {
		case len(parts) == 2 && parts[1] == "verdict":
			return Placement{Kind: NFQueueVerdict, Queue: -1}, nil
		case len(parts) == 3 && parts[2] == "verdict":
			n, err := strconv.ParseUint(parts[1], 10, 16)
			if err != nil {
				return bad("queue number 0 to 65535")
			}
			return Placement{Kind: NFQueueVerdict, Queue: int32(n)}, nil
		}
		return bad("nfqueue:verdict or nfqueue:N:verdict")
	case "wire":
		if len(parts) == 2 && parts[1] != "" && len(parts[1]) <= 15 {
			return Placement{Kind: WireBoth, Iface: parts[1]}, nil
		}
		if len(parts) != 3 || parts[1] == "" {
			return bad("not three parts")
		}
		if len(parts[1]) > 15 {
			return bad("interface name longer than 15 bytes")
		}
		switch parts[2] {
		case "ingress":
			return Placement{Kind: WireIngress, Iface: parts[1]}, nil
		case "egress":
			return Placement{Kind: WireEgress, Iface: parts[1]}, nil
		}
		return bad("direction is ingress or egress")
	case "hook":
		if len(parts) != 3 {
			return bad("not three parts")
		}
		p := Placement{Prio: netfilter.PriFirst + 1}
		name, prio, hasPrio := strings.Cut(parts[2], "@")
		if hasPrio {
			v, err := strconv.ParseInt(prio, 10, 32)
			if err != nil {
				return bad("priority is a 32-bit integer")
			}
			p.Prio = netfilter.Priority(v)
		}
		name = strings.ToUpper(name)
		switch parts[1] {
		case "ipv4":
			p.Kind = HookIPv4
			for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
				if h.String() == name {
					p.Hook = h
					return p, nil
				}
			}
			return bad("unknown IPv4 hook " + name)
		case "bridge":
			p.Kind = HookBridge
			for i, n := range bridgeHookNames {
				if n == name {
					p.Hook = netfilter.Hook(i)
					return p, nil
				}
			}
			return bad("unknown bridge hook " + name)
		}
		return bad("family is ipv4 or bridge")
	}
	return bad("unknown kind")
}

// String prints the placement as ParsePlacement reads it.
func (p Placement) String() string {
	switch p.Kind {
	case WireIngress:
		return "wire:" + p.Iface + ":ingress"
	case WireEgress:
		return "wire:" + p.Iface + ":egress"
	case WireBoth:
		return "wire:" + p.Iface
	case NFQueueVerdict:
		if p.Queue < 0 {
			return "nfqueue:verdict"
		}
		return "nfqueue:" + strconv.Itoa(int(p.Queue)) + ":verdict"
	}
	fam, name := "ipv4", ""
	if p.Kind == HookBridge {
		fam, name = "bridge", bridgeHookNames[p.Hook]
	} else {
		name = p.Hook.String()
	}
	s := "hook:" + fam + ":" + name
	if p.Prio != netfilter.PriFirst+1 {
		s += "@" + strconv.FormatInt(int64(p.Prio), 10)
	}
	return s
}

// matchHook is the hook whose rules the placement's match is checked
// against (-i only where there is an input device, -o an output one).
func (p Placement) matchHook() netfilter.Hook {
	switch p.Kind {
	case WireIngress, WireBoth:
		return netfilter.PreRouting
	case WireEgress:
		return netfilter.PostRouting
	case NFQueueVerdict:
		// a queue rule may sit at any hook: -i and -o both allowed
		return netfilter.Forward
	}
	if p.Hook >= netfilter.NumHooks {
		return netfilter.PreRouting
	}
	return p.Hook
}
