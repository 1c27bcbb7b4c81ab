package iptables

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Set is one ipset read from `ipset save` output.
type Set struct {
	Name    string
	Type    string   // e.g. "hash:ip"
	Options []string // create options (family inet, hashsize ...)
	Members []string // "add" entries as written

	memberLines []int // the input line of each of Members (ParseIPSetSave)

	// index is the membership structure -m set tests, built from
	// Members on first use (see match_set.go).
	index setIndexOnce
}

// SetName implements IPSet.
func (s *Set) SetName() string { return s.Name }

// SetType implements IPSet.
func (s *Set) SetType() string { return s.Type }

// family6 reports a "family inet6" set (-m set refuses it in an IPv4
// rule; its entries are not read).
func (s *Set) family6() bool {
	for i := 0; i+1 < len(s.Options); i++ {
		if s.Options[i] == "family" && s.Options[i+1] == "inet6" {
			return true
		}
	}
	return false
}

// Sets is a collection of ipsets by name.
type Sets map[string]*Set

// LookupSet implements SetLookup.
func (s Sets) LookupSet(name string) (IPSet, bool) {
	set, ok := s[name]
	if !ok {
		return nil, false
	}
	return set, true
}

// ParseIPSetSave reads `ipset save` output ("create NAME TYPE OPTS" and
// "add NAME ENTRY" lines). file names the input in errors. Every entry
// of a set whose type uswitch matches is read here: an entry that cannot
// be read, or a list:set member that names no set, is an error naming
// its line. A set of a type uswitch does not match is kept (it never
// matches; see SetIndexError).
func ParseIPSetSave(r io.Reader, file string) (Sets, error) {
	sets := Sets{}
	var order []*Set
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "create", "-N", "-exist":
			if len(f) < 3 {
				return nil, fmt.Errorf("%s:%d: create needs a name and a type", file, n)
			}
			if _, dup := sets[f[1]]; dup {
				return nil, fmt.Errorf("%s:%d: set %q created twice", file, n, f[1])
			}
			s := &Set{Name: f[1], Type: f[2], Options: f[3:]}
			sets[f[1]] = s
			order = append(order, s)
		case "add", "-A":
			if len(f) < 3 {
				return nil, fmt.Errorf("%s:%d: add needs a set and an entry", file, n)
			}
			s := sets[f[1]]
			if s == nil {
				return nil, fmt.Errorf("%s:%d: add to unknown set %q", file, n, f[1])
			}
			s.Members = append(s.Members, strings.Join(f[2:], " "))
			s.memberLines = append(s.memberLines, n)
		default:
			return nil, fmt.Errorf("%s:%d: unknown ipset command %q", file, n, f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", file, n+1, err)
	}
	for _, s := range order {
		if _, _, ok := setTypeDims(s.Type); !ok || s.family6() {
			continue
		}
		if idx := s.built(sets); idx.err != "" {
			if idx.errAt >= 0 && idx.errAt < len(s.memberLines) {
				return nil, fmt.Errorf("%s:%d: set %s: %s", file, s.memberLines[idx.errAt], s.Name, idx.err)
			}
			return nil, fmt.Errorf("%s: set %s: %s", file, s.Name, idx.err)
		}
	}
	return sets, nil
}
