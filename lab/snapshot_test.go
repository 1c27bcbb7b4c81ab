package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// snapLab loads a lab file of examples/labs whose namespaces are named
// usw-snap-X with unique names.
func snapLab(t *testing.T, file string) (*Config, func(string) string) {
	t.Helper()
	c, err := Load(filepath.Join("..", "examples", "labs", file))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	ren := func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-snap-") }
	return c.Rename(ren), ren
}

// saveNorm is an iptables-save text without its comments and counters.
func saveNorm(s string) string {
	cnt := regexp.MustCompile(`\[\d+:\d+\]`)
	var out []string
	for _, ln := range strings.Split(s, "\n") {
		if strings.HasPrefix(ln, "#") || strings.TrimSpace(ln) == "" {
			continue
		}
		out = append(out, cnt.ReplaceAllString(ln, "[0:0]"))
	}
	return strings.Join(out, "\n")
}

// TestSnapshotNodeKubeIPVS runs examples/kube-ipvs as a lab node
// (examples/labs/snapshot-kube-ipvs.toml): the pods made for the IPVS
// real servers behind cni0, the NodePort and the ClusterIP of the
// snapshot's IPVS table reached from the namespace behind eth0 (and
// from a pod), and the control commands' --node a showing the
// snapshot's rules, virtual servers and routes.
func TestSnapshotNodeKubeIPVS(t *testing.T) {
	needRoot(t)
	c, ren := snapLab(t, "snapshot-kube-ipvs.toml")
	var got []string
	for _, p := range c.Nodes[0].SnapshotPods {
		got = append(got, p.Addr.String()+"@"+p.Bridge)
	}
	if want := "10.244.0.2@cni0 10.244.0.3@cni0 10.244.0.5@cni0 10.244.0.6@cni0"; strings.Join(got, " ") != want {
		t.Fatalf("pods %v, want %s", got, want)
	}
	l := upLab(t, c)
	cli, p1, p3, p4 := ren("usw-snap-a-eth0"), ren("usw-snap-a-p1"), ren("usw-snap-a-p3"), ren("usw-snap-a-p4")
	t.Run("services", func(t *testing.T) {
		for _, x := range []struct{ from, url, seen string }{
			{cli, "http://192.168.122.10:30080/", "10.244.0.1"}, // NodePort: KUBE-NODE-PORT marks, masqueraded out of cni0
			{cli, "http://10.96.100.50/", "10.244.0.1"},         // ClusterIP from outside the pod CIDR: masqueraded
			{p1, "http://10.96.100.50/", "10.244.0.2"},          // from a pod: not
		} {
			served := map[string]bool{}
			for i := 0; i < 4; i++ {
				r, err := l.HTTPGet(x.from, x.url, 3*time.Second)
				if err != nil {
					t.Fatalf("GET %s from %s: %v", x.url, x.from, err)
				}
				if r.Status != 200 || (r.ServedBy != p3 && r.ServedBy != p4) || !strings.HasPrefix(r.ClientAddr, x.seen+":") {
					t.Errorf("GET %s from %s: %d by %q seeing %q; want 200 by %s or %s seeing %s", x.url, x.from, r.Status, r.ServedBy, r.ClientAddr, p3, p4, x.seen)
				}
				served[r.ServedBy] = true
			}
			if len(served) != 2 {
				t.Errorf("GET %s from %s: served by %v; rr over both real servers wanted", x.url, x.from, served)
			}
		}
	})
	t.Run("control", func(t *testing.T) {
		r := l.Control(control.Request{Cmd: "iptables-save", Node: "a"})
		snap, err := os.ReadFile(filepath.Join("..", "examples", "kube-ipvs", "iptables-save"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 || saveNorm(r.Stdout) != saveNorm(string(snap)) {
			t.Errorf("iptables-save --node a (%d %s) differs from the snapshot's:\n%s\n--- snapshot:\n%s", r.Code, r.Stderr, saveNorm(r.Stdout), saveNorm(string(snap)))
		}
		r = l.Control(control.Request{Cmd: "ipvsadm", Args: []string{"-Ln"}, Node: "a"})
		for _, want := range []string{"TCP  192.168.122.10:30080 rr", "TCP  10.96.100.50:80 rr", "UDP  10.96.0.10:53 rr", "-> 10.244.0.5:80"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("ipvsadm -Ln --node a lacks %q:\n%s", want, r.Stdout)
			}
		}
		r = l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "10.96.100.50"}, Node: "a"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "local 10.96.100.50 dev lo") {
			t.Errorf("ip route get 10.96.100.50 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		r = l.Control(control.Request{Cmd: "ip", Args: []string{"route", "get", "8.8.8.8"}, Node: "a"})
		if r.Code != 0 || !strings.Contains(r.Stdout, "via 192.168.122.1 dev eth0") {
			t.Errorf("ip route get 8.8.8.8 --node a: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})
	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		t.Log(out.String())
	})
}
