package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/gopacket/layers"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/atomicfile"
	"github.com/uswitch-lab/uswitch/internal/capture"
	"github.com/uswitch-lab/uswitch/ipfrag"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/picture"
)

// tracePacket is one packet to replay.
type tracePacket struct {
	data []byte
	l2   []byte
	meta packet.Meta
	ts   int64
}

func traceCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) (rc int) {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	snap := fs.String("snapshot", "", "host snapshot folder (see `uswitch snapshot`)")
	pcapFile := fs.String("pcap", "", "pcap or pcapng capture to replay, read and traced packet by packet: a record cut short or longer than the snapshot length (or 262144 bytes) is an error naming the packet, exit 1, after the packets before it")
	iif := fs.String("iif", "", "ingress interface of the packets of a plain pcap (\"local\" = sent by the host)")
	all := fs.Bool("trace-all", false, "trace every packet, not only those a -j TRACE rule marks")
	format := fs.String("format", "monitor", "trace lines: \"monitor\" (xtables-monitor --trace, iptables-nft) or \"log\" (the kernel log: LOG rules' lines, iptables-legacy TRACE lines)")
	human := fs.String("packet", "", "one packet in human form, e.g. 'tcp 10.0.0.1:1234 > 10.96.0.10:80 syn iif eth0'")
	faultsFile := fs.String("faults", "", "fault file ([experiment] and [[fault]] tables): each fault's decision per packet is printed as a FAULT line, with the capture's timestamps as the clock")
	faultSeed := fs.Uint64("seed", 0, "the faults' seed (default: the fault file's [experiment] seed, else 1)")
	svgDir := fs.String("svg", "", "write one SVG per traced packet into this folder (packet-N.svg): the netfilter flow picture with the packet's path and its answers drawn on it")
	htmlFile := fs.String("html", "", "write one self-contained HTML page with the pictures of every traced packet")
	stats := fs.Bool("stats", false, "print a summary instead of the per-packet lines: packets per fate (as the FATE lines say it), per output device (local: delivered) and per rule (packets and bytes each rule and policy matched, with the rule's text)")
	pcapOutFile := fs.String("write-pcap", "", "write the packets uswitch sends (forwarded, sent, answers; delivered ones on interface \"local\") into this pcapng, one interface per output device")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *snap == "" || (*pcapFile == "") == (*human == "") {
		fmt.Fprintln(stderr, "uswitch trace: need --snapshot DIR and one of --pcap FILE or --packet SPEC")
		return 2
	}
	var tfmt datapath.TraceFormat
	switch *format {
	case "monitor":
		tfmt = datapath.FormatMonitor
	case "log":
		tfmt = datapath.FormatLog
	default:
		fmt.Fprintf(stderr, "uswitch trace: --format %q: want monitor or log\n", *format)
		return 2
	}
	s, err := host.Load(*snap)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
		return 1
	}
	ecfg := s.EngineConfig()
	var tf *traceFaults
	out := bufio.NewWriterSize(stdout, 256<<10)
	defer out.Flush()
	lines := out // the per-packet lines; with --stats, counted instead
	var rstats *replayStats
	if *stats {
		rstats = newReplayStats(ecfg.Rules)
		lines = bufio.NewWriterSize(kindCounter{rstats.other, "FAULT"}, 4096)
	}
	if *faultsFile != "" {
		set, err := fault.LoadFile(*faultsFile, *faultSeed, 1)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
			return 1
		}
		fmt.Fprintf(out, "FAULTS: %d, seed %d\n", len(set.Faults), set.Seed)
		tf = newTraceFaults(set, lines)
		ecfg.Faults = tf.stages()
		ecfg.BridgeFaults = tf.bridgeStages()
	}
	e := datapath.New(ecfg, s.ConntrackConfig(), 1)
	if tf != nil {
		tf.set.BindState(e.CT, e.NAT)
		tf.set.BindHost(&faulthost.Host{Eng: e})
	}
	e.LVS = s.IPVS
	pics := &tracePictures{svgDir: *svgDir, html: *htmlFile}
	if err := pics.check(); err != nil {
		fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
		return 2
	}
	defer func() {
		// also after a capture's bad record: the packets before it
		if pics.on() && (rc == 0 || len(pics.pks) > 0) {
			if err := pics.write(e.Layout(), *snap); err != nil {
				fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
				rc = 1
			}
		}
	}()
	// nothing else but a trace can need a tracer: without one the
	// engine runs as it does live (the flow cache replays established
	// flows) and the fates are the same (datapath.Engine.Traces)
	useTracer := *all || pics.on() || (!*stats && e.Traces(tfmt))
	fo := &fateOut{out: lines, stats: rstats}
	if rstats != nil {
		defer func() {
			if rc == 0 || rstats.packets > 0 {
				lines.Flush() // the FAULT lines counted
				rstats.write(out)
			}
		}()
	}
	if *pcapOutFile != "" {
		po, err := createPcapOut(*pcapOutFile)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch trace: --write-pcap: %v\n", err)
			return 1
		}
		fo.pcap = po
		defer func() {
			if err := po.close(); err != nil && rc == 0 {
				fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
				rc = 1
			}
		}()
	}
	// sent counts (--stats) and writes (--write-pcap) what a fate sent
	sent := func(f *datapath.Fate, p *packet.Packet, ts int64) {
		if fo.stats != nil {
			switch f.Kind {
			case datapath.Delivered:
				fo.stats.device("local")
			case datapath.Forwarded, datapath.Sent:
				fo.stats.device(f.OutIf)
			}
		}
		if fo.pcap != nil {
			fo.pcap.fate(f, p, ts)
		}
	}
	traced := 0
	var expire func(int64)
	var (
		tr     *datapath.Tracer
		pk     packet.Packet // reused: the engine keeps nothing of it
		id     []byte
		text   []byte
		pdrain = func(tr *datapath.Tracer) {
			if fo.stats != nil {
				return // --stats: no trace lines
			}
			for _, l := range tr.Lines {
				lines.WriteString(l)
				lines.WriteByte('\n')
			}
		}
	)
	// ifIndex is the ingress device's index, as link gives it the
	// engine (which checks it against the name): the few names of a
	// capture are looked up once, not in a map per packet
	type ifEntry struct {
		name string
		idx  int
	}
	var ifCache []ifEntry
	ifIndex := func(name string) int {
		for _, c := range ifCache {
			if c.name == name {
				return c.idx
			}
		}
		if ecfg.FIB == nil {
			return 0
		}
		idx := ecfg.FIB.Ifindex(name)
		if len(ifCache) < 16 {
			ifCache = append(ifCache, ifEntry{name, idx})
		}
		return idx
	}
	newTracer := func() *datapath.Tracer {
		if !useTracer {
			return nil
		}
		tr = &datapath.Tracer{All: *all, Format: tfmt, Record: pics.on()}
		return tr
	}
	trace := func(tp tracePacket) {
		traced++
		i := traced
		if fo.stats != nil {
			fo.stats.packets++
		}
		id = appendID(id[:0], i, 0)
		// reassembly timers due by this packet's time (ip_expire)
		expire(tp.ts)
		if tp.l2 != nil && e.BridgeOf(tp.meta.InIf) != "" {
			// a frame on a bridge port: the bridge level first
			tr := &datapath.Tracer{All: *all, Record: pics.on()}
			defer pics.add(i, tr)
			ff := e.ReceiveFrame(append(append([]byte(nil), tp.l2...), tp.data...), tp.meta.InIf, tp.ts, tr)
			pdrain(tr)
			fo.fatef(id, "%s", ff)
			for _, o := range ff.Out {
				if fo.stats != nil {
					fo.stats.device(o.Port)
				}
				if fo.pcap != nil {
					fo.pcap.write(o.Port, layers.LinkTypeEthernet, tp.ts, o.Data)
				}
			}
			if ff.Up != nil && ff.Up.Kind == datapath.Delivered {
				if fo.stats != nil {
					fo.stats.device("local")
				}
				// the delivered packet's bytes are not kept by a FrameFate
			}
			return
		}
		pk = packet.Packet{Data: tp.data, L2: tp.l2, Meta: tp.meta}
		p := &pk
		p.InIndex = ifIndex(p.InIf)
		p.Seq = uint64(i)
		if err := p.Decode(); err != nil {
			fo.fatef(id, "dropped by ip_rcv: %v", err)
			return
		}
		if p.Meta.InIf == "local" {
			p.Meta.InIf, p.Meta.Local = "", true
		}
		if tf != nil {
			tf.start(i, tp.ts)
			if !p.Local {
				if fl := tf.wire(p, p.InIf, false, tp.ts); fl != nil {
					fo.fatef(id, "dropped by fault: %s (%s)", fl.Name, fl.At)
					return
				}
			}
		}
		tr := newTracer()
		if tr != nil {
			defer pics.add(i, tr)
		}
		var f datapath.Fate
		if p.Local {
			f = e.Send(p, tp.ts, tr)
		} else {
			f = e.Receive(p, tp.ts, tr)
		}
		if tr != nil {
			pdrain(tr)
		}
		if f.Kind == datapath.Held {
			// one FATE line per datagram: a fragment that waits
			// for the others gets a HELD line instead
			fo.other("HELD", "HELD: %d fragment of %s, waiting for its datagram\n", i, fragDesc(p))
			return
		}
		faulted := false
		if tf != nil && (f.Kind == datapath.Forwarded || f.Kind == datapath.Sent) {
			// the wire's egress faults see what the device is given:
			// the packet (or datagram), or each of its fragments
			if len(f.Frags) == 0 {
				q := p
				if f.Datagram != nil {
					q = f.Datagram
				}
				if fl := tf.wire(q, f.OutIf, true, tp.ts); fl != nil {
					fo.fatef(id, "%s, then dropped by fault: %s (%s)%s", f, fl.Name, fl.At, reassembled(f.Reassembled))
					faulted = true
				}
			} else {
				for k, fr := range f.Frags {
					q := &packet.Packet{Data: fr}
					if q.Decode() != nil {
						continue
					}
					if fl := tf.wire(q, f.OutIf, true, tp.ts); fl != nil {
						fo.other("FAULT", "FAULT: %d fragment %d dropped by fault: %s (%s)\n", i, k+1, fl.Name, fl.At)
					}
				}
			}
		}
		if !faulted {
			text = f.AppendText(text[:0])
			if len(f.Reassembled) > 0 {
				text = append(text, reassembled(f.Reassembled)...)
			}
			fo.fate(id, text)
			sent(&f, p, tp.ts)
		}
		for j, a := range f.Answers {
			id = appendID(id[:0], i, j+1)
			text = append(append(text[:0], "answer "...), a.Fate.String()...)
			fo.fate(id, text)
			if tf != nil && (a.Fate.Kind == datapath.Forwarded || a.Fate.Kind == datapath.Sent) && len(a.Fate.Frags) == 0 {
				if fl := tf.wire(a.Pkt, a.Fate.OutIf, true, tp.ts); fl != nil {
					fo.other("FAULT", "FAULT: %d.%d answer dropped by fault: %s (%s)\n", i, j+1, fl.Name, fl.At)
					continue
				}
			}
			sent(&a.Fate, a.Pkt, tp.ts)
		}
	}
	// expire reports the reassembly queues whose time ran out by now
	expire = func(now int64) {
		for _, x := range e.ExpireFragments(now, nil) {
			fo.other("EXPIRED", "EXPIRED: datagram %s, packets %s dropped: reassembly timed out (ipfrag_time)\n", keyDesc(x.Key), seqs(x.Frags))
			for j, a := range x.Answers {
				fo.fatef(fmt.Appendf(nil, "expired.%d", j+1), "answer %s", a.Fate)
				sent(&a.Fate, a.Pkt, now)
			}
		}
	}
	// pending reports what is still held when the input ends
	pending := func() {
		for _, x := range e.Frags.Pending() {
			fo.other("HELD at the end", "HELD: at the end, datagram %s never completed: packets %s\n", keyDesc(x.Key), seqs(x.Frags))
		}
	}
	if *human != "" {
		sp, meta, err := packet.ParseSpec(*human)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
			return 2
		}
		trace(tracePacket{data: packet.Build(sp), meta: meta})
		pending()
		return 0
	}
	// the capture is read and traced packet by packet; an error (a
	// truncated or oversized record) ends it after what was whole
	isPort := func(name string) bool { return e.BridgeOf(name) != "" }
	if err := readCapture(*pcapFile, *iif, isPort, trace); err != nil {
		pending()
		out.Flush()
		fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
		return 1
	}
	pending()
	return 0
}

// fragDesc describes a fragment: its datagram and where it lies in it.
func fragDesc(p *packet.Packet) string {
	ip := p.IP
	return fmt.Sprintf("%s > %s id %d proto %d, offset %d, %d bytes", packet.AddrOf(p.Src), packet.AddrOf(p.Dst), ip.ID(), p.Proto,
		int(ip.FragOffset())*8, len(ip)-ip.HeaderLen())
}

func keyDesc(k ipfrag.Key) string {
	return fmt.Sprintf("%s > %s id %d proto %d", packet.AddrOf(k.Src), packet.AddrOf(k.Dst), k.ID, k.Proto)
}

// seqs lists the packet numbers of fragments.
func seqs(fs []ipfrag.Frag) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, f.Seq)
	}
	return b.String()
}

// reassembled says which fragments a datagram was built from.
func reassembled(fs []ipfrag.Frag) string {
	if len(fs) == 0 {
		return ""
	}
	return " (datagram reassembled from packets " + seqs(fs) + ")"
}

// readCapture reads a pcap or pcapng file and calls trace on each of
// its IPv4 packets in turn. In pcapng the interface name of each packet
// is its ingress ("local" = sent by the host) unless iif is given; a
// plain pcap takes iif for every packet. An error names the file and the
// (1-based) number of the record it is about.
func readCapture(file, iif string, bridgePort func(string) bool, trace func(tracePacket)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	cr, err := capture.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	full, free, stop := readAhead(cr)
	defer stop()
	n := 0
	for bt := range full {
		for _, r := range bt.recs {
			n++
			// the packet's bytes are the batch's, until it is handed
			// back: trace runs (and may rewrite them) before that, and
			// the engine keeps no reference (reassembly copies)
			data := r.data
			name := r.iface
			if iif != "" {
				name = iif
			}
			tp := tracePacket{meta: packet.Meta{InIf: name}, ts: r.time}
			switch r.link {
			case layers.LinkTypeEthernet:
				if len(data) < 14 {
					return fmt.Errorf("%s: packet %d: %d bytes, shorter than an Ethernet header", file, n, len(data))
				}
				if et := uint16(data[12])<<8 | uint16(data[13]); et != 0x0800 && !bridgePort(name) {
					continue // not IPv4 and not on a bridge port: skipped
				}
				tp.l2, tp.data = data[:14:14], data[14:]
			case layers.LinkTypeRaw, layers.LinkTypeIPv4:
				tp.data = data
			case layers.LinkTypeLinuxSLL:
				if len(data) < 16 {
					return fmt.Errorf("%s: packet %d: short Linux cooked header", file, n)
				}
				tp.data = data[16:]
			default:
				return fmt.Errorf("%s: packet %d: link type %v is not supported (Ethernet, raw IP and Linux cooked are)", file, n, r.link)
			}
			if tp.meta.InIf == "" {
				return fmt.Errorf("%s: packet %d has no ingress interface: give --iif", file, n)
			}
			trace(tp)
		}
		if bt.err == io.EOF {
			return nil
		}
		if bt.err != nil {
			return fmt.Errorf("%s: packet %d: %v", file, n+1, bt.err)
		}
		select {
		case free <- bt:
		default:
		}
	}
	return nil
}

// readBatch is a run of a capture's records read ahead: their bytes
// one after the other in buf (read there by the capture reader, not
// copied), and what ended the capture after them (io.EOF: its clean
// end; nil: more follows).
type readBatch struct {
	buf  []byte
	recs []readRec
	err  error
}

type readRec struct {
	data  []byte // in buf (or an array buf outgrew), capacity cut
	link  layers.LinkType
	iface string
	time  int64
}

// readAheadRecs and readAheadBytes bound a batch; readAheadBatches
// bound the batches read ahead (the memory a capture costs: a few MB
// whatever its size).
const (
	readAheadRecs    = 256
	readAheadBytes   = 512 << 10
	readAheadBatches = 4
)

// readAhead reads the capture in a goroutine of its own, in batches
// handed over in order on full (closed after the batch with an error or
// the end), so reading and copying records overlap the engine; batches
// handed back on free are reused. stop ends the goroutine (idempotent:
// call it when the consumer stops early).
func readAhead(cr capture.Reader) (full <-chan *readBatch, free chan<- *readBatch, stop func()) {
	fullc := make(chan *readBatch, readAheadBatches)
	freec := make(chan *readBatch, readAheadBatches+2)
	done := make(chan struct{})
	go func() {
		defer close(fullc)
		for {
			select {
			case <-done:
				return
			default:
			}
			var bt *readBatch
			select {
			case bt = <-freec:
				bt.buf, bt.recs, bt.err = bt.buf[:0], bt.recs[:0], nil
			default:
				// room for the last record's pcapng block too
				bt = &readBatch{buf: make([]byte, 0, readAheadBytes+capture.MaxLen+64<<10), recs: make([]readRec, 0, readAheadRecs)}
			}
			for len(bt.recs) < readAheadRecs && len(bt.buf) < readAheadBytes {
				// the record is read straight into the batch
				cp, buf, err := cr.NextAppend(bt.buf)
				if err != nil {
					bt.err = err
					break
				}
				bt.buf = buf
				bt.recs = append(bt.recs, readRec{data: cp.Data[:len(cp.Data):len(cp.Data)], link: cp.Link, iface: cp.Iface, time: cp.Time})
			}
			select {
			case fullc <- bt:
			case <-done:
				return
			}
			if bt.err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return fullc, freec, func() {
		once.Do(func() {
			close(done)
			for range fullc { // wait for the goroutine's end
			}
		})
	}
}

// tracePictures collects the traced packets' paths for --svg and
// --html.
type tracePictures struct {
	svgDir, html string
	pks          []picture.Packet
}

func (tp *tracePictures) on() bool { return tp.svgDir != "" || tp.html != "" }

// check refuses what cannot be written before anything is traced.
func (tp *tracePictures) check() error {
	if tp.svgDir != "" {
		if err := os.MkdirAll(tp.svgDir, 0o755); err != nil {
			return fmt.Errorf("--svg: %v", err)
		}
	}
	return nil
}

// add keeps packet i's paths, if it was traced.
func (tp *tracePictures) add(i int, tr *datapath.Tracer) {
	if !tp.on() || len(tr.Path) == 0 {
		return
	}
	tp.pks = append(tp.pks, picture.Group(fmt.Sprintf("packet %d", i), tr.Path))
	tr.Path = nil
}

// write writes the pictures; each file is written whole through a
// temporary file and a rename.
func (tp *tracePictures) write(l datapath.Layout, snap string) error {
	if tp.svgDir != "" {
		for _, pk := range tp.pks {
			var b bytes.Buffer
			if err := picture.SVG(&b, l, pk, picture.Options{}); err != nil {
				return err
			}
			name := strings.ReplaceAll(pk.Title, " ", "-") + ".svg"
			if err := atomicfile.WritePerm(filepath.Join(tp.svgDir, name), b.Bytes(), 0o644); err != nil {
				return fmt.Errorf("--svg: %v", err)
			}
		}
	}
	if tp.html != "" {
		var b bytes.Buffer
		if err := picture.HTML(&b, l, "uswitch trace: "+snap, tp.pks); err != nil {
			return err
		}
		if err := atomicfile.WritePerm(tp.html, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--html: %v", err)
		}
	}
	return nil
}
