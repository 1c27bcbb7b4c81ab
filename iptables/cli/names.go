package cli

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/uswitch-lab/uswitch/iptables"
)

// FileNames answers -L's name lookups from the local databases only, as
// glibc's "files" service does: /etc/hosts (getnameinfo), /etc/networks
// (getnetbyaddr), /etc/services (getservbyport) and /etc/protocols
// (getprotobynumber). It never asks DNS: an address without a line in
// /etc/hosts prints as iptables prints it when no resolver answers.
type FileNames struct {
	// Dir is the folder of the files ("" = /etc).
	Dir string

	once     sync.Once
	hosts    map[uint32]string
	networks map[uint32]string
	services map[string]string // "port/proto" -> name; "port/" -> first of any proto
	protos   map[uint8]string
	users    map[uint32]string
	groups   map[uint32]string
}

var _ iptables.Names = (*FileNames)(nil)

func (n *FileNames) load() {
	dir := n.Dir
	if dir == "" {
		dir = "/etc"
	}
	n.hosts = map[uint32]string{}
	n.networks = map[uint32]string{}
	n.services = map[string]string{}
	n.protos = map[uint8]string{}
	n.users = map[uint32]string{}
	n.groups = map[uint32]string{}
	for file, m := range map[string]map[uint32]string{dir + "/passwd": n.users, dir + "/group": n.groups} {
		eachColonLine(file, func(f []string) {
			if len(f) < 3 {
				return
			}
			id, err := strconv.ParseUint(f[2], 10, 32)
			if _, dup := m[uint32(id)]; err == nil && !dup {
				m[uint32(id)] = f[0]
			}
		})
	}
	eachLine(dir+"/hosts", func(f []string) {
		a, err := netip.ParseAddr(f[0])
		if err != nil || !a.Is4() || len(f) < 2 {
			return
		}
		b := a.As4()
		k := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if _, ok := n.hosts[k]; !ok {
			n.hosts[k] = f[1]
		}
	})
	eachLine(dir+"/networks", func(f []string) {
		if len(f) < 2 {
			return
		}
		k, ok := inetNetwork(f[1])
		if _, dup := n.networks[k]; ok && !dup {
			n.networks[k] = f[0]
		}
	})
	eachLine(dir+"/services", func(f []string) {
		if len(f) < 2 {
			return
		}
		port, proto, ok := strings.Cut(f[1], "/")
		if !ok {
			return
		}
		for _, k := range []string{port + "/" + proto, port + "/"} {
			if _, dup := n.services[k]; !dup {
				n.services[k] = f[0]
			}
		}
	})
	eachLine(dir+"/protocols", func(f []string) {
		if len(f) < 2 {
			return
		}
		v, err := strconv.ParseUint(f[1], 10, 8)
		if _, dup := n.protos[uint8(v)]; err == nil && !dup {
			n.protos[uint8(v)] = f[0]
		}
	})
}

// inetNetwork is inet_network for a dotted network number, placed as
// getnetbyaddr compares it (a.b.c.d, the missing parts zero on the
// right as /etc/networks writes them in full).
func inetNetwork(s string) (uint32, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return 0, false
	}
	var v uint32
	for _, p := range parts {
		x, err := strconv.ParseUint(p, 0, 8)
		if err != nil {
			return 0, false
		}
		v = v<<8 | uint32(x)
	}
	return v, true
}

func eachLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if fields := strings.Fields(line); len(fields) > 0 {
			fn(fields)
		}
	}
}

// Host is the first name of the address's line in /etc/hosts.
func (n *FileNames) Host(a uint32) string { n.once.Do(n.load); return n.hosts[a] }

// Network is the name /etc/networks gives the number.
func (n *FileNames) Network(a uint32) string { n.once.Do(n.load); return n.networks[a] }

// Service is the name /etc/services gives the port for proto ("": any).
func (n *FileNames) Service(port uint16, proto string) string {
	n.once.Do(n.load)
	return n.services[strconv.Itoa(int(port))+"/"+proto]
}

// Proto is /etc/protocols' name of the number.
func (n *FileNames) Proto(p uint8) string { n.once.Do(n.load); return n.protos[p] }

func eachColonLine(path string, fn func([]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			fn(strings.Split(l, ":"))
		}
	}
}

// User is the name /etc/passwd gives the uid.
func (n *FileNames) User(uid uint32) string { n.once.Do(n.load); return n.users[uid] }

// Group is the name /etc/group gives the gid.
func (n *FileNames) Group(gid uint32) string { n.once.Do(n.load); return n.groups[gid] }
