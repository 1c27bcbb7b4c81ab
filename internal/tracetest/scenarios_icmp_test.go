package tracetest

import (
	"fmt"
	"testing"

	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
)

// The host's ICMP rate limits and redirects: ip_rt_send_redirect's
// per-peer backoff, icmp_send's per-peer token bucket (icmp_ratelimit,
// burst 6) and ip_error's bucket, which all share the sender's inet_peer.

// repeat is n copies of the packet form with %d replaced by 1..n.
func repeat(n int, form string) []Packet {
	var out []Packet
	for i := 1; i <= n; i++ {
		out = append(out, P(fmt.Sprintf(form, i)))
	}
	return out
}

var icmpScenarios = []Scenario{
	{
		// a packet forwarded back out of the device it came in on, to
		// a host on the link or through a gateway on it: one redirect
		// per sender, then the backoff (redirect_load << n); an error to
		// the same sender within the second after a redirect finds no
		// tokens (the redirect reset them)
		Name:    "redirect-backoff",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"route add 10.9.0.0/16 via 10.0.1.9"},
		Rules: traceAll + datapathtest.Table("mangle") + `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
COMMIT
`,
		Packets: cat(
			repeat(8, "udp 10.0.1.2:%d > 10.0.1.3:53 iif tun1"),
			[]Packet{
				P("tcp 10.0.1.4:1000 > 10.9.1.1:80 syn iif tun1"),
				P("tcp 10.0.1.4:1000 > 10.9.1.1:80 ack 1 seq 1 iif tun1"),
				P("udp 10.0.1.2:1 > 10.0.1.1:9999 iif tun1"),
				P("udp 10.0.1.5:1 > 10.0.1.1:9999 iif tun1"),
				P("icmp 10.0.1.6 > 10.0.1.7 id 1 seq 1 iif tun1"),
				P("udp 10.0.2.2:1 > 10.0.1.3:53 iif tun2"),
			}),
	},
	{
		// redirects with the nat table loaded: the redirect is RELATED
		// to the forwarded packet's connection, and nat OUTPUT drops it
		// while that connection's NAT is not set up in both directions
		// or is not null (nf_nat_icmp_reply_translation)
		Name:    "redirect-nat",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.2.1/32 -p udp -j DNAT --to-destination 10.0.2.5
-A POSTROUTING -o tun2 -j MASQUERADE
COMMIT
`,
		Packets: []Packet{
			P("udp 10.0.2.2:7 > 10.0.2.1:53 iif tun2"),
			P("udp 10.0.2.5:53 > 10.0.2.1:7 iif tun2"),
			P("udp 10.0.2.3:7 > 10.0.2.4:53 iif tun2"),
			P("udp 10.0.2.6:7 > 10.0.2.7:53 iif tun2"),
		},
	},
	{
		// no conntrack at all: every redirect leaves
		Name:    "redirect-notrack",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"route add 10.9.0.0/16 via 10.0.3.9"},
		Rules:   traceAll,
		Packets: cat(
			repeat(5, "tcp 10.0.3.2:%d > 10.9.0.1:80 syn iif tun3"),
			repeat(3, "icmp 10.0.3.3 > 10.0.3.4 id %d seq 1 iif tun3"),
			[]Packet{
				P("icmp 10.0.3.2 > 10.0.3.1 id 1 seq 1 iif tun3"),
				P("udp 10.0.3.2:1 > 10.0.3.1:9999 iif tun3"),
				P("udp 10.0.3.3:1 > 10.0.3.1:9999 iif tun3"),
			}),
	},
	{
		// port unreachables to one sender: a burst of six, then one a
		// second (icmp_ratelimit 1000 ms); echo replies are not limited
		Name:    "icmp-ratelimit-peer",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   traceAll,
		Packets: cat(
			repeat(9, "udp 10.0.1.2:%d > 10.0.1.1:9999 iif tun1"),
			[]Packet{
				P("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 1 iif tun1"),
				P("udp 10.0.1.2:1 > 10.0.2.2:53 ttl 1 iif tun1"),
				P("udp 10.0.1.3:1 > 10.0.1.1:9999 iif tun1"),
			}),
	},
	{
		// errors to several senders, from INPUT, REJECT in FORWARD,
		// TTL exceeded and ip_error (which spends the same peer's
		// tokens twice: its own bucket, then icmp_send's)
		Name:    "icmp-ratelimit-peers",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"route add unreachable 10.70.0.0/16"},
		Rules: traceAll + `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp --dport 69 -j REJECT
COMMIT
`,
		Packets: cat(
			repeat(4, "udp 10.0.1.2:%d > 10.70.0.1:53 iif tun1"),
			repeat(4, "udp 10.0.1.3:%d > 10.0.2.2:69 iif tun1"),
			repeat(4, "udp 10.0.1.3:%d > 10.0.2.2:53 ttl 1 iif tun1"),
			repeat(4, "udp 10.0.2.2:%d > 10.0.2.1:9999 iif tun2"),
			repeat(4, "udp 10.0.3.3:%d > 10.0.1.2:69 iif tun3"),
			repeat(3, "udp 10.0.1.2:%d > 10.0.1.1:9999 iif tun1"),
		),
	},
}

func TestICMPScenarios(t *testing.T) { runScenarios(t, icmpScenarios) }
