package nfqueue

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
	"golang.org/x/sys/unix"
)

// DefaultOffloadMark is the connmark bit of offloaded connections when
// Options.OffloadMark is 0.
const DefaultOffloadMark = 0x40000000

// offloadState is the server's offload bookkeeping (Options.Offload).
type offloadState struct {
	mark uint32
	// rules are the kernel rules Start installed (iptables argument
	// lists, "-I" form); Close deletes them.
	rules [][]string

	mu      sync.Mutex
	blocker struct {
		rs *iptables.Ruleset
		b  blockers
	}
	// queued counts the connections kept queued, by reason; failed the
	// installs the kernel refused, by errno name
	queued, failed map[string]uint64
	offloaded      uint64
}

// offloadRules are the kernel rules that accept the packets of
// offloaded connections before the queue rule: mangle PREROUTING and
// OUTPUT (the queue rule goes in those chains, after the kernel's
// conntrack has looked the packet up). Setting the nat table's
// policies makes the table's base chains, which registers the kernel's
// NAT hooks in the namespace (nf_nat_register_fn): without them the
// bindings of the offloaded entries would rewrite nothing.
func offloadRules(mark uint32) [][]string {
	m := fmt.Sprintf("0x%x/0x%x", mark, mark)
	return [][]string{
		{"-t", "mangle", "-I", "PREROUTING", "1", "-m", "connmark", "--mark", m, "-j", "ACCEPT"},
		{"-t", "mangle", "-I", "OUTPUT", "1", "-m", "connmark", "--mark", m, "-j", "ACCEPT"},
	}
}

var natPolicies = [][]string{
	{"-t", "nat", "-P", "PREROUTING", "ACCEPT"},
	{"-t", "nat", "-P", "INPUT", "ACCEPT"},
	{"-t", "nat", "-P", "OUTPUT", "ACCEPT"},
	{"-t", "nat", "-P", "POSTROUTING", "ACCEPT"},
}

// runIptables runs iptables -w ARGS in the named namespace ("" = ours).
func runIptables(netns string, args ...string) error {
	argv := append([]string{"iptables", "-w"}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startOffload installs the kernel rules; on an error nothing stays
// installed.
func (s *Server) startOffload() error {
	o := &offloadState{mark: s.opts.OffloadMark, queued: map[string]uint64{}, failed: map[string]uint64{}}
	if o.mark == 0 {
		o.mark = DefaultOffloadMark
	}
	s.off = o
	if s.opts.NoOffloadRules {
		return nil
	}
	for _, a := range natPolicies {
		if err := runIptables(s.opts.NetNS, a...); err != nil {
			return fmt.Errorf("nfqueue: offload: %w", err)
		}
	}
	for _, a := range offloadRules(o.mark) {
		if err := runIptables(s.opts.NetNS, a...); err != nil {
			s.stopOffload()
			return fmt.Errorf("nfqueue: offload: %w", err)
		}
		o.rules = append(o.rules, a)
	}
	return nil
}

// stopOffload deletes the rules startOffload installed.
func (s *Server) stopOffload() {
	if s.off == nil {
		return
	}
	for _, a := range s.off.rules {
		d := append([]string(nil), a...)
		for i := range d {
			if d[i] == "-I" {
				d[i] = "-D"
				// -D CHAIN RULE: drop the position
				d = append(d[:i+2], d[i+3:]...)
				break
			}
		}
		if err := runIptables(s.opts.NetNS, d...); err != nil {
			s.opts.Logf("nfqueue: offload: %v", err)
		}
	}
	s.off.rules = nil
}

// offloadBlock is why the engine's current rule set keeps TCP and UDP
// connections queued, cached per rule set.
func (s *Server) offloadBlock() blockers {
	rs := s.eng.Config().Rules
	o := s.off
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.blocker.rs != rs || rs == nil {
		o.blocker.rs = rs
		o.blocker.b = offloadBlockers(rs)
	}
	return o.blocker.b
}

// ctSocket opens the queue's ctnetlink socket in the namespace.
func ctSocket(netns string) (int, error) {
	fd := -1
	err := inNetNS(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// offloadRound hands the round's candidate flows (r.cands) that the
// rule set lets go, as ctnetlink messages, to the queue's installer,
// after their verdicts went.
func (s *Server) offloadRound(q *queue, r *rounds) {
	if len(r.cands) == 0 {
		return
	}
	o := s.off
	var b blockers
	fault := q.vf != nil
	if !fault {
		b = s.offloadBlock()
	}
	// the flows the rule set (or a fault) keeps queued leave the list
	k := 0
	var queued [2]uint64 // by blockers' index, counted at first packets
	for i := range r.cands {
		f := &r.cands[i]
		reason := b.of(f.Orig.Proto)
		if fault || reason != "" {
			if f.First {
				if f.Orig.Proto == 17 {
					queued[1]++
				} else {
					queued[0]++
				}
			}
			continue
		}
		if f.Install && f.Orig.Proto == 17 {
			// the kernel will accept the flow's later packets both ways
			// by its connmark: only if uswitch's rules accept them too,
			// its replies and its datagrams once established (a TCP
			// connection is installed after its handshake, whose reply
			// and last ACK went through uswitch)
			fate := datapath.Fate{Kind: f.kind, OutIf: f.outIf}
			ok, where := s.eng.ProbeReply(f.conn, f.Orig, fate, s.Now())
			if ok {
				ok, where = s.eng.ProbeOriginal(f.conn, f.Orig, fate, f.inIf, s.Now())
			}
			if !ok {
				if f.First {
					o.mu.Lock()
					o.queued[where]++
					o.mu.Unlock()
				}
				continue
			}
		}
		r.cands[k] = *f
		k++
	}
	if k < len(r.cands) {
		o.mu.Lock()
		for i, n := range queued {
			if n == 0 {
				continue
			}
			reason := b.reason[i]
			if fault {
				reason = "fault:nfqueue:verdict"
			}
			o.queued[reason] += n
		}
		o.mu.Unlock()
	}
	r.cands = r.cands[:k]
	if s.killed.Load() || q.ctfd < 0 || k == 0 {
		r.cands = r.cands[:0]
		return
	}
	var j *installJob
	select {
	case j = <-q.ifree:
	case <-s.done:
		r.cands = r.cands[:0]
		return
	}
	m := &j.m
	m.reset()
	j.n = 0 // one IPCTNL_MSG_CT_NEW (create or update) a flow
	for i := range r.cands {
		if r.cands[i].Install {
			m.install(&r.cands[i], o.mark, int32(i))
			j.n++
		}
	}
	r.cands = r.cands[:0]
	if j.n == 0 {
		q.ifree <- j
		return
	}
	// the installer writes them while this goroutine decides the next
	// round (after this round's verdicts: the order the kernel needs)
	select {
	case q.inst <- j:
	case <-s.done:
	}
}

// installJob is one round's ctnetlink messages for the installer; n
// is the flows they install.
type installJob struct {
	m ctMsg
	n int
}

// installJobs is how many rounds' messages a queue's installer can
// have waiting (and in hand): the deciding goroutine waits for a free
// one beyond.
const installJobs = 4

// installer writes the rounds' ctnetlink messages to q.ctfd (one
// write a round), then reads the errors the kernel queued for the
// failed ones (it handles the messages inside the write, so they are
// there when it returns) and counts the installs. It runs beside the
// deciding goroutine, a stage of the pipeline: the kernel's work for
// the installs (deleting the entry the verdict confirmed, making the
// one with the binding) then overlaps the next round's decisions and
// verdicts.
func (s *Server) installer(ctx context.Context, q *queue) {
	defer s.wg.Done()
	var errs []ctError
	ebuf := make([]byte, 64<<10)
	for {
		var j *installJob
		select {
		case j = <-q.inst:
		case <-ctx.Done():
			return
		}
		if !s.killed.Load() {
			errs = s.install(q, j, errs, ebuf)
		}
		q.ifree <- j
	}
}

// install writes j's messages and counts the result.
func (s *Server) install(q *queue, j *installJob, errs []ctError, ebuf []byte) []ctError {
	o := s.off
	nNew := j.n
	_, werr := unix.Write(q.ctfd, j.m.b)
	var failed map[string]uint64
	if werr != nil {
		failed = map[string]uint64{"write:" + errnoName(werr): uint64(nNew)}
		s.opts.Logf("nfqueue: queue %d: offload: %v", q.num, werr)
	} else {
		errs = errs[:0]
		for {
			n, err := recvDontWait(q.ctfd, ebuf)
			if err != nil || n <= 0 {
				break
			}
			errs, _ = parseCtErrors(ebuf[:n], errs)
		}
		for _, e := range errs {
			// a refused delete (the entry went meanwhile) is no failure:
			// the create that follows decides
			if e.Errno == 0 || e.Type&0xff == ipctnlMsgCtDelete {
				continue
			}
			if failed == nil {
				failed = map[string]uint64{}
			}
			failed["ctnetlink:"+errnoName(syscall.Errno(e.Errno))]++
		}
	}
	var nf uint64
	for _, v := range failed {
		nf += v
	}
	o.mu.Lock()
	o.offloaded += uint64(nNew) - min(nf, uint64(nNew))
	if nf > 0 && o.failed != nil {
		s.opts.Logf("nfqueue: queue %d: offload: the kernel refused %d of %d flows: %v", q.num, nf, nNew, failed)
	}
	for k, v := range failed {
		o.failed[k] += v
		o.queued[k] += v
	}
	o.mu.Unlock()
	return errs
}

// recvDontWait is recv(2) with MSG_DONTWAIT into b: unix.Recvfrom
// would allocate the sender's address every call.
func recvDontWait(fd int, b []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}

// OffloadStats are the offload's counters (Options.Offload).
type OffloadStats struct {
	// Offloaded counts the connections installed in the kernel's
	// conntrack with the offload mark: their later packets pass the
	// kernel without the queue.
	Offloaded uint64
	// Queued counts the connections kept queued, by reason: a rule set
	// rule ("match:statistic", "target:LOG"), a verdict fault
	// ("fault:nfqueue:verdict"), or the kernel refusing the entry
	// ("ctnetlink:EEXIST").
	Queued map[string]uint64
	// Blocker is where the rule set's first per-packet rule a TCP or
	// UDP flow can reach is ("" = none).
	Blocker string
	Mark    uint32
}

// OffloadStats returns the offload counters (zero when offload is off).
func (s *Server) OffloadStats() OffloadStats {
	o := s.off
	if o == nil {
		return OffloadStats{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	st := OffloadStats{Offloaded: o.offloaded, Queued: map[string]uint64{}, Mark: o.mark}
	for k, v := range o.queued {
		st.Queued[k] = v
	}
	b := &o.blocker.b
	for i, p := range []string{"TCP", "UDP"} {
		if b.reason[i] != "" {
			if st.Blocker != "" {
				st.Blocker += "; "
			}
			st.Blocker += p + ": " + b.reason[i] + " at " + b.where[i]
		}
	}
	return st
}

// reasons are m's keys in order.
func reasons(m map[string]uint64) []string {
	k := make([]string, 0, len(m))
	for r := range m {
		k = append(k, r)
	}
	sort.Strings(k)
	return k
}
