package host

import (
	"strconv"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/ipfrag"
)

// ConntrackConfig is the conntrack configuration the snapshot's sysctls
// give (kernel defaults for what the file lacks).
func (s *Snapshot) ConntrackConfig() conntrack.Config {
	c := conntrack.DefaultConfig()
	k := s.Sysctl.Conntrack
	if k.Max > 0 {
		c.Max = k.Max
	}
	c.TCPLoose, c.TCPBeLiberal = k.TCPLoose, k.TCPBeLiberal
	if k.TCPMaxRetrans > 0 {
		c.TCPMaxRetrans = k.TCPMaxRetrans
	}
	set := func(dst *int64, v int64) {
		if v > 0 {
			*dst = v
		}
	}
	set((*int64)(&c.TCPTimeoutSynSent), int64(k.TCPSynSent))
	set((*int64)(&c.TCPTimeoutSynRecv), int64(k.TCPSynRecv))
	set((*int64)(&c.TCPTimeoutEstablished), int64(k.TCPEstablished))
	set((*int64)(&c.TCPTimeoutFinWait), int64(k.TCPFinWait))
	set((*int64)(&c.TCPTimeoutCloseWait), int64(k.TCPCloseWait))
	set((*int64)(&c.TCPTimeoutLastAck), int64(k.TCPLastAck))
	set((*int64)(&c.TCPTimeoutTimeWait), int64(k.TCPTimeWait))
	set((*int64)(&c.TCPTimeoutClose), int64(k.TCPClose))
	set((*int64)(&c.TCPTimeoutMaxRetrans), int64(k.TCPMaxRetransTime))
	set((*int64)(&c.TCPTimeoutUnack), int64(k.TCPUnacknowledged))
	set((*int64)(&c.UDPTimeout), int64(k.UDP))
	set((*int64)(&c.UDPTimeoutStream), int64(k.UDPStream))
	set((*int64)(&c.ICMPTimeout), int64(k.ICMP))
	set((*int64)(&c.GenericTimeout), int64(k.Generic))
	return c
}

// EngineConfig is the datapath configuration of the snapshot.
func (s *Snapshot) EngineConfig() datapath.Config {
	ic := s.Sysctl.ICMPConfig()
	fc := s.Sysctl.FragConfig()
	return datapath.Config{Rules: s.Ruleset, FIB: s.FIB, IPForward: s.Sysctl.IPForward, ICMP: &ic, Frag: &fc, Bridges: s.Bridges, Ebtables: s.Ebtables}
}

// FragConfig is net.ipv4.ipfrag_* (the kernel's defaults for what the
// file lacks or cannot be read). ipfrag_time shows in seconds
// (proc_dointvec_jiffies).
func (s *Sysctl) FragConfig() ipfrag.Config {
	c := ipfrag.DefaultConfig
	get := func(k string) (int64, bool) {
		n, err := strconv.ParseInt(s.Raw[k], 10, 64)
		return n, err == nil
	}
	if n, ok := get("net.ipv4.ipfrag_high_thresh"); ok {
		c.HighThresh = n
	}
	if n, ok := get("net.ipv4.ipfrag_low_thresh"); ok {
		c.LowThresh = n
	}
	if n, ok := get("net.ipv4.ipfrag_time"); ok {
		c.Timeout = n * 1e9
	}
	if n, ok := get("net.ipv4.ipfrag_max_dist"); ok {
		c.MaxDist = int(n)
	}
	return c
}

// ICMPConfig is the ICMP rate limit and redirect configuration of the
// sysctls (kernel defaults for what the file lacks or cannot be read).
func (s *Sysctl) ICMPConfig() datapath.ICMPConfig {
	c := datapath.DefaultICMPConfig()
	get := func(k string, dst *int64, conv func(int64) int64) {
		v, ok := s.Raw[k]
		if !ok {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return
		}
		if conv != nil {
			n = conv(n)
		}
		*dst = n
	}
	// icmp_ratelimit is shown in milliseconds (proc_dointvec_ms_jiffies)
	get("net.ipv4.icmp_ratelimit", &c.Ratelimit, datapath.MsecsToJiffies)
	var mask int64 = int64(c.Ratemask)
	get("net.ipv4.icmp_ratemask", &mask, nil)
	c.Ratemask = uint32(mask)
	get("net.ipv4.icmp_msgs_per_sec", &c.MsgsPerSec, nil)
	get("net.ipv4.icmp_msgs_burst", &c.MsgsBurst, nil)
	// the route knobs are plain jiffies (proc_dointvec)
	get("net.ipv4.route.error_cost", &c.ErrorCost, nil)
	get("net.ipv4.route.error_burst", &c.ErrorBurst, nil)
	get("net.ipv4.route.redirect_number", &c.RedirectNumber, nil)
	get("net.ipv4.route.redirect_load", &c.RedirectLoad, nil)
	get("net.ipv4.route.redirect_silence", &c.RedirectSilence, nil)
	return c
}
