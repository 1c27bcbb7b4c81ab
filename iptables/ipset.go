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

	// index is the membership structure -m set tests, built from
	// Members on first use (see match_set.go).
	index setIndexOnce
}

// SetName implements IPSet.
func (s *Set) SetName() string { return s.Name }

// SetType implements IPSet.
func (s *Set) SetType() string { return s.Type }

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
// "add NAME ENTRY" lines). file names the input in errors.
func ParseIPSetSave(r io.Reader, file string) (Sets, error) {
	sets := Sets{}
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
			sets[f[1]] = &Set{Name: f[1], Type: f[2], Options: f[3:]}
		case "add", "-A":
			if len(f) < 3 {
				return nil, fmt.Errorf("%s:%d: add needs a set and an entry", file, n)
			}
			s := sets[f[1]]
			if s == nil {
				return nil, fmt.Errorf("%s:%d: add to unknown set %q", file, n, f[1])
			}
			s.Members = append(s.Members, strings.Join(f[2:], " "))
		default:
			return nil, fmt.Errorf("%s:%d: unknown ipset command %q", file, n, f[0])
		}
	}
	return sets, sc.Err()
}
