package fdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"io"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// `bridge fdb show` as iproute2 6.1 prints it for this bridge
// (bridge/fdb.c print_fdb), over the kernel's dump (rtnl_fdb_dump in
// net/core/rtnetlink.c and br_fdb_dump in br_fdb.c):
//
//   - devices in ifindex order;
//   - a port: its master entries (br_fdb_dump with the port as
//     filter_dev: the entries whose dst is the port, newest first: the
//     kernel's fdb_list adds at the head), then its own address list
//     (ndo_dflt_fdb_dump: "self permanent");
//   - the bridge: its own address list first, then the entries without a
//     port (dst NULL: the bridge's own address when no port has it);
//   - a line: "MAC dev NAME [used U/UP ][FLAGS ]master BR STATE\n" where
//     FLAGS are self, sticky; STATE is permanent (local), static,
//     stale (aged, not yet removed) or empty (dynamic): a dynamic entry's
//     line ends in "master br0 ".

// ShowEntry is one entry of `bridge -j fdb show` (and one line of the text
// form). The JSON field order is iproute2's.
type ShowEntry struct {
	MAC    string   `json:"mac"`
	Dev    string   `json:"ifname"`
	VLAN   uint16   `json:"vlan,omitempty"`
	Used   *int64   `json:"used,omitempty"`    // -s: seconds since last used
	Upd    *int64   `json:"updated,omitempty"` // -s: seconds since last updated
	Flags  []string `json:"flags"`
	Master string   `json:"master,omitempty"`
	State  string   `json:"state"`
}

// ShowEntries is the bridge's part of the dump in `bridge fdb show`
// order at now; stats fills Used and Upd (`bridge -s fdb show`).
func (b *Bridge) ShowEntries(now int64, stats bool) []ShowEntry {
	byPort := map[int][]Entry{}
	for _, e := range b.Entries() {
		byPort[e.Port] = append(byPort[e.Port], e)
	}
	type dev struct {
		index, port int
	}
	devs := []dev{{b.Index, BridgePort}}
	for i := range b.ports {
		devs = append(devs, dev{b.ports[i].Index, i})
	}
	sort.SliceStable(devs, func(i, j int) bool { return devs[i].index < devs[j].index })
	var out []ShowEntry
	self := func(name string, l []packet.MAC) {
		for _, m := range l {
			out = append(out, ShowEntry{MAC: m.String(), Dev: name, Flags: []string{"self"}, State: "permanent"})
		}
	}
	master := func(name string, l []Entry) {
		for i := range l {
			e := &l[i]
			se := ShowEntry{MAC: e.Key.MAC.String(), Dev: name, VLAN: e.Key.VLAN, Flags: []string{}, Master: b.Name, State: e.State(b, now).String()}
			if stats {
				u, up := (now-e.Used)/1e9, (now-e.Updated)/1e9
				se.Used, se.Upd = &u, &up
			}
			if e.Sticky {
				se.Flags = append(se.Flags, "sticky")
			}
			out = append(out, se)
		}
	}
	for _, d := range devs {
		if d.port == BridgePort {
			self(b.Name, b.Self)
			master(b.Name, byPort[BridgePort])
			continue
		}
		p := &b.ports[d.port]
		master(p.Name, byPort[d.port])
		self(p.Name, p.Self)
	}
	return out
}

// AppendText appends the entries as `bridge fdb show` prints them.
func AppendText(buf []byte, l []ShowEntry) []byte {
	for _, e := range l {
		buf = append(buf, e.MAC...)
		buf = append(buf, " dev "...)
		buf = append(buf, e.Dev...)
		buf = append(buf, ' ')
		if e.VLAN != 0 {
			buf = append(buf, "vlan "...)
			buf = strconv.AppendUint(buf, uint64(e.VLAN), 10)
			buf = append(buf, ' ')
		}
		if e.Used != nil && e.Upd != nil {
			buf = fmt.Appendf(buf, "used %d/%d ", *e.Used, *e.Upd)
		}
		for _, f := range e.Flags {
			buf = append(buf, f...)
			buf = append(buf, ' ')
		}
		if e.Master != "" {
			buf = append(buf, "master "...)
			buf = append(buf, e.Master...)
			buf = append(buf, ' ')
		}
		buf = append(buf, e.State...)
		buf = append(buf, '\n')
	}
	return buf
}

// Show is `bridge fdb show` (stats: `bridge -s fdb show`) for this
// bridge at now.
func (b *Bridge) Show(now int64, stats bool) string {
	return string(AppendText(nil, b.ShowEntries(now, stats)))
}

// ShowJSON is `bridge -j fdb show` for this bridge at now: one line,
// the entries as a JSON array.
func (b *Bridge) ShowJSON(now int64) []byte {
	l := b.ShowEntries(now, false)
	if l == nil {
		l = []ShowEntry{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		panic(err) // plain strings and numbers: cannot fail
	}
	return buf.Bytes()
}

// ParseShowJSON reads `bridge -j fdb show` (or `bridge -j -p fdb show`)
// output.
func ParseShowJSON(data []byte) ([]ShowEntry, error) {
	var l []ShowEntry
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("bridge -j fdb show: %w", err)
	}
	for i, e := range l {
		if _, err := packet.ParseMAC(e.MAC); err != nil {
			return nil, fmt.Errorf("bridge -j fdb show: entry %d: %w", i, err)
		}
	}
	return l, nil
}

// Load replaces the FDB and the devices' own address lists with the
// entries of a `bridge -j fdb show` dump (a snapshot; ParseShowJSON),
// keeping their order: the entries of this bridge (master Name, or self
// entries of the bridge and its ports); others are ignored. A dynamic
// entry's updated and used times are now minus the dump's -s ages when
// it has them, else now. Load is for setting up: it must not run while
// frames are handled or the bridge is shown.
func (b *Bridge) Load(l []ShowEntry, now int64) error {
	port := func(dev string) (int, bool) {
		if dev == b.Name {
			return BridgePort, true
		}
		i := b.PortByName(dev)
		return i, i >= 0
	}
	selfs := map[int][]packet.MAC{}
	type add struct {
		port    int
		mac     packet.MAC
		flags   uint32
		upd, us int64
	}
	var adds []add
	for i, e := range l {
		mac, err := packet.ParseMAC(e.MAC)
		if err != nil {
			return fmt.Errorf("fdb entry %d: %w", i, err)
		}
		p, ok := port(e.Dev)
		isSelf := len(e.Flags) > 0 && e.Flags[0] == "self"
		if isSelf {
			if ok {
				selfs[p] = append(selfs[p], mac)
			}
			continue
		}
		if e.Master != b.Name {
			continue
		}
		if !ok {
			return fmt.Errorf("fdb entry %d: %s on %s: not a port of %s", i, e.MAC, e.Dev, b.Name)
		}
		var f uint32
		switch e.State {
		case "permanent":
			f = flagLocal | flagStatic
		case "static":
			f = flagStatic | flagAddedByUser
		case "", "stale":
			f = flagLearned
		default:
			return fmt.Errorf("fdb entry %d: %s: unknown state %q", i, e.MAC, e.State)
		}
		for _, fl := range e.Flags {
			if fl == "sticky" {
				f |= flagSticky
			}
		}
		a := add{port: p, mac: mac, flags: f, upd: now, us: now}
		if e.Upd != nil {
			a.upd = now - *e.Upd*1e9
		}
		if e.Used != nil {
			a.us = now - *e.Used*1e9
		}
		adds = append(adds, a)
	}
	b.t.clear()
	for i := len(adds) - 1; i >= 0; i-- { // the dump is newest first
		a := adds[i]
		e := &entry{key: Key{MAC: a.mac}}
		e.port.Store(int32(a.port))
		e.flags.Store(a.flags)
		e.updated.Store(a.upd)
		e.used.Store(a.us)
		if _, ok := b.t.insert(e); !ok {
			return fmt.Errorf("fdb: %s listed twice", a.mac)
		}
		if a.flags&flagLearned != 0 {
			b.t.nLearn.Add(1)
		}
	}
	for p, l := range selfs {
		if p == BridgePort {
			b.Self = l
		} else {
			b.ports[p].Self = l
		}
	}
	return nil
}

// Command is iproute2's `bridge [-j] [-s] fdb show [br NAME]` over the
// bridges bs at now: the output and exit status bridge(8) gives.
// Other bridge commands are refused with a message.
func Command(bs []*Bridge, args []string, now int64, stdout, stderr io.Writer) int {
	jsonOut, stats := false, false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-j", "-json":
			jsonOut = true
		case "-s", "-stats", "-statistics":
			stats = true
		default:
			fmt.Fprintf(stderr, "Option \"%s\" is unknown, try \"bridge help\".\n", args[0])
			return 255
		}
		args = args[1:]
	}
	if len(args) < 1 || !strings.HasPrefix("fdb", args[0]) {
		fmt.Fprintln(stderr, "uswitch bridge: only `bridge fdb show [br NAME]` is answered")
		return 255
	}
	args = args[1:]
	if len(args) > 0 && !strings.HasPrefix("show", args[0]) && !strings.HasPrefix("list", args[0]) {
		fmt.Fprintf(stderr, "uswitch bridge: fdb %s: only fdb show is answered\n", args[0])
		return 255
	}
	if len(args) > 0 {
		args = args[1:]
	}
	only := ""
	for len(args) > 0 {
		switch args[0] {
		case "br", "brport", "dev":
			if len(args) < 2 {
				fmt.Fprintf(stderr, "Command line is not complete. Try option \"help\"\n")
				return 255
			}
			only = args[1]
			args = args[2:]
		default:
			fmt.Fprintf(stderr, "uswitch bridge: fdb show %s: not answered\n", args[0])
			return 255
		}
	}
	var all []ShowEntry
	found := only == ""
	for _, b := range bs {
		if only != "" && b.Name != only && b.PortByName(only) < 0 {
			continue
		}
		found = true
		all = append(all, b.ShowEntries(now, stats)...)
	}
	if !found {
		fmt.Fprintf(stderr, "Cannot find bridge device \"%s\"\n", only)
		return 1
	}
	if jsonOut {
		b, _ := json.Marshal(all)
		if all == nil {
			b = []byte("[]")
		}
		stdout.Write(append(b, '\n'))
		return 0
	}
	stdout.Write(AppendText(nil, all))
	return 0
}
