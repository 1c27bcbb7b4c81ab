// Package web serves a running lab's live page (`uswitch lab --web
// ADDR`): the lab's topology (namespaces, uswitch's devices, addresses,
// bridges), the per-rule packet counters updating live, the conntrack
// table, and the last traced packets drawn as `uswitch trace --svg`
// draws them (package picture), updated as packets pass. Updates are
// server-sent events; the page has its script and style inside it and
// loads nothing else, so it works offline.
//
// It listens on a loopback address unless told otherwise (Listen):
// the page shows the lab's traffic and rule set, and it has no
// authentication.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/picture"
)

// Topology is what the page shows of the lab's layout.
type Topology struct {
	Name string
	// Interfaces are uswitch's own devices (its end of each TUN or
	// TAP).
	Interfaces []Interface
	Bridges    []Bridge
	Namespaces []Namespace
}

// Interface is one of uswitch's devices.
type Interface struct {
	Name, Netns, Kind, Bridge string
	Addresses                 []string
}

// Bridge is one of uswitch's bridges.
type Bridge struct {
	Name      string
	Addresses []string
	Ports     []string
}

// Namespace is a namespace of the lab.
type Namespace struct {
	Name      string
	Addresses []string
	Routes    []string
	Servers   []string
}

// Source is what the page reads.
type Source struct {
	Topology Topology
	Engine   *datapath.Engine
	// Conntrack is the conntrack table as `conntrack -L` prints it.
	Conntrack func() string
	// Paths subscribes to the path events of traced packets (link's
	// Datapath.SubscribePaths); nil: no pictures.
	Paths func(buffer int) (<-chan []datapath.PathEvent, func())
}

// Keep is how many traced packets the page shows.
const Keep = 4

// Interval is how often the page's counters and conntrack table are
// sent.
const Interval = 500 * time.Millisecond

// Server is the page's HTTP server.
type Server struct {
	src Source
	mu  sync.Mutex // guards the fields below
	// last are the pictures of the last traced packets, newest last
	last []shown
	seq  int
	// subs are the open event streams, told of a new picture
	subs map[chan struct{}]struct{}
}

type shown struct {
	N       int    `json:"n"`
	Summary string `json:"summary"`
	SVG     string `json:"svg"`
}

// New makes the server; Run feeds it the traced packets.
func New(src Source) *Server {
	return &Server{src: src, subs: map[chan struct{}]struct{}{}}
}

// Listen listens on addr for the page: a loopback address unless any
// is set (an address other hosts reach shows them the lab's traffic
// and rules, with no authentication).
func Listen(addr string, any bool) (net.Listener, error) {
	if err := CheckAddr(addr, any); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// CheckAddr refuses an address Listen would refuse.
func CheckAddr(addr string, any bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--web %s: %v", addr, err)
	}
	if any {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--web %s: not a loopback address (the page has no authentication; --web-any serves it on any address)", addr)
}

// Run reads traced packets until ctx ends, keeping the last Keep
// pictures and telling the open pages.
func (s *Server) Run(ctx context.Context) {
	if s.src.Paths == nil {
		<-ctx.Done()
		return
	}
	ch, cancel := s.src.Paths(64)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case evs := <-ch:
			s.add(evs)
		}
	}
}

// add draws a traced packet's events and keeps the picture.
func (s *Server) add(evs []datapath.PathEvent) {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	pk := picture.Group("packet "+strconv.Itoa(n), evs)
	var b bytes.Buffer
	if err := picture.SVG(&b, s.src.Engine.Layout(), pk, picture.Options{IDPrefix: "p" + strconv.Itoa(n) + "-"}); err != nil {
		return
	}
	s.mu.Lock()
	s.last = append(s.last, shown{N: n, Summary: pk.Summary(), SVG: b.String()})
	if len(s.last) > Keep {
		s.last = s.last[len(s.last)-Keep:]
	}
	for c := range s.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// Handler serves the page (/), its event stream (/events) and the
// state as JSON (/state).
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/", s.page)
	m.HandleFunc("/events", s.events)
	m.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.state(true))
	})
	return m
}

// Counter is one rule's (or policy's) counters.
type Counter struct {
	ID      string `json:"id"`
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Rule    int    `json:"rule"` // 0: the policy
	Text    string `json:"text"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// State is what an update carries.
type State struct {
	Counters  []Counter `json:"counters"`
	Conntrack string    `json:"conntrack"`
	// Packets are the last pictures, when asked for
	Packets []shown `json:"packets,omitempty"`
	Seq     int     `json:"seq"`
}

// counters lists the rule set's counters, table by table and chain by
// chain.
func (s *Server) counters() []Counter {
	rs := s.src.Engine.Config().Rules
	if rs == nil {
		return nil
	}
	var out []Counter
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		tn := t.ID.String()
		for _, ch := range t.Chains {
			if ch.Builtin {
				c := ch.LiveCounters()
				out = append(out, Counter{ID: tn + "/" + ch.Name + "/0", Table: tn, Chain: ch.Name, Text: "policy " + policy(ch.Policy), Packets: c.Packets, Bytes: c.Bytes})
			}
			for i, r := range ch.Rules {
				c := r.LiveCounters()
				out = append(out, Counter{ID: tn + "/" + ch.Name + "/" + strconv.Itoa(i+1), Table: tn, Chain: ch.Name, Rule: i + 1,
					Text: strings.TrimSpace(iptables.RuleString(r)), Packets: c.Packets, Bytes: c.Bytes})
			}
		}
	}
	return out
}

func policy(v iptables.Verdict) string {
	if v == iptables.VerdictDrop {
		return "DROP"
	}
	return "ACCEPT"
}

func (s *Server) state(pics bool) State {
	st := State{Counters: s.counters()}
	if s.src.Conntrack != nil {
		st.Conntrack = s.src.Conntrack()
	}
	s.mu.Lock()
	st.Seq = s.seq
	if pics {
		st.Packets = append([]shown(nil), s.last...)
	}
	s.mu.Unlock()
	return st
}

// events streams "state" events every Interval and "packets" events
// when a traced packet was drawn, until the client goes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, c)
		s.mu.Unlock()
	}()
	t := time.NewTicker(Interval)
	defer t.Stop()
	send := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}
	if send("state", s.state(false)) != nil || send("packets", s.state(true).Packets) != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			if send("state", s.state(false)) != nil {
				return
			}
		case <-c:
			if send("packets", s.state(true).Packets) != nil {
				return
			}
		}
	}
}

// Serve serves the page on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	go s.Run(ctx)
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func join(s []string) string { return strings.Join(s, ", ") }
