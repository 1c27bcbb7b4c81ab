// Package experiment runs fault-injection experiments over a lab
// (`uswitch experiment run FILE`): it brings the lab up with its faults
// (package fault: they act on their own schedules, counted from the
// faults' epoch, which is the run's time 0), runs the workloads of its
// [[workload]] tables from inside the lab's namespaces, does its
// [[step]] tables at their times (control commands such as `ipvsadm
// -e`, a built-in server stopped), brings the lab down and writes the
// report (report.go). With [nfqueue] the kernel of a lab namespace
// forwards and uswitch decides its queues with the faults (nfqueue.go).
//
//	lab file ─ lab.Parse ─┬─ [[fault]] ──> fault.Set (schedules: fault.ActiveAt)
//	(--faults FILE joins) ├─ [[workload]] ─> generators (workload.go) ─> series (stats.go)
//	                      ├─ [[step]] ────> timers ─> lab.Control, lab.StopServer
//	                      └─ [experiment] seed, duration, short, report, model
//	fault decisions (lab.UpOptions.Observe) ─┐
//	window edges and steps (timers) ─────────┴─> timeline.jsonl
//	series, fault counters, conntrack -S ────────> summary.json/.txt, timeline.svg
//
// The generators (workload.go): http (a GET on a new connection at a
// rate), tcp-rr (one long-lived connection, a message echoed at a
// rate), udp (a datagram stream at a packet rate), tcp-bulk (one
// connection as fast as TCP goes: goodput), dns (an A and an AAAA query
// from one new socket per lookup, as glibc sends them, or
// single-request / single-request-reopen). Each reports per second its
// successes, failures, latency percentiles and goodput, and per fault
// window the same.
//
// --short scales every time of the run (fault schedules, workload
// windows, steps, the duration) by [experiment] short / duration, so
// the examples' claims hold in a run of a few seconds (their tests run
// them so).
package experiment
