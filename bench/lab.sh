#!/bin/sh
# bench/lab.sh: the live-datapath benchmarks, uswitch's TUN lab next to
# the kernel forwarding the same traffic over veth with the same rule set,
# and uswitch's NFQUEUE mode (batched and unbatched verdicts) next to the
# kernel, in one `go test` run, and their ratios. Needs root (namespaces,
# TUN, veth, iptables-nft, NFQUEUE).
#
#   sudo bench/lab.sh [BENCHTIME [COUNT]]     defaults: 2s 3
#
# Prints the raw benchmark lines, then the mean of each benchmark over
# COUNT runs and the ratios uswitch/kernel for 64-byte UDP (packets per
# second reaching the server) and bulk TCP (MB/s), through the TUN lab
# and through NFQUEUE.
set -eu
benchtime=${1:-2s}
count=${2:-3}
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test ./bench -run '^$' -bench '^Benchmark((Lab|Kernel)(UDP64|TCP)|NFQueueUDP64)$' \
	-benchtime "$benchtime" -count "$count" 2>&1 | tee "$out"
awk '
/^Benchmark(Lab|Kernel)(UDP64|TCP)/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "pps" || $(i+1) == "MB/s") { sum[name] += $i; n[name]++; unit[name] = $(i+1) }
	}
}
/^BenchmarkNFQueueUDP64/ {
	nq++
	for (i = 3; i < NF; i++) if ($(i+1) ~ /^(kernel|batch|nobatch)/) q[$(i+1)] += $i
}
END {
	print ""
	for (k in sum) printf "%-10s %12.1f %s (mean of %d)\n", k, sum[k]/n[k], unit[k], n[k]
	if (n["LabUDP64"] && n["KernelUDP64"])
		printf "UDP 64-byte pps  uswitch/kernel = %.3f\n", (sum["LabUDP64"]/n["LabUDP64"]) / (sum["KernelUDP64"]/n["KernelUDP64"])
	if (n["LabTCP"] && n["KernelTCP"])
		printf "TCP bulk MB/s    uswitch/kernel = %.3f\n", (sum["LabTCP"]/n["LabTCP"]) / (sum["KernelTCP"]/n["KernelTCP"])
	if (nq) {
		printf "NFQUEUE UDP 64-byte pps (mean of %d): kernel %.1f, batched %.1f (%.1f%% fail-open), unbatched %.1f (%.1f%% fail-open)\n", nq,
			q["kernel-pps"]/nq, q["batch-pps"]/nq, q["batch-%failopen"]/nq, q["nobatch-pps"]/nq, q["nobatch-%failopen"]/nq
		printf "NFQUEUE UDP 64-byte pps  batched/kernel = %.3f  unbatched/kernel = %.3f\n", q["batch/kernel"]/nq, q["nobatch/kernel"]/nq
	}
}' "$out"
! grep -q '^FAIL' "$out"
