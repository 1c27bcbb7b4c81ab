package ebtables

// Help texts: what ebtables-nft 1.8.9 prints for -h (print_help in
// iptables/xtables-eb.c) and for -h TARGET (the extension help
// functions of extensions/libebt_*.c), as captured from the binary.

// mainHelp is print_help without an extension.
const mainHelp = "ebtables 1.8.9 (nf_tables)\nUsage:\nebtables -[ADI] chain rule-specification [options]\nebtables -P chain target\nebtables -[LFZ] [chain]\nebtables -[NX] [chain]\nebtables -E old-chain-name new-chain-name\n\nCommands:\n--append -A chain             : append to chain\n--delete -D chain             : delete matching rule from chain\n--delete -D chain rulenum     : delete rule at position rulenum from chain\n--change-counters -C chain\n          [rulenum] pcnt bcnt : change counters of existing rule\n--insert -I chain rulenum     : insert rule at position rulenum in chain\n--list   -L [chain]           : list the rules in a chain or in all chains\n--flush  -F [chain]           : delete all rules in chain or in all chains\n--init-table                  : replace the kernel table with the initial table\n--zero   -Z [chain]           : put counters on zero in chain or in all chains\n--policy -P chain target      : change policy on chain to target\n--new-chain -N chain          : create a user defined chain\n--rename-chain -E old new     : rename a chain\n--delete-chain -X [chain]     : delete a user defined chain\nOptions:\n--proto  -p [!] proto         : protocol hexadecimal, by name or LENGTH\n--src    -s [!] address[/mask]: source mac address\n--dst    -d [!] address[/mask]: destination mac address\n--in-if  -i [!] name[+]       : network input interface name\n--out-if -o [!] name[+]       : network output interface name\n--logical-in  [!] name[+]     : logical bridge input interface name\n--logical-out [!] name[+]     : logical bridge output interface name\n--set-counters -c chain\n          pcnt bcnt           : set the counters of the to be added rule\n--modprobe -M program         : try to insert modules using this program\n--concurrent                  : use a file lock to support concurrent scripts\n--verbose -v                  : verbose mode\n--version -V                  : print package version\n\nEnvironment variable:\n\n\n"

// targetHelp is each target extension's help (printed after a blank
// line).
var targetHelp = map[string]string{
	"standard": "\nstandard match options:\n(If target is DROP, ACCEPT, RETURN or nothing)\n",
	"redirect": "\nredirect option:\n --redirect-target target   : ACCEPT, DROP, RETURN or CONTINUE\n",
	"arpreply": "\narpreply target options:\n --arpreply-mac address           : source MAC of generated reply\n --arpreply-target target         : ACCEPT, DROP, RETURN or CONTINUE\n                                    (standard target is DROP)\n",
	"snat":     "\nsnat options:\n --to-src address       : MAC address to map source to\n --snat-target target   : ACCEPT, DROP, RETURN or CONTINUE\n --snat-arp             : also change src address in arp msg\n",
	"dnat":     "\ndnat options:\n --to-dst address       : MAC address to map destination to\n --dnat-target target   : ACCEPT, DROP, RETURN or CONTINUE\n",
	"mark":     "\nmark target options:\n --mark-set value     : Set nfmark value\n --mark-or  value     : Or nfmark with value (nfmark |= value)\n --mark-and value     : And nfmark with value (nfmark &= value)\n --mark-xor value     : Xor nfmark with value (nfmark ^= value)\n --mark-target target : ACCEPT, DROP, RETURN or CONTINUE\n",
	"nflog":    "\nnflog options:\n--nflog               : use the default nflog parameters\n--nflog-prefix prefix : Prefix string for log message\n--nflog-group group   : NETLINK group used for logging\n--nflog-range range   : Number of byte to copy\n--nflog-threshold     : Message threshold ofin-kernel queue\n",
	"log":      "\nlog options:\n--log               : use this if you're not specifying anything\n--log-level level   : level = [1-8] or a string\n--log-prefix prefix : max. 29 chars.\n--log-ip            : put ip info. in the log for ip packets\n--log-arp           : put (r)arp info. in the log for (r)arp packets\n--log-ip6           : put ip6 info. in the log for ip6 packets\n0 = emerg\n1 = alert\n2 = crit\n3 = error\n4 = warning\n5 = notice\n6 = info\n7 = debug\n",
}

// listExtensions is "ebtables -h list_extensions" (ebt_list_extensions:
// the targets as xtables_targets lists them, and no match, as
// do_commandeb has none in its rule yet).
const listExtensions = "ebtables v1.8.9 (nf_tables)\nLoaded userspace extensions:\n\nLoaded targets:\nstandard\nredirect\narpreply\nsnat\ndnat\nmark\nnflog\nlog\n\nLoaded matches:\n"

// helpText is -h's output: the usage, then the target's help if one
// was named.
func helpText(target string) string {
	return mainHelp + targetHelp[target]
}
