package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/uswitch-lab/uswitch/fault"
)

// The experiment tables of a lab file (or of a fault file given with
// --faults): [experiment] with what `uswitch experiment run` needs
// beside the seed, [[workload]] (the traffic generators run from the
// lab's namespaces) and [[step]] (actions at given times: a control
// command, a built-in server stopped). The lab checks them with the
// file (names, namespaces, addresses, times); package experiment runs
// them. A plain `uswitch lab` ignores workloads and steps.

// Experiment is the [experiment] table.
type Experiment struct {
	// Name and Seed (fault.Experiment): the seed of every fault's
	// draws and, when [uswitch] seed is 0, of the engine's.
	fault.Experiment
	// Duration is how long the workloads run ("10s" when empty).
	Duration string `toml:"duration"`
	// Short is the duration of a --short run: every time of the run
	// (fault schedules, workload windows, steps) is scaled by
	// Short/Duration ("" = Duration: --short changes nothing).
	Short string `toml:"short"`
	// Report is the report folder ("" = out/NAME, relative to the
	// current folder; --out overrides).
	Report string `toml:"report"`
	// Model = "mathis" compares the goodput of workload ModelWorkload in
	// each loss fault's window with the Mathis et al. (1997) model
	// MSS/RTT * C/sqrt(p), for the given MSS (bytes) and RTT.
	Model         string `toml:"model"`
	ModelWorkload string `toml:"model_workload"`
	MSS           int    `toml:"mss"`
	RTT           string `toml:"rtt"`
}

// Workload kinds.
const (
	// WorkHTTP: GETs at Rate per second, each on a new connection.
	WorkHTTP = "http"
	// WorkTCPRR: one long-lived TCP connection to a tcp-echo server,
	// a Size-byte message echoed at Rate per second (an established
	// flow); a broken connection is dialled again.
	WorkTCPRR = "tcp-rr"
	// WorkUDP: a UDP stream of Size-byte datagrams at Rate per second
	// to a udp-echo server, each answer a success; or, with Listen,
	// one way to the generator's own receiver in that namespace, each
	// datagram that arrives a success (latency: the one-way delay).
	WorkUDP = "udp"
	// WorkTCPBulk: one TCP connection sending as fast as it can from
	// From to To, where the generator's receiver listens in Listen;
	// goodput is what the receiver reads.
	WorkTCPBulk = "tcp-bulk"
	// WorkDNS: DNS-like queries at Rate per second to a udp-echo
	// server: an A and an AAAA query sent at once from one socket
	// (glibc's default), or Mode single-request (one after the other
	// on that socket) or single-request-reopen (the second from a new
	// socket).
	WorkDNS = "dns"
)

// Workload is a [[workload]] table.
type Workload struct {
	Name string `toml:"name"`
	Kind string `toml:"kind"`
	// From is the namespace the generator's client runs in.
	From string `toml:"from"`
	// To is a URL (http) or IPv4ADDRESS:PORT.
	To string `toml:"to"`
	// Rate is requests (http, tcp-rr, dns queries) or datagrams (udp)
	// per second.
	Rate RateValue `toml:"rate"`
	// Size is the datagram or message size in bytes (udp default 64,
	// tcp-rr 32, dns 40).
	Size int `toml:"size"`
	// Timeout bounds each request (default 1s; dns: the resolver's
	// timeout before it sends the query again, default 1s).
	Timeout string `toml:"timeout"`
	// Start and Stop bound the workload within the run ("" = from the
	// start / to the end).
	Start string `toml:"start"`
	Stop  string `toml:"stop"`
	// Listen is the namespace where a tcp-bulk (or one-way udp)
	// receiver listens (on To's port, every address).
	Listen string `toml:"listen"`
	// CC is the tcp-bulk sender's congestion control (TCP_CONGESTION:
	// "reno", "cubic"; "" the namespace's default).
	CC string `toml:"cc"`
	// Mode is the dns resolver's: "parallel" (default),
	// "single-request" or "single-request-reopen".
	Mode string `toml:"mode"`
	// Parallel caps the http requests in flight (default 64).
	Parallel int `toml:"parallel"`
}

// Step is a [[step]] table: at At, one action.
type Step struct {
	At string `toml:"at"`
	// Run is a control command line as the uswitch subcommand takes it:
	// "ipvsadm -e -t 10.10.1.100:80 -r 10.10.2.2:8080 -m -w 0",
	// "conntrack -F", "iptables -I FORWARD -j DROP".
	Run string `toml:"run"`
	// StopServer stops the built-in servers of namespace NS on port
	// PORT ("NS:PORT"): listening sockets and connections closed, as
	// when the process dies (the kernel then refuses new connections).
	StopServer string `toml:"stop_server"`
	Note       string `toml:"note"`
}

// NFQueue is the [nfqueue] table: an experiment in NFQUEUE mode. The
// kernel of namespace Netns forwards (the lab's [[link]] veths and
// routes), Kernel is loaded into it with iptables-restore (the rules
// that queue packets: -j NFQUEUE --queue-num N [--queue-bypass]), and
// uswitch decides queues Queues ("5" or "5:6") with the rule set Rules
// (iptables-save form; "" = the namespace's own, as `uswitch nfqueue`
// captures it). Offload installs each accepted connection in the
// kernel after its first packets (nfqueue.Options.Offload; Kernel's
// queue rule then goes in mangle PREROUTING/OUTPUT).
type NFQueue struct {
	Netns   string `toml:"netns"`
	Queues  string `toml:"queues"`
	Kernel  string `toml:"kernel"`
	Rules   string `toml:"rules"`
	Offload bool   `toml:"offload"`
}

// QueueList is Queues as numbers.
func (q *NFQueue) QueueList() ([]uint16, error) {
	a, b, rng := strings.Cut(q.Queues, ":")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi := lo
	var err2 error
	if rng {
		hi, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil || hi < lo || hi-lo > 63 {
		return nil, fmt.Errorf("queues %q: N or A:B (0-65535, at most 64)", q.Queues)
	}
	var out []uint16
	for n := lo; n <= hi; n++ {
		out = append(out, uint16(n))
	}
	return out, nil
}

// RateValue is a rate: an integer or a float, at least 0.
type RateValue float64

// UnmarshalTOML accepts integers and floats.
func (r *RateValue) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*r = RateValue(x)
	case float64:
		*r = RateValue(x)
	default:
		return fmt.Errorf("rate %v: want a number", v)
	}
	if *r < 0 || *r > 1e6 {
		return fmt.Errorf("rate %v: want 0 to 1000000 per second", v)
	}
	return nil
}

var workNameRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// ParseTime reads a time of the experiment: "5s", "250ms", "1m".
func ParseTime(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 5s or 250ms", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: negative", s)
	}
	return d, nil
}

// checkExperiment checks the [experiment], [[workload]] and [[step]]
// tables.
func (c *Config) checkExperiment(src string) error {
	fail := func(key string, i int, format string, a ...any) error {
		return &ConfigError{File: c.File, Line: tableLine(src, key, i), Key: key, Err: fmt.Errorf(format, a...)}
	}
	e := &c.Experiment
	dur := 10 * time.Second
	for _, k := range []struct {
		key string
		v   *string
	}{{"duration", &e.Duration}, {"short", &e.Short}, {"rtt", &e.RTT}} {
		if *k.v == "" {
			continue
		}
		d, err := ParseTime(*k.v)
		if err == nil && d == 0 {
			err = fmt.Errorf("%q: want more than 0", *k.v)
		}
		if err != nil {
			return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"experiment", k.key}), Key: "experiment." + k.key, Err: err}
		}
		if k.key == "duration" {
			dur = d
		}
	}
	ns := map[string]*Namespace{}
	for i := range c.Namespaces {
		ns[c.Namespaces[i].Name] = &c.Namespaces[i]
	}
	names := map[string]bool{}
	for i := range c.Workloads {
		w := &c.Workloads[i]
		if !workNameRe.MatchString(w.Name) {
			return fail("workload", i, "name %q: 1 to 64 letters, digits, '_', '.', '-'", w.Name)
		}
		if names[w.Name] {
			return fail("workload", i, "name %q appears twice", w.Name)
		}
		names[w.Name] = true
		if err := c.checkWorkload(w, ns, dur); err != nil {
			return fail("workload", i, "%s: %v", w.Name, err)
		}
	}
	switch e.Model {
	case "":
	case "mathis":
		if e.MSS <= 0 || e.RTT == "" || !names[e.ModelWorkload] {
			return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"experiment", "model"}), Key: "experiment.model",
				Err: errors.New(`model "mathis" needs mss (bytes), rtt and model_workload (a tcp-bulk workload)`)}
		}
	default:
		return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"experiment", "model"}), Key: "experiment.model",
			Err: fmt.Errorf("%q: the one model is mathis", e.Model)}
	}
	if q := c.NFQueue; q != nil {
		qfail := func(format string, a ...any) error {
			return &ConfigError{File: c.File, Line: headerLine(src, "[nfqueue]", 0), Key: "nfqueue", Err: fmt.Errorf(format, a...)}
		}
		if ns[q.Netns] == nil {
			return qfail("netns %q: no [[namespace]] of that name", q.Netns)
		}
		if _, err := q.QueueList(); err != nil {
			return qfail("%v", err)
		}
		if strings.TrimSpace(q.Kernel) == "" {
			return qfail("kernel: the iptables-restore input that queues packets (-j NFQUEUE)")
		}
	}
	for i, s := range c.Steps {
		if _, err := ParseTime(s.At); err != nil {
			return fail("step", i, "at: %v", err)
		}
		n := 0
		for _, v := range []string{s.Run, s.StopServer} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return fail("step", i, "give one of run and stop_server (a datapath is killed by a datapath-kill fault)")
		}
		if s.StopServer != "" {
			name, port, err := c.serverRef(s.StopServer)
			if err != nil {
				return fail("step", i, "stop_server: %v", err)
			}
			found := false
			for _, sv := range ns[name].Servers {
				found = found || int(sv.Port) == port
			}
			if !found {
				return fail("step", i, "stop_server %q: namespace %s has no built-in server on port %d", s.StopServer, name, port)
			}
		}
		if s.Run != "" {
			switch strings.Fields(s.Run)[0] {
			case "ipvsadm", "conntrack", "iptables", "iptables-restore", "fault":
			default:
				return fail("step", i, "run %q: a control command (ipvsadm, conntrack, iptables, iptables-restore, fault)", s.Run)
			}
		}
	}
	return nil
}

// serverRef reads "NS:PORT".
func (c *Config) serverRef(s string) (string, int, error) {
	name, p, ok := strings.Cut(s, ":")
	port, err := strconv.Atoi(p)
	if !ok || err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: want NAMESPACE:PORT", s)
	}
	for _, n := range c.Namespaces {
		if n.Name == name {
			return name, port, nil
		}
	}
	return "", 0, fmt.Errorf("%q: no [[namespace]] %s", s, name)
}

func (c *Config) checkWorkload(w *Workload, ns map[string]*Namespace, dur time.Duration) error {
	if ns[w.From] == nil {
		return fmt.Errorf("from %q: no [[namespace]] of that name", w.From)
	}
	var start, stop time.Duration
	var err error
	if w.Start != "" {
		if start, err = ParseTime(w.Start); err != nil {
			return fmt.Errorf("start: %v", err)
		}
	}
	if w.Stop != "" {
		if stop, err = ParseTime(w.Stop); err != nil {
			return fmt.Errorf("stop: %v", err)
		}
		if stop <= start {
			return errors.New("stop is not after start")
		}
	}
	if start >= dur {
		return fmt.Errorf("start %s is not within the experiment's %s", w.Start, dur)
	}
	if w.Timeout != "" {
		if d, err := ParseTime(w.Timeout); err != nil || d == 0 {
			return fmt.Errorf("timeout %q: want a duration over 0", w.Timeout)
		}
	}
	if w.Size < 0 || w.Size > 65000 {
		return fmt.Errorf("size %d: 0 to 65000 bytes", w.Size)
	}
	if w.Parallel < 0 || w.Parallel > 4096 {
		return fmt.Errorf("parallel %d: 0 to 4096", w.Parallel)
	}
	addr := func() error {
		ap, err := netip.ParseAddrPort(w.To)
		if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			return fmt.Errorf("to %q: want IPv4ADDRESS:PORT", w.To)
		}
		return nil
	}
	needRate := true
	switch w.Kind {
	case WorkHTTP:
		if !strings.HasPrefix(w.To, "http://") {
			return fmt.Errorf("to %q: want an http:// URL", w.To)
		}
	case WorkTCPRR:
		if err := addr(); err != nil {
			return err
		}
	case WorkUDP:
		if err := addr(); err != nil {
			return err
		}
		if w.Listen != "" && ns[w.Listen] == nil {
			return fmt.Errorf("listen %q: no [[namespace]] of that name", w.Listen)
		}
	case WorkDNS:
		if err := addr(); err != nil {
			return err
		}
		switch w.Mode {
		case "", "parallel", "single-request", "single-request-reopen":
		default:
			return fmt.Errorf("mode %q: parallel, single-request or single-request-reopen", w.Mode)
		}
	case WorkTCPBulk:
		if err := addr(); err != nil {
			return err
		}
		if ns[w.Listen] == nil {
			return fmt.Errorf("listen %q: the namespace the receiver listens in (no [[namespace]] of that name)", w.Listen)
		}
		if w.CC != "" && !regexp.MustCompile(`^[a-z0-9_]{1,15}$`).MatchString(w.CC) {
			return fmt.Errorf("cc %q: a congestion control's name (reno, cubic...)", w.CC)
		}
		needRate = false
	default:
		return fmt.Errorf("kind %q: http, tcp-rr, udp, tcp-bulk or dns", w.Kind)
	}
	if w.Mode != "" && w.Kind != WorkDNS {
		return errors.New("mode is for dns workloads")
	}
	if w.CC != "" && w.Kind != WorkTCPBulk {
		return errors.New("cc is for tcp-bulk workloads")
	}
	if w.Listen != "" && w.Kind != WorkTCPBulk && w.Kind != WorkUDP {
		return errors.New("listen is for tcp-bulk and udp workloads")
	}
	if needRate && w.Rate <= 0 {
		return fmt.Errorf("rate: a %s workload needs a rate over 0 (per second)", w.Kind)
	}
	return nil
}

// tableLine is the line of the i-th [[key]] header.
func tableLine(src, key string, i int) int { return headerLine(src, "[["+key+"]]", i) }

// headerLine is the line of the i-th table header h ("[nfqueue]").
func headerLine(src, h string, i int) int {
	n := -1
	for ln, line := range strings.Split(src, "\n") {
		if strings.TrimSpace(line) == h {
			n++
			if n == i {
				return ln + 1
			}
		}
	}
	return 0
}

// experimentFile is a fault file as --faults reads it: the experiment
// tables of a lab file.
type experimentFile struct {
	Experiment Experiment   `toml:"experiment"`
	Faults     []fault.Spec `toml:"fault"`
	Workloads  []Workload   `toml:"workload"`
	Steps      []Step       `toml:"step"`
}

// What the experiment runner reads from and does to a running lab.

// Faults is the lab's fault set (an empty one when it has none).
func (l *Lab) Faults() *fault.Set { return l.dp.Faults() }

// Now is the lab's clock (the datapath's, in ns): the clock the fault
// schedules count on from the set's Epoch.
func (l *Lab) Now() int64 { return l.now() }

// Received is the number of packets uswitch has read from the lab's
// devices: a global packet number.
func (l *Lab) Received() uint64 { return l.dp.Received() }

// InNetns runs fn on a thread inside the lab's namespace ns: the
// sockets it opens belong to that namespace.
func (l *Lab) InNetns(ns string, fn func() error) error {
	h, ok := l.nss[ns]
	if !ok {
		return fmt.Errorf("no namespace %q in the lab", ns)
	}
	return inNetns(h, fn)
}

// SubscribeTrace streams the datapath's live trace lines (fault
// decisions among them); cancel stops it.
func (l *Lab) SubscribeTrace(buffer int) (<-chan string, func()) { return l.dp.SubscribeTrace(buffer) }

// StopServer stops the built-in servers of namespace ns on port: their
// listening sockets and connections are closed, as when the process
// serving them dies (new connections are then refused by the
// namespace's kernel). It reports how many it stopped.
func (l *Lab) StopServer(ns string, port int) (int, error) {
	n := 0
	var errs []error
	for _, sv := range l.srv {
		if sv.ns == ns && sv.port == port {
			if err := sv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("no built-in server on %s port %d", ns, port)
	}
	return n, errors.Join(errs...)
}
