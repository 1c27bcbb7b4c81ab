// Package host is a snapshot of a Linux host's network state: the output
// of the standard tools saved in a folder, parsed into the values the
// datapath is built from.
//
// A snapshot folder holds
//
//	iptables-save   iptables-save
//	ip-addr.json    ip -j addr show
//	ip-link.json    ip -j -d link show
//	ip-route.json   ip -j route show table all
//	ip-rule.json    ip -j rule show
//	sysctl          sysctl -a (at least net.ipv4.* and net.netfilter.*)
//	ipset-save      ipset save            (optional)
//	ipvsadm-save    ipvsadm -Sn           (optional)
//	rt_tables       iproute2 table names  (optional)
//	rt_dsfield      iproute2 TOS names    (optional)
//
// ip-link.json, ip-addr.json and ip-route.json are required (Load is an
// error naming the folder and the missing files without them; `uswitch
// snapshot` always writes them); any other missing file means the
// kernel's defaults: no rules, default sysctls; a missing ip-rule.json
// means the three default rules. Every file is read up to MaxFileSize.
// A malformed file is a *ParseError naming the file and the place.
package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/route"
)

// File names inside a snapshot folder.
const (
	FileIPTables = "iptables-save"
	FileAddr     = "ip-addr.json"
	FileLink     = "ip-link.json"
	FileRoute    = "ip-route.json"
	FileRule     = "ip-rule.json"
	FileSysctl   = "sysctl"
	FileIPSet    = "ipset-save"
	FileRTTables = "rt_tables"
	FileDSField  = "rt_dsfield"
	FileIPVS     = "ipvsadm-save"
	// FileEbtables is ebtables-save's output, FileBridgeFDB `bridge -j
	// fdb show`, FileNeigh `ip -j neigh show`: the bridge level's state
	// (all optional).
	FileEbtables  = "ebtables-save"
	FileBridgeFDB = "bridge-fdb.json"
	FileNeigh     = "ip-neigh.json"
)

// Snapshot is a parsed snapshot folder.
type Snapshot struct {
	Links  []route.Link
	Addrs  []route.Addr
	Routes []route.Route
	Rules  []route.Rule // nil when ip-rule.json is absent (default rules)
	Sysctl Sysctl
	FIB    *route.FIB

	IPTables string            // raw iptables-save text
	IPSet    string            // raw ipset save text
	Sets     iptables.Sets     // parsed ipsets (nil without ipset-save)
	Ruleset  *iptables.Ruleset // the iptables rule set

	// IPVS is the virtual server table read from ipvsadm-save (as
	// ipvsadm -R reads it); nil when the file is absent.
	IPVS *lvs.Director

	// Bridges are the bridge devices, their ports, forwarding entries
	// and neighbours (bridge.go).
	Bridges []datapath.BridgeConfig
	// Ebtables is the ebtables rule set (nil without ebtables-save).
	Ebtables *ebtables.Ruleset

	// Raw is every snapshot file read, by name, for the readers of the
	// files the snapshot keeps as they are (ebtables-save,
	// bridge-fdb.json, ip-neigh.json) and of what the parsed values
	// leave out (ip-link.json's kinds and MACs, ip-route.json's
	// entries, ipvsadm-save's text: package lab's snapshot nodes).
	Raw map[string][]byte
}

// MaxFileSize is the largest snapshot file Load reads: a larger one (or
// an endless one, such as a link to /dev/zero) is an error.
const MaxFileSize = 64 << 20

// RequiredFiles are the files Load needs to build a FIB.
var RequiredFiles = []string{FileLink, FileAddr, FileRoute}

// readFile reads dir/name up to MaxFileSize bytes; a missing file is
// not an error (false).
func readFile(dir, name string) ([]byte, bool, error) {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	tooBig := fmt.Errorf("snapshot file %s is larger than the limit of %d bytes (%d MiB)", path, MaxFileSize, MaxFileSize>>20)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, false, tooBig
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("snapshot file %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, false, tooBig
	}
	return b, true, nil
}

// Load parses the snapshot in dir, which must hold the RequiredFiles.
func Load(dir string) (*Snapshot, error) { return load(dir, RequiredFiles) }

// LoadPartial is Load on a folder that may lack the RequiredFiles (for
// a reader of a single file, such as ipvsadm-save): it must still exist
// and hold at least one of the snapshot's files.
func LoadPartial(dir string) (*Snapshot, error) { return load(dir, nil) }

func load(dir string, required []string) (*Snapshot, error) {
	names := []string{FileIPTables, FileAddr, FileLink, FileRoute, FileRule, FileSysctl, FileIPSet, FileRTTables, FileDSField,
		FileIPVS, FileEbtables, FileBridgeFDB, FileNeigh}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		why := "no such folder"
		if err == nil {
			why = "not a folder"
		} else if !errors.Is(err, fs.ErrNotExist) {
			why = err.Error()
		}
		want := required
		if want == nil {
			want = names
		}
		return nil, fmt.Errorf("snapshot %s: %s: missing %s", dir, why, strings.Join(want, ", "))
	}
	files := make([][]byte, len(names))
	present := make([]bool, len(names))
	found := false
	for i, n := range names {
		b, ok, err := readFile(dir, n)
		if err != nil {
			return nil, err
		}
		files[i], present[i] = b, ok
		found = found || ok
	}
	var missing []string
	for _, r := range required {
		for i, n := range names {
			if n == r && !present[i] {
				missing = append(missing, r)
			}
		}
	}
	if !found {
		if required == nil {
			missing = names
		}
		return nil, fmt.Errorf("snapshot %s: no snapshot files: missing %s", dir, strings.Join(missing, ", "))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("snapshot %s: missing %s", dir, strings.Join(missing, ", "))
	}
	return parse(func(name string) ([]byte, bool) {
		for i, n := range names {
			if n == name {
				return files[i], present[i]
			}
		}
		return nil, false
	})
}

// Parse is Load on in-memory file contents keyed by file name.
func Parse(files map[string][]byte) (*Snapshot, error) {
	return parse(func(name string) ([]byte, bool) { b, ok := files[name]; return b, ok })
}

func parse(get func(string) ([]byte, bool)) (*Snapshot, error) {
	s := &Snapshot{Sysctl: DefaultSysctl(), Raw: map[string][]byte{}}
	for _, name := range []string{FileEbtables, FileBridgeFDB, FileNeigh, FileLink, FileRoute, FileIPVS} {
		if b, ok := get(name); ok {
			s.Raw[name] = b
		}
	}
	var err error
	tn := tableNames{}
	if b, ok := get(FileRTTables); ok {
		parseRTTables(b, tn, "")
	}
	if b, ok := get(FileDSField); ok {
		parseRTTables(b, tn, "\x00ds:")
	}
	if b, ok := get(FileLink); ok {
		if s.Links, err = parseLinks(FileLink, b); err != nil {
			return nil, err
		}
	}
	if b, ok := get(FileAddr); ok {
		if s.Addrs, err = parseAddrs(FileAddr, b); err != nil {
			return nil, err
		}
	}
	if b, ok := get(FileRoute); ok {
		if s.Routes, err = parseRoutes(FileRoute, b, tn); err != nil {
			return nil, err
		}
	}
	if b, ok := get(FileRule); ok {
		if s.Rules, err = parseRules(FileRule, b, tn); err != nil {
			return nil, err
		}
		if s.Rules == nil {
			s.Rules = []route.Rule{} // present but empty: no rules at all
		}
	}
	if b, ok := get(FileSysctl); ok {
		if s.Sysctl, err = parseSysctl(FileSysctl, b); err != nil {
			return nil, err
		}
	}
	cfg := route.Config{Links: s.Links, Addrs: s.Addrs, Routes: s.Routes, Rules: s.Rules,
		All: s.Sysctl.DevConf("all"), Dev: map[string]route.DevConf{},
		MultipathHashPolicy: s.Sysctl.MultipathHashPolicy, MultipathHashSeed: s.Sysctl.MultipathHashSeed,
		MultipathHashFields: s.Sysctl.MultipathHashFields, MultipathUseNeigh: s.Sysctl.MultipathUseNeigh}
	if cfg.MultipathUseNeigh {
		if cfg.Neighbours, err = neighbours(s.Raw[FileNeigh]); err != nil {
			return nil, err
		}
	}
	for _, l := range s.Links {
		cfg.Dev[l.Name] = s.Sysctl.DevConf(l.Name)
	}
	if s.FIB, err = route.New(cfg); err != nil {
		file := FileRoute
		var ce *route.ConfigError
		if errors.As(err, &ce) {
			file = map[string]string{"link": FileLink, "address": FileAddr, "route": FileRoute}[ce.Kind]
			err = ce.Err
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if b, ok := get(FileIPSet); ok {
		s.IPSet = string(b)
		if s.Sets, err = iptables.ParseIPSetSave(bytes.NewReader(b), FileIPSet); err != nil {
			return nil, err
		}
	}
	if b, ok := get(FileIPTables); ok {
		s.IPTables = string(b)
	}
	ld := &iptables.Loader{}
	if s.Sets != nil {
		ld.Sets = s.Sets
	}
	if s.Ruleset, err = ld.LoadString(s.IPTables); err != nil {
		return nil, fmt.Errorf("%s: %w", FileIPTables, err)
	}
	if b, ok := get(FileIPVS); ok {
		d := lvs.NewDirector()
		if err := lvs.Restore(d, bytes.NewReader(b), FileIPVS); err != nil {
			var re *lvs.RuleError
			if errors.As(err, &re) {
				return nil, &ParseError{File: FileIPVS, Line: re.Line, Offset: -1, Err: fmt.Errorf("%w: %s", re.Err, re.Text)}
			}
			return nil, fmt.Errorf("%s: %w", FileIPVS, err)
		}
		d.SetSysctls(s.Sysctl.IPVS)
		s.IPVS = d
	}
	if b, ok := get(FileLink); ok {
		if s.Bridges, err = s.bridges(b); err != nil {
			return nil, err
		}
	}
	if b, ok := get(FileEbtables); ok && len(bytes.TrimSpace(b)) > 0 {
		rs, rerr := (&ebtables.Loader{}).Load(string(b))
		if rerr != nil {
			return nil, ebtablesError(b, rerr)
		}
		s.Ebtables = rs
	}
	return s, nil
}

// ebtablesError names the ebtables-save line that ebtables-restore
// refused, with the rule text and the tool's first message line.
func ebtablesError(data []byte, rerr *ebtables.RestoreError) error {
	msg, _, _ := strings.Cut(strings.TrimSpace(rerr.Stderr), "\n")
	if rerr.Line <= 0 {
		return fmt.Errorf("%s: %s", FileEbtables, msg)
	}
	lines := strings.Split(string(data), "\n")
	if rerr.Line <= len(lines) {
		msg += ": " + strings.TrimSpace(lines[rerr.Line-1])
	}
	return &ParseError{File: FileEbtables, Line: rerr.Line, Offset: -1, Err: errors.New(msg)}
}

// Capture writes a snapshot of the running host (or of the network
// namespace netns, through `ip netns exec`) into dir, creating it.
// iptables-save and ipset save are optional: when the tool is missing
// or fails the file is left out. When iptables-save (iptables-nft) shows
// no table, iptables-legacy-save's tables are taken if there are any (a
// host or namespace whose rules are iptables-legacy's).
func Capture(dir, netns string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	run := func(args ...string) ([]byte, error) {
		if netns != "" {
			args = append([]string{"ip", "netns", "exec", netns}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return out.Bytes(), fmt.Errorf("%v: %v: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
		}
		return out.Bytes(), nil
	}
	jobs := []struct {
		file     string
		args     []string
		optional bool
	}{
		{FileAddr, []string{"ip", "-j", "addr", "show"}, false},
		{FileLink, []string{"ip", "-j", "-d", "link", "show"}, false},
		{FileRoute, []string{"ip", "-j", "route", "show", "table", "all"}, false},
		{FileRule, []string{"ip", "-j", "rule", "show"}, false},
		{FileSysctl, []string{"sysctl", "-e", "-a"}, false},
		{FileIPTables, []string{"iptables-save"}, true},
		{FileIPSet, []string{"ipset", "save"}, true},
		{FileEbtables, []string{"ebtables-save"}, true},
		{FileBridgeFDB, []string{"bridge", "-j", "fdb", "show"}, true},
		{FileNeigh, []string{"ip", "-j", "neigh", "show"}, true},
	}
	// ipvsadm loads the ip_vs module when it is not there: ask it only
	// when IPVS is already in use.
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		jobs = append(jobs, struct {
			file     string
			args     []string
			optional bool
		}{FileIPVS, []string{"ipvsadm", "-Sn"}, true})
	}
	for _, j := range jobs {
		out, err := run(j.args...)
		if err != nil {
			// sysctl -a exits non-zero for a few unreadable keys but
			// prints the rest.
			if j.file == FileSysctl && len(out) > 0 {
				err = nil
			} else if j.optional {
				continue
			} else {
				return err
			}
		}
		if j.file == FileIPTables && !hasTable(out) {
			// no iptables-nft tables: the namespace's rules may be
			// iptables-legacy's (x_tables), which iptables-save (nft)
			// only warns about
			if legacy, err := run("iptables-legacy-save"); err == nil && hasTable(legacy) {
				out = legacy
			}
		}
		if err := os.WriteFile(filepath.Join(dir, j.file), out, 0o644); err != nil {
			return err
		}
	}
	// Table and TOS names ip printed come from rt_tables and rt_dsfield.
	for _, name := range []string{FileRTTables, FileDSField} {
		if err := copyConf(dir, name); err != nil {
			return err
		}
	}
	return nil
}

// hasTable says iptables-save output has a table ("*name" line).
func hasTable(save []byte) bool {
	for _, l := range bytes.Split(save, []byte("\n")) {
		if len(l) > 0 && l[0] == '*' {
			return true
		}
	}
	return false
}

func copyConf(dir, name string) error {
	var tables []byte
	for _, p := range []string{"/usr/share/iproute2/" + name, "/etc/iproute2/" + name} {
		if b, err := os.ReadFile(p); err == nil {
			tables = append(tables, b...)
			tables = append(tables, '\n')
		}
		if m, _ := filepath.Glob(p + ".d/*.conf"); len(m) > 0 {
			for _, f := range m {
				if b, err := os.ReadFile(f); err == nil {
					tables = append(tables, b...)
					tables = append(tables, '\n')
				}
			}
		}
	}
	if len(tables) > 0 {
		return os.WriteFile(filepath.Join(dir, name), tables, 0o644)
	}
	return nil
}
