#!/bin/sh
# bench/compare.sh: the same rule sets through the kernel (iptables-nft and
# iptables-legacy, in a throw-away network namespace, timed by write(2)
# into a TUN device) and through uswitch (Engine.Receive, linear walk and
# compiled classifier), interleaved in one `go test` run. Prints ns/packet
# tables and writes a log-log SVG plot. Needs root (namespaces, TUN, veth);
# without root it says so and exits 0.
#
#   sudo bench/compare.sh [RUNTIME [RUNS]]     defaults: 1s 3
#
# RUNTIME is one run's time budget per engine and point, RUNS the runs
# whose median is reported. USWITCH_COMPARE_SVG names the plot (default
# bench/out/compare.svg); USWITCH_COMPARE_MAXN=N leaves out the sizes
# above N.
set -eu
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/compare.sh: needs root (network namespaces, TUN, veth); skipped" >&2
	exit 0
fi
cd "$(dirname "$0")/.."
USWITCH_COMPARE=1 \
USWITCH_COMPARE_TIME=${1:-1s} \
USWITCH_COMPARE_RUNS=${2:-3} \
USWITCH_COMPARE_SVG=${USWITCH_COMPARE_SVG:-$PWD/bench/out/compare.svg} \
	exec go test ./bench -run '^TestCompareKernel$' -count 1 -v -timeout 60m
