package conntrack

import "sync/atomic"

// MemoWords is the size of one direction's Memo, in 64-bit words.
const MemoWords = 7

// Memo is one direction's slot for the datapath's flow cache (the result
// of a packet's whole traversal, kept on its connection so a later packet
// of the same flow finds it with the conntrack lookup it does anyway).
// The datapath writes it under a sequence lock in word 0 and reads it
// without a lock; conntrack never reads it, and a new entry starts with
// it zero (empty).
type Memo struct {
	W [MemoWords]atomic.Uint64
}
