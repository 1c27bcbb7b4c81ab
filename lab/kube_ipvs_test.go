package lab

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// getClient does a GET from ns and returns who answered and the client
// address the server saw.
func getClient(t *testing.T, l *Lab, ns, url string) (servedBy, client string) {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialFrom(l, ns, netip.Addr{}, network, addr, lvsTO)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: lvsTO}).Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v (datapath: %v)", url, ns, err, l.Stats())
	}
	resp.Body.Close()
	return resp.Header.Get("X-Served-By"), resp.Header.Get("X-Client-Addr")
}

// TestKubeIPVSLab runs examples/labs/kube-ipvs.toml: a node in kube-proxy's
// IPVS mode carries a pod's ClusterIP connections to the endpoints
// without masquerade (rr), the DNS ClusterIP over UDP, and an outside
// client's NodePort connections masqueraded to the node's address on the
// endpoint's link with the NodePort given back on the replies.
func TestKubeIPVSLab(t *testing.T) {
	l, role := lvsLab(t, "kube-ipvs.toml")
	pod, ext := role("pod"), role("ext")
	// the lab adds ep1, then ep2: each -a goes to the head of the
	// kernel's list and rr starts from the head, so ep2 answers first
	ep := []string{role("ep2"), role("ep1")}
	for i := 0; i < 4; i++ {
		by, cli := getClient(t, l, pod, "http://10.96.100.50/")
		if by != ep[i%2] || !strings.HasPrefix(cli, "10.244.0.9:") {
			t.Errorf("ClusterIP GET %d: served by %q, client %q; want %s, the pod's own address", i, by, cli, ep[i%2])
		}
	}
	name, echoed, err := udpFrom(l, pod, netip.Addr{}, "10.96.0.10:53", "query")
	if err != nil || (name != ep[0] && name != ep[1]) || echoed != "query" {
		t.Errorf("DNS ClusterIP: %q %q %v", name, echoed, err)
	}
	for i := 0; i < 2; i++ {
		by, cli := getClient(t, l, ext, "http://192.168.122.10:30080/")
		want := map[string]string{role("ep1"): "10.244.1.1:", role("ep2"): "10.244.2.1:"}[by]
		if by != ep[i%2] || want == "" || !strings.HasPrefix(cli, want) {
			t.Errorf("NodePort GET %d: served by %q, client %q; want %s masqueraded to %s", i, by, cli, ep[i%2], want)
		}
	}
	out := ipvsadm(t, l, "-Ln")
	for _, want := range []string{"TCP  10.96.100.50:80 rr", "UDP  10.96.0.10:53 rr", "TCP  192.168.122.10:30080 rr",
		"  -> 10.244.1.5:80                Masq    1"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm -Ln lacks %q:\n%s", want, out)
		}
	}
}
