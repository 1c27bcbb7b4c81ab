package lab

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
)

// demoTimeout bounds each demo request (a step's timeout overrides it).
const demoTimeout = 2 * time.Second

// timeout is the step's bound on its request.
func (d *Demo) timeout() time.Duration {
	if d.Timeout.D > 0 {
		return d.Timeout.D
	}
	return demoTimeout
}

// Describe prints the lab's layout.
func (l *Lab) Describe(w io.Writer) {
	c := l.cfg
	fmt.Fprintf(w, "uswitch lab %q: %d namespaces, %d TUN interfaces\n", c.Name, len(c.Namespaces), len(c.Interfaces))
	for _, n := range c.Namespaces {
		var addrs []string
		for _, a := range n.Addresses {
			addrs = append(addrs, a.String())
		}
		line := fmt.Sprintf("  %-12s %-16s", n.Name, strings.Join(addrs, ","))
		if it := c.iface(n.Name); it != nil {
			var ua []string
			for _, a := range it.Addresses {
				ua = append(ua, a.String())
			}
			line += fmt.Sprintf(" <-> uswitch %s %s", it.Name, strings.Join(ua, ","))
		}
		var sv []string
		for _, s := range n.Servers {
			sv = append(sv, fmt.Sprintf("%s:%d", s.Kind, s.Port))
		}
		if len(sv) > 0 {
			line += "  [" + strings.Join(sv, " ") + "]"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, k := range c.Links {
		fmt.Fprintf(w, "  link %s/%s %s <-> %s/%s %s\n", k.ANetns, k.AName, joinPrefixes(k.AAddresses),
			k.BNetns, k.BName, joinPrefixes(k.BAddresses))
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "  node %s: host namespace %s", n.Name, n.HostNetns)
		var sv []string
		for _, s := range n.Servers {
			sv = append(sv, fmt.Sprintf("%s:%d", s.Kind, s.Port))
		}
		if len(sv) > 0 {
			fmt.Fprintf(w, "  [%s]", strings.Join(sv, " "))
		}
		fmt.Fprintln(w)
		for _, it := range n.Interfaces {
			line := fmt.Sprintf("    %-10s %-18s", it.Name, joinPrefixes(it.Addresses))
			switch {
			case it.Switch != "":
				line += " <-> switch " + it.Switch + " port " + SwitchPortName(n.Name, it.Name)
			case it.Peer != "":
				line += " <-> node " + it.Peer
			case it.Kind.IsTunnel():
				line += " " + it.tunnelDescribe()
			case it.Bridge != "":
				line += " port of " + it.Bridge + " <-> " + it.Netns
			default:
				line += " <-> " + it.Netns
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
		for _, b := range n.Bridges {
			fmt.Fprintf(w, "    %-10s %s (bridge)\n", b.Name, joinPrefixes(b.Addresses))
		}
		for _, d := range n.Dummies {
			fmt.Fprintf(w, "    %-10s %s (dummy)\n", d.Name, joinPrefixes(d.Addresses))
		}
	}
}

func joinPrefixes(ps []PrefixValue) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// demoChange applies a demo step's sysctls (to Node's engine, or the
// lab's) and its server change, printing each.
func (l *Lab) demoChange(w io.Writer, d Demo) error {
	where := "the lab's engine"
	h := l.faultHost()
	if d.Node != "" {
		nr := l.node(d.Node)
		if nr == nil || nr.eng == nil {
			return fmt.Errorf("node %s is not running", d.Node)
		}
		where = "node " + d.Node
		h = &faulthost.Host{Eng: nr.eng, Sets: nr.n.Engine.Sets, Lock: &nr.cfgMu}
	}
	keys := make([]string, 0, len(d.Sysctl))
	for k := range d.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := sysctlValue(d.Sysctl[k])
		old, err := h.Sysctl(k, v)
		if err != nil {
			return fmt.Errorf("sysctl on %s: %v", where, err)
		}
		fmt.Fprintf(w, "  sysctl -w %s=%s on %s (was %s)\n", k, v, where, old)
	}
	if d.Server != nil {
		if err := l.replaceServer(d.Node, *d.Server); err != nil {
			return err
		}
		bind := "0.0.0.0"
		if d.Server.Bind.IsValid() {
			bind = d.Server.Bind.String()
		}
		fmt.Fprintf(w, "  node %s: %s server restarted on %s:%d\n", d.Node, d.Server.Kind, bind, d.Server.Port)
	}
	return nil
}

// replaceServer stops node's built-in server of s's protocol and port
// in its host namespace and starts s there instead.
func (l *Lab) replaceServer(node string, s Server) error {
	nr := l.node(node)
	if nr == nil {
		return fmt.Errorf("no node %s", node)
	}
	ns := nr.n.HostNetns
	for i, sv := range l.srv {
		if sv.ns != ns || sv.port != int(s.Port) || (sv.kind == string(UDPEcho)) != (s.Kind == UDPEcho) {
			continue
		}
		sv.Close()
		nsv, err := startServer(l.nss[ns], ns, s)
		if err != nil {
			l.srv = append(l.srv[:i], l.srv[i+1:]...)
			return fmt.Errorf("node %s: %w", node, err)
		}
		l.srv[i] = nsv
		return nil
	}
	return fmt.Errorf("node %s: no %s server on port %d to replace", node, s.Kind, s.Port)
}

// Demo runs the config's demo steps and prints what happened. It returns
// an error when a step that should succeed failed (a TCP step whose note
// mentions REJECT is expected to be refused) or an expect_fail step
// succeeded.
func (l *Lab) Demo(w io.Writer) error {
	var failed []string
	for _, d := range l.cfg.Demo {
		if d.IPTablesRestore != "" {
			r := l.Control(control.Request{Cmd: "iptables-restore", Input: d.IPTablesRestore, Node: d.Node})
			where := "the lab's engine"
			if d.Node != "" {
				where = "node " + d.Node
			}
			if r.Code != 0 {
				fmt.Fprintf(w, "  iptables-restore on %s: %s", where, strings.TrimSpace(r.Stderr))
				failed = append(failed, "iptables-restore on "+where)
			} else {
				fmt.Fprintf(w, "  iptables-restore on %s", where)
			}
			if d.From == "" {
				if d.Note != "" {
					fmt.Fprintf(w, "  (%s)", d.Note)
				}
				fmt.Fprintln(w)
				continue
			}
			fmt.Fprintln(w)
		}
		if len(d.Sysctl) > 0 || d.Server != nil {
			if err := l.demoChange(w, d); err != nil {
				fmt.Fprintf(w, "  %v\n", err)
				failed = append(failed, err.Error())
			}
			if d.From == "" {
				if d.Note != "" {
					fmt.Fprintf(w, "  (%s)\n", d.Note)
				}
				continue
			}
		}
		from := d.From
		if d.Src.IsValid() {
			from += " (bound to " + d.Src.String() + ")"
		}
		switch {
		case d.HTTP != "":
			n := max(d.Count, 1)
			seen := map[string]int{}
			for range n {
				r, err := l.HTTPGetFrom(d.From, d.Src.Addr, d.HTTP, d.timeout())
				if err != nil {
					if d.ExpectFail {
						fmt.Fprintf(w, "  GET %s from %s: failed, as expected (%v)\n", d.HTTP, from, err)
						continue
					}
					fmt.Fprintf(w, "  GET %s from %s: %v\n", d.HTTP, from, err)
					failed = append(failed, "GET "+d.HTTP)
					continue
				}
				if d.ExpectFail {
					failed = append(failed, "GET "+d.HTTP+" (it should have failed)")
				}
				seen[r.ServedBy]++
				fmt.Fprintf(w, "  GET %s from %s: %d, answered by %s (it saw the client as %s) in %v\n",
					d.HTTP, from, r.Status, r.ServedBy, r.ClientAddr, r.Took.Round(10*time.Microsecond))
			}
			var by []string
			for k, v := range seen {
				by = append(by, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(by)
			if len(by) == 0 {
				by = []string{"nobody"}
			}
			fmt.Fprintf(w, "    -> %s answered by: %s", d.HTTP, strings.Join(by, ", "))
		case d.Ping != "":
			rtt, err := l.Ping(d.From, netip.MustParseAddr(d.Ping), d.timeout())
			switch {
			case err != nil && d.ExpectFail:
				fmt.Fprintf(w, "  ping %s from %s: failed, as expected (%v)", d.Ping, d.From, err)
			case err != nil:
				fmt.Fprintf(w, "  ping %s from %s: %v", d.Ping, d.From, err)
				failed = append(failed, "ping "+d.Ping)
			default:
				fmt.Fprintf(w, "  ping %s from %s: echo reply in %v", d.Ping, d.From, rtt.Round(10*time.Microsecond))
				if d.ExpectFail {
					failed = append(failed, "ping "+d.Ping+" (it should have failed)")
				}
			}
		case d.UDP != "":
			b, err := l.UDPExchangeFrom(d.From, d.Src.Addr, d.UDP, []byte("hello from "+d.From), d.timeout())
			switch {
			case err != nil && d.ExpectFail:
				fmt.Fprintf(w, "  UDP echo %s from %s: failed, as expected (%v)", d.UDP, from, err)
			case err != nil:
				fmt.Fprintf(w, "  UDP echo %s from %s: %v", d.UDP, from, err)
				failed = append(failed, "udp "+d.UDP)
			default:
				fmt.Fprintf(w, "  UDP echo %s from %s: %q", d.UDP, from, b)
				if d.ExpectFail {
					failed = append(failed, "udp "+d.UDP+" (it should have failed)")
				}
			}
		case d.TCP != "":
			expectRefused := d.ExpectRefused
			hello, err := l.TCPHello(d.From, d.TCP, d.timeout())
			switch {
			case err != nil && d.ExpectFail:
				fmt.Fprintf(w, "  TCP %s from %s: failed, as expected (%v)", d.TCP, d.From, err)
			case err == nil && d.ExpectFail:
				fmt.Fprintf(w, "  TCP %s from %s: greeting %q, but it should have failed", d.TCP, d.From, hello)
				failed = append(failed, "tcp "+d.TCP)
			case errors.Is(err, syscall.ECONNREFUSED) && expectRefused:
				fmt.Fprintf(w, "  TCP %s from %s: refused as expected (%v)", d.TCP, d.From, err)
			case err != nil:
				fmt.Fprintf(w, "  TCP %s from %s: %v", d.TCP, d.From, err)
				failed = append(failed, "tcp "+d.TCP)
			case expectRefused:
				fmt.Fprintf(w, "  TCP %s from %s: connected (%q), but it should have been refused", d.TCP, d.From, hello)
				failed = append(failed, "tcp "+d.TCP)
			default:
				fmt.Fprintf(w, "  TCP %s from %s: greeting %q", d.TCP, d.From, hello)
			}
		}
		if d.Note != "" {
			fmt.Fprintf(w, "  (%s)", d.Note)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "uswitch datapath: %v\n", l.Stats())
	for _, nr := range l.nodes {
		fmt.Fprintf(w, "node %s datapath: %v\n", nr.n.Name, l.NodeStats(nr.n.Name))
	}
	if len(failed) > 0 {
		return fmt.Errorf("demo steps failed: %s", strings.Join(failed, "; "))
	}
	return nil
}
