package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// uswitch trace --faults FILE: the faults decide offline as they do
// live, with the capture's timestamps as the clock (the schedules count
// from the first packet). Each decision is a FAULT line:
//
//	FAULT: 7 web1-slow wire:tun-web1:egress n=3 delay 41.250ms, leaves +41.250ms
//
// A wire:IFACE:ingress fault acts before the engine on the packets
// whose ingress is IFACE, a wire:IFACE:egress fault after it on those
// leaving by IFACE, a hook fault in the engine's hook. A delayed packet
// is traced at its capture time; its line says when it would leave the
// fault's queue (netem's time_to_send: delay, rate, tfifo and the limit
// with the queue drained as time passes).
type traceFaults struct {
	set    *fault.Set
	out    io.Writer
	cur    int
	epoch  bool
	queues map[*fault.Fault]*fault.Queue[int]
	c      iptables.Ctx
	env    fault.NoRouteEnv
	d      fault.Decision
}

func newTraceFaults(s *fault.Set, out io.Writer) *traceFaults {
	t := &traceFaults{set: s, out: out, queues: map[*fault.Fault]*fault.Queue[int]{}}
	s.Observe(func(d fault.Decision) {
		if d.Fault.At.Kind == fault.HookIPv4 || d.Fault.At.Kind == fault.HookBridge {
			fmt.Fprintf(t.out, "FAULT: %d %s %s n=%d %s\n", t.cur, d.Fault.Name, d.Fault.At, d.N, d.Action())
		}
	})
	return t
}

// stages are the hook faults for the engine's configuration.
func (t *traceFaults) stages() []datapath.FaultStage {
	var st []datapath.FaultStage
	for _, f := range t.set.Hooks() {
		st = append(st, f)
	}
	return st
}

// bridgeStages are the bridge hook faults for the engine's configuration.
func (t *traceFaults) bridgeStages() []datapath.BridgeFaultStage {
	var st []datapath.BridgeFaultStage
	for _, f := range t.set.Bridge() {
		st = append(st, f)
	}
	return st
}

// start notes packet i at ts: the first sets the schedules' epoch.
func (t *traceFaults) start(i int, ts int64) {
	if !t.epoch {
		t.set.SetEpoch(ts)
		t.epoch = true
	}
	t.cur = i
}

// wire runs the faults of a wire placement on p at ts and prints their
// decisions; it returns the fault that dropped the packet (nil: it goes
// on).
func (t *traceFaults) wire(p *packet.Packet, iface string, egress bool, ts int64) *fault.Fault {
	h := netfilter.PreRouting
	if egress {
		h = netfilter.PostRouting
	}
	for _, f := range t.set.Wire(iface, egress) {
		t.env.At = ts
		t.c = iptables.Ctx{Pkt: p, Hook: h, Env: &t.env}
		if !f.Decide(&t.c, ts, &t.d) {
			continue
		}
		d := &t.d
		line := fmt.Sprintf("FAULT: %d %s %s n=%d %s", t.cur, f.Name, f.At, d.N, d.Action())
		if d.Acted && f.Queued() && !d.Orig.Drop {
			q := t.queues[f]
			if q == nil {
				q = fault.NewQueue[int](f, ts)
				t.queues[f] = q
			}
			for {
				if _, ok := q.Dequeue(ts); !ok {
					break
				}
			}
			if d.HasDup && !d.Dup.Drop {
				if at, ok := q.Enqueue(ts, len(p.IP), &d.Dup, t.cur); ok {
					line += ", duplicate leaves " + rel(at-ts)
				} else {
					line += ", duplicate dropped by the queue limit"
				}
			}
			if at, ok := q.Enqueue(ts, len(p.IP), &d.Orig, t.cur); ok {
				line += ", leaves " + rel(at-ts)
			} else {
				fmt.Fprintln(t.out, line+", dropped by the queue limit")
				return f
			}
		}
		fmt.Fprintln(t.out, line)
		if d.Acted && d.Orig.Drop {
			return f
		}
		if d.Acted {
			f.Apply(d, &d.Orig, p.IP, p)
			if d.Orig.Corrupt && p.Decode() != nil {
				return f
			}
		}
	}
	return nil
}

func rel(ns int64) string {
	return "+" + strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) + "ms"
}
