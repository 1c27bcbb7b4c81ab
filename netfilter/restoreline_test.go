package netfilter

import (
	"reflect"
	"strings"
	"testing"
)

// splitWordsRef is a character-by-character transcription of the
// add_param_to_argv state machine, the reference for SplitWords.
func splitWordsRef(line string) []string {
	words := []string{}
	var cur strings.Builder
	inQuote, escaped := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inQuote {
			switch {
			case escaped:
				cur.WriteByte(c)
				escaped = false
				continue
			case c == '\\':
				escaped = true
				continue
			case c != '"':
				cur.WriteByte(c)
				continue
			}
			inQuote = false
			words = append(words, cur.String())
			cur.Reset()
			continue
		}
		switch c {
		case '"':
			inQuote = true
		case ' ', '\t', '\n':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		`-A INPUT -j ACCEPT`:         {"-A", "INPUT", "-j", "ACCEPT"},
		"  a\t b \n":                 {"a", "b"},
		`--comment "a b"`:            {"--comment", "a b"},
		`--comment "a \"b\" \\ c"`:   {"--comment", `a "b" \ c`},
		`x""y`:                       {"x", "y"},
		`""`:                         {""},
		`a"b c"d`:                    {"ab c", "d"},
		`'single quotes' are\ plain`: {"'single", "quotes'", "are\\", "plain"},
		`"unterminated`:              {"unterminated"},
	} {
		if got := SplitWords(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitWords(%q) = %q, want %q", in, got, want)
		}
		if got := splitWordsRef(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitWordsRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSplitWordsRef(f *testing.F) {
	f.Add(`-m comment --comment "a \"b"x y`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := SplitWords(s), splitWordsRef(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("SplitWords(%q) = %q, reference %q", s, got, want)
		}
	})
}

// cutCountersRef is tokenize_rule_counters run literally: strtok on a
// NUL-terminated copy of the line, the command read as a C string from
// after the first ']'.
func cutCountersRef(line string) (pkts, bytes, rest, need string) {
	if !strings.HasPrefix(line, "[") {
		return "", "", line, ""
	}
	buf := append([]byte(line), 0)
	ptr := strings.IndexByte(line, ']')
	if ptr < 0 {
		return "", "", line, "]"
	}
	save := 0
	strtok := func(from int, delim byte) (string, bool) {
		i := from
		for buf[i] == delim {
			i++
		}
		if buf[i] == 0 {
			save = i
			return "", false
		}
		start := i
		for buf[i] != 0 && buf[i] != delim {
			i++
		}
		tok := string(buf[start:i])
		if buf[i] == delim {
			buf[i] = 0
			save = i + 1
		} else {
			save = i
		}
		return tok, true
	}
	p, ok := strtok(1, ':')
	if !ok {
		return "", "", line, ":"
	}
	b, ok := strtok(save, ']')
	if !ok {
		return "", "", line, "]"
	}
	end := ptr + 1
	for buf[end] != 0 {
		end++
	}
	return p, b, string(buf[ptr+1 : end]), ""
}

func TestCutRuleCounters(t *testing.T) {
	for _, c := range []struct{ in, pkts, bytes, rest, need string }{
		{"-A INPUT", "", "", "-A INPUT", ""},
		{"[1:2] -A INPUT", "1", "2", " -A INPUT", ""},
		{"[::1:2] -A", "1", "2", " -A", ""},
		{"[1:2 -A INPUT", "", "", "[1:2 -A INPUT", "]"},
		{"[12] -A INPUT", "", "", "[12] -A INPUT", "]"},
		{"[1:] -A INPUT", "1", " -A INPUT", " -A INPUT", ""},
		{"[1] -A x:y", "1] -A x", "y", " -A x", ""},
		{"[1:2 x] -A y]z", "1", "2 x", " -A y]z", ""},
		{"[1:]] -A y]z", "1", " -A y", "] -A y", ""},
		{"[1:]", "", "", "[1:]", "]"},
	} {
		p, b, r, n := CutRuleCounters(c.in)
		if p != c.pkts || b != c.bytes || r != c.rest || n != c.need {
			t.Errorf("CutRuleCounters(%q) = %q %q %q %q, want %q %q %q %q", c.in, p, b, r, n, c.pkts, c.bytes, c.rest, c.need)
		}
		if rp, rb, rr, rn := cutCountersRef(c.in); rp != p || rb != b || rr != r || rn != n {
			t.Errorf("reference(%q) = %q %q %q %q", c.in, rp, rb, rr, rn)
		}
	}
}

func FuzzCutRuleCounters(f *testing.F) {
	f.Add("[1:2 x] -A y]z")
	f.Add("[1] -A x:y")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return // a line never holds a NUL (NextRestoreLine cut it)
		}
		p, b, r, n := CutRuleCounters(s)
		if rp, rb, rr, rn := cutCountersRef(s); rp != p || rb != b || rr != r || rn != n {
			t.Fatalf("CutRuleCounters(%q) = %q %q %q %q, reference %q %q %q %q", s, p, b, r, n, rp, rb, rr, rn)
		}
	})
}

func TestNextRestoreLine(t *testing.T) {
	long := strings.Repeat("x", RestoreLineMax+5)
	for _, c := range []struct{ in, line, rest string }{
		{"a\nb\n", "a\n", "b\n"},
		{"a", "a", ""},
		{"\n", "\n", ""},
		{"a\x00b\nc", "a", "c"},
		{long, long[:RestoreLineMax], long[RestoreLineMax:]},
		{long[:RestoreLineMax-1] + "\nz", long[:RestoreLineMax-1] + "\n", "z"},
	} {
		l, r := NextRestoreLine(c.in)
		if l != c.line || r != c.rest {
			t.Errorf("NextRestoreLine(%.20q...) = %.20q, %.20q; want %.20q, %.20q", c.in, l, r, c.line, c.rest)
		}
	}
}
