package bench

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/link"
)

// nsRig is what the kernel sides of the comparisons share: a namespace,
// the TUN or TAP whose fd packets are written into, and a netlink handle
// in the namespace for the devices' counters.
type nsRig struct {
	ns   string
	fd   int    // the TUN/TAP's fd: what is written here is received on it
	kind string // "TUN" or "TAP"
	h    *netlink.Handle
}

// newNsRig makes a namespace named from prefix (removed at cleanup, also
// on failure).
func newNsRig(t *testing.T, prefix string) nsRig {
	r := nsRig{ns: labtest.Name(prefix), fd: -1}
	labtest.Netns(t, r.ns)
	return r
}

// newTapBridge makes a namespace named from prefix with IPv6 off, the
// TAP tap0 and the veth port (its peer port+"p") as ports of br0 with no
// multicast snooping (the bridge's own IGMP traffic would cross the
// timed path), extra ip commands run after the ports are added, and
// everything up.
func newTapBridge(t *testing.T, prefix, port string, extra ...[]string) nsRig {
	r := newNsRig(t, prefix)
	labtest.In(t, r.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	r.open(t, "tap0", unix.IFF_TAP|unix.IFF_NO_PI)
	cmds := [][]string{
		{"link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"link", "add", port, "type", "veth", "peer", "name", port + "p"},
		{"link", "set", "tap0", "master", "br0"},
		{"link", "set", port, "master", "br0"},
	}
	cmds = append(cmds, extra...)
	for _, dev := range []string{"lo", "tap0", port, port + "p", "br0"} {
		cmds = append(cmds, []string{"link", "set", dev, "up"})
	}
	for _, args := range cmds {
		labtest.Run(t, append([]string{"ip", "-n", r.ns}, args...)...)
	}
	return r
}

// open makes the TUN or TAP dev (flags: unix.IFF_TUN or IFF_TAP, with
// IFF_NO_PI) in the namespace; its fd is closed at cleanup.
func (r *nsRig) open(t *testing.T, dev string, flags uint16) {
	r.kind = "TAP"
	if flags&unix.IFF_TUN != 0 {
		r.kind = "TUN"
	}
	labtest.InNetns(t, r.ns, func() error {
		fd, err := link.OpenFD(dev, flags)
		r.fd = fd
		return err
	})
	t.Cleanup(func() { unix.Close(r.fd) })
}

// handle opens the netlink handle in the namespace (closed at cleanup).
func (r *nsRig) handle(t *testing.T) {
	h, err := netns.GetFromName(r.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if r.h, err = netlink.NewHandleAt(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.h.Close)
}

// restore runs tool (a *-restore command and its arguments) in the
// namespace with rules on its stdin.
func (r *nsRig) restore(t *testing.T, rules string, tool ...string) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.ns}, tool...)...)
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s in %s: %v\n%s", tool[0], r.ns, err, out)
	}
}

// tx returns a device's tx packet counter.
func (r *nsRig) tx(t *testing.T, dev string) uint64 {
	l, err := r.h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Statistics == nil {
		t.Fatalf("%s: no statistics", dev)
	}
	return l.Attrs().Statistics.TxPackets
}

// writeTimed writes pkt(i) into the TUN/TAP until max packets or d has
// passed, and returns ns/packet and the packets written. It fails t
// unless out sent every one (who and unit name the rig and the packets
// in that message).
func (r *nsRig) writeTimed(t *testing.T, d time.Duration, max int, out, who, unit string, pkt func(i int) []byte) (float64, int) {
	tx0 := r.tx(t, out)
	var werr error
	n, el := timedLoop(d, max, func(i int) {
		if _, err := unix.Write(r.fd, pkt(i)); err != nil && werr == nil {
			werr = err
		}
	})
	if werr != nil {
		t.Fatalf("write to %s: %v", r.kind, werr)
	}
	if sent := r.tx(t, out) - tx0; sent < uint64(n) {
		t.Fatalf("%s: %s sent %d of %d %s: the kernel dropped some", who, out, sent, n, unit)
	}
	return float64(el.Nanoseconds()) / float64(n), n
}
