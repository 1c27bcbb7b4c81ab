package host

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
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
	return datapath.Config{Rules: s.Ruleset, FIB: s.FIB, IPForward: s.Sysctl.IPForward}
}
