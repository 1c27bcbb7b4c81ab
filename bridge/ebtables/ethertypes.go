package ebtables

import (
	"strconv"
	"strings"
)

// ethertype is one line of /etc/ethertypes (Debian netbase), which
// ebtables reads to name -p values (ebtables' ethertype lookups in
// libxtables/xtables.c, xtables_ethertype ...). The table is built in so
// that loading does not depend on the host's file; the first name of a
// line is the one ebtables-save prints, the others are aliases.
type ethertype struct {
	value uint16
	names []string
}

var ethertypes = []ethertype{
	{0x0800, []string{"IPv4", "ip", "ip4"}},
	{0x0805, []string{"X25"}},
	{0x0806, []string{"ARP", "ether-arp"}},
	{0x0808, []string{"FR_ARP"}},
	{0x08FF, []string{"BPQ"}},
	{0x22F3, []string{"TRILL"}},
	{0x22F4, []string{"L2-IS-IS"}},
	{0x6558, []string{"TEB"}},
	{0x6559, []string{"RAW_FR"}},
	{0x8035, []string{"RARP"}},
	{0x809B, []string{"ATALK"}},
	{0x80F3, []string{"AARP"}},
	{0x8100, []string{"802_1Q", "8021q", "1q", "802.1q", "dot1q"}},
	{0x8137, []string{"IPX"}},
	{0x8191, []string{"NetBEUI"}},
	{0x86DD, []string{"IPv6", "ip6"}},
	{0x880B, []string{"PPP"}},
	{0x8847, []string{"MPLS"}},
	{0x8848, []string{"MPLS_MULTI"}},
	{0x884C, []string{"ATMMPOA"}},
	{0x8863, []string{"PPP_DISC"}},
	{0x8864, []string{"PPP_SES"}},
	{0x8884, []string{"ATMFATE"}},
	{0x888E, []string{"EAPOL"}},
	{0x88A8, []string{"S-TAG"}},
	{0x88C7, []string{"EAP_PREAUTH"}},
	{0x88CC, []string{"LLDP"}},
	{0x88E5, []string{"MACSEC"}},
	{0x88E7, []string{"PBB", "macinmac"}},
	{0x88F5, []string{"MVRP"}},
	{0x88F7, []string{"PTP"}},
	{0x8906, []string{"FCOE"}},
	{0x8914, []string{"FIP"}},
	{0x8915, []string{"ROCE"}},
	{0xA0ED, []string{"LoWPAN"}},
}

// ethertypeByName looks a name up as ebtables does (case-insensitive).
func ethertypeByName(name string) (uint16, bool) {
	for _, e := range ethertypes {
		for _, n := range e.names {
			if strings.EqualFold(n, name) {
				return e.value, true
			}
		}
	}
	return 0, false
}

// ethertypeName is the name ebtables-save prints for v, if any.
func ethertypeName(v uint16) (string, bool) {
	for _, e := range ethertypes {
		if e.value == v {
			return e.names[0], true
		}
	}
	return "", false
}

// ipProtos is the part of /etc/protocols that ebtables' --ip-proto and
// --ip6-proto read (getprotobyname) and print (getprotobynumber).
var ipProtos = []struct {
	num   uint8
	names []string
}{
	{0, []string{"ip", "IP"}},
	{1, []string{"icmp", "ICMP"}},
	{2, []string{"igmp", "IGMP"}},
	{4, []string{"ipencap", "IP-ENCAP"}},
	{6, []string{"tcp", "TCP"}},
	{8, []string{"egp", "EGP"}},
	{12, []string{"pup", "PUP"}},
	{17, []string{"udp", "UDP"}},
	{22, []string{"idp", "IDP"}},
	{27, []string{"rdp", "RDP"}},
	{33, []string{"dccp", "DCCP"}},
	{41, []string{"ipv6", "IPv6"}},
	{43, []string{"ipv6-route", "IPv6-Route"}},
	{44, []string{"ipv6-frag", "IPv6-Frag"}},
	{46, []string{"rsvp", "RSVP"}},
	{47, []string{"gre", "GRE"}},
	{50, []string{"esp", "IPSEC-ESP"}},
	{51, []string{"ah", "IPSEC-AH"}},
	{58, []string{"ipv6-icmp", "IPv6-ICMP", "icmpv6"}},
	{59, []string{"ipv6-nonxt", "IPv6-NoNxt"}},
	{60, []string{"ipv6-opts", "IPv6-Opts"}},
	{89, []string{"ospf", "OSPFIGP"}},
	{94, []string{"ipip", "IPIP"}},
	{103, []string{"pim", "PIM"}},
	{108, []string{"ipcomp", "IPCOMP"}},
	{112, []string{"vrrp", "VRRP"}},
	{115, []string{"l2tp", "L2TP"}},
	{132, []string{"sctp", "SCTP"}},
	{136, []string{"udplite", "UDPLite"}},
	{137, []string{"mpls-in-ip", "MPLS-in-IP"}},
}

func ipProtoByName(s string) (uint8, bool) {
	for _, p := range ipProtos {
		for _, n := range p.names {
			if n == s {
				return p.num, true
			}
		}
	}
	return 0, false
}

func ipProtoName(v uint8) (string, bool) {
	for _, p := range ipProtos {
		if p.num == v {
			return p.names[0], true
		}
	}
	return "", false
}

// parseHex reads a number as strtol(s, &end, 16) does: an optional
// 0x prefix, hex digits, nothing after them.
func parseHex(s string, bitSize int) (uint64, error) {
	t := s
	if len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') {
		t = t[2:]
	}
	return strconv.ParseUint(t, 16, bitSize)
}
