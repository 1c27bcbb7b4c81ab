package packet

import (
	"bytes"
	"testing"
)

// hdrWith is a 20-byte IPv4 header (10.0.1.2 > 10.0.2.2) followed by the
// options opts (padded with end-of-list to a multiple of four) and no
// payload.
func hdrWith(opts ...byte) IPv4 {
	for len(opts)%4 != 0 {
		opts = append(opts, OptEnd)
	}
	b := Build(Spec{Src: 0x0a000102, Dst: 0x0a000202, Proto: ProtoUDP, TTL: 64, SrcPort: 1, DstPort: 2})
	h := make([]byte, 0, len(b)+len(opts))
	h = append(h, b[:IPv4MinHeaderLen]...)
	h = append(h, opts...)
	h = append(h, b[IPv4MinHeaderLen:]...)
	h[0] = 0x40 | byte((IPv4MinHeaderLen+len(opts))/4)
	h[2], h[3] = byte(len(h)>>8), byte(len(h))
	IPv4(h).SetChecksum()
	return h
}

type fakeEnv struct {
	spec, now uint32
	local     map[uint32]bool
	specCalls int
}

func (e *fakeEnv) SpecDst() uint32           { e.specCalls++; return e.spec }
func (e *fakeEnv) Timestamp() uint32         { return e.now }
func (e *fakeEnv) AddrUnicast(a uint32) bool { return !e.local[a] }
func (e *fakeEnv) RouteSource(d uint32) uint32 {
	if d == 0x0a000303 {
		return 0x0a000301
	}
	return 0x0a000201
}

func TestCompileOptions(t *testing.T) {
	rr9 := []byte{OptRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}
	cases := []struct {
		name string
		opts []byte
		pp   int
		// want is the options after compiling (nil: unchanged)
		want []byte
		chk  func(t *testing.T, o *Options)
	}{
		{name: "nop-eol", opts: []byte{OptNoop, OptEnd, 7, 7}, pp: -1, want: []byte{OptNoop, OptEnd, 0, 0}},
		{name: "rr-len0", opts: []byte{OptRR, 0, 4, 0}, pp: 20},
		{name: "rr-len1", opts: []byte{OptRR, 1, 4, 0}, pp: 20},
		{name: "rr-len2", opts: []byte{OptRR, 2, OptNoop, OptNoop}, pp: 21},
		{name: "rr-past-header", opts: []byte{OptRR, 39, 4, 0}, pp: 20},
		{name: "rr-ptr3", opts: []byte{OptRR, 7, 3, 0, 0, 0, 0}, pp: 22},
		{name: "rr-ptr-odd", opts: []byte{OptRR, 7, 5, 0, 0, 0, 0}, pp: 22},
		{name: "rr", opts: rr9, pp: -1, want: []byte{OptRR, 11, 8, 10, 0, 1, 1, 0, 0, 0, 0},
			chk: func(t *testing.T, o *Options) {
				if o.RR != 20 || !o.RRNeedAddr || !o.Changed {
					t.Errorf("%+v", *o)
				}
			}},
		{name: "rr-full", opts: []byte{OptRR, 7, 8, 1, 2, 3, 4}, pp: -1, chk: func(t *testing.T, o *Options) {
			if o.RR != 20 || o.RRNeedAddr || o.Changed {
				t.Errorf("%+v", *o)
			}
		}},
		{name: "rr-twice", opts: []byte{OptRR, 3, 4, OptRR, 3, 4}, pp: 23},
		{name: "lone-byte", opts: []byte{OptNoop, OptNoop, OptNoop, 0x99}, pp: 23},
		{name: "lsrr", opts: []byte{OptLSRR, 7, 4, 10, 0, 3, 3}, pp: -1, chk: func(t *testing.T, o *Options) {
			if o.SRR != 20 || o.StrictRoute {
				t.Errorf("%+v", *o)
			}
		}},
		{name: "ssrr", opts: []byte{OptSSRR, 7, 4, 10, 0, 3, 3}, pp: -1, chk: func(t *testing.T, o *Options) {
			if o.SRR != 20 || !o.StrictRoute {
				t.Errorf("%+v", *o)
			}
		}},
		{name: "lsrr-len2", opts: []byte{OptLSRR, 2, 1, 1}, pp: 21},
		{name: "lsrr-ptr3", opts: []byte{OptLSRR, 3, 3}, pp: 22},
		{name: "srr-twice", opts: []byte{OptLSRR, 3, 4, OptSSRR, 3, 4}, pp: 23},
		{name: "ts-only", opts: []byte{OptTimestamp, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0}, pp: -1,
			want: []byte{OptTimestamp, 12, 9, 0, 0, 0, 0, 42, 0, 0, 0, 0}},
		{name: "ts-addr", opts: []byte{OptTimestamp, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}, pp: -1,
			want: []byte{OptTimestamp, 12, 13, 1, 10, 0, 1, 1, 0, 0, 0, 42}},
		{name: "ts-addr-no-room", opts: []byte{OptTimestamp, 8, 5, 1, 0, 0, 0, 0}, pp: 22},
		{name: "ts-prespec-ours", opts: []byte{OptTimestamp, 12, 5, 3, 10, 0, 2, 2, 0, 0, 0, 0}, pp: -1,
			want: []byte{OptTimestamp, 12, 13, 3, 10, 0, 2, 2, 0, 0, 0, 42}},
		{name: "ts-prespec-not-ours", opts: []byte{OptTimestamp, 12, 5, 3, 10, 9, 9, 9, 0, 0, 0, 0}, pp: -1},
		{name: "ts-bad-flag", opts: []byte{OptTimestamp, 8, 5, 2, 0, 0, 0, 0}, pp: -1},
		{name: "ts-full", opts: []byte{OptTimestamp, 8, 9, 0x10, 0, 0, 0, 0}, pp: -1,
			want: []byte{OptTimestamp, 8, 9, 0x20, 0, 0, 0, 0}},
		{name: "ts-overflow", opts: []byte{OptTimestamp, 8, 9, 0xf0, 0, 0, 0, 0}, pp: 23},
		{name: "ts-ptr4", opts: []byte{OptTimestamp, 8, 4, 0, 0, 0, 0, 0}, pp: 22},
		{name: "ts-len3", opts: []byte{OptTimestamp, 3, 5, 0}, pp: 21},
		{name: "ts-ptr-odd", opts: []byte{OptTimestamp, 8, 6, 0, 0, 0, 0, 0}, pp: 22},
		{name: "ra", opts: []byte{OptRA, 4, 0, 0}, pp: -1, chk: func(t *testing.T, o *Options) {
			if o.RouterAlert != 20 {
				t.Errorf("%+v", *o)
			}
		}},
		{name: "ra-value", opts: []byte{OptRA, 4, 0, 1}, pp: -1, chk: func(t *testing.T, o *Options) {
			if o.RouterAlert != 0 {
				t.Errorf("%+v", *o)
			}
		}},
		{name: "ra-len3", opts: []byte{OptRA, 3, 0, 0}, pp: 21},
		{name: "unknown", opts: []byte{0x9e, 4, 1, 2}, pp: -1},
		{name: "sec", opts: []byte{OptSec, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9}, pp: -1},
		{name: "cipso-twice", opts: []byte{OptCIPSO, 4, 0, 0, OptCIPSO, 4, 0, 0}, pp: 24},
		{name: "eol-then-garbage", opts: []byte{OptEnd, OptRR, 0, 0}, pp: -1, want: []byte{0, 0, 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := hdrWith(c.opts...)
			before := append([]byte(nil), h.Options()...)
			env := &fakeEnv{spec: 0x0a000101, now: 42, local: map[uint32]bool{0x0a000202: true}}
			var o Options
			pp := CompileOptions(h, &o, env)
			if pp != c.pp {
				t.Fatalf("pointer %d, want %d (%+v)", pp, c.pp, o)
			}
			want := c.want
			if want == nil {
				want = before
			}
			if got := h.Options()[:len(want)]; !bytes.Equal(got, want) {
				t.Errorf("options % x, want % x", got, want)
			}
			if env.specCalls > 1 {
				t.Errorf("SpecDst asked %d times", env.specCalls)
			}
			if c.chk != nil {
				c.chk(t, &o)
			}
		})
	}
}

func TestEchoOptions(t *testing.T) {
	env := &fakeEnv{spec: 0x0a000202, now: 7, local: map[uint32]bool{0x0a000202: true}}
	// a record route with one address recorded, a timestamp, and a
	// loose source route 10.0.1.2 (the sender) -> 10.0.3.3 -> us, used up
	h := hdrWith(OptRR, 15, 8, 10, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0,
		OptTimestamp, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		OptLSRR, 11, 12, 10, 0, 3, 3, 10, 0, 2, 2)
	var o Options
	if pp := CompileOptions(h, &o, env); pp != -1 {
		t.Fatalf("compile: %d", pp)
	}
	var dst [OptionsMaxLen]byte
	d, ok := EchoOptions(dst[:], h, &o, env)
	if !ok {
		t.Fatal("echo refused")
	}
	want := []byte{OptRR, 15, 16, 10, 0, 9, 9, 10, 0, 2, 2, 0, 0, 0, 0,
		OptTimestamp, 12, 13, 0, 0, 0, 0, 7, 0, 0, 0, 0,
		OptLSRR, 11, 4, 10, 0, 3, 3, 0, 0, 0, 0, 0, 0}
	if got := dst[:d.OptLen]; !bytes.Equal(got, want) {
		t.Errorf("echo % x\nwant % x", got, want)
	}
	// the reply goes to the last hop first
	if d.FAddr != 0x0a000202 || d.RR != 20 || d.TS != 35 || d.SRR != 47 || !d.RRNeedAddr || !d.TSNeedTime || d.TSNeedAddr {
		t.Errorf("%+v", d)
	}
	// built into a reply from 10.0.2.2 to 10.0.1.2
	r := hdrWith(dst[:d.OptLen]...)
	BuildOptions(r, &d, 0x0a000102, 0x0a000202, 99)
	wantBuilt := []byte{OptRR, 15, 16, 10, 0, 9, 9, 10, 0, 2, 2, 10, 0, 2, 2,
		OptTimestamp, 12, 13, 0, 0, 0, 0, 7, 0, 0, 0, 99,
		OptLSRR, 11, 4, 10, 0, 3, 3, 10, 0, 1, 2, 0, 0}
	if got := r.Options(); !bytes.Equal(got, wantBuilt) {
		t.Errorf("built % x\nwant  % x", got, wantBuilt)
	}
}

func TestForwardOptions(t *testing.T) {
	env := &fakeEnv{spec: 0x0a000101}
	h := hdrWith(OptRR, 7, 4, 0, 0, 0, 0)
	var o Options
	if pp := CompileOptions(h, &o, env); pp != -1 {
		t.Fatal(pp)
	}
	if _, changed := ForwardOptions(h, &o, env); changed {
		t.Error("destination changed")
	}
	if got, want := []byte(h.Options()), []byte{OptRR, 7, 8, 10, 0, 2, 1, 0}; !bytes.Equal(got, want) {
		t.Errorf("% x, want % x", got, want)
	}
	if Checksum(h[:h.HeaderLen()], 0) != 0xffff {
		t.Error("bad checksum")
	}
	// a source route that hit us: on to 10.0.3.3
	h = hdrWith(OptLSRR, 7, 4, 10, 0, 3, 3)
	if pp := CompileOptions(h, &o, env); pp != -1 {
		t.Fatal(pp)
	}
	o.SRRIsHit, o.NextHop = true, 0x0a000303
	nd, changed := ForwardOptions(h, &o, env)
	if !changed || nd != 0x0a000303 || h.Dst() != nd {
		t.Errorf("dst %x %v", nd, changed)
	}
	if got, want := []byte(h.Options()), []byte{OptLSRR, 7, 8, 10, 0, 3, 1, 0}; !bytes.Equal(got, want) {
		t.Errorf("% x, want % x", got, want)
	}
}

func TestOptionsNoAllocs(t *testing.T) {
	env := &fakeEnv{spec: 0x0a000101, local: map[uint32]bool{}}
	h := hdrWith(OptRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, OptTimestamp, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0)
	orig := append(IPv4(nil), h...)
	var dst [OptionsMaxLen]byte
	n := testing.AllocsPerRun(100, func() {
		copy(h, orig)
		var o Options
		CompileOptions(h, &o, env)
		EchoOptions(dst[:], h, &o, env)
		ForwardOptions(h, &o, env)
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzOptions(f *testing.F) {
	f.Add([]byte{OptRR, 0, 4, 0}, false, uint32(0))
	f.Add([]byte{OptRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}, false, uint32(0))
	f.Add([]byte{OptLSRR, 11, 12, 10, 0, 3, 3, 10, 0, 2, 2}, true, uint32(0x0a000202))
	f.Add([]byte{OptTimestamp, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0}, false, uint32(0))
	f.Add([]byte{OptTimestamp, 12, 5, 3, 10, 0, 2, 2, 0, 0, 0, 0}, false, uint32(0))
	f.Add([]byte{OptRA, 4, 0, 0, OptNoop, OptEnd}, false, uint32(0))
	f.Fuzz(func(t *testing.T, opts []byte, hit bool, nh uint32) {
		if len(opts) > OptionsMaxLen {
			opts = opts[:OptionsMaxLen]
		}
		h := hdrWith(opts...)
		env := &fakeEnv{spec: 0x0a000101, now: 5, local: map[uint32]bool{0x0a000202: true}}
		var o Options
		pp := CompileOptions(h, &o, env)
		if pp >= h.HeaderLen() || pp < -1 || (pp >= 0 && pp < IPv4MinHeaderLen) {
			t.Fatalf("pointer %d outside the options", pp)
		}
		var o2 Options
		// compiling the result again without a route never panics either
		CompileOptions(append(IPv4(nil), h...), &o2, nil)
		if pp != -1 {
			return
		}
		var dst [OptionsMaxLen]byte
		d, ok := EchoOptions(dst[:], h, &o, env)
		if ok {
			if d.OptLen%4 != 0 || int(d.OptLen) > OptionsMaxLen {
				t.Fatalf("echo length %d", d.OptLen)
			}
			r := hdrWith(dst[:d.OptLen]...)
			BuildOptions(r, &d, 1, 2, 3)
		}
		o.SRRIsHit, o.NextHop = hit, nh
		ForwardOptions(h, &o, env)
		if Checksum(h[:h.HeaderLen()], 0) != 0xffff && o.Changed {
			t.Fatal("changed options left a bad checksum")
		}
	})
}
