// Package linktest has a fake link.Device, so the live datapath runs in
// process, over channels, without root or a kernel device.
package linktest

import (
	"os"
	"sync"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// Dev is a link.Device for tests: Read returns the packets (or frames)
// sent to In, one a call, until Close; Write records copies of what it
// is given.
type Dev struct {
	name string
	// In feeds Read.
	In      chan []byte
	mu      sync.Mutex // guards written
	written [][]byte
	closed  chan struct{}
	once    sync.Once
}

// New makes a device called name.
func New(name string) *Dev {
	return &Dev{name: name, In: make(chan []byte, 64), closed: make(chan struct{})}
}

// Name is the device's name.
func (f *Dev) Name() string { return f.name }

// Read returns the next packet sent to In, or os.ErrClosed after Close.
func (f *Dev) Read(bufs [][]byte, sizes []int) (int, error) {
	select {
	case b := <-f.In:
		sizes[0] = copy(bufs[0], b)
		return 1, nil
	case <-f.closed:
		return 0, os.ErrClosed
	}
}

// Write records copies of the packets.
func (f *Dev) Write(pkts [][]byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pkts {
		f.written = append(f.written, append([]byte(nil), p...))
	}
	return len(pkts), nil
}

// Close ends Read. Idempotent.
func (f *Dev) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// Take returns and forgets what was written.
func (f *Dev) Take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.written
	f.written = nil
	return w
}

// WaitWritten waits up to timeout until n packets were written and
// returns them; fewer (or more) after the timeout is what it returns too,
// for the caller to report.
func (f *Dev) WaitWritten(n int, timeout time.Duration) [][]byte {
	deadline := time.Now().Add(timeout)
	var got [][]byte
	for len(got) < n && time.Now().Before(deadline) {
		got = append(got, f.Take()...)
		if len(got) < n {
			time.Sleep(time.Millisecond)
		}
	}
	return got
}

// InnerUDP is the inner packet of the decap tests: a UDP datagram from
// 10.10.1.2:sport to the VIP 10.20.0.100:7 carrying payload.
func InnerUDP(sport uint16, payload string) []byte {
	return packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.20.0.100"), Proto: packet.ProtoUDP,
		SrcPort: sport, DstPort: 7, Payload: []byte(payload)})
}

// Encap wraps inner in a tunnel packet of kind ("ipip", "gre" or "gue" on
// port 6080) from 10.10.1.2 to dst.
func Encap(kind string, dst string, inner []byte) []byte {
	s := packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr(dst)}
	switch kind {
	case "ipip":
		s.Proto, s.Payload = 4, inner
	case "gre":
		s.Proto, s.Payload = 47, append([]byte{0, 0, 0x08, 0x00}, inner...)
	case "gue":
		s.Proto, s.SrcPort, s.DstPort = packet.ProtoUDP, 50000, 6080
		s.Payload = append([]byte{0, 4, 0, 0}, inner...) // version 0, proto IPIP
	}
	return packet.Build(s)
}
