package tracetest

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	idRE     = regexp.MustCompile(`ID=\d+ `)
	traceRE  = regexp.MustCompile(`^(PACKET: [27] | TRACE: [27] )([0-9a-f]{8}) `)
	handleRE = regexp.MustCompile(`:rule:0x[0-9a-f]+:`)
)

// Normalize rewrites one packet's lines so that kernel and uswitch lines
// compare: each trace id becomes its order of first appearance in the
// packet's lines (#1 the packet, #2 its first answer, ...), rule handles
// are dropped, and the IP ID of packets the host generated itself (trace
// ids after the first) is dropped.
func Normalize(lines []string) []string {
	ids := map[string]int{}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		m := traceRE.FindStringSubmatchIndex(l)
		if m != nil {
			id := l[m[4]:m[5]]
			n, ok := ids[id]
			if !ok {
				n = len(ids) + 1
				ids[id] = n
			}
			l = l[:m[4]] + fmt.Sprintf("#%d", n) + l[m[5]:]
			if n > 1 && strings.HasPrefix(l, "PACKET: 2") {
				l = idRE.ReplaceAllString(l, "ID=* ")
			}
			if n > 1 && strings.HasPrefix(l, "PACKET: 7") {
				l = maskNHID(l)
			}
		}
		l = handleRE.ReplaceAllString(l, ":rule:")
		out = append(out, l)
	}
	return out
}

var nhRE = regexp.MustCompile(`NH=([0-9a-f]+) `)

// maskNHID blanks the IP ID and header checksum inside a bridge-family
// PACKET line's NH= bytes (xtables-monitor prints each byte of 0x80 or
// more as ffffffXX): the IDs of packets the host made are the kernel's
// choice.
func maskNHID(l string) string {
	return nhRE.ReplaceAllStringFunc(l, func(m string) string {
		h := m[3 : len(m)-1]
		var bs []string
		for len(h) >= 2 {
			if strings.HasPrefix(h, "ffffff") && len(h) >= 8 {
				bs, h = append(bs, h[6:8]), h[8:]
				continue
			}
			bs, h = append(bs, h[:2]), h[2:]
		}
		for _, i := range []int{4, 5, 10, 11} {
			if i < len(bs) {
				bs[i] = "**"
			}
		}
		return "NH=" + strings.Join(bs, "") + " "
	})
}

// Diff compares two line lists and returns a unified-style difference
// ("" when equal).
func Diff(kernel, uswitch []string) string {
	if equal(kernel, uswitch) {
		return ""
	}
	// longest common subsequence, fine for a packet's few lines
	n, m := len(kernel), len(uswitch)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if kernel[i] == uswitch[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && kernel[i] == uswitch[j]:
			b.WriteString("   " + kernel[i] + "\n")
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			b.WriteString(" u " + uswitch[j] + "\n")
			j++
		default:
			b.WriteString(" k " + kernel[i] + "\n")
			i++
		}
	}
	return b.String()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Sorted returns a sorted copy (egress packets of one packet may leave in
// any order).
func Sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// Mismatch is one packet on which kernel and uswitch disagree.
type Mismatch struct {
	Index  int // 0-based packet index
	Packet Packet
	Diff   string
	// PortOnly: the lines differ only in TCP/UDP port numbers.
	PortOnly bool
	// CloneIDOnly: a bridged frame's lines differ only in which trace
	// ids repeat. The kernel's trace id hashes the sk_buff's address;
	// whether a clone freed in a hook lends its slab slot (and so its
	// id) to the next clone depends on the allocator's per-CPU caches,
	// which a run cannot reproduce.
	CloneIDOnly bool
}

var traceNumRE = regexp.MustCompile(` #\d+ `)

func maskTraceNums(l []string) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = traceNumRE.ReplaceAllString(x, " #* ")
	}
	return out
}

var portRE = regexp.MustCompile(`(SPORT|DPORT)=\d+ `)

func maskPorts(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = portRE.ReplaceAllString(s, "$1=* ")
	}
	return out
}

func (m Mismatch) String() string {
	return fmt.Sprintf("packet %d (%v):\n%s", m.Index+1, m.Packet, m.Diff)
}

var optRE = regexp.MustCompile(`OPT \(([0-9A-F]+)\)`)

// maskTimestamps masks the times an IP timestamp option holds in the
// lines' OPT (...) fields: the router writes the milliseconds since
// midnight UTC when it handles the packet (inet_current_timestamp), which
// the kernel and uswitch cannot share. Only the time words before the
// option's pointer are masked; the pointer, flags, overflow count and
// recorded addresses still compare.
func maskTimestamps(lines []string) []string {
	out := make([]string, len(lines))
	for n, l := range lines {
		m := optRE.FindStringSubmatchIndex(l)
		if m == nil {
			out[n] = l
			continue
		}
		hex := l[m[2]:m[3]]
		// each byte's text: "XX", or "FFFFFFXX" for 0x80 and above
		// (trace.PacketLine)
		var bs []byte
		var pos []int
		for i := 0; i+2 <= len(hex); {
			w := 2
			if strings.HasPrefix(hex[i:], "FFFFFF") && i+8 <= len(hex) && hex[i+6] >= '8' {
				w = 8
			}
			v, _ := strconv.ParseUint(hex[i+w-2:i+w], 16, 8)
			bs, pos = append(bs, byte(v)), append(pos, i)
			i += w
		}
		mask := make([]bool, len(bs))
		for i := 0; i < len(bs); {
			if bs[i] == 0 {
				break
			}
			if bs[i] == 1 || i+1 >= len(bs) || bs[i+1] < 2 {
				i++
				continue
			}
			ln := int(bs[i+1])
			if bs[i] == 68 && ln >= 4 && i+ln <= len(bs) {
				ptr, flag := int(bs[i+2]), bs[i+3]&0xf
				step, first := 4, 4
				if flag == 1 || flag == 3 {
					step, first = 8, 8
				}
				for w := first; w+4 <= ln && w+4 <= ptr-1; w += step {
					for j := 0; j < 4; j++ {
						mask[i+w+j] = true
					}
				}
			}
			i += ln
		}
		var b strings.Builder
		for i := range bs {
			end := len(hex)
			if i+1 < len(pos) {
				end = pos[i+1]
			}
			if mask[i] {
				b.WriteString("**")
			} else {
				b.WriteString(hex[pos[i]:end])
			}
		}
		out[n] = l[:m[2]] + b.String() + l[m[3]:]
	}
	return out
}

// Compare diffs the normalized trace lines and the egress packets of
// every packet.
func Compare(packets []Packet, k *Result, u *Run) []Mismatch {
	var out []Mismatch
	for i, p := range packets {
		kn, un := Normalize(k.Lines[i]), Normalize(u.Lines[i])
		if p.Delay > 0 {
			// timers fired before the packet: the packets they made
			// come first, so #1 need not be the injected packet; the
			// IDs are the kernel's choice everywhere
			for _, l := range [][]string{kn, un} {
				for j := range l {
					if strings.HasPrefix(l[j], "PACKET:") {
						l[j] = idRE.ReplaceAllString(l[j], "ID=* ")
					}
				}
			}
		}
		kl := maskTimestamps(append(kn, Sorted(k.Egress[i])...))
		ul := maskTimestamps(append(un, Sorted(u.Egress[i])...))
		if u.Errs[i] != "" {
			ul = append(ul, "ERROR "+u.Errs[i])
		}
		if d := Diff(kl, ul); d != "" {
			m := Mismatch{Index: i, Packet: p, Diff: d}
			// the kernel picks a NAT port at random when the tuple
			// clashes (nf_nat_l4proto_unique_tuple: get_random_u16
			// for SNAT); uswitch's seeded choice cannot match it
			m.PortOnly = equal(maskPorts(kl), maskPorts(ul))
			m.CloneIDOnly = p.Frame != nil && equal(maskTraceNums(kl), maskTraceNums(ul))
			out = append(out, m)
		}
	}
	return out
}
