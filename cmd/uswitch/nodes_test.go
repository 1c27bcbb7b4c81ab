package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/internal/labtest"
)

// nodesLab is two nodes on a switch and a client: a NodePort 30080 on
// both nodes to b's hostNetwork server 192.168.0.2:8080.
const nodesLab = `
name = "LAB"
[uswitch]
workers = 1
[uswitch.sysctl]
"net.bridge.bridge-nf-call-iptables" = 0
[[bridge]]
name = "lan"
[[interface]]
name = "lc"
kind = "tap"
bridge = "lan"
netns = "LAB-c"
[[namespace]]
name = "LAB-c"
addresses = ["192.168.0.100/24"]

[[node]]
name = "a"
[node.uswitch]
workers = 1
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.2:8080
-A POSTROUTING -d 192.168.0.2/32 -p tcp -m tcp --dport 8080 -j MASQUERADE
COMMIT
"""
[node.uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.1/24"]

[[node]]
name = "b"
server = [{ kind = "http", port = 8080 }]
[node.uswitch]
workers = 1
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.2:8080
COMMIT
"""
[[node.interface]]
name = "eth0"
switch = "lan"
addresses = ["192.168.0.2/24"]
`

// TestNodeControlCommands drives a running two-node lab's nodes with the
// commands a user types, each with --node: iptables-save and
// iptables-restore FILE, iptables, conntrack -L, ipvsadm -Ln, monitor
// --trace and pcap -i eth0; each answers for its node only.
func TestNodeControlCommands(t *testing.T) {
	labtest.TUN(t)
	p := labtest.Name("un")
	l := upLab(t, "nodes.toml", strings.ReplaceAll(nodesLab, "LAB", p))
	sock := filepath.Join(t.TempDir(), "lab.sock")
	if err := l.ListenControl(sock); err != nil {
		t.Fatal(err)
	}
	S := []string{"--socket", sock}
	client := p + "-c"
	get := func(url string) {
		t.Helper()
		r, err := l.HTTPGet(client, url, 3*time.Second)
		if err != nil || r.ServedBy != p+"-b-host" {
			t.Fatalf("GET %s: %+v %v", url, r, err)
		}
	}
	get("http://192.168.0.2:30080/")
	get("http://192.168.0.1:30080/")

	out, errs, code := cli(iptablesSave, "", append([]string{"--node", "a", "-t", "nat"}, S...)...)
	if code != 0 || !strings.Contains(out, "-A POSTROUTING -d 192.168.0.2/32 -p tcp -m tcp --dport 8080 -j MASQUERADE") {
		t.Errorf("iptables-save --node a: %d %s\n%s", code, errs, out)
	}
	out, _, _ = cli(iptablesSave, "", append([]string{"--node", "b", "-t", "nat"}, S...)...)
	if strings.Contains(out, "MASQUERADE") {
		t.Errorf("node b has node a's rules:\n%s", out)
	}
	out, errs, code = cli(iptablesCmd, "", append([]string{"--node", "a", "-t", "nat", "-S", "POSTROUTING"}, S...)...)
	if code != 0 || !strings.Contains(out, "-j MASQUERADE") {
		t.Errorf("iptables --node a -S: %d %s\n%s", code, errs, out)
	}
	out, errs, code = cli(conntrackCmd, "", append([]string{"-L", "--node", "a", "-p", "tcp"}, S...)...)
	if code != 0 || !strings.Contains(out, "dport=30080") || strings.Contains(out, "src=192.168.0.100 dst=192.168.0.2 ") {
		t.Errorf("conntrack -L --node a: %d %s\n%s", code, errs, out)
	}
	out, _, _ = cli(conntrackCmd, "", append([]string{"-L", "--node", "b", "-p", "tcp"}, S...)...)
	if !strings.Contains(out, "src=192.168.0.100 dst=192.168.0.2 sport=") || !strings.Contains(out, "src=192.168.0.1 dst=192.168.0.2 ") {
		t.Errorf("conntrack -L --node b lacks the client's and node a's flows:\n%s", out)
	}
	if out, errs, code := cli(ipvsadmCmd, "", append([]string{"-Ln", "--node", "b"}, S...)...); code != 0 || !strings.Contains(out, "IP Virtual Server") {
		t.Errorf("ipvsadm -Ln --node b: %d %s %s", code, out, errs)
	}
	if _, errs, code := cli(iptablesSave, "", append([]string{"--node", "z"}, S...)...); code != 2 || !strings.Contains(errs, "no node of that name") {
		t.Errorf("--node z: %d %q", code, errs)
	}

	// iptables-restore --node b FILE: -j TRACE for the NodePort, then
	// monitor --trace --node b sees a request's DNAT on b
	f := filepath.Join(t.TempDir(), "trace.rules")
	if err := os.WriteFile(f, []byte("*raw\n-A PREROUTING -p tcp -m tcp --dport 30080 -j TRACE\nCOMMIT\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := cli(iptablesRestore, "", append(append([]string{"--noflush", "--node", "b"}, S...), f)...); code != 0 {
		t.Fatalf("iptables-restore --node b: %d %s", code, errs)
	}
	_, bdp, err := l.Node("b")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	traced := make(chan int, 1)
	go func() { traced <- monitorLike(ctx, sock, pw); pw.Close() }()
	for deadline := time.Now().Add(5 * time.Second); !bdp.Tracing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("trace stream on node b did not start")
		}
	}
	if l.Tracing() {
		t.Errorf("--node b's trace listens on the lab's own engine")
	}
	gotten := make(chan error, 1)
	go func() {
		_, err := l.HTTPGet(client, "http://192.168.0.2:30080/", 3*time.Second)
		gotten <- err
	}()
	lines := bufio.NewScanner(pr)
	var seen []string
	want := []string{" raw:PREROUTING:rule:0x", "SRC=192.168.0.100 DST=192.168.0.2", "DPORT=30080", " nat:PREROUTING:rule:0x"}
	has := func() bool {
		all := strings.Join(seen, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return true
	}
	timer := time.AfterFunc(5*time.Second, cancel)
	for !has() && lines.Scan() {
		seen = append(seen, lines.Text())
	}
	timer.Stop()
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-traced; code != 0 || !has() {
		t.Errorf("monitor --trace --node b: exit %d, lines:\n%s\nwant all of %q", code, strings.Join(seen, "\n"), want)
	}

	if err := <-gotten; err != nil {
		t.Errorf("the traced request: %v", err)
	}

	// pcap --node b -i eth0: the request arrives on b's eth0
	file := filepath.Join(t.TempDir(), "b-eth0.pcap")
	captured := make(chan int, 1)
	go func() {
		_, errs, code := cli(pcapCmd, "", append([]string{"--node", "b", "-i", "eth0", "-c", "2", "-w", file}, S...)...)
		if errs != "" {
			t.Errorf("pcap: %s", errs)
		}
		captured <- code
	}()
	// the capture starts (or has already seen two packets of the
	// client's last connection closing)
	code, done := 0, false
	for deadline := time.Now().Add(5 * time.Second); !done && !bdp.Capturing(); time.Sleep(10 * time.Millisecond) {
		select {
		case code = <-captured:
			done = true
		default:
		}
		if !done && time.Now().After(deadline) {
			t.Fatal("capture on node b did not start")
		}
	}
	if !done {
		get("http://192.168.0.2:30080/")
		code = <-captured
	}
	if code != 0 {
		t.Fatalf("pcap --node b: exit %d", code)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v, want raw IPv4", r.LinkType())
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		// 192.168.0.100 <-> 192.168.0.2 (c0 a8 00 64, c0 a8 00 02)
		if len(data) < 20 || !(bytes.Equal(data[12:20], []byte{192, 168, 0, 100, 192, 168, 0, 2}) || bytes.Equal(data[12:20], []byte{192, 168, 0, 2, 192, 168, 0, 100})) {
			t.Errorf("packet %d on b's eth0 is not between the client and b: % x", n, data[:min(20, len(data))])
		}
	}
	if n != 2 {
		t.Errorf("%d packets captured, want 2", n)
	}
}

// monitorLike is `uswitch monitor --trace --node b --socket SOCK`.
func monitorLike(ctx context.Context, sock string, w io.Writer) int {
	return traceStream(ctx, sock, "b", w, io.Discard)
}
