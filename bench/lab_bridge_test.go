package bench

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/labtest"
)

// The bridged live-datapath benchmarks: 64-byte UDP between two
// namespaces on one bridge, bridged by uswitch (a lab [[bridge]] whose
// ports are TAP devices into the namespaces) and by the kernel (a bridge
// in a third namespace with veth ports), with
// net.bridge.bridge-nf-call-iptables=1 on both:
//
//	client 10.10.0.2/24 ─ ta ─┐ [uswitch bridge br0 | kernel bridge br0] ┌─ tb ─ server 10.10.0.3/24
//
// Without rules nothing registers conntrack on either side; the
// Rules10k variants put 10,000 FORWARD rules none matches before the
// conntrack rule (bridgeRulesN): br_netfilter hands every bridged
// packet to them, the kernel walks them one by one.

const labBridgeTOML = `
name = "bench-bridge"
[uswitch]
rules = """
RULES"""
[uswitch.sysctl]
"net.bridge.bridge-nf-call-iptables" = 1

[[bridge]]
name = "br0"

[[interface]]
name = "ta"
netns = "P-c"
kind = "tap"
bridge = "br0"
[[interface]]
name = "tb"
netns = "P-s"
kind = "tap"
bridge = "br0"

[[namespace]]
name = "P-c"
addresses = ["10.10.0.2/24"]
[[namespace]]
name = "P-s"
addresses = ["10.10.0.3/24"]
`

// bridgeServer is the server's address on the bridge.
const bridgeServer = "10.10.0.3"

// bridgeRulesN is a FORWARD chain for bridged traffic with n rules at
// its head that no packet matches (as labRulesN), then conntrack's
// ESTABLISHED rule and one accepting the flow's first packet; "" for
// n < 0 (no rules at all).
func bridgeRulesN(n int) string {
	if n < 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A FORWARD -s 172.16.%d.%d/32 -p tcp -m tcp --dport %d -j DROP\n", i/250, 1+i%250, 1024+i)
	}
	b.WriteString("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	fmt.Fprintf(&b, "-A FORWARD -m physdev --physdev-is-bridged -d %s/32 -p udp -m udp --dport %d -j ACCEPT\n", bridgeServer, udpPort)
	b.WriteString("COMMIT\n")
	return b.String()
}

// labBridgePair brings up the bridge lab with ruleset and returns its
// client and server namespaces; it is removed at cleanup.
func labBridgePair(b *testing.B, ruleset string) (client, server string) {
	return upLabPair(b, "bench-bridge.toml", strings.Replace(labBridgeTOML, "RULES", ruleset, 1))
}

// kernelBridgePair makes client, bridge and server namespaces: the
// client's and server's eth0 are veth pairs with the bridge
// namespace's ta and tb, ports of its br0; br_netfilter is on and
// ruleset restored there. Removed at cleanup.
func kernelBridgePair(b *testing.B, ruleset string) (client, server string) {
	cl, br, sv := kernelTrio(b, "b", "ta", "tb")
	in := func(ns string, args ...string) { b.Helper(); labtest.In(b, ns, args...) }
	in(cl, "ip", "addr", "add", "10.10.0.2/24", "dev", "eth0")
	in(cl, "ip", "link", "set", "eth0", "up")
	in(sv, "ip", "addr", "add", bridgeServer+"/24", "dev", "eth0")
	in(sv, "ip", "link", "set", "eth0", "up")
	in(br, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	for _, port := range []string{"ta", "tb"} {
		in(br, "ip", "link", "set", port, "master", "br0")
		in(br, "ip", "link", "set", port, "up")
	}
	in(br, "ip", "link", "set", "br0", "up")
	in(br, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	if ruleset != "" {
		cmd := exec.Command("ip", "netns", "exec", br, "iptables-restore")
		cmd.Stdin = strings.NewReader(ruleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v\n%s", err, out)
		}
	}
	return cl, sv
}

// BenchmarkLabBridgeUDP64Rate / BenchmarkKernelBridgeUDP64Rate and the
// Rules10k pair: forwarding rates (benchUDP64Rate) of 64-byte UDP
// bridged between two namespaces by uswitch's TAP lab and by the
// kernel's bridge, without rules and with 10,000 FORWARD rules under
// br_netfilter. Run with -benchtime 1x.
func BenchmarkLabBridgeUDP64Rate(b *testing.B) {
	c, s := labBridgePair(b, bridgeRulesN(-1))
	benchUDP64RateTo(b, c, s, bridgeServer)
}

func BenchmarkKernelBridgeUDP64Rate(b *testing.B) {
	c, s := kernelBridgePair(b, bridgeRulesN(-1))
	benchUDP64RateTo(b, c, s, bridgeServer)
}

func BenchmarkLabBridgeUDP64Rules10kRate(b *testing.B) {
	c, s := labBridgePair(b, bridgeRulesN(10000))
	benchUDP64RateTo(b, c, s, bridgeServer)
}

func BenchmarkKernelBridgeUDP64Rules10kRate(b *testing.B) {
	c, s := kernelBridgePair(b, bridgeRulesN(10000))
	benchUDP64RateTo(b, c, s, bridgeServer)
}
