// Package labtest is what the tests that bring up namespaces, labs and
// NFQUEUE topologies share: the root checks that skip them with a
// reason (internal/testtools; tests name the programs they run with
// testtools.Need), names no other test or run uses, namespaces and labs
// removed at cleanup (also when the test fails), commands run in a
// namespace, and code run on a thread inside one.
//
// It does not import package lab (lab's own tests use it), so a lab is
// brought up through Up with the lab's own up and down functions.
package labtest

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// Root skips t unless it runs as root; why says what the test makes,
// e.g. "makes network namespaces and TUN devices". It is testtools.Root:
// under USWITCH_REQUIRE_TOOLS=1 it fails t instead.
func Root(t testing.TB, why string) {
	t.Helper()
	testtools.Root(t, why)
}

// TUN skips t unless it runs as root with /dev/net/tun (testtools.TUN).
func TUN(t testing.TB) {
	t.Helper()
	testtools.TUN(t)
}

var seq atomic.Uint32

// Name returns prefix followed by this process's id and a sequence
// number: a name no other test of this run, or run beside it, uses.
// It adds at most 5+3 characters to prefix (mind IFNAMSIZ, 15, when the
// name, or a name made from it, is a device's).
func Name(prefix string) string {
	return prefix + strconv.Itoa(os.Getpid()%100000) + strconv.FormatUint(uint64(seq.Add(1)%46656), 36)
}

// Netns makes a network namespace called name (`ip netns add`) and
// deletes it at cleanup. Not root, it skips t; as root, a namespace that
// cannot be made fails t.
func Netns(t testing.TB, name string) {
	t.Helper()
	testtools.Root(t, "makes network namespaces")
	testtools.Need(t, "ip")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
}

// Run runs a command and fails t if it fails; it returns the output.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// In runs a command in namespace ns (ip netns exec) and fails t if it
// fails; it returns the output.
func In(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// InNetns runs fn on a locked thread inside the named namespace, so the
// sockets fn opens belong there, and fails t with fn's error. The
// thread is set back before it is released; one that cannot be set back
// stays locked and dies with its goroutine.
func InNetns(t testing.TB, name string, fn func() error) {
	t.Helper()
	if err := netnsrun.InNamed(name, fn); err != nil {
		t.Fatalf("in namespace %s: %v", name, err)
	}
}

// Up brings something up (a lab: up is lab.Up of a config) and tears it
// down at cleanup, also when the test fails: Close, then down (lab.Down
// of the same config, which removes what a failed Close left). If up
// fails, down runs at once and t fails. A Close error fails t.
func Up[L io.Closer](t testing.TB, up func() (L, error), down func() error) L {
	t.Helper()
	l, err := up()
	if err != nil {
		down()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := down(); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	return l
}
