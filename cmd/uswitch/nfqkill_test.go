package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// plainListenerEnv makes the test binary a plain NFQUEUE listener (the
// kernel reference of TestNFQueueKillAsKernel): it binds the queue the
// variable names, copies packets, prints "bound" and reads forever
// without giving a verdict, until it is killed.
const plainListenerEnv = "USWITCH_TEST_PLAIN_NFQUEUE"

func TestMain(m *testing.M) {
	if q := os.Getenv(plainListenerEnv); q != "" {
		os.Exit(plainListener(q))
	}
	os.Exit(m.Run())
}

// plainListener binds queue q as libnetfilter_queue's nfqnl_test does
// (NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET; no fail-open, the default
// queue_maxlen) in the process's namespace, and never answers.
func plainListener(q string) int {
	var n uint16
	if _, err := fmt.Sscan(q, &n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, attrs := range [][]netlink.Attribute{
		{{Type: 1, Data: []byte{1, 0, 0, unix.AF_INET}}},                         // NFQA_CFG_CMD: bind
		{{Type: 2, Data: append(binary.BigEndian.AppendUint32(nil, 0xffff), 2)}}, // NFQA_CFG_PARAMS: copy packet
	} {
		b, _ := netlink.MarshalAttributes(attrs)
		data := binary.BigEndian.AppendUint16([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, n)
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(3<<8 | 2), Flags: netlink.Request | netlink.Acknowledge},
			Data: append(data, b...)}
		if _, err := c.Execute(m); err != nil {
			fmt.Fprintln(os.Stderr, "config:", err)
			return 1
		}
	}
	fmt.Println("bound")
	for {
		if _, err := c.Receive(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// kernelQueue is the queue's line of the namespace's
// /proc/net/netfilter/nfnetlink_queue: its queue_total (packets waiting
// for a verdict); false when the queue has no instance (no listener).
func kernelQueue(t *testing.T, ns, q string) (int, bool) {
	t.Helper()
	var out []byte
	labtest.InNetns(t, ns, func() error {
		// a proc file's namespace is the opener's thread's
		var err error
		out, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	})
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == q {
			var n int
			fmt.Sscan(f[2], &n)
			return n, true
		}
	}
	return 0, false
}

// killOutcome is what a killed listener left: how many of the packets
// sent while it held them were waiting in the kernel's queue, how many
// of them got through after the kill, and how many of the packets sent
// after the kill got through.
type killOutcome struct {
	Held, HeldThrough, AfterThrough int
}

// TestNFQueueKillAsKernel: a datapath-kill fault in `uswitch nfqueue
// --faults` does what the kernel does when a plain NFQUEUE listener is
// killed (kill -9): the packets the kernel queued for it are dropped
// (nfqnl_rcv_nl_event -> instance_destroy -> nfqnl_flush with NF_DROP;
// --queue-bypass does not save them), and the later packets meet no
// listener: dropped, or accepted with --queue-bypass (nf_queue,
// -ESRCH). uswitch holds the packets with a datapath-stall fault (the
// kernel's queue shows them waiting, as for the plain listener that
// never answers) and is killed at an instant of its schedule, on the
// clock.
func TestNFQueueKillAsKernel(t *testing.T) {
	labtest.Root(t, "makes a network namespace and binds NFQUEUE queues")
	if testing.Short() {
		t.Skip("namespaces: not in -short")
	}
	testtools.Need(t, "ip", "iptables")
	const held, after = 10, 5
	for _, bypass := range []bool{false, true} {
		name := map[bool]string{false: "drop", true: "queue-bypass"}[bypass]
		t.Run(name, func(t *testing.T) {
			ns := labtest.Name("usq-kill")
			labtest.Netns(t, ns)
			labtest.In(t, ns, "ip", "link", "set", "lo", "up")
			q := fmt.Sprint(5000 + os.Getpid()%20000)
			port := 7000 + os.Getpid()%1000
			rule := []string{"iptables", "-A", "OUTPUT", "-p", "udp", "--dport", fmt.Sprint(port), "-j", "NFQUEUE", "--queue-num", q}
			if bypass {
				rule = append(rule, "--queue-bypass")
			}
			labtest.In(t, ns, rule...)
			var rx, tx net.PacketConn
			var err error
			labtest.InNetns(t, ns, func() error {
				if rx, err = net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
					return err
				}
				tx, err = net.ListenPacket("udp4", "127.0.0.1:0")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rx.Close(); tx.Close() })
			var got atomic.Int64
			go func() {
				buf := make([]byte, 64)
				for {
					if _, _, err := rx.ReadFrom(buf); err != nil {
						return
					}
					got.Add(1)
				}
			}()
			dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
			send := func(n int) {
				for i := range n {
					if _, err := tx.WriteTo([]byte(fmt.Sprint(i)), dst); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
			}
			// measure: the listener holds the first packets, is killed,
			// then more packets come
			measure := func(who string, kill func()) killOutcome {
				got.Store(0)
				send(held)
				time.Sleep(300 * time.Millisecond)
				depth, ok := kernelQueue(t, ns, q)
				if !ok {
					t.Fatalf("%s: queue %s has no instance before the kill (too slow a machine for the schedule?)", who, q)
				}
				var o killOutcome
				o.Held = depth
				if n := got.Load(); n != 0 {
					t.Errorf("%s: %d packets passed while the listener held them", who, n)
				}
				kill()
				time.Sleep(200 * time.Millisecond)
				o.HeldThrough = int(got.Load())
				got.Store(0)
				send(after)
				time.Sleep(300 * time.Millisecond)
				o.AfterThrough = int(got.Load())
				return o
			}

			// the kernel with a plain listener, killed with SIGKILL
			cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), plainListenerEnv+"="+q)
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "bound\n" {
				t.Fatalf("plain listener: %q %v", l, err)
			}
			kernel := measure("plain listener", func() {
				cmd.Process.Signal(unix.SIGKILL)
				cmd.Wait()
			})
			if _, ok := kernelQueue(t, ns, q); ok {
				t.Errorf("plain listener killed: queue %s still has an instance", q)
			}

			// uswitch nfqueue, stalled from the start and killed at 3s
			dir := t.TempDir()
			rules := filepath.Join(dir, "rules")
			os.WriteFile(rules, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"), 0o644)
			faults := filepath.Join(dir, "faults.toml")
			os.WriteFile(faults, []byte(`[experiment]
seed = 7
[[fault]]
name = "stall"
action = "datapath-stall"
start = "0s"
[[fault]]
name = "kill"
action = "datapath-kill"
schedule = { at = "3s" }
`), 0o644)
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- nfqueueCmd([]string{"--queue-num", q, "--netns", ns, "--rules", rules, "--faults", faults,
					"--socket", "none", "--duration", "6s"}, nil, &out, &errb)
			}()
			t.Cleanup(func() { <-done })
			for start := time.Now(); !strings.Contains(out.String(), "deciding queues"); time.Sleep(20 * time.Millisecond) {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("not bound after 10s: %s", errb.String())
				}
			}
			us := measure("uswitch", func() {
				for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
					if _, ok := kernelQueue(t, ns, q); !ok {
						return
					}
					if time.Since(start) > 5*time.Second {
						t.Fatalf("uswitch not killed 5s on: %s", errb.String())
					}
				}
			})
			if code := <-done; code != 0 {
				t.Errorf("uswitch nfqueue: exit %d: %s", code, errb.String())
			}
			done <- 0
			t.Logf("kernel, plain listener killed: %+v; uswitch, datapath-kill: %+v\n%s", kernel, us, out.String())
			want := killOutcome{Held: held}
			if bypass {
				want.AfterThrough = after
			}
			if kernel != want {
				t.Errorf("kernel: %+v, want %+v (the facts of the research note)", kernel, want)
			}
			if us != kernel {
				t.Errorf("uswitch: %+v, kernel: %+v", us, kernel)
			}
			if !strings.Contains(out.String(), "kill: ") || !strings.Contains(out.String(), "kills 1") {
				t.Errorf("fault list lacks the kill:\n%s", out.String())
			}
		})
	}
}
