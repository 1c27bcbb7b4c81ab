package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"

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

// deleteNS removes a named namespace; the devices in it (the lab's TUNs)
// go with it. A namespace that is not there is not an error.
func deleteNS(name string) error {
	if !nsExists(name) {
		return nil
	}
	return netns.DeleteNamed(name)
}

// deleteHostLink removes a device of that name from the current
// namespace, if there is one (a TUN left behind outside its namespace).
func deleteHostLink(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, err
	}
	if l.Type() != "tuntap" {
		return false, nil // not ours: leave it
	}
	return true, netlink.LinkDel(l)
}
