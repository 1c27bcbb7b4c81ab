package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The built-in FTP-like server ("ftp") and its client: enough of RFC 959
// for the conntrack FTP helper to see what it looks for. The control
// connection greets with 220 and takes USER, PORT, EPRT, PASV, EPSV,
// RETR and QUIT; RETR sends one line, "NAME CLIENT\n" (NAME the
// server's namespace, CLIENT the control connection's peer as the
// server saw it), over the data connection: the server dials it after
// PORT/EPRT (active: the data connection opens from the server to the
// client) or accepts it after PASV/EPSV (passive: from the client).

// FTP mode names for FTPGet.
const (
	FTPActive  = "active"  // PORT
	FTPPassive = "passive" // PASV
	FTPEPRT    = "eprt"    // EPRT |1|addr|port|
	FTPEPSV    = "epsv"    // EPSV
)

const ftpTimeout = 10 * time.Second

// ftpServe serves the control connections of an ftp server.
func (sv *server) ftpServe() {
	defer sv.wg.Done()
	for {
		c, err := sv.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !sv.track(c) {
			return
		}
		sv.wg.Add(1)
		go func() {
			defer sv.wg.Done()
			defer sv.untrack(c)
			ftpControl(c, sv.ns, sv.inNS)
		}()
	}
}

// ftpControl runs one control connection; inNS runs a function in the
// server's namespace (for the sockets of data connections).
func ftpControl(c net.Conn, name string, inNS func(func() error) error) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	say := func(s string) error { _, err := io.WriteString(c, s+"\r\n"); return err }
	if err := say("220 " + name + " ready"); err != nil {
		return err
	}
	var active string
	var pasv net.Listener
	defer func() {
		if pasv != nil {
			pasv.Close()
		}
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "USER":
			say("331 any password")
		case "PASS":
			say("230 logged in")
		case "PORT":
			a, err := FTPParseNumbers(arg)
			if err != nil {
				say("501 " + err.Error())
				continue
			}
			active = a
			say("200 PORT ok")
		case "EPRT":
			f := strings.Split(arg, "|")
			if len(f) != 5 || f[1] != "1" {
				say("522 IPv4 only: |1|addr|port|")
				continue
			}
			active = net.JoinHostPort(f[2], f[3])
			say("200 EPRT ok")
		case "PASV", "EPSV":
			host, _, _ := net.SplitHostPort(c.LocalAddr().String())
			if pasv != nil {
				pasv.Close()
			}
			err := inNS(func() (err error) {
				pasv, err = net.Listen("tcp4", net.JoinHostPort(host, "0"))
				return err
			})
			if err != nil {
				say("425 " + err.Error())
				continue
			}
			p := pasv.Addr().(*net.TCPAddr).Port
			if strings.ToUpper(verb) == "PASV" {
				ip := net.ParseIP(host).To4()
				say(fmt.Sprintf("227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)", ip[0], ip[1], ip[2], ip[3], p>>8, p&0xff))
			} else {
				say(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", p))
			}
		case "RETR":
			var d net.Conn
			if pasv != nil {
				say("150 opening data connection")
				pasv.(*net.TCPListener).SetDeadline(time.Now().Add(ftpTimeout))
				d, err = pasv.Accept()
				pasv.Close()
				pasv = nil
			} else if active != "" {
				err = inNS(func() (err error) {
					d, err = net.DialTimeout("tcp4", active, ftpTimeout)
					return err
				})
				if err == nil {
					say("150 opening data connection")
				}
			} else {
				err = errors.New("no PORT or PASV")
			}
			if err != nil {
				say("425 " + err.Error())
				continue
			}
			io.WriteString(d, name+" "+c.RemoteAddr().String()+"\n")
			d.Close()
			active = ""
			say("226 transfer complete")
		case "QUIT":
			say("221 bye")
			return nil
		default:
			say("502 not implemented")
		}
	}
}

// FTPParseNumbers reads the a,b,c,d,p1,p2 of PORT and 227 as host:port.
func FTPParseNumbers(s string) (string, error) {
	f := strings.Split(strings.TrimSpace(s), ",")
	if len(f) != 6 {
		return "", fmt.Errorf("want a,b,c,d,p1,p2, got %q", s)
	}
	var n [6]int
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil || v < 0 || v > 255 {
			return "", fmt.Errorf("bad number %q in %q", f[i], s)
		}
		n[i] = v
	}
	return net.JoinHostPort(fmt.Sprintf("%d.%d.%d.%d", n[0], n[1], n[2], n[3]), strconv.Itoa(n[4]<<8|n[5])), nil
}

// FTPGet logs in to the ftp server at addr from namespace ns, fetches
// one file over a data connection opened as mode says (FTPActive,
// FTPPassive, FTPEPRT, FTPEPSV) and returns the line it carried ("NAME
// CLIENT").
func (l *Lab) FTPGet(ns, addr, mode string, timeout time.Duration) (string, error) {
	h, ok := l.nss[ns]
	if !ok {
		return "", fmt.Errorf("no namespace %q in the lab", ns)
	}
	return ftpGet(func(fn func() error) error { return inNetns(h, fn) }, addr, mode, timeout)
}

func ftpGet(inNS func(func() error) error, addr, mode string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	expect := func(code string) (string, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("waiting for %s: %w", code, err)
		}
		if !strings.HasPrefix(line, code) {
			return "", fmt.Errorf("want %s, got %q", code, strings.TrimSpace(line))
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	send := func(s string) { io.WriteString(c, s+"\r\n") }
	if _, err := expect("220"); err != nil {
		return "", err
	}
	send("USER anonymous")
	if _, err := expect("331"); err != nil {
		return "", err
	}
	read := func(d net.Conn) (string, error) {
		defer d.Close()
		d.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(d)
		return strings.TrimSpace(string(b)), err
	}
	var got string
	switch mode {
	case FTPActive, FTPEPRT:
		local := c.LocalAddr().(*net.TCPAddr).IP.To4()
		var ln net.Listener
		err := inNS(func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(local.String(), "0"))
			return err
		})
		if err != nil {
			return "", err
		}
		defer ln.Close()
		p := ln.Addr().(*net.TCPAddr).Port
		if mode == FTPActive {
			send(fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", local[0], local[1], local[2], local[3], p>>8, p&0xff))
		} else {
			send(fmt.Sprintf("EPRT |1|%s|%d|", local, p))
		}
		if _, err := expect("200"); err != nil {
			return "", err
		}
		send("RETR file")
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
		d, err := ln.Accept()
		if err != nil {
			return "", fmt.Errorf("the server's data connection: %w", err)
		}
		if got, err = read(d); err != nil {
			return got, err
		}
		if _, err := expect("150"); err != nil {
			return got, err
		}
	case FTPPassive, FTPEPSV:
		verb, code := "PASV", "227"
		if mode == FTPEPSV {
			verb, code = "EPSV", "229"
		}
		send(verb)
		line, err := expect(code)
		if err != nil {
			return "", err
		}
		var to string
		if mode == FTPPassive {
			i, j := strings.IndexByte(line, '('), strings.IndexByte(line, ')')
			if i < 0 || j < i {
				return "", fmt.Errorf("227 without (numbers): %q", line)
			}
			if to, err = FTPParseNumbers(line[i+1 : j]); err != nil {
				return "", err
			}
		} else {
			i, j := strings.Index(line, "(|||"), strings.LastIndex(line, "|)")
			if i < 0 || j < i {
				return "", fmt.Errorf("229 without (|||port|): %q", line)
			}
			host, _, _ := net.SplitHostPort(addr)
			to = net.JoinHostPort(host, line[i+4:j])
		}
		send("RETR file")
		var d net.Conn
		err = inNS(func() (err error) {
			d, err = net.DialTimeout("tcp4", to, timeout)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("data connection to %s: %w", to, err)
		}
		if _, err := expect("150"); err != nil {
			return "", err
		}
		if got, err = read(d); err != nil {
			return got, err
		}
	default:
		return "", fmt.Errorf("ftp mode %q: want active, passive, eprt or epsv", mode)
	}
	if _, err := expect("226"); err != nil {
		return got, err
	}
	send("QUIT")
	expect("221")
	return got, nil
}
