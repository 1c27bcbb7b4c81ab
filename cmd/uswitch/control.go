package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
)

// instanceFlags choose the running lab a command talks to.
type instanceFlags struct {
	socket, lab string
	// node is a node of a multi-node lab (--node NAME; "": the lab's
	// own engine)
	node string
}

// with is the request for the chosen node.
func (f *instanceFlags) with(req control.Request) control.Request {
	req.Node = f.node
	return req
}

// newFlags is a subcommand's flag set, its errors and usage to stderr,
// with the flags that pick the running instance.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *instanceFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	inst := &instanceFlags{}
	inst.register(fs)
	return fs, inst
}

func (f *instanceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.socket, "socket", "", "control socket of the running uswitch (default: $USWITCH_SOCKET, else "+control.SocketPath("LAB")+")")
	fs.StringVar(&f.lab, "lab", "default", "name of the running lab whose socket to use")
	fs.StringVar(&f.node, "node", "", "a node of a multi-node lab: the command is that node's engine's")
}

func (f *instanceFlags) path() string {
	if f.socket != "" {
		return f.socket
	}
	if s := os.Getenv("USWITCH_SOCKET"); s != "" {
		return s
	}
	return control.SocketPath(f.lab)
}

// controlCall sends one request to the running instance and prints its
// answer; the result is the remote tool's exit code.
func controlCall(path string, req control.Request, stdout, stderr io.Writer) int {
	resp, err := controlRequest(path, req)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	return resp.Code
}

func controlRequest(path string, req control.Request) (control.Response, error) {
	var resp control.Response
	body, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("control request: %w", err)
	}
	// the instance would refuse it whole: say so without sending it
	if err := control.CheckSize(len(body)); err != nil {
		return resp, err
	}
	body = append(body, '\n')
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return resp, fmt.Errorf("no running uswitch instance at %s (start one with `uswitch lab`, or give --socket)", path)
		}
		return resp, fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(body); err != nil {
		// an instance that refused the request may have said why
		// before it stopped reading
		if derr := json.NewDecoder(c).Decode(&resp); derr == nil {
			return resp, nil
		}
		return resp, fmt.Errorf("control socket: %w", err)
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return resp, fmt.Errorf("control socket: no answer: %w", err)
	}
	return resp, nil
}

// conntrackCmd is conntrack(8) against the running instance: its
// arguments as conntrack-tools 1.4.7 takes them (-L, -G, -D, -F, -C, -S,
// -E with filters and -o), plus --lab NAME / --socket PATH anywhere.
func conntrackCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	inst, rest, err := instanceArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 2
	}
	cmd, err := conntrack.ParseCommand(rest)
	if err != nil {
		var ce *conntrack.CLIError
		if errors.As(err, &ce) {
			io.WriteString(stderr, ce.Stderr())
			return ce.Code
		}
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 2
	}
	switch cmd.Op {
	case conntrack.OpHelp:
		io.WriteString(stdout, conntrack.Usage)
		return 0
	case conntrack.OpVersion:
		fmt.Fprintln(stdout, conntrack.Program)
		return 0
	case conntrack.OpEvent:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return conntrackEvents(ctx, inst.path(), inst.node, rest, cmd.Out, stdout, stderr)
	}
	return controlCall(inst.path(), inst.with(control.Request{Cmd: "conntrack", Args: rest}), stdout, stderr)
}

// instanceArgs takes --lab NAME, --socket PATH and --node NAME (or -lab,
// -socket, -node, =VALUE) out of a tool's own arguments.
func instanceArgs(args []string) (*instanceFlags, []string, error) {
	inst := &instanceFlags{lab: "default"}
	var rest []string
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (name != "lab" && name != "socket" && name != "node") {
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag needs an argument: %s", args[i])
			}
			i++
			val = args[i]
		}
		switch name {
		case "lab":
			inst.lab = val
		case "node":
			inst.node = val
		default:
			inst.socket = val
		}
	}
	return inst, rest, nil
}

// conntrackEvents is conntrack -E: the instance's event lines until ctx
// is done (SIGINT, SIGTERM) or the instance goes, then conntrack's
// trailer.
func conntrackEvents(ctx context.Context, path, node string, args []string, out conntrack.Output, stdout, stderr io.Writer) int {
	n := 0
	lines := &lineCounter{w: stdout}
	code := streamCall(ctx, path, control.Request{Cmd: "conntrack", Args: args, Node: node}, lines, stderr)
	if code != 0 {
		return code
	}
	n = lines.n
	if out&conntrack.OutXML != 0 && n >= 2 {
		n -= 2 // the XML header's lines
	}
	o, e := conntrack.EventsTrailer(out, n)
	io.WriteString(stdout, o)
	io.WriteString(stderr, e)
	return 0
}

// lineCounter counts the newlines written through it.
type lineCounter struct {
	w io.Writer
	n int
}

func (l *lineCounter) Write(b []byte) (int, error) {
	l.n += bytes.Count(b, []byte{'\n'})
	return l.w.Write(b)
}

// metricsCmd prints the running instance's Prometheus metrics.
func metricsCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("metrics", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return controlCall(inst.path(), inst.with(control.Request{Cmd: "metrics"}), stdout, stderr)
}

// monitorCmd is `xtables-monitor --trace` against the running instance:
// the trace lines of the packets -j TRACE marks, until interrupted.
func monitorCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("monitor", stderr)
	tr := fs.Bool("trace", false, "print the trace events of packets marked by -j TRACE (xtables-monitor --trace)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*tr || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: uswitch monitor --trace [--socket PATH | --lab NAME] [--node NAME]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return traceStream(ctx, inst.path(), inst.node, stdout, stderr)
}

// pcapCmd writes a pcap of a device's packets (read and written by
// uswitch) to a file or stdout, until interrupted or -c packets.
func pcapCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, inst := newFlags("pcap", stderr)
	iface := fs.String("i", "any", "the lab device to capture (\"any\": all)")
	file := fs.String("w", "-", "the pcap file to write (\"-\": stdout, e.g. | tcpdump -nr -)")
	count := fs.Int("c", 0, "stop after this many packets")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *count < 0 {
		fmt.Fprintln(stderr, "usage: uswitch pcap [-i DEVICE] [-w FILE] [-c COUNT] [--socket PATH | --lab NAME] [--node NAME]")
		return 2
	}
	return streamToFile(inst, control.Request{Cmd: "pcap", Iface: *iface, Count: *count}, *file, stdout, stderr)
}

// streamToFile sends req to the instance and copies the stream it
// answers with (pcap records) to file ("-": stdout) until interrupted or
// the instance ends it.
func streamToFile(inst *instanceFlags, req control.Request, file string, stdout, stderr io.Writer) int {
	w := stdout
	if file != "-" {
		f, err := os.Create(file)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch: %v\n", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return streamCall(ctx, inst.path(), inst.with(req), w, stderr)
}

// traceStream copies the instance's live trace lines to w until ctx is
// done or the instance goes.
func traceStream(ctx context.Context, path, node string, w, stderr io.Writer) int {
	return streamCall(ctx, path, control.Request{Cmd: "trace", Node: node}, w, stderr)
}

// streamCall sends a streaming request and copies the stream to w until
// ctx is done or the instance ends it.
func streamCall(ctx context.Context, path string, req control.Request, w, stderr io.Writer) int {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "uswitch: no running uswitch instance at %s\n", path)
		} else {
			fmt.Fprintf(stderr, "uswitch: control socket: %v\n", err)
		}
		return 1
	}
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		fmt.Fprintf(stderr, "uswitch: control socket: %v\n", err)
		return 1
	}
	br := bufio.NewReader(c)
	head, err := br.ReadBytes('\n')
	var resp control.Response
	if err == nil {
		err = json.Unmarshal(head, &resp)
	}
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: control socket: no answer: %v\n", err)
		return 1
	}
	if !resp.Stream {
		io.WriteString(stderr, resp.Stderr)
		return max(resp.Code, 1)
	}
	io.Copy(w, br)
	return 0
}
