package iptables

import "encoding/binary"

// Helpers shared by the matches' Eval methods.

// hz is the kernel's CONFIG_HZ. Matches that keep time in jiffies
// (xt_recent, xt_hashlimit) count in jiffies of Env.Now so their
// arithmetic, rounding included, is the kernel's. 250 is the value of
// the Debian kernels uswitch is checked against (CONFIG_HZ=250).
const hz = 250

// nsPerJiffy is the length of one jiffy in nanoseconds.
const nsPerJiffy = 1e9 / hz

// jiffiesAt converts an Env.Now time to jiffies.
func jiffiesAt(now int64) int64 { return now / nsPerJiffy }

// msecsToJiffies is msecs_to_jiffies for HZ dividing 1000: rounded up.
func msecsToJiffies(ms uint32) int64 {
	return (int64(ms)*hz + 999) / 1000
}

// timeAfter is time_after(a, b): a is later than b.
func timeAfter(a, b int64) bool { return b-a < 0 }

// be16 reads a big-endian 16-bit value at b[i:]; the caller checks the
// length.
func be16(b []byte, i int) uint16 { return binary.BigEndian.Uint16(b[i:]) }

// fallbackState is the State used when a Ctx carries none. The engine
// always passes its own State (one per network namespace, kept across
// rule-set swaps); this one only serves tools and tests that evaluate
// rules without an engine, so that -m recent, -m hashlimit and -m set
// counters still behave as a single shared namespace would, never as
// fresh empty state per packet.
var fallbackState State

// state returns the Ctx's State, or the fallback one.
func (c *Ctx) state() *State {
	if c.State != nil {
		return c.State
	}
	return &fallbackState
}
