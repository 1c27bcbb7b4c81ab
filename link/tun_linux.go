package link

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netns"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"golang.org/x/sys/unix"
)

// Queue is one queue of a TUN device (IFF_TUN|IFF_NO_PI: IPv4 packets,
// no header), or a TAP device (IFF_TAP|IFF_NO_PI: Ethernet frames),
// opened non-blocking and handed to Go's poller, so a blocked Read
// parks only its goroutine and Close wakes it.
//
// A TUN may have several queues (IFF_MULTI_QUEUE): one Queue each,
// all of one name. The kernel picks the queue a packet from the
// namespace goes to by its flow hash (tun_select_queue), so one flow's
// packets come in order from one queue; any queue may be written.
//
// With offloads (IFF_VNET_HDR and TUNSETOFFLOAD, offload.go) a
// virtio_net_hdr precedes every packet both ways: Read cuts the
// namespace's TCP (and UDP) super-packets into segments and completes
// partial checksums, so what it returns are real IPv4 packets, and
// Write coalesces the TCP segments of a batch into super-packets (and
// the UDP datagrams, where the kernel has USO).
type Queue struct {
	name string
	// file is the open queue (replaced by Reattach after a Detach)
	file atomic.Pointer[qfile]
	// ns and flags reopen the queue (Reattach); ns is the opener's
	// handle, which must stay open as long as the queue
	ns    netns.NsHandle
	flags uint16
	// first: the device's first queue (it sets TUNSETPERSIST)
	first bool
	// vnet: the device has IFF_VNET_HDR; immutable after open.
	vnet bool
	// gro: Write coalesces TCP segments (vnet only); uso: and UDP
	// datagrams (the kernel took TUN_F_USO4, so it knows UDP_L4);
	// immutable.
	gro, uso bool
	// Read's state; Read is called by one goroutine at a time (the
	// queue's reader): rbuf receives what read(2) returns, and gso is
	// the super-packet in it being cut, whose segments the next Reads
	// return before reading again.
	rbuf []byte
	gso  gsoPacket
	// rxErrors counts what Read dropped: malformed super-packets or
	// checksum offsets, packets larger than the buffers.
	rxErrors atomic.Uint64
	// rxSuper counts the super-packets Read cut; txSuper the ones
	// Write made (offload.go).
	rxSuper, txSuper atomic.Uint64
	// wpool holds Write's scratch state (*tunWriter): workers write
	// to one queue concurrently.
	wpool sync.Pool
}

// qfile is an open queue: the file and its raw connection.
type qfile struct {
	f  *os.File
	rc syscall.RawConn
}

// tunWriter is one Write's scratch state (pooled; its references to
// the packets are cleared before it goes back).
type tunWriter struct {
	gro    groBatch
	iov    [][]byte
	iovecs []unix.Iovec
}

// TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h).
const (
	tunFCSUM = 0x01 // TUN_F_CSUM: uswitch takes partial checksums
	tunFTSO4 = 0x02 // TUN_F_TSO4: and TCPv4 super-packets
	tunFUSO4 = 0x20 // TUN_F_USO4: and UDPv4 ones (UDP_SEGMENT)
	tunFUSO6 = 0x40 // TUN_F_USO6: the kernel takes USO only with both (set_offload)
)

// Options are how a device is opened.
type Options struct {
	// Queues is the number of queues (IFF_MULTI_QUEUE when > 1; TUN
	// only; 0 or 1: one).
	Queues int
	// Offload: IFF_VNET_HDR with checksum and segmentation offloads,
	// and coalescing on write (TUN only).
	Offload bool
}

// OpenTUN creates a TUN device inside the namespace: one Queue per
// queue. The device belongs to the namespace of the thread that opened
// /dev/net/tun (tun_chr_open takes current's net namespace,
// drivers/net/tun.c), so it never exists in the host's namespace. It is
// not persistent: it disappears when its last queue is closed, also
// when the process dies.
func OpenTUN(ns netns.NsHandle, name string, o Options) ([]*Queue, error) {
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if o.Queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	if o.Offload {
		flags |= unix.IFF_VNET_HDR
	}
	return openTunTap(ns, name, flags, max(o.Queues, 1))
}

// OpenTAP creates a TAP device (IFF_TAP|IFF_NO_PI: Ethernet frames, no
// header, one queue, no offloads) inside the namespace, as OpenTUN
// does. Its MAC address, the namespace's, is the kernel's random one
// (tun_net_init: eth_hw_addr_random); uswitch's own MAC on the link is
// its business (tap.go).
func OpenTAP(ns netns.NsHandle, name string, _ Options) ([]*Queue, error) {
	return openTunTap(ns, name, unix.IFF_TAP|unix.IFF_NO_PI, 1)
}

// OpenFD opens /dev/net/tun, non-blocking, in the calling thread's
// namespace and attaches it to the device name with flags (TUNSETIFF:
// IFF_TUN or IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE, IFF_VNET_HDR): the
// first open creates the device. It is the one TUN opener: OpenTUN and
// OpenTAP build their queues on it, and the kernel-side test rigs that
// drive a descriptor themselves (tracetest, bench) call it directly.
func OpenFD(name string, flags uint16) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(flags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return fd, nil
}

// openTunTap opens /dev/net/tun in the namespace queues times and
// attaches each to the device of that name and mode (TUNSETIFF with
// flags: the first creates it, the others add queues). With
// IFF_VNET_HDR it asks for the offloads (TUNSETOFFLOAD), USO if the
// kernel has it.
func openTunTap(ns netns.NsHandle, name string, flags uint16, queues int) (devs []*Queue, err error) {
	kind := "tun"
	if flags&unix.IFF_TAP != 0 {
		kind = "tap"
	}
	vnet := flags&unix.IFF_VNET_HDR != 0
	uso := false
	var fds []int
	defer func() {
		if err != nil {
			for _, d := range devs {
				d.file.Load().f.Close()
			}
			devs = nil
		}
	}()
	err = netnsrun.In(ns, func() error {
		for q := range queues {
			fd, err := OpenFD(name, flags)
			if err != nil {
				return fmt.Errorf("%s queue %d: %w", kind, q, err)
			}
			fds = append(fds, fd)
			if q == 0 {
				if err := setTxQueueLen(name, txQueueLen); err != nil {
					return fmt.Errorf("%s: txqueuelen: %w", name, err)
				}
			}
			if vnet && q == 0 {
				// the features are the device's: once
				err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCSUM|tunFTSO4|tunFUSO4|tunFUSO6)
				uso = err == nil
				if err != nil {
					err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCSUM|tunFTSO4)
				}
				if err != nil {
					return fmt.Errorf("TUNSETOFFLOAD %s: %w", name, err)
				}
			}
		}
		return nil
	})
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), kind+":"+name)
		rc, e := f.SyscallConn()
		if e != nil {
			f.Close()
			err = errors.Join(err, e)
			continue
		}
		d := &Queue{name: name, ns: ns, flags: flags, first: len(devs) == 0, vnet: vnet, gro: vnet, uso: vnet && uso}
		d.file.Store(&qfile{f: f, rc: rc})
		if vnet {
			d.rbuf = make([]byte, vnetHdrLen+maxGSOPacket)
		}
		d.wpool.New = func() any { return &tunWriter{} }
		devs = append(devs, d)
	}
	return devs, err
}

// txQueueLen is the length of a TUN's queues towards uswitch (each
// queue's ptr_ring, tun_queue_resize; the kernel's default is 500): a
// burst the namespace sends while uswitch's readers wait for a CPU
// waits there instead of being dropped (tun_net_xmit drops when the
// ring is full; nothing pushes back on the sender).
const txQueueLen = 8192

// setTxQueueLen sets the device's txqueuelen (SIOCSIFTXQLEN) in the
// calling thread's namespace.
func setTxQueueLen(name string, n int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(n))
	return unix.IoctlIfreq(s, unix.SIOCSIFTXQLEN, ifr)
}

func (t *Queue) Name() string { return t.name }

// Rename changes the name the datapath knows the queue by (the kernel's
// device keeps its own): a lab node's host TUN called eth0 in its
// namespace is "host-eth0" to the node's datapath, whose eth0 is
// another device. Call it before NewDatapath.
func (t *Queue) Rename(name string) { t.name = name }

// Read reads up to len(bufs) packets: it waits for the first, then takes
// what is already queued without waiting. sizes[i] is the length of
// packet i. The n packets read are valid even when err is not nil.
// With offloads the packets are the segments of what the device
// returned, each whole (a super-packet's segments may span Reads).
func (t *Queue) Read(bufs [][]byte, sizes []int) (n int, err error) {
	return t.ReadValid(bufs, sizes, nil)
}

// ReadValid is Read that also says, per packet, whether the kernel
// vouched for its transport checksum (valid[i], when valid is not nil):
// a segment of a super-packet, or a packet whose virtio_net_hdr had
// NEEDS_CSUM (its checksum completed here) or DATA_VALID; the kernel's
// skb is CHECKSUM_PARTIAL or CHECKSUM_UNNECESSARY then, and its
// conntrack does not verify the checksum.
func (t *Queue) ReadValid(bufs [][]byte, sizes []int, valid []bool) (n int, err error) {
	if t.vnet {
		return t.readVnet(bufs, sizes, valid)
	}
	var rerr error
	err = t.file.Load().rc.Read(func(fd uintptr) bool {
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

// readVnet is Read on a device with IFF_VNET_HDR: each read(2) returns
// a virtio_net_hdr and a packet, a super-packet (gso_type TCPV4 or
// UDP_L4) or one with a partial checksum (NEEDS_CSUM); the one goes out
// as its segments, the other with its checksum completed.
func (t *Queue) readVnet(bufs [][]byte, sizes []int, valid []bool) (n int, err error) {
	var rerr error
	err = t.file.Load().rc.Read(func(fd uintptr) bool {
		for n < len(bufs) {
			if t.gso.pending() > 0 {
				m, ok := t.gso.cut(bufs[n])
				if !ok {
					t.rxErrors.Add(1)
					continue
				}
				sizes[n] = m
				if valid != nil {
					valid[n] = true
				}
				n++
				continue
			}
			m, e := unix.Read(int(fd), t.rbuf)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return n > 0 // nothing yet: wait for the poller
			case e != nil:
				rerr = e
				return true
			case m < vnetHdrLen:
				t.rxErrors.Add(1)
				continue
			}
			var h vnetHdr
			h.decode(t.rbuf)
			pkt := t.rbuf[vnetHdrLen:m]
			if h.gsoType != vnetGSONone {
				switch {
				case t.gso.init(&h, pkt):
					t.rxSuper.Add(1)
				case len(pkt) > 0 && pkt[0]>>4 != 4:
					// an IPv6 super-packet (USO6 comes with
					// USO4): its head, for the reader to count
					// and drop as it drops all IPv6
					sizes[n] = copy(bufs[n], pkt)
					n++
				default:
					t.rxErrors.Add(1)
				}
				continue
			}
			if h.flags&vnetFlagNeedsCsum != 0 && !completeChecksum(&h, pkt[:ipv4Len(pkt)]) {
				t.rxErrors.Add(1)
				continue
			}
			if len(pkt) > len(bufs[n]) {
				t.rxErrors.Add(1)
				continue
			}
			sizes[n] = copy(bufs[n], pkt)
			if valid != nil {
				valid[n] = h.flags&(vnetFlagNeedsCsum|vnetFlagDataValid) != 0
			}
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
// taken, and the first such error is returned. With offloads each
// write(2) is a writev(2) of a virtio_net_hdr and a packet, or of a
// super-packet coalesced from the batch's TCP segments (offload.go),
// whose first packet's headers are rewritten in place.
// Safe for concurrent use.
func (t *Queue) Write(pkts [][]byte) (int, error) {
	if t.vnet {
		return t.writeVnet(pkts)
	}
	ok, i := 0, 0
	var first error
	err := t.file.Load().rc.Write(func(fd uintptr) bool {
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

func (t *Queue) writeVnet(pkts [][]byte) (int, error) {
	w := t.wpool.Get().(*tunWriter)
	w.gro.coalesce(pkts, t.gro, t.uso)
	ok, u := 0, 0
	var first error
	err := t.file.Load().rc.Write(func(fd uintptr) bool {
		for u < len(w.gro.units) {
			w.iov = w.gro.build(u, pkts, w.iov[:0])
			w.iovecs = w.iovecs[:0]
			for _, b := range w.iov {
				if len(b) == 0 {
					continue
				}
				v := unix.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				w.iovecs = append(w.iovecs, v)
			}
			_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iovecs[0])), uintptr(len(w.iovecs)))
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != 0:
				if first == nil {
					first = e
				}
			default:
				ok += w.gro.units[u].n
				if w.gro.units[u].n > 1 {
					t.txSuper.Add(1)
				}
			}
			u++
		}
		return true
	})
	if err != nil && first == nil {
		first = err
	}
	clear(w.iov)
	w.iov = w.iov[:0]
	clear(w.iovecs)
	w.iovecs = w.iovecs[:0]
	t.wpool.Put(w)
	return ok, first
}

// offloadStats adds the device's offload counters to s.
func (t *Queue) offloadStats(s *Stats) {
	s.OffloadErrors += t.rxErrors.Load()
	s.GSOIn += t.rxSuper.Load()
	s.GROOut += t.txSuper.Load()
}

// Close closes the queue; a Read in progress returns os.ErrClosed.
func (t *Queue) Close() error {
	err := t.file.Load().f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// Detach closes the queue as a process that dies closes it, but keeps
// the device: the first queue makes it persistent first (TUNSETPERSIST),
// so its addresses and routes stay for Reattach. The kernel then does
// what it does with a TUN no process holds: the packets queued towards
// uswitch are freed (tun_detach purges the queue), the carrier goes
// off, and what the namespace sends is dropped (tun_net_xmit without a
// queue, tx_dropped). A Read in progress returns os.ErrClosed, and so
// do Writes.
func (t *Queue) Detach() error {
	qf := t.file.Load()
	if t.first {
		var serr error
		if err := qf.rc.Control(func(fd uintptr) { serr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 1) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("TUNSETPERSIST %s: %w", t.name, serr)
		}
	}
	return qf.f.Close()
}

// Reattach opens the queue again on the device Detach kept (TUNSETIFF
// with the same flags attaches a queue to it, the carrier comes back);
// the first queue makes the device non-persistent again, so it goes
// with its last queue as before.
func (t *Queue) Reattach() error {
	var fd int
	err := netnsrun.In(t.ns, func() error {
		var err error
		fd, err = OpenFD(t.name, t.flags)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: reattach: %w", t.name, err)
	}
	f := os.NewFile(uintptr(fd), "tun:"+t.name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	if t.first {
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 0) })
		if serr != nil {
			f.Close()
			return fmt.Errorf("TUNSETPERSIST %s: %w", t.name, serr)
		}
	}
	t.file.Store(&qfile{f: f, rc: rc})
	return nil
}
