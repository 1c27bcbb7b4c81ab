package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/ipv4"

	"github.com/vishvananda/netns"
)

// The built-in servers, so a lab needs nothing installed. Each answers
// with the name of its namespace, so a client sees which server it
// reached, and with the address it saw the client come from (NAT shows):
//
//	tcp-echo  on connect sends "NAME CLIENT\n", then echoes every byte
//	udp-echo  answers each datagram with "NAME CLIENT " + the datagram
//	ftp       an FTP-like server (ftp.go): PORT/EPRT/PASV/EPSV, RETR
//	          sends "NAME CLIENT\n" over the data connection
//	http      GET / -> "NAME\n" (headers X-Served-By: NAME,
//	          X-Client-Addr: CLIENT); GET /bytes/N -> N bytes (0..255
//	          repeating), for transfers
//
// Their listening sockets are created inside the namespace (inNetns);
// the goroutines serving them run anywhere. These are test fixtures of
// the lab, not datapath: a goroutine per TCP connection is fine here.

type server struct {
	ns, kind string
	// routeSrc: a udp-echo that lets the route pick its answers'
	// source (reply_src = "route")
	routeSrc bool
	port     int
	ln       net.Listener
	pc       net.PacketConn
	hs       *http.Server
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
	// closed: Close ran (a server stopped by an experiment's step is
	// closed again with the lab); cerr its error
	closed sync.Once
	cerr   error
	// h is the server's namespace (an ftp server's data connections
	// are made in it)
	h netns.NsHandle
}

// inNS runs fn in the server's namespace.
func (sv *server) inNS(fn func() error) error { return inNetns(sv.h, fn) }

// track records an open connection for Close; untrack closes and
// forgets it.
func (sv *server) track(c net.Conn) bool {
	sv.mu.Lock()
	sv.conns[c] = struct{}{}
	sv.mu.Unlock()
	return true
}

func (sv *server) untrack(c net.Conn) {
	sv.mu.Lock()
	delete(sv.conns, c)
	sv.mu.Unlock()
	c.Close()
}

func startServer(h netns.NsHandle, nsName string, s Server) (*server, error) {
	sv := &server{ns: nsName, kind: string(s.Kind), port: int(s.Port), conns: map[net.Conn]struct{}{}, routeSrc: s.ReplySrc == ReplyRoute, h: h}
	addr := fmt.Sprintf("0.0.0.0:%d", s.Port)
	if s.Bind.IsValid() {
		addr = fmt.Sprintf("%s:%d", s.Bind.Addr, s.Port)
	}
	err := inNetns(h, func() error {
		var err error
		if s.Kind == UDPEcho {
			sv.pc, err = net.ListenPacket("udp4", addr)
		} else {
			sv.ln, err = net.Listen("tcp4", addr)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %s server on port %d: %w", nsName, s.Kind, s.Port, err)
	}
	sv.wg.Add(1)
	switch s.Kind {
	case UDPEcho:
		go sv.udpEcho()
	case TCPEcho:
		go sv.tcpEcho()
	case FTP:
		go sv.ftpServe()
	case HTTP:
		sv.hs = &http.Server{Handler: http.HandlerFunc(sv.serveHTTP)}
		go func() {
			defer sv.wg.Done()
			sv.hs.Serve(sv.ln)
		}()
	}
	return sv, nil
}

// udpEcho answers from the address the datagram was sent to (IP_PKTINFO),
// as a UDP server bound to 0.0.0.0 must for a client whose socket is
// connected to that address: a DR or TUN real server receives the VIP's
// traffic on lo, and a reply from its own address would be dropped.
// With routeSrc it sends as a plain sendto() does: the kernel's route
// picks the source (inet_select_addr), which is how the hostNetwork
// server of kubernetes#95565 answers a pod of its own node from the
// wrong address.
func (sv *server) udpEcho() {
	defer sv.wg.Done()
	pc := ipv4.NewPacketConn(sv.pc)
	dstOK := !sv.routeSrc && pc.SetControlMessage(ipv4.FlagDst, true) == nil
	buf := make([]byte, 65536)
	for {
		n, cm, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		reply := append([]byte(sv.ns+" "+from.String()+" "), buf[:n]...)
		var out *ipv4.ControlMessage
		if dstOK && cm != nil && cm.Dst != nil {
			out = &ipv4.ControlMessage{Src: cm.Dst}
		}
		pc.WriteTo(reply, out, from)
	}
}

func (sv *server) tcpEcho() {
	defer sv.wg.Done()
	for {
		c, err := sv.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		sv.mu.Lock()
		sv.conns[c] = struct{}{}
		sv.mu.Unlock()
		sv.wg.Add(1)
		go func() {
			defer sv.wg.Done()
			defer func() {
				sv.mu.Lock()
				delete(sv.conns, c)
				sv.mu.Unlock()
				c.Close()
			}()
			if _, err := io.WriteString(c, sv.ns+" "+c.RemoteAddr().String()+"\n"); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

func (sv *server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Served-By", sv.ns)
	w.Header().Set("X-Client-Addr", r.RemoteAddr)
	if n, ok := strings.CutPrefix(r.URL.Path, "/bytes/"); ok {
		size, err := strconv.ParseInt(n, 10, 64)
		if err != nil || size < 0 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		bw := bufio.NewWriterSize(w, 32<<10)
		var chunk [256]byte
		for i := range chunk {
			chunk[i] = byte(i)
		}
		for size > 0 {
			k := min(size, int64(len(chunk)))
			if _, err := bw.Write(chunk[:k]); err != nil {
				return
			}
			size -= k
		}
		bw.Flush()
		return
	}
	io.WriteString(w, sv.ns+"\n")
}

// Close stops the server; idempotent.
func (sv *server) Close() error {
	sv.closed.Do(func() { sv.cerr = sv.close() })
	return sv.cerr
}

func (sv *server) close() error {
	var err error
	switch {
	case sv.hs != nil:
		err = sv.hs.Close()
	case sv.ln != nil:
		err = sv.ln.Close()
		sv.mu.Lock()
		for c := range sv.conns {
			c.Close()
		}
		sv.mu.Unlock()
	case sv.pc != nil:
		err = sv.pc.Close()
	}
	sv.wg.Wait()
	return err
}
