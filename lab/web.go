package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/web"
)

// Topology is the lab's layout as the live page shows it.
func (l *Lab) Topology() web.Topology {
	c := l.cfg
	t := web.Topology{Name: c.Name}
	addrs := func(ps []PrefixValue) []string {
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		return s
	}
	ports := map[string][]string{}
	for _, i := range c.Interfaces {
		kind := string(i.Kind)
		if kind == "" {
			kind = "tun"
		}
		t.Interfaces = append(t.Interfaces, web.Interface{Name: i.Name, Netns: i.Netns, Kind: kind, Bridge: i.Bridge, Addresses: addrs(i.Addresses)})
		if i.Bridge != "" {
			ports[i.Bridge] = append(ports[i.Bridge], i.Name)
		}
	}
	for _, b := range c.Bridges {
		t.Bridges = append(t.Bridges, web.Bridge{Name: b.Name, Addresses: addrs(b.Addresses), Ports: ports[b.Name]})
	}
	for _, n := range c.Namespaces {
		ns := web.Namespace{Name: n.Name, Addresses: addrs(n.Addresses)}
		for _, a := range n.Loopback {
			ns.Addresses = append(ns.Addresses, a.String()+" (lo)")
		}
		for _, r := range n.Routes {
			ns.Routes = append(ns.Routes, routeText(r))
		}
		for _, s := range n.Servers {
			ns.Servers = append(ns.Servers, fmt.Sprintf("%s :%d", s.Kind, s.Port))
		}
		t.Namespaces = append(t.Namespaces, ns)
	}
	return t
}

func routeText(r NSRoute) string {
	if r.Text != "" {
		return r.Text
	}
	s := r.Dst.String()
	if r.Dst == (netip.Prefix{}) || r.Dst.Bits() == 0 {
		s = "default"
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// WebSource is what the live page reads of the lab.
func (l *Lab) WebSource() web.Source {
	src := web.Source{Topology: l.Topology(), Engine: l.eng, Conntrack: func() string {
		r := l.Control(control.Request{Cmd: "conntrack", Args: []string{"-L"}})
		return strings.TrimRight(r.Stdout, "\n")
	}}
	if l.dp != nil {
		src.Paths = func(n int) (<-chan []datapath.PathEvent, func()) { return l.dp.SubscribePaths(n) }
	}
	return src
}

// ListenWeb serves the live page on addr (a loopback address unless
// any) until the lab is closed, and returns the address it listens on.
func (l *Lab) ListenWeb(addr string, any bool) (string, error) {
	ln, err := web.Listen(addr, any)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.webStop = append(l.webStop, cancel)
	s := web.New(l.WebSource())
	go s.Serve(ctx, ln)
	return ln.Addr().String(), nil
}
