package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/packet"
	"golang.org/x/sys/unix"
)

// TestOffloadTransfer sends 24 MB through the test lab's TCP echo on
// the wan host (MASQUERADE, conntrack, the FORWARD policy) in each
// datapath mode and compares SHA-256 at both ends. With offloads, the
// client's kernel hands uswitch super-packets it cuts into segments and
// the wan's kernel gets coalesced ones (Stats.GSOIn, GROOut), and a
// capture sees only real packets, each under the MTU with valid
// checksums.
func TestOffloadTransfer(t *testing.T) {
	needRoot(t)
	for _, m := range []struct {
		name, toml string
		offload    bool
	}{
		{"offload", "offload = true", true},
		{"offload workers 1 queue", "offload = true\nqueues = 1\ninline = false", true},
		{"offload workers 2 queues", "offload = true\nqueues = 2\ninline = false", true},
		{"no offload", "offload = false", false},
	} {
		t.Run(m.name, func(t *testing.T) {
			p := uniquePrefix()
			src := strings.ReplaceAll(testLab, "P-", p+"-")
			src = strings.Replace(src, "[uswitch]\n", "[uswitch]\n"+m.toml+"\n", 1)
			c, err := Parse("test.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			l := upLab(t, c)
			wan := p + "-wan"
			caps, cancel := l.dp.SubscribeCapture("any", 1<<16)
			defer cancel()
			var bad []string
			capDone := make(chan int)
			capStop := make(chan struct{})
			go func() {
				n := 0
				for {
					var cp link.Captured
					select {
					case cp = <-caps:
					case <-capStop:
						capDone <- n
						return
					}
					n++
					pk := packet.Packet{Data: cp.Data}
					switch {
					case len(cp.Data) > 1500:
						bad = append(bad, "longer than the MTU")
					case pk.Decode() != nil:
						bad = append(bad, "does not decode")
					case !pk.TransportChecksumOK():
						bad = append(bad, "bad checksum")
					}
				}
			}()

			conn, err := l.Dial(p+"-c", "tcp4", "203.0.113.2:7", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			const size = 24 << 20
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*131>>5) ^ byte(i>>13)
			}
			sum := sha256.Sum256(data)
			go func() {
				conn.Write(data)
			}()
			// the echo server's greeting line, then the data
			greeting := wan + " 203.0.113.1:"
			var line []byte
			one := make([]byte, 1)
			for !bytes.HasSuffix(line, []byte("\n")) {
				if _, err := conn.Read(one); err != nil {
					t.Fatalf("greeting: %v", err)
				}
				line = append(line, one[0])
			}
			if !strings.HasPrefix(string(line), greeting) {
				t.Fatalf("greeting %q", line)
			}
			h := sha256.New()
			n, err := io.CopyN(h, conn, size)
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			var got [32]byte
			h.Sum(got[:0])
			if got != sum {
				t.Errorf("the %d bytes echoed differ from the %d sent", n, size)
			}
			cancel()
			close(capStop)
			s := l.Stats()
			t.Logf("datapath: %v", s)
			if m.offload && (s.GSOIn == 0 || s.GROOut == 0) {
				t.Errorf("offload on but %d super-packets in, %d out", s.GSOIn, s.GROOut)
			}
			if !m.offload && s.GSOIn+s.GROOut != 0 {
				t.Errorf("offload off but %d super-packets in, %d out", s.GSOIn, s.GROOut)
			}
			if s.OffloadErrors != 0 || s.Malformed != 0 || s.TxErrors != 0 {
				t.Errorf("errors: %v", s)
			}
			// the established flow's packets go through the flow cache
			if s.FlowCached*2 < s.Forwarded {
				t.Errorf("%d of %d forwarded packets from the flow cache, want at least half", s.FlowCached, s.Forwarded)
			}
			if k := <-capDone; len(bad) > 0 || k < size/1500 {
				t.Errorf("%d of %d captured packets bad (%v)", len(bad), k, bad[:min(len(bad), 1)])
			}
		})
	}
}

// TestOffloadUDPBurst sends a burst of small datagrams from the client
// to a socket on the wan host: batches carry many datagrams of the
// flow, which uswitch writes as UDP_L4 super-packets where the kernel
// has USO; every datagram that arrives must be one that was sent,
// whole, and arrive once.
func TestOffloadUDPBurst(t *testing.T) {
	needRoot(t)
	c, p := testConfig(t)
	l := upLab(t, c)
	var srv *net.UDPConn
	labtest.InNetns(t, p+"-wan", func() error {
		var err error
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 9999})
		if err != nil {
			return err
		}
		// SO_RCVBUFFORCE (root): SetReadBuffer is capped by the
		// namespace's net.core.rmem_max (208 KiB), a few hundred
		// datagrams, which a burst overruns whenever the reader is
		// descheduled
		rc, err := srv.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		}); err != nil {
			return err
		}
		return serr
	})
	defer srv.Close()
	const n = 20000
	got := make([]int, n)
	done := make(chan int)
	go func() {
		bad := 0
		buf := make([]byte, 2048)
		// the first datagram comes after the txqueuelen change and the
		// dial below (seconds on a loaded machine: a CI run with other
		// work saw the reader give up before it); then a second of
		// quiet ends the burst
		wait := 20 * time.Second
		for {
			srv.SetReadDeadline(time.Now().Add(wait))
			wait = time.Second
			k, err := srv.Read(buf)
			if err != nil {
				done <- bad
				return
			}
			seq := int(binary.BigEndian.Uint32(buf))
			if k != 36 || seq >= n || !bytes.Equal(buf[4:k], bytes.Repeat([]byte{byte(seq)}, 32)) {
				bad++
				continue
			}
			got[seq]++
		}
	}()
	// the client's TUN queue holds the whole burst (its ring is
	// txqueuelen long, 500 by default: a burst outruns a reader that is
	// descheduled for a moment, and tun_net_xmit drops)
	if out, err := exec.Command("ip", "-n", p+"-c", "link", "set", "dev", "tc", "txqueuelen", "20000").CombinedOutput(); err != nil {
		t.Fatalf("txqueuelen: %v: %s", err, out)
	}
	conn, err := l.Dial(p+"-c", "udp4", "203.0.113.2:9999", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := make([]byte, 36)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		copy(msg[4:], bytes.Repeat([]byte{byte(i)}, 32))
		conn.Write(msg)
	}
	bad := <-done
	arrived, dup := 0, 0
	for _, k := range got {
		if k > 0 {
			arrived++
		}
		if k > 1 {
			dup++
		}
	}
	s := l.Stats()
	t.Logf("%d of %d datagrams arrived; datapath: %v", arrived, n, s)
	// UDP has no flow control: a few datagrams may be lost to a full
	// socket or TUN queue on a loaded machine, but not more than a tenth
	if bad > 0 || dup > 0 || arrived < n*9/10 {
		t.Errorf("%d bad, %d duplicated, %d of %d arrived (want at least 90%%)", bad, dup, arrived, n)
	}
	// the flow's datagrams were written coalesced, as UDP_L4
	// super-packets, where the kernel takes them (TUN_F_USO4, 6.2)
	if kernelAtLeast(6, 2) && s.GROOut == 0 {
		t.Errorf("no UDP super-packet written on a kernel with USO: %v", s)
	}
	if s.OffloadErrors != 0 || s.TxErrors != 0 {
		t.Errorf("errors: %v", s)
	}
}

// kernelAtLeast reports whether the running kernel's release is at least
// major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}
