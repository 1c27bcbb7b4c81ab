package ebtables

import (
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// Restore errors byte for byte as ebtables-restore (ebtables-nft 1.8.9)
// prints them, with its exit status. TestRestoreErrorsKernel checks the
// same table against the real program.

const tryHint = "Try `ebtables-restore -h' or 'ebtables-restore --help' for more information.\n"

func pErr(line, msg string) string {
	return "ebtables-restore v1.8.9 (nf_tables): " + msg + "\nError occurred at line: " + line + "\n" + tryHint
}

const commitFailed = "ebtables-restore v1.8.9 (nf_tables): ebtables-restore: final implicit COMMIT failed\n"

func kErr(line, errno, chain string) string {
	return "ebtables-restore v1.8.9 (nf_tables): \nline " + line + ": RULE_APPEND failed (" + errno + "): rule in chain " + chain + "\n"
}

var restoreErrors = []struct {
	name, in, stderr string
	code             int
}{
	{"unknown option", "*filter\n-A FORWARD --bogus 1 -j ACCEPT\n", pErr("2", "Unknown argument: '1'"), 2},
	{"unknown option last", "*filter\n-A FORWARD -j ACCEPT --bogus\n", pErr("2", "Unknown argument: '(null)'"), 2},
	{"unknown option before -j", "*filter\n-A FORWARD --bogus -j ACCEPT\n", pErr("2", "Unknown argument: '-j'"), 2},
	{"bad source MAC", "*filter\n-A FORWARD -s 00:11:22:33:44 -j ACCEPT\n", pErr("2", "Problem with specified source mac '00:11:22:33:44'"), 2},
	{"bad destination MAC", "*filter\n-A FORWARD -d zz:11:22:33:44:55 -j ACCEPT\n", pErr("2", "Problem with specified destination mac 'zz:11:22:33:44:55'"), 2},
	{"unknown chain in -j", "*filter\n-A FORWARD -j NOPE\n", pErr("2", "Chain 'NOPE' does not exist"), 2},
	{"unknown chain, blamed at the end", "*filter\n-A FORWARD -j foo\n-A FORWARD -j ACCEPT\n-A FORWARD -j ACCEPT\n", pErr("4", "Chain 'foo' does not exist"), 2},
	{"unknown chain, declared later", "*filter\n-A FORWARD -j foo\n:foo ACCEPT\n", pErr("3", "Chain 'foo' does not exist"), 2},
	{"unknown chain, blamed at COMMIT", "*filter\n-A FORWARD -j foo\nCOMMIT\n*nat\n", pErr("3", "Chain 'foo' does not exist"), 2},
	{"append to a missing chain", "*filter\n-A NOPE -j ACCEPT\n", commitFailed, 1},
	{"bad table", "*bogus\n-A FORWARD -j ACCEPT\n", pErr("1", "ebtables-restore: line 1 table name 'bogus' invalid"), 2},
	{"broute on 1.8.9", "*broute\n-A BROUTING -j ACCEPT\n", pErr("1", "ebtables-restore: line 1 table name 'broute' invalid"), 2},
	{"no table", "-A FORWARD -j ACCEPT\n", "ebtables-restore: line 1 failed: No chain/target/match by that name.\n", 1},
	{"policy CONTINUE", "*filter\n:FORWARD CONTINUE\n", commitFailed, 1},
	{"policy RETURN on a builtin", "*filter\n:FORWARD RETURN\n", commitFailed, 1},
	{"bad policy", "*filter\n:foo BOGUS\n", commitFailed, 1},
	{"missing policy", "*filter\n:FORWARD\n", pErr("2", "ebtables-restore: line 2 policy invalid"), 2},
	{"protocol below 0x0600", "*filter\n-A FORWARD -p 0 -j ACCEPT\n", pErr("2", "Sorry, protocols have values above or equal to 0x0600"), 2},
	{"unknown protocol", "*filter\n-A FORWARD -p foo -j ACCEPT\n", pErr("2", "Problem with the specified Ethernet protocol 'foo', perhaps /etc/ethertypes is missing"), 2},
	{"-i in OUTPUT", "*filter\n-A OUTPUT -i eth0 -j ACCEPT\n", pErr("2", "Use -i only in INPUT, FORWARD, PREROUTING and BROUTING chains"), 2},
	{"-o in INPUT", "*filter\n-A INPUT -o eth0 -j ACCEPT\n", pErr("2", "Use -o only in OUTPUT, FORWARD and POSTROUTING chains"), 2},
	{"bad IPv4 address", "*filter\n-A FORWARD -p IPv4 --ip-src 1.2.3.400 -j ACCEPT\n", pErr("2", "host/network `1.2.3.400' not found"), 2},
	{"ip match without -p IPv4", "*filter\n-A FORWARD --ip-src 1.2.3.4 -j ACCEPT\n", kErr("2", "Invalid argument", "FORWARD"), 4},
	{"port without protocol", "*filter\n-A FORWARD -p IPv4 --ip-dport 22 -j ACCEPT\n", kErr("2", "Invalid argument", "FORWARD"), 4},
	{"two targets", "*filter\n-A FORWARD -j ACCEPT -j DROP\n", pErr("2", "Multiple use of same option not allowed"), 2},
	{"two protocols", "*filter\n-A FORWARD -p IPv4 -p ARP\n", pErr("2", "Multiple use of same option not allowed"), 2},
	{"chain made twice", "*filter\n-N foo\n-N foo\n", commitFailed, 1},
	{"mark without option", "*filter\n-A FORWARD -j mark\n", pErr("2", "You must specify some option"), 2},
	{"two mark operations", "*filter\n-A FORWARD -j mark --mark-set 1 --mark-or 2\n", pErr("2", "--mark-or cannot be used together with specific --mark option"), 2},
	{"bad mark value", "*filter\n-A FORWARD -j mark --mark-set xyz\n", pErr("2", "Bad MARK value 'xyz'"), 2},
	{"nat chain in filter name", "*nat\n-A FORWARD -j ACCEPT\n", commitFailed, 1},
	{"dnat in filter", "*filter\n-A FORWARD -j dnat --to-dst 00:11:22:33:44:55\n", kErr("2", "Invalid argument", "FORWARD"), 4},
	{"dnat in POSTROUTING", "*nat\n-A POSTROUTING -j dnat --to-dst 00:11:22:33:44:55\n", kErr("2", "Invalid argument", "POSTROUTING"), 4},
	{"snat in PREROUTING", "*nat\n-A PREROUTING -j snat --to-src 00:11:22:33:44:55\n", kErr("2", "Invalid argument", "PREROUTING"), 4},
	{"snat without MAC", "*nat\n-A POSTROUTING -j snat\n", pErr("2", "You must specify proper arguments"), 2},
	{"bad rate", "*filter\n-A FORWARD --limit 5/fortnight\n", pErr("2", "bad rate `5/fortnight'"), 2},
	{"bad pkttype", "*filter\n-A FORWARD --pkttype-type bogus\n", pErr("2", "Could not parse class 'bogus'"), 2},
	{"vlan id too big", "*filter\n-A FORWARD -p 802_1Q --vlan-id 5000\n", pErr("2", "Invalid --vlan-id range ('5000')"), 2},
	{"bad log level", "*filter\n-A FORWARD --log-level bogus\n", pErr("2", "Problem with the log-level"), 2},
	{"log prefix too long", "*filter\n-A FORWARD --log-prefix 0123456789012345678901234567890\n", pErr("2", "Prefix too long"), 2},
	{"-c one value", "*filter\n-A FORWARD -c 1\n", pErr("2", "Option -c needs 2 arguments"), 2},
	{"-c bad value", "*filter\n-A FORWARD -c x y\n", pErr("2", "Packet counter 'x' invalid"), 2},
	{"delete a missing chain", "*filter\n-X foo\n", commitFailed, 1},
	{"rename a missing chain", "*filter\n-E foo bar\n", commitFailed, 1},
	{"-A without chain", "*filter\n-A\n", pErr("2", "Unknown argument: '(null)'"), 2},
	{"unknown chain in the second table", "*filter\nCOMMIT\n*nat\n-A PREROUTING -j bogus\n", pErr("4", "Chain 'bogus' does not exist"), 2},
	{"bad ARP opcode", "*filter\n-A FORWARD -p ARP --arp-op Bogus\n", pErr("2", "Problem with specified ARP opcode"), 2},
	{"unknown IP protocol", "*filter\n-A FORWARD -p IPv4 --ip-proto bogusproto\n", pErr("2", "unknown protocol \"bogusproto\" specified"), 2},
	{"bad among MAC", "*filter\n-A FORWARD --among-src 00:11\n", pErr("2", "Invalid MAC address '00:11'"), 2},
	{"bad among IP", "*filter\n-A FORWARD --among-src de:ad:0:be:ee:ff=10.256.0.1\n", pErr("2", "Invalid IP address '10.256.0.1'"), 2},
	{"-i without name", "*filter\n-A FORWARD -i\n", pErr("2", "Unknown argument: '(null)'"), 2},
	{"interface name too long", "*filter\n-A FORWARD -i 0123456789abcdefg\n", pErr("2", "interface name `0123456789abcdefg' must be shorter than IFNAMSIZ (15)"), 2},
	{"stray word", "*filter\n-A FORWARD extra\n", pErr("2", "Bad argument : 'extra'"), 2},
	{"stray word after target", "*filter\n-A FORWARD -j ACCEPT extra\n", pErr("2", "Bad argument : 'extra'"), 2},
	{"port range reversed", "*filter\n-A FORWARD -p IPv4 --ip-proto udp --ip-sport 4:3\n", pErr("2", "invalid portrange (min > max)"), 2},
	{"802_3 without -p Length", "*filter\n-A FORWARD --802_3-sap 0x0a\n", pErr("2", "For 802.3 DSAP/SSAP filtering the protocol must be LENGTH"), 2},
	{"stp range reversed", "*filter\n-A FORWARD --stp-port 2:1\n", pErr("2", "Bad --stp-port-range"), 2},
	{"arpreply without -p ARP", "*nat\n-A PREROUTING -j arpreply\n", kErr("2", "Invalid argument", "PREROUTING"), 4},
	{"vlan without -p 802_1Q", "*filter\n-A FORWARD --vlan-id 2\n", kErr("2", "Invalid argument", "FORWARD"), 4},
}

func TestRestoreErrors(t *testing.T) {
	for _, c := range restoreErrors {
		_, err := (&Loader{}).Load(c.in)
		if err == nil {
			t.Errorf("%s: loaded, want exit %d", c.name, c.code)
			continue
		}
		if err.Stderr != c.stderr || err.ExitCode != c.code {
			t.Errorf("%s: got exit %d\n%s\nwant exit %d\n%s", c.name, err.ExitCode, err.Stderr, c.code, c.stderr)
		}
	}
}

// TestRestoreErrorsKernel: the table above is what the real
// ebtables-restore prints.
func TestRestoreErrorsKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	ns := kerneltest.NewNetns(t)
	for _, c := range restoreErrors {
		_, stderr, code, err := ns.Run(c.in, "ebtables-restore")
		if err != nil {
			t.Fatal(err)
		}
		if stderr != c.stderr || code != c.code {
			t.Errorf("%s: ebtables-restore exit %d\n%s\ntable says exit %d\n%s", c.name, code, stderr, c.code, c.stderr)
		}
	}
}
