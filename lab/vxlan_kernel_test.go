package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/encap"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// The kernel's VTEP against uswitch's: node a (uswitch, vxlan.calico
// played by the datapath) and a namespace K whose kernel has a real
// vxlan device, Calico-style (vni 4096, port 4789, nolearning, a
// permanent neighbour and an fdb entry for the other side), on one
// Ethernet link (a's eth0 is a TAP into K).
const vxlanKernelLab = `
name = "vk"
[[namespace]]
name = "K"
addresses = ["192.168.0.2/24"]
server = [{ kind = "http", port = 8080 }]
[[namespace]]
name = "P"
addresses = ["10.244.0.5/32"]
routes = ["default dev calia1"]
server = [{ kind = "http", port = 80 }]
[[node]]
name = "a"
[node.uswitch]
workers = 1
routes = ["10.244.0.5/32 dev calia1", "10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink"]
[node.uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[node.interface]]
name = "eth0"
kind = "tap"
netns = "K"
mac = "02:00:00:00:00:01"
addresses = ["192.168.0.1/24"]
[[node.interface]]
name = "vxlan.calico"
kind = "vxlan"
vni = 4096
port = 4789
local = "192.168.0.1"
learning = false
mac = "66:6b:c1:00:00:0a"
addresses = ["10.244.0.0/32"]
neigh = ["10.244.1.0 lladdr 66:6b:c1:00:00:0b"]
fdb = ["66:6b:c1:00:00:0b dst 192.168.0.2"]
[[node.interface]]
name = "calia1"
netns = "P"
`

// TestVXLANKernelInterop: a kernel vxlan device and uswitch's exchange
// real traffic both ways (HTTP and ping from the kernel's side to a pod
// behind node a, HTTP from the pod to K's vxlan address), and the outer headers each side builds are compared
// byte by byte: everything but what the kernel draws at random (IP ID,
// the UDP source port, which must fall in the local port range) and
// what follows from them (the checksums, each checked valid), and the
// inner packets themselves.
func TestVXLANKernelInterop(t *testing.T) {
	needRoot(t)
	testtools.Need(t, "ip", "bridge", "ping")
	c, err := Parse("vk.toml", []byte(vxlanKernelLab))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + s }
	c = c.Rename(ren)
	l := upLab(t, c)
	k, pod := ren("K"), ren("P")
	ipn := func(args ...string) {
		t.Helper()
		a := append([]string{"-n", k}, args...)
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(a, " "), err, out)
		}
	}
	// the kernel's VTEP, as felix makes it
	ipn("link", "add", "vxlan.calico", "address", "66:6b:c1:00:00:0b", "type", "vxlan", "id", "4096", "dstport", "4789",
		"local", "192.168.0.2", "dev", "eth0", "nolearning")
	ipn("addr", "add", "10.244.1.0/32", "dev", "vxlan.calico")
	ipn("link", "set", "vxlan.calico", "up")
	ipn("neigh", "replace", "10.244.0.0", "lladdr", "66:6b:c1:00:00:0a", "dev", "vxlan.calico", "nud", "permanent")
	if out, err := exec.Command("bridge", "-n", k, "fdb", "append", "66:6b:c1:00:00:0a", "dev", "vxlan.calico", "dst", "192.168.0.1").CombinedOutput(); err != nil {
		t.Fatalf("bridge fdb append: %v: %s", err, out)
	}
	ipn("route", "add", "10.244.0.0/26", "via", "10.244.0.0", "dev", "vxlan.calico", "onlink")
	_, dp, err := l.Node("a")
	if err != nil {
		t.Fatal(err)
	}
	caps, cancel := dp.SubscribeCapture("eth0", 4096)
	defer cancel()

	// the kernel to the pod behind uswitch: HTTP and ping from K's
	// vxlan address
	out, err := exec.Command("ip", "netns", "exec", k, "ping", "-c", "2", "-W", "2", "-I", "10.244.1.0", "10.244.0.5").CombinedOutput()
	if err != nil {
		t.Fatalf("ping from the kernel's VTEP to the pod: %v\n%s\nnode a: %v", err, out, l.NodeStats("a"))
	}
	r, err := l.HTTPGet(pod, "http://10.244.1.0:8080/", 3*time.Second)
	if err != nil {
		t.Fatalf("GET from the pod to the kernel's side: %v (node a: %v)", err, l.NodeStats("a"))
	}
	if r.ServedBy != k || !strings.HasPrefix(r.ClientAddr, "10.244.0.5:") {
		t.Errorf("GET from the pod: served by %q seeing %q, want %s seeing 10.244.0.5", r.ServedBy, r.ClientAddr, k)
	}
	r, err = l.HTTPGetFrom(k, netip.MustParseAddr("10.244.1.0"), "http://10.244.0.5/", 3*time.Second)
	if err != nil || r.ServedBy != pod || !strings.HasPrefix(r.ClientAddr, "10.244.1.0:") {
		t.Errorf("GET from the kernel's VTEP to the pod: %v: served by %q seeing %q", err, r.ServedBy, r.ClientAddr)
	}

	// the outer packets: the kernel's (read on eth0) and uswitch's
	// (written); the first echo request and reply of each
	var kern, ours []byte
	deadline := time.After(2 * time.Second)
	for kern == nil || ours == nil {
		select {
		case cp := <-caps:
			q := packet.Packet{Data: cp.Data}
			if q.Decode() != nil || q.Proto != packet.ProtoUDP || q.DstPort != 4789 {
				continue
			}
			vp, err := encap.ParseVXLAN(cp.Data, 4789)
			if err != nil {
				t.Errorf("an outer packet on eth0 does not parse: %v (%x)", err, cp.Data)
				continue
			}
			in := packet.Packet{Data: vp.Frame[14:]}
			if in.Decode() != nil || in.Proto != packet.ProtoICMP {
				continue
			}
			switch {
			case q.Src == packet.MustAddr("192.168.0.2") && in.ICMPType == 8 && kern == nil:
				kern = cp.Data
			case q.Src == packet.MustAddr("192.168.0.1") && in.ICMPType == 0 && ours == nil:
				ours = cp.Data
			}
		case <-deadline:
			t.Fatalf("captured kernel outer %v, uswitch outer %v", kern != nil, ours != nil)
		}
	}
	compareOuter(t, kern, ours)
}

// compareOuter compares two VXLAN outer packets (the kernel's from
// 192.168.0.2 to 192.168.0.1 and uswitch's the other way, each carrying
// an ICMP echo of the same size) byte by byte over the 50 bytes of
// outer IPv4, UDP, VXLAN and inner Ethernet header, with the addresses
// and MACs swapped, masking what the kernel draws at random (IP ID, UDP
// source port) and the checksums that follow from it, which are each
// checked.
func compareOuter(t *testing.T, kern, ours []byte) {
	t.Helper()
	const n = encap.VXLANOverhead
	if len(kern) < n || len(ours) < n {
		t.Fatalf("short outer packets: %d %d", len(kern), len(ours))
	}
	want := append([]byte(nil), kern[:n]...)
	// swap the outer addresses and the inner MACs: the other direction
	copy(want[12:16], kern[16:20])
	copy(want[16:20], kern[12:16])
	copy(want[36:42], kern[42:48])
	copy(want[42:48], kern[36:42])
	got := append([]byte(nil), ours[:n]...)
	masked := map[int]string{4: "ip id", 5: "ip id", 10: "ip checksum", 11: "ip checksum", 20: "udp source port", 21: "udp source port", 26: "udp checksum", 27: "udp checksum"}
	if len(kern) != len(ours) {
		t.Errorf("outer lengths %d (kernel) and %d (uswitch) for echoes of one size", len(kern), len(ours))
	}
	t.Logf("kernel  %x\nuswitch %x", kern[:n], ours[:n])
	var diffs []string
	for i := 0; i < n; i++ {
		if _, skip := masked[i]; skip {
			continue
		}
		if got[i] != want[i] {
			diffs = append(diffs, fmt.Sprintf("byte %d: uswitch %#02x, kernel %#02x", i, got[i], want[i]))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("outer headers differ from the kernel's:\n%s\nkernel %x\nours   %x", strings.Join(diffs, "\n"), kern[:n], ours[:n])
	}
	for _, x := range [][]byte{kern, ours} {
		if packet.Checksum(x[:20], 0) != 0xffff {
			t.Errorf("bad IP checksum: %x", x[:20])
		}
		sp := binary.BigEndian.Uint16(x[20:22])
		if sp < encap.LocalPortMin || sp >= encap.LocalPortMax {
			t.Errorf("UDP source port %d outside the local port range", sp)
		}
		ul := binary.BigEndian.Uint16(x[24:26])
		src, dst := binary.BigEndian.Uint32(x[12:16]), binary.BigEndian.Uint32(x[16:20])
		if binary.BigEndian.Uint16(x[26:28]) == 0 || packet.Checksum(x[20:20+int(ul)], packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, ul)) != 0xffff {
			t.Errorf("UDP checksum absent or bad in %x", x[:n])
		}
	}
}
