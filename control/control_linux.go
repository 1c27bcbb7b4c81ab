package control

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerAllowed admits a control client running as the lab's user or root
// (SO_PEERCRED), on top of the socket's 0600 mode, and returns its pid
// (0 when unknown).
func peerAllowed(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	if me := uint32(os.Geteuid()); cred.Uid != me && cred.Uid != 0 {
		return 0, fmt.Errorf("control socket: uid %d may not control this lab", cred.Uid)
	}
	return uint32(cred.Pid), nil
}
