package kerneltest

import "testing"

func TestLineDiff(t *testing.T) {
	if d := LineDiff("a\nb\n", "a\nb\n", 5); d != "" {
		t.Errorf("equal texts: %q", d)
	}
	want := "  line 2\n    kernel:  \"b\"\n    uswitch: \"B\"\n  line 4\n    kernel:  \"\"\n    uswitch: \"d\"\n"
	if d := LineDiff("a\nb\nc", "a\nB\nc\nd", 5); d != want {
		t.Errorf("got %q\nwant %q", d, want)
	}
	if d := LineDiff("1\n2\n3", "x\ny\nz", 2); d != "  line 1\n    kernel:  \"1\"\n    uswitch: \"x\"\n  line 2\n    kernel:  \"2\"\n    uswitch: \"y\"\n" {
		t.Errorf("most 2: %q", d)
	}
}
