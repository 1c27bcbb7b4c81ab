package faulthost

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestSysctlDevConf: net.ipv4.conf.{all,DEV}.KNOB rebuilds the engine's
// FIB with the knob and swaps it in, returning the old value; a
// route_localnet flip decides whether a 127.0.0.1 source may leave by
// eth1; unknown devices, "default" and other knobs are refused.
func TestSysctlDevConf(t *testing.T) {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(datapath.Config{FIB: fib, IPForward: true}, conntrack.DefaultConfig(), 1)
	h := &Host{Eng: e}
	send := func() datapath.Fate {
		sp, m, err := packet.ParseSpec("udp 127.0.0.1:5000 > 192.168.1.9:53 local")
		if err != nil {
			t.Fatal(err)
		}
		p := &packet.Packet{Data: packet.Build(sp), Meta: m}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		p.HasSocket = true
		return e.Send(p, 1e9, nil)
	}
	if f := send(); f.Kind == datapath.Sent {
		t.Fatalf("a 127.0.0.1 source left by eth1 with route_localnet off: %v", f)
	}
	old, err := h.Sysctl("net.ipv4.conf.all.route_localnet", "1")
	if err != nil || old != "0" || !e.Config().FIB.Config().All.RouteLocalnet {
		t.Fatalf("all.route_localnet=1: old %q, %v", old, err)
	}
	if f := send(); f.Kind != datapath.Sent {
		t.Errorf("with route_localnet on: %v", f)
	}
	if old, err := h.Sysctl("net.ipv4.conf.all.route_localnet", "0"); err != nil || old != "1" {
		t.Fatalf("all.route_localnet=0: old %q, %v", old, err)
	}
	if old, err := h.Sysctl("net.ipv4.conf.eth1.rp_filter", "2"); err != nil || old != "0" || e.Config().FIB.Config().Dev["eth1"].RPFilter != 2 {
		t.Errorf("eth1.rp_filter=2: old %q, %v", old, err)
	}
	for _, x := range []struct{ k, v, want string }{
		{"net.ipv4.conf.eth9.rp_filter", "1", `no device "eth9"`},
		{"net.ipv4.conf.default.rp_filter", "1", "conf.default changes only devices made later"},
		{"net.ipv4.conf.all.arp_ignore", "1", "not a knob uswitch follows"},
		{"net.ipv4.conf.all.rp_filter", "3", "want 0, 1 or 2"},
	} {
		if _, err := h.Sysctl(x.k, x.v); err == nil || !strings.Contains(err.Error(), x.want) {
			t.Errorf("%s=%s: %v, want %q", x.k, x.v, err, x.want)
		}
	}
}
