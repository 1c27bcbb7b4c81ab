// Package capturetest builds small pcap and pcapng byte strings, whole,
// truncated or lying about their lengths, for the capture tests.
package capturetest

import (
	"encoding/binary"

	"github.com/google/gopacket/layers"
)

var le = binary.LittleEndian

// PcapHeader is a little-endian classic pcap file header of raw IP.
func PcapHeader(snaplen uint32) []byte {
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint32(b, snaplen)
	return le.AppendUint32(b, uint32(layers.LinkTypeRaw))
}

// PcapRecord is a classic pcap record claiming caplen bytes, holding data.
func PcapRecord(caplen uint32, data []byte) []byte {
	b := le.AppendUint32(nil, 1700000000)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, caplen)
	b = le.AppendUint32(b, caplen)
	return append(b, data...)
}

// NgBlock is a little-endian pcapng block of type typ around body
// (padded), claiming total as its length when it is not 0.
func NgBlock(typ uint32, body []byte, total uint32) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	if total == 0 {
		total = n
	}
	b := le.AppendUint32(nil, typ)
	b = le.AppendUint32(b, total)
	b = append(b, body...)
	return le.AppendUint32(b, total)
}

// NgStart is a pcapng section header and one raw IP interface "eth0".
func NgStart() []byte {
	shb := le.AppendUint32(nil, 0x1a2b3c4d)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0))
	idb := le.AppendUint16(nil, uint16(layers.LinkTypeRaw))
	idb = le.AppendUint16(idb, 0)
	idb = le.AppendUint32(idb, 0)
	idb = le.AppendUint16(idb, 2) // if_name
	idb = le.AppendUint16(idb, 4)
	idb = append(idb, "eth0"...)
	idb = le.AppendUint32(idb, 0) // end of options
	return append(NgBlock(0x0a0d0d0a, shb, 0), NgBlock(1, idb, 0)...)
}

// NgEPB is an enhanced packet block on interface 0 claiming caplen.
func NgEPB(caplen uint32, data []byte) []byte {
	b := le.AppendUint32(nil, 0)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint32(b, caplen)
	b = le.AppendUint32(b, caplen)
	return NgBlock(6, append(b, data...), 0)
}
