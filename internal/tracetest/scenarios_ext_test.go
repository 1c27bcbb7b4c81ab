package tracetest

import "testing"

// Scenarios for every match and target extension uswitch supports: each
// rule of interest sits in a chain without a target (or with a target
// that continues), so its trace event shows whether it matched.

// mangleOnly is raw TRACE plus the given mangle rules.
func mangleOnly(rules string) string {
	return traceAll + `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
` + rules + "COMMIT\n"
}

var (
	wscale = []byte{1, 3, 3, 7}
	tstamp = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}
	sackOK = []byte{4, 2, 1, 1}
)

func opts(os ...[]byte) []byte {
	var b []byte
	for _, o := range os {
		b = append(b, o...)
	}
	return b
}

var extScenarios = []Scenario{
	{
		Name:    "match-tcp-udp",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p tcp -m tcp --dport 80
-A PREROUTING -p tcp -m tcp --sport 1000:1010
-A PREROUTING -p tcp -m tcp ! --dport 1:1023
-A PREROUTING -p tcp -m tcp --dport 8000:
-A PREROUTING -p tcp -m tcp --sport :999
-A PREROUTING -p tcp -m tcp ! --sport 1005
-A PREROUTING -p tcp -m tcp --syn
-A PREROUTING -p tcp -m tcp ! --syn
-A PREROUTING -p tcp -m tcp --tcp-flags ALL FIN,PSH,URG
-A PREROUTING -p tcp -m tcp --tcp-flags SYN,RST,ACK,FIN ACK
-A PREROUTING -p tcp -m tcp ! --tcp-flags SYN,ACK SYN,ACK
-A PREROUTING -p tcp -m tcp --tcp-flags ALL NONE
-A PREROUTING -p tcp -m tcp --tcp-option 2
-A PREROUTING -p tcp -m tcp ! --tcp-option 3
-A PREROUTING -p tcp -m tcp --tcp-option 8
-A PREROUTING -p tcp -m tcp --tcp-option 4 --dport 80
-A PREROUTING -p tcp -m tcp --dport 22 -m tcp --sport 1000
-A PREROUTING -p udp -m udp --dport 53
-A PREROUTING -p udp -m udp ! --sport 1000:2000
-A PREROUTING -p udp -m udp --sport 53 --dport 1024:65535
-A PREROUTING -p udp -m udp ! --dport 53 ! --sport 53
-A PREROUTING -p tcp -m multiport --sports 1000,2000:2010
-A PREROUTING -p udp -m multiport ! --ports 53,123
-A PREROUTING -p tcp -m multiport --ports 22,80:90
-A PREROUTING -p tcp -m multiport ! --dports 80,443
-A FORWARD -p tcp -m tcp --dport 80 --tcp-flags SYN,ACK SYN -j ACCEPT
`),
		Packets: []Packet{
			P("tcp 10.0.1.2:1000 > 10.0.2.2:80 syn iif tun1").WithOpts(opts(MSS(1460), sackOK, tstamp, wscale)...),
			P("tcp 10.0.1.2:1005 > 10.0.2.2:80 syn iif tun1").WithOpts(MSS(1460)...),
			P("tcp 10.0.1.2:999 > 10.0.2.2:22 ack 1 seq 2 iif tun1"),
			P("tcp 10.0.1.2:1000 > 10.0.2.2:22 ack 1 seq 2 psh iif tun1").WithOpts(tstamp...),
			P("tcp 10.0.1.2:2005 > 10.0.2.2:8080 fin psh urg iif tun1"),
			P("tcp 10.0.1.2:2010 > 10.0.2.2:85 iif tun1"),
			P("tcp 10.0.1.2:2011 > 10.0.2.2:443 syn ack iif tun1").WithOpts(wscale...),
			P("tcp 10.0.1.2:40000 > 10.0.2.2:65535 rst iif tun1"),
			P("udp 10.0.1.2:1000 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.2.2:53 > 10.0.1.2:1024 iif tun2"),
			P("udp 10.0.2.2:53 > 10.0.1.2:1023 iif tun2"),
			P("udp 10.0.1.2:2001 > 10.0.2.2:123 iif tun1"),
			P("udp 10.0.1.2:3000 > 10.0.2.2:124 len 3 iif tun1"),
			P("tcp 10.0.1.1:1000 > 10.0.2.2:80 syn local").WithOpts(MSS(1200)...),
		},
	},
	{
		Name:    "match-icmp",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p icmp -m icmp --icmp-type echo-request
-A PREROUTING -p icmp -m icmp --icmp-type 0
-A PREROUTING -p icmp -m icmp --icmp-type destination-unreachable
-A PREROUTING -p icmp -m icmp --icmp-type port-unreachable
-A PREROUTING -p icmp -m icmp --icmp-type 3/1
-A PREROUTING -p icmp -m icmp ! --icmp-type echo-request
-A PREROUTING -p icmp -m icmp --icmp-type any
-A PREROUTING -p icmp -m icmp --icmp-type time-exceeded
-A PREROUTING -p icmp -m icmp --icmp-type ttl-zero-during-reassembly
-A PREROUTING -p icmp -m icmp --icmp-type timestamp-request
-A PREROUTING -p icmp -m icmp --icmp-type fragmentation-needed
-A PREROUTING -p icmp -m icmp --icmp-type host-redirect
-A PREROUTING -p icmp -m icmp ! --icmp-type 3
-A OUTPUT -p icmp -m icmp --icmp-type echo-reply
-A OUTPUT -p icmp -m icmp --icmp-type port-unreachable
`),
		Packets: []Packet{
			P("icmp 10.0.1.2 > 10.0.2.2 id 1 seq 1 iif tun1"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 0 id 1 seq 1 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 3 code 3 len 28 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 3 code 1 len 28 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 3 code 4 len 28 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 11 code 0 len 28 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 11 code 1 len 28 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 13 iif tun2"),
			P("icmp 10.0.2.2 > 10.0.1.2 type 5 code 1 len 28 iif tun2"),
			P("icmp 10.0.1.2 > 10.0.1.1 id 2 seq 1 iif tun1"),
			P("udp 10.0.1.2:5 > 10.0.1.1:6 iif tun1"),
		},
	},
	{
		Name:    "match-sctp",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p sctp -m sctp --dport 80
-A PREROUTING -p sctp -m sctp --sport 1000:2000
-A PREROUTING -p sctp -m sctp ! --dport 80
-A PREROUTING -p sctp -m sctp --chunk-types any INIT
-A PREROUTING -p sctp -m sctp --chunk-types all DATA
-A PREROUTING -p sctp -m sctp --chunk-types only INIT
-A PREROUTING -p sctp -m sctp --chunk-types any DATA:BE
-A PREROUTING -p sctp -m sctp --chunk-types any DATA:b
-A PREROUTING -p sctp -m sctp ! --chunk-types any ABORT
-A PREROUTING -p sctp -m sctp --chunk-types any ABORT:T
-A PREROUTING -p sctp -m sctp --chunk-types all INIT,DATA
`),
		Packets: []Packet{
			SCTP("10.0.1.2", "10.0.2.2", 1000, 80, 1, 0, "tun1"),
			SCTP("10.0.1.2", "10.0.2.2", 1000, 80, 0, 3, "tun1"),
			SCTP("10.0.1.2", "10.0.2.2", 999, 81, 0, 1, "tun1"),
			SCTP("10.0.1.2", "10.0.2.2", 2000, 80, 6, 1, "tun1"),
			SCTP("10.0.1.2", "10.0.2.2", 2001, 80, 6, 0, "tun1"),
			SCTP("10.0.1.2", "10.0.2.2", 2001, 80, 4, 0, "tun1"),
		},
	},
	{
		Name:    "match-misc",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -m comment --comment "hello world"
-A PREROUTING -p udp -m comment --comment plain -m udp --dport 7
-A PREROUTING -m statistic --mode nth --every 3 --packet 0
-A PREROUTING -m statistic --mode nth --every 4 --packet 2
-A PREROUTING -m statistic --mode nth ! --every 2 --packet 1
-A PREROUTING -m statistic --mode random --probability 1
-A PREROUTING -m statistic --mode random --probability 0
-A PREROUTING -m statistic --mode random ! --probability 0
-A PREROUTING -m tos --tos 0x10
-A PREROUTING -m tos --tos Minimize-Cost
-A PREROUTING -m tos --tos 0x08/0x08
-A PREROUTING -m tos ! --tos 0x00/0xfc
-A PREROUTING -m dscp --dscp 0x2e
-A PREROUTING -m dscp --dscp-class AF11
-A PREROUTING -m dscp ! --dscp 0
-A PREROUTING -m pkttype --pkt-type unicast
-A PREROUTING -m pkttype --pkt-type broadcast
-A PREROUTING -m pkttype ! --pkt-type multicast
-A PREROUTING -m ttl --ttl-eq 9
-A PREROUTING -m ttl --ttl-gt 60
-A PREROUTING -m ttl ! --ttl-eq 64
-A PREROUTING -m length --length 100:
-A PREROUTING -m length ! --length 28
-A OUTPUT -m pkttype --pkt-type unicast
-A OUTPUT -m pkttype ! --pkt-type host
-A OUTPUT -m statistic --mode nth --every 2 --packet 0
-A OUTPUT -m tos --tos 0x10
`),
		Packets: []Packet{
			P("udp 10.0.1.2:1 > 10.0.2.2:7 tos 0x10 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0x02 ttl 9 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0x08 len 100 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0xb8 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0x28 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0x01 ttl 61 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.255:8 iif tun1"),
			P("udp 10.0.1.2:1 > 255.255.255.255:8 iif tun1"),
			P("udp 10.0.1.2:1 > 224.0.0.1:8 iif tun1"),
			P("icmp 10.0.1.2 > 10.0.1.1 id 3 seq 1 tos 0x10 iif tun1"),
			P("udp 10.0.2.1:1 > 10.0.2.2:8 tos 0x10 local"),
			P("udp 10.0.2.1:1 > 10.0.2.2:8 local"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 iif tun1"),
		},
	},
	{
		Name:    "match-limit-hashlimit",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p udp -m udp --dport 1 -m limit --limit 1/hour --limit-burst 3
-A PREROUTING -p udp -m udp --dport 2 -m limit --limit 1/day
-A PREROUTING -p udp -m udp --dport 3 -m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name h1
-A PREROUTING -p udp -m udp --dport 4 -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 2 --hashlimit-mode srcip,dstport --hashlimit-name h2
-A PREROUTING -p udp -m udp --dport 5 -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 1 --hashlimit-name h3
-A PREROUTING -p udp -m udp --dport 6 -m hashlimit --hashlimit-upto 1kb/s --hashlimit-burst 1kb --hashlimit-mode dstip --hashlimit-name h4
-A PREROUTING -p udp -m udp --dport 7 -m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-srcmask 24 --hashlimit-name h5
`),
		Packets: func() []Packet {
			var ps []Packet
			for _, d := range []string{"1", "2", "3", "4", "5", "6", "7"} {
				for _, s := range []string{"10.0.1.2", "10.0.1.2", "10.0.1.3", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.2"} {
					ps = append(ps, P("udp "+s+":1 > 10.0.2.2:"+d+" len 500 iif tun1"))
				}
			}
			return ps
		}(),
	},
	{
		Name:    "match-recent",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p tcp -m tcp --dport 22 -m recent --set --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p tcp -m tcp --dport 22 -m recent --rcheck --seconds 60 --hitcount 3 --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p tcp -m tcp --dport 23 -m recent --update --seconds 60 --hitcount 2 --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p tcp -m tcp --dport 24 -m recent --remove --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p udp -m recent --set --name D --mask 255.255.255.0 --rdest
-A PREROUTING -p udp -m recent --rcheck --hitcount 2 --name D --mask 255.255.255.0 --rdest
-A PREROUTING -p udp -m recent ! --rcheck --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p icmp -m recent --rcheck --rttl --name SSH --mask 255.255.255.255 --rsource
-A PREROUTING -p icmp -m recent --update --reap --seconds 30 --name SSH --mask 255.255.255.255 --rsource
`),
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.2.2:22 syn iif tun1"),
			P("tcp 10.0.1.2:2 > 10.0.2.2:22 syn iif tun1"),
			P("tcp 10.0.1.2:3 > 10.0.2.2:22 syn iif tun1"),
			P("tcp 10.0.1.3:3 > 10.0.2.2:22 syn iif tun1"),
			P("tcp 10.0.1.3:3 > 10.0.2.2:23 syn iif tun1"),
			P("tcp 10.0.1.2:3 > 10.0.2.2:23 syn iif tun1"),
			P("icmp 10.0.1.2 > 10.0.2.2 id 1 seq 1 iif tun1"),
			P("icmp 10.0.1.2 > 10.0.2.2 id 1 seq 2 ttl 9 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:5 iif tun1"),
			P("udp 10.0.1.4:1 > 10.0.2.3:5 iif tun1"),
			P("udp 10.0.1.4:1 > 10.0.3.3:5 iif tun1"),
			P("tcp 10.0.1.2:3 > 10.0.2.2:24 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:5 iif tun1"),
			P("tcp 10.0.1.2:3 > 10.0.2.2:23 syn iif tun1"),
		},
	},
	{
		Name:    "match-connlimit",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --syn -m connlimit --connlimit-above 2 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -m tcp --syn -m connlimit --connlimit-upto 3 --connlimit-mask 24 --connlimit-saddr
-A FORWARD -p udp -m connlimit --connlimit-above 1 --connlimit-mask 32 --connlimit-daddr -j DROP
COMMIT
`,
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.2:2 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.2:3 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.3:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.4:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.2.2:80 > 10.0.1.2:2 syn ack 1 seq 5 iif tun2"),
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.1.3:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.1.3:1 > 10.0.2.3:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
		},
	},
	{
		Name:    "match-physdev-mac-helper",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -m physdev ! --physdev-is-bridged
-A PREROUTING -m physdev --physdev-is-bridged
-A PREROUTING -m physdev ! --physdev-in tun1
-A PREROUTING -m physdev --physdev-in tun1
-A PREROUTING -m physdev ! --physdev-is-in
-A FORWARD -m physdev --physdev-is-bridged ! --physdev-out tun2
-A FORWARD -m physdev ! --physdev-is-out
-A PREROUTING -m mac --mac-source 00:11:22:33:44:55
-A PREROUTING -m mac ! --mac-source 00:11:22:33:44:55
-A FORWARD -m mac ! --mac-source 00:11:22:33:44:55
-A PREROUTING -m helper --helper ftp
-A PREROUTING -m helper ! --helper ftp
-A FORWARD -m helper ! --helper sip
`),
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.2.2:21 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.1:53 iif tun1"),
			P("udp 10.0.2.1:1 > 10.0.1.2:53 local"),
		},
	},
	{
		Name:    "match-set",
		Ifaces:  legs,
		Sysctls: fwd,
		IPSet: []string{
			"create ips hash:ip", "add ips 10.0.1.2", "add ips 10.0.2.2",
			"create nets hash:net", "add nets 10.0.1.0/28", "add nets 10.0.1.4/30 nomatch",
			"create ipport hash:ip,port", "add ipport 10.0.2.2,tcp:80", "add ipport 10.0.2.2,udp:53",
			"create ports bitmap:port range 0-1024", "add ports 22", "add ports 443",
			"create netport hash:net,port", "add netport 10.0.1.0/24,tcp:8080",
			"create bip bitmap:ip range 10.0.3.0/24", "add bip 10.0.3.3",
			"create ipportip hash:ip,port,ip", "add ipportip 10.0.1.2,tcp:80,10.0.2.2",
			"create ipportnet hash:ip,port,net", "add ipportnet 10.0.2.2,udp:53,10.0.1.0/24",
			"create lst list:set", "add lst ips", "add lst bip",
		},
		Rules: mangleOnly(`-A PREROUTING -m set --match-set ips src
-A PREROUTING -m set --match-set ips dst
-A PREROUTING -m set ! --match-set ips src
-A PREROUTING -m set --match-set nets src
-A PREROUTING -m set --match-set nets src --return-nomatch
-A PREROUTING -m set ! --match-set nets src --return-nomatch
-A PREROUTING -m set --match-set ipport dst,dst
-A PREROUTING -m set --match-set ipport src,src
-A PREROUTING -m set --match-set ports dst
-A PREROUTING -m set --match-set ports src
-A PREROUTING -m set --match-set netport src,dst
-A PREROUTING -m set --match-set bip dst
-A PREROUTING -m set --match-set ipportip src,dst,dst
-A PREROUTING -m set --match-set ipportnet dst,src,src
-A PREROUTING -m set --match-set ipportnet src,dst,dst
-A PREROUTING -m set --match-set lst dst
-A PREROUTING -m set --match-set ips src -m set --match-set ports dst
-A OUTPUT -m set --match-set ips dst
`),
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.5:1 > 10.0.2.2:22 syn iif tun1"),
			P("tcp 10.0.1.9:1 > 10.0.2.3:8080 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.2.2:53 > 10.0.1.3:1 iif tun2"),
			P("udp 10.0.1.20:1 > 10.0.3.3:443 iif tun1"),
			P("tcp 10.0.2.2:80 > 10.0.1.2:1 syn ack iif tun2"),
			P("icmp 10.0.1.2 > 10.0.3.3 id 1 seq 1 iif tun1"),
			P("udp 10.0.1.1:1 > 10.0.2.2:22 local"),
		},
	},
	{
		Name:    "match-rpfilter",
		Ifaces:  legs,
		Sysctls: fwd,
		IP: []string{
			"route add 10.9.0.0/16 via 10.0.2.2",
			"route add 10.9.0.0/16 via 10.0.3.3 table 100",
			"rule add fwmark 0x1/0x1 table 100",
		},
		Rules: traceAll + `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i tun3 -j MARK --set-mark 0x1
-A PREROUTING -m rpfilter
-A PREROUTING -m rpfilter --invert
-A PREROUTING -m rpfilter --loose
-A PREROUTING -m rpfilter --accept-local
-A PREROUTING -m rpfilter --validmark
-A PREROUTING -m rpfilter --loose --validmark --accept-local --invert
COMMIT
`,
		Packets: []Packet{
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.2.7:1 > 10.0.3.2:53 iif tun1"),
			P("udp 10.9.1.1:1 > 10.0.1.2:53 iif tun2"),
			P("udp 10.9.1.1:1 > 10.0.1.2:53 iif tun3"),
			P("udp 192.0.2.1:1 > 10.0.1.2:53 iif tun2"),
			P("udp 10.0.2.1:1 > 10.0.1.1:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.1:53 tos 0x10 iif tun1"),
		},
	},
	{
		Name:    "match-addrtype-limit-iface",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL --limit-iface-in
-A PREROUTING -m addrtype --src-type UNICAST --limit-iface-in
-A PREROUTING -m addrtype ! --dst-type LOCAL,BROADCAST
-A PREROUTING -m addrtype --dst-type BROADCAST --limit-iface-in
-A PREROUTING -m addrtype --dst-type MULTICAST
-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in
-A OUTPUT -m addrtype --src-type LOCAL --limit-iface-out
-A OUTPUT -m addrtype --dst-type LOCAL --limit-iface-out
-A POSTROUTING -m addrtype --dst-type UNICAST --limit-iface-out
-A FORWARD -m addrtype --dst-type UNICAST --limit-iface-out
-A FORWARD -m addrtype ! --src-type UNICAST --limit-iface-in
COMMIT
`,
		Packets: []Packet{
			P("udp 10.0.1.2:1 > 10.0.1.1:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.1:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.255:53 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.255:53 iif tun1"),
			P("udp 10.0.2.7:1 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.2.1:1 > 10.0.2.2:53 local"),
			P("udp 10.0.1.1:1 > 10.0.2.2:53 local"),
			P("udp 10.0.2.1:1 > 10.0.3.1:53 local"),
		},
	},
	{
		Name:    "target-mangle",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"link set tun2 mtu 1300"},
		Rules: mangleOnly(`-A PREROUTING -p udp -m udp --dport 1 -j LOG --log-prefix "u1 " --log-level 4
-A PREROUTING -p udp -m udp --dport 1 -j LOG --log-tcp-options --log-ip-options --log-uid
-A PREROUTING -p udp -m udp --dport 1 -j NFLOG --nflog-group 5 --nflog-prefix x
-A PREROUTING -p udp -m udp --dport 1 -j NFLOG --nflog-size 64 --nflog-threshold 2
-A PREROUTING -p udp -m udp --dport 2 -j TTL --ttl-set 5
-A PREROUTING -p udp -m udp --dport 3 -j TTL --ttl-dec 2
-A PREROUTING -p udp -m udp --dport 4 -j TTL --ttl-inc 10
-A PREROUTING -p udp -m udp --dport 5 -j TOS --set-tos 0x10
-A PREROUTING -p udp -m udp --dport 6 -j TOS --and-tos 0x0f
-A PREROUTING -p udp -m udp --dport 7 -j TOS --or-tos 0x04
-A PREROUTING -p udp -m udp --dport 8 -j TOS --xor-tos 0xff
-A PREROUTING -p udp -m udp --dport 9 -j DSCP --set-dscp 0x2e
-A PREROUTING -p udp -m udp --dport 10 -j DSCP --set-dscp-class AF41
-A PREROUTING -p udp -m udp --dport 11 -j TOS --set-tos Minimize-Delay
-A PREROUTING -p udp -m udp --dport 12 -j TOS --set-tos 0x04/0x0c
-A PREROUTING -m ttl --ttl-eq 5
-A PREROUTING -m dscp --dscp 0x2e
-A POSTROUTING -p udp -j CHECKSUM --checksum-fill
-A FORWARD -p tcp -m tcp --dport 80 --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1000
-A FORWARD -p tcp -m tcp --dport 81 --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
-A OUTPUT -p tcp -m tcp --dport 81 --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
-A OUTPUT -p udp -m udp --dport 3 -j TTL --ttl-dec 1
-A OUTPUT -p udp -m udp --dport 5 -j TOS --set-tos 0x10
`),
		Packets: []Packet{
			P("udp 10.0.1.2:1 > 10.0.2.2:1 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:2 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:3 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:3 ttl 3 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:4 ttl 250 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:5 tos 0x03 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:6 tos 0xff iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:7 tos 0x01 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:8 tos 0x11 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:9 tos 0x01 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:10 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:11 tos 0x02 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:12 tos 0xf0 iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1").WithOpts(MSS(1460)...),
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1").WithOpts(MSS(900)...),
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.2.2:80 syn iif tun1").WithOpts(opts(sackOK, tstamp, wscale, MSS(1460))...),
			P("tcp 10.0.1.2:1 > 10.0.2.2:81 syn iif tun1").WithOpts(MSS(1460)...),
			P("tcp 10.0.1.2:1 > 10.0.2.2:81 syn iif tun1").WithOpts(MSS(1100)...),
			P("tcp 10.0.1.2:1 > 10.0.3.3:81 syn iif tun1").WithOpts(MSS(1460)...),
			P("tcp 10.0.1.2:1 > 10.0.2.2:81 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.2.2:81 syn ack 1 iif tun1").WithOpts(MSS(1460)...),
			P("tcp 10.0.1.1:1 > 10.0.2.2:81 syn local").WithOpts(MSS(1460)...),
			P("udp 10.0.1.1:1 > 10.0.2.2:3 local"),
			P("udp 10.0.1.1:1 > 10.0.2.2:5 local"),
		},
	},
	{
		Name:    "target-queue-tproxy",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p tcp -m tcp --dport 3128 -j TPROXY --on-port 8080 --on-ip 10.0.1.1 --tproxy-mark 0x1/0x1
-A PREROUTING -p udp -m udp --dport 3128 -j TPROXY --on-port 8080
-A FORWARD -p udp -m udp --dport 12 -j NFQUEUE --queue-num 3 --queue-bypass
-A FORWARD -p udp -m udp --dport 14 -j NFQUEUE --queue-num 2
-A FORWARD -p udp -m udp --dport 15 -j NFQUEUE
-A OUTPUT -p udp -m udp --dport 12 -j NFQUEUE --queue-num 3 --queue-bypass
`),
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.2.2:3128 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:3128 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:12 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:13 iif tun1"), // --queue-balance is out: its hash seed is random per boot
			P("udp 10.0.1.2:1 > 10.0.2.2:14 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.2:15 iif tun1"),
			P("udp 10.0.1.1:1 > 10.0.2.2:12 local"),
		},
	},
	{
		Name:    "target-nat-forms",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
-A PREROUTING -p udp -m udp --dport 16 -j NOTRACK
-A OUTPUT -j TRACE
-A OUTPUT -p udp -m udp --dport 16 -j NOTRACK
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 100 -j DNAT --to-destination 10.0.2.2-10.0.2.4
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 101 -j DNAT --to-destination 10.0.2.2:1000-1010
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 102 -j DNAT --to-destination 10.0.2.2-10.0.2.4 --persistent
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 103 -j DNAT --to-destination 10.0.2.5:2000-2005 --random
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 108 -j DNAT --to-destination :8080
-A PREROUTING -d 10.0.1.1/32 -p udp -m udp --dport 16 -j DNAT --to-destination 10.0.2.9
-A PREROUTING -d 10.5.0.0/24 -j NETMAP --to 10.0.2.0/24
-A PREROUTING -p udp -m udp --dport 107 -j REDIRECT
-A PREROUTING -p udp -m udp --dport 109 -j REDIRECT --to-ports 7000-7005
-A INPUT -p udp -m udp --dport 110 -j SNAT --to-source 10.0.3.7
-A OUTPUT -p tcp -m tcp --dport 105 -j DNAT --to-destination 10.0.3.3:80
-A OUTPUT -p udp -m udp --dport 106 -j REDIRECT --to-ports 5000-5010
-A POSTROUTING -s 10.0.1.0/24 -o tun3 -p tcp -j SNAT --to-source 10.0.3.1-10.0.3.3
-A POSTROUTING -o tun3 -p udp -j SNAT --to-source 10.0.3.1:2000-2100 --random
-A POSTROUTING -s 10.0.2.0/24 -o tun3 -j NETMAP --to 10.0.33.0/24
-A POSTROUTING -o tun2 -p udp -j MASQUERADE --to-ports 3000-3005
-A POSTROUTING -o tun2 -p tcp -j MASQUERADE --random
-A POSTROUTING -o tun1 -p tcp -j SNAT --to-source 10.0.1.1 --persistent
COMMIT
`,
		Packets: []Packet{
			P("tcp 10.0.1.2:1 > 10.0.1.1:100 syn iif tun1"),
			P("tcp 10.0.1.3:1 > 10.0.1.1:100 syn iif tun1"),
			P("tcp 10.0.1.4:1 > 10.0.1.1:100 syn iif tun1"),
			P("tcp 10.0.1.5:7 > 10.0.1.1:100 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.1.1:101 syn iif tun1"),
			P("tcp 10.0.1.2:2 > 10.0.1.1:101 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.1.1:102 syn iif tun1"),
			P("tcp 10.0.1.3:1 > 10.0.1.1:102 syn iif tun1"),
			P("tcp 10.0.1.2:1 > 10.0.1.1:108 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.1:16 iif tun1"),
			P("udp 10.0.1.2:1 > 10.5.0.77:53 iif tun1"),
			P("tcp 10.0.1.2:1 > 10.5.0.78:80 syn iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.1:107 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.2.1:109 iif tun1"),
			P("udp 10.0.1.2:1 > 10.0.1.1:110 iif tun1"),
			P("tcp 10.0.1.2:5 > 10.0.3.3:80 syn iif tun1"),
			P("tcp 10.0.1.3:5 > 10.0.3.3:80 syn iif tun1"),
			P("udp 10.0.2.2:5 > 10.0.3.3:53 iif tun2"),
			P("tcp 10.0.2.2:5 > 10.0.3.3:80 syn iif tun2"),
			P("icmp 10.0.2.3 > 10.0.3.3 id 5 seq 1 iif tun2"),
			P("udp 10.0.1.2:5 > 10.0.2.2:53 iif tun1"),
			P("udp 10.0.1.2:6 > 10.0.2.2:53 iif tun1"),
			P("tcp 10.0.2.2:5 > 10.0.1.2:80 syn iif tun2"),
			P("tcp 10.0.1.1:9 > 10.0.1.1:105 syn local"),
			P("udp 10.0.2.1:9 > 10.0.2.2:106 local"),
			P("udp 10.0.2.1:9 > 10.0.2.2:16 local"),
		},
	},
	{
		Name:    "match-conntrack-options",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.2.2:80
-A POSTROUTING -o tun3 -j MASQUERADE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -m conntrack --ctproto tcp
-A FORWARD -m conntrack ! --ctproto udp --ctorigsrc 10.0.1.0/24
-A FORWARD -m conntrack --ctorigdst 10.0.1.1
-A FORWARD -m conntrack --ctrepldst 10.0.1.2 --ctreplsrc 10.0.2.2
-A FORWARD -m conntrack --ctstate DNAT,NEW
-A FORWARD -m conntrack --ctstate SNAT
-A FORWARD -m conntrack --ctstatus SEEN_REPLY
-A FORWARD -m conntrack ! --ctstatus ASSURED
-A FORWARD -m conntrack --ctdir ORIGINAL
-A FORWARD -m conntrack --ctdir REPLY
-A FORWARD -m conntrack --ctorigsrcport 2000 --ctorigdstport 8080
-A FORWARD -m conntrack --ctreplsrcport 80:90
-A FORWARD -m conntrack --ctexpire 100:500000
-A FORWARD -m state --state ESTABLISHED
COMMIT
`,
		Packets: cat(handshake("tun1", "10.0.1.2:2000", "10.0.1.1:8080", "tun2", "10.0.2.2:80", "10.0.1.2:2000"),
			[]Packet{
				P("udp 10.0.1.2:5 > 10.0.3.3:53 iif tun1"),
				P("udp 10.0.3.3:53 > 10.0.3.1:5 iif tun3"),
				P("icmp 10.0.1.2 > 10.0.2.2 id 9 seq 1 iif tun1"),
			}),
	},
}

func TestExtScenarios(t *testing.T) { runScenarios(t, extScenarios) }
