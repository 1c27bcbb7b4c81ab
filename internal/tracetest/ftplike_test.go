package tracetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"
)

// A small FTP-like server and client for the helper tests: the control
// connection speaks the lines nf_conntrack_ftp looks at (PORT, EPRT,
// 227, 229) and each data connection carries one line. The server runs
// in namespace srvNS, the client in cliNS; every dial happens inside its
// namespace (netnsrun), so sockets belong to the right stack.

// ftpServe answers one control connection on ln. An active transfer
// (after PORT/EPRT) dials on RETR; a passive one (PASV/EPSV) listens on
// a new port of the control connection's local address.
func ftpServe(ln net.Listener, srvNS string) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) error { _, err := io.WriteString(c, s+"\r\n"); return err }
	if err := say("220 uswitch ftp-like ready"); err != nil {
		return err
	}
	var active string // address to dial on RETR
	var pasv net.Listener
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "USER":
			say("331 ok")
		case "PORT":
			a, err := parseNumbers(arg)
			if err != nil {
				return err
			}
			active = a
			say("200 PORT ok")
		case "EPRT":
			f := strings.Split(arg, "|")
			if len(f) != 5 {
				return fmt.Errorf("bad EPRT %q", arg)
			}
			active = net.JoinHostPort(f[2], f[3])
			say("200 EPRT ok")
		case "PASV", "EPSV":
			host, _, _ := net.SplitHostPort(c.LocalAddr().String())
			err := netnsrun.InNamed(srvNS, func() (err error) {
				pasv, err = net.Listen("tcp4", net.JoinHostPort(host, "0"))
				return err
			})
			if err != nil {
				return err
			}
			p := pasv.Addr().(*net.TCPAddr).Port
			if verb == "PASV" {
				ip := net.ParseIP(host).To4()
				say(fmt.Sprintf("227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)", ip[0], ip[1], ip[2], ip[3], p>>8, p&0xff))
			} else {
				say(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", p))
			}
		case "RETR":
			var d net.Conn
			if pasv != nil {
				say("150 opening")
				d, err = pasv.Accept()
				pasv.Close()
				pasv = nil
			} else {
				err = netnsrun.InNamed(srvNS, func() (err error) {
					d, err = net.DialTimeout("tcp4", active, 5*time.Second)
					return err
				})
				if err == nil {
					say("150 opening")
				}
			}
			if err != nil {
				return err
			}
			io.WriteString(d, "data for "+arg+"\n")
			d.Close()
			say("226 done")
		case "QUIT":
			say("221 bye")
			return nil
		default:
			say("500 what")
		}
	}
}

// parseNumbers reads a,b,c,d,p1,p2.
func parseNumbers(s string) (string, error) {
	f := strings.Split(s, ",")
	if len(f) != 6 {
		return "", fmt.Errorf("bad numbers %q", s)
	}
	var n [6]int
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil {
			return "", err
		}
		n[i] = v
	}
	return net.JoinHostPort(fmt.Sprintf("%d.%d.%d.%d", n[0], n[1], n[2], n[3]), strconv.Itoa(n[4]<<8|n[5])), nil
}

// ftpClient runs a session against server (host:port) from cliNS: a
// transfer with each of PORT, PASV, EPSV and EPRT, then a last PORT
// that is never used (its expectation stays), then QUIT. It returns the
// data lines received.
func ftpClient(server, cliNS string) ([]string, error) {
	var c net.Conn
	err := netnsrun.InNamed(cliNS, func() (err error) {
		c, err = net.DialTimeout("tcp4", server, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	expect := func(code string) (string, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(line, code) {
			return "", fmt.Errorf("want %s, got %q", code, line)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	send := func(s string) error { _, err := io.WriteString(c, s+"\r\n"); return err }
	local := c.LocalAddr().(*net.TCPAddr).IP.To4()
	remote, _, _ := net.SplitHostPort(server)
	if _, err := expect("220"); err != nil {
		return nil, err
	}
	send("USER anonymous")
	if _, err := expect("331"); err != nil {
		return nil, err
	}
	var got []string
	readData := func(d net.Conn) error {
		defer d.Close()
		d.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(d)
		got = append(got, strings.TrimSpace(string(b)))
		return err
	}
	active := func(cmd func(port int) string, name string) error {
		var ln net.Listener
		err := netnsrun.InNamed(cliNS, func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(local.String(), "0"))
			return err
		})
		if err != nil {
			return err
		}
		defer ln.Close()
		send(cmd(ln.Addr().(*net.TCPAddr).Port))
		if _, err := expect("200"); err != nil {
			return err
		}
		send("RETR " + name)
		d, err := ln.Accept()
		if err != nil {
			return err
		}
		if err := readData(d); err != nil {
			return err
		}
		if _, err := expect("150"); err != nil {
			return err
		}
		_, err = expect("226")
		return err
	}
	passive := func(verb, name string) error {
		send(verb)
		line, err := expect(map[string]string{"PASV": "227", "EPSV": "229"}[verb])
		if err != nil {
			return err
		}
		var addr string
		if verb == "PASV" {
			i := strings.IndexByte(line, '(')
			j := strings.IndexByte(line, ')')
			if i < 0 || j < i {
				return fmt.Errorf("bad 227 %q", line)
			}
			if addr, err = parseNumbers(line[i+1 : j]); err != nil {
				return err
			}
		} else {
			i := strings.Index(line, "(|||")
			j := strings.LastIndex(line, "|)")
			if i < 0 || j < i {
				return fmt.Errorf("bad 229 %q", line)
			}
			addr = net.JoinHostPort(remote, line[i+4:j])
		}
		send("RETR " + name)
		var d net.Conn
		err = netnsrun.InNamed(cliNS, func() (err error) {
			d, err = net.DialTimeout("tcp4", addr, 5*time.Second)
			return err
		})
		if err != nil {
			return err
		}
		if _, err := expect("150"); err != nil {
			return err
		}
		if err := readData(d); err != nil {
			return err
		}
		_, err = expect("226")
		return err
	}
	port := func(p int) string {
		return fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", local[0], local[1], local[2], local[3], p>>8, p&0xff)
	}
	eprt := func(p int) string { return fmt.Sprintf("EPRT |1|%s|%d|", local, p) }
	if err := active(port, "port"); err != nil {
		return got, fmt.Errorf("PORT: %w", err)
	}
	if err := passive("PASV", "pasv"); err != nil {
		return got, fmt.Errorf("PASV: %w", err)
	}
	if err := passive("EPSV", "epsv"); err != nil {
		return got, fmt.Errorf("EPSV: %w", err)
	}
	if err := active(eprt, "eprt"); err != nil {
		return got, fmt.Errorf("EPRT: %w", err)
	}
	// a last PORT nobody uses: its expectation is left for -L expect
	send(port(40000))
	if _, err := expect("200"); err != nil {
		return got, err
	}
	send("QUIT")
	_, err = expect("221")
	return got, err
}

// tftpServe answers one read request on pc (port 69) from a new port,
// as a TFTP server does: DATA block 1, the client's ACK, DATA block 2
// (short: the end), the last ACK.
func tftpServe(pc net.PacketConn, srvNS string) error {
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, client, err := pc.ReadFrom(buf)
	if err != nil {
		return err
	}
	if n < 4 || buf[1] != 1 {
		return fmt.Errorf("not a read request: % x", buf[:n])
	}
	var c net.PacketConn
	err = netnsrun.InNamed(srvNS, func() (err error) {
		c, err = net.ListenPacket("udp4", ":0")
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for block := 1; block <= 2; block++ {
		pkt := []byte{0, 3, 0, byte(block)}
		if block == 1 {
			pkt = append(pkt, make([]byte, 512)...)
		} else {
			pkt = append(pkt, "end"...)
		}
		if _, err := c.WriteTo(pkt, client); err != nil {
			return err
		}
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if n < 4 || buf[1] != 4 || buf[3] != byte(block) {
			return fmt.Errorf("want ACK %d, got % x", block, buf[:n])
		}
	}
	return nil
}

// tftpClient reads a file from server (host:69) in cliNS and returns
// the bytes.
func tftpClient(server, cliNS string) (int, error) {
	var c net.PacketConn
	err := netnsrun.InNamed(cliNS, func() (err error) {
		c, err = net.ListenPacket("udp4", ":0")
		return err
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	to, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return 0, err
	}
	rrq := append([]byte{0, 1}, "file\x00octet\x00"...)
	if _, err := c.WriteTo(rrq, to); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	total := 0
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return total, err
		}
		if n < 4 || buf[1] != 3 {
			return total, fmt.Errorf("not DATA: % x", buf[:n])
		}
		total += n - 4
		if _, err := c.WriteTo([]byte{0, 4, buf[2], buf[3]}, from); err != nil {
			return total, err
		}
		if n-4 < 512 {
			return total, nil
		}
	}
}
