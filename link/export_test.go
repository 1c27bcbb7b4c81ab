package link

// What the external tests (package link_test, which may import lab for a
// lab file's engine configuration) need of the package's insides.

// EthHeaderLen is an Ethernet II header's length.
const EthHeaderLen = ethHeaderLen

// PutEth writes an Ethernet II header for IPv4 at the front of f.
func PutEth(f []byte, dst, src [6]byte) { putEth(f, dst, src, etherTypeIPv4) }

// ARPRequest is the request the TAP port dev sends for target.
func ARPRequest(d *Datapath, dev string, target uint32) []byte {
	return d.byName[dev].l2.request(make([]byte, 64), target)
}

// ARPReply is an ARP reply from sha/spa to ethDst/tpa.
func ARPReply(ethDst, sha [6]byte, spa, tpa string) []byte {
	return arpFrame(ethDst, arpOpReply, sha, spa, tpa, ethDst)
}

// The MACs of the package's tests.
var TestPeerMAC, TestOtherMAC = testPeerMAC, testOtherMAC
