package experiment

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/uswitch-lab/uswitch/lab"
)

// The built-in generators. Each runs from inside a lab namespace (its
// sockets are made there: lab.InNetns), paces itself against the wall
// clock (request i is due at start + i/rate; late ticks are sent at
// once, none is skipped), and records into its series. They are test
// fixtures of the experiment, not datapath code: a goroutine per HTTP
// request is fine here.

// gen is one running workload.
type gen struct {
	w       lab.Workload
	l       *lab.Lab
	s       *series
	timeout time.Duration
	size    int
	// resent counts dns queries sent again after a timeout
	resent atomic.Int64
	// ln is a tcp-bulk receiver's listener, pc a one-way udp
	// receiver's socket (made before the run)
	ln net.Listener
	pc net.PacketConn
}

// prepare makes what must exist before the run starts: a tcp-bulk
// receiver's listening socket.
func (g *gen) prepare() error {
	if g.w.Listen == "" {
		return nil
	}
	_, port, _ := strings.Cut(g.w.To, ":")
	return g.l.InNetns(g.w.Listen, func() error {
		var err error
		if g.w.Kind == lab.WorkUDP {
			g.pc, err = net.ListenPacket("udp4", "0.0.0.0:"+port)
		} else {
			g.ln, err = net.Listen("tcp4", "0.0.0.0:"+port)
		}
		return err
	})
}

// pace calls fn(i) for i = 0, 1, ... at rate per second from now until
// ctx is done.
func pace(ctx context.Context, rate float64, fn func(i int)) {
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / rate * 1e9))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		fn(i)
	}
}

// errKind names an error for the report: timeout, refused, reset,
// unreachable, eof, other.
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other"
}

func (g *gen) dial(network, addr string, timeout time.Duration, control func(fd uintptr) error) (net.Conn, error) {
	var c net.Conn
	err := g.l.InNetns(g.w.From, func() error {
		d := net.Dialer{Timeout: timeout}
		if control != nil {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = control(fd) }); err != nil {
					return err
				}
				return serr
			}
		}
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// release closes the receiver's socket (a workload that never ran, or
// one that did: closing twice is harmless).
func (g *gen) release() {
	if g.ln != nil {
		g.ln.Close()
	}
	if g.pc != nil {
		g.pc.Close()
	}
}

// run runs the workload until ctx is done; its last requests may take
// up to the timeout longer.
func (g *gen) run(ctx context.Context) {
	switch g.w.Kind {
	case lab.WorkHTTP:
		g.http(ctx)
	case lab.WorkTCPRR:
		g.tcpRR(ctx)
	case lab.WorkUDP:
		g.udp(ctx)
	case lab.WorkDNS:
		g.dns(ctx)
	case lab.WorkTCPBulk:
		g.bulk(ctx)
	}
}

// http: a GET on a new connection per request; the answer's
// X-Served-By names the server.
func (g *gen) http(ctx context.Context) {
	par := g.w.Parallel
	if par == 0 {
		par = 64
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return g.dial(network, addr, g.timeout, nil)
		},
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: g.timeout}
	pace(ctx, float64(g.w.Rate), func(int) {
		start := time.Now()
		select {
		case sem <- struct{}{}:
		default:
			g.s.request(start, 0, "parallel-limit", "")
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := cl.Get(g.w.To)
			if err != nil {
				g.s.request(start, 0, errKind(err), "")
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if err != nil {
				k := errKind(err)
				if k == "other" {
					k = "http-status"
				}
				g.s.request(start, 0, k, "")
				return
			}
			now := time.Now()
			g.s.bytes(now, int(n))
			g.s.request(start, now.Sub(start), "", resp.Header.Get("X-Served-By"))
		}()
	})
	wg.Wait()
}

// tcpRR: one connection to a tcp-echo server (its greeting names the
// server), a message echoed per tick; a broken connection is dialled
// again at the next tick.
func (g *gen) tcpRR(ctx context.Context) {
	size := g.size
	var c net.Conn
	var rd *bufio.Reader
	server := ""
	msg := make([]byte, size)
	buf := make([]byte, size)
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	pace(ctx, float64(g.w.Rate), func(i int) {
		start := time.Now()
		fail := func(err error) {
			g.s.request(start, 0, errKind(err), "")
			if c != nil {
				c.Close()
				c = nil
			}
		}
		if c == nil {
			var err error
			if c, err = g.dial("tcp4", g.w.To, g.timeout, nil); err != nil {
				c = nil
				fail(err)
				return
			}
			c.SetDeadline(time.Now().Add(g.timeout))
			rd = bufio.NewReader(c)
			line, err := rd.ReadString('\n')
			if err != nil {
				fail(err)
				return
			}
			server, _, _ = strings.Cut(line, " ")
		}
		c.SetDeadline(time.Now().Add(g.timeout))
		for j := range msg {
			msg[j] = byte('a' + (i+j)%26)
		}
		if _, err := c.Write(msg); err != nil {
			fail(err)
			return
		}
		if _, err := io.ReadFull(rd, buf); err != nil {
			fail(err)
			return
		}
		if string(buf) != string(msg) {
			fail(errors.New("echo differs"))
			return
		}
		now := time.Now()
		g.s.bytes(now, size)
		g.s.request(start, now.Sub(start), "", server)
	})
}

// udp: Size-byte datagrams at the rate on one socket (one flow), each
// carrying its number; an answer within the timeout is a success.
func (g *gen) udp(ctx context.Context) {
	size := max(g.size, 8)
	c, err := g.dial("udp4", g.w.To, g.timeout, nil)
	if err != nil {
		g.s.request(time.Now(), 0, errKind(err), "")
		if g.pc != nil {
			g.pc.Close()
		}
		return
	}
	defer c.Close()
	if g.pc != nil {
		g.oneWay(ctx, c, size)
		return
	}
	var mu sync.Mutex
	sent := map[uint64]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					g.expire(&mu, sent)
					continue
				}
				return // closed
			}
			if n < size {
				continue
			}
			seq := binary.BigEndian.Uint64(buf[n-size:])
			now := time.Now()
			t, ok := take(&mu, sent, seq)
			if !ok {
				continue // a duplicate, or answered after its timeout
			}
			srv, _, _ := strings.Cut(string(buf[:n-size]), " ")
			g.s.bytes(now, n)
			g.s.request(t, now.Sub(t), "", srv)
		}
	}()
	g.sendNumbered(ctx, c, size, &mu, sent)
	g.drain(&mu, sent)
	c.Close()
	<-done
	g.lost(&mu, sent)
}

// oneWay: datagrams from c to the generator's receiver g.pc, each
// carrying its number; one that arrives within the timeout is a
// success, its latency the one-way delay (one clock: one process).
func (g *gen) oneWay(ctx context.Context, c net.Conn, size int) {
	var mu sync.Mutex
	sent := map[uint64]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			g.pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := g.pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					g.expire(&mu, sent)
					continue
				}
				return
			}
			if n < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			now := time.Now()
			t, ok := take(&mu, sent, seq)
			if ok {
				g.s.bytes(now, n)
				g.s.request(t, now.Sub(t), "", "")
			}
		}
	}()
	g.sendNumbered(ctx, c, size, &mu, sent)
	g.drain(&mu, sent)
	g.pc.Close()
	<-done
	g.lost(&mu, sent)
}

// sendNumbered writes size-byte datagrams to c at the workload's rate
// until ctx is done, each carrying its number (big-endian, in its first
// 8 bytes), noted in sent with the time it left; a failed write is a
// failed request, and not noted.
func (g *gen) sendNumbered(ctx context.Context, c net.Conn, size int, mu *sync.Mutex, sent map[uint64]time.Time) {
	msg := make([]byte, size)
	pace(ctx, float64(g.w.Rate), func(i int) {
		binary.BigEndian.PutUint64(msg, uint64(i))
		now := time.Now()
		mu.Lock()
		sent[uint64(i)] = now
		mu.Unlock()
		if _, err := c.Write(msg); err != nil {
			mu.Lock()
			delete(sent, uint64(i))
			mu.Unlock()
			g.s.request(now, 0, errKind(err), "")
		}
	})
}

// take removes datagram seq from sent and returns its send time (false:
// not there: a duplicate, or expired).
func take(mu *sync.Mutex, sent map[uint64]time.Time, seq uint64) (time.Time, bool) {
	mu.Lock()
	defer mu.Unlock()
	t, ok := sent[seq]
	delete(sent, seq)
	return t, ok
}

// drain waits up to the timeout for the answers still due.
func (g *gen) drain(mu *sync.Mutex, sent map[uint64]time.Time) {
	deadline := time.Now().Add(g.timeout)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := len(sent)
		mu.Unlock()
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lost counts what never came as lost.
func (g *gen) lost(mu *sync.Mutex, sent map[uint64]time.Time) {
	mu.Lock()
	for seq, t := range sent {
		g.s.request(t, 0, "lost", "")
		delete(sent, seq)
	}
	mu.Unlock()
}

// expire counts the datagrams unanswered after the timeout as lost.
func (g *gen) expire(mu *sync.Mutex, sent map[uint64]time.Time) {
	now := time.Now()
	mu.Lock()
	defer mu.Unlock()
	for seq, t := range sent {
		if now.Sub(t) > g.timeout {
			g.s.request(t, 0, "lost", "")
			delete(sent, seq)
		}
	}
}

// dns: per tick a lookup as glibc's resolver makes it: a new socket (a
// new source port: a new conntrack flow), an A and an AAAA query; by
// default both at once from that socket, one after the other with
// single-request; after a timeout the missing queries are sent again
// (attempts 2), from a new socket with single-request-reopen. The
// lookup succeeds when both answers came; its latency includes the
// timeouts.
func (g *gen) dns(ctx context.Context) {
	var wg sync.WaitGroup
	var id atomic.Uint32
	pace(ctx, float64(g.w.Rate), func(int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			base := uint16(id.Add(2))
			err := g.lookup(base)
			if err != nil {
				g.s.request(start, 0, errKind(err), "")
				return
			}
			g.s.request(start, time.Since(start), "", "")
		}()
	})
	wg.Wait()
}

const attempts = 2

func (g *gen) lookup(base uint16) error {
	mode := g.w.Mode
	if mode == "" {
		mode = "parallel"
	}
	queries := []uint16{base, base + 1} // A, AAAA
	answered := map[uint16]bool{}
	var c net.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	open := func() error {
		if c != nil {
			c.Close()
		}
		var err error
		c, err = g.dial("udp4", g.w.To, g.timeout, nil)
		return err
	}
	if err := open(); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	// wait reads answers until every one of want has come or the
	// timeout passes
	wait := func(want []uint16) error {
		c.SetReadDeadline(time.Now().Add(g.timeout))
		for {
			done := true
			for _, q := range want {
				done = done && answered[q]
			}
			if done {
				return nil
			}
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			if n >= dnsLen {
				q := binary.BigEndian.Uint16(buf[n-dnsLen:])
				answered[q] = true
			}
		}
	}
	send := func(q uint16) error {
		_, err := c.Write(dnsQuery(q, q == base+1))
		return err
	}
	var err error
	for a := 0; a < attempts; a++ {
		if a > 0 {
			g.resent.Add(1)
			if mode == "single-request-reopen" {
				if err := open(); err != nil {
					return err
				}
			}
		}
		var missing []uint16
		for _, q := range queries {
			if !answered[q] {
				missing = append(missing, q)
			}
		}
		if mode == "single-request" {
			for _, q := range missing {
				if err = send(q); err != nil {
					break
				}
				if err = wait([]uint16{q}); err != nil {
					break
				}
			}
		} else {
			for _, q := range missing {
				if err = send(q); err != nil {
					break
				}
			}
			if err == nil {
				err = wait(missing)
			}
		}
		if err == nil {
			return nil
		}
	}
	return err
}

// dnsLen is a query's length: a 12-byte header and the question
// "svc.example. IN A|AAAA".
const dnsLen = 12 + 13 + 4

// dnsQuery is a DNS query with id q (the udp-echo server sends it back
// after its own prefix, so an answer ends with it).
func dnsQuery(q uint16, aaaa bool) []byte {
	b := make([]byte, 0, dnsLen)
	b = binary.BigEndian.AppendUint16(b, q)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, 1 question
	b = append(b, 3, 's', 'v', 'c', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0)
	t := uint16(1)
	if aaaa {
		t = 28
	}
	b = binary.BigEndian.AppendUint16(b, t)
	return binary.BigEndian.AppendUint16(b, 1)
}

// bulk: the receiver listens in w.Listen, the sender in w.From writes
// as fast as TCP lets it; the receiver's reads are the goodput. A
// connection that breaks is a failure, and the sender dials again.
func (g *gen) bulk(ctx context.Context) {
	ln := g.ln
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						g.s.bytes(time.Now(), n)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	data := make([]byte, 64<<10)
	for ctx.Err() == nil {
		start := time.Now()
		c, err := g.dial("tcp4", g.w.To, g.timeout, func(fd uintptr) error {
			if g.w.CC == "" {
				return nil
			}
			return syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, g.w.CC)
		})
		if err != nil {
			g.s.conn(start, errKind(err))
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		for {
			c.SetWriteDeadline(time.Now().Add(g.timeout))
			if _, err = c.Write(data); err != nil {
				break
			}
		}
		stop()
		c.Close()
		if ctx.Err() != nil {
			g.s.conn(start, "")
			break
		}
		g.s.conn(start, errKind(err))
	}
	ln.Close()
	wg.Wait()
}
