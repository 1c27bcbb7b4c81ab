package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// fateOut prints a replay's FATE lines ("FATE: ID TEXT"), or with
// stats counts them by their text instead. Lines are built in a
// reused buffer: printing a fate allocates nothing.
type fateOut struct {
	out   *bufio.Writer
	stats *replayStats // nil: lines
	line  []byte
	pcap  *pcapOut // nil: no --write-pcap
}

// fate prints (or counts) the FATE line of packet id with text.
func (o *fateOut) fate(id, text []byte) {
	if o.stats != nil {
		o.stats.fate(text)
		return
	}
	b := append(o.line[:0], "FATE: "...)
	b = append(b, id...)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, '\n')
	o.out.Write(b)
	o.line = b
}

// fatef is fate with the text formatted (the rare fates).
func (o *fateOut) fatef(id []byte, format string, args ...any) {
	o.fate(id, fmt.Appendf(nil, format, args...))
}

// other prints a line that is not a FATE line (HELD, EXPIRED, FAULT);
// with stats it is counted under kind.
func (o *fateOut) other(kind, format string, args ...any) {
	if o.stats != nil {
		o.stats.other[kind]++
		return
	}
	fmt.Fprintf(o.out, format, args...)
}

// replayStats is --stats: how many packets met each fate (by the
// text their FATE line would have), how many each output device got,
// and the packets and bytes each rule matched during the replay.
type replayStats struct {
	packets int
	fates   map[string]int
	other   map[string]int
	devs    map[string]int
	// few and fewDevs hold the first texts and devices seen, with
	// their counts; more and devs the others, more by pointer so that
	// counting a known text needs only a lookup (m[string(b)] does not
	// allocate; m[string(b)]++ does)
	few, fewDevs []count
	more         map[string]*int
	// before are the rules' and policies' counters before the replay
	// (a snapshot may carry counters)
	rules  *iptables.Ruleset
	before map[any]iptables.Counters
}

func newReplayStats(rs *iptables.Ruleset) *replayStats {
	s := &replayStats{fates: map[string]int{}, more: map[string]*int{}, other: map[string]int{}, devs: map[string]int{}, rules: rs, before: map[any]iptables.Counters{}}
	if rs != nil {
		for _, t := range rs.Tables {
			if t == nil {
				continue
			}
			for _, c := range t.Chains {
				s.before[c] = c.LiveCounters()
				for _, r := range c.Rules {
					s.before[r] = r.LiveCounters()
				}
			}
		}
	}
	return s
}

// fate counts a fate by its text. The few texts a capture has most are
// counted in a short list (a comparison or two, no hashing); the rest,
// once it is full, in the map.
func (s *replayStats) fate(text []byte) {
	for i := range s.few {
		if s.few[i].k == string(text) {
			s.few[i].n++
			return
		}
	}
	if len(s.few) < 16 {
		s.few = append(s.few, count{string(text), 1})
		return
	}
	if n := s.more[string(text)]; n != nil { // a lookup: no allocation
		*n++
		return
	}
	s.more[string(text)] = &[]int{1}[0]
}

// count is a text and how often it was seen.
type count struct {
	k string
	n int
}

// kindCounter counts the lines written to it under kind (--stats: the
// FAULT lines of the faults' decisions, which are written, not made
// through fateOut).
type kindCounter struct {
	m    map[string]int
	kind string
}

func (c kindCounter) Write(p []byte) (int, error) {
	c.m[c.kind] += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// device counts a packet out of dev ("local": delivered), in a short
// list first as fate does.
func (s *replayStats) device(dev string) {
	for i := range s.fewDevs {
		if s.fewDevs[i].k == dev {
			s.fewDevs[i].n++
			return
		}
	}
	if len(s.fewDevs) < 16 {
		s.fewDevs = append(s.fewDevs, count{dev, 1})
		return
	}
	s.devs[dev]++
}

// write prints the summary: each section sorted by count, then by
// name; rules in iptables-save order.
func (s *replayStats) write(w io.Writer) {
	type kv struct {
		k string
		n int
	}
	sorted := func(m map[string]int) []kv {
		var l []kv
		for k, n := range m {
			l = append(l, kv{k, n})
		}
		slices.SortFunc(l, func(a, b kv) int {
			if c := cmp.Compare(b.n, a.n); c != 0 {
				return c
			}
			return cmp.Compare(a.k, b.k)
		})
		return l
	}
	for _, c := range s.few {
		s.fates[c.k] += c.n
	}
	for k, n := range s.more {
		s.fates[k] += *n
	}
	for _, c := range s.fewDevs {
		s.devs[c.k] += c.n
	}
	s.few, s.fewDevs, s.more = nil, nil, map[string]*int{}
	fmt.Fprintf(w, "STATS: %d packets\n", s.packets)
	fmt.Fprintf(w, "FATES: (packets, the fate as its FATE line says it)\n")
	for _, e := range sorted(s.fates) {
		fmt.Fprintf(w, "%12d  %s\n", e.n, e.k)
	}
	if len(s.other) > 0 {
		fmt.Fprintf(w, "OTHER: (lines)\n")
		for _, e := range sorted(s.other) {
			fmt.Fprintf(w, "%12d  %s\n", e.n, e.k)
		}
	}
	fmt.Fprintf(w, "DEVICES: (packets out of each device, answers too; local: delivered)\n")
	for _, e := range sorted(s.devs) {
		fmt.Fprintf(w, "%12d  %s\n", e.n, e.k)
	}
	fmt.Fprintf(w, "RULES: (packets and bytes each rule or policy matched, in iptables-save order)\n")
	if s.rules == nil {
		return
	}
	for _, t := range s.rules.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			if c.Builtin {
				if d := sub(c.LiveCounters(), s.before[c]); d.Packets > 0 {
					fmt.Fprintf(w, "%12d %14d  -t %s -P %s %s\n", d.Packets, d.Bytes, t.ID, c.Name, policyName(c.Policy))
				}
			}
			for _, r := range c.Rules {
				if d := sub(r.LiveCounters(), s.before[r]); d.Packets > 0 {
					fmt.Fprintf(w, "%12d %14d  -t %s -A %s%s\n", d.Packets, d.Bytes, t.ID, c.Name, iptables.RuleString(r))
				}
			}
		}
	}
}

func sub(a, b iptables.Counters) iptables.Counters {
	return iptables.Counters{Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes}
}

func policyName(v iptables.Verdict) string {
	if v == iptables.VerdictDrop {
		return "DROP"
	}
	return "ACCEPT"
}

// pcapOut is --write-pcap: a pcapng of the packets uswitch sends, one
// interface per output device (and link type) in the order they are
// first used, "local" for what is delivered to the host. IP packets
// are LINKTYPE_IPV4 (228), not LINKTYPE_RAW (101): libpcap 1.10
// refuses a pcapng whose second raw interface's 101 differs from the
// first's, which it has turned into DLT_RAW (12).
type pcapOut struct {
	f   *os.File
	bw  *bufio.Writer
	w   *pcapgo.NgWriter
	ifs map[pcapIface]int
	err error
}

type pcapIface struct {
	name string
	lt   layers.LinkType
}

func createPcapOut(name string) (*pcapOut, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	return &pcapOut{f: f, bw: bufio.NewWriterSize(f, 256<<10), ifs: map[pcapIface]int{}}, nil
}

// write adds one packet sent out of dev at ts (Unix ns); the first
// error sticks and is reported by close.
func (o *pcapOut) write(dev string, lt layers.LinkType, ts int64, data []byte) {
	if o.err != nil {
		return
	}
	k := pcapIface{dev, lt}
	id, ok := o.ifs[k]
	if !ok {
		ifc := pcapgo.NgInterface{Name: dev, LinkType: lt, SnapLength: 0}
		if o.w == nil {
			o.w, o.err = pcapgo.NewNgWriterInterface(o.bw, ifc, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "uswitch trace"}})
		} else {
			id, o.err = o.w.AddInterface(ifc)
		}
		if o.err != nil {
			return
		}
		o.ifs[k] = id
	}
	o.err = o.w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(data), Length: len(data), InterfaceIndex: id}, data)
}

// fate writes what a fate sent: its frames (a bridge device), its
// fragments, the reassembled datagram or the packet itself, out of its
// device; a delivered packet to "local".
func (o *pcapOut) fate(f *datapath.Fate, p *packet.Packet, ts int64) {
	q := p
	if f.Datagram != nil {
		q = f.Datagram
	}
	switch f.Kind {
	case datapath.Delivered:
		o.write("local", layers.LinkTypeIPv4, ts, q.Data)
	case datapath.Forwarded, datapath.Sent:
		switch {
		case len(f.Frames) > 0:
			for _, fr := range f.Frames {
				o.write(fr.Port, layers.LinkTypeEthernet, ts, fr.Data)
			}
		case len(f.Frags) > 0:
			for _, fr := range f.Frags {
				o.write(f.OutIf, layers.LinkTypeIPv4, ts, fr)
			}
		default:
			o.write(f.OutIf, layers.LinkTypeIPv4, ts, q.Data)
		}
	}
}

func (o *pcapOut) close() error {
	if o.err == nil && o.w == nil {
		// nothing was sent: a valid capture with the local interface
		o.w, o.err = pcapgo.NewNgWriterInterface(o.bw, pcapgo.NgInterface{Name: "local", LinkType: layers.LinkTypeIPv4}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "uswitch trace"}})
	}
	if o.err == nil {
		o.err = o.w.Flush()
	}
	if o.err == nil {
		o.err = o.bw.Flush()
	}
	if err := o.f.Close(); o.err == nil {
		o.err = err
	}
	if o.err != nil {
		return fmt.Errorf("--write-pcap %s: %v", o.f.Name(), o.err)
	}
	return nil
}

// appendID appends packet number i (and .j for an answer, j > 0).
func appendID(b []byte, i, j int) []byte {
	b = strconv.AppendInt(b, int64(i), 10)
	if j > 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(j), 10)
	}
	return b
}
