package fdb

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
)

// testEtherType is IEEE 802 local experimental ethertype 1: nothing on the
// machine sends it, so every frame of it a socket reads is the test's.
const testEtherType = 0x88b5

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rawSock is an AF_PACKET socket bound to one device in a namespace.
type rawSock struct {
	fd int
}

func openRaw(t *testing.T, ns, dev string) *rawSock {
	t.Helper()
	var fd int
	err := netnsrun.InNamed(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(testEtherType)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(testEtherType), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket on %s in %s: %v", dev, ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSock{fd: fd}
}

// received returns the sequence numbers of the test frames that arrived
// (not the ones this socket's device sent).
func (s *rawSock) received(t *testing.T) []uint32 {
	var l []uint32
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) {
			return l
		}
		if err != nil {
			t.Fatalf("recvfrom: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n >= 14+10 && string(buf[14:20]) == "USWFDB" {
			l = append(l, binary.BigEndian.Uint32(buf[20:24]))
		}
	}
}

// TestKernelBridge feeds the same frames to a kernel bridge and to a
// Bridge and compares who receives each frame (peers read with AF_PACKET
// sockets, br0's own socket for what goes up) and the FDB (`bridge fdb
// show`, `bridge -j fdb show`) after learning, MAC moves, an own address
// as source, static and sticky entries, port flags (hairpin, flood,
// mcast_flood, bcast_flood, learning), ageing and ageing_time 0.
func TestKernelBridge(t *testing.T) {
	testtools.Root(t, "the bridge differential test makes network namespaces, a bridge and veth pairs")
	testtools.Need(t, "ip", "bridge", "sysctl")
	brNS := kerneltest.NewNetns(t)
	peers := []*kerneltest.Netns{kerneltest.NewNetns(t), kerneltest.NewNetns(t), kerneltest.NewNetns(t)}
	run := func(ns *kerneltest.Netns, args ...string) string {
		t.Helper()
		o, e, c, err := ns.Run("", args...)
		if err != nil || c != 0 {
			t.Fatalf("%s: %v: exit %d: %s", strings.Join(args, " "), err, c, e)
		}
		return o
	}
	portNames := []string{"vetha", "vethb", "vethc"}
	portMACs := []packet.MAC{mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b"), mac("02:00:00:00:00:0c")}
	hosts := []packet.MAC{hostA, hostB, hostC}
	run(brNS, "ip", "link", "add", "br0", "type", "bridge")
	for i, p := range peers {
		// quiet peers: no IPv6 (no DAD, router or MLD messages), no IPv4 address
		run(p, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
		run(p, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		run(brNS, "ip", "link", "add", portNames[i], "address", portMACs[i].String(), "type", "veth",
			"peer", "name", "eth0", "address", hosts[i].String(), "netns", p.Name)
		run(brNS, "ip", "link", "set", portNames[i], "master", "br0")
		run(p, "ip", "link", "set", "eth0", "up")
	}
	for _, n := range portNames {
		run(brNS, "ip", "link", "set", n, "up")
	}
	run(brNS, "ip", "link", "set", "br0", "up")

	// the model, with the kernel's ifindexes
	var links []struct {
		Index int    `json:"ifindex"`
		Name  string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(run(brNS, "ip", "-j", "link", "show")), &links); err != nil {
		t.Fatal(err)
	}
	index := map[string]int{}
	for _, l := range links {
		index[l.Name] = l.Index
	}
	cfg := Config{Name: "br0", Index: index["br0"]}
	for i, n := range portNames {
		cfg.Ports = append(cfg.Ports, PortConfig{Name: n, Index: index[n], MAC: portMACs[i], Flags: DefaultPortFlags})
	}
	model, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }

	socks := make([]*rawSock, 3)
	for i, p := range peers {
		socks[i] = openRaw(t, p.Name, "eth0")
	}
	up := openRaw(t, brNS.Name, "br0")
	// wait for br0's addresses (the self entries) to settle: its
	// link-local address, and so its solicited-node group, comes when it
	// has carrier
	solicited := DefaultSelf(model.MAC, true)[4].String() + " dev br0 self"
	for i := 0; !strings.Contains(run(brNS, "bridge", "fdb", "show"), solicited); i++ {
		if i == 100 {
			t.Fatalf("br0 never joined %s", solicited)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// what a port's own stack receives (link-local groups): a socket bound
	// to the test ethertype on the port sees only frames the bridge passes
	portStack := make([]*rawSock, 3)
	for i, n := range portNames {
		portStack[i] = openRaw(t, brNS.Name, n)
	}

	var seq uint32
	// send sends one frame from peer from (or, with from BridgePort, from
	// br0 itself) and compares who got it: the peers behind the ports, br0
	// (passed up) and the ports' own stacks ("vetha-stack").
	send := func(name string, from int, dst, src packet.MAC) {
		t.Helper()
		seq++
		payload := make([]byte, 46)
		copy(payload, "USWFDB")
		binary.BigEndian.PutUint32(payload[6:], seq)
		data := packet.BuildFrame(dst, src, testEtherType, payload)
		w, fromName := up, "br0"
		if from != BridgePort {
			w, fromName = socks[from], portNames[from]
		}
		if _, err := unix.Write(w.fd, data); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		time.Sleep(40 * time.Millisecond)
		var got []string
		for i, s := range socks {
			if slices.Contains(s.received(t), seq) {
				got = append(got, portNames[i])
			}
		}
		if slices.Contains(up.received(t), seq) {
			got = append(got, "br0")
		}
		for i, s := range portStack {
			if slices.Contains(s.received(t), seq) {
				got = append(got, portNames[i]+"-stack")
			}
		}
		var d Decision
		if from == BridgePort {
			d = model.Output(dst)
		} else {
			f := packet.Frame{Data: data}
			f.Decode()
			d = model.Input(from, &f, clock())
		}
		var want []string
		for p := d.Out.Next(0); p >= 0; p = d.Out.Next(p + 1) {
			want = append(want, portNames[p])
		}
		if d.Up {
			want = append(want, "br0")
		}
		if d.Verdict == VerdictPass {
			want = append(want, portNames[from]+"-stack")
		}
		t.Logf("%-36s kernel %v, model %v %v", name, got, d.Verdict, want)
		if !slices.Equal(got, want) {
			t.Errorf("%s (%v -> %v from %s): kernel delivered to %v, model %v (%v)", name, src, dst, fromName, got, want, d.Verdict)
		}
	}
	linkSet := func(dev string, args ...string) {
		run(brNS, append([]string{"bridge", "link", "set", "dev", dev}, args...)...)
	}
	compareFDB := func(step string) {
		t.Helper()
		kernelText := run(brNS, "bridge", "fdb", "show")
		kernelJSON := run(brNS, "bridge", "-j", "fdb", "show")
		now := clock()
		if m := model.Show(now, false); m != kernelText {
			t.Errorf("%s: bridge fdb show differs\nkernel:\n%s\nmodel:\n%s", step, kernelText, m)
		}
		if m := string(model.ShowJSON(now)); m != kernelJSON {
			t.Errorf("%s: bridge -j fdb show differs\nkernel:\n%s\nmodel:\n%s", step, kernelJSON, m)
		}
		// and the snapshot path: the kernel's dump loaded into a bridge prints the same
		l, err := ParseShowJSON([]byte(kernelJSON))
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		snap, _ := New(cfg)
		if err := snap.Load(l, now); err != nil {
			t.Fatalf("%s: load: %v", step, err)
		}
		if got := string(snap.ShowJSON(now)); got != kernelJSON {
			t.Errorf("%s: kernel dump loaded and shown differs:\n%s\nkernel:\n%s", step, got, kernelJSON)
		}
	}
	compareFDB("start")

	unknown := mac("02:00:00:00:09:01")
	mcastGroup := mac("01:00:5e:01:02:03")
	send("unknown unicast", 0, unknown, hostA)
	send("known unicast", 1, hostA, hostB)
	send("broadcast", 2, packet.Broadcast, hostC)
	send("multicast", 2, mcastGroup, hostC)
	send("to the bridge", 0, model.MAC, hostA)
	send("to another port's address", 0, portMACs[2], hostA)
	send("back to the input port", 0, hostA, hostA)
	send("multicast source", 0, hostB, mcastGroup)
	send("LLDP group", 0, mac("01:80:c2:00:00:0e"), hostA)
	send("pause group", 1, mac("01:80:c2:00:00:01"), hostB)
	send("STP group, STP off", 2, mac("01:80:c2:00:00:00"), hostC)
	send("from br0: known", BridgePort, hostB, model.MAC)
	send("from br0: unknown", BridgePort, unknown, model.MAC)
	send("from br0: broadcast", BridgePort, packet.Broadcast, model.MAC)
	send("from br0: to a port's address", BridgePort, portMACs[2], model.MAC)
	compareFDB("learned")

	linkSet("vetha", "isolated", "on")
	linkSet("vethb", "isolated", "on")
	model.SetPortFlags(0, DefaultPortFlags|Isolated)
	model.SetPortFlags(1, DefaultPortFlags|Isolated)
	send("isolated: broadcast", 0, packet.Broadcast, hostA)
	send("isolated: to isolated", 0, hostB, hostA)
	send("isolated: to not isolated", 0, hostC, hostA)
	send("isolated: from not isolated", 2, hostA, hostC)
	linkSet("vetha", "isolated", "off")
	linkSet("vethb", "isolated", "off")
	model.SetPortFlags(0, DefaultPortFlags)
	model.SetPortFlags(1, DefaultPortFlags)

	linkSet("vetha", "hairpin", "on")
	model.SetPortFlags(0, DefaultPortFlags|Hairpin)
	send("hairpin known", 0, hostA, hostA)
	send("hairpin flood", 0, mac("02:00:00:00:09:02"), hostA)
	send("hairpin broadcast", 0, packet.Broadcast, hostA)
	linkSet("vetha", "hairpin", "off")
	model.SetPortFlags(0, DefaultPortFlags)

	linkSet("vethc", "flood", "off")
	model.SetPortFlags(2, DefaultPortFlags&^Flood)
	send("flood off", 0, mac("02:00:00:00:09:03"), hostA)
	send("flood off, broadcast", 0, packet.Broadcast, hostA)
	linkSet("vethc", "flood", "on", "mcast_flood", "off")
	linkSet("vethb", "bcast_flood", "off")
	model.SetPortFlags(2, DefaultPortFlags&^McastFlood)
	model.SetPortFlags(1, DefaultPortFlags&^BcastFlood)
	send("mcast_flood off", 0, mcastGroup, hostA)
	send("bcast_flood off", 0, packet.Broadcast, hostA)
	linkSet("vethc", "mcast_flood", "on", "learning", "off")
	linkSet("vethb", "bcast_flood", "on")
	model.SetPortFlags(2, DefaultPortFlags&^Learning)
	model.SetPortFlags(1, DefaultPortFlags)
	send("learning off", 2, mac("02:00:00:00:09:04"), mac("02:00:00:00:01:c2"))
	compareFDB("port flags")
	linkSet("vethc", "learning", "on")
	model.SetPortFlags(2, DefaultPortFlags)

	send("MAC move", 1, unknown, hostA)
	send("after the move", 2, hostA, hostC)
	send("own address as source", 0, unknown, portMACs[1])
	send("to the own address after", 2, portMACs[1], hostC)
	static, sticky := mac("02:00:00:00:05:01"), mac("02:00:00:00:05:02")
	run(brNS, "bridge", "fdb", "add", static.String(), "dev", "vethc", "master", "static")
	run(brNS, "bridge", "fdb", "add", sticky.String(), "dev", "vethc", "master", "static", "sticky")
	run(brNS, "bridge", "fdb", "add", "02:00:00:00:05:03", "dev", "vethb", "master", "permanent")
	now := clock()
	for _, err := range []error{
		model.Add(2, static, Static, false, now),
		model.Add(2, sticky, Static, true, now),
		model.Add(1, mac("02:00:00:00:05:03"), Permanent, false, now),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	send("to a static entry", 0, static, hostA)
	send("static entry's address as source", 0, unknown, static)
	send("sticky entry's address as source", 0, unknown, sticky)
	send("to the moved static entry", 1, static, hostB)
	send("to the sticky entry", 1, sticky, hostB)
	send("to a user permanent entry", 0, mac("02:00:00:00:05:03"), hostA)
	compareFDB("moves and static entries")

	// an address set on the bridge: an entry without a port
	brMAC := mac("02:00:00:00:00:aa")
	run(brNS, "ip", "link", "set", "br0", "address", brMAC.String())
	if err := model.SetMAC(brMAC, clock()); err != nil {
		t.Fatal(err)
	}
	send("to the set bridge address", 1, brMAC, hostB)
	send("from br0 to its own address", BridgePort, brMAC, brMAC)
	send("to the old bridge address (vetha's)", 1, portMACs[0], hostB)
	compareFDB("bridge address set")

	// ageing: 1 s (100 centiseconds); the kernel's cleanup runs at once
	// on the change and then at the next expiry
	run(brNS, "ip", "link", "set", "br0", "type", "bridge", "ageing_time", "100")
	model.SetAgeingTime(1e9)
	time.Sleep(2500 * time.Millisecond)
	if n, _ := model.Expire(clock()); n == 0 {
		t.Error("model: nothing aged out")
	}
	compareFDB("aged")

	run(brNS, "ip", "link", "set", "br0", "type", "bridge", "ageing_time", "0")
	model.SetAgeingTime(0)
	send("ageing_time 0: flood", 0, unknown, hostA)
	send("ageing_time 0: not learned", 1, hostA, hostB)
	compareFDB("ageing_time 0")
	if t.Failed() {
		fmt.Println(run(brNS, "bridge", "-d", "link", "show"))
	}
}
