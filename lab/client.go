package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// Clients that run inside a lab namespace: their sockets are created in
// it (inNetns), so every packet they send enters the namespace's routes
// and crosses uswitch through the TUN.

// Dial connects from inside the namespace ns.
func (l *Lab) Dial(ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	return l.DialFrom(ns, netip.Addr{}, network, addr, timeout)
}

// DialFrom connects from inside the namespace ns with its socket bound
// to the address src (invalid: unbound, the route picks the source).
func (l *Lab) DialFrom(ns string, src netip.Addr, network, addr string, timeout time.Duration) (net.Conn, error) {
	h, ok := l.nss[ns]
	if !ok {
		return nil, fmt.Errorf("no namespace %q in the lab", ns)
	}
	d := net.Dialer{Timeout: timeout}
	if src.IsValid() {
		if strings.HasPrefix(network, "udp") {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
	}
	var c net.Conn
	err := inNetns(h, func() error {
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// HTTPResult is one GET.
type HTTPResult struct {
	Status     int
	Body       string
	ServedBy   string // X-Served-By
	ClientAddr string // X-Client-Addr: the client as the server saw it
	Took       time.Duration
}

// HTTPGet does one GET from inside the namespace ns on a new connection
// (no keep-alive, so each request is a new flow and a new load-balancing
// decision).
func (l *Lab) HTTPGet(ns, url string, timeout time.Duration) (HTTPResult, error) {
	return l.HTTPGetFrom(ns, netip.Addr{}, url, timeout)
}

// HTTPGetFrom is HTTPGet from a socket bound to src (invalid: unbound).
func (l *Lab) HTTPGetFrom(ns string, src netip.Addr, url string, timeout time.Duration) (HTTPResult, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.DialFrom(ns, src, network, addr, timeout)
		},
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: timeout}
	t0 := time.Now()
	resp, err := cl.Get(url)
	if err != nil {
		return HTTPResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return HTTPResult{}, err
	}
	return HTTPResult{Status: resp.StatusCode, Body: string(b), ServedBy: resp.Header.Get("X-Served-By"),
		ClientAddr: resp.Header.Get("X-Client-Addr"), Took: time.Since(t0)}, nil
}

// UDPExchange sends one datagram from inside ns and waits for one answer.
func (l *Lab) UDPExchange(ns, addr string, payload []byte, timeout time.Duration) ([]byte, error) {
	return l.UDPExchangeFrom(ns, netip.Addr{}, addr, payload, timeout)
}

// UDPExchangeFrom is UDPExchange from a socket bound to src (invalid:
// unbound).
func (l *Lab) UDPExchangeFrom(ns string, src netip.Addr, addr string, payload []byte, timeout time.Duration) ([]byte, error) {
	c, err := l.DialFrom(ns, src, "udp4", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(payload); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

var pingID atomic.Uint32

// Ping sends one ICMP echo request from inside ns (a raw socket, root)
// and waits for the matching reply. It returns the round-trip time and
// the address that answered.
func (l *Lab) Ping(ns string, dst netip.Addr, timeout time.Duration) (time.Duration, error) {
	h, ok := l.nss[ns]
	if !ok {
		return 0, fmt.Errorf("no namespace %q in the lab", ns)
	}
	var c net.PacketConn
	if err := inNetns(h, func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	id := uint16(pingID.Add(1)) ^ 0x5a00
	msg := make([]byte, packet.ICMPHeaderLen+32)
	msg[0] = packet.ICMPEcho
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	copy(msg[8:], "uswitch lab ping ................")
	binary.BigEndian.PutUint16(msg[2:], ^packet.Checksum(msg, 0))
	deadline := time.Now().Add(timeout)
	c.SetDeadline(deadline)
	t0 := time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		// Go strips the IPv4 header of an ip4 socket's reads
		b := buf[:n]
		if n >= 8 && b[0] == packet.ICMPEchoReply && binary.BigEndian.Uint16(b[4:]) == id {
			if fa, ok := from.(*net.IPAddr); ok && !fa.IP.Equal(dst.AsSlice()) {
				return 0, fmt.Errorf("echo reply from %v, not %v", fa.IP, dst)
			}
			return time.Since(t0), nil
		}
		if n >= 8 && b[0] == packet.ICMPDestUnreach {
			return 0, fmt.Errorf("destination unreachable (code %d) from %v", b[1], from)
		}
	}
}

// TCPHello connects to a tcp-echo server from inside ns and returns its
// greeting line ("NAME CLIENT").
func (l *Lab) TCPHello(ns, addr string, timeout time.Duration) (string, error) {
	c, err := l.Dial(ns, "tcp4", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	var got []byte
	for !strings.Contains(string(got), "\n") {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got), err
		}
	}
	return strings.TrimSpace(string(got)), nil
}
