package lab

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// TestK8sETPLocal runs examples/labs/k8s-etp-local.toml: Cluster
// masquerades on both nodes; Local keeps the client's address on the
// node with the endpoint and drops on the other (counted by node a's
// "has no local endpoints" rule), where the node's own and a pod's
// requests still get through; then the demo.
func TestK8sETPLocal(t *testing.T) {
	needRoot(t)
	c, err := Load(filepath.Join("..", "examples", "labs", "k8s-etp-local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	c = c.Rename(func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-etp-") })
	l := upLab(t, c)
	cli, pod, aHost := p+"-client", p+"-pod", p+"-a-host"
	get := func(from, url, clientIP string) {
		t.Helper()
		r, err := l.HTTPGet(from, url, 3*time.Second)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, from, err)
		}
		if r.ServedBy != pod || !strings.HasPrefix(r.ClientAddr, clientIP+":") {
			t.Errorf("GET %s from %s: served by %q seeing %q; want %s seeing %s", url, from, r.ServedBy, r.ClientAddr, pod, clientIP)
		}
	}
	get(cli, "http://192.168.0.2:30080/", "10.244.1.1")    // Cluster: masqueraded out of cni0
	get(cli, "http://192.168.0.1:30080/", "192.168.0.1")   // Cluster, through a
	get(cli, "http://192.168.0.2:30081/", "192.168.0.100") // Local: the source kept
	get(aHost, "http://192.168.0.1:30081/", "192.168.0.1") // the node's own: KUBE-SVC, masqueraded
	get(pod, "http://192.168.0.1:30081/", "192.168.0.1")   // a pod: KUBE-SVC
	drops := func() string {
		r := l.Control(control.Request{Cmd: "iptables-save", Counters: true, Table: "filter", Node: "a"})
		m := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/local:http has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j DROP$`).FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("node a has no \"has no local endpoints\" rule:\n%s", r.Stdout)
		}
		return m[1]
	}
	if n := drops(); n != "0" {
		t.Errorf("the drop rule counted %s packets before any client request to a:30081", n)
	}
	if _, err := l.HTTPGet(cli, "http://192.168.0.1:30081/", time.Second); err == nil {
		t.Errorf("Local through the node without an endpoint: answered")
	}
	if n := drops(); n == "0" {
		t.Errorf("the client's SYN to a:30081 was not dropped by KUBE-EXTERNAL-SERVICES")
	}
	var out bytes.Buffer
	if err := l.Demo(&out); err != nil {
		t.Errorf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "it saw the client as 192.168.0.100:") {
		t.Errorf("demo output lacks the kept source:\n%s", out.String())
	}
}
