package lvs

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRestoreBadInput: a line over 64 KiB, a NUL byte and binary
// garbage in an `ipvsadm -R` file are errors naming the file and line,
// with the bad bytes escaped: never a raw control character, never the
// whole long line; the director is unchanged.
func TestRestoreBadInput(t *testing.T) {
	garbage := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(r.UintN(256))
	}
	const good = "-A -t 10.0.0.1:80 -s rr\n"
	for _, tc := range []struct {
		name, in string
		want     string // the error's text (prefix, when it ends with "...")
	}{
		{"line of 70 KiB", good + "-a -t 10.0.0.1:80 -r 10.0.1.1 " + strings.Repeat("x", 70<<10) + "\n",
			"f:2: line longer than 65536 bytes: -a -t 10.0.0.1:80 -r 10.0.1.1 " + strings.Repeat("x", 34) + "..."},
		{"line of 70 KiB at the end", good + strings.Repeat("#", 70<<10),
			"f:2: line longer than 65536 bytes: ################################################################..."},
		{"NUL byte", good + "-a -t 10.0.0.1:80 -r 10.0.1.1\x00 -m\n",
			`f:2: NUL byte '\x00' at byte 30: "-a -t 10.0.0.1:80 -r 10.0.1.1\x00 -m"`},
		{"NUL in a comment", "# a\x00b\n" + good,
			`f:1: NUL byte '\x00' at byte 4: "# a\x00b"`},
		{"escape character", good + "-A -t 10.0.0.2:80 \x1b[31m\n",
			`f:2: control character '\x1b' at byte 19: "-A -t 10.0.0.2:80 \x1b[31m"`},
		{"invalid UTF-8", good + "-A -t 10.0.0.2:80 -s \xff\xfe\n",
			`f:2: Scheduler or persistence engine not found: "-A -t 10.0.0.2:80 -s \xff\xfe"`},
		{"invalid UTF-8 in the message", good + "--set 1 2 \xff\n",
			`f:2: invalid timeout value ` + "`" + `\xff' specified: "--set 1 2 \xff"`},
		{"binary garbage", good + string(garbage), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDirector()
			err := Restore(d, strings.NewReader(tc.in), "f")
			if err == nil {
				t.Fatal("no error")
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Errorf("not a *RuleError: %v", err)
			}
			msg := err.Error()
			if tc.want != "" && msg != tc.want {
				t.Errorf("got  %s\nwant %s", msg, tc.want)
			}
			if tc.want == "" && !strings.HasPrefix(msg, "f:2: ") {
				t.Errorf("the error does not name line 2: %s", msg)
			}
			if len(msg) > 300 {
				t.Errorf("an error of %d bytes: %.300s", len(msg), msg)
			}
			for _, c := range []byte(msg) {
				if c < 0x20 || c == 0x7f || c >= 0x80 {
					t.Fatalf("a raw byte %#x in the error: %q", c, msg)
				}
			}
			if !d.Empty() {
				t.Error("director changed")
			}
		})
	}
	// a line of exactly 64 KiB is still read (and refused for what it says)
	d := NewDirector()
	err := Restore(d, strings.NewReader("#"+strings.Repeat("x", 64<<10-1)+"\n"+good), "f")
	if err != nil {
		t.Errorf("a 64 KiB comment line: %v", err)
	}
}
