package control

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/trace"
)

// The kernel log and NFLOG groups of a running instance (the engine's
// datapath.KernelLog):
//
//	{"cmd":"log"}                 what the ring holds, one answer (dmesg)
//	{"cmd":"log","follow":true}   the ring, then new lines as a stream (dmesg -w)
//	{"cmd":"nflog","group":N}     a pcap stream of group N's records
//	                              (tcpdump -i nflog:N -w -)

// KernelLogSource is a Handler whose engine keeps a kernel log. Engine
// and the lab are.
type KernelLogSource interface {
	KernelLog() *datapath.KernelLog
}

// KernelLog is the engine's kernel log (nil: none).
func (e *Engine) KernelLog() *datapath.KernelLog { return e.Eng.KernelLog() }

// NFLogSnaplen is the snapshot length of an nflog capture's file
// header: libpcap's MAXIMUM_SNAPLEN, which tcpdump -i nflog:N writes.
const NFLogSnaplen = 262144

// AppendLogLine appends a kernel log line as dmesg prints it: the
// timestamp ("[%5lu.%06lu] ", seconds since the instance started, where
// the kernel counts from boot) unless noTime (dmesg -t), the line, a
// newline.
func AppendLogLine(b []byte, e datapath.LogEntry, noTime bool) []byte {
	if !noTime {
		sec, usec := e.Time/1e9, e.Time%1e9/1e3
		s := strconv.FormatInt(sec, 10)
		b = append(b, '[')
		for i := len(s); i < 5; i++ {
			b = append(b, ' ')
		}
		b = append(b, s...)
		b = append(b, '.')
		u := strconv.FormatInt(usec, 10)
		for i := len(u); i < 6; i++ {
			b = append(b, '0')
		}
		b = append(b, u...)
		b = append(b, "] "...)
	}
	b = append(b, e.Line...)
	return append(b, '\n')
}

func (e *Engine) logCmd(req Request) Response {
	kl := e.Eng.KernelLog()
	if kl == nil {
		return Response{Code: 1, Stderr: "uswitch: this instance keeps no kernel log\n"}
	}
	if req.Follow {
		return Response{Code: 2, Stderr: "uswitch: log -f streams only over the control socket\n"}
	}
	var b []byte
	for _, l := range kl.Lines() {
		b = AppendLogLine(b, l, req.NoTime)
	}
	return Response{Stdout: string(b)}
}

// kernelLog finds the handler's kernel log, or answers why there is
// none.
func (c *Server) kernelLog(enc *json.Encoder, h Handler) *datapath.KernelLog {
	src, ok := h.(KernelLogSource)
	var kl *datapath.KernelLog
	if ok {
		kl = src.KernelLog()
	}
	if kl == nil {
		enc.Encode(Response{Code: 1, Stderr: "uswitch: this instance keeps no kernel log\n"})
	}
	return kl
}

// streamLog answers log -f: a Response with Stream set, the lines the
// ring holds, then each new line, until the client goes or the server
// closes.
func (c *Server) streamLog(conn net.Conn, enc *json.Encoder, req Request, h Handler) {
	kl := c.kernelLog(enc, h)
	if kl == nil {
		return
	}
	old, lines, cancel := kl.Subscribe(EventQueue)
	defer cancel()
	var w *bufio.Writer
	var buf []byte
	stream(c, conn, enc, lines, func(bw *bufio.Writer) error {
		w = bw
		for _, l := range old {
			buf = AppendLogLine(buf[:0], l, req.NoTime)
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}, func(l datapath.LogEntry) (bool, error) {
		buf = AppendLogLine(buf[:0], l, req.NoTime)
		_, err := w.Write(buf)
		return false, err
	})
}

// streamNFLog answers nflog: a Response with Stream set, then a pcap
// file of link type NFLOG (239) with a record per packet the group's
// NFLOG rules log from now on, until the client goes, Count records
// were sent or the server closes.
func (c *Server) streamNFLog(conn net.Conn, enc *json.Encoder, req Request, h Handler) {
	if req.Group < 0 || req.Group > 0xffff {
		// libpcap's netfilter_activate
		enc.Encode(Response{Code: 1, Stderr: fmt.Sprintf("uswitch: nflog: Netfilter group range from 0 to 65535 (got %d)\n", req.Group)})
		return
	}
	kl := c.kernelLog(enc, h)
	if kl == nil {
		return
	}
	recs, cancel := kl.SubscribeNFLog(uint16(req.Group), EventQueue)
	defer cancel()
	var pw *pcapgo.Writer
	n := 0
	stream(c, conn, enc, recs, func(bw *bufio.Writer) error {
		pw = pcapgo.NewWriter(bw)
		return pw.WriteFileHeader(NFLogSnaplen, layers.LinkType(trace.LinkTypeNFLOG))
	}, func(r datapath.NFLogEntry) (bool, error) {
		n++
		ci := gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(r.Record), Length: len(r.Record)}
		return req.Count > 0 && n >= req.Count, pw.WritePacket(ci, r.Record)
	})
}
