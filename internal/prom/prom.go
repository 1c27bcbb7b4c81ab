// Package prom writes Prometheus' text exposition format: the one writer
// of uswitch's metrics (the lab's, NFQUEUE's and the engine's). A test
// reads what it writes back with Prometheus' own parser (expfmt).
package prom

import (
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Writer writes the text exposition format (version 0.0.4): a family's
// HELP and TYPE lines, then its samples.
//
// Errors are sticky: the first write error stops the writing and is
// returned by Err.
type Writer struct {
	w   io.Writer
	b   []byte
	err error
}

// New makes a writer to w.
func New(w io.Writer) *Writer { return &Writer{w: w} }

// Family starts a metric family: typ is "counter" or "gauge".
func (m *Writer) Family(name, typ, help string) {
	b := append(m.b[:0], "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	b = append(b, '\n')
	m.flush(b)
}

// Sample writes one sample of the family name; labels are name, value
// pairs (an odd one out is dropped).
func (m *Writer) Sample(name string, v uint64, labels ...string) {
	b := append(m.b[:0], name...)
	if len(labels) >= 2 {
		b = append(b, '{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, labels[i]...)
			b = append(b, `="`...)
			b = appendEscaped(b, labels[i+1], true)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, v, 10)
	b = append(b, '\n')
	m.flush(b)
}

// Counter writes a family with one unlabelled sample.
func (m *Writer) Counter(name, help string, v uint64) {
	m.Family(name, "counter", help)
	m.Sample(name, v)
}

// Gauge writes a family with one unlabelled sample.
func (m *Writer) Gauge(name, help string, v uint64) {
	m.Family(name, "gauge", help)
	m.Sample(name, v)
}

// Map writes one sample of the family name per key of by, labelled
// label=key, sorted by key.
func (m *Writer) Map(name, label string, by map[string]uint64) {
	for _, k := range slices.Sorted(maps.Keys(by)) {
		m.Sample(name, by[k], label, k)
	}
}

// Err is the first write error.
func (m *Writer) Err() error { return m.err }

func (m *Writer) flush(b []byte) {
	m.b = b
	if m.err == nil {
		_, m.err = m.w.Write(b)
	}
}

// appendEscaped escapes a HELP text (backslash, newline) or a label value
// (also the double quote), as the exposition format asks.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
