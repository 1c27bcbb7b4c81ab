package iptables

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// FuzzLoad feeds arbitrary restore input to the loader: it must never
// panic, --test must accept what it accepts, and whatever it accepts must print to a form that loads back to
// the same rule set (compared through its printed form).
func FuzzLoad(f *testing.F) {
	f.Add("*filter\n:INPUT DROP [1:2]\n-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n")
	f.Add("*nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n-A PREROUTING -j X\n-A X -m comment --comment \"a \\\"b\\\"\" -j RETURN\nCOMMIT\n")
	f.Add("*filter\n-A INPUT ! -i eth+ -p udp ! --sport 1:2 -g FOO\nCOMMIT\n")
	f.Add("*filter\n-A INPUT -m comment --comment \"abc\n-A INPUT -j ACCEPT\nCOMMIT\n")
	f.Add("*filter\n:X - [0:0]\n-A X -j X\n-A INPUT -j X\nCOMMIT\n")
	f.Add("*filter\n-A INPUT -i \"a b\" -o \"c \"\nCOMMIT\n")
	f.Add("*mangle\n[5:6] -A PREROUTING -f -d 1.2.3.4/255.0.255.0 -j ACCEPT\n-I PREROUTING 1 -j DROP\n-D PREROUTING 2\nCOMMIT\n")
	// seed with the corpus when it is there
	if dir, ok := kerneltest.CorpusDir("iptables-save"); ok {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
					f.Add(string(data))
				}
			}
			return nil
		})
	}
	f.Fuzz(func(t *testing.T, input string) {
		ld := &Loader{Counters: true, Sets: Sets{}}
		rs, err := ld.LoadString(input)
		// --test refuses only what reading and parsing refuse: never
		// what loads without it
		_, terr := (&Loader{Counters: true, Sets: Sets{}, Test: true}).LoadString(input)
		if err == nil && terr != nil {
			t.Fatalf("loads, but not with --test: %v", terr)
		}
		if err != nil {
			if re, ok := err.(*RestoreError); ok && re.Line <= 0 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		var a strings.Builder
		if err := rs.Save(&a, SaveOptions{Counters: true}); err != nil {
			t.Fatal(err)
		}
		if commentWithNewline(rs) {
			// a quoted comment that runs to the end of its line keeps
			// the newline, and iptables-save prints it inside the quotes
			// ("abc<NL>" on two lines, before the target), which iptables-restore refuses
			// ("Bad argument `<NL>'"): the kernel's iptables-save 1.8.9
			// prints the same, so only the printed form is checked
			if !strings.Contains(a.String(), "\n\"") {
				t.Fatalf("a comment with a newline is not printed as the kernel prints it:\n%s", a.String())
			}
			return
		}
		// a quote left open to the end of the line keeps the newline in
		// an interface name too ("-i\"" names "-i<NL>"), and quotes
		// put blanks and tabs in one ("-i \"a b\"", "\"-i \"" names
		// "-i "): iptables-save prints such a name raw, and
		// iptables-restore reads that back without the newline or the
		// blanks at its ends (the printed line ends there, a blank line
		// follows a newline); the kernel's iptables 1.8.9 does the same
		// ("-i -i<NL><NL>", then "-i -i<NL>"; "-i -i ", then "-i -i";
		// TestNewlineNameAgainstKernel), so the printed form only needs
		// to hold the name raw, and the second one to be the fixed
		// point. When more follows on the line, a blank in the name
		// ("-i a b": Bad argument `b') or the rule's rest after a
		// newline ("-j LOG -i0\"": its next line starts " -j LOG", no
		// command specified), the printed form does not load back, in
		// the real tool too; the error must then name its line
		name, nl := oddIface(rs)
		if nl && !strings.Contains(a.String(), " "+name) {
			t.Fatalf("an interface name %q is not printed raw, as the kernel prints it:\n%s", name, a.String())
		}
		rs2, err := ld.LoadString(a.String())
		if err != nil {
			// (a name of white space alone, "-i \"" naming "<NL>",
			// prints "-i " and a blank line: option "-i" requires an
			// argument, in iptables 1.8.9 too)
			if re, ok := err.(*RestoreError); nl && ok && re.Line > 0 && (strings.ContainsAny(name, " \t") || moreAfter(a.String(), " "+name) || strings.TrimSpace(name) == "") {
				return
			}
			t.Fatalf("printed form does not load: %v\ninput:\n%s\nprinted:\n%s", err, input, a.String())
		}
		var b strings.Builder
		rs2.Save(&b, SaveOptions{Counters: true})
		if !nl {
			if a.String() != b.String() {
				t.Fatalf("printed form is not a fixed point:\n%s\n---\n%s", a.String(), b.String())
			}
			return
		}
		rs3, err := ld.LoadString(b.String())
		if err != nil {
			t.Fatalf("second printed form does not load: %v\n%s", err, b.String())
		}
		var c strings.Builder
		rs3.Save(&c, SaveOptions{Counters: true})
		if b.String() != c.String() {
			t.Fatalf("second printed form is not a fixed point:\n%s\n---\n%s", b.String(), c.String())
		}
	})
}

// moreAfter reports whether an occurrence of s in text is followed by
// more than a line's end.
func moreAfter(text, s string) bool {
	for i := strings.Index(text, s); i >= 0; {
		if rest := text[i+len(s):]; rest != "" && rest[0] != '\n' {
			return true
		}
		j := strings.Index(text[i+1:], s)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// oddIface returns an interface name (-i/-o) of a rule of rs that
// holds a newline, a blank or a tab, which iptables-save prints raw.
func oddIface(rs *Ruleset) (string, bool) {
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				for _, n := range []string{r.IP.In.Name, r.IP.Out.Name} {
					if strings.ContainsAny(n, "\n \t") {
						return n, true
					}
				}
			}
		}
	}
	return "", false
}

// commentWithNewline reports whether a rule of rs has a comment holding
// a newline (a quote left open to the end of its line).
func commentWithNewline(rs *Ruleset) bool {
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				for _, m := range r.Matches {
					if cm, ok := m.(*CommentMatch); ok && strings.Contains(cm.Text, "\n") {
						return true
					}
				}
			}
		}
	}
	return false
}

// FuzzSplitWords checks the tokenizer never panics and that words
// printed with SaveString come back whole.
func FuzzSplitWords(f *testing.F) {
	f.Add(`-m comment --comment "a b \" c"`)
	f.Add(`""`)
	f.Fuzz(func(t *testing.T, s string) {
		netfilter.SplitWords(s)
		if strings.ContainsAny(s, "\x00\n") {
			return
		}
		var w SaveWriter
		SaveString(&w, s)
		words := netfilter.SplitWords(w.String())
		if s == "" {
			if len(words) != 1 || words[0] != "" {
				t.Fatalf("empty string printed as %q reads back as %q", w.String(), words)
			}
			return
		}
		if len(words) != 1 || words[0] != s {
			t.Fatalf("%q printed as %q reads back as %q", s, w.String(), words)
		}
	})
}
