package kerneltest

import (
	"math/rand/v2"
	"strings"
)

// RandomRestoreInput makes a random restore input for the differential
// tests of iptables-restore and ebtables-restore: a "*filter" line three
// times in four, then one to six lines drawn from pool, each bent by
// BendRestoreLine, and, when commit is set, a final COMMIT two times in
// three. The draws are made in that order, so a seed gives the same input
// from run to run.
func RandomRestoreInput(r *rand.Rand, pool []string, commit bool) string {
	var b strings.Builder
	if r.IntN(4) != 0 {
		b.WriteString("*filter\n")
	}
	for n := 1 + r.IntN(6); n > 0; n-- {
		l := pool[r.IntN(len(pool))]
		b.WriteString(BendRestoreLine(r, l))
		b.WriteByte('\n')
	}
	if commit && r.IntN(3) != 0 {
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// BendRestoreLine bends a restore line in one of the ways the real
// programs' line reader and word splitter are sensitive to (half of the
// time it is left alone): a leading blank, a trailing carriage return, a
// quote or a tab put anywhere, a stray word at the end, an opening
// bracket in front (a counters prefix that does not close).
func BendRestoreLine(r *rand.Rand, l string) string {
	switch r.IntN(12) {
	case 0:
		return " " + l
	case 1:
		return l + "\r"
	case 2:
		i := r.IntN(len(l) + 1)
		return l[:i] + "\"" + l[i:]
	case 3:
		i := r.IntN(len(l) + 1)
		return l[:i] + "\t" + l[i:]
	case 4:
		return l + " extra"
	case 5:
		return "[" + l
	}
	return l
}
