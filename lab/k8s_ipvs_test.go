package lab

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// TestK8sNodePortHostNetworkIPVS brings up the IPVS-mode twin of the
// NodePort + hostNetwork lab and checks the research note's IPVS
// results with real requests: the local hostNetwork real server reached
// with no SNAT (E1), masquerade on the other paths, the ClusterIP on
// kube-ipvs0, the UDP answer from the wrong source lost (E7) and found
// again with the server bound to the node's address, the virtual
// servers on every node address, then the whole demo (E3 fails, E5
// fails only through the other node).
func TestK8sNodePortHostNetworkIPVS(t *testing.T) {
	needRoot(t)
	c, ren := k8sLabFile(t, "k8s-nodeport-hostnetwork-ipvs.toml")
	l := upLab(t, c)
	cli, pod, aHost, bHost := ren("usw-k8s-client"), ren("usw-k8s-pod"), ren("usw-k8s-a-host"), ren("usw-k8s-b-host")
	const to = 3 * time.Second
	get := func(t *testing.T, from, url, servedBy, clientIP string) {
		t.Helper()
		r, err := l.HTTPGet(from, url, to)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, from, err)
		}
		if r.Status != 200 || r.ServedBy != servedBy || !strings.HasPrefix(r.ClientAddr, clientIP+":") {
			t.Errorf("GET %s from %s: %d served by %q seeing %q; want 200 by %q seeing %s", url, from, r.Status, r.ServedBy, r.ClientAddr, servedBy, clientIP)
		}
	}
	t.Run("tcp", func(t *testing.T) {
		get(t, cli, "http://192.168.0.2:30080/", bHost, "192.168.0.100") // E1: local real server, no SNAT
		get(t, cli, "http://192.168.0.2:30081/", pod, "10.244.1.1")      // E1c: masqueraded out of cni0
		get(t, cli, "http://192.168.0.1:30080/", bHost, "192.168.0.1")   // E2
		get(t, pod, "http://192.168.0.2:30080/", bHost, "10.244.1.5")
		get(t, pod, "http://10.244.1.1:30080/", bHost, "10.244.1.5") // the virtual server on cni0's address
		get(t, pod, "http://192.168.0.1:30080/", bHost, "192.168.0.1")
		get(t, pod, "http://10.96.0.50/", bHost, "10.244.1.5") // the ClusterIP on kube-ipvs0
		get(t, pod, "http://10.96.0.51/", pod, "10.244.1.1")   // itself: KUBE-LOOP-BACK masquerades, the hairpin port
		get(t, aHost, "http://192.168.0.2:30080/", bHost, "192.168.0.1")
	})
	t.Run("udp", func(t *testing.T) {
		for _, x := range []struct{ from, to, seen string }{
			{cli, "192.168.0.2:30082", "192.168.0.100"},
			{cli, "192.168.0.1:30082", "192.168.0.1"},
			{pod, "192.168.0.1:30082", "192.168.0.1"},
		} {
			b, err := l.UDPExchange(x.from, x.to, []byte("hi"), to)
			if err != nil || !strings.HasPrefix(string(b), bHost+" "+x.seen+":") {
				t.Errorf("UDP %s from %s: %q %v, want %s %s:...", x.to, x.from, b, err, bHost, x.seen)
			}
		}
		if b, err := l.UDPExchange(pod, "192.168.0.2:30082", []byte("hi"), time.Second); err == nil {
			t.Errorf("E7: the pod got an answer %q; the answer from 10.244.1.1 matches no IPVS connection", b)
		}
		// IPVS's connection (ipvsadm -Lnc) exists, the answer's source
		// is cni0's: conntrack has it as a flow of its own
		r := l.Control(control.Request{Cmd: "conntrack", Args: []string{"-L", "-p", "udp"}, Node: "b"})
		stray := regexp.MustCompile(`(?m)^udp .* src=10\.244\.1\.1 dst=10\.244\.1\.5 sport=8081 dport=\d+ \[UNREPLIED\]`)
		if r.Code != 0 || !stray.MatchString(r.Stdout) {
			t.Errorf("E7: node b's conntrack lacks the stray answer (%d %s):\n%s", r.Code, r.Stderr, r.Stdout)
		}
	})
	t.Run("ipvsadm", func(t *testing.T) {
		r := l.Control(control.Request{Cmd: "ipvsadm", Args: []string{"-Ln"}, Node: "b"})
		for _, want := range []string{"TCP  192.168.0.2:30080 rr", "TCP  10.244.1.1:30080 rr", "UDP  192.168.0.2:30082 rr",
			"TCP  10.96.0.50:80 rr", "  -> 192.168.0.2:8080             Masq    1"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("ipvsadm -Ln --node b lacks %q:\n%s", want, r.Stdout)
			}
		}
		r = l.Control(control.Request{Cmd: "ipvsadm", Args: []string{"-Ln"}, Node: "a"})
		if !strings.Contains(r.Stdout, "TCP  192.168.0.1:30080 rr") || strings.Contains(r.Stdout, "192.168.0.2:30080") {
			t.Errorf("ipvsadm -Ln --node a: want its own NodePort addresses only:\n%s", r.Stdout)
		}
		r = l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "10.96.0.50"}, Node: "a"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "local 10.96.0.50 dev lo") {
			t.Errorf("ip route get 10.96.0.50 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})
	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		for _, want := range []string{
			"GET http://192.168.0.1:30080/ from " + cli + ": failed, as expected", // E3 and E5 through a
			"GET http://192.168.0.2:30080/ from " + cli + ": 200, answered by " + bHost + " (it saw the client as 192.168.0.100:",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("demo output lacks %q:\n%s", want, out.String())
			}
		}
	})
}
