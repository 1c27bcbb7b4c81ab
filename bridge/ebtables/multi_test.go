package ebtables

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// Rules with several extensions, user chains, counters and nat targets:
// field order, defaults, sorted user chains, and ebtables-nft 1.8.9's
// dropping of the middle extensions of a rule with three or more.

var multiInputs = []string{`*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:zz RETURN
:aa DROP
-A FORWARD --limit 5/min -p IPv4 --ip-src 10.0.0.0/8 -j ACCEPT
-A FORWARD --log --pkttype-type host -j zz
-A FORWARD --nflog-group 2 --log-level info --mark 0x5 -j aa
-A FORWARD -p IPv4 --among-src 0:1:2:3:4:5 --ip-proto udp -i eth0 -o eth1 -s 00:01:02:03:04:05 -d ! Multicast -j CONTINUE
-A FORWARD -p ARP --arp-ip-src 1.2.3.4 --log-arp --limit 1/h -j DROP
-A FORWARD -p 0x0600 -j ACCEPT
-A FORWARD -p ipv6 --ip6-src fe80::1/10 --ip6-proto 17 --ip6-dport 546 -j RETURN
-A FORWARD --limit 7/day --limit-burst 1
-A FORWARD --limit 3600/hour
-A FORWARD -c 7 9 -p LLDP -j ACCEPT
-A zz -j mark --mark-and 0xff --mark-target RETURN
-A aa --stp-type tcn --stp-flags 0x81
*nat
:PREROUTING DROP
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p ARP -i eth0 -j arpreply --arpreply-mac 2:0:0:0:0:1 --arpreply-target RETURN
-A PREROUTING -j dnat --to-destination 2:0:0:0:0:2
-A POSTROUTING -o e+ -j snat --to-source 2:0:0:0:0:3 --snat-target DROP --snat-arp
-A OUTPUT -j dnat --to-dst ff:ff:ff:ff:ff:ff --dnat-target CONTINUE
`, `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A FORWARD --log --limit 1/s --mark 5 --pkttype-type host
-A FORWARD --mark 1 --limit 1/s --pkttype-type host --among-src 0:0:0:0:0:1
-A FORWARD --log --nflog --log-ip
-A FORWARD -p IPv4 --ip-src 1.2.3.4 --mark 1 --limit 1/s
-A FORWARD --nflog-prefix y --log-prefix x
-A FORWARD -p ARP --arp-op Request --log --limit 1/s
`}

// multiWant is ebtables-save -c of multiInputs[0] on this machine.
const multiWant = `*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:aa DROP
:zz RETURN
[0:0] -A FORWARD -p IPv4 --limit 5/min --limit-burst 5 --ip-src 10.0.0.0/8 -j ACCEPT
[0:0] -A FORWARD --log-level notice --pkttype-type host -j zz
[0:0] -A FORWARD --nflog-group 2 --mark 0x5 -j aa
[0:0] -A FORWARD -p IPv4 -s 00:01:02:03:04:05 -d ! Multicast -i eth0 -o eth1 --among-src 0:1:2:3:4:5 --ip-proto udp -j CONTINUE
[0:0] -A FORWARD -p ARP --arp-ip-src 1.2.3.4 --limit 1/hour --limit-burst 5 -j DROP
[0:0] -A FORWARD -p Length -j ACCEPT
[0:0] -A FORWARD -p IPv6 --ip6-src fe80::/10 --ip6-proto udp --ip6-dport 546 -j RETURN
[0:0] -A FORWARD --limit 7/day --limit-burst 1 -j CONTINUE
[0:0] -A FORWARD --limit 1/sec --limit-burst 5 -j CONTINUE
[7:9] -A FORWARD -p LLDP -j ACCEPT
[0:0] -A aa --stp-type tcn --stp-flags 129 -j CONTINUE
[0:0] -A zz -j mark --mark-and 0xff --mark-target RETURN
*nat
:PREROUTING DROP
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
[0:0] -A PREROUTING -p ARP -i eth0 -j arpreply --arpreply-mac 02:00:00:00:00:01 --arpreply-target RETURN
[0:0] -A PREROUTING -j dnat --to-dst 02:00:00:00:00:02 --dnat-target ACCEPT
[0:0] -A OUTPUT -j dnat --to-dst ff:ff:ff:ff:ff:ff --dnat-target CONTINUE
[0:0] -A POSTROUTING -o e+ -j snat --to-src 02:00:00:00:00:03 --snat-arp --snat-target DROP
`

func TestMultiExt(t *testing.T) {
	rs, err := (&Loader{}).Load(multiInputs[0])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rs.Save(&b, SaveOptions{Counters: true})
	if b.String() != multiWant {
		t.Errorf("got\n%s\nwant\n%s", b.String(), multiWant)
	}
}

func TestMultiExtKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	for i, in := range multiInputs {
		ns := kerneltest.NewNetns(t)
		if _, stderr, code, err := ns.Run(in, "ebtables-restore"); err != nil || code != 0 {
			t.Fatalf("input %d: ebtables-restore exit %d: %s %v", i, code, stderr, err)
		}
		out, _, _, err := ns.Run("", "ebtables-save", "-c")
		if err != nil {
			t.Fatal(err)
		}
		rs, lerr := (&Loader{}).Load(in)
		if lerr != nil {
			t.Fatal(lerr)
		}
		var b strings.Builder
		rs.Save(&b, SaveOptions{Counters: true})
		if want := kerneltest.StripComments(out); b.String() != want {
			t.Errorf("input %d:\n--- uswitch\n%s--- ebtables-save\n%s", i, b.String(), want)
		}
	}
}
