package conntrack

import (
	"sync"
	"time"

	"github.com/uswitch-lab/uswitch/packet"
)

// Conntrack helpers (net/netfilter/nf_conntrack_helper.c) and the
// per-entry state they keep (the nf_conn_help and nf_conn_seqadj
// extensions).
//
// A helper is bound to a new entry only by a CT template (-j CT --helper
// in the raw table, __nf_ct_try_assign_helper): nf_conntrack_helper=0,
// the default since 4.7, assigns none by port. An expected entry gets
// its expectation's helper instead (init_conntrack). The helper runs
// where the kernel runs it, in nf_confirm at the end of POSTROUTING and
// INPUT (before 5.x a separate hook at NF_IP_PRI_CONNTRACK_HELPER, 300,
// which is the same place: after SNAT, before confirm): Table.Help.

// Helper is a conntrack helper (struct nf_conntrack_helper) and its
// expectation policy (struct nf_conntrack_expect_policy, one class).
type Helper struct {
	Name  string
	Proto uint8
	// MaxExpected is the expectations one master may have at once (the
	// oldest is evicted for a new one); ExpectTimeout how long one waits.
	MaxExpected   int
	ExpectTimeout time.Duration
	// help looks at one packet of a helped entry (helper->help).
	help func(t *Table, p *packet.Packet, c *Conn, info CtInfo, now int64) Verdict
}

// The helpers uswitch implements; nf_conntrack_ftp.c and
// nf_conntrack_tftp.c register each with max_expected 1 and a five-minute
// expectation timeout.
var (
	FTP  = &Helper{Name: "ftp", Proto: packet.ProtoTCP, MaxExpected: 1, ExpectTimeout: 5 * time.Minute, help: ftpHelp}
	TFTP = &Helper{Name: "tftp", Proto: packet.ProtoUDP, MaxExpected: 1, ExpectTimeout: 5 * time.Minute, help: tftpHelp}
)

// LookupHelper is __nf_conntrack_helper_find for the helpers uswitch
// implements: nil when there is none of that name for proto.
func LookupHelper(name string, proto uint8) *Helper {
	for _, h := range []*Helper{FTP, TFTP} {
		if h.Name == name && h.Proto == proto {
			return h
		}
	}
	return nil
}

// connExt is what a helped or expected entry carries beyond struct
// nf_conn's core: the helper, the master, the helper's private data and
// the sequence adjustment. It is allocated only for such entries and set
// before the entry is confirmed.
type connExt struct {
	helper *Helper
	master *Conn
	// expecting counts the entry's live expectations (guarded by the
	// table's expectation lock)
	expecting int
	// follow is the expectation the entry was created for when NAT must
	// set its bindings up (exp->expectfn = nf_nat_follow_master); the
	// datapath takes it once (TakeExpectation)
	follow *Expect

	// helpMu serialises the helper's own state (nf_ftp_lock)
	helpMu sync.Mutex
	ftp    ftpMaster
	// mu guards seqadj (ct->lock in nf_ct_seqadj_set)
	mu     sync.Mutex
	seqadj [2]seqAdj
}

// HelperOf returns the entry's helper (nil: none).
func (c *Conn) HelperOf() *Helper {
	if c.ext == nil {
		return nil
	}
	return c.ext.helper
}

// HelperName is the name of the entry's helper ("" = none).
func (c *Conn) HelperName() string {
	if h := c.HelperOf(); h != nil {
		return h.Name
	}
	return ""
}

// Master is the entry an expected entry was expected by (ct->master).
func (c *Conn) Master() *Conn {
	if c.ext == nil {
		return nil
	}
	return c.ext.master
}

// Helped reports whether the entry's packets must pass the helper stage
// (a helper, or a sequence adjustment): the flow cache does not memoize
// such flows. An expected entry without a helper (an FTP or TFTP data
// connection) is not helped: its master and state do not change.
func (c *Conn) Helped() bool {
	return c.ext != nil && (c.ext.helper != nil || c.Status()&StatusSeqAdjust != 0)
}

// SetHelper binds h to an unconfirmed entry (a CT template's helper,
// __nf_ct_try_assign_helper). It does nothing once confirmed.
func (c *Conn) SetHelper(h *Helper) {
	if c.Confirmed() || h == nil {
		return
	}
	if c.ext == nil {
		c.ext = &connExt{}
	}
	c.ext.helper = h
}

// TakeExpectation returns, once, the expectation whose NAT the new
// expected entry must follow (nf_nat_follow_master), or nil.
func (c *Conn) TakeExpectation() *Expect {
	if c.ext == nil || c.ext.follow == nil {
		return nil
	}
	e := c.ext.follow
	c.ext.follow = nil
	return e
}

// NATHelper mangles the payloads of NATed helped connections: the nat
// package's nf_nat_ftp and nf_nat_tftp (nf_nat_ftp_hook,
// nf_nat_tftp_hook). The table calls it only for an entry whose status
// has a NAT bit; it must register the expectation itself
// (ExpectRelated) and return the packet's verdict. matchOff is the
// numbers' offset in the TCP payload, as the kernel passes it.
type NATHelper interface {
	NATFTP(t *Table, p *packet.Packet, c *Conn, info CtInfo, typ FTPType, matchOff, matchLen int, e *Expect, now int64) Verdict
	NATTFTP(t *Table, p *packet.Packet, c *Conn, info CtInfo, e *Expect, now int64) Verdict
}

// SetNATHelper installs the NAT side of the helpers (nil: none, as
// without nf_nat_ftp loaded). Call it before packets flow.
func (t *Table) SetNATHelper(n NATHelper) { t.natHelper = n }

// Help is what nf_confirm does before confirming: the entry's helper
// looks at the packet, then a connection with a sequence adjustment
// gets its packet's seq/ack rewritten (nf_ct_seq_adjust). Not for
// RELATED_REPLY (ICMP errors: helpers do not expect them). A drop is
// DropHelper.
func (t *Table) Help(p *packet.Packet, r Ref, now int64) Verdict {
	c := r.Conn
	if c == nil || c.ext == nil || r.Info == CtRelatedReply || !p.HasL4 {
		return Accept
	}
	if h := c.ext.helper; h != nil && p.Proto == h.Proto {
		if v := h.help(t, p, c, r.Info, now); v != Accept {
			t.stats.drop.Add(1)
			return v
		}
	}
	if c.Status()&StatusSeqAdjust != 0 && p.Proto == packet.ProtoTCP {
		if !seqAdjust(p, c, r.Info) {
			t.stats.drop.Add(1)
			return DropHelper
		}
	}
	return Accept
}
