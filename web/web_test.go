package web

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		any  bool
		ok   bool
	}{
		{"127.0.0.1:8080", false, true}, {"[::1]:80", false, true}, {"localhost:1", false, true},
		{"0.0.0.0:8080", false, false}, {"10.1.2.3:80", false, false}, {":8080", false, false},
		{"0.0.0.0:8080", true, true}, {"127.0.0.1", false, false},
	} {
		if err := CheckAddr(c.addr, c.any); (err == nil) != c.ok {
			t.Errorf("%s any=%v: %v", c.addr, c.any, err)
		}
	}
}

// TestState: the counters, and a traced packet's picture once its
// events arrive.
func TestState(t *testing.T) {
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("filter", "-A FORWARD -p tcp -j ACCEPT"))
	if err != nil {
		t.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true}, conntrack.DefaultConfig(), 1)
	s := New(Source{Engine: e, Conntrack: func() string { return "" }})
	sp, meta, _ := packet.ParseSpec("tcp 10.0.0.2:1 > 192.168.1.2:80 syn iif eth0")
	p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
	p.Decode()
	tr := &datapath.Tracer{Record: true, PathAll: true}
	e.Receive(p, 1, tr)
	s.add(tr.Path)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/state", nil))
	var st State
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var fwd Counter
	for _, c := range st.Counters {
		if c.ID == "filter/FORWARD/1" {
			fwd = c
		}
	}
	if fwd.Packets != 1 || fwd.Text != "-p tcp -j ACCEPT" {
		t.Errorf("counter %+v", fwd)
	}
	if len(st.Packets) != 1 || !strings.Contains(st.Packets[0].SVG, `data-hook="FORWARD"`) || !strings.Contains(st.Packets[0].Summary, "forwarded out eth1") {
		t.Errorf("packets %+v", st.Packets)
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	if !strings.Contains(page, `data-id="filter/FORWARD/1"`) || !strings.Contains(page, "EventSource") || strings.Contains(page, "src=\"http") {
		t.Error("the page lacks its counters or script, or loads from elsewhere")
	}
}
