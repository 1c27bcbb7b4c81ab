package iptables

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
