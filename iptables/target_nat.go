package iptables

import (
	"strconv"
	"strings"
)

// Shared parts of the NAT targets SNAT, DNAT, MASQUERADE and REDIRECT
// (iptables 1.8.9 extensions/libxt_NAT.c: parse_ports, parse_to,
// __NAT_parse, sprint_range, __NAT_print; kernel net/netfilter/xt_nat.c,
// xt_MASQUERADE.c, xt_REDIRECT.c).

// NAT range flags (NF_NAT_RANGE_* in linux/netfilter/nf_nat.h).
const (
	NATMapIPs          = 1 << 0
	NATProtoSpecified  = 1 << 1
	NATProtoRandom     = 1 << 2
	NATPersistent      = 1 << 3
	NATProtoRandomFull = 1 << 4
	NATProtoOffset     = 1 << 5
)

// NATRange is struct nf_nat_range2 for IPv4, host byte order.
type NATRange struct {
	Flags            uint32
	MinAddr, MaxAddr uint32
	MinPort, MaxPort uint16
	BasePort         uint16 // with NATProtoOffset (DNAT revision 2)
}

// natPortOK is __NAT_parse's portok: ports need one of these protocols
// as the rule's -p (inverted or not).
func natPortOK(proto uint8) bool {
	switch proto {
	case 6, 17, 132, 33, 1: // tcp, udp, sctp, dccp, icmp
		return true
	}
	return false
}

// parsePorts is parse_ports: "port", "port-port" or "port-port/base".
func (r *NATRange) parsePorts(arg string, portOK bool) error {
	if !portOK {
		return Errorf("Need TCP, UDP, SCTP or DCCP with port specification")
	}
	r.Flags |= NATProtoSpecified
	v, end, ok := strtoulPrefix(arg, 0, 65535)
	port := uint16(v)
	if !ok {
		p, found := lookupService(arg, "")
		if !found {
			return Errorf("Port `%s' not valid", arg)
		}
		port, end = p, ""
	}
	switch {
	case end == "":
		r.MinPort, r.MaxPort = port, port
		return nil
	case end[0] == '-':
		arg = end[1:]
	case end[0] == ':':
		return Errorf("Invalid port:port syntax - use dash")
	default:
		return Errorf("Garbage after port value: `%s'", end)
	}
	// a range: no service names here
	mv, end, ok := strtoulPrefix(arg, 0, 65535)
	if !ok {
		return Errorf("Port `%s' not valid", arg)
	}
	if uint16(mv) < port {
		return Errorf("Port range `%s' funky", arg)
	}
	r.MinPort, r.MaxPort = port, uint16(mv)
	switch {
	case end == "":
		return nil
	case end[0] == '/':
		arg = end[1:]
	default:
		return Errorf("Garbage after port range: `%s'", end)
	}
	// parse_ports passes an end pointer here: trailing garbage after
	// the base port goes unnoticed
	bv, _, ok := strtoulPrefix(arg, 1, 65535)
	if !ok {
		p, found := lookupService(arg, "")
		if !found {
			return Errorf("Port `%s' not valid", arg)
		}
		bv = uint64(p)
	}
	r.Flags |= NATProtoOffset
	r.BasePort = uint16(bv)
	return nil
}

// parseTo is parse_to for AF_INET: "[addr[-addr]][:port[-port[/base]]]".
func (r *NATRange) parseTo(arg string, portOK bool) error {
	if strings.IndexByte(arg, '[') >= 0 {
		return Errorf("Invalid address format")
	}
	start := arg
	colon := strings.IndexByte(arg, ':')
	if colon >= 0 && strings.IndexByte(arg[colon+1:], ':') >= 0 {
		colon = -1 // more than one colon: an IPv6 address
	}
	if colon >= 0 {
		if err := r.parsePorts(arg[colon+1:], portOK); err != nil {
			return err
		}
		// "colon == arg + 2" is meant for "[]:port"; it applies to
		// any two characters before the colon
		if colon == 0 || colon == 2 {
			return nil
		}
		start = arg[:colon]
	}
	r.Flags |= NATMapIPs
	lo, hi, dash := strings.Cut(start, "-")
	min, ok := inetPton4(lo)
	if !ok {
		return Errorf("Bad IP address \"%s\"", lo)
	}
	max := min
	if dash {
		if max, ok = inetPton4(hi); !ok {
			return Errorf("Bad IP address \"%s\"", hi)
		}
	}
	r.MinAddr, r.MaxAddr = min, max
	return nil
}

// String is sprint_range; skipColon drops a leading ':' (the
// --to-ports form of MASQUERADE and REDIRECT).
func (r *NATRange) String(skipColon bool) string {
	var b strings.Builder
	if r.Flags&NATMapIPs != 0 {
		b.WriteString(FormatAddr(r.MinAddr))
		if r.MinAddr != r.MaxAddr {
			b.WriteString("-" + FormatAddr(r.MaxAddr))
		}
	}
	if r.Flags&NATProtoSpecified != 0 {
		if b.Len() > 0 || !skipColon {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(int(r.MinPort)))
		if r.MaxPort != r.MinPort {
			b.WriteString("-" + strconv.Itoa(int(r.MaxPort)))
		}
		if r.Flags&NATProtoOffset != 0 {
			b.WriteString("/" + strconv.Itoa(int(r.BasePort)))
		}
	}
	return b.String()
}

// save is __NAT_print with the "--" prefix.
func (r *NATRange) save(w *SaveWriter, rangeOpt string, skipColon bool) {
	if s := r.String(skipColon); s != "" {
		w.Opt(rangeOpt, s)
	}
	if r.Flags&NATProtoRandom != 0 {
		w.Opt("random", "")
	}
	if r.Flags&NATProtoRandomFull != 0 {
		w.Opt("random-fully", "")
	}
	if r.Flags&NATPersistent != 0 {
		w.Opt("persistent", "")
	}
}

// parseOpt is the option switch of NAT_parse and DNAT_parse_v2: the
// range (--to-source, --to-destination: addresses and ports; --to-ports:
// ports only) or one of the flags.
func (r *NATRange) parseOpt(o *OptArg) error {
	switch o.Name {
	case "to-source", "to-destination":
		return r.parseTo(o.Arg, natPortOK(o.Rule.Proto))
	case "to-ports":
		return r.parsePorts(o.Arg, natPortOK(o.Rule.Proto))
	case "random":
		r.Flags |= NATProtoRandom
	case "random-fully":
		r.Flags |= NATProtoRandomFull
	case "persistent":
		r.Flags |= NATPersistent
	}
	return nil
}

// compat drops the base port: struct nf_nat_ipv4_range (revision 0 of
// SNAT, MASQUERADE and REDIRECT) has no room for it, while the offset
// flag survives (NAT_parse, RANGE2_INIT_FROM_IPV4_MRC).
func (r *NATRange) compat() { r.BasePort = 0 }
