package host

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/route"
)

// testdata/snap was captured from a namespace with veth devices, a
// multipath route, reject routes and rules of most kinds.
func TestLoadTestdata(t *testing.T) {
	s, err := Load("testdata/snap")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Links) == 0 || len(s.Addrs) == 0 || len(s.Routes) == 0 || len(s.Rules) == 0 {
		t.Fatalf("empty snapshot: %d links %d addrs %d routes %d rules", len(s.Links), len(s.Addrs), len(s.Routes), len(s.Rules))
	}
	if s.Ruleset == nil {
		t.Fatal("no ruleset")
	}
	r := s.FIB.Output(&route.Flow{Dst: netip.MustParseAddr("10.1.0.2")})
	if r.Err != 0 || r.Type != route.Local {
		t.Errorf("10.1.0.2: %+v", r)
	}
	if !s.Sysctl.IPForward {
		t.Error("ip_forward not read")
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse(map[string][]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Sysctl.IPForward || s.Sysctl.Conntrack.UDP != 30*time.Second || !s.Sysctl.Conntrack.TCPLoose {
		t.Errorf("defaults: %+v", s.Sysctl)
	}
	if r := s.FIB.Output(&route.Flow{Dst: netip.MustParseAddr("8.8.8.8")}); r.Err != syscall.ENETUNREACH {
		t.Errorf("empty host routes 8.8.8.8: %v", r.Err)
	}
}

func TestSysctl(t *testing.T) {
	s, err := parseSysctl("sysctl", []byte("net.ipv4.ip_forward = 1\nnet.ipv4.conf.eth0/100.rp_filter = 2\n"+
		"net.netfilter.nf_conntrack_tcp_timeout_established = 600\nnet.netfilter.nf_conntrack_max = 1000\nkernel.x = a b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.IPForward || s.Conf["eth0.100"].RPFilter != 2 || s.Conntrack.TCPEstablished != 600*time.Second || s.Conntrack.Max != 1000 {
		t.Errorf("%+v", s)
	}
	s, err = parseSysctl("sysctl", []byte("net.ipv4.conf.all.accept_source_route = 1\nnet.ipv4.conf.tun1.accept_source_route = 1\n"+
		"net.ipv4.conf.tun2.accept_source_route = 0\n"))
	if err != nil || !s.Conf["all"].AcceptSourceRoute || !s.Conf["tun1"].AcceptSourceRoute || s.Conf["tun2"].AcceptSourceRoute {
		t.Errorf("accept_source_route: %v %+v", err, s.Conf)
	}
	s, err = parseSysctl("sysctl", []byte("net.ipv4.fib_multipath_hash_seed = 4294967295\nnet.ipv4.fib_multipath_hash_fields = 0x0037\n"+
		"net.ipv4.fib_multipath_use_neigh = 1\nnet.ipv4.fib_multipath_hash_policy = 3\n"))
	if err != nil || s.MultipathHashSeed != 0xffffffff || s.MultipathHashFields != 0x37 || !s.MultipathUseNeigh || s.MultipathHashPolicy != 3 {
		t.Errorf("multipath sysctls: %v %+v", err, s)
	}
	s, err = parseSysctl("sysctl", []byte("net.ipv4.vs.sloppy_sctp = 1\nnet.ipv4.vs.conn_reuse_mode = 2\n"))
	if err != nil || !s.IPVS.SloppySCTP || s.IPVS.ConnReuseMode != 2 {
		t.Errorf("vs sysctls: %v %+v", err, s.IPVS)
	}
	if d := DefaultSysctl(); d.MultipathHashFields != 7 || d.MultipathHashSeed != 0 {
		t.Errorf("default multipath fields %#x seed %d", d.MultipathHashFields, d.MultipathHashSeed)
	}
	if _, err = parseSysctl("sysctl", []byte("net.ipv4.fib_multipath_hash_seed = -1\n")); err == nil {
		t.Errorf("a negative seed is accepted")
	}
	ns, err := neighbours([]byte(`[{"dst":"10.1.0.48","dev":"a0","state":["FAILED"]},{"dst":"10.1.0.170","dev":"a0","lladdr":"02:00:00:00:00:01","state":["STALE"]},` +
		`{"dst":"fe80::1","dev":"a0","state":["REACHABLE"]},{"dst":"10.1.0.9","dev":"b0","state":["INCOMPLETE"]}]`))
	if err != nil || len(ns) != 3 || ns[0].Valid || !ns[1].Valid || ns[2].Valid || ns[2].Dev != "b0" {
		t.Errorf("neighbours: %v %+v", err, ns)
	}
	_, err = parseSysctl("sysctl", []byte("net.ipv4.ip_forward = 1\nnet.ipv4.ip_forward = x\n"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != "sysctl" || pe.Line != 2 {
		t.Errorf("bad value: %v", err)
	}
}

func TestErrorsNamePlace(t *testing.T) {
	for _, c := range []struct {
		file, text string
		line       int
	}{
		{FileRoute, "[{\"dst\":\"10.0.0.0/8\"},\n{\"dst\":\"bogus\"}]", 2},
		{FileRoute, "[{\"dst\":\"10.0.0.0/8\"},\n{\"dst\":", 2},
		{FileRule, "[{\"priority\":1,\n\"table\":\"nosuch\"}]", 1},
		{FileAddr, "[{\"ifindex\":1,\"addr_info\":[{\"family\":\"inet\",\"local\":\"x\"}]}]", 1},
		{FileLink, "{}", 1},
	} {
		_, err := Parse(map[string][]byte{c.file: []byte(c.text)})
		var pe *ParseError
		if !errors.As(err, &pe) || pe.File != c.file || pe.Line != c.line {
			t.Errorf("%s %q: %v (want line %d)", c.file, c.text, err, c.line)
		}
		if err != nil && !strings.HasPrefix(err.Error(), c.file+":") {
			t.Errorf("error %q does not start with the file name", err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []string{FileRoute, FileRule, FileAddr, FileLink, FileSysctl} {
		b, err := os.ReadFile(filepath.Join("testdata/snap", n))
		if err == nil {
			f.Add(n, b)
		}
	}
	f.Add(FileRule, []byte(`[{"priority":5,"not":null,"src":"1.2.3.4","srclen":40,"table":"local"}]`))
	f.Add(FileRoute, []byte(`[{"dst":"default","nexthops":[{"gateway":"1.1.1.1","dev":"x"}]}]`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		switch name {
		case FileRoute, FileRule, FileAddr, FileLink, FileSysctl:
		default:
			return
		}
		_, err := Parse(map[string][]byte{name: data})
		if err != nil && !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	})
}

func TestIPVSSave(t *testing.T) {
	s, err := Parse(map[string][]byte{})
	if err != nil || s.IPVS != nil {
		t.Fatalf("no file: %v %v", s, err)
	}
	s, err = Parse(map[string][]byte{FileIPVS: []byte("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n")})
	if err != nil {
		t.Fatal(err)
	}
	if svc := s.IPVS.Service(lvs.ServiceKey{Proto: lvs.ProtoTCP, Addr: 0x0a000001, Port: 80}); svc == nil || len(svc.Dests) != 1 {
		t.Fatalf("service not loaded: %v", s.IPVS.Services())
	}
	_, err = Parse(map[string][]byte{FileIPVS: []byte("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w x\n")})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != FileIPVS || pe.Line != 2 ||
		err.Error() != "ipvsadm-save:2: illegal weight specified: -a -t 10.0.0.1:80 -r 10.0.1.1 -w x" {
		t.Fatalf("err = %v", err)
	}
}

// TestLoadMissing: a missing folder, an empty one and one without the
// required files are errors naming the folder and the missing files,
// not a snapshot of an empty host.
func TestLoadMissing(t *testing.T) {
	tmp := t.TempDir()
	partial := filepath.Join(tmp, "partial")
	os.Mkdir(partial, 0o755)
	os.WriteFile(filepath.Join(partial, FileLink), []byte("[]"), 0o644)
	os.WriteFile(filepath.Join(partial, FileSysctl), []byte(""), 0o644)
	empty := filepath.Join(tmp, "empty")
	os.Mkdir(empty, 0o755)
	for _, c := range []struct{ dir, want string }{
		{filepath.Join(tmp, "none"), "snapshot " + filepath.Join(tmp, "none") + ": no such folder: missing ip-link.json, ip-addr.json, ip-route.json"},
		{empty, "snapshot " + empty + ": no snapshot files: missing ip-link.json, ip-addr.json, ip-route.json"},
		{partial, "snapshot " + partial + ": missing ip-addr.json, ip-route.json"},
	} {
		if _, err := Load(c.dir); err == nil || err.Error() != c.want {
			t.Errorf("Load(%s): %v, want %q", c.dir, err, c.want)
		}
	}
	// LoadPartial takes a folder with any snapshot file, not an empty one
	if _, err := LoadPartial(partial); err != nil {
		t.Errorf("LoadPartial: %v", err)
	}
	if _, err := LoadPartial(empty); err == nil || !strings.Contains(err.Error(), empty+": no snapshot files: missing iptables-save,") {
		t.Errorf("LoadPartial(empty): %v", err)
	}
}

// TestLoadSizeLimit: a snapshot file is read up to MaxFileSize; a link
// to /dev/zero fails fast instead of exhausting memory, and so does a
// larger regular (here sparse) file.
func TestLoadSizeLimit(t *testing.T) {
	dir := t.TempDir()
	for _, n := range RequiredFiles {
		os.WriteFile(filepath.Join(dir, n), []byte("[]"), 0o644)
	}
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	addr := filepath.Join(dir, FileAddr)
	want := "snapshot file " + addr + " is larger than the limit of 67108864 bytes (64 MiB)"
	os.Remove(addr)
	if _, err := os.Stat("/dev/zero"); err == nil {
		if err := os.Symlink("/dev/zero", addr); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if _, err := Load(dir); err == nil || err.Error() != want {
			t.Errorf("/dev/zero: %v, want %q", err, want)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("/dev/zero took %v", d)
		}
		os.Remove(addr)
	}
	f, err := os.Create(addr)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(MaxFileSize + 1)
	f.Close()
	if _, err := Load(dir); err == nil || err.Error() != want {
		t.Errorf("sparse: %v, want %q", err, want)
	}
}

// TestEbtablesSaveError: a rule ebtables-restore refuses is named by
// file, line and text, and no rule set is loaded.
func TestEbtablesSaveError(t *testing.T) {
	s, err := Parse(map[string][]byte{FileEbtables: []byte("*filter\n:INPUT ACCEPT\n-A INPUT -p IPv4 -j ACCEPT\nCOMMIT\n")})
	if err != nil || s.Ebtables == nil {
		t.Fatalf("good file: %v", err)
	}
	s, err = Parse(map[string][]byte{FileEbtables: []byte("*filter\n:INPUT ACCEPT\n-A INPUT -p IPv4 --bogus\nCOMMIT\n")})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != FileEbtables || pe.Line != 3 || s != nil ||
		!strings.HasPrefix(err.Error(), "ebtables-save:3: ") || !strings.HasSuffix(err.Error(), ": -A INPUT -p IPv4 --bogus") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %q", err)
	}
}
