package packet

import "testing"

func TestARPRoundTrip(t *testing.T) {
	m := ARP{Op: ARPReply, SHA: MAC{2, 0, 0, 0, 0, 1}, SPA: MustAddr("10.0.0.1"), THA: MAC{2, 0, 0, 0, 0, 2}, TPA: MustAddr("10.0.0.2")}
	b := m.Bytes()
	if len(b) != ARPLen {
		t.Fatalf("len %d", len(b))
	}
	got, ok := ParseARP(b)
	if !ok || got != m {
		t.Fatalf("ParseARP(Bytes()) = %+v %v, want %+v", got, ok, m)
	}
}

// TestParseARPRejects: arp_rcv drops what is not IPv4 over Ethernet,
// a short message, and operations other than request and reply.
func TestParseARPRejects(t *testing.T) {
	good := ARP{Op: ARPRequest, SPA: 1, TPA: 2}.Bytes()
	for name, mend := range map[string]func([]byte) []byte{
		"short":     func(b []byte) []byte { return b[:ARPLen-1] },
		"hardware":  func(b []byte) []byte { b[1] = 7; return b },
		"protocol":  func(b []byte) []byte { b[2] = 0x86; b[3] = 0xdd; return b },
		"hlen":      func(b []byte) []byte { b[4] = 8; return b },
		"plen":      func(b []byte) []byte { b[5] = 16; return b },
		"operation": func(b []byte) []byte { b[7] = 3; return b },
	} {
		b := mend(append([]byte(nil), good...))
		if _, ok := ParseARP(b); ok {
			t.Errorf("%s: accepted % x", name, b)
		}
	}
	ieee := append([]byte(nil), good...)
	ieee[1] = 6 // ARPHRD_IEEE802 is accepted as Ethernet
	if _, ok := ParseARP(ieee); !ok {
		t.Error("IEEE 802 hardware type rejected")
	}
}

func FuzzParseARP(f *testing.F) {
	f.Add(ARP{Op: ARPRequest, SPA: 1, TPA: 2}.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, ok := ParseARP(b); ok {
			if got, _ := ParseARP(m.Bytes()); got != m {
				t.Fatalf("round trip %+v -> %+v", m, got)
			}
		}
	})
}
