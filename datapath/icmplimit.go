package datapath

import (
	"sync"
	"time"
)

// The rate limits of the host's ICMP messages and the redirect backoff,
// all kept in the kernel's per-peer inet_peer entries and one per-netns
// token bucket:
//
//   - icmp_send (net/ipv4/icmp.c): icmpv4_global_allow / icmp_global_allow
//     and icmp_global_consume (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst),
//     then icmpv4_xrlim_allow -> inet_peer_xrlim_allow
//     (net/ipv4/inetpeer.c; net.ipv4.icmp_ratelimit) for the types in
//     net.ipv4.icmp_ratemask;
//   - ip_error (net/ipv4/route.c): its own token bucket on the sender's
//     peer (net.ipv4.route.error_cost, error_burst);
//   - ip_rt_send_redirect (net/ipv4/route.c): the exponential backoff
//     (net.ipv4.route.redirect_number, redirect_load, redirect_silence).
//
// The three share the peer's rate_tokens and rate_last
// (include/net/inetpeer.h), so one limits the others. Time is the
// packet's time in jiffies of HZ.

// HZ is the kernel tick rate the limits count in (CONFIG_HZ of the
// reference kernel).
const HZ = 250

// ICMPConfig holds the sysctls of the ICMP limits; a nil
// Config.ICMP means DefaultICMPConfig.
type ICMPConfig struct {
	// Ratelimit is net.ipv4.icmp_ratelimit in jiffies (the sysctl is in
	// milliseconds; 0 turns the per-peer limit off).
	Ratelimit int64
	// Ratemask is net.ipv4.icmp_ratemask: bit n limits ICMP type n.
	Ratemask uint32
	// MsgsPerSec and MsgsBurst are net.ipv4.icmp_msgs_per_sec and
	// icmp_msgs_burst, the global token bucket.
	MsgsPerSec, MsgsBurst int64
	// ErrorCost and ErrorBurst are net.ipv4.route.error_cost and
	// error_burst (jiffies): ip_error's bucket.
	ErrorCost, ErrorBurst int64
	// RedirectNumber, RedirectLoad and RedirectSilence are
	// net.ipv4.route.redirect_number, redirect_load and
	// redirect_silence (the last two in jiffies).
	RedirectNumber                int64
	RedirectLoad, RedirectSilence int64
}

// DefaultICMPConfig is a fresh namespace's values (icmp_sk_init,
// net/ipv4/icmp.c; the ip_rt_* defaults and ip_rt_error_cost of
// net/ipv4/route.c).
func DefaultICMPConfig() ICMPConfig {
	return ICMPConfig{
		Ratelimit:       1 * HZ,
		Ratemask:        0x1818,
		MsgsPerSec:      1000,
		MsgsBurst:       50,
		ErrorCost:       HZ,
		ErrorBurst:      5 * HZ,
		RedirectNumber:  9,
		RedirectLoad:    HZ / 50,
		RedirectSilence: (HZ / 50) << (9 + 1),
	}
}

// MsecsToJiffies is msecs_to_jiffies for HZ 250 (rounding up), how
// proc_dointvec_ms_jiffies stores icmp_ratelimit.
func MsecsToJiffies(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	return (ms*HZ + 999) / 1000
}

func (c *compiled) icmpConf() *ICMPConfig {
	if c.ICMP != nil {
		return c.ICMP
	}
	return &defaultICMP
}

var defaultICMP = DefaultICMPConfig()

// jiffies is the packet time (monotonic nanoseconds) in ticks.
func jiffies(now int64) int64 { return now / int64(time.Second/HZ) }

// inetPeer is the part of struct inet_peer (include/net/inetpeer.h) the
// limits use.
type inetPeer struct {
	rateTokens int64
	rateLast   int64
	nRedirects int64
	created    int64 // dtime: jiffies at creation
}

// peerThreshold is inet_peer_threshold (net/ipv4/inetpeer.c): past it
// the kernel collects unused entries aggressively; uswitch then forgets
// peers older than inet_peer_minttl.
const (
	peerThreshold = 65536 + 128
	peerMinTTL    = 120 * HZ
)

// icmpLimits is the engine's limiter state: the netns' inet_peer base
// and icmp_global_credit/stamp.
type icmpLimits struct {
	mu       sync.Mutex
	peers    map[uint32]*inetPeer
	credit   int64
	stamp    int64
	stampSet bool
}

// peer is inet_getpeer_v4 (net/ipv4/inetpeer.c): a new entry starts
// with no tokens and rate_last 60 s back, so its first token count is at
// the maximum. Called with mu held.
func (l *icmpLimits) peer(addr uint32, j int64) *inetPeer {
	if l.peers == nil {
		l.peers = map[uint32]*inetPeer{}
	}
	p := l.peers[addr]
	if p == nil {
		if len(l.peers) >= peerThreshold {
			for a, q := range l.peers {
				if j-q.created >= peerMinTTL {
					delete(l.peers, a)
				}
			}
		}
		p = &inetPeer{rateLast: j - 60*HZ, created: j}
		l.peers[addr] = p
	}
	return p
}

// xrlimAllow is inet_peer_xrlim_allow (net/ipv4/inetpeer.c), with
// XRLIM_BURST_FACTOR 6 (include/net/inetpeer.h). Called with mu held.
func (p *inetPeer) xrlimAllow(timeout, j int64) bool {
	token := p.rateTokens + (j - p.rateLast)
	if token > 6*timeout {
		token = 6 * timeout
	}
	ok := false
	if token >= timeout {
		token -= timeout
		ok = true
	}
	p.rateTokens, p.rateLast = token, j
	return ok
}

// globalAllow is icmp_global_allow (net/ipv4/icmp.c, 6.12 and later):
// any credit left allows; otherwise the bucket refills by
// icmp_msgs_per_sec for the time since the last refill (at most a
// second, at least HZ/50). Called with mu held.
func (l *icmpLimits) globalAllow(c *ICMPConfig, j int64) bool {
	if l.credit > 0 {
		return true
	}
	delta := int64(HZ)
	if l.stampSet {
		delta = min(j-l.stamp, HZ)
	}
	if delta < HZ/50 {
		return false
	}
	incr := c.MsgsPerSec * delta / HZ
	if incr <= 0 {
		return false
	}
	l.stamp, l.stampSet = j, true
	l.credit = min(l.credit+incr, c.MsgsBurst)
	return true
}

// icmpMaskAllow is icmpv4_mask_allow: types outside icmp_ratemask (and
// fragmentation needed) are never limited.
func icmpMaskAllow(c *ICMPConfig, typ, code uint8) bool {
	if typ > 18 { // NR_ICMP_TYPES
		return true
	}
	if typ == 3 && code == 4 {
		return true
	}
	return c.Ratemask&(1<<typ) == 0
}

// icmpGlobalAllow is the first check of __icmp_send: the global bucket
// for limited types unless the packet came in on the loopback. apply
// reports whether the per-peer limit applies afterwards.
func (k *pkt) icmpGlobalAllow(typ, code uint8) (ok, apply bool) {
	c := k.cfg.icmpConf()
	if !k.p.Local && k.p.InIf == "lo" {
		return true, false
	}
	if icmpMaskAllow(c, typ, code) {
		return true, false
	}
	l := &k.e.icmp
	l.mu.Lock()
	ok = l.globalAllow(c, jiffies(k.env.now))
	l.mu.Unlock()
	return ok, ok
}

// icmpPeerAllow is icmpv4_xrlim_allow: the per-peer bucket of the
// error's destination unless its route is the loopback or the limit is
// off; an allowed message spends 0-2 global credits
// (icmp_global_consume).
func (k *pkt) icmpPeerAllow(dst uint32, loopback bool) bool {
	c := k.cfg.icmpConf()
	l := &k.e.icmp
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Ratelimit != 0 && !loopback {
		j := jiffies(k.env.now)
		if !l.peer(dst, j).xrlimAllow(c.Ratelimit, j) {
			return false
		}
	}
	// get_random_u32_below(3): a credit of one on average, drawn from
	// the worker's ICMP stream (worker.go)
	l.credit -= int64(k.icmpRand32() % 3)
	return true
}

// ipErrorAllow is ip_error's bucket on the sender's peer
// (net/ipv4/route.c).
func (k *pkt) ipErrorAllow(src uint32) bool {
	c := k.cfg.icmpConf()
	l := &k.e.icmp
	l.mu.Lock()
	defer l.mu.Unlock()
	j := jiffies(k.env.now)
	p := l.peer(src, j)
	p.rateTokens += j - p.rateLast
	if p.rateTokens > c.ErrorBurst {
		p.rateTokens = c.ErrorBurst
	}
	p.rateLast = j
	if p.rateTokens >= c.ErrorCost {
		p.rateTokens -= c.ErrorCost
		return true
	}
	return false
}

// redirectAllow is the backoff of ip_rt_send_redirect
// (net/ipv4/route.c) for the sender src: after redirect_silence without
// redirected packets the peer starts over; at most redirect_number
// redirects, the n-th no sooner than redirect_load << n after the
// previous one. It reports whether to send; redirectSent then counts
// the redirect (after icmp_send, as the kernel does).
func (k *pkt) redirectAllow(src uint32) bool {
	c := k.cfg.icmpConf()
	l := &k.e.icmp
	l.mu.Lock()
	defer l.mu.Unlock()
	j := jiffies(k.env.now)
	p := l.peer(src, j)
	if j > p.rateLast+c.RedirectSilence { // time_after
		p.rateTokens, p.nRedirects = 0, 0
	}
	if p.nRedirects >= c.RedirectNumber {
		p.rateLast = j
		return false
	}
	return p.nRedirects == 0 || j > p.rateLast+(c.RedirectLoad<<p.nRedirects)
}

func (k *pkt) redirectSent(src uint32) {
	l := &k.e.icmp
	l.mu.Lock()
	defer l.mu.Unlock()
	j := jiffies(k.env.now)
	p := l.peer(src, j)
	p.rateLast = j
	p.nRedirects++
}
