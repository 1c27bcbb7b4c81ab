package lab

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tunDev is a TUN device (IFF_TUN|IFF_NO_PI: IPv4 packets, no header),
// or a TAP device (IFF_TAP|IFF_NO_PI: Ethernet frames), opened
// non-blocking and handed to Go's poller, so a blocked Read parks
// only its goroutine and Close wakes it.
type tunDev struct {
	name string
	f    *os.File
	rc   syscall.RawConn
}

// openTUN creates a TUN device inside the namespace. The device belongs
// to the namespace of the thread that opened /dev/net/tun (tun_chr_open
// takes current's net namespace, drivers/net/tun.c), so it never exists
// in the host's namespace. It is not persistent: it disappears when the
// file is closed, also when the process dies.
func openTUN(ns netns.NsHandle, name string) (*tunDev, error) {
	return openTunTap(ns, name, unix.IFF_TUN|unix.IFF_NO_PI)
}

// openTAP creates a TAP device (IFF_TAP|IFF_NO_PI: Ethernet frames, no
// header) inside the namespace, as openTUN does. Its MAC address, the
// namespace's, is the kernel's random one (tun_net_init:
// eth_hw_addr_random); uswitch's own MAC on the link is its business
// (tap.go).
func openTAP(ns netns.NsHandle, name string) (*tunDev, error) {
	return openTunTap(ns, name, unix.IFF_TAP|unix.IFF_NO_PI)
}

// openTunTap opens /dev/net/tun in the namespace and attaches it to a new
// device of that name and mode (TUNSETIFF with flags).
func openTunTap(ns netns.NsHandle, name string, flags uint16) (*tunDev, error) {
	kind := "tun"
	if flags&unix.IFF_TAP != 0 {
		kind = "tap"
	}
	var fd int
	err := inNetns(ns, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(flags)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s (%s): %w", name, kind, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), kind+":"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &tunDev{name: name, f: f, rc: rc}, nil
}

func (t *tunDev) Name() string { return t.name }

// Read reads up to len(bufs) packets: it waits for the first, then takes
// what is already queued without waiting. sizes[i] is the length of
// packet i. The n packets read are valid even when err is not nil.
func (t *tunDev) Read(bufs [][]byte, sizes []int) (n int, err error) {
	var rerr error
	err = t.rc.Read(func(fd uintptr) bool {
		for n < len(bufs) {
			m, e := unix.Read(int(fd), bufs[n])
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return n > 0 // nothing yet: wait for the poller
			case e != nil:
				rerr = e
				return true
			}
			sizes[n] = m
			n++
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// Write writes each packet with one write(2) (a TUN takes one packet,
// a TAP one frame, per write). It returns how many were taken; a packet the kernel refuses
// (EINVAL, EIO while the device is down) is skipped and counted as not
// taken, and the first such error is returned.
func (t *tunDev) Write(pkts [][]byte) (int, error) {
	ok, i := 0, 0
	var first error
	err := t.rc.Write(func(fd uintptr) bool {
		for i < len(pkts) {
			_, e := unix.Write(int(fd), pkts[i])
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				if first == nil {
					first = e
				}
			default:
				ok++
			}
			i++
		}
		return true
	})
	if err != nil && first == nil {
		first = err
	}
	return ok, first
}

// Close closes the device; a Read in progress returns os.ErrClosed.
func (t *tunDev) Close() error {
	err := t.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
