package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"golang.org/x/sys/unix"

	// vishvananda/netns: named namespaces (the bind mounts under
	// /run/netns that `ip netns` also uses) and setns handles; netlink
	// configures devices, addresses and routes inside a namespace through
	// a handle bound to it, so no thread has to enter the namespace for
	// that and nothing shells out to ip(8).
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` and vishvananda/netns keep named namespaces.
const netnsDir = "/run/netns"

// nsExists reports whether a named namespace exists.
func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// createNamedNS makes a named namespace and returns a handle to it. The
// calling goroutine never leaves its thread inside the new namespace:
// netns.NewNamed unshares the current thread, so the thread is locked and
// set back before it is released; if setting it back fails the thread
// stays locked and the runtime discards it when the goroutine ends.
func createNamedNS(name string) (netns.NsHandle, error) {
	done := make(chan struct{})
	var h netns.NsHandle
	var err error
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, e := netns.Get()
		if e != nil {
			err = e
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		h, err = netns.NewNamed(name)
		if e := netns.Set(orig); e != nil {
			// the thread is in the new namespace: never unlock it
			err = errors.Join(err, fmt.Errorf("setns back: %w", e))
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return h, err
}

// inNetns runs fn on a thread inside the namespace: the socket or device
// fn creates belongs to that namespace for its whole life, wherever it is
// used afterwards. The thread is set back before it is unlocked; a thread
// that cannot be set back is left locked so the runtime discards it.
func inNetns(ns netns.NsHandle, fn func() error) error { return netnsrun.In(ns, fn) }

// configureNS sets up a namespace's side of its TUN: lo up, the TUN's
// MTU, addresses and up. The routes come later, with the rest of the
// namespace's routing (upRouting, once every device is there).
func configureNS(ns netns.NsHandle, tun string, mtu int, n *Namespace) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if tun == "" {
		return nil
	}
	l, err := h.LinkByName(tun)
	if err != nil {
		return err
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("%s mtu: %w", tun, err)
	}
	for _, a := range n.Addresses {
		ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("%s address %v: %w", tun, a.Prefix, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", tun, err)
	}
	return nil
}

// markDir holds a marker file per namespace a lab made, holding the
// namespace's inode (its nsfs id), so Down removes only namespaces a lab
// made: not one that existed before under a name a lab file uses, nor
// one made since by someone else under a lab's old name.
var markDir = filepath.Join(control.RuntimeDir, "netns")

// nsInode is the nsfs inode of a named namespace (0: none).
func nsInode(name string) uint64 {
	var st unix.Stat_t
	if unix.Stat(filepath.Join(netnsDir, name), &st) != nil {
		return 0
	}
	return st.Ino
}

// markNS records that a lab made the namespace name.
func markNS(name string) error {
	ino := nsInode(name)
	if ino == 0 {
		return fmt.Errorf("namespace %s: not found after creating it", name)
	}
	if err := os.MkdirAll(markDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(markDir, name), []byte(strconv.FormatUint(ino, 10)+"\n"), 0o600)
}

// madeByLab reports whether the namespace name is one a lab made (its
// marker holds its inode).
func madeByLab(name string) bool {
	b, err := os.ReadFile(filepath.Join(markDir, name))
	if err != nil {
		return false
	}
	ino, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && ino != 0 && ino == nsInode(name)
}

// unmarkNS forgets the marker of name.
func unmarkNS(name string) { os.Remove(filepath.Join(markDir, name)) }

// deleteNS removes a named namespace; the devices in it (the lab's TUNs)
// go with it. A namespace that is not there is not an error.
func deleteNS(name string) error {
	if !nsExists(name) {
		unmarkNS(name)
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		return err
	}
	unmarkNS(name)
	return nil
}
