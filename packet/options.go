package packet

// IPv4 options as Linux handles them: the checks and bookkeeping of
// ip_options_compile on receive, the reply's options of
// __ip_options_echo, their filling in for a generated packet
// (ip_options_build) and the forwarding updates (ip_forward_options), all
// in net/ipv4/ip_options.c. Everything works in place on the header
// bytes, allocates nothing and never panics on any input: the offsets an
// Options holds are checked against the header before each use.

// IP option types (include/uapi/linux/ip.h IPOPT_*).
const (
	OptEnd       = 0
	OptNoop      = 1
	OptRR        = 7
	OptTimestamp = 68
	OptSec       = 130
	OptLSRR      = 131
	OptCIPSO     = 134
	OptSID       = 136
	OptSSRR      = 137
	OptRA        = 148
)

// Timestamp option flags (the low nibble of its fourth byte;
// IPOPT_TS_TSONLY, IPOPT_TS_TSANDADDR, IPOPT_TS_PRESPEC).
const (
	TSOnly    = 0
	TSAndAddr = 1
	TSPrespec = 3
)

// OptionsMaxLen is the most option bytes a header holds (60 - 20).
const OptionsMaxLen = IPv4MaxHeaderLen - IPv4MinHeaderLen

// Options is struct ip_options (include/net/inet_sock.h) as
// ip_options_compile fills it: where each option is, as an offset from
// the start of the IPv4 header (0: absent), and what the router still
// has to write into it.
type Options struct {
	// OptLen is the option bytes (header length - 20).
	OptLen uint8
	// SRR is the loose or strict source route (StrictRoute: SSRR),
	// RR the record route, TS the timestamp, RouterAlert a router alert
	// of value 0, CIPSO a CIPSO label.
	SRR, RR, TS, RouterAlert, CIPSO uint8
	StrictRoute                     bool
	// RRNeedAddr: the record route had room, its pointer now points
	// past the slot for this router's address. TSNeedAddr and
	// TSNeedTime: likewise for the timestamp's address and time.
	RRNeedAddr, TSNeedAddr, TSNeedTime bool
	// Changed: the options were rewritten (opt->is_changed); the
	// header checksum is stale until recomputed.
	Changed bool
	// SRRIsHit and NextHop are set by the receive path when a source
	// route to this host named the next hop (ip_options_rcv_srr).
	SRRIsHit bool
	NextHop  uint32
	// FAddr is the first hop of an echoed source route (the reply's
	// destination), set by EchoOptions.
	FAddr uint32
}

// OptionsEnv answers what the options code asks the host.
type OptionsEnv interface {
	// SpecDst is fib_compute_spec_dst: the address the host records
	// for a received packet (its destination when it is for us, else
	// the preferred source of the route back to its sender).
	SpecDst() uint32
	// Timestamp is inet_current_timestamp: milliseconds since
	// midnight UTC.
	Timestamp() uint32
	// AddrUnicast is inet_addr_type(a) == RTN_UNICAST: a is not one of
	// the host's (local, broadcast...) addresses.
	AddrUnicast(a uint32) bool
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func get32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// CompileOptions is __ip_options_compile for a received packet (skb
// set): it checks the options of h, fills o and, as the kernel does,
// rewrites them in place as it goes: bytes after an end-of-list option
// become end-of-list, record route and timestamp pointers advance past
// the slots this host fills, and with env (the packet has a route) this
// host's address and the time are written into them; a full
// timestamp's overflow counter goes up. It returns -1 when the options
// are valid, else the offset from the start of the header of the byte
// at fault, the ICMP parameter problem's pointer; rewrites made before
// the fault stay, as in the kernel. The header checksum is left as it
// is (o.Changed says it is stale). h must hold its whole header. With
// env nil (no route) only the checks and the pointer bookkeeping are
// done, and a prespecified timestamp never takes its turn.
//
// Unknown options, SEC and SID are accepted on receive (only a local
// socket's options without CAP_NET_RAW are refused); a CIPSO option is
// refused when it is the second one, and otherwise taken as valid
// without its label being checked (cipso_v4_validate runs only with
// NetLabel configured for CIPSO; this host is modelled without it).
func CompileOptions(h IPv4, o *Options, env OptionsEnv) int {
	*o = Options{}
	if len(h) < IPv4MinHeaderLen {
		return 0
	}
	hl := h.HeaderLen()
	if hl <= IPv4MinHeaderLen || hl > len(h) {
		return -1
	}
	o.OptLen = uint8(hl - IPv4MinHeaderLen)
	var specDst uint32
	haveSpec := false
	spec := func() uint32 {
		if !haveSpec {
			specDst, haveSpec = env.SpecDst(), true
		}
		return specDst
	}
	i := IPv4MinHeaderLen
	for i < hl {
		l := hl - i
		switch h[i] {
		case OptEnd:
			for j := i + 1; j < hl; j++ {
				if h[j] != OptEnd {
					h[j] = OptEnd
					o.Changed = true
				}
			}
			return -1
		case OptNoop:
			i++
			continue
		}
		if l < 2 {
			return i
		}
		optlen := int(h[i+1])
		if optlen < 2 || optlen > l {
			return i
		}
		opt := h[i : i+optlen]
		switch h[i] {
		case OptSSRR, OptLSRR:
			if optlen < 3 {
				return i + 1
			}
			if opt[2] < 4 {
				return i + 2
			}
			// RFC 1812 5.2.4.1: at most one source route
			if o.SRR != 0 {
				return i
			}
			o.StrictRoute = opt[0] == OptSSRR
			o.SRR = uint8(i)
		case OptRR:
			if o.RR != 0 {
				return i
			}
			if optlen < 3 {
				return i + 1
			}
			if opt[2] < 4 {
				return i + 2
			}
			if int(opt[2]) <= optlen {
				if int(opt[2])+3 > optlen {
					return i + 2
				}
				if env != nil {
					put32(opt[opt[2]-1:], spec())
					o.Changed = true
				}
				opt[2] += 4
				o.RRNeedAddr = true
			}
			o.RR = uint8(i)
		case OptTimestamp:
			if o.TS != 0 {
				return i
			}
			if optlen < 4 {
				return i + 1
			}
			if opt[2] < 5 {
				return i + 2
			}
			if int(opt[2]) <= optlen {
				if int(opt[2])+3 > optlen {
					return i + 2
				}
				timeAt := -1
				switch opt[3] & 0xf {
				case TSOnly:
					timeAt = int(opt[2]) - 1
					o.TSNeedTime = true
					opt[2] += 4
				case TSAndAddr:
					if int(opt[2])+7 > optlen {
						return i + 2
					}
					if env != nil {
						put32(opt[opt[2]-1:], spec())
						timeAt = int(opt[2]) + 3
					}
					o.TSNeedAddr, o.TSNeedTime = true, true
					opt[2] += 8
				case TSPrespec:
					if int(opt[2])+7 > optlen {
						return i + 2
					}
					// a prespecified address that is not ours: not
					// our turn
					if env == nil || env.AddrUnicast(get32(opt[opt[2]-1:])) {
						break
					}
					timeAt = int(opt[2]) + 3
					o.TSNeedTime = true
					opt[2] += 8
				}
				if timeAt >= 0 && env != nil {
					put32(opt[timeAt:], env.Timestamp())
					o.Changed = true
				}
			} else if opt[3]&0xf != TSPrespec {
				// full: count the overflow (4 bits, 15 is an error)
				overflow := opt[3] >> 4
				if overflow == 15 {
					return i + 3
				}
				opt[3] = opt[3]&0xf | (overflow+1)<<4
				o.Changed = true
			}
			o.TS = uint8(i)
		case OptRA:
			if optlen < 4 {
				return i + 1
			}
			if opt[2] == 0 && opt[3] == 0 {
				o.RouterAlert = uint8(i)
			}
		case OptCIPSO:
			if o.CIPSO != 0 {
				return i
			}
			o.CIPSO = uint8(i)
		default:
			// IPOPT_SEC, IPOPT_SID and unknown options: accepted on
			// receive
		}
		i += optlen
	}
	return -1
}

// EchoOptions is __ip_options_echo: the options of a reply to the
// received packet h, whose options o describes (CompileOptions' result).
// It writes them to dst (at least OptionsMaxLen bytes), padded to a
// multiple of four with end-of-list, and returns their description with
// offsets as they will be in the reply's header (starting at 20). The
// record route and timestamp are copied with their pointers moved past
// the slots the reply will fill (BuildOptions), a source route is
// reversed (the reply goes to FAddr, its first hop) and a CIPSO option
// is copied. ok is false where the kernel refuses to answer (-EINVAL).
func EchoOptions(dst []byte, h IPv4, o *Options, env OptionsEnv) (d Options, ok bool) {
	if o.OptLen == 0 || len(dst) < OptionsMaxLen {
		return d, true
	}
	clear(dst[:OptionsMaxLen])
	hl := h.HeaderLen()
	if len(h) < hl {
		return d, false
	}
	// opt returns the option at off (its length byte checked), or nil
	opt := func(off uint8) []byte {
		if int(off)+2 > hl {
			return nil
		}
		n := int(h[int(off)+1])
		if n < 2 || int(off)+n > hl {
			return nil
		}
		return h[off : int(off)+n]
	}
	n := 0
	if s := opt(o.RR); o.RR != 0 && s != nil {
		optlen, soff := len(s), int(s[2])
		d.RR = uint8(n + IPv4MinHeaderLen)
		copy(dst[n:], s)
		if o.RRNeedAddr && soff <= optlen {
			if soff+3 > optlen {
				return Options{}, false
			}
			dst[n+2] = byte(soff + 4)
			d.RRNeedAddr = true
		}
		n += optlen
	}
	if s := opt(o.TS); o.TS != 0 && s != nil && n+len(s) <= OptionsMaxLen {
		optlen, soff := len(s), int(s[2])
		d.TS = uint8(n + IPv4MinHeaderLen)
		dp := dst[n : n+optlen]
		copy(dp, s)
		if soff <= optlen {
			if o.TSNeedAddr {
				if soff+3 > optlen {
					return Options{}, false
				}
				d.TSNeedAddr = true
				soff += 4
			}
			if o.TSNeedTime {
				if soff+3 > optlen {
					return Options{}, false
				}
				if dp[3]&0xf != TSPrespec {
					d.TSNeedTime = true
					soff += 4
				} else if soff+7 <= optlen && env != nil && !env.AddrUnicast(get32(dp[soff-1:])) {
					d.TSNeedTime = true
					soff += 8
				}
			}
			dp[2] = byte(soff)
		}
		n += optlen
	}
	if s := opt(o.SRR); o.SRR != 0 && s != nil && len(s) >= 3 {
		optlen, soff := len(s), int(s[2])
		doff := 0
		if soff > optlen {
			soff = optlen + 1
		}
		soff -= 4
		var faddr uint32
		if soff > 3 {
			faddr = get32(s[soff-1:])
			// the addresses passed so far, last first
			for soff, doff = soff-4, 4; soff > 3; soff, doff = soff-4, doff+4 {
				if n+doff+3 > OptionsMaxLen {
					return Options{}, false
				}
				copy(dst[n+doff-1:n+doff+3], s[soff-1:soff+3])
			}
			// RFC 1812: a route that starts at the sender loses it
			if soff+7 <= len(s) && get32(s[soff+3:]) == h.Src() {
				doff -= 4
			}
		}
		if n+doff+3 > OptionsMaxLen {
			return Options{}, false
		}
		if doff > 3 {
			d.FAddr = faddr
			dst[n], dst[n+1], dst[n+2] = s[0], byte(doff+3), 4
			d.SRR = uint8(n + IPv4MinHeaderLen)
			d.StrictRoute = o.StrictRoute
			n += doff + 3
		}
	}
	if s := opt(o.CIPSO); o.CIPSO != 0 && s != nil && n+len(s) <= OptionsMaxLen {
		d.CIPSO = uint8(n + IPv4MinHeaderLen)
		copy(dst[n:], s)
		n += len(s)
	}
	for n&3 != 0 && n < OptionsMaxLen {
		dst[n] = OptEnd
		n++
	}
	d.OptLen = uint8(n)
	return d, true
}

// BuildOptions is ip_options_build for a packet the host makes with the
// options o (from EchoOptions) already in its header h: the source
// route's last slot gets the final destination daddr, the record route
// and timestamp this host's address src and the time now. The header
// checksum is the caller's.
func BuildOptions(h IPv4, o *Options, daddr, src, now uint32) {
	hl := h.HeaderLen()
	if len(h) < hl {
		return
	}
	at := func(off uint8, delta int) []byte {
		if off == 0 || int(off)+3 > hl {
			return nil
		}
		p := int(off) + delta
		if p < int(off) || p+4 > hl {
			return nil
		}
		return h[p : p+4]
	}
	if o.SRR != 0 && int(o.SRR)+2 <= hl {
		if b := at(o.SRR, int(h[o.SRR+1])-4); b != nil {
			put32(b, daddr)
		}
	}
	if o.RRNeedAddr {
		if b := at(o.RR, int(h[min(int(o.RR)+2, hl-1)])-5); b != nil {
			put32(b, src)
		}
	}
	if o.TSNeedAddr {
		if b := at(o.TS, int(h[min(int(o.TS)+2, hl-1)])-9); b != nil {
			put32(b, src)
		}
	}
	if o.TSNeedTime {
		if b := at(o.TS, int(h[min(int(o.TS)+2, hl-1)])-5); b != nil {
			put32(b, now)
		}
	}
}

// ForwardEnv answers what ip_forward_options asks.
type ForwardEnv interface {
	// RouteSource is ip_rt_get_source for the forwarded packet with
	// destination daddr: the preferred source of its route.
	RouteSource(daddr uint32) uint32
}

// ForwardOptions is ip_forward_options, after the FORWARD hook: the
// record route's slot gets the output address (env.RouteSource for
// the packet's destination as it is when asked); a source route that
// hit this host moves on: the destination becomes the next hop, whose
// slot gets the output address; and the header checksum is recomputed
// when anything changed. It returns the destination when it changed
// (the transport checksum is not touched: the source route's final
// destination is the one in its pseudo-header).
func ForwardOptions(h IPv4, o *Options, env ForwardEnv) (newDst uint32, dstChanged bool) {
	hl := h.HeaderLen()
	if len(h) < hl || hl < IPv4MinHeaderLen {
		return 0, false
	}
	if o.RRNeedAddr && o.RR != 0 && int(o.RR)+3 <= hl {
		p := int(o.RR) + int(h[o.RR+2]) - 5
		if p >= int(o.RR) && p+4 <= hl {
			put32(h[p:], env.RouteSource(h.Dst()))
			o.Changed = true
		}
	}
	if o.SRRIsHit && o.SRR != 0 && int(o.SRR)+3 <= hl {
		s := h[o.SRR:]
		ptr, space := int(s[2]), int(s[1])
		for ; ptr <= space; ptr += 4 {
			if ptr+3 > space || int(o.SRR)+ptr+3 > hl {
				ptr = space + 1
				break
			}
			if get32(s[ptr-1:]) == o.NextHop {
				break
			}
		}
		if ptr+3 <= space && ptr >= 1 {
			o.Changed = true
			put32(h[16:], o.NextHop)
			newDst, dstChanged = o.NextHop, true
			put32(s[ptr-1:], env.RouteSource(o.NextHop))
			s[2] = byte(ptr + 4)
		}
		if o.TSNeedAddr && o.TS != 0 && int(o.TS)+3 <= hl {
			p := int(o.TS) + int(h[o.TS+2]) - 9
			if p >= int(o.TS) && p+4 <= hl {
				put32(h[p:], env.RouteSource(h.Dst()))
				o.Changed = true
			}
		}
	}
	if o.Changed {
		o.Changed = false
		h.SetChecksum()
	}
	return newDst, dstChanged
}

// FragmentOptions is ip_options_fragment (net/ipv4/ip_options.c): the
// options of a fragment after the first keep only those with the copied
// flag; the others are overwritten with NOOPs in place, so the header
// keeps its length.
func FragmentOptions(o []byte) {
	for len(o) > 0 {
		switch o[0] {
		case OptEnd:
			return
		case OptNoop:
			o = o[1:]
			continue
		}
		if len(o) < 2 {
			return
		}
		l := int(o[1])
		if l < 2 || l > len(o) {
			return
		}
		if o[0]&0x80 == 0 {
			for i := range l {
				o[i] = OptNoop
			}
		}
		o = o[l:]
	}
}
