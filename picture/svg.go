package picture

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// The picture: two levels, the bridge's above the network's, each laid
// out as the kernel's flow is usually drawn:
//
//	in ─> PREROUTING ─> decision ─> FORWARD ─> POSTROUTING ─> out
//	                       │                        ▲
//	                       ▼                        │
//	                     INPUT ─> local ─> (route) OUTPUT
//
// For the network level the decision is the input route and local is
// the local process; for the bridge level the decision is the
// forwarding database and local is the bridge device, whose INPUT
// leads up to the network level and whose OUTPUT comes from it.

// Options change a picture.
type Options struct {
	// IDPrefix starts every id in the SVG (several pictures in one
	// page need distinct ids).
	IDPrefix string
}

type level int

const (
	lvBridge level = iota
	lvIPv4
)

var levelNames = [...]string{"bridge", "ipv4"}

type nodeKind int

const (
	nkHook nodeKind = iota
	nkDecision
	nkIn
	nkOut
	nkLocal
	nkRouteOut
)

// colours of the paths: the packet's own, then its answers
var palette = []string{"#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285"}

func colour(i int) string { return palette[i%len(palette)] }

type note struct {
	path  int
	text  string
	class string
	// attrs are extra attributes (already escaped)
	attrs string
}

type row struct {
	st    datapath.LayoutStage
	paths map[int]bool
	gone  map[int]string
	notes []note
}

type node struct {
	id    string
	lv    level
	kind  nodeKind
	hook  uint8
	title string
	// x is the centre, y the top; w, h the box (notes below a
	// non-hook box are outside it)
	x, y, w, h float64
	rows       []*row
	notes      []note
	paths      map[int]bool
}

func (n *node) taken() bool { return len(n.paths) > 0 }

func (n *node) firstPath() int {
	best := -1
	for p := range n.paths {
		if best < 0 || p < best {
			best = p
		}
	}
	return best
}

const (
	hookW    = 290.0
	rowH     = 17.0
	noteH    = 14.0
	headH    = 24.0
	charW    = 6.6 // 11px monospace
	maxChars = 41
)

var cols = [6]float64{90, 345, 670, 995, 1320, 1570}

type picture struct {
	opt    Options
	layout datapath.Layout
	nodes  map[string]*node
	order  []*node
	// seq is each path's way through the nodes
	seq  [][]*node
	pk   Packet
	used [2]bool // a level carries a path
	// band is each level's top and height
	band [2][2]float64
}

func (pc *picture) id(s string) string { return pc.opt.IDPrefix + s }

func (pc *picture) add(n *node) *node {
	pc.nodes[n.id] = n
	pc.order = append(pc.order, n)
	n.paths = map[int]bool{}
	return n
}

func hookName(lv level, h uint8) string {
	if lv == lvBridge {
		return ebtables.Hook(h).String()
	}
	return netfilter.Hook(h).String()
}

func hookNodeID(lv level, h uint8) string { return levelNames[lv] + "-" + hookName(lv, h) }

// build makes the nodes of both levels from the layout.
func (pc *picture) build() {
	for _, lv := range []level{lvBridge, lvIPv4} {
		nh := int(netfilter.NumHooks)
		for h := 0; h < nh; h++ {
			var stages []datapath.LayoutStage
			if lv == lvBridge {
				stages = pc.layout.Bridge[h]
			} else {
				stages = pc.layout.IPv4[h]
			}
			n := pc.add(&node{id: hookNodeID(lv, uint8(h)), lv: lv, kind: nkHook, hook: uint8(h), title: hookName(lv, uint8(h))})
			for _, st := range stages {
				n.rows = append(n.rows, &row{st: st, paths: map[int]bool{}, gone: map[int]string{}})
			}
		}
		ln := levelNames[lv]
		if lv == lvBridge {
			pc.add(&node{id: ln + "-decision", lv: lv, kind: nkDecision, title: "bridge decision|(forwarding database)"})
			pc.add(&node{id: ln + "-in", lv: lv, kind: nkIn, title: "frame in|(port)"})
			pc.add(&node{id: ln + "-out", lv: lv, kind: nkOut, title: "frame out|(port)"})
			pc.add(&node{id: ln + "-local", lv: lv, kind: nkLocal, title: "bridge device|up to / down from|the network level"})
		} else {
			pc.add(&node{id: ln + "-decision", lv: lv, kind: nkDecision, title: "routing decision|(input route)"})
			pc.add(&node{id: ln + "-in", lv: lv, kind: nkIn, title: "packet in|(device)"})
			pc.add(&node{id: ln + "-out", lv: lv, kind: nkOut, title: "packet out|(device)"})
			pc.add(&node{id: ln + "-local", lv: lv, kind: nkLocal, title: "local process|(sockets)"})
			pc.add(&node{id: ln + "-routeout", lv: lv, kind: nkRouteOut, title: "output|route"})
		}
	}
}

func (pc *picture) node(lv level, kind nodeKind, hook uint8) *node {
	switch kind {
	case nkHook:
		return pc.nodes[hookNodeID(lv, hook)]
	case nkDecision:
		return pc.nodes[levelNames[lv]+"-decision"]
	case nkIn:
		return pc.nodes[levelNames[lv]+"-in"]
	case nkOut:
		return pc.nodes[levelNames[lv]+"-out"]
	case nkLocal:
		return pc.nodes[levelNames[lv]+"-local"]
	}
	return pc.nodes[levelNames[lv]+"-routeout"]
}

// way is one path's walk over the nodes while its events are read.
type way struct {
	pc                        *picture
	pi                        int
	nodes                     []*node
	cur                       *node
	row                       *row
	pending                   bool // the in node waits for the first hook's device
	inCause                   string
	seenBrPre, seenBrDecision bool
}

func (w *way) visit(n *node) {
	if n == nil || n == w.cur {
		return
	}
	n.paths[w.pi] = true
	w.pc.used[n.lv] = true
	w.nodes = append(w.nodes, n)
	w.cur, w.row = n, nil
}

func (w *way) hook(lv level, h uint8, in, out string) {
	n := w.pc.node(lv, nkHook, h)
	if w.cur == n {
		return
	}
	if w.pending {
		w.pending = false
		inLv := lv
		if w.inCause == "frame" {
			inLv = lvBridge
		}
		nin := w.pc.node(inLv, nkIn, 0)
		w.visit(nin)
		if in != "" {
			nin.notes = append(nin.notes, note{path: w.pi, text: "in " + in, class: "dev"})
		}
	}
	if lv == lvBridge {
		switch ebtables.Hook(h) {
		case ebtables.PreRouting:
			w.seenBrPre = true
		case ebtables.Forward, ebtables.LocalIn:
			if w.seenBrPre && !w.seenBrDecision {
				w.seenBrDecision = true
				w.visit(w.pc.node(lvBridge, nkDecision, 0))
			}
		}
	}
	w.visit(n)
	if in != "" || out != "" {
		var s []string
		if in != "" {
			s = append(s, "IN="+in)
		}
		if out != "" {
			s = append(s, "OUT="+out)
		}
		n.notesFor(w.pi, strings.Join(s, " "))
	}
}

// notesFor adds a device note to a hook box once per path and text.
func (n *node) notesFor(pi int, text string) {
	for _, x := range n.notes {
		if x.path == pi && x.text == text {
			return
		}
	}
	n.notes = append(n.notes, note{path: pi, text: text, class: "dev"})
}

func (w *way) stage(lv level, h uint8, key string, gone bool, text string) {
	w.hook(lv, h, "", "")
	n := w.cur
	var r *row
	for _, x := range n.rows {
		if x.st.Key == key {
			r = x
			break
		}
	}
	if r == nil {
		// a stage the layout does not know: shown all the same
		r = &row{st: datapath.LayoutStage{Key: key, Name: key, Active: true}, paths: map[int]bool{}, gone: map[int]string{}}
		n.rows = append(n.rows, r)
	}
	r.paths[w.pi] = true
	if gone {
		r.gone[w.pi] = text
	}
	w.row = r
}

func (w *way) noteRow(nt note) {
	nt.path = w.pi
	if w.row != nil {
		w.row.notes = append(w.row.notes, nt)
		return
	}
	if w.cur != nil {
		w.cur.notes = append(w.cur.notes, nt)
	}
}

func ruleText(ev *datapath.PathEvent, hook string) string {
	where := ev.Chain
	if ev.Chain == hook {
		where = ev.Table
	} else if ev.Table != "" {
		where = ev.Table + ":" + ev.Chain
	}
	if ev.Rule == 0 {
		return where + " policy " + ev.Verdict
	}
	return where + " #" + strconv.Itoa(ev.Rule) + " " + ev.Verdict
}

func natLines(ev *datapath.PathEvent) []string {
	b, a := ev.Before, ev.After
	var out []string
	if b.Src != a.Src || b.SPort != a.SPort {
		out = append(out, "src "+ep(b.Src.String(), b.SPort)+" → "+ep(a.Src.String(), a.SPort))
	}
	if b.Dst != a.Dst || b.DPort != a.DPort {
		out = append(out, "dst "+ep(b.Dst.String(), b.DPort)+" → "+ep(a.Dst.String(), a.DPort))
	}
	return out
}

func ep(a string, port uint16) string {
	if port == 0 {
		return a
	}
	return a + ":" + strconv.Itoa(int(port))
}

// walk reads the paths' events into the nodes.
func (pc *picture) walk() {
	ways := make([]*way, len(pc.pk.Paths))
	// an answer starts where its parent is when it is sent: merge the
	// events of all paths by their position in the call
	type item struct {
		pi  int
		ev  *datapath.PathEvent
		pos int
	}
	var items []item
	for pi, p := range pc.pk.Paths {
		ways[pi] = &way{pc: pc, pi: pi}
		for i := range p.Events {
			pos := i
			if i < len(p.pos) {
				pos = p.pos[i]
			}
			items = append(items, item{pi, &p.Events[i], pos})
		}
	}
	// stable by position: the call's order
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].pos < items[j-1].pos; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
	byID := map[uint32]int{}
	for pi, p := range pc.pk.Paths {
		byID[p.ID] = pi
	}
	started := make([]bool, len(ways))
	for _, it := range items {
		w, ev := ways[it.pi], it.ev
		lv := lvIPv4
		if ev.Bridge {
			lv = lvBridge
		}
		switch ev.Kind {
		case datapath.PathStart:
			if started[it.pi] {
				if strings.HasPrefix(ev.Cause, "up to") {
					// the bridge passes it up: the network level's
					// routing, without PREROUTING again
					w.row = nil
				}
				continue
			}
			started[it.pi] = true
			switch ev.Cause {
			case "sent":
				w.visit(pc.node(lvIPv4, nkLocal, 0))
				w.cur.notes = append(w.cur.notes, note{path: it.pi, text: "sent by the host", class: "dev"})
			case "answer":
				parent := ways[byID[ev.Parent]]
				if parent.cur != nil && parent.cur.kind == nkHook && parent.row != nil && len(parent.row.gone) > 0 {
					w.visit(parent.cur) // REJECT: from inside the hook
				} else {
					w.visit(pc.node(lvIPv4, nkLocal, 0))
				}
				w.cur.notes = append(w.cur.notes, note{path: it.pi, text: "answer " + strconv.Itoa(it.pi) + " starts here", class: "answer"})
			default:
				w.pending, w.inCause = true, ev.Cause
			}
		case datapath.PathHook:
			w.hook(lv, ev.Hook, ev.In, ev.Out)
		case datapath.PathStage:
			w.stage(lv, ev.Hook, ev.Stage, ev.Gone, ev.Text)
		case datapath.PathRule:
			hook := ""
			if w.cur != nil && w.cur.kind == nkHook {
				hook = w.cur.title
			}
			cls := "rule"
			if strings.Contains(ev.Verdict, "DROP") || strings.Contains(ev.Verdict, "REJECT") {
				cls = "rule drop"
			}
			w.noteRow(note{text: ruleText(ev, hook), class: cls,
				attrs: fmt.Sprintf(` data-table="%s" data-chain="%s" data-rule="%d" data-verdict="%s"`, esc(ev.Table), esc(ev.Chain), ev.Rule, esc(ev.Verdict))})
		case datapath.PathRewrite:
			w.stage(lv, ev.Hook, ev.Stage, false, "")
			attrs := fmt.Sprintf(` data-before="%s" data-after="%s"`, esc(ev.Before.String()), esc(ev.After.String()))
			for _, l := range natLines(ev) {
				w.noteRow(note{text: l, class: "nat", attrs: attrs})
			}
		case datapath.PathRoute:
			switch ev.Route.Kind {
			case "input":
				w.visit(pc.node(lvIPv4, nkDecision, 0))
			case "output":
				w.visit(pc.node(lvIPv4, nkRouteOut, 0))
			}
			w.noteRow(note{text: routeText(&ev.Route), class: "route"})
		case datapath.PathEnd:
			w.end(ev.Text)
		}
	}
	for pi, w := range ways {
		_ = pi
		pc.seq = append(pc.seq, w.nodes)
	}
}

func routeText(r *datapath.RouteStep) string {
	s := r.Kind
	if r.Kind == "input" {
		s = ""
	}
	if r.Err != "" {
		return strings.TrimSpace(s + " " + r.Err)
	}
	t := r.Type
	switch r.Type {
	case "unicast":
		t = "→ " + r.Dev
	case "local":
		t = "local"
	}
	s = strings.TrimSpace(s + " " + t)
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s
}

func (w *way) end(fate string) {
	if w.pending {
		// it ended before any hook (a bad source, a non-bridge port)
		w.pending = false
		inLv := lvIPv4
		if w.inCause == "frame" {
			inLv = lvBridge
		}
		w.visit(w.pc.node(inLv, nkIn, 0))
	}
	cls := "fate"
	switch {
	case strings.HasPrefix(fate, "bridged out"), strings.HasPrefix(fate, "out ") && !strings.Contains(fate, "passed up to"):
		// a frame's fate: out of bridge ports (with a copy up, the
		// ports' frames are what the host sent in reaction)
		w.visit(w.pc.node(lvBridge, nkOut, 0))
	case strings.HasPrefix(fate, "forwarded out"), strings.HasPrefix(fate, "sent out"):
		w.visit(w.pc.node(lvIPv4, nkOut, 0))
	case strings.HasPrefix(fate, "delivered"):
		w.visit(w.pc.node(lvIPv4, nkLocal, 0))
	case strings.Contains(fate, "dropped"):
		cls = "fate drop"
	}
	if strings.Contains(fate, "passed up to") {
		// and a copy went up to the bridge device
		if w.cur != nil && w.cur.kind == nkOut {
			w.cur.notes = append(w.cur.notes, note{path: w.pi, text: "FATE: " + fate, class: cls})
		}
		if strings.HasSuffix(fate, ": delivered") {
			w.visit(w.pc.node(lvIPv4, nkLocal, 0))
		}
	}
	w.row = nil
	if w.cur != nil {
		w.cur.notes = append(w.cur.notes, note{path: w.pi, text: "FATE: " + fate, class: cls})
	}
}

// SVG draws pk on the layout l.
func SVG(out io.Writer, l datapath.Layout, pk Packet, opt Options) error {
	pc := &picture{opt: opt, layout: l, nodes: map[string]*node{}, pk: pk}
	pc.build()
	pc.walk()
	w := bufio.NewWriter(out)
	pc.draw(w)
	return w.Flush()
}

func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#39;")
		default:
			if r < 0x20 && r != '\t' {
				b.WriteRune('\uFFFD')
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// clip shortens a line to n characters.
func clip(s string, n int) (string, bool) {
	r := []rune(s)
	if len(r) <= n {
		return s, false
	}
	return string(r[:n-1]) + "…", true
}

func (n *node) size() {
	switch n.kind {
	case nkHook:
		n.w = hookW
		h := headH + 4
		for _, r := range n.rows {
			h += rowH + noteH*float64(len(r.notes))
		}
		h += noteH * float64(len(n.notes))
		n.h = h + 6
	case nkDecision:
		n.w, n.h = 150, 64
	case nkRouteOut:
		n.w, n.h = 92, 50
	case nkLocal:
		n.w, n.h = 150, 56
	default:
		n.w, n.h = 130, 40
	}
}

// below is the height of the notes written under a non-hook box.
func (n *node) below() float64 {
	if n.kind == nkHook {
		return 0
	}
	return noteH * float64(len(n.notes))
}

// place lays the nodes out and returns the picture's size.
func (pc *picture) place() (float64, float64) {
	for _, n := range pc.order {
		n.size()
	}
	y := 58.0
	for _, lv := range []level{lvBridge, lvIPv4} {
		ln := levelNames[lv]
		rowA := []*node{pc.nodes[ln+"-in"], pc.nodes[hookNodeID(lv, 0)], pc.nodes[ln+"-decision"],
			pc.nodes[hookNodeID(lv, uint8(netfilter.Forward))], pc.nodes[hookNodeID(lv, uint8(netfilter.PostRouting))], pc.nodes[ln+"-out"]}
		for i, n := range rowA {
			n.x = cols[i]
		}
		rowB := []*node{pc.nodes[hookNodeID(lv, uint8(netfilter.LocalIn))], pc.nodes[ln+"-local"], pc.nodes[hookNodeID(lv, uint8(netfilter.LocalOut))]}
		rowB[0].x, rowB[1].x, rowB[2].x = cols[2], cols[3]-30, cols[4]
		if n := pc.nodes[ln+"-routeout"]; n != nil {
			n.x = cols[3] + 105
			rowB = append(rowB, n)
		}
		y += 30 // the level's label
		top := y
		hA := 0.0
		for _, n := range rowA {
			hA = math.Max(hA, n.h+n.below())
		}
		for _, n := range rowA {
			n.y = y
			if n.kind != nkHook {
				n.y = y + 20
			}
		}
		y += hA + 46
		hB := 0.0
		for _, n := range rowB {
			hB = math.Max(hB, n.h+n.below())
		}
		for _, n := range rowB {
			n.y = y
			if n.kind != nkHook {
				n.y = y + 20
			}
		}
		y += hB + 30
		pc.band[lv] = [2]float64{top - 30, y - (top - 30)}
		y += 14
	}
	legend := 24 + 18*float64(len(pc.pk.Paths))
	return cols[5] + 130, y + legend + 18
}

const style = `
.uswitch-path text{font-family:"DejaVu Sans Mono",monospace;font-size:11px;fill:#222}
.uswitch-path .title{font-size:15px;font-weight:bold}
.uswitch-path .levelname{font-size:13px;font-weight:bold;fill:#555}
.uswitch-path .band{fill:#f6f7f9;stroke:#d8dbe0}
.uswitch-path .band.unused{fill:#fbfbfb}
.uswitch-path .box{fill:#fff;stroke:#8a8f98;stroke-width:1}
.uswitch-path .taken>.box{stroke-width:3}
.uswitch-path .hookname{font-weight:bold;font-size:12px}
.uswitch-path .stage text{fill:#333}
.uswitch-path .stage.inactive text{fill:#a0a4ab}
.uswitch-path .stage .prio{fill:#777}
.uswitch-path .stage.inactive .prio{fill:#c0c3c8}
.uswitch-path .stage.ipvs text.name{font-style:italic}
.uswitch-path .stage.gone .mark{fill:#c92a2a;opacity:.25}
.uswitch-path .note.drop,.uswitch-path .note.fate.drop{fill:#c92a2a}
.uswitch-path .note.fate{font-weight:bold}
.uswitch-path .note.dev{fill:#555}
.uswitch-path .dim{opacity:.45}
.uswitch-path line.way{stroke-width:3;fill:none}
`

func (pc *picture) draw(w *bufio.Writer) {
	W, H := pc.place()
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="uswitch-path" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" data-paths="%d">`+"\n", W, H, W, H, len(pc.pk.Paths))
	fmt.Fprintf(w, "<style>%s</style>\n", style)
	w.WriteString("<defs>")
	for i := range pc.pk.Paths {
		fmt.Fprintf(w, `<marker id="%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>`, pc.id("arrow"+strconv.Itoa(i)), colour(i))
	}
	w.WriteString("</defs>\n")
	fmt.Fprintf(w, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#fff"/>`+"\n", W, H)
	title, _ := clip(pc.pk.Summary(), 200)
	fmt.Fprintf(w, `<text class="title" x="16" y="28">%s</text>`+"\n", esc(title))
	// the levels
	for _, lv := range []level{lvBridge, lvIPv4} {
		b := pc.band[lv]
		cls := "band"
		label := "network level: IPv4 hooks (iptables, conntrack, NAT, IPVS), routing"
		if lv == lvBridge {
			label = "bridge level: bridge hooks (ebtables, br_netfilter)"
			if len(pc.layout.Bridges) > 0 {
				label += " — bridges: " + strings.Join(pc.layout.Bridges, ", ")
			} else {
				label += " — no bridge in this configuration"
			}
		}
		if !pc.used[lv] {
			cls += " unused"
		}
		fmt.Fprintf(w, `<g class="level" data-level="%s"><rect class="%s" x="6" y="%.0f" width="%.0f" height="%.0f" rx="8"/><text class="levelname" x="18" y="%.0f">%s</text></g>`+"\n",
			levelNames[lv], cls, b[0], W-12, b[1], b[0]+20, esc(label))
	}
	// static connectors of the flow, thin grey
	pc.drawFlow(w)
	for _, n := range pc.order {
		pc.drawNode(w, n)
	}
	// the ways on top
	for pi, seq := range pc.seq {
		pc.drawWay(w, pi, seq)
	}
	pc.drawLegend(w, H)
	w.WriteString("</svg>\n")
}

// edge is the point where the segment from n's centre towards (tx, ty)
// leaves n's box.
func (n *node) edge(tx, ty float64) (float64, float64) {
	cx, cy := n.x, n.y+n.h/2
	dx, dy := tx-cx, ty-cy
	if dx == 0 && dy == 0 {
		return cx, cy
	}
	hw, hh := n.w/2+3, n.h/2+3
	t := math.Inf(1)
	if dx != 0 {
		t = math.Min(t, hw/math.Abs(dx))
	}
	if dy != 0 {
		t = math.Min(t, hh/math.Abs(dy))
	}
	return cx + dx*t, cy + dy*t
}

func (n *node) centre() (float64, float64) { return n.x, n.y + n.h/2 }

func (pc *picture) connect(w *bufio.Writer, a, b *node, attrs string, off float64) {
	ax, ay := a.centre()
	bx, by := b.centre()
	x1, y1 := a.edge(bx, by)
	x2, y2 := b.edge(ax, ay)
	if off != 0 {
		dx, dy := x2-x1, y2-y1
		l := math.Hypot(dx, dy)
		if l > 0 {
			ox, oy := -dy/l*off, dx/l*off
			x1, y1, x2, y2 = x1+ox, y1+oy, x2+ox, y2+oy
		}
	}
	fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`+"\n", x1, y1, x2, y2, attrs)
}

func (pc *picture) drawFlow(w *bufio.Writer) {
	w.WriteString(`<g class="flow" stroke="#b7bcc4" stroke-width="1.5" stroke-dasharray="5 4">` + "\n")
	for _, lv := range []level{lvBridge, lvIPv4} {
		ln := levelNames[lv]
		h := func(x netfilter.Hook) *node { return pc.nodes[hookNodeID(lv, uint8(x))] }
		pairs := [][2]*node{
			{pc.nodes[ln+"-in"], h(netfilter.PreRouting)},
			{h(netfilter.PreRouting), pc.nodes[ln+"-decision"]},
			{pc.nodes[ln+"-decision"], h(netfilter.Forward)},
			{h(netfilter.Forward), h(netfilter.PostRouting)},
			{h(netfilter.PostRouting), pc.nodes[ln+"-out"]},
			{pc.nodes[ln+"-decision"], h(netfilter.LocalIn)},
			{h(netfilter.LocalIn), pc.nodes[ln+"-local"]},
			{h(netfilter.LocalOut), h(netfilter.PostRouting)},
		}
		if r := pc.nodes[ln+"-routeout"]; r != nil {
			pairs = append(pairs, [2]*node{pc.nodes[ln+"-local"], r}, [2]*node{r, h(netfilter.LocalOut)})
		} else {
			pairs = append(pairs, [2]*node{pc.nodes[ln+"-local"], h(netfilter.LocalOut)})
		}
		for _, p := range pairs {
			pc.connect(w, p[0], p[1], "", 0)
		}
	}
	w.WriteString("</g>\n")
}

func splitTitle(s string) []string { return strings.Split(s, "|") }

func (pc *picture) drawNode(w *bufio.Writer, n *node) {
	cls := "node"
	if n.kind == nkHook {
		cls = "hook"
	}
	if n.taken() {
		cls += " taken"
	}
	if !pc.used[n.lv] && n.lv == lvBridge && len(pc.layout.Bridges) == 0 {
		cls += " dim"
	}
	var ps []string
	for i := range pc.pk.Paths {
		if n.paths[i] {
			ps = append(ps, strconv.Itoa(i))
		}
	}
	fmt.Fprintf(w, `<g class="%s" id="%s" data-level="%s" data-node="%s" data-paths="%s"`, cls, pc.id(n.id), levelNames[n.lv], n.id, strings.Join(ps, " "))
	if n.kind == nkHook {
		fmt.Fprintf(w, ` data-hook="%s"`, n.title)
	}
	w.WriteString(">\n")
	stroke := ""
	if n.taken() {
		stroke = fmt.Sprintf(` style="stroke:%s"`, colour(n.firstPath()))
	}
	x0 := n.x - n.w/2
	switch n.kind {
	case nkHook:
		fmt.Fprintf(w, `<rect class="box" x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="6"%s/>`+"\n", x0, n.y, n.w, n.h, stroke)
		name := n.title
		if n.lv == lvBridge {
			name = "bridge " + name
		}
		fmt.Fprintf(w, `<text class="hookname" x="%.1f" y="%.1f">%s</text>`+"\n", x0+10, n.y+17, esc(name))
		y := n.y + headH + 4
		for _, r := range n.rows {
			pc.drawRow(w, n, r, x0, &y)
		}
		for _, nt := range n.notes {
			pc.drawNote(w, nt, x0+10, y+11)
			y += noteH
		}
	case nkDecision, nkRouteOut:
		cx, cy := n.x, n.y+n.h/2
		fmt.Fprintf(w, `<polygon class="box" points="%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f"%s/>`+"\n",
			cx, n.y, cx+n.w/2, cy, cx, n.y+n.h, cx-n.w/2, cy, stroke)
		pc.centredLines(w, splitTitle(n.title), cx, cy)
		y := n.y + n.h
		for _, nt := range n.notes {
			pc.drawNoteCentred(w, nt, cx, y+12)
			y += noteH
		}
	default:
		fmt.Fprintf(w, `<rect class="box" x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="%.0f"%s/>`+"\n", x0, n.y, n.w, n.h, n.h/2.5, stroke)
		pc.centredLines(w, splitTitle(n.title), n.x, n.y+n.h/2)
		y := n.y + n.h
		for _, nt := range n.notes {
			pc.drawNoteCentred(w, nt, n.x, y+12)
			y += noteH
		}
	}
	w.WriteString("</g>\n")
}

func (pc *picture) centredLines(w *bufio.Writer, lines []string, cx, cy float64) {
	y := cy - float64(len(lines)-1)*13/2 + 4
	for _, l := range lines {
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y, esc(l))
		y += 13
	}
}

func (pc *picture) drawRow(w *bufio.Writer, n *node, r *row, x0 float64, y *float64) {
	cls := "stage"
	if !r.st.Active {
		cls += " inactive"
	}
	if r.st.IPVS {
		cls += " ipvs"
	}
	if len(r.paths) > 0 {
		cls += " taken"
	}
	if len(r.gone) > 0 {
		cls += " gone"
	}
	h := rowH + noteH*float64(len(r.notes))
	fmt.Fprintf(w, `<g class="%s" data-key="%s">`, cls, esc(r.st.Key))
	if len(r.paths) > 0 {
		pi := -1
		for p := range r.paths {
			if pi < 0 || p < pi {
				pi = p
			}
		}
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" opacity=".13"/>`, x0+3, *y, n.w-6, h, colour(pi))
	}
	if len(r.gone) > 0 {
		fmt.Fprintf(w, `<rect class="mark" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x0+3, *y, n.w-6, rowH)
	}
	name := r.st.Name
	if r.st.IPVS {
		name += " (IPVS)"
	}
	if len(r.gone) > 0 {
		name = "✗ " + name
	}
	label, _ := clip(name, maxChars-6)
	fmt.Fprintf(w, `<text class="name" x="%.1f" y="%.1f">%s<title>%s</title></text>`, x0+12, *y+12.5, esc(label), esc(r.st.Key))
	prio := prioText(r.st.Priority)
	fmt.Fprintf(w, `<text class="prio" x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0+n.w-10, *y+12.5, prio)
	ny := *y + rowH
	for _, nt := range r.notes {
		pc.drawNote(w, nt, x0+24, ny+10)
		ny += noteH
	}
	for pi, why := range r.gone {
		_ = pi
		fmt.Fprintf(w, `<title>%s</title>`, esc(why))
	}
	w.WriteString("</g>\n")
	*y += h
}

func prioText(p netfilter.Priority) string {
	switch p {
	case netfilter.PriLast:
		return "last"
	case netfilter.PriFirst:
		return "first"
	}
	return strconv.Itoa(int(p))
}

func (pc *picture) drawNote(w *bufio.Writer, nt note, x, y float64) {
	t, cut := clip(nt.text, maxChars-2)
	fmt.Fprintf(w, `<text class="note %s" data-path="%d" x="%.1f" y="%.1f" style="fill:%s"%s>%s`, nt.class, nt.path, x, y, noteColour(nt), nt.attrs, esc(t))
	if cut {
		fmt.Fprintf(w, `<title>%s</title>`, esc(nt.text))
	}
	w.WriteString("</text>\n")
}

func (pc *picture) drawNoteCentred(w *bufio.Writer, nt note, x, y float64) {
	t, cut := clip(nt.text, 30)
	fmt.Fprintf(w, `<text class="note %s" data-path="%d" x="%.1f" y="%.1f" text-anchor="middle" style="fill:%s"%s>%s`, nt.class, nt.path, x, y, noteColour(nt), nt.attrs, esc(t))
	if cut {
		fmt.Fprintf(w, `<title>%s</title>`, esc(nt.text))
	}
	w.WriteString("</text>\n")
}

func noteColour(nt note) string {
	if strings.Contains(nt.class, "drop") {
		return "#c92a2a"
	}
	return colour(nt.path)
}

func (pc *picture) drawWay(w *bufio.Writer, pi int, seq []*node) {
	fmt.Fprintf(w, `<g class="way" data-path="%d" data-nodes="%s">`+"\n", pi, seqIDs(seq))
	off := (float64(pi) - float64(len(pc.seq)-1)/2) * 8
	for i := 1; i < len(seq); i++ {
		a, b := seq[i-1], seq[i]
		if a == b {
			continue
		}
		attrs := fmt.Sprintf(`class="way" stroke="%s" marker-end="url(#%s)" opacity=".85"`, colour(pi), pc.id("arrow"+strconv.Itoa(pi)))
		pc.connect(w, a, b, attrs, off)
	}
	w.WriteString("</g>\n")
}

func seqIDs(seq []*node) string {
	s := make([]string, len(seq))
	for i, n := range seq {
		s[i] = n.id
	}
	return strings.Join(s, " ")
}

func (pc *picture) drawLegend(w *bufio.Writer, H float64) {
	y := H - 18*float64(len(pc.pk.Paths)) - 22
	fmt.Fprintf(w, `<text class="key" x="18" y="%.1f" style="fill:#666">stages by priority (the engine's lists); grey: not registered in this configuration; (IPVS): only while IPVS has a service; ✗: where the packet ended</text>`+"\n", H-10)
	for i, p := range pc.pk.Paths {
		what := "packet"
		if p.Answer {
			what = "answer"
		}
		text := what + ": " + p.Start
		if p.Fate != "" {
			text += " — " + p.Fate
		}
		t, _ := clip(text, 220)
		fmt.Fprintf(w, `<g class="legend" data-path="%d"><line x1="18" y1="%.1f" x2="58" y2="%.1f" stroke="%s" stroke-width="3" marker-end="url(#%s)"/><text x="66" y="%.1f">%s</text></g>`+"\n",
			i, y, y, colour(i), pc.id("arrow"+strconv.Itoa(i)), y+4, esc(t))
		y += 18
	}
}
