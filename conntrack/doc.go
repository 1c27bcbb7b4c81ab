// Package conntrack will hold connection tracking: original and reply
// tuples, the bucketed table with an injected clock, and the TCP, UDP and
// ICMP trackers (net/netfilter/nf_conntrack_*.c). Empty until the offline
// datapath issue.
package conntrack
