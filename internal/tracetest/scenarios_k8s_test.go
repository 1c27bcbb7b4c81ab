package tracetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The NodePort + hostNetwork research note's cases, node by node: each
// node of examples/labs/k8s-nodeport-hostnetwork.toml as a router
// namespace of the real kernel with the lab's kube-proxy rule set
// (k8s-nodeport-hostnetwork.rules, iptables-nft), its addresses, routes
// and sysctls; the E-cases' packets as they reach that node (the
// client's, the other node's, the pod's, the node's own), traced by
// xtables-monitor and by uswitch on the namespace's snapshot (what
// `uswitch trace` runs), compared line by line.
//
// The rule set is the lab's but for MASQUERADE's --random-fully: the
// answers from the other node are written before the run, so they must
// know the port the masquerade picks, which without --random-fully is
// the client's own when it is free (both sides keep it). The nodes'
// devices are TUNs: b's cni0 is the pod's point-to-point link here, as
// the note's vethp was, and the node has no sockets, so what reaches
// its INPUT is answered by the kernel's own RST or port unreachable
// (uswitch answers as a host without sockets does).

// k8sRules is the lab's kube-proxy rule set with extra (a filter table
// replacing the lab's, or "") and raw TRACE rules.
func k8sRules(t *testing.T, filter string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "labs", "k8s-nodeport-hostnetwork.rules"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.ReplaceAll(string(b), " --random-fully", "")
	if filter != "" {
		r = r[:strings.Index(r, "*filter")] + filter
	}
	return traceAll + r
}

const (
	// kube-proxy 1.9 to ~1.18 under Docker's FORWARD DROP (E3)
	filterE3 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -s 10.244.0.0/16 -m comment --comment "kubernetes forwarding conntrack pod source rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-FORWARD -d 10.244.0.0/16 -m comment --comment "kubernetes forwarding conntrack pod destination rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`
	// today's KUBE-FORWARD under the same policy (E4)
	filterE4 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`
	// a host firewall on b opening only the NodePort range (E5)
	filterE5 = `*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
-A INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`
)

// k8sNodeA and k8sNodeB are the two nodes: eth0 on the segment, b's
// cni0 towards the pod.
var (
	k8sNodeA   = []Iface{{Name: "eth0", Addrs: []string{"192.168.0.1/24"}}}
	k8sNodeB   = []Iface{{Name: "eth0", Addrs: []string{"192.168.0.2/24"}}, {Name: "cni0", Addrs: []string{"10.244.1.1/24"}}}
	k8sSysctls = []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=1"}
	k8sRouteA  = []string{"route add 10.244.1.0/24 via 192.168.0.2 dev eth0"}
)

func k8sScenarios(t *testing.T) []Scenario {
	noLocalnet := []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=0"}
	return []Scenario{
		{
			// E2 through a: DNAT to b's hostNetwork endpoint and
			// MASQUERADE out of eth0, b's answers back to the client;
			// the pod endpoint through a; a pod's request; a's own
			// socket to b's NodePort (no DNAT on a); 127.0.0.1 on a
			// (E6, route_localnet = 1); UDP to the hostNetwork echo
			Name: "k8s-node-a", Ifaces: k8sNodeA, Sysctls: k8sSysctls, IP: k8sRouteA, Rules: k8sRules(t, ""),
			Packets: cat(
				handshake("eth0", "192.168.0.100:40000", "192.168.0.1:30080", "eth0", "192.168.0.2:8080", "192.168.0.1:40000"),
				handshake("eth0", "192.168.0.100:40001", "192.168.0.1:30081", "eth0", "10.244.1.5:80", "192.168.0.1:40001"),
				[]Packet{
					P("tcp 10.244.1.5:41000 > 192.168.0.1:30080 syn seq 1 iif eth0"),
					P("tcp 192.168.0.2:8080 > 192.168.0.1:41000 syn ack 2 seq 9 iif eth0"),
					P("tcp 192.168.0.1:43000 > 192.168.0.2:30080 syn seq 1 local"),
					P("tcp 127.0.0.1:44000 > 127.0.0.1:30080 syn seq 1 local"),
					P("tcp 192.168.0.2:8080 > 192.168.0.1:44000 syn ack 2 seq 9 iif eth0"),
					P("udp 192.168.0.100:45000 > 192.168.0.1:30082 len 8 iif eth0"),
					P("udp 192.168.0.2:8081 > 192.168.0.1:45000 len 8 iif eth0"),
				}),
		},
		{
			// E6 with route_localnet = 0: the DNATed 127.0.0.1 source
			// may not leave by eth0
			Name: "k8s-node-a-route-localnet-0", Ifaces: k8sNodeA, Sysctls: noLocalnet, IP: k8sRouteA, Rules: k8sRules(t, ""),
			Packets: []Packet{
				P("tcp 127.0.0.1:44000 > 127.0.0.1:30080 syn seq 1 local"),
				P("tcp 192.168.0.1:43000 > 192.168.0.2:30080 syn seq 1 local"),
			},
		},
		{
			// E3: the SYN passes by its mark, the hostNetwork
			// endpoint's SYN-ACK (192.168.0.2:8080, no pod address) is
			// dropped by the policy, so is the retransmitted SYN; the
			// pod endpoint's answers pass (E3c)
			Name: "k8s-node-a-e3", Ifaces: k8sNodeA, Sysctls: k8sSysctls, IP: k8sRouteA, Rules: k8sRules(t, filterE3),
			Packets: cat([]Packet{
				P("tcp 192.168.0.100:40000 > 192.168.0.1:30080 syn seq 1000 iif eth0"),
				P("tcp 192.168.0.2:8080 > 192.168.0.1:40000 syn ack 1001 seq 5000 iif eth0"),
				P("tcp 192.168.0.100:40000 > 192.168.0.1:30080 syn seq 1000 iif eth0"),
			}, handshake("eth0", "192.168.0.100:40001", "192.168.0.1:30081", "eth0", "10.244.1.5:80", "192.168.0.1:40001")),
		},
		{
			// E4: today's KUBE-FORWARD under the DROP policy
			Name: "k8s-node-a-e4", Ifaces: k8sNodeA, Sysctls: k8sSysctls, IP: k8sRouteA, Rules: k8sRules(t, filterE4),
			Packets: handshake("eth0", "192.168.0.100:40000", "192.168.0.1:30080", "eth0", "192.168.0.2:8080", "192.168.0.1:40000"),
		},
		{
			// E1 (DNAT to b's own address, INPUT, no SNAT: no socket
			// here, so the kernel's RST), E1c (the pod, masqueraded out
			// of cni0), E2's arrival from a (already masqueraded), the
			// pod to its own node's NodePort, b's own socket (hairpin)
			// and 127.0.0.1 (E6), E7: the pod's UDP to the hostNetwork
			// echo, the echo's answer from cni0's address (the route's
			// source: a flow of its own, no reverse DNAT) and from the
			// bound address (the fix: the reply tuple)
			Name: "k8s-node-b", Ifaces: k8sNodeB, Sysctls: k8sSysctls, Rules: k8sRules(t, ""),
			Packets: cat([]Packet{
				P("tcp 192.168.0.100:40000 > 192.168.0.2:30080 syn seq 1000 iif eth0"),
			}, handshake("eth0", "192.168.0.100:40001", "192.168.0.2:30081", "cni0", "10.244.1.5:80", "10.244.1.1:40001"),
				[]Packet{
					P("tcp 192.168.0.1:40002 > 192.168.0.2:8080 syn seq 1 iif eth0"),
					P("tcp 10.244.1.5:41000 > 192.168.0.2:30080 syn seq 1 iif cni0"),
					P("tcp 192.168.0.2:43000 > 192.168.0.2:30080 syn seq 1 local"),
					P("tcp 127.0.0.1:44000 > 127.0.0.1:30080 syn seq 1 local"),
					P("udp 10.244.1.5:41001 > 192.168.0.2:30082 len 8 iif cni0"),
					P("udp 10.244.1.1:8081 > 10.244.1.5:41001 len 8 local"),
					P("udp 10.244.1.5:41002 > 192.168.0.2:30082 len 8 iif cni0"),
					P("udp 192.168.0.2:8081 > 10.244.1.5:41002 len 8 local"),
					P("udp 192.168.0.100:45000 > 192.168.0.2:30082 len 8 iif eth0"),
				}),
		},
		{
			// E5: b's INPUT sees DPORT=8080 after the DNAT: policy
			// DROP for the client, through a, and for the pod; the pod
			// endpoint is forwarded (E5c)
			Name: "k8s-node-b-e5", Ifaces: k8sNodeB, Sysctls: k8sSysctls, Rules: k8sRules(t, filterE5),
			Packets: cat([]Packet{
				P("tcp 192.168.0.100:40000 > 192.168.0.2:30080 syn seq 1000 iif eth0"),
				P("tcp 192.168.0.1:40002 > 192.168.0.2:8080 syn seq 1 iif eth0"),
				P("tcp 10.244.1.5:41000 > 192.168.0.2:30080 syn seq 1 iif cni0"),
			}, handshake("eth0", "192.168.0.100:40001", "192.168.0.2:30081", "cni0", "10.244.1.5:80", "10.244.1.1:40001")),
		},
	}
}

// TestK8sNodePortHostNetworkKernel: the E-cases of the NodePort +
// hostNetwork note on each node, the kernel's traces against uswitch's
// on the node's snapshot.
func TestK8sNodePortHostNetworkKernel(t *testing.T) {
	runScenarios(t, k8sScenarios(t))
}
