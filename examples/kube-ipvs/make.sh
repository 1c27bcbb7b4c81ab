#!/usr/bin/env bash
# Makes the kube-ipvs snapshot: a node as kube-proxy's IPVS mode leaves it
# (the kube-ipvs0 dummy holding the service VIPs, the KUBE-* ipsets and
# the iptables rules that match them, net.ipv4.vs.conntrack=1), taken
# from a scratch namespace with `uswitch snapshot`. This kernel has no
# IPVS, so ipvsadm-save is written by hand next to it (the services
# kube-proxy would program for the same VIPs).
# Run as root from the repository root: bash examples/kube-ipvs/make.sh
set -euo pipefail
ns=usw-mk-kube-ipvs-$$
out=examples/kube-ipvs
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"
x() { ip netns exec "$ns" "$@"; }
x ip link set lo up
# this kernel has no dummy module: veth pairs with their peers up stand in
x ip link add eth0 type veth peer name eth0-peer
x ip link set eth0-peer up
x ip link set eth0 up
x ip addr add 192.168.122.10/24 dev eth0
x ip route add default via 192.168.122.1 dev eth0
x ip link add cni0 type veth peer name cni0-peer
x ip link set cni0-peer up
x ip link set cni0 up
x ip addr add 10.244.0.1/24 dev cni0
# kube-proxy's kube-ipvs0 is a dummy left down: its addresses still
# make local routes
x ip link add kube-ipvs0 type veth peer name kube-ipvs0-peer
x ip addr add 10.96.0.1/32 dev kube-ipvs0
x ip addr add 10.96.0.10/32 dev kube-ipvs0
x ip addr add 10.96.100.50/32 dev kube-ipvs0
x sysctl -qw net.ipv4.ip_forward=1
x ipset create KUBE-CLUSTER-IP hash:ip,port
x ipset add KUBE-CLUSTER-IP 10.96.0.1,tcp:443
x ipset add KUBE-CLUSTER-IP 10.96.0.10,tcp:53
x ipset add KUBE-CLUSTER-IP 10.96.0.10,udp:53
x ipset add KUBE-CLUSTER-IP 10.96.100.50,tcp:80
x ipset create KUBE-LOOP-BACK hash:ip,port,ip
x ipset add KUBE-LOOP-BACK 10.244.0.5,tcp:80,10.244.0.5
x ipset create KUBE-IPVS-IPS hash:ip
for a in 10.96.0.1 10.96.0.10 10.96.100.50; do x ipset add KUBE-IPVS-IPS $a; done
x ipset create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
x ipset add KUBE-NODE-PORT-TCP 30080
x iptables-restore <<'RULES'
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-IPVS-FILTER - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT --reject-with icmp-port-unreachable
COMMIT
RULES
rm -rf "$out.tmp"
go run ./cmd/uswitch snapshot "$out.tmp" --netns "$ns"
for f in "$out.tmp"/*; do mv "$f" "$out/"; done
rmdir "$out.tmp"
cat >"$out/ipvsadm-save" <<'IPVS'
-A -t 10.96.0.1:443 -s rr -p 10800
-a -t 10.96.0.1:443 -r 192.168.122.10:6443 -m -w 1
-A -t 10.96.0.10:53 -s rr
-a -t 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-a -t 10.96.0.10:53 -r 10.244.0.3:53 -m -w 1
-A -u 10.96.0.10:53 -s rr
-a -u 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-a -u 10.96.0.10:53 -r 10.244.0.3:53 -m -w 1
-A -t 10.96.100.50:80 -s rr
-a -t 10.96.100.50:80 -r 10.244.0.5:80 -m -w 1
-a -t 10.96.100.50:80 -r 10.244.0.6:80 -m -w 1
-A -t 192.168.122.10:30080 -s rr
-a -t 192.168.122.10:30080 -r 10.244.0.5:80 -m -w 1
-a -t 192.168.122.10:30080 -r 10.244.0.6:80 -m -w 1
IPVS
# kube-proxy sets net.ipv4.vs.conntrack=1 (its MASQUERADE of scheduled
# packets needs conntrack); this kernel has no such key to capture
echo "net.ipv4.vs.conntrack = 1" >>"$out/sysctl"
echo "snapshot written to $out"
