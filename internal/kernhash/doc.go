// Package kernhash computes the hashes the Linux kernel uses for its hash
// tables, bit for bit, where uswitch must make the choice the kernel makes
// from them: jhash (include/linux/jhash.h; NAT's address within a range,
// NFQUEUE's queue balancing) and hsiphash as built on 64-bit kernels
// (lib/siphash.c; the IPVS maglev scheduler's table).
//
// No Go library reproduces either: jhash is Bob Jenkins' lookup3 with the
// kernel's set-up, and the kernel's 64-bit hsiphash is SipHash-1-3 where
// the siphash packages give SipHash-2-4. The known-answer tests hold
// vectors published with the algorithms (lookup3.c's self-test, the
// kernel's lib/tests/siphash_kunit.c) and values printed by a C program
// written from jhash.h.
//
// Every function is a pure function of its arguments and allocates
// nothing.
package kernhash
