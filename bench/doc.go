// Package bench holds uswitch's benchmarks and the side-by-side
// comparisons with the kernel: each kernel benchmark runs the same input
// through the real iptables/kernel in a throw-away network namespace in
// the same `go test -bench` run, so the two numbers form a ratio measured
// on the same machine at the same time.
//
//	go test ./bench -run XXX -bench . -benchtime 3x
package bench
