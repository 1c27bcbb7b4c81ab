package lab

import (
	"bytes"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/control"
)

// TestK8sConntrackInvalid runs examples/labs/k8s-conntrack-invalid.toml:
// with kube-proxy 1.14's rules, a download whose one segment was moved
// beyond the window dies of a reset, and iptables counters show why (an
// INVALID segment from the pod's own address forwarded to the client,
// then an INVALID RST from the client to the server); a segment only
// late (under the window's lower bound) is no longer INVALID (Linux
// 6.0) and that download completes; then the whole demo, whose fixes
// (INVALID dropped in FORWARD, nf_conntrack_tcp_be_liberal = 1) must
// complete the download the 1.14 rules lose.
func TestK8sConntrackInvalid(t *testing.T) {
	needRoot(t)
	c, err := Load(filepath.Join("..", "examples", "labs", "k8s-conntrack-invalid.toml"))
	if err != nil {
		t.Fatal(err)
	}
	p := uniquePrefix()
	c = c.Rename(func(s string) string { return p + "-" + strings.TrimPrefix(s, "usw-ct-") })
	l := upLab(t, c)
	cli := p + "-client"
	// counters (rules without a target) ahead of KUBE-FORWARD
	for _, r := range []string{
		"-s 10.244.1.5/32 -p tcp --sport 8080 -m conntrack --ctstate INVALID",
		"-d 10.244.1.5/32 -p tcp --dport 8080 --tcp-flags RST RST -m conntrack --ctstate INVALID",
		"-s 10.244.1.5/32 -p tcp --sport 8081 -m conntrack --ctstate INVALID",
	} {
		if res := l.Control(control.Request{Cmd: "iptables", Args: append([]string{"-I", "FORWARD", "1"}, strings.Fields(r)...)}); res.Code != 0 {
			t.Fatalf("iptables -I FORWARD 1 %s: %d %s", r, res.Code, res.Stderr)
		}
	}
	counter := func(rule string) int {
		t.Helper()
		res := l.Control(control.Request{Cmd: "iptables-save", Counters: true, Table: "filter"})
		m := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A FORWARD ` + regexp.QuoteMeta(rule) + `$`).FindStringSubmatch(res.Stdout)
		if m == nil {
			t.Fatalf("no rule %q in:\n%s", rule, res.Stdout)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	const (
		invSeg  = "-s 10.244.1.5/32 -p tcp -m tcp --sport 8080 -m conntrack --ctstate INVALID"
		invRST  = "-d 10.244.1.5/32 -p tcp -m tcp --dport 8080 --tcp-flags RST RST -m conntrack --ctstate INVALID"
		invLate = "-s 10.244.1.5/32 -p tcp -m tcp --sport 8081 -m conntrack --ctstate INVALID"
	)
	t.Run("late", func(t *testing.T) {
		r, err := l.HTTPGet(cli, "http://10.96.0.21/bytes/268435456", 30*time.Second)
		if err != nil || len(r.Body) != 268435456 {
			t.Fatalf("the late segment's download: %d bytes, %v", len(r.Body), err)
		}
		list := l.Control(control.Request{Cmd: "fault", Op: "list"}).Stdout
		if !regexp.MustCompile(`(?s)late-segment:.*?delayed 1 `).MatchString(list) {
			t.Errorf("the late-segment fault delayed no segment:\n%s", list)
		}
		if n := counter(invLate); n != 0 {
			t.Errorf("%d INVALID packets from :8081; a late segment is ignored, not INVALID, since Linux 6.0", n)
		}
	})
	t.Run("reset", func(t *testing.T) {
		_, err := l.HTTPGet(cli, "http://10.96.0.20/bytes/33554432", 10*time.Second)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the download with a segment beyond the window: %v, want connection reset by peer", err)
		}
		if n := counter(invSeg); n != 1 {
			t.Errorf("%d INVALID segments from 10.244.1.5:8080 forwarded, want the mangled one", n)
		}
		if n := counter(invRST); n < 1 {
			t.Errorf("no INVALID RST from the client to 10.244.1.5:8080 forwarded")
		}
		list := l.Control(control.Request{Cmd: "fault", Op: "list"}).Stdout
		if !regexp.MustCompile(`(?s)beyond-window:.*?mangled 1 `).MatchString(list) {
			t.Errorf("the beyond-window fault mangled no segment:\n%s", list)
		}
	})
	t.Run("demo", func(t *testing.T) {
		var out bytes.Buffer
		if err := l.Demo(&out); err != nil {
			t.Errorf("%v\n%s", err, out.String())
		}
		for _, want := range []string{"connection reset by peer", "sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1 on the lab's engine (was 0)"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("demo output lacks %q:\n%s", want, out.String())
			}
		}
		// both fixes completed the download (200 twice after the reset)
		if n := strings.Count(out.String(), "GET http://10.96.0.20/bytes/33554432 from "+cli+": 200"); n != 2 {
			t.Errorf("%d completed downloads after the fixes, want 2:\n%s", n, out.String())
		}
	})
}
