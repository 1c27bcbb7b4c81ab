package lab

import (
	"bytes"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/iproute"
	"github.com/uswitch-lab/uswitch/link"
)

// The lab's side of live control: the control socket and metrics of a
// running lab (package control serves them).

// ListenControl serves live control on a Unix socket at path (""
// = SocketPath of the lab's name). Close removes it.
func (l *Lab) ListenControl(path string) error {
	if path == "" {
		path = control.SocketPath(l.cfg.Name)
	}
	return l.controlState().Listen(path)
}

// Tracing reports whether a live trace listener is attached.
func (l *Lab) Tracing() bool { return l.dp != nil && l.dp.Tracing() }

// Capturing reports whether a packet capture is attached.
func (l *Lab) Capturing() bool { return l.dp != nil && l.dp.Capturing() }

// ControlPath is the control socket's path ("" when there is none).
func (l *Lab) ControlPath() string {
	if l.ctl == nil {
		return ""
	}
	return l.ctl.Path()
}

// ListenMetrics serves Prometheus metrics over HTTP at addr (GET
// /metrics), e.g. "127.0.0.1:9469". It returns the address it listens
// on. Close stops it.
func (l *Lab) ListenMetrics(addr string) (string, error) {
	return l.controlState().ListenMetrics(addr)
}

func (l *Lab) controlState() *control.Server {
	if l.ctl == nil {
		l.ctl = control.NewServer(l, l.dp)
	}
	return l.ctl
}

// Control runs one control request against the lab (what the socket
// server does for each connection).
func (l *Lab) Control(req control.Request) control.Response {
	if req.Node != "" {
		h, _, err := l.Node(req.Node)
		if err != nil {
			return control.Response{Code: 2, Stderr: "uswitch: " + err.Error() + "\n"}
		}
		return h.Control(req)
	}
	if req.Cmd == "fault" {
		return l.faultControl(req)
	}
	l.ecInit.Do(func() {
		l.ec = control.Engine{Eng: l.eng, Now: l.now, Metrics: l.Metrics, Sets: l.cfg.Sets, Lock: &l.cfgMu,
			Neighbours: func() []iproute.Neighbour { return tapNeighbours(l.dp) }}
	})
	return l.ec.Control(req)
}

// now is the engine's clock (the datapath's).
func (l *Lab) now() int64 {
	if l.dp == nil {
		return 1
	}
	return l.dp.Now()
}

// Metrics returns the lab's metrics in Prometheus' text format: its
// datapath's and its engine's conntrack.
func (l *Lab) Metrics() string {
	var b bytes.Buffer
	m := prom.New(&b)
	l.dp.WriteMetrics(m)
	if l.eng != nil {
		control.WriteConntrack(m, l.eng)
		if kl := l.eng.KernelLog(); kl != nil {
			m.Counter("uswitch_log_lines_total", "Kernel log lines written (LOG, legacy TRACE, ebtables --log).", kl.Written())
			m.Counter("uswitch_log_dropped_total", "Kernel log lines and NFLOG records a slow listener had no room for.", kl.Dropped())
		}
	}
	return b.String()
}

// KernelLog is the lab engine's kernel log and NFLOG groups (the
// control socket's log and nflog).
func (l *Lab) KernelLog() *datapath.KernelLog { return l.eng.KernelLog() }

// ConntrackTable is the lab engine's conntrack table and clock (the
// control socket streams its events for conntrack -E).
func (l *Lab) ConntrackTable() (*conntrack.Table, func() int64) { return l.eng.CT, l.now }

// tapNeighbours is the TAP ports' neighbour tables as ip neigh lists
// them.
func tapNeighbours(dp *link.Datapath) []iproute.Neighbour {
	if dp == nil {
		return nil
	}
	var out []iproute.Neighbour
	for _, n := range dp.NeighbourTable() {
		out = append(out, iproute.Neighbour{Dst: n.Addr, Dev: n.Port, LLAddr: n.MAC, HasLL: n.MAC != [6]byte{}, State: n.State})
	}
	return out
}
