package lvs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// allSchedNames are the kernel's 14 schedulers, all registered by
// sched.go.
var allSchedNames = []string{"rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "fo", "ovf", "mh", "twos"}

// corpusDir is the shared corpus folder, ../shared/corpus/ipvsadm from
// the repository root.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "corpus", "ipvsadm")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus not found at %s: %v", dir, err)
	}
	return dir
}

func restoreString(t *testing.T, d *Director, text string) {
	t.Helper()
	if err := Restore(d, strings.NewReader(text), "test"); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

func saveString(t *testing.T, d *Director) string {
	t.Helper()
	var b bytes.Buffer
	if err := Save(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func listString(t *testing.T, d *Director, f ListFormat) string {
	t.Helper()
	var b bytes.Buffer
	if err := PrintList(&b, d, f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestIpvsadmCorpusSaveLoads: every save file (-S/-Sn) of the corpus
// loads, and its -Sn form reads back to the same -Sn.
func TestIpvsadmCorpusSaveLoads(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*ipvsadm-S*"))
	if len(files) == 0 {
		t.Skip("no save files in the corpus")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d := NewDirector()
			if err := Restore(d, bytes.NewReader(b), filepath.Base(f)); err != nil {
				t.Fatal(err)
			}
			if d.Empty() {
				t.Fatal("no service loaded")
			}
			s1 := saveString(t, d)
			d2 := NewDirector()
			restoreString(t, d2, s1)
			if s2 := saveString(t, d2); s1 != s2 {
				t.Fatalf("round trip differs:\n%s\n---\n%s", s1, s2)
			}
		})
	}
}

// TestIpvsadmBraintreeSave checks the fwmark tunnel file's content and
// the 1.31 save form (which adds --tun-type ipip to tunnel dests; the
// file came from an older ipvsadm).
func TestIpvsadmBraintreeSave(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(corpusDir(t), "braintree-big_brother-fwmark-tunnel.ipvsadm-Sn.txt"))
	if err != nil {
		t.Skip(err)
	}
	d := NewDirector()
	restoreString(t, d, string(b))
	want := strings.ReplaceAll(string(b), "-i -w 1\n", "-i -w 1 --tun-type ipip\n")
	// sorted by mark
	want = "-A -f 1 -s wrr\n-a -f 1 -r 10.0.1.223:80 -i -w 1 --tun-type ipip\n-a -f 1 -r 10.0.1.224:80 -i -w 1 --tun-type ipip\n" +
		"-A -f 2 -s wrr\n-a -f 2 -r 10.0.1.225:80 -i -w 1 --tun-type ipip\n" +
		"-A -f 3 -s wrr\n-a -f 3 -r 10.0.1.220:80 -i -w 1 --tun-type ipip\n-a -f 3 -r 10.0.1.221:80 -i -w 1 --tun-type ipip\n" +
		"-a -f 3 -r 10.0.1.222:80 -i -w 1 --tun-type ipip\n"
	if got := saveString(t, d); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// listingCases are the corpus listings, each with the -Sn that builds
// its configuration (written by hand from the listing) and the counters
// it shows.
var listingCases = map[string]struct {
	save   string
	active map[string]int32 // "svc|dest" -> ActiveConn
	format ListFormat
	why    string
}{
	"k8s-ipvs-readme-ipvsadm-ln.txt": {
		save: "-A -t 10.0.0.1:443 -s rr -p 10800\n-a -t 10.0.0.1:443 -r 192.168.0.1:6443 -m -w 1\n" +
			"-A -t 10.0.0.10:53 -s rr\n-a -t 10.0.0.10:53 -r 172.17.0.2:53 -m -w 1\n" +
			"-A -u 10.0.0.10:53 -s rr\n-a -u 10.0.0.10:53 -r 172.17.0.2:53 -m -w 1\n",
		active: map[string]int32{"TCP  10.0.0.1:443|192.168.0.1:6443": 1},
		format: FmtNumeric,
	},
	"kube-router-blog-nodeport.ipvsadm-Ln.txt": {
		// The dests of the first and third service are not in
		// ipvsadm's sorted order (104.9 would come first), so the
		// listing was taken unsorted, in the kernel's list order,
		// where each added dest goes to the head: rebuilt by adding
		// them last to first, listed with --nosort. (Its service order
		// is also the sorted one: the signed compare puts
		// 192.168.123.249 before 10.254.0.1.)
		save: "-A -t 192.168.123.249:34507 -s rr\n" +
			"-a -t 192.168.123.249:34507 -r 172.20.104.9:8080 -m -w 1\n" +
			"-a -t 192.168.123.249:34507 -r 172.20.166.130:8080 -m -w 1\n" +
			"-a -t 192.168.123.249:34507 -r 172.20.135.8:8080 -m -w 1\n" +
			"-A -t 10.254.0.1:443 -s rr -p 10800\n-a -t 10.254.0.1:443 -r 192.168.123.250:6443 -m -w 1\n" +
			"-A -t 10.254.175.147:8080 -s rr\n" +
			"-a -t 10.254.175.147:8080 -r 172.20.104.9:8080 -m -w 1\n" +
			"-a -t 10.254.175.147:8080 -r 172.20.166.130:8080 -m -w 1\n" +
			"-a -t 10.254.175.147:8080 -r 172.20.135.8:8080 -m -w 1\n",
		format: FmtNumeric | FmtNoSort,
	},
	"kube-router-pod-toolbox.ipvsadm-Ln.txt": {
		// added in a scrambled order: the listing's order is the sort
		save: "-A -u 10.3.0.10:53 -s rr\n-a -u 10.3.0.10:53 -r 10.2.0.2:53 -m -w 1\n" +
			"-A -t 10.3.0.155:2379 -s rr\n-a -t 10.3.0.155:2379 -r 10.10.3.3:2379 -m -w 1\n" +
			"-A -t 10.3.0.1:443 -s rr -p 10800 -M 0.0.0.0\n-a -t 10.3.0.1:443 -r 10.10.3.2:443 -m -w 1\n" +
			"-A -t 10.3.0.15:2379 -s rr\n-a -t 10.3.0.15:2379 -r 10.10.3.3:2379 -m -w 1\n" +
			"-A -t 10.3.0.10:53 -s rr\n-a -t 10.3.0.10:53 -r 10.2.0.2:53 -m -w 1\n",
		active: map[string]int32{"TCP  10.3.0.15:2379|10.10.3.3:2379": 45},
		format: FmtNumeric,
	},
	"lvs-1-fwmark.ipvsadm-L.txt": {
		// ipvsadm -L without -n: the host had neither reverse DNS for
		// the real servers nor an /etc/services (port 80 is not shown
		// as "http"), so it printed what -Ln prints.
		save:   "-A -f 1 -s wrr\n-a -f 1 -r 172.27.0.31:80 -m -w 1\n-a -f 1 -r 172.27.0.30:80 -m -w 1\n",
		format: 0,
	},
	"lvs-1-fwmark.proc-net-ip_vs.txt": {why: "the kernel's /proc/net/ip_vs, not an ipvsadm listing"},
}

// TestIpvsadmCorpusListings rebuilds every -L/-Ln listing of the corpus
// and prints it byte for byte.
func TestIpvsadmCorpusListings(t *testing.T) {
	dir := corpusDir(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.Contains(name, "ipvsadm-S") {
			continue // save files: TestIpvsadmCorpusSaveLoads
		}
		t.Run(name, func(t *testing.T) {
			tc, ok := listingCases[name]
			if !ok {
				t.Fatalf("no configuration written for listing %s", name)
			}
			if tc.why != "" {
				t.Skip(tc.why)
			}
			want, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			d := NewDirector()
			restoreString(t, d, tc.save)
			for _, svc := range d.Services() {
				for _, dst := range svc.Dests {
					if n, ok := tc.active[svc.ServiceKey.String()+"|"+dst.AddrPort().String()]; ok {
						dst.ActiveConns.Store(n)
					}
				}
			}
			// the corpus texts were copied out of documents, which lost
			// the trailing blanks of ipvsadm's "%-10u\n" columns
			if got := trimLines(listString(t, d, tc.format)); got != trimLines(string(want)) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// TestIpvsadmPrintFormats checks the other listings against hand-made
// expectations derived from ipvsadm.c's format strings.
func TestIpvsadmPrintFormats(t *testing.T) {
	d := NewDirector()
	restoreString(t, d, `
# a comment, and ipvsadm words dropped as ipvsadm -R drops them
ipvsadm -A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback -p -M 255.255.255.0
-a -t 10.0.0.1:80 -r 192.168.1.3 -g -w 2
-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 0 -x 10 -y 5
-A -u 10.0.0.1:53 -s rr -o
-a -u 10.0.0.1:53 -r 192.168.1.9 -i --tun-type gue --tun-port 6080 --tun-csum
-a -u 10.0.0.1:53 -r 192.168.1.8 -i --tun-type gre --tun-csum
-A -f 7 -s mh -b mh-port --pe sip -p 60
-a -f 7 -r 192.168.1.4 -i
--set 1000 0 30
`)
	svc := d.Service(ServiceKey{Proto: ProtoTCP, Addr: 0x0a000001, Port: 80})
	svc.Stats.Conns.Store(5)
	svc.Stats.InPkts.Store(123456789)
	svc.Stats.OutPkts.Store(1234567890)
	svc.Stats.InBytes.Store(123456789012)
	svc.Stats.OutBytes.Store(123456789012345)
	svc.Rate = RateSnapshot{CPS: 1, InPPS: 2, OutPPS: 3, InBPS: 400000000, OutBPS: 5}
	// 192.168.1.3 (added first, so last in the kernel's list)
	rs3 := svc.Dests[findDest(svc, 0xc0a80103, 80)]
	rs3.Rate = RateSnapshot{CPS: 7, InPPS: 8, OutPPS: 9, InBPS: 10, OutBPS: 200000000}
	rs3.Stats.Conns.Store(99)
	rs3.ActiveConns.Store(3)
	rs3.InactConns.Store(4)
	rs3.PersistConns.Store(6)

	check := func(name string, f ListFormat, want string) {
		t.Helper()
		if got := listString(t, d, f); got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
		}
	}
	const hdr = "IP Virtual Server version 1.2.1 (size=4096)\n"
	check("-Ln", FmtNumeric, hdr+
		"Prot LocalAddress:Port Scheduler Flags\n"+
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"+
		"TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0\n"+
		"  -> 192.168.1.2:8080             Masq    0      0          0         \n"+
		"  -> 192.168.1.3:80               Route   2      3          4         \n"+
		"UDP  10.0.0.1:53 rr ops\n"+
		"  -> 192.168.1.8:53               Tunnel  1      0          0         \n"+
		"  -> 192.168.1.9:53               Tunnel  1      0          0         \n"+
		"FWM  7 mh (mh-port) persistent 60 pe sip\n"+
		"  -> 192.168.1.4:0                Tunnel  1      0          0         \n")
	check("-Sn", FmtNumeric|FmtRule,
		"-A -t 10.0.0.1:80 -s sh -p 360 -M 255.255.255.0 -b sh-fallback,sh-port\n"+
			"-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 0\n"+
			"-a -t 10.0.0.1:80 -r 192.168.1.3:80 -g -w 2\n"+
			"-A -u 10.0.0.1:53 -s rr -o\n"+
			"-a -u 10.0.0.1:53 -r 192.168.1.8:53 -i -w 1 --tun-type gre --tun-csum\n"+
			"-a -u 10.0.0.1:53 -r 192.168.1.9:53 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n"+
			"-A -f 7 -s mh -p 60 --pe sip -b mh-port\n"+
			"-a -f 7 -r 192.168.1.4:0 -i -w 1 --tun-type ipip\n")
	check("--stats", FmtNumeric|FmtStats, hdr+
		"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"+
		"  -> RemoteAddress:Port\n"+
		"TCP  10.0.0.1:80                         5  123456K    1234M     123G     123T\n"+
		"  -> 192.168.1.2:8080                    0        0        0        0        0\n"+
		"  -> 192.168.1.3:80                     99        0        0        0        0\n"+
		"UDP  10.0.0.1:53                         0        0        0        0        0\n"+
		"  -> 192.168.1.8:53                      0        0        0        0        0\n"+
		"  -> 192.168.1.9:53                      0        0        0        0        0\n"+
		"FWM  7                                   0        0        0        0        0\n"+
		"  -> 192.168.1.4:0                       0        0        0        0        0\n")
	check("--stats --exact", FmtNumeric|FmtStats|FmtExact, hdr+
		"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"+
		"  -> RemoteAddress:Port\n"+
		"TCP  10.0.0.1:80                         5 123456789 1234567890 123456789012 123456789012345\n"+
		"  -> 192.168.1.2:8080                    0        0        0        0        0\n"+
		"  -> 192.168.1.3:80                     99        0        0        0        0\n"+
		"UDP  10.0.0.1:53                         0        0        0        0        0\n"+
		"  -> 192.168.1.8:53                      0        0        0        0        0\n"+
		"  -> 192.168.1.9:53                      0        0        0        0        0\n"+
		"FWM  7                                   0        0        0        0        0\n"+
		"  -> 192.168.1.4:0                       0        0        0        0        0\n")
	check("--rate", FmtNumeric|FmtRate, hdr+
		"Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"+
		"  -> RemoteAddress:Port\n"+
		"TCP  10.0.0.1:80                         1        2        3  400000K        5\n"+
		"  -> 192.168.1.2:8080                    0        0        0        0        0\n"+
		"  -> 192.168.1.3:80                      7        8        9       10  200000K\n"+
		"UDP  10.0.0.1:53                         0        0        0        0        0\n"+
		"  -> 192.168.1.8:53                      0        0        0        0        0\n"+
		"  -> 192.168.1.9:53                      0        0        0        0        0\n"+
		"FWM  7                                   0        0        0        0        0\n"+
		"  -> 192.168.1.4:0                       0        0        0        0        0\n")
	check("--thresholds", FmtNumeric|FmtThresholds, hdr+
		"Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"+
		"  -> RemoteAddress:Port\n"+
		"TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0\n"+
		"  -> 192.168.1.2:8080             10         5          0          0         \n"+
		"  -> 192.168.1.3:80               0          0          3          4         \n"+
		"UDP  10.0.0.1:53 rr ops\n"+
		"  -> 192.168.1.8:53               0          0          0          0         \n"+
		"  -> 192.168.1.9:53               0          0          0          0         \n"+
		"FWM  7 mh (mh-port) persistent 60 pe sip\n"+
		"  -> 192.168.1.4:0                0          0          0          0         \n")
	check("--persistent-conn", FmtNumeric|FmtPersistConn, hdr+
		"Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n"+
		"  -> RemoteAddress:Port\n"+
		"TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0\n"+
		"  -> 192.168.1.2:8080             0         0           0          0         \n"+
		"  -> 192.168.1.3:80               2         6           3          4         \n"+
		"UDP  10.0.0.1:53 rr ops\n"+
		"  -> 192.168.1.8:53               1         0           0          0         \n"+
		"  -> 192.168.1.9:53               1         0           0          0         \n"+
		"FWM  7 mh (mh-port) persistent 60 pe sip\n"+
		"  -> 192.168.1.4:0                1         0           0          0         \n")
	check("--tun-info", FmtNumeric|FmtTunInfo, hdr+
		"Prot LocalAddress:Port Scheduler Flags\n"+
		"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"+
		"TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0\n"+
		"  -> 192.168.1.2:8080             Masq    n/a           0      0          0         \n"+
		"  -> 192.168.1.3:80               Route   n/a           2      3          4         \n"+
		"UDP  10.0.0.1:53 rr ops\n"+
		"  -> 192.168.1.8:53               Tunnel  gre:+c        1      0          0         \n"+
		"  -> 192.168.1.9:53               Tunnel  gue:6080:+c   1      0          0         \n"+
		"FWM  7 mh (mh-port) persistent 60 pe sip\n"+
		"  -> 192.168.1.4:0                Tunnel  ipip          1      0          0         \n")

	var b bytes.Buffer
	if err := PrintTimeout(&b, d); err != nil || b.String() != "Timeout (tcp tcpfin udp): 1000 120 30\n" {
		t.Errorf("--timeout: %q %v", b.String(), err)
	}
	b.Reset()
	if err := PrintService(&b, d, ServiceKey{FwMark: 7}, FmtNumeric); err != nil {
		t.Fatal(err)
	}
	if want := "Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"FWM  7 mh (mh-port) persistent 60 pe sip\n" +
		"  -> 192.168.1.4:0                Tunnel  1      0          0         \n"; b.String() != want {
		t.Errorf("-L -f 7: got\n%s\nwant\n%s", b.String(), want)
	}
	if err := PrintService(&b, d, ServiceKey{FwMark: 8}, FmtNumeric); err == nil || err.Error() != "No such service" {
		t.Errorf("-L -f 8: %v", err)
	}
}

// TestIpvsadmPrintConns prints hand-made connections as -Lnc does
// (ConnTable.Range is filled in elsewhere; printConn is the row).
func TestIpvsadmPrintConns(t *testing.T) {
	const now = int64(1000e9)
	mk := func(proto uint8, c, v, dd uint32, cp, vp, dp uint16, state uint8, flags uint32, left int64) *Conn {
		cn := &Conn{Proto: proto, CAddr: c, VAddr: v, DAddr: dd, CPort: cp, VPort: vp, DPort: dp}
		cn.state.Store(uint32(state))
		cn.flags.Store(flags)
		cn.expires.Store(now + left)
		return cn
	}
	var b bytes.Buffer
	if err := PrintConns(&b, NewDirector(), now, 0); err != nil {
		t.Fatal(err)
	}
	printConn(&b, mk(ProtoTCP, 0xc0a80a05, 0x0a000001, 0xc0a80102, 51234, 80, 8080, TCPEstablished, 0, 899_500e6), now)
	printConn(&b, mk(ProtoUDP, 0xc0a80a05, 0x0a000001, 0xc0a80103, 5353, 53, 53, 0, 0, 65e9), now)
	printConn(&b, mk(ProtoTCP, 0xc0a80a05, 0x0a000001, 0xc0a80102, 0, 0, 0, TCPTimeWait, 0, 0), now)
	want := "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 14:59  ESTABLISHED 192.168.10.5:51234 10.0.0.1:80        192.168.1.2:8080\n" +
		"UDP 01:05  UDP         192.168.10.5:5353  10.0.0.1:53        192.168.1.3:53\n" +
		"TCP 00:00  TIME_WAIT   192.168.10.5:0     10.0.0.1:0         192.168.1.2:0\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := PrintConns(&b, NewDirector(), now, FmtPersistConn); err != nil {
		t.Fatal(err)
	}
	if want := "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination        pe name          pe_data\n"; b.String() != want {
		t.Fatalf("got %q", b.String())
	}
}

// randomConfig builds a random configuration ipvsadm accepts, through
// the Director API.
func randomConfig(r *rand.Rand, d *Director) {
	nsvc := r.Intn(6)
	for i := 0; i < nsvc; i++ {
		var c ServiceConfig
		switch r.Intn(4) {
		case 0:
			c.Key.FwMark = uint32(1 + r.Intn(1<<31-1))
		default:
			c.Key.Proto = []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}[r.Intn(3)]
			c.Key.Addr = r.Uint32()
			c.Key.Port = uint16(r.Intn(3) * r.Intn(65536))
		}
		c.SchedName = allSchedNames[r.Intn(len(allSchedNames))]
		if r.Intn(2) == 0 || (c.Key.FwMark == 0 && c.Key.Port == 0) {
			c.Flags |= SvcPersistent
			c.Timeout = uint32(1 + r.Intn(MaxTimeout))
			if r.Intn(2) == 0 {
				c.Netmask = r.Uint32()
			}
		}
		if (c.Key.FwMark != 0 || c.Key.Proto == ProtoUDP) && r.Intn(3) == 0 {
			c.Flags |= SvcOnePacket
		}
		if r.Intn(3) == 0 {
			c.Flags |= []uint32{SvcSched1, SvcSched2, SvcSched3}[r.Intn(3)]
			if c.SchedName == "sh" || c.SchedName == "mh" {
				c.Flags &^= SvcSched3
			}
		}
		if r.Intn(5) == 0 {
			c.PE = "sip"
		}
		if err := d.AddService(c); err != nil {
			continue
		}
		for j := r.Intn(5); j > 0; j-- {
			dc := DestConfig{Addr: r.Uint32(), Port: uint16(r.Intn(65536)), Fwd: []FwdMethod{Masq, Route, Tunnel}[r.Intn(3)],
				Weight: int32(r.Intn(65536))}
			if c.Key.FwMark == 0 && dc.Fwd != Masq {
				dc.Port = c.Key.Port
			}
			if dc.Fwd == Tunnel {
				dc.TunType = TunType(r.Intn(3))
				switch dc.TunType {
				case TunGUE:
					dc.TunPort = uint16(1 + r.Intn(65535))
					dc.TunFlags = uint16(r.Intn(3))
				case TunGRE:
					dc.TunFlags = uint16(r.Intn(2))
				}
			}
			_ = d.AddDest(c.Key, dc)
		}
	}
}

// TestIpvsadmRoundTrip: random configuration -> -Sn -> parse -> -Sn is
// the same text.
func TestIpvsadmRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	exact := 0
	for i := 0; i < 300; i++ {
		d := NewDirector()
		randomConfig(r, d)
		s1 := saveString(t, d)
		d2 := NewDirector()
		if err := Restore(d2, strings.NewReader(s1), "save"); err != nil {
			t.Fatalf("case %d: %v\n%s", i, err, s1)
		}
		// Restoring reverses each service's dest list (each -a goes to
		// the head). The sort gives the same text back only when its
		// compare is a total order on the addresses; with addresses
		// 2^31 or more apart (the signed-difference quirk) the order of
		// the output depends on the input order, as with ipvsadm on a
		// kernel, and only the set of rules is kept.
		s2 := saveString(t, d2)
		if compareIsTotal(d) {
			exact++
			if s1 != s2 {
				t.Fatalf("case %d differs:\n%s\n---\n%s", i, s1, s2)
			}
			if listString(t, d, FmtNumeric) != listString(t, d2, FmtNumeric) {
				t.Fatalf("case %d: listings differ", i)
			}
		} else if sortedLines(s1) != sortedLines(s2) {
			t.Fatalf("case %d: rules differ:\n%s\n---\n%s", i, s1, s2)
		}
	}
	if exact < 30 {
		t.Fatalf("only %d of 300 cases had a total order", exact)
	}
	t.Logf("%d of 300 cases compared exactly, the others as sets of rules", exact)
}

// compareIsTotal reports whether ipvsadm's compares order d's services
// and each service's dests strictly and transitively (then any input
// order sorts to the same list).
func compareIsTotal(d *Director) bool {
	svcs := SortedServices(d.Services())
	for i := range svcs {
		for j := i + 1; j < len(svcs); j++ {
			if serviceCmp(svcs[i], svcs[j]) >= 0 {
				return false
			}
		}
		ds := SortedDests(svcs[i].Dests)
		for a := range ds {
			for b := a + 1; b < len(ds); b++ {
				if destCmp(ds[a], ds[b]) >= 0 {
					return false
				}
			}
		}
	}
	return true
}

func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// On a kernel each -a puts the dest at the head of the service's list.
// ipvsadm 1.26+ sorts its listings unless --nosort (--sort is a no-op
// kept for compatibility) and -S takes no --nosort, so ipvsadm-save is
// always sorted: save, restore, save gives the same text, while the
// kernel's list, which -Ln --nosort shows, has been reversed by the
// restore (the save lists the dests in ascending order, the restore adds
// them in that order, each at the head).
func TestIpvsadmKernelDestOrder(t *testing.T) {
	const rules = "-A -t 10.0.0.1:80 -s rr\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.3:80 -m -w 1\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1\n" +
		"-A -u 10.0.0.1:53 -s wlc\n" +
		"-a -u 10.0.0.1:53 -r 192.168.1.8:53 -m -w 1\n" +
		"-a -u 10.0.0.1:53 -r 192.168.1.9:53 -m -w 1\n"
	run := func(d *Director, args ...string) string {
		t.Helper()
		c, err := ParseCommand(args)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := Exec(d, c, strings.NewReader(""), &b, 0); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if _, err := ParseCommand([]string{"-S", "-n", "--nosort"}); err == nil {
		t.Error("-S --nosort accepted; ipvsadm rejects it")
	}
	const hdr = "IP Virtual Server version 1.2.1 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
	line := func(a string) string { return fmt.Sprintf("  -> %-28s Masq    1      0          0         \n", a) }
	sortedList := hdr + "TCP  10.0.0.1:80 rr\n" + line("192.168.1.1:80") + line("192.168.1.2:80") + line("192.168.1.3:80") +
		"UDP  10.0.0.1:53 wlc\n" + line("192.168.1.8:53") + line("192.168.1.9:53")
	sortedSave := "-A -t 10.0.0.1:80 -s rr\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1\n" +
		"-a -t 10.0.0.1:80 -r 192.168.1.3:80 -m -w 1\n" +
		"-A -u 10.0.0.1:53 -s wlc\n" +
		"-a -u 10.0.0.1:53 -r 192.168.1.8:53 -m -w 1\n" +
		"-a -u 10.0.0.1:53 -r 192.168.1.9:53 -m -w 1\n"

	d := NewDirector()
	restoreString(t, d, rules)
	// the kernel's order: the last added first
	if got, want := run(d, "-L", "-n", "--nosort"), hdr+"TCP  10.0.0.1:80 rr\n"+line("192.168.1.1:80")+
		line("192.168.1.3:80")+line("192.168.1.2:80")+"UDP  10.0.0.1:53 wlc\n"+line("192.168.1.9:53")+
		line("192.168.1.8:53"); got != want {
		t.Errorf("-Ln --nosort:\n%s\nwant newest first:\n%s", got, want)
	}
	for _, args := range [][]string{{"-L", "-n"}, {"-L", "-n", "--sort"}} {
		if got := run(d, args...); got != sortedList {
			t.Errorf("%v:\n%s\nwant sorted:\n%s", args, got, sortedList)
		}
	}
	save1 := run(d, "-S", "-n")
	if save1 != sortedSave {
		t.Fatalf("-Sn:\n%s\nwant sorted:\n%s", save1, sortedSave)
	}
	d2 := NewDirector()
	restoreString(t, d2, save1)
	if got := run(d2, "-S", "-n"); got != save1 {
		t.Errorf("-Sn after restoring it:\n%s\nwant the same:\n%s", got, save1)
	}
	if got, want := run(d2, "-L", "-n", "--nosort"), hdr+"TCP  10.0.0.1:80 rr\n"+line("192.168.1.3:80")+
		line("192.168.1.2:80")+line("192.168.1.1:80")+"UDP  10.0.0.1:53 wlc\n"+line("192.168.1.9:53")+
		line("192.168.1.8:53"); got != want {
		t.Errorf("-Ln --nosort after the restore:\n%s\nwant the save's dests reversed:\n%s", got, want)
	}
}

// ipvsadm sorts with glibc's qsort, a merge sort; with the signed
// address compare, which is not transitive, the result depends on the
// input (the kernel's list order). 10.0.0.1, 200.0.0.1 and 100.0.0.1:
// 200 < 10 (the difference wraps negative), 10 < 100, 100 < 200.
func TestSortedDestsQuirk(t *testing.T) {
	mk := func(addrs ...uint32) []*Dest {
		var l []*Dest
		for _, a := range addrs {
			l = append(l, &Dest{Addr: a, Port: 80})
		}
		return l
	}
	str := func(l []*Dest) string {
		var b strings.Builder
		for _, d := range l {
			b.WriteString(d.AddrPort().Addr().String() + " ")
		}
		return b.String()
	}
	a, b, c := uint32(0x0a000001), uint32(0xc8000001), uint32(0x64000001)
	for _, tc := range []struct {
		in   []*Dest
		want string
	}{
		// msort: [a] [b c] -> [b c] is b<=c? no (0xc8-0x64 > 0) -> [c b];
		// merge [a] with [c b]: a<=c yes -> a, then c b
		{mk(a, b, c), "10.0.0.1 100.0.0.1 200.0.0.1 "},
		// [c] [a b]: a<=b? 0x0a-0xc8 wraps positive: no -> [b a];
		// merge [c] [b a]: c<=b yes -> c, then b a
		{mk(c, a, b), "100.0.0.1 200.0.0.1 10.0.0.1 "},
		// [b] [c a]: c<=a? no -> [a c]; merge [b] [a c]: b<=a yes -> b a c
		{mk(b, c, a), "200.0.0.1 10.0.0.1 100.0.0.1 "},
	} {
		if got := str(SortedDests(tc.in)); got != tc.want {
			t.Errorf("sort of %s: %s, want %s", str(tc.in), got, tc.want)
		}
	}
}

// TestIpvsadmParseOptions: long names, defaults, clustered and attached
// forms read as ipvsadm reads them.
func TestIpvsadmParseOptions(t *testing.T) {
	for _, tc := range []struct{ in, save string }{
		{"--add-service --tcp-service 10.1.1.1:http --scheduler rr --persistent --netmask 255.255.0.0",
			"-A -t 10.1.1.1:80 -s rr -p 360 -M 255.255.0.0\n"},
		{"-A -t 10.1.1.1:https", "-A -t 10.1.1.1:443 -s wlc\n"},
		{"-A -u 10.1.1.1:domain -p 20 -o", "-A -u 10.1.1.1:53 -s wlc -p 20 -o\n"},
		{"-A --sctp-service 10.1.1.1:9 -s=rr -b flag-2,flag-1", "-A --sctp-service 10.1.1.1:9 -s rr -b flag-1,flag-2\n"},
		{"-A -t 0x0a010101:80 -srr\n-a -t 10.1.1.1:80 --real-server 10.9.0.1 --masquerading --weight=3 -x 9 -y 2",
			"-A -t 10.1.1.1:80 -s rr\n-a -t 10.1.1.1:80 -r 10.9.0.1:80 -m -w 3\n"},
		{"-A -t 10.1.1.1:80\n-a -t 10.1.1.1:80 -r 10.9.0.1:99 --gatewaying", "-A -t 10.1.1.1:80 -s wlc\n-a -t 10.1.1.1:80 -r 10.9.0.1:80 -g -w 1\n"},
		{"-A -t 10.1.1.1:80\n-a -t 10.1.1.1:80 -r 10.9.0.1:99 --ipip -w 0", "-A -t 10.1.1.1:80 -s wlc\n-a -t 10.1.1.1:80 -r 10.9.0.1:80 -i -w 0 --tun-type ipip\n"},
		{"-A -f 5 -s sh -b sh-port\n-a -f 5 -r 10.9.0.1 -m\n-a -f 5 -r 10.9.0.2:81 -g", "-A -f 5 -s sh -b sh-port\n-a -f 5 -r 10.9.0.1:0 -m -w 1\n-a -f 5 -r 10.9.0.2:81 -g -w 1\n"},
		{"-A -t 10.1.1.1:80\n-E -t 10.1.1.1:80 -s rr -p 5\n-A -t 10.1.1.2:80\n-D -t 10.1.1.2:80", "-A -t 10.1.1.1:80 -s rr -p 5\n"},
		{"-A -t 10.1.1.1:80\n-a -t 10.1.1.1:80 -r 1.1.1.1 -m\n-a -t 10.1.1.1:80 -r 1.1.1.2 -m\n-e -t 10.1.1.1:80 -r 1.1.1.1 -g -w 7\n-d -t 10.1.1.1:80 -r 1.1.1.2",
			"-A -t 10.1.1.1:80 -s wlc\n-a -t 10.1.1.1:80 -r 1.1.1.1:80 -g -w 7\n"},
		{"-A -t 10.1.1.1:80\n-C\n-A -u 10.1.1.1:80\n-Z\n-Z -u 10.1.1.1:80", "-A -u 10.1.1.1:80 -s wlc\n"},
		{"-A -t 10.1.1.1:0 -p", "-A -t 10.1.1.1:0 -s wlc -p 360\n"},
		{"-A -t 10.1.1.1:80 -- \n", "-A -t 10.1.1.1:80 -s wlc\n"},
	} {
		d := NewDirector()
		if err := Restore(d, strings.NewReader(tc.in), "in"); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := saveString(t, d); got != tc.save {
			t.Errorf("%q: got\n%s\nwant\n%s", tc.in, got, tc.save)
		}
	}
	d := NewDirector()
	restoreString(t, d, "--set 10 20 30\n--set 0 5 0")
	if got := d.Timeouts(); got != (Timeouts{10, 5, 30}) {
		t.Errorf("--set: %+v", got)
	}
	c, err := ParseCommand([]string{"-Lnc"})
	if err != nil || c.Cmd != CmdList || c.Format != FmtNumeric || !c.Has("connection") {
		t.Errorf("-Lnc: %+v %v", c, err)
	}
	c, err = ParseCommand([]string{"-L", "--timeout"})
	if err != nil || !c.Has("timeout") {
		t.Errorf("-L --timeout: %v", err)
	}
	c, err = ParseCommand([]string{"-Sn"})
	if err != nil || c.Cmd != CmdSave {
		t.Errorf("-Sn: %v", err)
	}
}

// TestIpvsadmErrors: exact messages, naming the file, line and text.
func TestIpvsadmErrors(t *testing.T) {
	const pre = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n"
	for _, tc := range []struct{ in, want string }{
		{"-t 10.0.0.1:80 -A", "f:1: Try `ipvsadm -h' or 'ipvsadm --help' for more information.: -t 10.0.0.1:80 -A"},
		{"--bogus", "f:1: Try `ipvsadm -h' or 'ipvsadm --help' for more information.: --bogus"},
		{"-A -t 10.0.0.1:80 --bogus", "f:1: --bogus: unknown option: -A -t 10.0.0.1:80 --bogus"},
		{"-A -t 10.0.0.1:80 -a", "f:1: invalid option `-a': -A -t 10.0.0.1:80 -a"},
		{"-A -t 10.0.0.1:80 -s", "f:1: -s: missing argument: -A -t 10.0.0.1:80 -s"},
		{"-A -t 10.0.0.1:80 -t 10.0.0.1:81", "f:1: multiple 'service-address' options specified: -A -t 10.0.0.1:80 -t 10.0.0.1:81"},
		{"-A -t 10.0.0.1", "f:1: Zero port specified for non-persistent service: -A -t 10.0.0.1"},
		{"-A -t host.example:80", "f:1: illegal virtual server address[:port] specified: -A -t host.example:80"},
		{"-A -t 10.0.0.1:nosuch", "f:1: illegal virtual server address[:port] specified: -A -t 10.0.0.1:nosuch"},
		{"-A -t 80", "f:1: illegal virtual server address[:port] specified: -A -t 80"},
		{"-A -t 10.0.0.1:65536", "f:1: illegal virtual server address[:port] specified: -A -t 10.0.0.1:65536"},
		{"-A -t 10.0.0.1:80 -p 0", "f:1: invalid timeout value `0' specified: -A -t 10.0.0.1:80 -p 0"},
		{"-A -t 10.0.0.1:80 -p 2678401", "f:1: invalid timeout value `2678401' specified: -A -t 10.0.0.1:80 -p 2678401"},
		{"-A -t 10.0.0.1:80 -M 300.0.0.0", "f:1: illegal virtual server persistent mask specified: -A -t 10.0.0.1:80 -M 300.0.0.0"},
		{"-A -f 0", "f:1: invalid fwmark value `0' specified: -A -f 0"},
		{"-A -f 4294967296", "f:1: invalid fwmark value `4294967296' specified: -A -f 4294967296"},
		{"-A -t 10.0.0.1:80 -o", "f:1: One-Packet Scheduling is only for UDP virtual services: -A -t 10.0.0.1:80 -o"},
		{"-A -t 10.0.0.1:80 -b sh-port", "f:1: incompatible scheduler flag `sh-port': -A -t 10.0.0.1:80 -b sh-port"},
		{"-A -t 10.0.0.1:80 -s sh -b sh-port,foo", "f:1: invalid scheduler flag `foo': -A -t 10.0.0.1:80 -s sh -b sh-port,foo"},
		{"-A -t 10.0.0.1:80 -w 1", "f:1: Illegal 'weight' option with the 'add-service' command: -A -t 10.0.0.1:80 -w 1"},
		{"-A -s rr", "f:1: You need to supply the 'service-address' option for the 'add-service' command: -A -s rr"},
		{"-A -t 10.0.0.1:80 extra", "f:1: unexpected argument extra: -A -t 10.0.0.1:80 extra"},
		{"-A -t 10.0.0.1:80 -s nosuch", "f:1: Scheduler or persistence engine not found: -A -t 10.0.0.1:80 -s nosuch"},
		{"-A -t 10.0.0.1:80 --pe nosuch", "f:1: Scheduler or persistence engine not found: -A -t 10.0.0.1:80 --pe nosuch"},
		{"-A -t [::1]:80", "f:1: IPv6 services are not supported: -A -t [::1]:80"},
		{pre + "-A -t 10.0.0.1:80", "f:3: Service already exists: -A -t 10.0.0.1:80"},
		{pre + "-E -t 10.0.0.2:80", "f:3: No such service: -E -t 10.0.0.2:80"},
		{pre + "-D -t 10.0.0.2:80", "f:3: No such service: -D -t 10.0.0.2:80"},
		{pre + "-Z -t 10.0.0.2:80", "f:3: No such service: -Z -t 10.0.0.2:80"},
		{pre + "-a -t 10.0.0.2:80 -r 10.0.1.1", "f:3: Service not defined: -a -t 10.0.0.2:80 -r 10.0.1.1"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.1 -m", "f:3: Destination already exists: -a -t 10.0.0.1:80 -r 10.0.1.1 -m"},
		{pre + "-e -t 10.0.0.1:80 -r 10.0.1.2", "f:3: No such destination: -e -t 10.0.0.1:80 -r 10.0.1.2"},
		{pre + "-d -t 10.0.0.1:80 -r 10.0.1.2", "f:3: No such destination: -d -t 10.0.0.1:80 -r 10.0.1.2"},
		{pre + "-d -t 10.0.0.1:80 -r 10.0.1.1 -w 2", "f:3: Illegal 'weight' option with the 'delete-server' command: -d -t 10.0.0.1:80 -r 10.0.1.1 -w 2"},
		{pre + "-a -t 10.0.0.1:80", "f:3: You need to supply the 'real-server' option for the 'add-server' command: -a -t 10.0.0.1:80"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -w 65536", "f:3: illegal weight specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -w 65536"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -w -1", "f:3: illegal weight specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -w -1"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -x x", "f:3: illegal u_threshold specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -x x"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -y 2147483648", "f:3: illegal l_threshold specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -y 2147483648"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -x 1 -y 2", "f:3: Invalid operation.  Possibly wrong module version, address not unicast, ...: -a -t 10.0.0.1:80 -r 10.0.1.2 -x 1 -y 2"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -m -i", "f:3: multiple 'forwarding-method' options specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -m -i"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -m --tun-type gre", "f:3: Tunnel options conflict with forward method: -a -t 10.0.0.1:80 -r 10.0.1.2 -m --tun-type gre"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type vxlan", "f:3: illegal tunnel type specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type vxlan"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue", "f:3: You need to supply the 'tun-port' option for the 'gue' tunnel type: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-port 5", "f:3: Illegal 'tun-port' option with the 'ipip' tunnel type: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-port 5"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-remcsum", "f:3: Illegal 'tun-remcsum' option with the 'gre' tunnel type: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --tun-remcsum"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 1 --tun-csum --tun-nocsum", "f:3: The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 1 --tun-csum --tun-nocsum"},
		{pre + "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 0", "f:3: illegal tunnel port specified: -a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 0"},
		{"--set 1 2", "f:1: --set option requires 3 timeout values: --set 1 2"},
		{"--set 1 2 x", "f:1: invalid timeout value `x' specified: --set 1 2 x"},
		{"--set 1 2 3 4", "f:1: unexpected argument 4: --set 1 2 3 4"},
		{"-C -n", "f:1: Illegal 'numeric' option with the 'flush' command: -C -n"},
		{"-Ln", "f:1: the 'list' command is not allowed in a rule file: -Ln"},
		{"-R", "f:1: Try `ipvsadm -h' or 'ipvsadm --help' for more information.: -R"},
		{"-A -f 1 -6", "f:1: IPv6 services are not supported: -A -f 1 -6"},
		{"-A -t 10.0.0.1:80 -6", "f:1: -6 used before -f: -A -t 10.0.0.1:80 -6"},
		{"--start-daemon master", "f:1: the sync daemon is not supported: --start-daemon master"},
	} {
		d := NewDirector()
		err := Restore(d, strings.NewReader(tc.in), "f")
		if err == nil {
			t.Errorf("%q: no error", tc.in)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.in, err, tc.want)
		}
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%q: not a *RuleError", tc.in)
		}
		if !d.Empty() {
			t.Errorf("%q: director changed", tc.in)
		}
	}
}

// TestRestoreAllOrNothing: a failing line leaves the director as it was;
// a good file applies on top of it.
func TestRestoreAllOrNothing(t *testing.T) {
	d := NewDirector()
	restoreString(t, d, "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m -w 2\n--set 5 6 7\n")
	before := saveString(t, d)
	err := Restore(d, strings.NewReader("-C\n--set 1 1 1\n-A -u 10.0.0.1:53\n-a -u 10.0.0.1:53 -r 10.0.1.1\n-a -t 10.0.0.1:80 -r 10.0.1.1\n"), "rules")
	if err == nil || err.Error() != "rules:5: Service not defined: -a -t 10.0.0.1:80 -r 10.0.1.1" {
		t.Fatalf("err = %v", err)
	}
	if after := saveString(t, d); after != before || d.Timeouts() != (Timeouts{5, 6, 7}) {
		t.Fatalf("changed:\n%s\n%+v", after, d.Timeouts())
	}
	// rules referring to what d already has
	restoreString(t, d, "-a -t 10.0.0.1:80 -r 10.0.1.2 -m\n-e -t 10.0.0.1:80 -r 10.0.1.1 -m -w 3\n")
	if got, want := saveString(t, d), "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3\n-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 1\n"; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestIpvsadmSortQuirk: ipvsadm's compare is a signed 32-bit difference
// of the addresses (and of the marks).
func TestIpvsadmSortQuirk(t *testing.T) {
	d := NewDirector()
	restoreString(t, d, "-A -t 10.0.0.1:80\n-A -t 200.0.0.1:80\n-A -t 10.0.0.1:79\n-A -u 1.1.1.1:1\n-A -f 3000000000\n-A -f 2\n")
	want := "-A -f -1294967296 -s wlc\n-A -t 200.0.0.1:80 -s wlc\n-A -t 10.0.0.1:79 -s wlc\n-A -t 10.0.0.1:80 -s wlc\n-A -u 1.1.1.1:1 -s wlc\n-A -f 2 -s wlc\n"
	if got := saveString(t, d); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func FuzzRestore(f *testing.F) {
	for _, s := range []string{
		"-A -t 10.0.0.1:80 -s rr -p 60 -M 255.255.255.0\n-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3\n",
		"-A -f 3 -s wrr\n-a -f 3 -r 10.0.1.220:80 -i -w 1\n",
		"-A -u 10.0.0.1:53 -s sh -b sh-port -o\n-a -u 10.0.0.1:53 -r 1.2.3.4 -i --tun-type gue --tun-port 5 --tun-csum\n",
		"--set 1 2 3\n-C\n-Z\n",
		"-A --sctp-service 1.2.3.4:9 -p\n",
		"-a -t 1.2.3.4:80 -r 1.1.1.1 -x 5 -y 2\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d := NewDirector()
		if err := Restore(d, strings.NewReader(in), "fuzz"); err != nil {
			if !d.Empty() {
				t.Fatalf("failed restore changed the director")
			}
			return
		}
		s1 := saveString(t, d)
		for _, svc := range d.Services() {
			if svc.FwMark >= 1<<31 {
				return // ipvsadm prints such marks as negative numbers it then refuses
			}
		}
		d2 := NewDirector()
		if err := Restore(d2, strings.NewReader(s1), "save"); err != nil {
			t.Fatalf("save does not read back: %v\n%s", err, s1)
		}
		if s2 := saveString(t, d2); s1 != s2 {
			t.Fatalf("round trip differs:\n%s\n---\n%s", s1, s2)
		}
	})
}

func ExampleSave() {
	d := NewDirector()
	_ = Restore(d, strings.NewReader("ipvsadm -A -t 10.0.0.1:http -s rr\nipvsadm -a -t 10.0.0.1:80 -r 192.168.1.2 -m\n"), "example")
	_ = Save(os.Stdout, d)
	// Output:
	// -A -t 10.0.0.1:80 -s rr
	// -a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1
}
