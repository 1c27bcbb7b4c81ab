package iptables

import (
	"strings"
	"testing"
)

// An entry that cannot be read is an error at its line when the file is
// read, not a set that silently never matches.
func TestParseIPSetSaveBadEntries(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"create a hash:ip family inet\nadd a 10.0.0.1\nadd a 10.0.0.300\n", "f:3: set a: bad entry 10.0.0.300"},
		{"create a hash:ip,port family inet\n\nadd a 10.0.0.1\n", "f:3: set a: entry 10.0.0.1 does not fit hash:ip,port"},
		{"create a hash:ip,port family inet\nadd a 10.0.0.1,tcp:99999\n", "f:2: set a: bad entry 10.0.0.1,tcp:99999"},
		{"create a hash:net family inet\nadd a 10.0.0.0/33\n", "f:2: set a: bad entry 10.0.0.0/33"},
		{"create a hash:ip,mark family inet\nadd a 10.0.0.1,0xzz\n", "f:2: set a: bad entry 10.0.0.1,0xzz"},
		{"create l list:set size 8\ncreate b hash:ip family inet\nadd l b\nadd l nosuch\n", "f:4: set l: list:set member nosuch unknown"},
		{"create a hash:ip,port family inet\nadd a 10.0.0.1,icmp:no-such-type\n", "f:2: set a: bad entry 10.0.0.1,icmp:no-such-type"},
	} {
		_, err := ParseIPSetSave(strings.NewReader(c.in), "f")
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
	// Kept as they are: an IPv6 set (no IPv4 rule can use it) and a type
	// uswitch does not match (it never matches; SetIndexError says why).
	sets, err := ParseIPSetSave(strings.NewReader(
		"create six hash:net family inet6 hashsize 1024\nadd six 2001:db8::/64 timeout 0\n"+
			"create ifs hash:net,iface family inet\nadd ifs 10.0.0.0/8,eth0\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	if e := sets["ifs"].SetIndexError(sets); !strings.Contains(e, "not supported") {
		t.Errorf("hash:net,iface: SetIndexError %q", e)
	}
}

// ipset save prints the ICMP types it knows by name.
func TestIPSetICMPNames(t *testing.T) {
	for _, c := range []struct {
		in    string
		port  uint16
		proto uint8
	}{
		{"icmp:echo-request", 8 << 8, 1},
		{"icmp:8/0", 8 << 8, 1},
		{"icmp:host-unreachable", 3<<8 | 1, 1},
		{"udp:53", 53, 17},
	} {
		port, proto, ok := parseSetPort(c.in)
		if !ok || port != c.port || proto != c.proto {
			t.Errorf("%s: %d/%d %v, want %d/%d", c.in, port, proto, ok, c.port, c.proto)
		}
	}
	if _, _, ok := parseSetPort("icmp:any"); ok {
		t.Error("icmp:any read as an ICMP type")
	}
}
