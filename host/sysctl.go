package host

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/route"
)

// Conntrack holds the net.netfilter.nf_conntrack_* settings the datapath
// uses. Defaults are the kernel's (net/netfilter/nf_conntrack_proto_*.c).
type Conntrack struct {
	Max           int  // nf_conntrack_max (the kernel sizes it from RAM)
	TCPLoose      bool // nf_conntrack_tcp_loose: pick up established flows
	TCPBeLiberal  bool // nf_conntrack_tcp_be_liberal
	TCPMaxRetrans int  // nf_conntrack_tcp_max_retrans

	TCPSynSent        time.Duration
	TCPSynRecv        time.Duration
	TCPEstablished    time.Duration
	TCPFinWait        time.Duration
	TCPCloseWait      time.Duration
	TCPLastAck        time.Duration
	TCPTimeWait       time.Duration
	TCPClose          time.Duration
	TCPMaxRetransTime time.Duration // nf_conntrack_tcp_timeout_max_retrans
	TCPUnacknowledged time.Duration
	UDP               time.Duration
	UDPStream         time.Duration
	ICMP              time.Duration
	Generic           time.Duration
}

// Sysctl is the typed subset of `sysctl -a` routing and conntrack read.
type Sysctl struct {
	IPForward bool // net.ipv4.ip_forward
	// Conf is net.ipv4.conf.NAME for "all", "default" and every device.
	Conf                map[string]route.DevConf
	MultipathHashPolicy int    // net.ipv4.fib_multipath_hash_policy
	MultipathHashSeed   uint32 // net.ipv4.fib_multipath_hash_seed (0: the boot's random seed)
	MultipathHashFields uint32 // net.ipv4.fib_multipath_hash_fields (policy 3)
	MultipathUseNeigh   bool   // net.ipv4.fib_multipath_use_neigh
	Conntrack           Conntrack
	// IPVS is net.ipv4.vs.* (only present where the ip_vs module is
	// loaded; a snapshot or lab may give them for uswitch's IPVS).
	IPVS lvs.Sysctls
	// Raw holds every line of the file by key.
	Raw map[string]string
}

// DefaultSysctl is a fresh namespace's values.
func DefaultSysctl() Sysctl {
	return Sysctl{
		Conf:                map[string]route.DevConf{"all": route.DefaultDevConf(), "default": route.DefaultDevConf()},
		MultipathHashFields: 7,
		IPVS:                lvs.DefaultSysctls,
		Conntrack: Conntrack{
			Max:               262144,
			TCPLoose:          true,
			TCPMaxRetrans:     3,
			TCPSynSent:        120 * time.Second,
			TCPSynRecv:        60 * time.Second,
			TCPEstablished:    432000 * time.Second,
			TCPFinWait:        120 * time.Second,
			TCPCloseWait:      60 * time.Second,
			TCPLastAck:        30 * time.Second,
			TCPTimeWait:       120 * time.Second,
			TCPClose:          10 * time.Second,
			TCPMaxRetransTime: 300 * time.Second,
			TCPUnacknowledged: 300 * time.Second,
			UDP:               30 * time.Second,
			UDPStream:         120 * time.Second,
			ICMP:              30 * time.Second,
			Generic:           600 * time.Second,
		},
		Raw: map[string]string{},
	}
}

// DevConf returns the conf of a device, or "default" for one not listed
// (a new device copies net.ipv4.conf.default).
func (s *Sysctl) DevConf(dev string) route.DevConf {
	if c, ok := s.Conf[dev]; ok {
		return c
	}
	if c, ok := s.Conf["default"]; ok {
		return c
	}
	return route.DefaultDevConf()
}

// parseSysctl reads `sysctl -a` output: "key = value" lines. Device
// names with dots appear with '/' in keys (net.ipv4.conf.eth0/100.x).
func parseSysctl(file string, data []byte) (Sysctl, error) {
	s := DefaultSysctl()
	fail := func(n int, err error) error { return &ParseError{File: file, Line: n, Offset: -1, Err: err} }
	for n, ln := range strings.Split(string(data), "\n") {
		ln = strings.TrimSpace(ln)
		if ln == "" || ln[0] == '#' || ln[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(ln, "=")
		if !ok {
			return s, fail(n+1, fmt.Errorf("want KEY = VALUE, found %q", ln))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return s, fail(n+1, errors.New("empty key"))
		}
		s.Raw[k] = v
		if err := s.set(k, v); err != nil {
			return s, fail(n+1, fmt.Errorf("%s: %v", k, err))
		}
	}
	return s, nil
}

func atoi(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("want an integer, found %q", v)
	}
	return n, nil
}

func (s *Sysctl) set(k, v string) error {
	if rest, ok := strings.CutPrefix(k, "net.ipv4.conf."); ok {
		i := strings.LastIndexByte(rest, '.')
		if i <= 0 {
			return nil
		}
		dev, knob := strings.ReplaceAll(rest[:i], "/", "."), rest[i+1:]
		c, ok := s.Conf[dev]
		if !ok {
			c = route.DefaultDevConf()
		}
		var n int
		switch knob {
		case "forwarding", "rp_filter", "route_localnet", "accept_local", "src_valid_mark", "send_redirects", "accept_source_route":
			var err error
			if n, err = atoi(v); err != nil {
				return err
			}
		default:
			return nil
		}
		switch knob {
		case "forwarding":
			c.Forwarding = n != 0
		case "rp_filter":
			c.RPFilter = n
		case "route_localnet":
			c.RouteLocalnet = n != 0
		case "accept_local":
			c.AcceptLocal = n != 0
		case "src_valid_mark":
			c.SrcValidMark = n != 0
		case "send_redirects":
			c.SendRedirects = n != 0
		case "accept_source_route":
			c.AcceptSourceRoute = n != 0
		}
		s.Conf[dev] = c
		return nil
	}
	ct := &s.Conntrack
	secs := map[string]*time.Duration{
		"tcp_timeout_syn_sent": &ct.TCPSynSent, "tcp_timeout_syn_recv": &ct.TCPSynRecv,
		"tcp_timeout_established": &ct.TCPEstablished, "tcp_timeout_fin_wait": &ct.TCPFinWait,
		"tcp_timeout_close_wait": &ct.TCPCloseWait, "tcp_timeout_last_ack": &ct.TCPLastAck,
		"tcp_timeout_time_wait": &ct.TCPTimeWait, "tcp_timeout_close": &ct.TCPClose,
		"tcp_timeout_max_retrans": &ct.TCPMaxRetransTime, "tcp_timeout_unacknowledged": &ct.TCPUnacknowledged,
		"udp_timeout": &ct.UDP, "udp_timeout_stream": &ct.UDPStream, "icmp_timeout": &ct.ICMP,
		"generic_timeout": &ct.Generic,
	}
	if knob, ok := strings.CutPrefix(k, "net.ipv4.vs."); ok {
		vs := &s.IPVS
		flags := map[string]*bool{"conntrack": &vs.Conntrack, "expire_nodest_conn": &vs.ExpireNodestConn,
			"expire_quiescent_template": &vs.ExpireQuiescentTemplate, "snat_reroute": &vs.SnatReroute,
			"nat_icmp_send": &vs.NatICMPSend, "sloppy_sctp": &vs.SloppySCTP}
		if f := flags[knob]; f != nil {
			n, err := atoi(v)
			*f = n != 0
			return err
		}
		if knob == "conn_reuse_mode" {
			n, err := atoi(v)
			vs.ConnReuseMode = n
			return err
		}
		return nil
	}
	switch k {
	case "net.ipv4.ip_forward":
		n, err := atoi(v)
		s.IPForward = n != 0
		return err
	case "net.ipv4.fib_multipath_hash_policy":
		n, err := atoi(v)
		s.MultipathHashPolicy = n
		return err
	case "net.ipv4.fib_multipath_hash_seed", "net.ipv4.fib_multipath_hash_fields":
		// sysctl -a prints both in decimal; a lab file may give the
		// fields in hex as sysctl -w takes them
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("want an unsigned 32-bit integer, found %q", v)
		}
		if strings.HasSuffix(k, "seed") {
			s.MultipathHashSeed = uint32(n)
		} else {
			s.MultipathHashFields = uint32(n)
		}
		return nil
	case "net.ipv4.fib_multipath_use_neigh":
		n, err := atoi(v)
		s.MultipathUseNeigh = n != 0
		return err
	case "net.netfilter.nf_conntrack_max", "net.nf_conntrack_max":
		n, err := atoi(v)
		ct.Max = n
		return err
	case "net.netfilter.nf_conntrack_tcp_loose":
		n, err := atoi(v)
		ct.TCPLoose = n != 0
		return err
	case "net.netfilter.nf_conntrack_tcp_be_liberal":
		n, err := atoi(v)
		ct.TCPBeLiberal = n != 0
		return err
	case "net.netfilter.nf_conntrack_tcp_max_retrans":
		n, err := atoi(v)
		ct.TCPMaxRetrans = n
		return err
	}
	if name, ok := strings.CutPrefix(k, "net.netfilter.nf_conntrack_"); ok {
		if d := secs[name]; d != nil {
			n, err := atoi(v)
			*d = time.Duration(n) * time.Second
			return err
		}
	}
	return nil
}
