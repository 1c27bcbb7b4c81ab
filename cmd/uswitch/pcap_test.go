package main

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
)

// pcapLab forwards and masquerades the client's pings to the wan host.
const pcapLab = `
name = "LAB"
[uswitch]
workers = 2
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o pw -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i pc -o pw -p icmp -j ACCEPT
COMMIT
"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "pc"
netns = "LAB-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "pw"
netns = "LAB-wan"
addresses = ["203.0.113.1/24"]
[[namespace]]
name = "LAB-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "LAB-wan"
addresses = ["203.0.113.2/24"]
`

// TestPcapTcpdump captures a forwarded, masqueraded ping on all of a
// running lab's devices with `uswitch pcap` over the control socket and
// reads the file back with tcpdump itself: it must read it without an
// error, as raw IP, and show the four packets of the exchange with
// their addresses on each side of uswitch.
func TestPcapTcpdump(t *testing.T) {
	labtest.TUN(t)
	testtools.Need(t, "tcpdump") // reads the capture back
	p := labtest.Name("upc")
	l := upLab(t, "pcap.toml", strings.ReplaceAll(pcapLab, "LAB", p))
	sock := filepath.Join(t.TempDir(), "lab.sock")
	if err := l.ListenControl(sock); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "any.pcap")
	captured := make(chan int, 1)
	go func() {
		_, errs, code := cli(pcapCmd, "", "-i", "any", "-c", "4", "-w", file, "--socket", sock)
		if errs != "" {
			t.Errorf("pcap: %s", errs)
		}
		captured <- code
	}()
	for deadline := time.Now().Add(5 * time.Second); !l.Capturing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("capture did not start")
		}
	}
	if _, err := l.Ping(p+"-c", netip.MustParseAddr("203.0.113.2"), 3*time.Second); err != nil {
		t.Errorf("ping the wan through uswitch: %v", err)
	}
	select {
	case code := <-captured:
		if code != 0 {
			t.Fatalf("pcap: exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pcap -c 4 did not end")
	}

	cmd := exec.Command("tcpdump", "-r", file, "-nn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s -nn: %v\n%s", file, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "link-type RAW") {
		t.Errorf("tcpdump: %q, want link-type RAW", stderr.String())
	}
	// "12:00:00.000000 IP 10.10.1.2 > 203.0.113.2: ICMP echo request, id 23041, seq 1, length 40"
	re := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{6} IP (\S+ > \S+): ICMP (echo request|echo reply), id (\d+), seq 1, length 40$`)
	var got []string
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("tcpdump line %q is not an echo of the ping", line)
			continue
		}
		got = append(got, m[1]+": "+m[2])
		ids[m[3]] = true
	}
	sort.Strings(got)
	want := []string{
		"10.10.1.2 > 203.0.113.2: echo request",   // read from pc
		"203.0.113.1 > 203.0.113.2: echo request", // written to pw, masqueraded
		"203.0.113.2 > 10.10.1.2: echo reply",     // written to pc, de-masqueraded
		"203.0.113.2 > 203.0.113.1: echo reply",   // read from pw
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(ids) != 1 {
		t.Errorf("tcpdump shows\n%s\nwant (in any order, one echo id)\n%s", out, strings.Join(want, "\n"))
	}
}
