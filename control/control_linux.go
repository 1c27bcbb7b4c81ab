package control

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerAllowed admits a control client running as the lab's user or root
// (SO_PEERCRED), on top of the socket's 0600 mode.
func peerAllowed(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if me := uint32(os.Geteuid()); cred.Uid != me && cred.Uid != 0 {
		return fmt.Errorf("control socket: uid %d may not control this lab", cred.Uid)
	}
	return nil
}
