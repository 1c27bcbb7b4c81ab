// Code generated from the output of iptables v1.8.9 (nf_tables) -h, -m NAME -h and -j NAME -h; DO NOT EDIT.
package iptables

// usageText is what `iptables -h` prints (exit_printhelp in iptables/xtables.c).
const usageText = "iptables v1.8.9 (nf_tables)\n" +
	"\n" +
	"Usage: iptables -[ACD] chain rule-specification [options]\n" +
	"       iptables -I chain [rulenum] rule-specification [options]\n" +
	"       iptables -R chain rulenum rule-specification [options]\n" +
	"       iptables -D chain rulenum [options]\n" +
	"       iptables -[LS] [chain [rulenum]] [options]\n" +
	"       iptables -[FZ] [chain] [options]\n" +
	"       iptables -[NX] chain\n" +
	"       iptables -E old-chain-name new-chain-name\n" +
	"       iptables -P chain target [options]\n" +
	"       iptables -h (print this help information)\n" +
	"\n" +
	"Commands:\n" +
	"Either long or short options are allowed.\n" +
	"  --append  -A chain\t\tAppend to chain\n" +
	"  --check   -C chain\t\tCheck for the existence of a rule\n" +
	"  --delete  -D chain\t\tDelete matching rule from chain\n" +
	"  --delete  -D chain rulenum\n" +
	"\t\t\t\tDelete rule rulenum (1 = first) from chain\n" +
	"  --insert  -I chain [rulenum]\n" +
	"\t\t\t\tInsert in chain as rulenum (default 1=first)\n" +
	"  --replace -R chain rulenum\n" +
	"\t\t\t\tReplace rule rulenum (1 = first) in chain\n" +
	"  --list    -L [chain [rulenum]]\n" +
	"\t\t\t\tList the rules in a chain or all chains\n" +
	"  --list-rules -S [chain [rulenum]]\n" +
	"\t\t\t\tPrint the rules in a chain or all chains\n" +
	"  --flush   -F [chain]\t\tDelete all rules in  chain or all chains\n" +
	"  --zero    -Z [chain [rulenum]]\n" +
	"\t\t\t\tZero counters in chain or all chains\n" +
	"  --new     -N chain\t\tCreate a new user-defined chain\n" +
	"  --delete-chain\n" +
	"            -X [chain]\t\tDelete a user-defined chain\n" +
	"  --policy  -P chain target\n" +
	"\t\t\t\tChange policy on chain to target\n" +
	"  --rename-chain\n" +
	"            -E old-chain new-chain\n" +
	"\t\t\t\tChange chain name, (moving any references)\n" +
	"\n" +
	"Options:\n" +
	"    --ipv4\t-4\t\tNothing (line is ignored by ip6tables-restore)\n" +
	"    --ipv6\t-6\t\tError (line is ignored by iptables-restore)\n" +
	"[!] --protocol\t-p proto\tprotocol: by number or name, eg. `tcp'\n" +
	"[!] --source\t-s address[/mask][...]\n" +
	"\t\t\t\tsource specification\n" +
	"[!] --destination -d address[/mask][...]\n" +
	"\t\t\t\tdestination specification\n" +
	"[!] --in-interface -i input name[+]\n" +
	"\t\t\t\tnetwork interface name ([+] for wildcard)\n" +
	" --jump\t-j target\n" +
	"\t\t\t\ttarget for rule (may load target extension)\n" +
	"  --goto      -g chain\n" +
	"\t\t\t       jump to chain with no return\n" +
	"  --match\t-m match\n" +
	"\t\t\t\textended match (may load extension)\n" +
	"  --numeric\t-n\t\tnumeric output of addresses and ports\n" +
	"[!] --out-interface -o output name[+]\n" +
	"\t\t\t\tnetwork interface name ([+] for wildcard)\n" +
	"  --table\t-t table\ttable to manipulate (default: `filter')\n" +
	"  --verbose\t-v\t\tverbose mode\n" +
	"  --wait\t-w [seconds]\tmaximum wait to acquire xtables lock before give up\n" +
	"  --line-numbers\t\tprint line numbers when listing\n" +
	"  --exact\t-x\t\texpand numbers (display exact values)\n" +
	"[!] --fragment\t-f\t\tmatch second or further fragments only\n" +
	"  --modprobe=<command>\t\ttry to insert modules using this command\n" +
	"  --set-counters -c PKTS BYTES\tset the counter during insert/append\n" +
	"[!] --version\t-V\t\tprint package version.\n"

// matchHelp and targetHelp are the extensions' help callbacks' text, as
// exit_printhelp prints it after the usage and a blank line.
var matchHelp = map[string]string{
	"addrtype": "Address type match options:\n" +
		" [!] --src-type type[,...]      Match source address type\n" +
		" [!] --dst-type type[,...]      Match destination address type\n" +
		"     --limit-iface-in           Match only on the packet's incoming device\n" +
		"     --limit-iface-out          Match only on the packet's outgoing device\n" +
		"\n" +
		"Valid types:           \n" +
		"                                UNSPEC\n" +
		"                                UNICAST\n" +
		"                                LOCAL\n" +
		"                                BROADCAST\n" +
		"                                ANYCAST\n" +
		"                                MULTICAST\n" +
		"                                BLACKHOLE\n" +
		"                                UNREACHABLE\n" +
		"                                PROHIBIT\n" +
		"                                THROW\n" +
		"                                NAT\n" +
		"                                XRESOLVE\n",
	"comment": "comment match options:\n" +
		"--comment COMMENT             Attach a comment to a rule\n",
	"connlimit": "connlimit match options:\n" +
		"  --connlimit-upto n     match if the number of existing connections is 0..n\n" +
		"  --connlimit-above n    match if the number of existing connections is >n\n" +
		"  --connlimit-mask n     group hosts using prefix length (default: max len)\n" +
		"  --connlimit-saddr      select source address for grouping\n" +
		"  --connlimit-daddr      select destination addresses for grouping\n",
	"connmark": "connmark match options:\n" +
		"[!] --mark value[/mask]    Match ctmark value with optional mask\n",
	"conntrack": "conntrack match options:\n" +
		"[!] --ctstate {INVALID|ESTABLISHED|NEW|RELATED|UNTRACKED|SNAT|DNAT}[,...]\n" +
		"                               State(s) to match\n" +
		"[!] --ctproto proto            Protocol to match; by number or name, e.g. \"tcp\"\n" +
		"[!] --ctorigsrc address[/mask]\n" +
		"[!] --ctorigdst address[/mask]\n" +
		"[!] --ctreplsrc address[/mask]\n" +
		"[!] --ctrepldst address[/mask]\n" +
		"                               Original/Reply source/destination address\n" +
		"[!] --ctorigsrcport port\n" +
		"[!] --ctorigdstport port\n" +
		"[!] --ctreplsrcport port\n" +
		"[!] --ctrepldstport port\n" +
		"                               TCP/UDP/SCTP orig./reply source/destination port\n" +
		"[!] --ctstatus {NONE|EXPECTED|SEEN_REPLY|ASSURED|CONFIRMED}[,...]\n" +
		"                               Status(es) to match\n" +
		"[!] --ctexpire time[:time]     Match remaining lifetime in seconds against\n" +
		"                               value or range of values (inclusive)\n" +
		"    --ctdir {ORIGINAL|REPLY}   Flow direction of packet\n",
	"dscp": "dscp match options\n" +
		"[!] --dscp value\t\tMatch DSCP codepoint with numerical value\n" +
		"  \t\t                This value can be in decimal (ex: 32)\n" +
		"               \t\tor in hex (ex: 0x20)\n" +
		"[!] --dscp-class name\t\tMatch the DiffServ class. This value may\n" +
		"\t\t\t\tbe any of the BE,EF, AFxx or CSx classes\n" +
		"\n" +
		"\t\t\t\tThese two options are mutually exclusive !\n",
	"hashlimit": "hashlimit match options:\n" +
		"  --hashlimit-upto <avg>           max average match rate\n" +
		"                                   [Packets per second unless followed by \n" +
		"                                   /sec /minute /hour /day postfixes]\n" +
		"  --hashlimit-above <avg>          min average match rate\n" +
		"  --hashlimit-mode <mode>          mode is a comma-separated list of\n" +
		"                                   dstip,srcip,dstport,srcport (or none)\n" +
		"  --hashlimit-srcmask <length>     source address grouping prefix length\n" +
		"  --hashlimit-dstmask <length>     destination address grouping prefix length\n" +
		"  --hashlimit-name <name>          name for /proc/net/ipt_hashlimit\n" +
		"  --hashlimit-burst <num>\t    number to match in a burst, default 5\n" +
		"  --hashlimit-htable-size <num>    number of hashtable buckets\n" +
		"  --hashlimit-htable-max <num>     number of hashtable entries\n" +
		"  --hashlimit-htable-gcinterval    interval between garbage collection runs\n" +
		"  --hashlimit-htable-expire        after which time are idle entries expired?\n" +
		"  --hashlimit-rate-match           rate match the flow without rate-limiting it\n" +
		"  --hashlimit-rate-interval        interval in seconds for hashlimit-rate-match\n" +
		"\n",
	"helper": "helper match options:\n" +
		"[!] --helper string        Match helper identified by string\n",
	"icmp": "icmp match options:\n" +
		"[!] --icmp-type typename\tmatch icmp type\n" +
		"[!] --icmp-type type[/code]\t(or numeric type or type/code)\n" +
		"Valid ICMP Types:\n" +
		"any\n" +
		"echo-reply (pong)\n" +
		"destination-unreachable\n" +
		"   network-unreachable\n" +
		"   host-unreachable\n" +
		"   protocol-unreachable\n" +
		"   port-unreachable\n" +
		"   fragmentation-needed\n" +
		"   source-route-failed\n" +
		"   network-unknown\n" +
		"   host-unknown\n" +
		"   network-prohibited\n" +
		"   host-prohibited\n" +
		"   TOS-network-unreachable\n" +
		"   TOS-host-unreachable\n" +
		"   communication-prohibited\n" +
		"   host-precedence-violation\n" +
		"   precedence-cutoff\n" +
		"source-quench\n" +
		"redirect\n" +
		"   network-redirect\n" +
		"   host-redirect\n" +
		"   TOS-network-redirect\n" +
		"   TOS-host-redirect\n" +
		"echo-request (ping)\n" +
		"router-advertisement\n" +
		"router-solicitation\n" +
		"time-exceeded (ttl-exceeded)\n" +
		"   ttl-zero-during-transit\n" +
		"   ttl-zero-during-reassembly\n" +
		"parameter-problem\n" +
		"   ip-header-bad\n" +
		"   required-option-missing\n" +
		"timestamp-request\n" +
		"timestamp-reply\n" +
		"address-mask-request\n" +
		"address-mask-reply\n",
	"iprange": "iprange match options:\n" +
		"[!] --src-range ip[-ip]    Match source IP in the specified range\n" +
		"[!] --dst-range ip[-ip]    Match destination IP in the specified range\n",
	"length": "length match options:\n" +
		"[!] --length length[:length]    Match packet length against value or range\n" +
		"                                of values (inclusive)\n",
	"limit": "limit match options:\n" +
		"--limit avg\t\t\tmax average match rate: default 3/hour\n" +
		"                                [Packets per second unless followed by \n" +
		"                                /sec /minute /hour /day postfixes]\n" +
		"--limit-burst number\t\tnumber to match in a burst, default 5\n",
	"mac": "mac match options:\n" +
		"[!] --mac-source XX:XX:XX:XX:XX:XX\n" +
		"\t\t\t\tMatch source MAC address\n",
	"mark": "mark match options:\n" +
		"[!] --mark value[/mask]    Match nfmark value with optional mask\n",
	"multiport": "multiport match options:\n" +
		"[!] --source-ports port[,port:port,port...]\n" +
		" --sports ...\n" +
		"\t\t\t\tmatch source port(s)\n" +
		"[!] --destination-ports port[,port:port,port...]\n" +
		" --dports ...\n" +
		"\t\t\t\tmatch destination port(s)\n" +
		"[!] --ports port[,port:port,port]\n" +
		"\t\t\t\tmatch both source and destination port(s)\n",
	"owner": "owner match options:\n" +
		"[!] --uid-owner userid[-userid]      Match local UID\n" +
		"[!] --gid-owner groupid[-groupid]    Match local GID\n" +
		"[!] --socket-exists                  Match if socket exists\n" +
		"    --suppl-groups                   Also match supplementary groups set with --gid-owner\n",
	"physdev": "physdev match options:\n" +
		" [!] --physdev-in inputname[+]\t\tbridge port name ([+] for wildcard)\n" +
		" [!] --physdev-out outputname[+]\tbridge port name ([+] for wildcard)\n" +
		" [!] --physdev-is-in\t\t\tarrived on a bridge device\n" +
		" [!] --physdev-is-out\t\t\twill leave on a bridge device\n" +
		" [!] --physdev-is-bridged\t\tit's a bridged packet\n",
	"pkttype": "pkttype match options:\n" +
		"[!] --pkt-type packettype    match packet type\n" +
		"Valid packet types:\n" +
		"\tunicast       \t\tto us\n" +
		"\tbroadcast     \t\tto all\n" +
		"\tmulticast     \t\tto group\n" +
		"\totherhost     \t\tto someone else\n" +
		"\n",
	"recent": "recent match options:\n" +
		"[!] --set                       Add source address to list, always matches.\n" +
		"[!] --rcheck                    Match if source address in list.\n" +
		"[!] --update                    Match if source address in list, also update last-seen time.\n" +
		"[!] --remove                    Match if source address in list, also removes that address from list.\n" +
		"    --seconds seconds           For check and update commands above.\n" +
		"                                Specifies that the match will only occur if source address last seen within\n" +
		"                                the last 'seconds' seconds.\n" +
		"    --reap                      Purge entries older then 'seconds'.\n" +
		"                                Can only be used in conjunction with the seconds option.\n" +
		"    --hitcount hits             For check and update commands above.\n" +
		"                                Specifies that the match will only occur if source address seen hits times.\n" +
		"                                May be used in conjunction with the seconds option.\n" +
		"    --rttl                      For check and update commands above.\n" +
		"                                Specifies that the match will only occur if the source address and the TTL\n" +
		"                                match between this packet and the one which was set.\n" +
		"                                Useful if you have problems with people spoofing their source address in order\n" +
		"                                to DoS you via this module.\n" +
		"    --name name                 Name of the recent list to be used.  DEFAULT used if none given.\n" +
		"    --rsource                   Match/Save the source address of each packet in the recent list table (default).\n" +
		"    --rdest                     Match/Save the destination address of each packet in the recent list table.\n" +
		"    --mask netmask              Netmask that will be applied to this recent list.\n" +
		"xt_recent by: Stephen Frost <sfrost@snowman.net>.\n",
	"rpfilter": "rpfilter match options:\n" +
		"    --loose          permit reverse path via any interface\n" +
		"    --validmark      use skb nfmark when performing route lookup\n" +
		"    --accept-local   do not reject packets with a local source address\n" +
		"    --invert         match packets that failed the reverse path test\n",
	"sctp": "sctp match options\n" +
		"[!] --source-port port[:port]                          match source port(s)\n" +
		" --sport ...\n" +
		"[!] --destination-port port[:port]                     match destination port(s)\n" +
		" --dport ...\n" +
		"[!] --chunk-types (all|any|none) (chunktype[:flags])+\tmatch if all, any or none of\n" +
		"\t\t\t\t\t\t        chunktypes are present\n" +
		"chunktypes - DATA INIT INIT_ACK SACK HEARTBEAT HEARTBEAT_ACK ABORT SHUTDOWN SHUTDOWN_ACK ERROR COOKIE_ECHO COOKIE_ACK ECN_ECNE ECN_CWR SHUTDOWN_COMPLETE ASCONF ASCONF_ACK FORWARD_TSN ALL NONE\n",
	"set": "set match options:\n" +
		" [!] --match-set name flags [--return-nomatch]\n" +
		"   [! --update-counters] [! --update-subcounters]\n" +
		"   [[!] --packets-eq value | --packets-lt value | --packets-gt value\n" +
		"   [[!] --bytes-eq value | --bytes-lt value | --bytes-gt value\n" +
		"\t\t 'name' is the set name from to match,\n" +
		"\t\t 'flags' are the comma separated list of\n" +
		"\t\t 'src' and 'dst' specifications.\n",
	"state": "state match options:\n" +
		" [!] --state [INVALID|ESTABLISHED|NEW|RELATED|UNTRACKED][,...]\n" +
		"\t\t\t\tState(s) to match\n",
	"statistic": "statistic match options:\n" +
		" --mode mode                    Match mode (random, nth)\n" +
		" random mode:\n" +
		"[!] --probability p\t\t Probability\n" +
		" nth mode:\n" +
		"[!] --every n\t\t\t Match every nth packet\n" +
		" --packet p\t\t\t Initial counter value (0 <= p <= n-1, default 0)\n",
	"tcp": "tcp match options:\n" +
		"[!] --tcp-flags mask comp\tmatch when TCP flags & mask == comp\n" +
		"\t\t\t\t(Flags: SYN ACK FIN RST URG PSH ALL NONE)\n" +
		"[!] --syn\t\t\tmatch when only SYN flag set\n" +
		"\t\t\t\t(equivalent to --tcp-flags SYN,RST,ACK,FIN SYN)\n" +
		"[!] --source-port port[:port]\n" +
		" --sport ...\n" +
		"\t\t\t\tmatch source port(s)\n" +
		"[!] --destination-port port[:port]\n" +
		" --dport ...\n" +
		"\t\t\t\tmatch destination port(s)\n" +
		"[!] --tcp-option number        match if TCP option set\n",
	"tos": "tos match options:\n" +
		"[!] --tos value[/mask]    Match Type of Service/Priority field value\n" +
		"[!] --tos symbol          Match TOS field (IPv4 only) by symbol\n" +
		"                          Accepted symbolic names for value are:\n" +
		"                          (0x10) 16 Minimize-Delay\n" +
		"                          (0x08)  8 Maximize-Throughput\n" +
		"                          (0x04)  4 Maximize-Reliability\n" +
		"                          (0x02)  2 Minimize-Cost\n" +
		"                          (0x00)  0 Normal-Service\n" +
		"\n",
	"ttl": "ttl match options:\n" +
		"[!] --ttl-eq value\tMatch time to live value\n" +
		"  --ttl-lt value\tMatch TTL < value\n" +
		"  --ttl-gt value\tMatch TTL > value\n",
	"udp": "udp match options:\n" +
		"[!] --source-port port[:port]\n" +
		" --sport ...\n" +
		"\t\t\t\tmatch source port(s)\n" +
		"[!] --destination-port port[:port]\n" +
		" --dport ...\n" +
		"\t\t\t\tmatch destination port(s)\n",
}

var targetHelp = map[string]string{
	"CHECKSUM": "CHECKSUM target options\n" +
		"  --checksum-fill\t\t\tFill in packet checksum.\n",
	"CONNMARK": "CONNMARK target options:\n" +
		"  --set-xmark value[/ctmask]    Zero mask bits and XOR ctmark with value\n" +
		"  --save-mark [--ctmask mask] [--nfmask mask]\n" +
		"                                Copy ctmark to nfmark using masks\n" +
		"  --restore-mark [--ctmask mask] [--nfmask mask]\n" +
		"                                Copy nfmark to ctmark using masks\n" +
		"  --set-mark value[/mask]       Set conntrack mark value\n" +
		"  --save-mark [--mask mask]     Save the packet nfmark in the connection\n" +
		"  --restore-mark [--mask mask]  Restore saved nfmark value\n" +
		"  --and-mark value              Binary AND the ctmark with bits\n" +
		"  --or-mark value               Binary OR  the ctmark with bits\n" +
		"  --xor-mark value              Binary XOR the ctmark with bits\n" +
		"  --left-shift-mark value       Left shift the ctmark with bits\n" +
		"  --right-shift-mark value      Right shift the ctmark with bits\n",
	"CT": "CT target options:\n" +
		" --notrack\t\t\tDon't track connection\n" +
		" --helper name\t\t\tUse conntrack helper 'name' for connection\n" +
		" --timeout name \t\tUse timeout policy 'name' for connection\n" +
		" --ctevents event[,event...]\tGenerate specified conntrack events for connection\n" +
		" --expevents event[,event...]\tGenerate specified expectation events for connection\n" +
		" --zone {ID|mark}\t\tAssign/Lookup connection in zone ID/packet nfmark\n" +
		" --zone-orig {ID|mark}\t\tSame as 'zone' option, but only applies to ORIGINAL direction\n" +
		" --zone-reply {ID|mark} \tSame as 'zone' option, but only applies to REPLY direction\n",
	"DNAT": "DNAT target options:\n" +
		" --to-destination [<ipaddr>[-<ipaddr>]][:port[-port[/port]]]\n" +
		"\t\t\t\tAddress to map destination to.\n" +
		"[--random] [--persistent]\n",
	"DSCP": "DSCP target options\n" +
		"  --set-dscp value\t\tSet DSCP field in packet header to value\n" +
		"  \t\t                This value can be in decimal (ex: 32)\n" +
		"               \t\tor in hex (ex: 0x20)\n" +
		"  --set-dscp-class class\tSet the DSCP field in packet header to the\n" +
		"\t\t\t\tvalue represented by the DiffServ class value.\n" +
		"\t\t\t\tThis class may be EF,BE or any of the CSxx\n" +
		"\t\t\t\tor AFxx classes.\n" +
		"\n" +
		"\t\t\t\tThese two options are mutually exclusive !\n",
	"LOG": "LOG target options:\n" +
		" --log-level level\t\tLevel of logging (numeric or see syslog.conf)\n" +
		" --log-prefix prefix\t\tPrefix log messages with this prefix.\n" +
		" --log-tcp-sequence\t\tLog TCP sequence numbers.\n" +
		" --log-tcp-options\t\tLog TCP options.\n" +
		" --log-ip-options\t\tLog IP options.\n" +
		" --log-uid\t\t\tLog UID owning the local socket.\n" +
		" --log-macdecode\t\tDecode MAC addresses and protocol.\n",
	"MARK": "MARK target options:\n" +
		"  --set-xmark value[/mask]  Clear bits in mask and XOR value into nfmark\n" +
		"  --set-mark value[/mask]   Clear bits in mask and OR value into nfmark\n" +
		"  --and-mark bits           Binary AND the nfmark with bits\n" +
		"  --or-mark bits            Binary OR the nfmark with bits\n" +
		"  --xor-mark bits           Binary XOR the nfmark with bits\n",
	"MASQUERADE": "MASQUERADE target options:\n" +
		" --to-ports <port>[-<port>]\n" +
		"\t\t\t\tPort (range) to map to.\n" +
		" --random\n" +
		"\t\t\t\tRandomize source port.\n" +
		" --random-fully\n" +
		"\t\t\t\tFully randomize source port.\n",
	"NETMAP": "NETMAP target options:\n" +
		"  --to address[/mask]\n" +
		"\t\t\t\tNetwork address to map to.\n" +
		"\n",
	"NFLOG": "NFLOG target options:\n" +
		" --nflog-group NUM\t\tNETLINK group used for logging\n" +
		" --nflog-range NUM\t\tThis option has no effect, use --nflog-size\n" +
		" --nflog-size NUM\t\tNumber of bytes to copy\n" +
		" --nflog-threshold NUM\t\tMessage threshold of in-kernel queue\n" +
		" --nflog-prefix STRING\t\tPrefix string for log messages\n",
	"NFQUEUE": "NFQUEUE target options\n" +
		"  --queue-num value            Send packet to QUEUE number <value>.\n" +
		"                               Valid queue numbers are 0-65535\n" +
		"  --queue-balance first:last   Balance flows between queues <value> to <value>.\n" +
		"  --queue-bypass               Bypass Queueing if no queue instance exists.\n" +
		"  --queue-cpu-fanout\tUse current CPU (no hashing)\n",
	"NOTRACK": "NOTRACK does not take any options\n",
	"REDIRECT": "REDIRECT target options:\n" +
		" --to-ports <port>[-<port>]\n" +
		"\t\t\t\tPort (range) to map to.\n" +
		" [--random]\n",
	"REJECT": "REJECT target options:\n" +
		"--reject-with type              drop input packet and send back\n" +
		"                                a reply packet according to type:\n" +
		"Valid reject types:\n" +
		"    icmp-net-unreachable     \tICMP network unreachable\n" +
		"    net-unreach              \talias\n" +
		"    icmp-host-unreachable    \tICMP host unreachable\n" +
		"    host-unreach             \talias\n" +
		"    icmp-proto-unreachable   \tICMP protocol unreachable\n" +
		"    proto-unreach            \talias\n" +
		"    icmp-port-unreachable    \tICMP port unreachable (default)\n" +
		"    port-unreach             \talias\n" +
		"    icmp-net-prohibited      \tICMP network prohibited\n" +
		"    net-prohib               \talias\n" +
		"    icmp-host-prohibited     \tICMP host prohibited\n" +
		"    host-prohib              \talias\n" +
		"    tcp-reset                \tTCP RST packet\n" +
		"    tcp-rst                  \talias\n" +
		"    icmp-admin-prohibited    \tICMP administratively prohibited (*)\n" +
		"    admin-prohib             \talias\n" +
		"\n" +
		"(*) See man page or read the INCOMPATIBILITES file for compatibility issues.\n",
	"SNAT": "SNAT target options:\n" +
		" --to-source [<ipaddr>[-<ipaddr>]][:port[-port]]\n" +
		"\t\t\t\tAddress to map source to.\n" +
		"[--random] [--random-fully] [--persistent]\n",
	"TCPMSS": "TCPMSS target mutually-exclusive options:\n" +
		"  --set-mss value               explicitly set MSS option to specified value\n" +
		"  --clamp-mss-to-pmtu           automatically clamp MSS value to (path_MTU - 20)\n",
	"TOS": "TOS target vlibxtables.so.12 options:\n" +
		"  --set-tos value[/mask]  Set Type of Service/Priority field to value\n" +
		"                          (Zero out bits in mask and XOR value into TOS)\n" +
		"  --set-tos symbol        Set TOS field (IPv4 only) by symbol\n" +
		"                          (this zeroes the 4-bit Precedence part!)\n" +
		"                          Accepted symbolic names for value are:\n" +
		"                            (0x10) 16 Minimize-Delay\n" +
		"                            (0x08)  8 Maximize-Throughput\n" +
		"                            (0x04)  4 Maximize-Reliability\n" +
		"                            (0x02)  2 Minimize-Cost\n" +
		"                            (0x00)  0 Normal-Service\n" +
		"\n" +
		"  --and-tos bits          Binary AND the TOS value with bits\n" +
		"  --or-tos  bits          Binary OR the TOS value with bits\n" +
		"  --xor-tos bits          Binary XOR the TOS value with bits\n",
	"TPROXY": "TPROXY target options:\n" +
		"  --on-port port\t\t    Redirect connection to port, or the original port if 0\n" +
		"  --on-ip ip\t\t\t    Optionally redirect to the given IP\n" +
		"  --tproxy-mark value[/mask]\t    Mark packets with the given value/mask\n" +
		"\n",
	"TRACE": "TRACE does not take any options\n",
	"TTL": "TTL target options\n" +
		"  --ttl-set value\t\tSet TTL to <value 0-255>\n" +
		"  --ttl-dec value\t\tDecrement TTL by <value 1-255>\n" +
		"  --ttl-inc value\t\tIncrement TTL by <value 1-255>\n",
}
