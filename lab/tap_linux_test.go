package lab

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tapLab: a client on a TUN, a server namespace on a TAP (an Ethernet
// link with ARP) behind uswitch (testdata/tap.toml; link's fake-device
// test reads it too).
var tapLab = mustRead("testdata/tap.toml")

// sniffer reads every frame of one device inside a namespace through an
// AF_PACKET socket, until stop.
type sniffer struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
	quit   chan struct{}
}

func sniff(t *testing.T, l *Lab, ns, dev string) *sniffer {
	t.Helper()
	s := &sniffer{done: make(chan struct{}), quit: make(chan struct{})}
	proto := int(htons(unix.ETH_P_ALL))
	err := inNetns(l.nss[ns], func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		if err := unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(s.fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		return unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket on %s in %s: %v", dev, ns, err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		flags := 0
		for {
			select {
			case <-s.quit:
				// drain what is queued, then end
				flags = unix.MSG_DONTWAIT
			default:
			}
			n, _, err := unix.Recvfrom(s.fd, buf, flags)
			if err != nil {
				if flags != 0 {
					return
				}
				continue // the timeout: look at quit again
			}
			s.mu.Lock()
			s.frames = append(s.frames, append([]byte(nil), buf[:n]...))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// stop ends the capture (idempotent) and returns the frames seen.
func (s *sniffer) stop() [][]byte {
	select {
	case <-s.quit:
	default:
		close(s.quit)
		<-s.done
		unix.Close(s.fd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames
}

// linkMAC is the MAC of a device inside a lab namespace.
func nsLinkMAC(t *testing.T, l *Lab, ns, dev string) [6]byte {
	t.Helper()
	h, err := netlink.NewHandleAt(l.nss[ns])
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lk, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	if lk.Type() != "tuntap" || lk.Attrs().EncapType != "ether" {
		t.Errorf("%s: type %s, encap %s, want a tuntap on ether", dev, lk.Type(), lk.Attrs().EncapType)
	}
	return [6]byte(lk.Attrs().HardwareAddr)
}

// TestLabTAP: a server namespace on a TAP: ping and TCP across uswitch
// from a client on a TUN; the server's kernel resolved its gateway to
// uswitch's MAC; the frames uswitch writes go from its MAC to the
// namespace's.
func TestLabTAP(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "tap.toml", tapLab)
	l := upLab(t, c)
	cli, srv := p+"-c", p+"-s"
	const to = 3 * time.Second
	ours := DefaultMAC("ts")
	theirs := nsLinkMAC(t, l, srv, "ts")
	if ours == theirs {
		t.Fatalf("uswitch's MAC %s is the namespace's", macString(ours))
	}
	sn := sniff(t, l, srv, "ts")

	t.Run("ping", func(t *testing.T) {
		if _, err := l.Ping(cli, mustAddr("10.10.2.2"), to); err != nil {
			t.Fatalf("ping the server: %v (%v)", err, l.Stats())
		}
		// uswitch's own address on the TAP answers (an engine-made
		// packet, framed from a pooled buffer)
		if _, err := l.Ping(srv, mustAddr("10.10.2.1"), to); err != nil {
			t.Fatalf("ping uswitch from the server: %v (%v)", err, l.Stats())
		}
		if _, err := l.Ping(srv, mustAddr("10.10.1.2"), to); err != nil {
			t.Fatalf("ping the client from the server: %v (%v)", err, l.Stats())
		}
	})
	t.Run("http", func(t *testing.T) {
		r, err := l.HTTPGet(cli, "http://10.10.2.2:8080/", to)
		if err != nil {
			t.Fatalf("GET: %v (%v)", err, l.Stats())
		}
		if r.ServedBy != srv || !strings.HasPrefix(r.ClientAddr, "10.10.1.2:") {
			t.Errorf("served by %q for %q, want %q for the client", r.ServedBy, r.ClientAddr, srv)
		}
		// full-sized segments both ways
		r, err = l.HTTPGet(cli, "http://10.10.2.2:8080/bytes/300000", 10*time.Second)
		if err != nil || len(r.Body) != 300000 {
			t.Fatalf("GET 300000 bytes: %d bytes, %v (%v)", len(r.Body), err, l.Stats())
		}
	})
	t.Run("neighbour", func(t *testing.T) {
		h, err := netlink.NewHandleAt(l.nss[srv])
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		lk, err := h.LinkByName("ts")
		if err != nil {
			t.Fatal(err)
		}
		// the server learned uswitch's MAC from uswitch's request for
		// 10.10.2.2 (arp_process creates the sender's entry); forget
		// it, so the server has to ask and uswitch to answer
		replied := l.Stats().ARPReplied
		h.NeighDel(&netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: netlink.FAMILY_V4, IP: net.ParseIP("10.10.2.1")})
		if _, err := l.Ping(srv, mustAddr("10.10.2.1"), to); err != nil {
			t.Fatalf("ping uswitch from the server: %v (%v)", err, l.Stats())
		}
		if s := l.Stats(); s.ARPReplied <= replied {
			t.Errorf("uswitch answered no ARP request: %v", s)
		}
		ns, err := h.NeighList(lk.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range ns {
			if n.IP.Equal(net.ParseIP("10.10.2.1")) {
				found = true
				if !bytes.Equal(n.HardwareAddr, ours[:]) {
					t.Errorf("the server resolved its gateway to %v, want uswitch's %s", n.HardwareAddr, macString(ours))
				}
			}
		}
		if !found {
			t.Errorf("no neighbour entry for 10.10.2.1 in %v", ns)
		}
		// and uswitch resolved the server
		if got, ok := l.dp.Neighbours("ts")[netip.MustParseAddr("10.10.2.2")]; !ok || got != theirs {
			t.Errorf("uswitch's entry for 10.10.2.2: %s (%v), want %s", macString(got), ok, macString(theirs))
		}
	})
	t.Run("frames", func(t *testing.T) {
		if _, err := l.Ping(cli, mustAddr("10.10.2.2"), to); err != nil {
			t.Fatal(err)
		}
		frames := sn.stop()
		var ip, arp int
		for _, f := range frames {
			if len(f) < 14 || [6]byte(f[6:12]) != ours {
				continue
			}
			if [6]byte(f[0:6]) != theirs && !(binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP && [6]byte(f[0:6]) == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
				t.Errorf("a frame from uswitch to %s: %x", macString([6]byte(f[0:6])), f[:min(len(f), 34)])
			}
			switch binary.BigEndian.Uint16(f[12:]) {
			case unix.ETH_P_IP:
				ip++
			case unix.ETH_P_ARP:
				arp++
			}
		}
		if ip == 0 {
			t.Errorf("no IPv4 frame from uswitch's MAC %s to %s among %d frames", macString(ours), macString(theirs), len(frames))
		}
		if arp == 0 {
			t.Errorf("no ARP from uswitch among %d frames", len(frames))
		}
	})
	s := l.Stats()
	if s.ARPReplied == 0 || s.ARPRequested == 0 {
		t.Errorf("ARP counters: %v", s)
	}
	if m := l.Metrics(); !strings.Contains(m, `uswitch_arp_total{event="request_answered"}`) {
		t.Errorf("metrics without ARP counters:\n%s", m)
	}
}

// tapDRLab: IPVS direct routing over an Ethernet link. The VIP is a
// second address of uswitch's client-side TUN; the real server on a TAP
// holds it on lo. uswitch sends the client's packet, unchanged, to the
// real server's MAC; the replies (from the VIP) come back through
// uswitch, so the TAP accepts a local source (accept_local).
const tapDRLab = `
name = "tap-dr"
[uswitch]
workers = 2
ipvs = "-A -t 10.10.1.100:80 -s rr\n-a -t 10.10.1.100:80 -r 10.10.2.2:80 -g"
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
"net.ipv4.conf.tr.accept_local" = 1
[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.10.1.1/24", "10.10.1.100/32"]
[[interface]]
name = "tr"
netns = "P-rs"
kind = "tap"
mac = "02:75:73:00:00:01"
addresses = ["10.10.2.1/24"]
[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "P-rs"
addresses = ["10.10.2.2/24"]
loopback = ["10.10.1.100/32"]
routes = ["default via 10.10.2.1"]
server = [{ kind = "http", port = 80 }]
`

// TestLabTAPDirectRouting: the client's GET to VIP:80 is answered by the
// real server, and on the real server's link the request is a frame to
// the real server's MAC whose IP destination is still the VIP: only the
// MAC changed.
func TestLabTAPDirectRouting(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "tap-dr.toml", tapDRLab)
	l := upLab(t, c)
	cli, rs := p+"-c", p+"-rs"
	ours := [6]byte{0x02, 0x75, 0x73, 0, 0, 1}
	theirs := nsLinkMAC(t, l, rs, "tr")
	sn := sniff(t, l, rs, "tr")
	r, err := l.HTTPGet(cli, "http://10.10.1.100/", 5*time.Second)
	if err != nil {
		t.Fatalf("GET the VIP: %v (%v)", err, l.Stats())
	}
	if r.ServedBy != rs || !strings.HasPrefix(r.ClientAddr, "10.10.1.2:") {
		t.Errorf("served by %q for %q, want %q for the client", r.ServedBy, r.ClientAddr, rs)
	}
	vip := netip.MustParseAddr("10.10.1.100").As4()
	found := 0
	for _, f := range sn.stop() {
		if len(f) < 14+40 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP {
			continue
		}
		ip := f[14:]
		if ip[9] != syscall.IPPROTO_TCP || [4]byte(ip[16:20]) != vip || binary.BigEndian.Uint16(ip[ip[0]&0xf*4+2:]) != 80 {
			continue
		}
		found++
		if [6]byte(f[0:6]) != theirs || [6]byte(f[6:12]) != ours {
			t.Errorf("request frame %s -> %s, want %s -> %s (the real server's MAC)",
				macString([6]byte(f[6:12])), macString([6]byte(f[0:6])), macString(ours), macString(theirs))
		}
	}
	if found == 0 {
		t.Errorf("no TCP frame to the VIP:80 seen on the real server's link")
	}
}
