// Package picture draws a traced packet's way on the netfilter flow
// picture: the bridge level and the network level, every hook with its
// stages in priority order (datapath.Layout: the engine's own stage
// lists, so a new stage shows the day it is added), the routing
// decisions, IPVS where it sits and the local process, with the path
// the packet took drawn on it from the engine's path events
// (datapath.Tracer.Record): each table:chain it crossed with the rules
// that matched and their verdicts, where NAT rewrote it (before and
// after), where it was routed and out of which device, and where it
// ended. The host's answers (REJECT's RST, ICMP errors, echo replies)
// are paths of their own, in their own colour.
//
// SVG writes one picture (plain SVG 1.1, its style inside it, no
// script, no font but the viewer's monospace); HTML one page of
// pictures with nothing outside it. The elements carry classes and
// data attributes (class "hook" with data-level and data-hook, "stage"
// with data-key, "taken"/"gone", "note" with data-path, "nat" notes
// with data-before and data-after) that tests and pages query.
package picture

import (
	"strings"

	"github.com/uswitch-lab/uswitch/datapath"
)

// Path is one packet's way: the events of its trace id and of those
// that continue it (loopback through lo, the copy passed up from a
// bridge, a bridge's copies out of other ports), in the order they
// happened.
type Path struct {
	// ID is the trace id of the packet the path starts with; Parent,
	// for an answer, the packet that caused it.
	ID, Parent uint32
	// Answer: the host sent it in reaction to the packet (REJECT,
	// RST, ICMP error, echo reply).
	Answer bool
	// Start describes the packet, Fate its end (the last PathEnd).
	Start, Fate string
	Events      []datapath.PathEvent
	// pos are the events' positions in the call's list (to place an
	// answer's start on its parent's way)
	pos []int
}

// Packet is what one traced packet did: its own path first, then the
// answers it caused.
type Packet struct {
	// Title names the packet (e.g. "packet 3"); empty: none.
	Title string
	Paths []*Path
}

// Group splits the events of one call (one packet handed to the
// engine: Engine.Receive, Send or ReceiveFrame) into its paths.
func Group(title string, evs []datapath.PathEvent) Packet {
	pk := Packet{Title: title}
	byID := map[uint32]*Path{}
	for i, ev := range evs {
		p := byID[ev.ID]
		if ev.Kind == datapath.PathStart && p == nil {
			parent := byID[ev.Parent]
			switch {
			case ev.Cause == "answer" || parent == nil:
				p = &Path{ID: ev.ID, Parent: ev.Parent, Answer: ev.Cause == "answer", Start: ev.Text}
				pk.Paths = append(pk.Paths, p)
			default:
				// it goes on as another sk_buff: same path
				p = parent
			}
			byID[ev.ID] = p
		}
		if p == nil {
			// events before any start (none in practice): a path
			// of their own
			p = &Path{ID: ev.ID}
			byID[ev.ID] = p
			pk.Paths = append(pk.Paths, p)
		}
		p.Events = append(p.Events, ev)
		p.pos = append(p.pos, i)
		if ev.Kind == datapath.PathEnd {
			p.Fate = ev.Text
		}
	}
	return pk
}

// Fate is the packet's own fate (its first path's).
func (pk *Packet) Fate() string {
	if len(pk.Paths) == 0 {
		return ""
	}
	return pk.Paths[0].Fate
}

// Summary is one line: the packet and its fate.
func (pk *Packet) Summary() string {
	var b strings.Builder
	if pk.Title != "" {
		b.WriteString(pk.Title)
		b.WriteString(": ")
	}
	if len(pk.Paths) > 0 {
		b.WriteString(pk.Paths[0].Start)
		if f := pk.Paths[0].Fate; f != "" {
			b.WriteString(" — ")
			b.WriteString(f)
		}
	}
	return b.String()
}
