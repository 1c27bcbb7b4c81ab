// Package iproute answers `ip route get`, `ip route show`, `ip rule show`
// and `ip neigh show` (and their -j forms) from a route.FIB (and the
// neighbour tables it is given) exactly as iproute2 6.1 prints the
// kernel's answers: the question "where does this packet go"
// asked of a snapshot or of a running lab.
//
// The arguments are read as iproute2 reads them (ip/ip.c, ip/iproute.c
// iproute_get and iproute_list_flush_or_save, ip/iprule.c), with its
// messages and exit statuses; the route is the FIB's (route.FIB.Route:
// ip_route_input / ip_route_output_key); the answer is printed as the
// kernel fills it (net/ipv4/route.c rt_fill_info for get,
// net/ipv4/fib_semantics.c fib_dump_info for show, net/core/fib_rules.c
// fib_nl_fill_rule for rules) and iproute2 prints it (print_route,
// print_rule, lib/json_print.c).
//
// Only IPv4 is answered, as the FIB holds only IPv4.
package iproute

import (
	"fmt"
	"io"
	"strings"

	"github.com/uswitch-lab/uswitch/route"
)

// Env is what a command runs against.
type Env struct {
	FIB *route.FIB
	// Names are the name databases (nil: DefaultNames).
	Names *Names
	// UID is the caller's uid: `ip route get` shows it for output
	// routes (inet_rtm_getroute takes current_uid()).
	UID uint32
	// Neighbours are the neighbour tables' entries (ip neigh show).
	Neighbours []Neighbour
}

// Error is a command ip rejects or fails: the text it prints on
// stderr and its exit status.
type Error struct {
	Msg  string
	Code int
}

func (e *Error) Error() string { return strings.TrimRight(e.Msg, "\n") }

// Exit statuses as ip(8) returns them: a handler's -1 is 1, a failed
// netlink request (-2) is 2, exit(-1) in invarg and friends is 255.
const (
	exitFail   = 1
	exitNL     = 2
	exitInvarg = 255
)

func invarg(msg, arg string) *Error {
	return &Error{Msg: fmt.Sprintf("Error: argument \"%s\" is wrong: %s\n", arg, msg), Code: exitInvarg}
}

var errIncomplete = &Error{Msg: "Command line is not complete. Try option \"help\"\n", Code: exitInvarg}

func unsupported(what string) *Error {
	return &Error{Msg: fmt.Sprintf("uswitch: ip %s is not supported (uswitch answers ip route get, ip route show, ip rule show and ip neigh show)\n", what), Code: exitFail}
}

// matches is iproute2's matches(): arg is a non-empty prefix of word.
func matches(arg, word string) bool { return arg != "" && strings.HasPrefix(word, arg) }

// Options are ip's global options that uswitch takes.
type Options struct {
	JSON bool // -j, -json
}

// Command is a parsed ip command line.
type Command struct {
	Options
	// Object is "route", "rule" or "neigh"; Verb "get" or "show".
	Object, Verb string
	Get          GetArgs
	Show         ShowArgs
	// NeighDev is ip neigh show's dev selector.
	NeighDev string
}

// Parse reads an ip command line (the arguments after "ip").
func Parse(args []string, names *Names) (*Command, *Error) {
	if names == nil {
		names = DefaultNames()
	}
	c := &Command{}
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' {
		opt := args[0]
		if len(opt) > 1 && opt[1] == '-' {
			opt = opt[1:]
		}
		switch {
		case opt == "-4":
		case matches(opt, "-json"):
			c.JSON = true
		case opt == "-6":
			return nil, unsupported("-6 (uswitch routes IPv4 only)")
		default:
			return nil, &Error{Msg: fmt.Sprintf("uswitch: ip option %q is not supported (-j and -4 are)\n", args[0]), Code: exitFail}
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return nil, &Error{Msg: "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\nuswitch answers: ip [-j] route get ADDRESS ..., ip [-j] route show [table TABLE|all], ip [-j] rule show, ip [-j] neigh show [dev DEV]\n", Code: exitFail}
	}
	obj, rest := args[0], args[1:]
	// ip.c's command table order: "r" and "ro" are route, "ru" rule.
	switch {
	case matches(obj, "address") || matches(obj, "addrlabel") || matches(obj, "maddress"):
		return nil, unsupported(obj)
	case matches(obj, "route"):
		c.Object = "route"
		if len(rest) == 0 {
			c.Verb = "show"
			c.Show.Table = route.TableMain
			return c, nil
		}
		verb := rest[0]
		switch {
		case matches(verb, "add") || matches(verb, "change") || verb == "chg" || matches(verb, "replace") ||
			matches(verb, "prepend") || matches(verb, "append") || matches(verb, "test") || matches(verb, "delete"):
			return nil, unsupported("route " + verb)
		case matches(verb, "list") || matches(verb, "show") || matches(verb, "lst"):
			c.Verb = "show"
			s, err := parseShow(rest[1:], names)
			if err != nil {
				return nil, err
			}
			c.Show = s
		case matches(verb, "get"):
			c.Verb = "get"
			g, err := parseGet(rest[1:], names)
			if err != nil {
				return nil, err
			}
			c.Get = g
		default:
			return nil, unsupported("route " + verb)
		}
	case matches(obj, "rule"):
		c.Object = "rule"
		if len(rest) > 0 {
			verb := rest[0]
			if !(matches(verb, "list") || matches(verb, "lst") || matches(verb, "show")) {
				return nil, unsupported("rule " + verb)
			}
			if len(rest) > 1 {
				return nil, unsupported("rule show with selectors")
			}
		}
		c.Verb = "show"
	case matches(obj, "neighbor") || matches(obj, "neighbour"):
		dev, err := parseNeigh(rest)
		if err != nil {
			return nil, err
		}
		c.Object, c.Verb, c.NeighDev = "neigh", "show", dev
	default:
		return nil, &Error{Msg: fmt.Sprintf("Object \"%s\" is unknown, try \"ip help\".\n", obj), Code: exitFail}
	}
	return c, nil
}

// Run runs an ip command line against env, printing as ip does; the
// result is ip's exit status.
func Run(env Env, args []string, stdout, stderr io.Writer) int {
	if env.Names == nil {
		env.Names = DefaultNames()
	}
	c, err := Parse(args, env.Names)
	if err != nil {
		io.WriteString(stderr, err.Msg)
		return err.Code
	}
	out, warn, rerr := c.Answer(env)
	io.WriteString(stderr, warn)
	io.WriteString(stdout, out)
	if rerr != nil {
		io.WriteString(stderr, rerr.Msg)
		return rerr.Code
	}
	return 0
}

// Answer runs a parsed command: what ip prints on stdout, warnings it
// prints on stderr first, and its failure.
func (c *Command) Answer(env Env) (stdout, warnings string, err *Error) {
	if env.Names == nil {
		env.Names = DefaultNames()
	}
	switch {
	case c.Object == "route" && c.Verb == "get":
		out, err := Get(env, &c.Get, c.JSON)
		return out, strings.Join(c.Get.Warnings, ""), err
	case c.Object == "route":
		out, err := ShowRoutes(env, &c.Show, c.JSON)
		return out, "", err
	case c.Object == "neigh":
		out, err := ShowNeighbours(env, c.NeighDev, c.JSON)
		return out, "", err
	default:
		return ShowRules(env, c.JSON), "", nil
	}
}
