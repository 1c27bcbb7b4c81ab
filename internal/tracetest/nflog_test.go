package tracetest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// The NFLOG differential test: NFLOG rules (iptables-nft, which makes
// them nft log expressions) at every hook in a throw-away namespace with
// TUN devices, `tcpdump -i nflog:7 -w` there while packets are written
// into the TUNs and sent from a raw socket, and the records compared
// attribute by attribute with those the engine's kernel log gives a
// listener of group 7 for the same packets on the namespace's snapshot:
// the attribute types in order and their values, all but the time
// (NFULA_TIMESTAMP's value) and the padding bytes after the payload
// (the kernel leaves them as they were in its buffer).

const nflogRules = `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp -j MARK --set-xmark 0x2a/0xffffffff
-A PREROUTING -j NFLOG --nflog-group 7 --nflog-prefix "PFX-pre"
-A POSTROUTING -j NFLOG --nflog-group 7 --nflog-prefix "PFX-post"
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j NFLOG --nflog-group 7
-A FORWARD -j NFLOG --nflog-group 7 --nflog-prefix "PFX-fwd"
-A FORWARD -p udp -j NFLOG --nflog-group 7 --nflog-size 24 --nflog-prefix "PFX-cut"
-A FORWARD -p tcp -j NFLOG --nflog-group 8 --nflog-prefix "PFX-other-group"
-A OUTPUT -j NFLOG --nflog-group 7 --nflog-prefix "PFX-out"
COMMIT
`

func TestKernelNFLog(t *testing.T) {
	Require(t)
	testtools.Need(t, "tcpdump", "iptables-restore")
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	devA, devB := "nfa"+tag, "nfb"+tag
	k := twoTUNRun(t, devA, devB, "10.71")
	ns := k.ns
	if err := k.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	rules := strings.ReplaceAll(nflogRules, "PFX", "u"+tag)
	if e, c, err := ns.Restore(rules); err != nil || c != 0 {
		t.Fatalf("iptables-restore: exit %d %v: %s", c, err, e)
	}
	pkts := []Packet{
		P("udp 10.71.1.2:5000 > 10.71.2.2:53 len 40 iif A"),
		P("udp 10.71.2.2:53 > 10.71.1.2:5000 len 60 iif B"),
		P("icmp 10.71.1.2 > 10.71.2.2 id 7 seq 1 len 32 iif A"),
		P("tcp 10.71.1.2:40000 > 10.71.2.2:80 syn iif A"),
		P("icmp 10.71.1.2 > 10.71.1.1 id 8 seq 1 iif A"), // answered: INPUT, then OUTPUT
		P("udp 10.71.1.1:4000 > 10.71.2.2:9 len 10 local"),
	}
	for i := range pkts {
		switch pkts[i].In {
		case "A":
			pkts[i].In = devA
		case "B":
			pkts[i].In = devB
		}
	}

	// tcpdump -i nflog:7 in the namespace, packet-buffered
	file := filepath.Join(t.TempDir(), "kernel.pcap")
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-U", "-i", "nflog:7", "-w", file)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	listening := make(chan bool, 1)
	go func() {
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening on nflog:7") {
				ok = true
				listening <- true
			}
		}
		if !ok {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatal("tcpdump -i nflog:7 did not start")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump -i nflog:7 did not start")
	}
	for i, p := range pkts {
		if err := k.inject(p); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		time.Sleep(20 * time.Millisecond)
		k.drain()
	}
	// nfnetlink_log sends a group's queue when it holds 100 records or
	// after its flush timeout of one second
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	kernel := readNFLog(t, file)

	// uswitch: the namespace's snapshot, the same packets, a listener
	// of group 7
	snap := filepath.Join(t.TempDir(), "snapshot")
	if err := host.Capture(snap, ns.Name); err != nil {
		t.Fatal(err)
	}
	s, err := host.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	kl := datapath.NewKernelLog()
	e.SetKernelLog(kl)
	recs, cancel := kl.SubscribeNFLog(7, 64)
	defer cancel()
	for i, p := range pkts {
		pk := &packet.Packet{Data: p.Bytes()}
		if err := pk.Decode(); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		now := int64(time.Hour) + int64(i)*int64(time.Millisecond)
		if p.In == Local {
			pk.HasSocket = true // root's raw socket
			e.Send(pk, now, nil)
		} else {
			pk.InIf = p.In
			e.Receive(pk, now, nil)
		}
	}
	var ours [][]byte
	for len(recs) > 0 {
		ours = append(ours, (<-recs).Record)
	}
	// the kernel's ifindexes are the namespace's; the snapshot has them
	if len(kernel) != len(ours) {
		t.Errorf("the kernel logged %d records, uswitch %d", len(kernel), len(ours))
	}
	prefixes := map[string]bool{}
	seen := map[string]bool{}
	for i := 0; i < len(kernel) && i < len(ours); i++ {
		kd, ud := attrDump(t, kernel[i]), attrDump(t, ours[i])
		for _, l := range strings.Split(kd, "\n")[1:] {
			if f := strings.Fields(l); len(f) > 0 {
				seen[f[0]] = true
			}
		}
		if kd != ud {
			t.Errorf("record %d:\nkernel:\n%s\nuswitch:\n%s", i+1, kd, ud)
		}
		if r, err := trace.DecodeNFLog(ours[i], binary.LittleEndian); err == nil {
			prefixes[r.Prefix] = true
		}
	}
	for _, w := range []string{"u" + tag + "-pre", "u" + tag + "-fwd", "u" + tag + "-cut", "u" + tag + "-post", "u" + tag + "-out", ""} {
		if !prefixes[w] {
			t.Errorf("no record with the prefix %q (have %v)", w, prefixes)
		}
	}
	// the comparison covered these attributes
	for _, a := range []uint16{trace.NFULAPacketHdr, trace.NFULAPrefix, trace.NFULAIfindexIndev, trace.NFULAIfindexOutdev, trace.NFULAMark,
		trace.NFULAHWType, trace.NFULAHWLen, trace.NFULAHWHeader, trace.NFULATimestamp, trace.NFULAUID, trace.NFULAGID, trace.NFULAPayload} {
		if !seen[trace.NFULAName(a)] {
			t.Errorf("no kernel record had %s", trace.NFULAName(a))
		}
	}
	t.Logf("%d records compared", min(len(kernel), len(ours)))
}

// readNFLog reads a LINKTYPE_NFLOG pcap's records.
func readNFLog(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != trace.LinkTypeNFLOG {
		t.Fatalf("%s: link type %d", file, r.LinkType())
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, data)
	}
}

// attrDump is a record's header and attributes one a line, in order,
// with their values in hex; TIMESTAMP's value is left out, and so are
// the IP ID and header checksum of a packet the host made itself (no
// input device, at OUTPUT or POSTROUTING, an ID other than the 0x4242
// of the injected local packets): the kernel picks the ID.
func attrDump(t *testing.T, rec []byte) string {
	t.Helper()
	fam, ver, group, attrs, err := trace.ParseNFLog(rec, binary.LittleEndian)
	if err != nil {
		t.Errorf("% x: %v", rec, err)
		return ""
	}
	hostMade := true
	for _, a := range attrs {
		switch {
		case a.Type == trace.NFULAIfindexIndev:
			hostMade = false
		case a.Type == trace.NFULAPacketHdr && len(a.Value) == 4 && a.Value[2] < 3:
			hostMade = false
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "family %d version %d group %d\n", fam, ver, group)
	for _, a := range attrs {
		v := fmt.Sprintf("%x", a.Value)
		switch {
		case a.Type == trace.NFULATimestamp:
			v = fmt.Sprintf("(%d bytes)", len(a.Value))
		case a.Type == trace.NFULAPayload && hostMade && len(a.Value) >= 20 && binary.BigEndian.Uint16(a.Value[4:]) != 0x4242:
			v = fmt.Sprintf("%x????%x????%x", a.Value[:4], a.Value[6:10], a.Value[12:])
		}
		fmt.Fprintf(&b, "  %s %s\n", trace.NFULAName(a.Type), v)
	}
	return b.String()
}
