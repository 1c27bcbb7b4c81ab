// Package control is uswitch's control plane: a Unix-socket server that
// answers as the real tools would (iptables-save, iptables-restore,
// conntrack, ipvsadm, metrics) for a running engine, and streams its live
// trace lines and packet captures. The lab and the NFQUEUE front end
// serve their engines through it.
package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iproute"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/packet"
)

// Live control and observation of a running lab, over a Unix socket only
// its owner can use (the socket is 0600 in a 0700 directory, and the
// server also checks the peer's uid):
//
//	client ──{"cmd":"iptables-restore","input":...}──> server
//	       <──{"code":0,"stdout":...,"stderr":...}──── (one request, one
//	                                                     answer, then EOF)
//
// The server does what the real tool would do to the kernel and answers
// with the tool's exit code and output, so `uswitch iptables-save`,
// `iptables-restore`, `conntrack -L` and `metrics` print exactly what
// they got. Control is not datapath: a goroutine per connection is fine.

// RuntimeDir is where labs put their control sockets.
const RuntimeDir = "/run/uswitch"

// SocketPath is the default control socket of the lab called name.
func SocketPath(name string) string {
	if name == "" {
		name = "default"
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == ' ' {
			return '_'
		}
		return r
	}, name)
	return filepath.Join(RuntimeDir, name+".sock")
}

// Request is one command sent to a running lab.
type Request struct {
	// Cmd is "iptables-save", "iptables-restore", "conntrack", "metrics",
	// "ipvsadm", "ip", "log" (the kernel log; a stream with Follow),
	// "nflog" (a pcap stream of an NFLOG group's records),
	// "trace" (a stream of live trace lines) or "pcap" (a pcap stream of
	// a device's packets); the streams only over the socket.
	Cmd string `json:"cmd"`
	// Counters: iptables-save -c / iptables-restore -c.
	Counters bool `json:"counters,omitempty"`
	// Table: iptables-save -t.
	Table string `json:"table,omitempty"`
	// NoFlush: iptables-restore --noflush.
	NoFlush bool `json:"noflush,omitempty"`
	// Input is the iptables-restore input.
	Input string `json:"input,omitempty"`
	// IPSet is `ipset save` output for -m set (iptables-restore --ipset).
	IPSet string `json:"ipset,omitempty"`
	// Op is the conntrack command of older clients: "L" (list) or "C"
	// (count), when Args is empty.
	Op string `json:"op,omitempty"`
	// Extended: conntrack -o extended, with Op.
	Extended bool `json:"extended,omitempty"`
	// Iface is the device to capture ("any": all); Count stops the
	// capture after that many packets (0: never).
	Iface string `json:"iface,omitempty"`
	Count int    `json:"count,omitempty"`
	// Args are the arguments of "ipvsadm" (its stdin, for -R, is Input)
	// and of "ip" (ip route get|show, ip rule show, with -j), "bridge"
	// (bridge fdb show) and "conntrack" (conntrack(8)'s; -E streams
	// events).
	Args []string `json:"args,omitempty"`
	// PortID is the requesting process (the socket peer's pid), which
	// conntrack's DESTROY events name ([USERSPACE] portid=N); the
	// server sets it.
	PortID uint32 `json:"-"`
	// Follow: log -f (a stream of the ring, then new lines); NoTime:
	// log -t (no timestamps, dmesg -t).
	Follow bool `json:"follow,omitempty"`
	NoTime bool `json:"notime,omitempty"`
	// Group is the NFLOG group of "nflog" (its records as a pcap
	// stream; Count stops it after that many).
	Group int `json:"group,omitempty"`
	// Name is the fault of "fault" with Op "del" (Op "add" takes
	// [[fault]] tables in Input; "list" nothing).
	Name string `json:"name,omitempty"`
	// Node picks a node of a multi-node lab (--node NAME): the request
	// is that node's engine's, streams included; "" is the instance's
	// own engine.
	Node string `json:"node,omitempty"`
}

// Response is the outcome: what the tool prints and its exit code.
type Response struct {
	Code   int    `json:"code"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// Stream: trace lines follow, one a line, until either side closes.
	Stream bool `json:"stream,omitempty"`
}

// MaxRequest bounds a request, in bytes of JSON (a rule set of a few
// hundred thousand rules). A larger one is refused whole with
// TooLarge's answer; clients check it before sending (CheckSize).
const MaxRequest = 64 << 20

// TooLarge is the answer to a request over MaxRequest: nothing of it
// was done.
func TooLarge() Response {
	return Response{Code: 1, Stderr: "uswitch: " + tooLargeMsg + ": refused, nothing was changed\n"}
}

const tooLargeMsg = "control request larger than the control socket's limit of 64 MiB (67108864 bytes)"

// CheckSize says whether an encoded request of n bytes fits the
// control socket's limit, with an error naming the limit if not.
func CheckSize(n int) error {
	if n <= MaxRequest {
		return nil
	}
	return fmt.Errorf("control request of %d bytes is larger than the control socket's limit of 64 MiB (%d bytes): not sent, nothing was changed", n, MaxRequest)
}

// Handler answers the one-shot requests of a control socket
// ("iptables-save", "iptables-restore", "conntrack", "metrics"). A Lab is
// one; Engine gives them for any engine (uswitch nfqueue uses it).
type Handler interface {
	Control(req Request) Response
}

// NodeHandler is a Handler with nodes (a multi-node lab): a request
// with Node set is answered by the node's handler, and its streams read
// the node's datapath.
type NodeHandler interface {
	Node(name string) (Handler, *link.Datapath, error)
}

// Server serves a Handler on a Unix socket only its owner
// can use (0600, and the peer's uid checked), and optionally its metrics
// over HTTP. The streams ("trace", "pcap") need a lab's datapath; without
// one they are refused.
type Server struct {
	h Handler
	// dp is the datapath the streams read (nil: none); immutable.
	dp *link.Datapath

	mu    sync.Mutex // guards ln, path, http
	ln    net.Listener
	path  string
	http  *http.Server
	conns sync.WaitGroup
	// done ends the streams at Close
	done      chan struct{}
	closeOnce sync.Once
	cerr      error
}

// NewServer makes a server for h whose streams read dp (nil: an
// instance without devices, which refuses them); Listen and
// ListenMetrics open its listeners, Close closes them.
func NewServer(h Handler, dp *link.Datapath) *Server {
	return &Server{h: h, dp: dp, done: make(chan struct{})}
}

// Listen serves control on a Unix socket at path. A socket left by a
// dead instance is replaced; one a live instance answers on is an error.
// Close removes it.
func (c *Server) Listen(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		return errors.New("control socket already open")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if cn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			cn.Close()
			return fmt.Errorf("control socket %s: another uswitch instance is listening there", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	// owner only (the window between bind and chmod is closed by the
	// peer uid check in serve)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	c.ln, c.path = ln, path
	go c.accept(ln)
	return nil
}

// Path is the control socket's path ("" when there is none).
func (c *Server) Path() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return c.path
}

// ListenMetrics serves the handler's metrics in Prometheus' text format
// over HTTP at addr (GET /metrics), e.g. "127.0.0.1:9469". It returns
// the address it listens on. Close stops it.
func (c *Server) ListenMetrics(addr string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http != nil {
		return "", errors.New("metrics listener already open")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		io.WriteString(w, c.h.Control(Request{Cmd: "metrics"}).Stdout)
	})
	c.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go c.http.Serve(ln)
	return ln.Addr().String(), nil
}

// Close stops both listeners, ends the streams and waits for the
// requests being served. Idempotent.
func (c *Server) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.mu.Lock()
		var errs []error
		if c.ln != nil {
			errs = append(errs, c.ln.Close())
		}
		if c.http != nil {
			errs = append(errs, c.http.Close())
		}
		c.mu.Unlock()
		c.conns.Wait()
		c.cerr = errors.Join(errs...)
	})
	return c.cerr
}

func (c *Server) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.conns.Add(1)
		go func() {
			defer c.conns.Done()
			c.serve(conn)
		}()
	}
}

func (c *Server) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	enc := json.NewEncoder(conn)
	pid, err := peerAllowed(conn)
	if err != nil {
		enc.Encode(Response{Code: 1, Stderr: "uswitch: " + err.Error() + "\n"})
		return
	}
	var req Request
	lr := &io.LimitedReader{R: conn, N: MaxRequest}
	if err := json.NewDecoder(bufio.NewReader(lr)).Decode(&req); err != nil {
		if lr.N <= 0 {
			// over the limit: answer, then read (and drop) the rest
			// so that the client's write ends and it reads the
			// answer instead of a broken pipe
			enc.Encode(TooLarge())
			io.Copy(io.Discard, conn)
			return
		}
		enc.Encode(Response{Code: 1, Stderr: "uswitch: bad control request: " + err.Error() + "\n"})
		return
	}
	req.PortID = pid
	h, dp := c.h, c.dp
	if req.Node != "" {
		nh, ok := c.h.(NodeHandler)
		if !ok {
			enc.Encode(Response{Code: 2, Stderr: "uswitch: --node " + req.Node + ": this instance has no nodes (--node is for multi-node labs)\n"})
			return
		}
		var err error
		if h, dp, err = nh.Node(req.Node); err != nil {
			enc.Encode(Response{Code: 2, Stderr: "uswitch: " + err.Error() + "\n"})
			return
		}
	}
	switch req.Cmd {
	case "trace":
		c.streamTrace(conn, enc, dp)
		return
	case "conntrack":
		if cmd, err := conntrack.ParseCommand(req.Args); err == nil && cmd.Op == conntrack.OpEvent {
			c.streamConntrack(conn, enc, cmd, h)
			return
		}
	case "pcap":
		c.streamPcap(conn, enc, req, dp)
		return
	case "log":
		if req.Follow {
			c.streamLog(conn, enc, req, h)
			return
		}
	case "nflog":
		c.streamNFLog(conn, enc, req, h)
		return
	}
	enc.Encode(h.Control(req))
}

// streamPcap answers a "pcap" request: a Response with Stream
// set, then a pcap file (LINKTYPE_RAW: the IPv4 packets as the TUN
// carries them) of the packets read from and written to the device,
// until the client goes, Count packets were sent or the lab closes.
func (c *Server) streamPcap(conn net.Conn, enc *json.Encoder, req Request, dp *link.Datapath) {
	if dp == nil {
		enc.Encode(Response{Code: 1, Stderr: "uswitch: this instance has no device to capture (pcap is for labs)\n"})
		return
	}
	if req.Iface != "any" && !dp.HasDevice(req.Iface) {
		enc.Encode(Response{Code: 1, Stderr: fmt.Sprintf("uswitch: pcap: no device %q in the lab (\"any\": all of them)\n", req.Iface)})
		return
	}
	pkts, cancel := dp.SubscribeCapture(req.Iface, 4096)
	defer cancel()
	n := 0
	var pw *pcapgo.Writer
	// a bridge port is captured as Ethernet; "any" as IPv4, bridge
	// frames with their IPv4 packet only
	ether := req.Iface != "any" && dp.IsBridgePort(req.Iface)
	stream(c, conn, enc, pkts, func(w *bufio.Writer) error {
		pw = pcapgo.NewWriter(w)
		if ether {
			return pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
		}
		return pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	}, func(p link.Captured) (bool, error) {
		data := p.Data
		if p.Ether && !ether {
			if len(data) < 14 || data[12] != 0x08 || data[13] != 0x00 {
				return false, nil
			}
			data = data[14:]
		}
		n++
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(data), Length: len(data)}
		return req.Count > 0 && n >= req.Count, pw.WritePacket(ci, data)
	})
}

// streamTrace answers a "trace" request: a Response with Stream
// set, then trace lines (xtables-monitor --trace), one a line, until the
// client goes or the lab closes.
func (c *Server) streamTrace(conn net.Conn, enc *json.Encoder, dp *link.Datapath) {
	if dp == nil {
		enc.Encode(Response{Code: 1, Stderr: "uswitch: this instance has no live trace (monitor --trace is for labs)\n"})
		return
	}
	lines, cancel := dp.SubscribeTrace(4096)
	defer cancel()
	var w *bufio.Writer
	stream(c, conn, enc, lines, func(bw *bufio.Writer) error {
		w = bw
		return nil
	}, func(ln string) (bool, error) {
		w.WriteString(ln)
		return false, w.WriteByte('\n')
	})
}

// stream answers a stream request: a Response with Stream set, then
// what start writes, then each item of ch as write writes it, what is
// queued in one go and flushed together, until the client goes, write
// says the stream is full or fails, or the server closes (which flushes
// what was written).
func stream[T any](c *Server, conn net.Conn, enc *json.Encoder, ch <-chan T, start func(*bufio.Writer) error, write func(T) (full bool, err error)) {
	conn.SetDeadline(time.Time{})
	if enc.Encode(Response{Stream: true}) != nil {
		return
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	bw := bufio.NewWriter(conn)
	if start(bw) != nil || bw.Flush() != nil {
		return
	}
	for {
		select {
		case <-gone:
			return
		case <-c.done:
			bw.Flush()
			return
		case v := <-ch:
			full, err := write(v)
		drain:
			for err == nil && !full {
				select {
				case v := <-ch:
					full, err = write(v)
				default:
					break drain
				}
			}
			if err != nil || bw.Flush() != nil || full {
				return
			}
		}
	}
}

// Engine answers the control commands of a running engine:
// iptables-save, iptables-restore (an atomic swap), conntrack and
// metrics. Set the fields before the first request.
type Engine struct {
	Eng *datapath.Engine
	// Now is the engine's clock (for conntrack timeouts).
	Now func() int64
	// Metrics returns the instance's metrics (Prometheus text).
	Metrics func() string
	// Sets are the instance's ipsets, for restores without --ipset.
	Sets iptables.Sets
	// Neighbours, when set, lists the neighbour tables of the
	// instance's devices other than bridges (a lab's TAP ports), for ip
	// neigh show; the bridges' come from Eng.
	Neighbours func() []iproute.Neighbour
	// Lock, when set, serialises the engine's configuration changes
	// with others that change it (a fault's rules-swap or sysctl,
	// faulthost.Host.Lock; a lab's fault add): each reads the running
	// configuration and swaps in a changed one, and two at once would
	// lose one's change. nil: restoreMu.
	Lock *sync.Mutex
	// restoreMu serialises live restores, so a --noflush restore's base
	// is the set it replaces.
	restoreMu sync.Mutex
}

// mu is the lock of configuration changes (Lock, else restoreMu).
func (e *Engine) mu() *sync.Mutex {
	if e.Lock != nil {
		return e.Lock
	}
	return &e.restoreMu
}

// Control runs one request.
func (e *Engine) Control(req Request) Response {
	switch req.Cmd {
	case "iptables-save":
		return e.iptablesSave(req)
	case "iptables-restore":
		return e.iptablesRestore(req)
	case "iptables":
		return e.iptablesCmd(req)
	case "conntrack":
		return e.conntrack(req)
	case "metrics":
		return Response{Stdout: e.Metrics()}
	case "ipvsadm":
		return e.ipvsadm(req)
	case "ip":
		return e.ip(req)
	case "ebtables":
		return e.ebtablesCmd(req)
	case "ebtables-save":
		rs := e.Eng.Config().Ebtables
		if rs == nil {
			return Response{}
		}
		var b strings.Builder
		rs.Save(&b, ebtables.SaveOptions{Counters: req.Counters})
		return Response{Stdout: b.String()}
	case "ebtables-restore":
		e.mu().Lock()
		defer e.mu().Unlock()
		cur := e.Eng.Config()
		rs, rerr := (&ebtables.Loader{Base: cur.Ebtables, NoFlush: req.NoFlush}).Load(req.Input)
		if rerr != nil {
			return Response{Code: rerr.ExitCode, Stderr: rerr.Stderr}
		}
		cur.Ebtables = rs
		e.Eng.Swap(cur)
		return Response{}
	case "bridge":
		var out, errb strings.Builder
		code := fdb.Command(e.Eng.Bridges(), req.Args, e.Now(), &out, &errb)
		return Response{Code: code, Stdout: out.String(), Stderr: errb.String()}
	case "log":
		return e.logCmd(req)
	case "trace", "pcap", "nflog":
		return Response{Code: 2, Stderr: "uswitch: " + req.Cmd + " streams only over the control socket\n"}
	}
	return Response{Code: 2, Stderr: fmt.Sprintf("uswitch: unknown control command %q\n", req.Cmd)}
}

func (e *Engine) iptablesSave(req Request) Response {
	if req.Table != "" {
		if _, ok := iptables.ParseTable(req.Table); !ok {
			return Response{Code: 1, Stderr: fmt.Sprintf("Table `%s' does not exist\n", req.Table)}
		}
	}
	rs := e.Eng.Config().Rules
	if rs == nil {
		return Response{}
	}
	var b strings.Builder
	rs.Save(&b, iptables.SaveOptions{Counters: req.Counters, Table: req.Table})
	return Response{Stdout: b.String()}
}

// iptablesRestore loads the input over the running set (tables the input
// names are flushed unless NoFlush; the others stay, as the kernel keeps
// them) and swaps it in. A set that fails to load changes nothing.
func (e *Engine) iptablesRestore(req Request) Response {
	e.mu().Lock()
	defer e.mu().Unlock()
	eng := e.Eng
	cur := eng.Config()
	ld := &iptables.Loader{NoFlush: req.NoFlush, Counters: req.Counters, Base: cur.Rules}
	if e.Sets != nil {
		ld.Sets = e.Sets
	}
	if req.IPSet != "" {
		sets, err := iptables.ParseIPSetSave(strings.NewReader(req.IPSet), "ipset")
		if err != nil {
			return Response{Code: 1, Stderr: fmt.Sprintf("uswitch: %v\n", err)}
		}
		ld.Sets = sets
	}
	rs, err := ld.LoadString(req.Input)
	if err != nil {
		var re *iptables.RestoreError
		if errors.As(err, &re) {
			return Response{Code: re.ExitCode(), Stderr: re.Stderr()}
		}
		return Response{Code: 1, Stderr: fmt.Sprintf("%s: %v\n", iptables.Program, err)}
	}
	cur.Rules = rs
	eng.Swap(cur)
	return Response{}
}

// ipvsadm runs an ipvsadm command against the engine's IPVS.
func (e *Engine) ipvsadm(req Request) Response {
	d := e.Eng.LVS
	if d == nil {
		return Response{Code: 1, Stderr: "Can't initialize ipvs: this uswitch instance has no IPVS\n"}
	}
	c, err := lvs.ParseCommand(req.Args)
	if err != nil {
		return Response{Code: 2, Stderr: err.Error() + "\n"}
	}
	var out strings.Builder
	if err := lvs.Exec(d, c, strings.NewReader(req.Input), &out, e.Now()); err != nil {
		return Response{Code: 1, Stdout: out.String(), Stderr: err.Error() + "\n"}
	}
	return Response{Stdout: out.String()}
}

// ip answers `ip route get|show` and `ip rule show` from the engine's
// current FIB. The uid ip route get shows is this process's: the
// socket admits only its owner's uid and root (peerAllowed).
func (e *Engine) ip(req Request) Response {
	f := e.Eng.Config().FIB
	if f == nil {
		return Response{Code: 1, Stderr: "uswitch: this instance has no routing table\n"}
	}
	var out, errb strings.Builder
	env := iproute.Env{FIB: f, UID: uint32(os.Getuid())}
	for _, b := range e.Eng.Bridges() {
		for _, n := range e.Eng.BridgeNeighbours(b.Name) {
			env.Neighbours = append(env.Neighbours, iproute.Neighbour{Dst: packet.AddrOf(n.Addr), Dev: b.Name,
				LLAddr: n.MAC, HasLL: n.MAC != (packet.MAC{}), State: n.State})
		}
	}
	if e.Neighbours != nil {
		env.Neighbours = append(env.Neighbours, e.Neighbours()...)
	}
	code := iproute.Run(env, req.Args, &out, &errb)
	return Response{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// conntrackVersion is the conntrack-tools version whose output uswitch
// prints.
const conntrackVersion = "conntrack v1.4.7 (conntrack-tools)"

// conntrack runs a conntrack(8) command line (Args; or the Op of older
// clients) against the engine's table. -E streams only over the socket.
func (e *Engine) conntrack(req Request) Response {
	args := req.Args
	if len(args) == 0 {
		switch req.Op {
		case "L":
			args = []string{"-L"}
			if req.Extended {
				args = append(args, "-o", "extended")
			}
		case "C":
			args = []string{"-C"}
		default:
			return Response{Code: 2, Stderr: fmt.Sprintf("%s: unsupported command %q\n", conntrackVersion, req.Op)}
		}
	}
	cmd, err := conntrack.ParseCommand(args)
	if err != nil {
		return cliError(err)
	}
	if cmd.Op == conntrack.OpEvent {
		return Response{Code: 2, Stderr: "uswitch: conntrack -E streams only over the control socket\n"}
	}
	r := cmd.Exec(e.Eng.CT, e.Now(), req.PortID)
	return Response{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}
}

func cliError(err error) Response {
	var ce *conntrack.CLIError
	if errors.As(err, &ce) {
		return Response{Code: ce.Code, Stderr: ce.Stderr()}
	}
	return Response{Code: 1, Stderr: "uswitch: " + err.Error() + "\n"}
}

// ConntrackTable gives the engine's conntrack table and its clock, for
// conntrack -E.
func (e *Engine) ConntrackTable() (*conntrack.Table, func() int64) { return e.Eng.CT, e.Now }

// ConntrackSource is a Handler with a conntrack table whose events the
// server can stream (conntrack -E). Engine and the lab are.
type ConntrackSource interface {
	ConntrackTable() (*conntrack.Table, func() int64)
}

// EventQueue is how many formatted events wait for a slow -E client;
// more are dropped (a netlink event socket overruns with ENOBUFS).
const EventQueue = 4096

// streamConntrack answers conntrack -E: a Response with Stream set, then
// the events cmd selects, one a line as conntrack prints them (the XML
// header before the first with -o xml), until the client goes or the
// server closes. The client prints the trailer (conntrack.EventsTrailer).
func (c *Server) streamConntrack(conn net.Conn, enc *json.Encoder, cmd *conntrack.Command, h Handler) {
	src, ok := h.(ConntrackSource)
	if !ok {
		enc.Encode(Response{Code: 1, Stderr: "uswitch: this instance has no conntrack table\n"})
		return
	}
	tb, _ := src.ConntrackTable()
	ch := make(chan []byte, EventQueue)
	cancel := tb.Subscribe(func(e *conntrack.Event) {
		if !cmd.WantEvent(e) {
			return
		}
		select {
		case ch <- conntrack.AppendEvent(nil, e, cmd.Out, time.Now().UnixMicro()):
		default:
		}
	})
	defer cancel()
	var w *bufio.Writer
	header := false
	stream(c, conn, enc, ch, func(bw *bufio.Writer) error {
		w = bw
		return nil
	}, func(ln []byte) (bool, error) {
		if cmd.Out&conntrack.OutXML != 0 && !header {
			w.WriteString(conntrack.XMLHeader)
			header = true
		}
		w.Write(ln)
		return false, w.WriteByte('\n')
	})
}
