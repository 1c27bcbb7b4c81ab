#!/bin/sh
# bench/lab.sh: the live-datapath benchmarks, uswitch's TUN lab next to
# the kernel forwarding the same traffic over veth with the same rule set,
# and uswitch's NFQUEUE mode next to the kernel, in one run, and their
# ratios. Needs root (namespaces, TUN, veth, iptables-nft, NFQUEUE).
#
#   sudo bench/lab.sh [BENCHTIME [COUNT]]     defaults: 2s 3
#
# Two parts, each benchmark COUNT times:
#  - throughput with unpaced senders (sendmmsg as fast as the sockets
#    take packets, BENCHTIME each): 64-byte UDP pps and bulk TCP MB/s,
#    without rules and (UDP) with a 10,000-rule FORWARD chain;
#  - forwarding rates (*Rate): the best 64-byte UDP pps reaching the
#    server over a sweep of paced offered loads (benchUDP64Rate in
#    bench/lab_test.go), for the lab, the kernel, both with the
#    10,000-rule chain, and NFQUEUE mode; and the same bridged between
#    two namespaces on one bridge (bench/lab_bridge_test.go: uswitch's
#    TAP bridge and a kernel bridge, br_netfilter on).
# Prints the raw benchmark lines, then the median of each benchmark and
# the ratios uswitch/kernel.
set -eu
benchtime=${1:-2s}
count=${2:-3}
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test ./bench -run '^$' -bench '^Benchmark((Lab|Kernel)(UDP64|UDP64Rules10k|TCP)|NFQueueUDP64)$' \
	-benchtime "$benchtime" -count "$count" 2>&1 | tee "$out"
go test ./bench -run '^$' -bench '^Benchmark(Lab|Kernel|NFQueue)(Bridge)?UDP64(Rules10k)?Rate$' \
	-benchtime 1x -count "$count" 2>&1 | tee -a "$out"
awk '
function median(k,   m, i, j, t, a) {
	m = n[k]
	for (i = 1; i <= m; i++) a[i] = v[k, i]
	for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return m % 2 ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2
}
function ratio(label, a, b) {
	if (n[a] && n[b]) printf "%-42s %s/%s = %.3f\n", label, a, b, median(a) / median(b)
}
/^Benchmark(Lab|Kernel|NFQueue)(UDP64|TCP)/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "pps" || $(i+1) == "MB/s" || $(i+1) ~ /^(kernel|batch|nobatch)-pps$/) {
			k = name ($(i+1) == "pps" || $(i+1) == "MB/s" ? "" : ":" $(i+1))
			v[k, ++n[k]] = $i; unit[k] = $(i+1)
		}
	}
}
END {
	print ""
	for (k in n) printf "%-28s %12.1f %s (median of %d)\n", k, median(k), unit[k], n[k]
	print ""
	ratio("UDP 64-byte pps, unpaced", "LabUDP64", "KernelUDP64")
	ratio("UDP 64-byte pps, unpaced, 10,000 rules", "LabUDP64Rules10k", "KernelUDP64Rules10k")
	ratio("TCP bulk MB/s", "LabTCP", "KernelTCP")
	ratio("NFQUEUE batched pps, unpaced", "NFQueueUDP64:batch-pps", "NFQueueUDP64:kernel-pps")
	ratio("forwarding rate", "LabUDP64Rate", "KernelUDP64Rate")
	ratio("forwarding rate, 10,000 rules", "LabUDP64Rules10kRate", "KernelUDP64Rules10kRate")
	ratio("forwarding rate, NFQUEUE", "NFQueueUDP64Rate", "KernelUDP64Rate")
	ratio("bridged forwarding rate", "LabBridgeUDP64Rate", "KernelBridgeUDP64Rate")
	ratio("bridged forwarding rate, 10,000 rules", "LabBridgeUDP64Rules10kRate", "KernelBridgeUDP64Rules10kRate")
}' "$out"
! grep -q '^FAIL' "$out"
