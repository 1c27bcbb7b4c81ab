package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/packet"
)

// tracePacket is one packet to replay.
type tracePacket struct {
	data []byte
	l2   []byte
	meta packet.Meta
	ts   int64
}

func traceCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	snap := fs.String("snapshot", "", "host snapshot folder (see `uswitch snapshot`)")
	pcapFile := fs.String("pcap", "", "pcap or pcapng capture to replay")
	iif := fs.String("iif", "", "ingress interface of the packets of a plain pcap (\"local\" = sent by the host)")
	all := fs.Bool("trace-all", false, "trace every packet, not only those a -j TRACE rule marks")
	human := fs.String("packet", "", "one packet in human form, e.g. 'tcp 10.0.0.1:1234 > 10.96.0.10:80 syn iif eth0'")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *snap == "" || (*pcapFile == "") == (*human == "") {
		fmt.Fprintln(stderr, "uswitch trace: need --snapshot DIR and one of --pcap FILE or --packet SPEC")
		return 2
	}
	s, err := host.Load(*snap)
	if err != nil {
		fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
		return 1
	}
	var pkts []tracePacket
	if *human != "" {
		sp, meta, err := packet.ParseSpec(*human)
		if err != nil {
			fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
			return 2
		}
		pkts = append(pkts, tracePacket{data: packet.Build(sp), meta: meta})
	} else {
		if pkts, err = readCapture(*pcapFile, *iif); err != nil {
			fmt.Fprintf(stderr, "uswitch trace: %v\n", err)
			return 1
		}
	}
	e := datapath.New(s.EngineConfig(), s.ConntrackConfig(), 1)
	e.LVS = s.IPVS
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	for i, tp := range pkts {
		p := &packet.Packet{Data: tp.data, L2: tp.l2, Meta: tp.meta}
		if err := p.Decode(); err != nil {
			fmt.Fprintf(out, "FATE: %d dropped by ip_rcv: %v\n", i+1, err)
			continue
		}
		if p.Meta.InIf == "local" {
			p.Meta.InIf, p.Meta.Local = "", true
		}
		tr := &datapath.Tracer{All: *all}
		var f datapath.Fate
		if p.Local {
			f = e.Send(p, tp.ts, tr)
		} else {
			f = e.Receive(p, tp.ts, tr)
		}
		for _, l := range tr.Lines {
			fmt.Fprintln(out, l)
		}
		fmt.Fprintf(out, "FATE: %d %s\n", i+1, f)
		for j, a := range f.Answers {
			fmt.Fprintf(out, "FATE: %d.%d answer %s\n", i+1, j+1, a.Fate)
		}
	}
	return 0
}

// readCapture reads a pcap or pcapng file. In pcapng the interface name
// of each packet is its ingress ("local" = sent by the host); a plain
// pcap takes iif for every packet.
func readCapture(file, iif string) ([]tracePacket, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	var out []tracePacket
	add := func(n int, data []byte, lt layers.LinkType, name string, ts int64) error {
		tp := tracePacket{meta: packet.Meta{InIf: name}, ts: ts}
		switch lt {
		case layers.LinkTypeEthernet:
			if len(data) < 14 {
				return fmt.Errorf("%s: packet %d: %d bytes, shorter than an Ethernet header", file, n, len(data))
			}
			if et := uint16(data[12])<<8 | uint16(data[13]); et != 0x0800 {
				return nil // not IPv4: skipped
			}
			tp.l2, tp.data = append([]byte(nil), data[:14]...), append([]byte(nil), data[14:]...)
		case layers.LinkTypeRaw, layers.LinkTypeIPv4:
			tp.data = append([]byte(nil), data...)
		case layers.LinkTypeLinuxSLL:
			if len(data) < 16 {
				return fmt.Errorf("%s: packet %d: short Linux cooked header", file, n)
			}
			tp.data = append([]byte(nil), data[16:]...)
		default:
			return fmt.Errorf("%s: link type %v is not supported (Ethernet, raw IP and Linux cooked are)", file, lt)
		}
		if tp.meta.InIf == "" {
			return fmt.Errorf("%s: packet %d has no ingress interface: give --iif", file, n)
		}
		out = append(out, tp)
		return nil
	}
	// the link type and ingress name of a packet
	var info func(ci gopacket.CaptureInfo) (layers.LinkType, string, error)
	var rd interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	if magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		rd = r
		info = func(ci gopacket.CaptureInfo) (layers.LinkType, string, error) {
			ifc, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				return 0, "", err
			}
			if iif != "" {
				return ifc.LinkType, iif, nil
			}
			return ifc.LinkType, ifc.Name, nil
		}
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		rd = r
		info = func(gopacket.CaptureInfo) (layers.LinkType, string, error) { return r.LinkType(), iif, nil }
	}
	for n := 1; ; n++ {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %v", file, n, err)
		}
		lt, name, err := info(ci)
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %v", file, n, err)
		}
		if err := add(n, data, lt, name, ci.Timestamp.UnixNano()); err != nil {
			return nil, err
		}
	}
	return out, nil
}
