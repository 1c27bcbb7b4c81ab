package conntrack

import "time"

// Config holds the net.netfilter.nf_conntrack_* sysctls. Start from
// DefaultConfig: its values are the kernel's.
type Config struct {
	// Max is nf_conntrack_max; 0 means no limit. Buckets is
	// nf_conntrack_buckets, rounded up to a power of two here.
	Max     int
	Buckets int

	// Checksum is nf_conntrack_checksum: verify transport checksums of
	// packets at PREROUTING and treat bad ones as invalid.
	Checksum bool

	// TCP (nf_conntrack_proto_tcp.c).
	TCPLoose              bool // nf_conntrack_tcp_loose: pick up mid-stream flows
	TCPBeLiberal          bool // nf_conntrack_tcp_be_liberal: only out-of-window RSTs are invalid
	TCPIgnoreInvalidRST   bool // nf_conntrack_tcp_ignore_invalid_rst
	TCPMaxRetrans         int  // nf_conntrack_tcp_max_retrans
	TCPTimeoutSynSent     time.Duration
	TCPTimeoutSynRecv     time.Duration
	TCPTimeoutEstablished time.Duration
	TCPTimeoutFinWait     time.Duration
	TCPTimeoutCloseWait   time.Duration
	TCPTimeoutLastAck     time.Duration
	TCPTimeoutTimeWait    time.Duration
	TCPTimeoutClose       time.Duration
	TCPTimeoutSynSent2    time.Duration // no sysctl; tcp_timeouts[TCP_CONNTRACK_SYN_SENT2]
	TCPTimeoutMaxRetrans  time.Duration // nf_conntrack_tcp_timeout_max_retrans
	TCPTimeoutUnack       time.Duration // nf_conntrack_tcp_timeout_unacknowledged

	// UDP (nf_conntrack_proto_udp.c): unreplied, and replied for more
	// than two seconds.
	UDPTimeout       time.Duration
	UDPTimeoutStream time.Duration

	// ICMP (nf_conntrack_proto_icmp.c).
	ICMPTimeout time.Duration

	// GRE (nf_conntrack_proto_gre.c).
	GRETimeout       time.Duration
	GRETimeoutStream time.Duration

	// SCTP (nf_conntrack_proto_sctp.c): one timeout per state
	// (nf_conntrack_sctp_timeout_*); NONE takes CLOSED's.
	SCTPTimeoutClosed          time.Duration
	SCTPTimeoutCookieWait      time.Duration
	SCTPTimeoutCookieEchoed    time.Duration
	SCTPTimeoutEstablished     time.Duration
	SCTPTimeoutShutdownSent    time.Duration
	SCTPTimeoutShutdownRecd    time.Duration
	SCTPTimeoutShutdownAckSent time.Duration
	SCTPTimeoutHeartbeatSent   time.Duration

	// GenericTimeout is for protocols without a tracker
	// (nf_conntrack_proto_generic.c).
	GenericTimeout time.Duration
}

// DefaultConfig returns the kernel defaults. Max and Buckets are what a
// 64-bit machine with more than 4 GiB gets (nf_conntrack_init_start):
// 262144 each.
func DefaultConfig() Config {
	return Config{
		Max:                   262144,
		Buckets:               262144,
		Checksum:              true,
		TCPLoose:              true,
		TCPMaxRetrans:         3,
		TCPTimeoutSynSent:     2 * time.Minute,
		TCPTimeoutSynRecv:     60 * time.Second,
		TCPTimeoutEstablished: 5 * 24 * time.Hour,
		TCPTimeoutFinWait:     2 * time.Minute,
		TCPTimeoutCloseWait:   60 * time.Second,
		TCPTimeoutLastAck:     30 * time.Second,
		TCPTimeoutTimeWait:    2 * time.Minute,
		TCPTimeoutClose:       10 * time.Second,
		TCPTimeoutSynSent2:    2 * time.Minute,
		TCPTimeoutMaxRetrans:  5 * time.Minute,
		TCPTimeoutUnack:       5 * time.Minute,
		UDPTimeout:            30 * time.Second,
		UDPTimeoutStream:      120 * time.Second,
		ICMPTimeout:           30 * time.Second,
		GRETimeout:            30 * time.Second,
		GRETimeoutStream:      180 * time.Second,
		GenericTimeout:        600 * time.Second,

		SCTPTimeoutClosed:          10 * time.Second,
		SCTPTimeoutCookieWait:      3 * time.Second,
		SCTPTimeoutCookieEchoed:    3 * time.Second,
		SCTPTimeoutEstablished:     210 * time.Second,
		SCTPTimeoutShutdownSent:    3 * time.Second,
		SCTPTimeoutShutdownRecd:    3 * time.Second,
		SCTPTimeoutShutdownAckSent: 3 * time.Second,
		SCTPTimeoutHeartbeatSent:   30 * time.Second,
	}
}

// tcpTimeouts indexes the TCP timeouts like the kernel's array: by state,
// then tcpRetrans and tcpUnack.
func (c *Config) tcpTimeouts() [tcpTimeoutMax]int64 {
	var t [tcpTimeoutMax]int64
	t[TCPSynSent] = int64(c.TCPTimeoutSynSent)
	t[TCPSynRecv] = int64(c.TCPTimeoutSynRecv)
	t[TCPEstablished] = int64(c.TCPTimeoutEstablished)
	t[TCPFinWait] = int64(c.TCPTimeoutFinWait)
	t[TCPCloseWait] = int64(c.TCPTimeoutCloseWait)
	t[TCPLastAck] = int64(c.TCPTimeoutLastAck)
	t[TCPTimeWait] = int64(c.TCPTimeoutTimeWait)
	t[TCPClose] = int64(c.TCPTimeoutClose)
	t[TCPSynSent2] = int64(c.TCPTimeoutSynSent2)
	t[tcpRetrans] = int64(c.TCPTimeoutMaxRetrans)
	t[tcpUnack] = int64(c.TCPTimeoutUnack)
	return t
}
