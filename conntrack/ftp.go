package conntrack

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// The FTP helper (net/netfilter/nf_conntrack_ftp.c, loose=0, IPv4): on
// the control connection it finds PORT and EPRT commands (original
// direction) and 227 (PASV) and 229 (EPSV) replies, each only at the
// start of a packet that begins right after a line end it saw, and
// expects the data connection they announce.

// FTPType is the kind of command found (enum nf_ct_ftp_type).
type FTPType uint8

// FTP command kinds.
const (
	FTPPort FTPType = iota // PORT a,b,c,d,p1,p2
	FTPPasv                // 227 reply: a,b,c,d,p1,p2
	FTPEprt                // EPRT |1|a.b.c.d|port|
	FTPEpsv                // 229 reply: (|||port|)
)

// ftpMaster is struct nf_ct_ftp_master: per direction, the sequence
// numbers just after the last two line ends seen (NUM_SEQ_TO_REMEMBER).
type ftpMaster struct {
	seqAftNL    [2][2]uint32
	seqAftNLNum [2]uint8
}

// ftpSearch is the search table of nf_conntrack_ftp.c.
type ftpSearch struct {
	pattern    string
	skip, term byte
	typ        FTPType
}

var ftpSearches = [2][2]ftpSearch{
	Original: {{"PORT", ' ', '\r', FTPPort}, {"EPRT", ' ', '\r', FTPEprt}},
	Reply:    {{"227 ", 0, 0, FTPPasv}, {"229 ", '(', ')', FTPEpsv}},
}

// FTPCommand is what ParseFTP found: the address and port (the address
// is the one passed in for EPSV, which names none), where the numbers
// are in the payload and how long they are.
type FTPCommand struct {
	Type     FTPType
	Addr     uint32
	Port     uint16
	MatchOff int
	MatchLen int
}

// ParseFTP looks for the commands of direction dir at the start of
// payload (the loop of help over find_pattern). addr is the address an
// EPSV reply implies (the sender's). It returns 1 and the command on a
// match, 0 when there is none, -1 for a partial or malformed one (the
// kernel drops such a packet).
func ParseFTP(payload []byte, dir Dir, addr uint32) (int, FTPCommand) {
	for _, s := range &ftpSearches[dir&1] {
		cmd := FTPCommand{Type: s.typ, Addr: addr}
		if r := ftpFindPattern(payload, &s, &cmd); r != 0 {
			return r, cmd
		}
	}
	return 0, FTPCommand{}
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold is strncasecmp(data, pattern, n) == 0 over n bytes of
// both (pattern has no NUL, so a NUL in data is a mismatch).
func hasPrefixFold(data []byte, pattern string, n int) bool {
	for i := 0; i < n; i++ {
		if lowerASCII(data[i]) != lowerASCII(pattern[i]) {
			return false
		}
	}
	return true
}

// ftpFindPattern is find_pattern.
func ftpFindPattern(data []byte, s *ftpSearch, cmd *FTPCommand) int {
	dlen, plen := len(data), len(s.pattern)
	if dlen <= plen {
		// short packet: a partial match is worth a drop
		if hasPrefixFold(data, s.pattern, dlen) {
			return -1
		}
		return 0
	}
	if !hasPrefixFold(data, s.pattern, plen) {
		return 0
	}
	i := plen
	if s.skip != 0 {
		for ; data[i] != s.skip; i++ {
			if i == dlen-1 {
				return -1
			}
		}
		i++ // skip over the skip character
	}
	cmd.MatchOff = i
	var n int
	switch s.typ {
	case FTPPort:
		n = ftpRFC959(data[i:], s.term, cmd)
	case FTPPasv:
		n = ftpRFC1123(data[i:], s.term, cmd)
	case FTPEprt:
		n = ftpEPRT(data[i:], cmd)
	case FTPEpsv:
		n = ftpEPSV(data[i:], cmd)
	}
	if n == 0 {
		return -1
	}
	cmd.MatchLen = n
	return 1
}

// ftpNumbers is try_number: n numbers separated by sep and ended by
// term (0: any other character); the length up to the terminator, or 0.
// The numbers wrap as the kernel's u32 do.
func ftpNumbers(data []byte, arr []uint32, sep, term byte) int {
	for k := range arr {
		arr[k] = 0
	}
	i := 0
	for l := 0; l < len(data) && i < len(arr); l++ {
		c := data[l]
		switch {
		case c >= '0' && c <= '9':
			arr[i] = arr[i]*10 + uint32(c-'0')
		case c == sep:
			i++
		default:
			if (c == term || term == 0) && i == len(arr)-1 {
				return l
			}
			return 0
		}
	}
	return 0
}

// ftpRFC959 is try_rfc959: a,b,c,d,p1,p2.
func ftpRFC959(data []byte, term byte, cmd *FTPCommand) int {
	var a [6]uint32
	n := ftpNumbers(data, a[:], ',', term)
	if n == 0 {
		return 0
	}
	cmd.Addr = a[0]<<24 | a[1]<<16 | a[2]<<8 | a[3]
	cmd.Port = uint16(a[4]<<8 | a[5])
	return n
}

// ftpRFC1123 is try_rfc1123: the 227 reply's numbers start at its first
// digit (RFC 1123 4.1.2.6: the parentheses are optional).
func ftpRFC1123(data []byte, term byte, cmd *FTPCommand) int {
	i := 0
	for i < len(data) && !(data[i] >= '0' && data[i] <= '9') {
		i++
	}
	if i == len(data) {
		return 0
	}
	cmd.MatchOff += i
	return ftpRFC959(data[i:], 0, cmd)
}

// ftpGetPort is get_port: a nonzero decimal number from start up to
// delim; the index after delim, or 0.
func ftpGetPort(data []byte, start int, delim byte, port *uint16) int {
	var p uint16
	for i := start; i < len(data); i++ {
		c := data[i]
		switch {
		case c == delim:
			if p == 0 {
				return 0
			}
			*port = p
			return i + 1
		case c >= '0' && c <= '9':
			p = p*10 + uint16(c-'0')
		default:
			return 0
		}
	}
	return 0
}

// ftpDelimOK is the delimiter test of try_eprt and try_epsv_response:
// printable, not a digit (the kernel's char is signed: bytes over 126
// fail as below 33).
func ftpDelimOK(d byte) bool { return !(d >= '0' && d <= '9') && d >= 33 && d <= 126 }

// ftpEPRT is try_eprt for IPv4: |1|a.b.c.d|port|.
func ftpEPRT(data []byte, cmd *FTPCommand) int {
	if len(data) <= 3 {
		return 0
	}
	d := data[0]
	if !ftpDelimOK(d) || data[2] != d || data[1] != '1' {
		return 0
	}
	var a [4]uint32
	n := ftpNumbers(data[3:], a[:], '.', d)
	if n == 0 {
		return 0
	}
	cmd.Addr = a[0]<<24 | a[1]<<16 | a[2]<<8 | a[3]
	return ftpGetPort(data, 3+n+1, d, &cmd.Port)
}

// ftpEPSV is try_epsv_response: |||port|.
func ftpEPSV(data []byte, cmd *FTPCommand) int {
	if len(data) <= 3 {
		return 0
	}
	d := data[0]
	if !ftpDelimOK(d) || data[1] != d || data[2] != d {
		return 0
	}
	return ftpGetPort(data, 3, d, &cmd.Port)
}

// ftpPayload returns the TCP payload of p and its sequence number (nil
// when there is none).
func ftpPayload(p *packet.Packet) ([]byte, uint32) {
	h := p.L4
	if len(h) < 20 {
		return nil, 0
	}
	off := int(h[12]>>4) * 4
	if off >= len(h) {
		return nil, 0
	}
	return h[off:], binary.BigEndian.Uint32(h[4:])
}

// ftpHelp is help() of nf_conntrack_ftp.c.
func ftpHelp(t *Table, p *packet.Packet, c *Conn, info CtInfo, now int64) Verdict {
	// until there has been traffic both ways, do not look in packets
	if info != CtEstablished && info != CtEstablishedReply {
		return Accept
	}
	data, seq0 := ftpPayload(p)
	if len(data) == 0 {
		return Accept
	}
	dir := info.Dir()
	x := c.ext
	x.helpMu.Lock()
	defer x.helpMu.Unlock()
	endsNL := data[len(data)-1] == '\n'
	seq := seq0 + uint32(len(data))
	v := Accept
	if x.ftp.findNLSeq(seq0, dir) {
		found, cmd := ParseFTP(data, dir, c.Tuple(dir).Src)
		if found == -1 {
			return DropHelper // "partial matching of ...": no line-end update
		}
		if found == 1 {
			v = ftpExpect(t, p, c, info, cmd, now)
		}
	}
	// the line end is recorded whatever the verdict (out_update_nl)
	if endsNL {
		x.ftp.updateNLSeq(seq, dir)
	}
	return v
}

// ftpExpect expects the data connection cmd announces (the end of
// help): from the other side to this side's address as the other side
// sees it, any source port.
func ftpExpect(t *Table, p *packet.Packet, c *Conn, info CtInfo, cmd FTPCommand, now int64) Verdict {
	dir := info.Dir()
	if cmd.Addr != c.Tuple(dir).Src {
		// another address than the sender's: not recorded (loose=0)
		return Accept
	}
	other := c.Tuple(dir ^ 1)
	e := &Expect{
		Tuple:   Tuple{Src: other.Src, Dst: other.Dst, DstPort: cmd.Port, Proto: packet.ProtoTCP, Zone: c.Zone()},
		SrcMask: ^uint32(0),
		Master:  c,
	}
	if n := t.natHelper; n != nil && c.Status()&StatusNATMask != 0 {
		// the NAT side mangles the payload and registers e itself
		return n.NATFTP(t, p, c, info, cmd.Type, cmd.MatchOff, cmd.MatchLen, e, now)
	}
	if err := t.ExpectRelated(e, now); err != nil {
		return DropHelper // "cannot add expectation"
	}
	return Accept
}

// findNLSeq is find_nl_seq.
func (f *ftpMaster) findNLSeq(seq uint32, dir Dir) bool {
	for i := 0; i < int(f.seqAftNLNum[dir]); i++ {
		if f.seqAftNL[dir][i] == seq {
			return true
		}
	}
	return false
}

// updateNLSeq is update_nl_seq: remember seq, replacing the older of two
// when it is newer.
func (f *ftpMaster) updateNLSeq(seq uint32, dir Dir) {
	n := int(f.seqAftNLNum[dir])
	for i := 0; i < n; i++ {
		if f.seqAftNL[dir][i] == seq {
			return
		}
	}
	if n < len(f.seqAftNL[dir]) {
		f.seqAftNL[dir][n] = seq
		f.seqAftNLNum[dir]++
		return
	}
	oldest := 1
	if before(f.seqAftNL[dir][0], f.seqAftNL[dir][1]) {
		oldest = 0
	}
	if after(seq, f.seqAftNL[dir][oldest]) {
		f.seqAftNL[dir][oldest] = seq
	}
}
