// Package faulthost is package fault's Host over a running engine: the
// state faults' rule swaps, iptables and ebtables command lines,
// sysctls and bridges act on a datapath.Engine as uswitch's control
// socket does; the datapath's kill and stall are the runner's (a lab,
// uswitch nfqueue), given as functions.
package faulthost

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/iptables/cli"
	"github.com/uswitch-lab/uswitch/route"
)

// Host is a fault.Host on an engine.
type Host struct {
	Eng *datapath.Engine
	// Sets resolve -m set in swapped rules (nil: none).
	Sets iptables.Sets
	// KillFn and StallFn stop the datapath (nil: the runner has no
	// datapath to stop: offline).
	KillFn, StallFn func(d int64) error
	// Lock, when set, is shared with whatever else changes the
	// engine's configuration (control.Engine.Lock: the control
	// socket's iptables-restore and iptables commands), so a fault's
	// swap and a live restore never lose one another's change; nil: a
	// lock of the Host's own.
	Lock *sync.Mutex
	mu   sync.Mutex
}

func (h *Host) lock() *sync.Mutex {
	if h.Lock != nil {
		return h.Lock
	}
	return &h.mu
}

// Restore loads text over the running rules and swaps them in.
func (h *Host) Restore(text string, bridge bool) error {
	h.lock().Lock()
	defer h.lock().Unlock()
	cur := h.Eng.Config()
	if bridge {
		rs, err := (&ebtables.Loader{Base: cur.Ebtables}).Load(text)
		if err != nil {
			return errors.New(strings.TrimSpace(err.Stderr))
		}
		cur.Ebtables = rs
	} else {
		ld := &iptables.Loader{Base: cur.Rules}
		if h.Sets != nil {
			ld.Sets = h.Sets
		}
		rs, err := ld.LoadString(text)
		if err != nil {
			var re *iptables.RestoreError
			if errors.As(err, &re) {
				return errors.New(strings.TrimSpace(re.Stderr()))
			}
			return err
		}
		cur.Rules = rs
	}
	h.Eng.Swap(cur)
	return nil
}

// Save is the running rules in restore form.
func (h *Host) Save(bridge bool) (string, error) {
	cur := h.Eng.Config()
	var b strings.Builder
	if bridge {
		if cur.Ebtables != nil {
			cur.Ebtables.Save(&b, ebtables.SaveOptions{})
		}
		return b.String(), nil
	}
	if cur.Rules != nil {
		cur.Rules.Save(&b, iptables.SaveOptions{})
	}
	return b.String(), nil
}

// Command runs one iptables or ebtables command line on the engine.
func (h *Host) Command(args []string, bridge bool) error {
	h.lock().Lock()
	defer h.lock().Unlock()
	if bridge {
		cur := h.Eng.Config()
		rs, err := (&ebtables.Loader{Base: cur.Ebtables}).Command(args)
		if err != nil {
			return errors.New(strings.TrimSpace(err.Stderr))
		}
		cur.Ebtables = rs
		h.Eng.Swap(cur)
		return nil
	}
	var out, errb strings.Builder
	if code := cli.Run(args, engineRules{h.Eng}, &cli.FileNames{}, &out, &errb); code != 0 {
		return fmt.Errorf("exit %d: %s", code, strings.TrimSpace(errb.String()))
	}
	return nil
}

type engineRules struct{ e *datapath.Engine }

func (r engineRules) Load() (*iptables.Ruleset, error) { return r.e.Config().Rules, nil }

func (r engineRules) Store(next *iptables.Ruleset) error {
	cur := r.e.Config()
	cur.Rules = next
	r.e.Swap(cur)
	return nil
}

// Sysctl sets one of the sysctls the engine follows:
// net.ipv4.ip_forward, net.bridge.bridge-nf-call-iptables,
// net.netfilter.nf_conntrack_tcp_be_liberal, nf_conntrack_tcp_loose
// and nf_conntrack_max.
func (h *Host) Sysctl(name, value string) (string, error) {
	h.lock().Lock()
	defer h.lock().Unlock()
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil || v < 0 {
		return "", fmt.Errorf("sysctl %s: %q is not a number", name, value)
	}
	b := func(x bool) string {
		if x {
			return "1"
		}
		return "0"
	}
	ct := h.Eng.CT
	if rest, ok := strings.CutPrefix(name, "net.ipv4.conf."); ok {
		return h.devConf(name, rest, v)
	}
	switch name {
	case "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding":
		// devinet_sysctl_forward -> inet_forward_change: every
		// device's forwarding follows
		cur := h.Eng.Config()
		old := b(cur.IPForward)
		cur.IPForward = v != 0
		if cur.FIB != nil {
			rc := cur.FIB.Config()
			rc.All.Forwarding = v != 0
			dev := make(map[string]route.DevConf, len(rc.Links))
			for _, l := range rc.Links {
				c, ok := rc.Dev[l.Name]
				if !ok {
					c = route.DefaultDevConf()
				}
				c.Forwarding = v != 0
				dev[l.Name] = c
			}
			rc.Dev = dev
			fib, err := route.New(rc)
			if err != nil {
				return "", fmt.Errorf("sysctl %s: %v", name, err)
			}
			cur.FIB = fib
		}
		h.Eng.Swap(cur)
		return old, nil
	case "net.bridge.bridge-nf-call-iptables":
		cur := h.Eng.Config()
		if len(cur.Bridges) == 0 {
			return "", fmt.Errorf("sysctl %s: no bridge", name)
		}
		old := b(cur.Bridges[0].CallIPTables)
		br := append([]datapath.BridgeConfig(nil), cur.Bridges...)
		for i := range br {
			br[i].CallIPTables = v != 0
		}
		cur.Bridges = br
		h.Eng.Swap(cur)
		return old, nil
	case "net.netfilter.nf_conntrack_tcp_be_liberal":
		old := b(ct.TCPBeLiberal())
		ct.SetTCPBeLiberal(v != 0)
		return old, nil
	case "net.netfilter.nf_conntrack_tcp_loose":
		old := b(ct.TCPLoose())
		ct.SetTCPLoose(v != 0)
		return old, nil
	case "net.netfilter.nf_conntrack_max":
		old := strconv.Itoa(ct.Max())
		ct.SetMax(int(v))
		return old, nil
	}
	return "", fmt.Errorf("sysctl %s: not one uswitch follows (ip_forward, net.ipv4.conf.{all,DEV}.{route_localnet,rp_filter,accept_local,src_valid_mark,send_redirects,forwarding}, bridge-nf-call-iptables, nf_conntrack_tcp_be_liberal, nf_conntrack_tcp_loose, nf_conntrack_max)", name)
}

// devConf sets net.ipv4.conf.DEV.KNOB (rest is "DEV.KNOB"; DEV "all"
// or a device of the engine's routing; "default" only changes devices
// made later, and an engine's devices are all made): the routing
// state is rebuilt with it and swapped in. "all" is the devinet "all"
// entry the kernel ORs or maxes with the device's (route_localnet,
// accept_local: IN_DEV_ORCONF; rp_filter: IN_DEV_MAXCONF); forwarding
// on "all" sets every device's, as ip_forward does.
func (h *Host) devConf(name, rest string, v int64) (string, error) {
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", fmt.Errorf("sysctl %s: want net.ipv4.conf.DEV.KNOB", name)
	}
	dev, knob := rest[:i], rest[i+1:]
	cur := h.Eng.Config()
	if cur.FIB == nil {
		return "", fmt.Errorf("sysctl %s: the engine has no routing state", name)
	}
	rc := cur.FIB.Config()
	var c route.DevConf
	switch {
	case dev == "all":
		c = rc.All
	case dev == "default":
		return "", fmt.Errorf("sysctl %s: conf.default changes only devices made later; name all or a device", name)
	default:
		found := false
		for _, l := range rc.Links {
			found = found || l.Name == dev
		}
		if !found {
			return "", fmt.Errorf("sysctl %s: no device %q", name, dev)
		}
		var ok bool
		if c, ok = rc.Dev[dev]; !ok {
			c = route.DefaultDevConf()
		}
	}
	b := func(x bool) string {
		if x {
			return "1"
		}
		return "0"
	}
	var old string
	on := v != 0
	switch knob {
	case "route_localnet":
		old, c.RouteLocalnet = b(c.RouteLocalnet), on
	case "accept_local":
		old, c.AcceptLocal = b(c.AcceptLocal), on
	case "src_valid_mark":
		old, c.SrcValidMark = b(c.SrcValidMark), on
	case "send_redirects":
		old, c.SendRedirects = b(c.SendRedirects), on
	case "forwarding":
		old, c.Forwarding = b(c.Forwarding), on
	case "rp_filter":
		if v > 2 {
			return "", fmt.Errorf("sysctl %s: %d: want 0, 1 or 2", name, v)
		}
		old, c.RPFilter = strconv.Itoa(c.RPFilter), int(v)
	default:
		return "", fmt.Errorf("sysctl %s: not a knob uswitch follows (route_localnet, rp_filter, accept_local, src_valid_mark, send_redirects, forwarding)", name)
	}
	dm := make(map[string]route.DevConf, len(rc.Dev)+1)
	for k, x := range rc.Dev {
		dm[k] = x
	}
	if dev == "all" {
		rc.All = c
		if knob == "forwarding" {
			// devinet_sysctl_forward on "all": inet_forward_change
			for _, l := range rc.Links {
				x, ok := dm[l.Name]
				if !ok {
					x = route.DefaultDevConf()
				}
				x.Forwarding = on
				dm[l.Name] = x
			}
			cur.IPForward = on
		}
	} else {
		dm[dev] = c
	}
	rc.Dev = dm
	fib, err := route.New(rc)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %v", name, err)
	}
	cur.FIB = fib
	h.Eng.Swap(cur)
	return old, nil
}

// Bridge is the forwarding database of bridge name.
func (h *Host) Bridge(name string) (*fdb.Bridge, error) {
	if b := h.Eng.Bridge(name); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("no bridge %s", name)
}

// Kill stops the datapath for d ns (0: for good).
func (h *Host) Kill(d int64) error {
	if h.KillFn == nil {
		return errors.New("no datapath to kill here (offline)")
	}
	return h.KillFn(d)
}

// Stall stops the datapath reading for d ns.
func (h *Host) Stall(d int64) error {
	if h.StallFn == nil {
		return errors.New("no datapath to stall here (offline)")
	}
	return h.StallFn(d)
}
