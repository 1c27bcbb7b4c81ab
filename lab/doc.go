// Package lab runs uswitch's live lab: network namespaces joined by TUN
// devices whose other end is uswitch, which routes, filters and NATs
// their real traffic through its engine (Up, Lab.Close, Down).
//
// A lab is a TOML file (Load, Parse; default.toml is the default lab).
// Unknown keys and bad values are errors naming the key and the line
// (ConfigError). The tables:
//
//	name = "NAME"                       printed only
//	[uswitch]                           uswitch's own state: workers, seed,
//	                                    routes, ip_rules, no_default_rules,
//	                                    rules | rules_file, [uswitch.sysctl]
//	  queues = N                        queues per TUN (IFF_MULTI_QUEUE), a
//	                                    reader each (default: workers)
//	  offload = true                    virtio-net header: TCP (and UDP)
//	                                    super-packets from the namespaces are
//	                                    cut into segments, the segments
//	                                    uswitch writes coalesced (offload.go;
//	                                    default true; TUN only)
//	  inline = true                     each queue's reader runs the engine
//	                                    itself, no worker hand-off (default
//	                                    true; false: readers -> workers by
//	                                    flow hash)
//	[[interface]]                       one of uswitch's TUNs, in a namespace
//	  name, netns, addresses, mtu
//	  offload = false                   this TUN's own [uswitch] offload
//	  kind = "tun" | "tap"              tun (default): IPv4 packets, no link
//	                                    header; tap: Ethernet frames, with
//	                                    ARP and a neighbour table (tap.go)
//	  mac = "02:75:73:00:00:01"         uswitch's MAC on a tap (default:
//	                                    02:75:73 and three bytes hashed from
//	                                    the name, DefaultMAC)
//	  decap = "ipip" | "gre" | "gue:PORT"
//	                                    uswitch plays the namespace's tunnel
//	                                    device: a tunnel packet of that kind
//	                                    it writes to this TUN, addressed to
//	                                    one of the namespace's addresses, is
//	                                    handed over as its inner packet
//	                                    (an IPVS TUN real server, decap.go)
//	[[namespace]]
//	  name = "usw-rs1"
//	  addresses = ["10.10.2.2/24"]      on its TUN
//	  loopback = ["10.20.0.100/32"]     extra addresses on its lo (a DR/TUN
//	                                    real server's VIP)
//	  routes = ["default via 10.10.2.1", "10.30.0.0/16 via 10.30.1.1 dev veth-gw",
//	            "default via 10.30.1.1 table 100"]
//	                                    PREFIX [via GW] [dev NAME] [table N]:
//	                                    NAME its TUN or one of its [[link]]
//	                                    ends (default: its TUN, or without
//	                                    one where the gateway is); N a
//	                                    number, main, local or default
//	  ip_rules = ["from 10.10.2.2 lookup 100 priority 100"]
//	                                    `ip rule` arguments: [not] from to
//	                                    iif oif fwmark[/MASK] tos ipproto
//	                                    sport dport, then lookup N, goto P,
//	                                    nop, blackhole, unreachable or
//	                                    prohibit, and an optional priority
//	  sysctl = { "net.ipv4.ip_forward" = 1, "net.ipv4.conf.all.rp_filter" = 0 }
//	                                    written to its /proc/sys; net.ipv4.*
//	                                    only; ip_forward first, then sorted;
//	                                    a device's own (conf.DEV.*) once the
//	                                    devices exist
//	  server = [{ kind = "http", port = 8080 }]
//	                                    built-in http, tcp-echo, udp-echo,
//	                                    ftp (FTP-like: PORT/EPRT/PASV/EPSV)
//	[[link]]                            a veth pair straight between two
//	                                    namespaces, outside uswitch
//	  a_netns = "usw-rs1"   a_name = "veth-gw"   a_addresses = ["10.30.1.2/24"]
//	  b_netns = "usw-gw"    b_name = "veth-rs1"  b_addresses = ["10.30.1.1/24"]
//	  mtu = 1500                        optional (68-65535)
//	[[demo]]                            the demonstration's steps: from, one
//	                                    of http, ping, udp, tcp; count, note;
//	                                    expect_refused = true: a tcp step
//	                                    whose connection must be reset;
//	                                    expect_fail = true: a step that
//	                                    shows a failure (it must fail)
//
// Everything the lab makes lives inside its namespaces (the TUNs are
// created there, both veth ends are created there, addresses, routes,
// rules and sysctls are the namespaces' own), so removing the
// namespaces by their names removes it all, also after a crash (Down).
// Nothing in a lab routes out of the machine.
package lab
