package lab

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/vishvananda/netlink"
)

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

// TestDownLeavesForeignNamespace: a namespace named in a lab file that
// no lab made (it existed before) is left alone by Down and reported;
// a control socket a dead lab left is removed.
func TestDownLeavesForeignNamespace(t *testing.T) {
	labtest.TUN(t)
	c, _ := testConfig(t)
	foreign := c.Namespaces[0].Name
	labtest.Netns(t, foreign)
	// the socket of a lab killed with -9: a socket file nothing listens on
	sock := control.SocketPath(c.Name)
	os.MkdirAll(control.RuntimeDir, 0o700)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	t.Cleanup(func() { os.Remove(sock) })
	removed, kept, err := Down(c)
	if err != nil {
		t.Fatal(err)
	}
	if !nsExists(foreign) {
		t.Fatalf("Down deleted namespace %s, which no lab made", foreign)
	}
	if len(kept) != 1 || !strings.Contains(kept[0], foreign) {
		t.Errorf("kept %q, want namespace %s", kept, foreign)
	}
	if len(removed) != 1 || removed[0] != "control socket "+sock {
		t.Errorf("removed %q, want the stale control socket %s", removed, sock)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket still there: %v", err)
	}
}
