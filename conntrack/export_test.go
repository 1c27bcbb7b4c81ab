package conntrack

import (
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/packet"
)

// What the external tests (package conntrack_test, which may import the
// engine) use of this package's test helpers.

// CtLab is ctLab: namespaces A and B routed through R, whose kernel
// tracks the forwarded packets.
type CtLab = ctLab

// NewCtLab is newCtLab.
func NewCtLab(t *testing.T) *CtLab { return newCtLab(t) }

// Send injects b from A or B and waits until R's counters saw it.
func (l *ctLab) Send(b []byte) { l.send(b) }

// R is the router namespace.
func (l *ctLab) R() *kerneltest.Netns { return l.r }

// Test packet builders and addresses.
var (
	TCPSpec  = tcpSpec
	UDPSpec  = udpSpec
	ICMPSpec = icmpSpec
	ICMPErr  = icmpErr
	// SCTP packets: SCTPSpec(fromCli, vtag, chunks...).
	SCTPSpec = sctpSpec
)

const (
	CliIP = cliIP
	SrvIP = srvIP
	FS    = packet.TCPSyn
	FA    = packet.TCPAck
	FF    = packet.TCPFin
	FP    = packet.TCPPsh
)

// Must is must.
func Must(t *testing.T, n *kerneltest.Netns, args ...string) { must(t, n, args...) }

// Atoi is atoi.
func Atoi(s string) uint64 { return atoi(s) }
