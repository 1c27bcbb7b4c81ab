package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/uswitch-lab/uswitch/route"
)

// upTopology is the first half of the topology (topology.go), run once
// the namespaces exist and before the TUNs: each namespace's lo up with
// its extra addresses, its sysctls other than per-device ones (so
// conf.default applies to the devices made next), then the [[link]]
// veth pairs, addressed and up.
func upTopology(cfg *Config, nss map[string]netns.NsHandle) error {
	for _, n := range cfg.Namespaces {
		if err := withHandle(nss[n.Name], func(h *netlink.Handle) error {
			lo, err := h.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := h.LinkSetUp(lo); err != nil {
				return fmt.Errorf("lo up: %w", err)
			}
			return addAddrs(h, lo, n.Loopback)
		}); err != nil {
			return fmt.Errorf("namespace %s: %w", n.Name, err)
		}
		if err := writeSysctls(nss[n.Name], n.Sysctls, false); err != nil {
			return fmt.Errorf("namespace %s: %w", n.Name, err)
		}
	}
	for _, l := range cfg.Links {
		if err := upLink(nss, l); err != nil {
			return fmt.Errorf("link %s/%s - %s/%s: %w", l.ANetns, l.AName, l.BNetns, l.BName, err)
		}
	}
	return nil
}

// upRouting is the second half, run once every device is there and up:
// each namespace's routes, ip rules and per-device sysctls.
func upRouting(cfg *Config, nss map[string]netns.NsHandle) error {
	for _, n := range cfg.Namespaces {
		tun := ""
		if _, it := cfg.attachment(n.Name); it != nil {
			tun = it.Name
		}
		err := withHandle(nss[n.Name], func(h *netlink.Handle) error {
			for _, r := range n.Routes {
				if err := addRoute(h, tun, r); err != nil {
					return fmt.Errorf("route %q: %w", r.Text, err)
				}
			}
			for _, r := range n.IPRules {
				if err := h.RuleAdd(nlRule(r)); err != nil {
					return fmt.Errorf("ip rule %q: %w", r.Text, err)
				}
			}
			return nil
		})
		if err == nil {
			err = writeSysctls(nss[n.Name], n.Sysctls, true)
		}
		if err != nil {
			return fmt.Errorf("namespace %s: %w", n.Name, err)
		}
	}
	return nil
}

// withHandle runs fn with a netlink handle bound to the namespace.
func withHandle(ns netns.NsHandle, fn func(h *netlink.Handle) error) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

func addAddrs(h *netlink.Handle, l netlink.Link, addrs []PrefixValue) error {
	for _, a := range addrs {
		ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("%s address %v: %w", l.Attrs().Name, a.Prefix, err)
		}
	}
	return nil
}

// upLink makes the veth pair of a [[link]]: created by a handle bound to
// the a side's namespace, with its peer put straight into the b side's
// (IFLA_NET_NS_FD), so neither end ever exists outside the lab; then
// each end is addressed and set up in its namespace.
func upLink(nss map[string]netns.NsHandle, l Link) error {
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = l.AName, l.MTU
	v := &netlink.Veth{LinkAttrs: la, PeerName: l.BName, PeerTxQLen: -1, PeerNamespace: netlink.NsFd(int(nss[l.BNetns]))}
	if err := withHandle(nss[l.ANetns], func(h *netlink.Handle) error { return h.LinkAdd(v) }); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	for _, e := range []struct {
		netns, name string
		addrs       []PrefixValue
	}{{l.ANetns, l.AName, l.AAddresses}, {l.BNetns, l.BName, l.BAddresses}} {
		if err := withHandle(nss[e.netns], func(h *netlink.Handle) error {
			d, err := h.LinkByName(e.name)
			if err != nil {
				return err
			}
			if err := addAddrs(h, d, e.addrs); err != nil {
				return err
			}
			if err := h.LinkSetUp(d); err != nil {
				return fmt.Errorf("%s up: %w", e.name, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// addRoute adds a namespace's route: out of r.Dev, else the namespace's
// TUN, else (no TUN) wherever the kernel finds the gateway.
func addRoute(h *netlink.Handle, tun string, r NSRoute) error {
	rt := &netlink.Route{Dst: &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)}}
	dev := r.Dev
	if dev == "" {
		dev = tun
	}
	if dev != "" {
		l, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		rt.LinkIndex = l.Attrs().Index
	}
	if r.Gateway.IsValid() {
		rt.Gw = r.Gateway.AsSlice()
	} else {
		rt.Scope = netlink.SCOPE_LINK
	}
	if r.Table != 0 {
		rt.Table = int(r.Table)
	}
	return h.RouteAdd(rt)
}

// nlRule is a namespace's rule for netlink (fib_nl_newrule).
func nlRule(r NSRule) *netlink.Rule {
	nr := netlink.NewRule()
	ru := r.Rule
	if r.HasPriority {
		nr.Priority = int(ru.Priority)
	}
	nr.Invert = ru.Not
	if ru.Src.IsValid() {
		nr.Src = &net.IPNet{IP: ru.Src.Addr().AsSlice(), Mask: net.CIDRMask(ru.Src.Bits(), 32)}
	}
	if ru.Dst.IsValid() {
		nr.Dst = &net.IPNet{IP: ru.Dst.Addr().AsSlice(), Mask: net.CIDRMask(ru.Dst.Bits(), 32)}
	}
	nr.IifName, nr.OifName = ru.IIF, ru.OIF
	if ru.Mask != 0 {
		m := ru.Mask
		nr.Mark, nr.Mask = ru.Mark, &m
	}
	nr.Tos = uint(ru.TOS)
	nr.IPProto = int(ru.IPProto)
	if ru.SPort.IsSet() {
		nr.Sport = netlink.NewRulePortRange(ru.SPort.Start, ru.SPort.End)
	}
	if ru.DPort.IsSet() {
		nr.Dport = netlink.NewRulePortRange(ru.DPort.Start, ru.DPort.End)
	}
	// the action is the rule message's type (FR_ACT_*,
	// include/uapi/linux/fib_rules.h), route.Action's values
	nr.Type = uint8(ru.Action)
	switch ru.Action {
	case route.ActToTable:
		nr.Table = int(ru.Table)
	case route.ActGoto:
		nr.Goto = int(ru.Goto)
	}
	return nr
}

// writeSysctls writes the namespace's sysctls, the per-device ones
// (perDevice) or the others, into its /proc/sys. A thread inside the
// namespace opens each file: /proc/sys/net shows the net namespace of
// the task that opens it.
func writeSysctls(ns netns.NsHandle, sc []NSSysctl, perDevice bool) error {
	var todo []NSSysctl
	for _, s := range sc {
		if s.perDevice() == perDevice {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return inNetns(ns, func() error {
		for _, s := range todo {
			// sysctl(8)'s names: "." separates, "/" stands for a
			// dot inside a component (a device called vxlan.calico
			// is net.ipv4.conf.vxlan/calico)
			p := filepath.Join("/proc/sys", strings.Map(func(r rune) rune {
				switch r {
				case '.':
					return '/'
				case '/':
					return '.'
				}
				return r
			}, s.Key))
			if err := os.WriteFile(p, []byte(s.Value+"\n"), 0); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("sysctl %s: no such key in the namespace", s.Key)
				}
				return fmt.Errorf("sysctl %s = %s: %w", s.Key, s.Value, err)
			}
		}
		return nil
	})
}
