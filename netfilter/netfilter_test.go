package netfilter

import "testing"

// TestABI: the numbers are the kernel's (a hook or verdict read from
// netlink converts directly).
func TestABI(t *testing.T) {
	for _, c := range []struct {
		got, want int64
		name      string
	}{
		{int64(PreRouting), 0, "NF_INET_PRE_ROUTING"},
		{int64(LocalIn), 1, "NF_INET_LOCAL_IN"},
		{int64(Forward), 2, "NF_INET_FORWARD"},
		{int64(LocalOut), 3, "NF_INET_LOCAL_OUT"},
		{int64(PostRouting), 4, "NF_INET_POST_ROUTING"},
		{int64(Drop), 0, "NF_DROP"},
		{int64(Accept), 1, "NF_ACCEPT"},
		{int64(Stolen), 2, "NF_STOLEN"},
		{int64(Queue), 3, "NF_QUEUE"},
		{int64(Repeat), 4, "NF_REPEAT"},
		{int64(PriIPVSReply), 98, "ip_vs_ops4 LOCAL_IN out"},
		{int64(PriIPVSRemoteRequest), 99, "ip_vs_ops4 LOCAL_IN in"},
		{int64(PriIPVSLocalReply), -99, "ip_vs_ops4 LOCAL_OUT out"},
		{int64(PriIPVSLocalRequest), -98, "ip_vs_ops4 LOCAL_OUT in"},
		{int64(PriConntrackConfirm), 1<<31 - 1, "NF_IP_PRI_CONNTRACK_CONFIRM"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s := Forward.String(); s != "FORWARD" {
		t.Errorf("Forward.String() = %q", s)
	}
	if s := Hook(7).String(); s != "HOOK(7)" {
		t.Errorf("Hook(7).String() = %q", s)
	}
	m := Hooks(PreRouting, LocalOut)
	if m != 0b1001 || !m.Has(LocalOut) || m.Has(Forward) {
		t.Errorf("Hooks(PreRouting, LocalOut) = %b", m)
	}
}
