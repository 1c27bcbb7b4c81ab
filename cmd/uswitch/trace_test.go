package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/packet"
)

func specBytes(t *testing.T, s string) []byte {
	sp, _, err := packet.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return packet.Build(sp)
}

func runTrace(t *testing.T, args ...string) (string, string, int) {
	var o, e bytes.Buffer
	code := traceCmd(args, strings.NewReader(""), &o, &e)
	return o.String(), e.String(), code
}

// TestTraceExample runs the README's example against examples/router.
func TestTraceExample(t *testing.T) {
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"PACKET: 2 ", " TRACE: 2 ", "raw:PREROUTING:rule:0x3:CONTINUE  -4 -t raw -A PREROUTING -p tcp -j TRACE",
		"nat:PREROUTING:rule:", "DNAT --to-destination 192.168.1.2:8080", "DST=192.168.1.2", "FATE: 1 forwarded out eth1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTracePcapng replays a pcapng whose interface names give the
// ingress, and a plain pcap with --iif; the flow's reply comes back NATed.
func TestTracePcapng(t *testing.T) {
	dir := t.TempDir()
	ng := filepath.Join(dir, "c.pcapng")
	f, _ := os.Create(ng)
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	eth1, _ := w.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeRaw})
	ts := time.Unix(1700000000, 0)
	for i, p := range []struct {
		spec string
		ifc  int
	}{
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1", 0},
		{"tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7", eth1},
	} {
		b := specBytes(t, p.spec)
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(b), Length: len(b), InterfaceIndex: p.ifc}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	f.Close()
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", ng)
	if code != 0 || !strings.Contains(out, "FATE: 1 forwarded out eth1\n") || !strings.Contains(out, "FATE: 2 forwarded out eth0\n") {
		t.Fatalf("exit %d %s\n%s", code, errs, out)
	}
	// plain pcap: --iif is required
	pc := filepath.Join(dir, "c.pcap")
	f, _ = os.Create(pc)
	pw := pcapgo.NewWriter(f)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	b := specBytes(t, "udp 10.0.0.2:5000 > 10.0.0.1:53")
	pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b)
	f.Close()
	if _, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", pc); code == 0 || !strings.Contains(errs, "--iif") {
		t.Fatalf("without --iif: exit %d %q", code, errs)
	}
	out, errs, code = runTrace(t, "--snapshot", "../../examples/router", "--pcap", pc, "--iif", "eth0")
	if code != 0 || !strings.Contains(out, "FATE: 1 delivered\nFATE: 1.1 answer sent out eth0\n") {
		t.Fatalf("exit %d %s\n%s", code, errs, out)
	}
}

// TestTraceKubeIPVS replays packets against examples/kube-ipvs, a node
// as kube-proxy's IPVS mode leaves it: a pod's connection to a ClusterIP
// is scheduled by IPVS to an endpoint (no masquerade from the pod CIDR)
// and its reply gets the ClusterIP back in FORWARD; an outside client's
// NodePort connection is marked by KUBE-NODE-PORT and masqueraded by
// KUBE-POSTROUTING after IPVS scheduled it (vs.conntrack=1). The pod's
// reply leaves by the device it came in on towards an on-link source,
// so the node also sends an ICMP redirect (2.1), as the kernel would.
// The snapshot's ipvsadm-save lists each service's endpoints in order
// (.5 before .6); restoring it adds each at the head of the kernel's
// list, so rr's first pick is the last one (.6, and .3 for DNS).
func TestTraceKubeIPVS(t *testing.T) {
	dir := t.TempDir()
	ng := filepath.Join(dir, "k.pcapng")
	f, _ := os.Create(ng)
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "cni0", LinkType: layers.LinkTypeRaw}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	eth0, _ := w.AddInterface(pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw})
	ts := time.Unix(1700000000, 0)
	for i, p := range []struct {
		spec string
		ifc  int
	}{
		{"tcp 10.244.0.9:40000 > 10.96.100.50:80 syn seq 1", 0},
		{"tcp 10.244.0.6:80 > 10.244.0.9:40000 syn ack 2 seq 7", 0},
		{"tcp 192.168.122.50:41000 > 192.168.122.10:30080 syn seq 1", eth0},
		{"udp 10.244.0.9:5353 > 10.96.0.10:53", 0},
	} {
		b := specBytes(t, p.spec)
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(b), Length: len(b), InterfaceIndex: p.ifc}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	f.Close()
	out, errs, code := runTrace(t, "--snapshot", "../../examples/kube-ipvs", "--pcap", ng, "--trace-all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"ipvs:INPUT:99:schedule TCP 10.244.0.9:40000 -> 10.96.100.50:80 -> 10.244.0.6:80 Masq SYN_RECV",
		"OUT=cni0 SRC=10.244.0.9 DST=10.244.0.6 LEN=40 TOS=0x0 TTL=63",
		"FATE: 1 forwarded out cni0\n",
		"ipvs:FORWARD:100:reply TCP 10.244.0.9:40000 -> 10.96.100.50:80 -> 10.244.0.6:80 Masq SYN_RECV",
		"FATE: 2 forwarded out cni0\n",
		"nat:KUBE-NODE-PORT:rule:",
		"nat:KUBE-MARK-MASQ:rule:0xd:CONTINUE",
		"ipvs:INPUT:99:schedule TCP 192.168.122.50:41000 -> 192.168.122.10:30080 -> 10.244.0.6:80 Masq SYN_RECV",
		"nat:KUBE-POSTROUTING:rule:0x12:ACCEPT  -4 -t nat -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
		"FATE: 3 forwarded out cni0\n",
		"ipvs:INPUT:99:schedule UDP 10.244.0.9:5353 -> 10.96.0.10:53 -> 10.244.0.3:53 Masq UDP",
		"FATE: 4 forwarded out cni0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// fragment cuts the IPv4 packet b at payload bytes [off, end) (MF unless
// it reaches the end).
func fragment(b []byte, off, end int) []byte {
	hl := packet.IPv4(b).HeaderLen()
	pl := b[hl:]
	end = min(end, len(pl))
	f := append(append([]byte(nil), b[:hl]...), pl[off:end]...)
	f[2], f[3] = byte(len(f)>>8), byte(len(f))
	fo := off / 8
	if end < len(pl) {
		fo |= 0x2000
	}
	f[6], f[7] = byte(fo>>8), byte(fo)
	packet.IPv4(f).SetChecksum()
	return f
}

// TestTraceFragments: fragments are held until their datagram is whole,
// which gets the one FATE line naming the packets it was built from and
// leaves (DNATed) in fragments; a queue that times out is reported with
// the ICMP time exceeded the host sends, and what is still held at the
// end is listed.
func TestTraceFragments(t *testing.T) {
	syn := specBytes(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 id 1 len 2000")
	lone := specBytes(t, "tcp 10.0.0.2:40001 > 10.0.0.1:80 syn seq 1 id 2 len 2000")
	last := specBytes(t, "tcp 10.0.0.2:40002 > 10.0.0.1:80 syn seq 1 id 3 len 2000")
	var pc bytes.Buffer
	pw := pcapgo.NewWriter(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	t0 := time.Unix(1700000000, 0)
	for _, r := range []struct {
		at time.Duration
		b  []byte
	}{
		{0, fragment(syn, 0, 1480)},
		{time.Millisecond, fragment(syn, 1480, 4000)},
		{2 * time.Millisecond, fragment(lone, 0, 1480)},
		{40 * time.Second, fragment(last, 1480, 4000)},
	} {
		pw.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(r.at), CaptureLength: len(r.b), Length: len(r.b)}, r.b)
	}
	file := filepath.Join(t.TempDir(), "frags.pcap")
	os.WriteFile(file, pc.Bytes(), 0o644)
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", file, "--iif", "eth0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"HELD: 1 fragment of 10.0.0.2 > 10.0.0.1 id 1 proto 6, offset 0, 1480 bytes, waiting for its datagram\n",
		// the whole SYN is traced (LEN=2040), DNATed, and leaves in
		// the two fragments it came in
		"PACKET: 2 ", " LEN=2040 ", "DST=192.168.1.2 ",
		"FATE: 2 forwarded out eth1 in 2 fragments (datagram reassembled from packets 1, 2)\n",
		"HELD: 3 fragment of 10.0.0.2 > 10.0.0.1 id 2 proto 6",
		// 30 s later: the queue of packet 3 expired; its first
		// fragment was for the host's own address, so the host
		// answers time exceeded
		"EXPIRED: datagram 10.0.0.2 > 10.0.0.1 id 2 proto 6, packets 3 dropped: reassembly timed out (ipfrag_time)\n",
		"FATE: expired.1 answer sent out eth0\n",
		"HELD: 4 fragment of 10.0.0.2 > 10.0.0.1 id 3 proto 6, offset 1480",
		"HELD: at the end, datagram 10.0.0.2 > 10.0.0.1 id 3 proto 6 never completed: packets 4\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FATE: 1 ") || strings.Contains(out, "FATE: 3 ") {
		t.Errorf("a held fragment got a FATE line:\n%s", out)
	}
}

// TestTraceFormatLog prints the README's example in the kernel log's
// form: iptables-legacy TRACE lines (the TRACE rule itself has none, a
// rule is logged before its target runs: the DNAT rule sees the old
// address), then the FATE line.
func TestTraceFormatLog(t *testing.T) {
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--format", "log", "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	const tcp = "TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=TCP SPT=40000 DPT=80 SEQ=0 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \n"
	const fwd = "IN=eth0 OUT=eth1 MAC= SRC=10.0.0.2 DST=192.168.1.2 LEN=40 TOS=0x00 PREC=0x00 TTL=63 ID=0 PROTO=TCP SPT=40000 DPT=8080 SEQ=0 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 \n"
	want := "TRACE: raw:PREROUTING:policy:2 IN=eth0 OUT= MAC= SRC=10.0.0.2 DST=10.0.0.1 LEN=40 " + tcp +
		"TRACE: nat:PREROUTING:rule:1 IN=eth0 OUT= MAC= SRC=10.0.0.2 DST=10.0.0.1 LEN=40 " + tcp +
		"TRACE: filter:FORWARD:rule:2 " + fwd +
		"TRACE: filter:SVC:rule:1 " + fwd +
		"TRACE: nat:POSTROUTING:rule:1 " + fwd +
		"FATE: 1 forwarded out eth1\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if _, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--format", "xml", "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0"); code != 2 || !strings.Contains(errs, "want monitor or log") {
		t.Errorf("--format xml: exit %d, %q", code, errs)
	}
}

// TestTraceBridge: frames of a pcapng whose interface is a bridge port
// of the snapshot (examples/bridge: br0 with veth1 and veth2, br_netfilter
// on) take the bridge level: flooded, learned, passed up, with the IPv4
// hooks br_netfilter runs traced as IN=br0.
func TestTraceBridge(t *testing.T) {
	a, b, br := packet.MAC{2, 0, 0, 0, 0, 0xa}, packet.MAC{2, 0, 0, 0, 0, 0xb}, packet.MAC{2, 0, 0, 0, 0, 0xfe}
	udp := specBytes(t, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	back := specBytes(t, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	ping := specBytes(t, "icmp 10.1.0.1 > 10.1.0.254 id 1 seq 1")
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "veth1", LinkType: layers.LinkTypeEthernet}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	veth2, err := nw.AddInterface(pcapgo.NgInterface{Name: "veth2", LinkType: layers.LinkTypeEthernet})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		iface int
		data  []byte
	}{
		{0, packet.BuildFrame(b, a, packet.EtherTypeIPv4, udp)},
		{veth2, packet.BuildFrame(a, b, packet.EtherTypeIPv4, back)},
		{0, packet.BuildFrame(br, a, packet.EtherTypeIPv4, ping)},
	} {
		nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(f.data), Length: len(f.data), InterfaceIndex: f.iface}, f.data)
	}
	nw.Flush()
	file := filepath.Join(t.TempDir(), "br.pcapng")
	os.WriteFile(file, ng.Bytes(), 0o644)
	out, errs, code := runTrace(t, "--snapshot", "../../examples/bridge", "--pcap", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"PACKET: 2 ", "IN=br0 MACSRC=2:0:0:0:0:a MACDST=2:0:0:0:0:b MACPROTO=0800 SRC=10.1.0.1 DST=10.1.0.2",
		"filter:FORWARD:rule:",
		"FATE: 1 bridged out veth2\n",
		// the answer's destination was learned on veth1
		"FATE: 2 bridged out veth1\n",
		// the echo request goes up; the reply waits for 10.1.0.1's MAC,
		// asked for on every port
		"FATE: 3 out veth1, veth2; passed up to br0: delivered\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// --write-pcap: the frames that left the ports, on them, as
	// Ethernet; the bridged ones unchanged
	wfile := filepath.Join(t.TempDir(), "out.pcapng")
	if _, errs, code := runTrace(t, "--snapshot", "../../examples/bridge", "--pcap", file, "--write-pcap", wfile); code != 0 {
		t.Fatalf("--write-pcap: exit %d: %s", code, errs)
	}
	wf, err := os.Open(wfile)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	r, err := pcapgo.NewNgReader(wf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		ifc, _ := r.Interface(ci.InterfaceIndex)
		kind := "ip"
		switch {
		case ifc.LinkType != layers.LinkTypeEthernet:
			kind = "not ethernet"
		case bytes.Equal(data, packet.BuildFrame(b, a, packet.EtherTypeIPv4, udp)):
			kind = "frame 1"
		case bytes.Equal(data, packet.BuildFrame(a, b, packet.EtherTypeIPv4, back)):
			kind = "frame 2"
		case len(data) >= 14 && data[12] == 0x08 && data[13] == 0x06:
			kind = "arp"
		}
		got = append(got, ifc.Name+" "+kind)
	}
	if w := "veth2 frame 1, veth1 frame 2, veth1 arp, veth2 arp"; strings.Join(got, ", ") != w {
		t.Errorf("--write-pcap holds %q, want %q", strings.Join(got, ", "), w)
	}
}

// TestBridgeFDBShow: `uswitch bridge -j fdb show` on a snapshot prints
// what the kernel's `bridge -j fdb show` printed when it was taken, for
// the bridge and its ports (the kernel also lists the other devices'
// own addresses, which uswitch does not keep).
func TestBridgeFDBShow(t *testing.T) {
	raw, err := os.ReadFile("../../examples/bridge/bridge-fdb.json")
	if err != nil {
		t.Fatal(err)
	}
	var all []map[string]any
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	var mine []map[string]any
	for _, e := range all {
		switch e["ifname"] {
		case "br0", "veth1", "veth2":
			mine = append(mine, e)
		}
	}
	want, _ := json.Marshal(mine) // keys sorted: compare as values
	var o, e bytes.Buffer
	if code := bridgeCmd([]string{"--snapshot", "../../examples/bridge", "-j", "fdb", "show"}, nil, &o, &e); code != 0 {
		t.Fatalf("exit %d: %s", code, e.String())
	}
	var got []map[string]any
	if err := json.Unmarshal(o.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, o.String())
	}
	if !reflect.DeepEqual(got, mine) {
		t.Errorf("got\n%s\nwant\n%s", o.String(), want)
	}
	o.Reset()
	if code := bridgeCmd([]string{"--snapshot", "../../examples/bridge", "fdb", "show", "br", "nope"}, nil, &o, &e); code != 1 {
		t.Errorf("unknown bridge: exit %d", code)
	}
}

// TestTracePictures: --svg writes one picture per traced packet, --html
// one page with all of them.
func TestTracePictures(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "trace.html")
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--trace-all", "--packet", "udp 10.0.0.2:5000 > 10.0.0.1:53 iif eth0",
		"--svg", filepath.Join(dir, "pics"), "--html", page)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "pics", "packet-1.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg"`, `data-hook="INPUT"`, "FATE: delivered", "answer: icmp 10.0.0.1 &gt; 10.0.0.2 type 3 code 3"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(html, []byte("<svg ")) != 1 || !bytes.Contains(html, []byte("<!DOCTYPE html>")) {
		t.Error("the page does not hold the picture")
	}
}
