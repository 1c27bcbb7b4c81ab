package fault

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// State faults at scheduled instants (or for the windows of their
// schedule), on what the engine keeps between packets:
//
//	conntrack-evict   filter = "-p tcp --orig-dst 10.96.0.10 --dport 80"
//	                  conntrack -D with that filter (conntrack(8)'s
//	                  options, parsed by package conntrack): the
//	                  entries go with DESTROY events; the next packet of
//	                  a TCP flow is picked up mid-stream (tcp_loose) as
//	                  NEW and runs the nat table again
//	conntrack-expire  filter, timeout = "1s": the matching entries get
//	                  that long to live (conntrack -U --timeout)
//	rules-swap        file (or rules, inline) in iptables-restore form
//	                  (family = "bridge": ebtables-restore), atomic by
//	                  default; atomic = false runs it as iptables (or
//	                  ebtables) command lines, one every step; with a
//	                  stop the rules from before come back
//	sysctl            set = ["net.ipv4.ip_forward=0", ...]; the old
//	                  values come back at the window's end
//	fdb               op = flush | age | poison on bridge: flush the
//	                  dynamic entries (bridge fdb flush), age out the
//	                  ones idle for ageing (br_fdb_cleanup now), or
//	                  learn mac on port (a poisoned entry)
//	datapath-kill     the datapath stops (uswitch nfqueue: the queue's
//	                  socket closes, so the kernel drops what it held and
//	                  --queue-bypass decides for the rest, for good; a
//	                  lab: its TUN/TAP queues close and open again after
//	                  duration, or at the window's end, link/kill.go)
//	datapath-stall    the datapath stops reading for the window, or for
//	                  duration (NFQUEUE: the kernel's queue fills to
//	                  queue_maxlen, then drops, or accepts with
//	                  fail-open; a lab: the TUN's queue fills to its
//	                  txqueuelen, then the kernel drops)
//
// Both run on the clock (Set.Tick, called by their runners between
// packets), not at a packet: a stalled datapath sees none.
//
// A fault with instants (schedule at) acts at each; one with a window
// acts when the window opens and undoes (sysctl, rules-swap with a
// stop, stall) when it closes. What needs more than conntrack and NAT
// goes through the Host the set is bound to (BindHost): a lab, uswitch
// nfqueue and uswitch trace give one; without it the fault counts an
// error.
//
// conntrack-clash is a packet fault at a hook before confirm (default
// hook:ipv4:POSTROUTING@2147483646): a matching packet whose entry is
// new and unconfirmed races a twin of the same flow (a DNS A and AAAA
// query from one socket), which confirms first (conntrack.InsertTwin):
// the packet's own confirm then meets the clash as the kernel resolves
// it (nf_ct_resolve_clash: UDP takes the twin's entry, or goes in by its
// reply tuple for a second when the twin's NAT differs; TCP is dropped
// with insert_failed). twin = "same" (default: the twin took the same
// NAT), "no-nat", or twin_dnat/twin_snat = "ADDR[:PORT]" (the twin was
// NATed there instead).

// Host is what the state faults act on beyond conntrack and NAT.
type Host interface {
	// Restore loads text over the running rules and swaps them in
	// atomically: iptables-restore form, or ebtables-restore form for
	// bridge (tables the text names are replaced).
	Restore(text string, bridge bool) error
	// Save returns the running rules in the form Restore reads.
	Save(bridge bool) (string, error)
	// Command runs one iptables (or ebtables) command line, e.g.
	// ["-D", "FORWARD", "1"].
	Command(args []string, bridge bool) error
	// Sysctl sets a sysctl and returns its value before.
	Sysctl(name, value string) (old string, err error)
	// Bridge is the forwarding database of a bridge device.
	Bridge(name string) (*fdb.Bridge, error)
	// Kill stops the datapath, for d ns (0: for good); Stall stops it
	// reading for d ns. Neither may block the packet that asks.
	Kill(d int64) error
	Stall(d int64) error
}

// StallForever is the stall a datapath-stall fault asks for when its
// window does not end (Host.Stall's d).
const StallForever = int64(1) << 60

// actionParams are a state fault's compiled parameters.
type actionParams struct {
	filter   *conntrack.Command
	timeout  int64
	twin     twinKind
	twinAddr uint32
	twinPort uint16

	rules  string
	bridge bool
	atomic bool
	step   int64
	lines  [][]string

	sysctls [][2]string

	fdbOp  string
	br     string
	mac    packet.MAC
	port   string
	ageing int64

	duration int64
}

type twinKind uint8

const (
	twinSame twinKind = iota
	twinNoNAT
	twinDNAT
	twinSNAT
)

// compileAction reads the parameters of the kinds of this file.
func (f *Fault) compileAction(s *Spec) error {
	a := &f.act
	var err error
	if s.Duration != "" {
		if a.duration, err = parseDuration(s.Duration); err != nil {
			return fmt.Errorf("duration: %w", err)
		}
	}
	switch f.Kind {
	case KindConntrackEvict, KindConntrackExpire:
		args := append([]string{"-D"}, strings.Fields(s.Filter)...)
		if a.filter, err = conntrack.ParseCommand(args); err != nil {
			return fmt.Errorf("filter %q: %v", s.Filter, err)
		}
		if a.filter.Op != conntrack.OpDelete {
			return fmt.Errorf("filter %q: conntrack options only (-p, -s, -d, --dport, --mark, --zone, --state, ...)", s.Filter)
		}
		if f.Kind == KindConntrackExpire {
			if s.Timeout == "" {
				return errors.New("conntrack-expire: timeout = \"1s\" (what the entries have left)")
			}
			if a.timeout, err = parseDuration(s.Timeout); err != nil || a.timeout <= 0 {
				return fmt.Errorf("conntrack-expire: timeout %q: a time above 0", s.Timeout)
			}
		}
	case KindConntrackClash:
		n := 0
		switch s.Twin {
		case "", "same":
		case "no-nat":
			a.twin = twinNoNAT
		default:
			return fmt.Errorf("conntrack-clash: twin %q: same or no-nat (or twin_dnat, twin_snat)", s.Twin)
		}
		for _, x := range []struct {
			v string
			k twinKind
		}{{s.TwinDNAT, twinDNAT}, {s.TwinSNAT, twinSNAT}} {
			if x.v == "" {
				continue
			}
			n++
			ap, err := netip.ParseAddrPort(x.v)
			if err != nil {
				ad, err2 := netip.ParseAddr(x.v)
				if err2 != nil || !ad.Is4() {
					return fmt.Errorf("conntrack-clash: %q: an IPv4 address, with a port or not", x.v)
				}
				ap = netip.AddrPortFrom(ad, 0)
			}
			if !ap.Addr().Is4() {
				return fmt.Errorf("conntrack-clash: %q is not IPv4", x.v)
			}
			a.twin, a.twinAddr, a.twinPort = x.k, packet.AddrFrom(ap.Addr()), ap.Port()
		}
		if n > 1 || (n == 1 && s.Twin != "") {
			return errors.New("conntrack-clash: one of twin, twin_dnat, twin_snat")
		}
	case KindRulesSwap:
		switch s.Family {
		case "", "ipv4":
		case "bridge":
			a.bridge = true
		default:
			return fmt.Errorf("rules-swap: family %q: ipv4 or bridge", s.Family)
		}
		switch {
		case s.File != "" && s.Rules != "":
			return errors.New("rules-swap: file or rules, not both")
		case s.File != "":
			b, err := os.ReadFile(s.File)
			if err != nil {
				return fmt.Errorf("rules-swap: %v", err)
			}
			a.rules = string(b)
		case s.Rules != "":
			a.rules = s.Rules
		default:
			return errors.New("rules-swap: file = \"rules-v2.txt\" (iptables-restore form) or rules = \"...\"")
		}
		a.atomic = s.Atomic == nil || *s.Atomic
		if s.Step != "" {
			if a.step, err = parseDuration(s.Step); err != nil {
				return fmt.Errorf("rules-swap: step: %w", err)
			}
		}
		if !a.atomic {
			for i, l := range strings.Split(a.rules, "\n") {
				w, err := splitWords(l)
				if err != nil {
					return fmt.Errorf("rules-swap: line %d: %v", i+1, err)
				}
				if len(w) > 0 && (w[0] == "iptables" || w[0] == "ebtables") {
					w = w[1:]
				}
				if len(w) == 0 || strings.HasPrefix(w[0], "#") {
					continue
				}
				if strings.HasPrefix(w[0], "*") || strings.HasPrefix(w[0], ":") || w[0] == "COMMIT" {
					return fmt.Errorf("rules-swap: line %d: %q: atomic = false takes command lines (-A FORWARD ..., -D FORWARD 1), not restore input", i+1, l)
				}
				a.lines = append(a.lines, w)
			}
			if len(a.lines) == 0 {
				return errors.New("rules-swap: no command lines")
			}
		}
	case KindSysctl:
		if len(s.Set) == 0 {
			return errors.New("sysctl: set = [\"net.ipv4.ip_forward=0\", ...]")
		}
		for _, kv := range s.Set {
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" || v == "" {
				return fmt.Errorf("sysctl: %q: name=value", kv)
			}
			a.sysctls = append(a.sysctls, [2]string{strings.ReplaceAll(k, "/", "."), v})
		}
	case KindFDB:
		a.fdbOp, a.br = s.Op, s.Bridge
		if a.br == "" {
			return errors.New("fdb: bridge = \"br0\"")
		}
		switch s.Op {
		case "flush":
		case "age":
			if s.Ageing != "" {
				if a.ageing, err = parseDuration(s.Ageing); err != nil {
					return fmt.Errorf("fdb: ageing: %w", err)
				}
			}
		case "poison":
			if a.mac, err = packet.ParseMAC(s.MAC); err != nil {
				return fmt.Errorf("fdb: mac %q: %v", s.MAC, err)
			}
			if s.Port == "" {
				return errors.New("fdb poison: port = \"PORT\" (where the entry moves)")
			}
			a.port = s.Port
		default:
			return fmt.Errorf("fdb: op %q: flush, age or poison", s.Op)
		}
	case KindDatapathStall:
		if len(f.sched.at) > 0 && a.duration == 0 {
			return errors.New("datapath-stall at instants needs duration = \"2s\" (or give a window: start/stop)")
		}
	}
	return nil
}

// splitWords splits a command line into words, with '...' and "..."
// quoting as a shell would for these lines.
func splitWords(l string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, q := false, byte(0)
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			q, in = c, true
		case c == ' ' || c == '\t' || c == '\r':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if q != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// BindHost gives the set's state faults the Host they act through.
// Call it before packets flow (and again for a set With more faults).
func (s *Set) BindHost(h Host) {
	for _, f := range s.Faults {
		f.state.mu.Lock()
		f.state.host = h
		f.state.mu.Unlock()
	}
}

// fire does the fault's change at now (st.mu held).
func (f *Fault) fire(now int64) {
	st := &f.state
	a := &f.act
	var err error
	var n int
	switch f.Kind {
	case KindConntrackEvict, KindConntrackExpire:
		if st.ct == nil {
			err = errors.New("no conntrack table")
			break
		}
		var victims []*conntrack.Conn
		st.ct.Range(now, func(c *conntrack.Conn) bool {
			if a.filter.Filter.Match(c) {
				victims = append(victims, c)
			}
			return true
		})
		for _, c := range victims {
			if f.Kind == KindConntrackEvict {
				if st.ct.Kill(c, now, 0) {
					n++
				}
			} else {
				c.SetTimeout(a.timeout, now)
				n++
			}
		}
	case KindRulesSwap:
		if st.host == nil {
			err = errors.New("no host to swap rules in")
			break
		}
		if st.saved == "" && f.Stop > 0 {
			if st.saved, err = st.host.Save(a.bridge); err != nil {
				break
			}
		}
		if a.atomic {
			err = st.host.Restore(a.rules, a.bridge)
			n = 1
			break
		}
		st.line, st.lineAt, st.swapping = 0, now, true
		n, err = f.swapLines(now)
	case KindSysctl:
		if st.host == nil {
			err = errors.New("no host to set sysctls on")
			break
		}
		st.undo = st.undo[:0]
		for _, kv := range a.sysctls {
			old, e := st.host.Sysctl(kv[0], kv[1])
			if e != nil {
				err = e
				break
			}
			st.undo = append(st.undo, [2]string{kv[0], old})
			n++
		}
	case KindFDB:
		if st.host == nil {
			err = errors.New("no host with bridges")
			break
		}
		var b *fdb.Bridge
		if b, err = st.host.Bridge(a.br); err != nil {
			break
		}
		before := len(b.Entries())
		switch a.fdbOp {
		case "flush":
			b.Flush()
			n = before - len(b.Entries())
		case "age":
			old := b.AgeingTime()
			b.SetAgeingTime(a.ageing)
			n, _ = b.Expire(now)
			b.SetAgeingTime(old)
		case "poison":
			i := b.PortByName(a.port)
			if i < 0 {
				err = fmt.Errorf("bridge %s has no port %s", a.br, a.port)
				break
			}
			b.Learn(i, a.mac, now)
			n = 1
		}
	case KindDatapathKill, KindDatapathStall:
		if st.host == nil {
			err = errors.New("no datapath to stop")
			break
		}
		if f.Kind == KindDatapathKill {
			// for duration, else until the window ends (0: for good)
			d := a.duration
			if d == 0 {
				d = f.windowLeft(now)
			}
			err = st.host.Kill(d)
		} else {
			d := a.duration
			if d == 0 {
				// the window's end (a window that does not end:
				// stalled for good, until the fault is deleted)
				if d = f.windowLeft(now); d == 0 {
					d = StallForever
				}
			}
			err = st.host.Stall(d)
		}
		n = 1
	}
	st.affected += uint64(n)
	f.Acted.Add(1)
	if err != nil {
		st.errs++
		st.lastErr = err.Error()
	}
}

// swapLines runs the command lines of a non-atomic swap whose time has
// come (st.mu held): line i at the fire time + i·step.
func (f *Fault) swapLines(now int64) (int, error) {
	st := &f.state
	a := &f.act
	n := 0
	for st.swapping && st.line < len(a.lines) && st.lineAt+int64(st.line)*a.step <= now {
		l := a.lines[st.line]
		st.line++
		if err := st.host.Command(l, a.bridge); err != nil {
			return n, fmt.Errorf("%s: %v", strings.Join(l, " "), err)
		}
		n++
	}
	return n, nil
}

// unfire undoes the change when the fault's window closes (st.mu held).
func (f *Fault) unfire() {
	st := &f.state
	if st.host == nil {
		return
	}
	var err error
	switch f.Kind {
	case KindDatapathStall:
		if f.act.duration == 0 {
			// the window closed (or the fault went): reading resumes
			err = st.host.Stall(0)
		}
	case KindSysctl:
		for i := len(st.undo) - 1; i >= 0; i-- {
			if _, e := st.host.Sysctl(st.undo[i][0], st.undo[i][1]); e != nil {
				err = e
			}
		}
		st.undo = st.undo[:0]
	case KindRulesSwap:
		if st.saved != "" {
			// the tables the swap brought that were not there before
			// go back to empty
			text := st.saved
			for _, l := range strings.Split(f.act.rules, "\n") {
				if t, ok := strings.CutPrefix(strings.TrimSpace(l), "*"); ok && t != "" && !strings.Contains(text, "*"+t+"\n") {
					text += "*" + t + "\nCOMMIT\n"
				}
			}
			err = st.host.Restore(text, f.act.bridge)
			st.saved = ""
			st.swapping = false
		}
	}
	if err != nil {
		st.errs++
		st.lastErr = err.Error()
	}
}

// windowLeft is what is left of the window active at now (0: it does
// not end).
func (f *Fault) windowLeft(now int64) int64 {
	rel := now - f.epoch
	if t, ok := f.Triggered(); ok {
		rel -= t
	}
	end := int64(0)
	if f.Stop > 0 {
		end = f.Stop
	}
	if f.Period > 0 {
		w := f.Start + (rel-f.Start)/f.Period*f.Period + f.For
		if end == 0 || w < end {
			end = w
		}
	}
	if end == 0 {
		return 0
	}
	return max(end-rel, 1)
}

// clash makes the packet's new entry race a twin (KindConntrackClash).
func (f *Fault) clash(c *iptables.Ctx, now int64, d *Decision) {
	st := &f.state
	st.mu.Lock()
	ct := st.ct
	st.mu.Unlock()
	conn := c.CT.Conn
	if ct == nil || conn == nil {
		return
	}
	orig := conn.Tuple(conntrack.Original)
	reply, _ := orig.Invert()
	var nat conntrack.Status
	a := &f.act
	switch a.twin {
	case twinSame:
		reply, nat = conn.Tuple(conntrack.Reply), conn.Status()
	case twinDNAT:
		reply.Src = a.twinAddr
		if a.twinPort != 0 {
			reply.SrcPort = a.twinPort
		}
		// the twin crossed POSTROUTING too: a null SNAT binding
		nat = conntrack.StatusDstNAT | conntrack.StatusDstNATDone | conntrack.StatusSrcNATDone
	case twinSNAT:
		reply.Dst = a.twinAddr
		if a.twinPort != 0 {
			reply.DstPort = a.twinPort
		}
		nat = conntrack.StatusSrcNAT | conntrack.StatusSrcNATDone | conntrack.StatusDstNATDone
	}
	if _, err := ct.InsertTwin(conn, reply, nat, now); err != nil {
		st.mu.Lock()
		st.errs++
		st.lastErr = err.Error()
		st.mu.Unlock()
		return
	}
	d.Raced = true
}

// actionText is a state fault's line in fault list.
func (f *Fault) actionText() string {
	st := &f.state
	st.mu.Lock()
	defer st.mu.Unlock()
	var what string
	switch f.Kind {
	case KindConntrackEvict:
		what = "entries deleted"
	case KindConntrackExpire:
		what = "entries expiring"
	case KindRulesSwap:
		what = "swaps"
		if !f.act.atomic {
			what = "command lines run"
		}
	case KindSysctl:
		what = "sysctls set"
	case KindFDB:
		what = "fdb entries " + map[string]string{"flush": "flushed", "age": "aged out", "poison": "poisoned"}[f.act.fdbOp]
	case KindDatapathKill:
		what = "kills"
	case KindDatapathStall:
		what = "stalls"
	}
	s := "acted " + strconv.FormatUint(f.Acted.Load(), 10) + " times: " + what + " " + strconv.FormatUint(st.affected, 10)
	if st.errs > 0 {
		s += fmt.Sprintf(", errors %d (last: %s)", st.errs, st.lastErr)
	}
	return s
}

// Affected is how many entries, rules, sysctls... the fault's actions
// changed so far (for reports).
func (f *Fault) Affected() uint64 {
	f.state.mu.Lock()
	defer f.state.mu.Unlock()
	return f.state.affected
}

// Errors is how many of the fault's actions failed, and the last error.
func (f *Fault) Errors() (uint64, string) {
	f.state.mu.Lock()
	defer f.state.mu.Unlock()
	return f.state.errs, f.state.lastErr
}
