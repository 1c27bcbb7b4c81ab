package host

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iproute"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// The bridge level of a snapshot: bridge devices and their ports from
// `ip -j -d link show` (linkinfo), the forwarding database from `bridge
// -j fdb show`, br0's neighbours from `ip -j neigh show`, and
// net.bridge.* from sysctl.

type jsonBridgeLink struct {
	Ifindex  int    `json:"ifindex"`
	Ifname   string `json:"ifname"`
	Master   string `json:"master"`
	Address  string `json:"address"`
	LinkInfo *struct {
		InfoKind      string         `json:"info_kind"`
		InfoData      map[string]any `json:"info_data"`
		InfoSlaveKind string         `json:"info_slave_kind"`
		InfoSlaveData map[string]any `json:"info_slave_data"`
	} `json:"linkinfo"`
}

type jsonNeigh struct {
	Dst    string   `json:"dst"`
	Dev    string   `json:"dev"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

func num(m map[string]any, k string) (float64, bool) {
	v, ok := m[k].(float64)
	return v, ok
}

func boolField(m map[string]any, k string, def bool) bool {
	switch v := m[k].(type) {
	case bool:
		return v
	case float64:
		return v != 0
	}
	return def
}

// bridges reads the snapshot's bridge devices.
func (s *Snapshot) bridges(linkJSON []byte) ([]datapath.BridgeConfig, error) {
	var links []jsonBridgeLink
	if err := json.Unmarshal(linkJSON, &links); err != nil {
		return nil, fmt.Errorf("%s: %w", FileLink, err)
	}
	callIPT := true
	if v, ok := s.Sysctl.Raw["net.bridge.bridge-nf-call-iptables"]; ok {
		callIPT = v != "0"
	}
	vlanTagged := s.Sysctl.Raw["net.bridge.bridge-nf-filter-vlan-tagged"] == "1"
	var fdbAll []fdb.ShowEntry
	if b, ok := s.Raw[FileBridgeFDB]; ok && len(b) > 0 {
		l, err := fdb.ParseShowJSON(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", FileBridgeFDB, err)
		}
		fdbAll = l
	}
	var neighs []jsonNeigh
	if b, ok := s.Raw[FileNeigh]; ok && len(b) > 0 {
		if err := json.Unmarshal(b, &neighs); err != nil {
			return nil, fmt.Errorf("%s: %w", FileNeigh, err)
		}
	}
	var out []datapath.BridgeConfig
	for _, l := range links {
		if l.LinkInfo == nil || l.LinkInfo.InfoKind != "bridge" {
			continue
		}
		mac, err := packet.ParseMAC(l.Address)
		if err != nil {
			return nil, fmt.Errorf("%s: bridge %s: %w", FileLink, l.Ifname, err)
		}
		c := datapath.BridgeConfig{CallIPTables: callIPT, FilterVLANTagged: vlanTagged, Neighbours: map[uint32]packet.MAC{}}
		c.FDB = fdb.Config{Name: l.Ifname, Index: l.Ifindex, MAC: mac, MACSet: true}
		d := l.LinkInfo.InfoData
		if v, ok := num(d, "ageing_time"); ok {
			// centiseconds
			if v == 0 {
				c.FDB.AgeingZero = true
			} else {
				c.FDB.AgeingTime = int64(v) * 1e7
			}
		}
		if v, ok := num(d, "group_fwd_mask"); ok {
			c.FDB.GroupFwdMask = uint16(v)
		}
		if boolField(d, "nf_call_iptables", false) {
			c.CallIPTables = true
		}
		for _, p := range links {
			if p.Master != l.Ifname || p.LinkInfo == nil || p.LinkInfo.InfoSlaveKind != "bridge" {
				continue
			}
			pm, err := packet.ParseMAC(p.Address)
			if err != nil {
				return nil, fmt.Errorf("%s: port %s: %w", FileLink, p.Ifname, err)
			}
			sd := p.LinkInfo.InfoSlaveData
			var fl fdb.PortFlags
			for _, f := range []struct {
				key string
				def bool
				bit fdb.PortFlags
			}{{"learning", true, fdb.Learning}, {"flood", true, fdb.Flood}, {"mcast_flood", true, fdb.McastFlood},
				{"bcast_flood", true, fdb.BcastFlood}, {"hairpin", false, fdb.Hairpin}, {"isolated", false, fdb.Isolated}} {
				if boolField(sd, f.key, f.def) {
					fl |= f.bit
				}
			}
			c.FDB.Ports = append(c.FDB.Ports, fdb.PortConfig{Name: p.Ifname, Index: p.Ifindex, MAC: pm, Flags: fl})
		}
		if fdbAll != nil {
			ports := map[string]bool{l.Ifname: true}
			for _, p := range c.FDB.Ports {
				ports[p.Name] = true
			}
			var mine []fdb.ShowEntry
			for _, e := range fdbAll {
				if ports[e.Dev] && (e.Master == "" || e.Master == l.Ifname) {
					mine = append(mine, e)
				}
			}
			c.Entries = mine
		}
		for _, n := range neighs {
			if n.Dev != l.Ifname || n.LLAddr == "" {
				continue
			}
			a, err := netip.ParseAddr(n.Dst)
			if err != nil || !a.Is4() {
				continue
			}
			m, err := packet.ParseMAC(n.LLAddr)
			if err != nil {
				continue
			}
			c.Neighbours[packet.AddrFrom(a)] = m
		}
		out = append(out, c)
	}
	return out, nil
}

// IPNeighbours is the snapshot's `ip -j neigh show` (ip-neigh.json) as
// ip neigh show lists it again: its IPv4 entries (nil without the file).
func (s *Snapshot) IPNeighbours() ([]iproute.Neighbour, error) {
	b := s.Raw[FileNeigh]
	if len(b) == 0 {
		return nil, nil
	}
	var ns []jsonNeigh
	if err := json.Unmarshal(b, &ns); err != nil {
		return nil, fmt.Errorf("%s: %w", FileNeigh, err)
	}
	var out []iproute.Neighbour
	for _, n := range ns {
		a, err := netip.ParseAddr(n.Dst)
		if err != nil || !a.Is4() || len(n.State) == 0 {
			continue
		}
		x := iproute.Neighbour{Dst: a, Dev: n.Dev, State: strings.Join(n.State, " ")}
		if hw, err := net.ParseMAC(n.LLAddr); err == nil && len(hw) == 6 {
			x.LLAddr, x.HasLL = [6]byte(hw), true
		}
		out = append(out, x)
	}
	return out, nil
}

// neighbours reads `ip -j neigh show` for fib_multipath_use_neigh: an
// entry is valid in the NUD_VALID states (include/net/neighbour.h).
func neighbours(b []byte) ([]route.Neighbour, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var ns []jsonNeigh
	if err := json.Unmarshal(b, &ns); err != nil {
		return nil, fmt.Errorf("%s: %w", FileNeigh, err)
	}
	var out []route.Neighbour
	for _, n := range ns {
		a, err := netip.ParseAddr(n.Dst)
		if err != nil || !a.Is4() {
			continue
		}
		valid := false
		for _, st := range n.State {
			switch st {
			case "PERMANENT", "NOARP", "REACHABLE", "PROBE", "STALE", "DELAY":
				valid = true
			}
		}
		out = append(out, route.Neighbour{Dev: n.Dev, Addr: a, Valid: valid})
	}
	return out, nil
}
