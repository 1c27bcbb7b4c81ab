// Package netnsrun runs code on a thread inside a network namespace: what
// the code opens (sockets, devices, /proc files) belongs to that
// namespace for its whole life, wherever it is used afterwards.
//
// The thread is locked for the call and set back to the caller's
// namespace before it is unlocked; a thread that cannot be set back stays
// locked, and the runtime discards it when its goroutine ends, so no
// goroutine ever runs on a thread left in another namespace.
package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// In runs fn inside the namespace ns.
func In(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return // locked for good: the thread dies with the goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// InNamed runs fn inside the named namespace (as `ip netns` names them);
// "" runs fn here, on the calling goroutine.
func InNamed(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer h.Close()
	return In(h, fn)
}
