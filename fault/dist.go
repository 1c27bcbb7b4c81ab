package fault

import (
	"math"
	"sync"
)

// Distribution tables, made as iproute2 makes the files tc loads
// (netem/normal.c, pareto.c, paretonormal.c, from NIST Net): the inverse
// of the cumulative distribution, 4096 entries scaled by
// NETEM_DIST_SCALE (8192), read by tabledist at a uniform index. They
// are computed here from the same formulas and the same loops, not
// copied.

const (
	distScale     = 8192  // NETEM_DIST_SCALE (include/uapi/linux/pkt_sched.h)
	distTableSize = 16384 // TABLESIZE of normal.c: the table before every 4th entry is kept
)

// Table is a delay distribution (struct disttable).
type Table struct {
	Name string
	v    []int16
}

// Len is the number of entries.
func (t *Table) Len() int { return len(t.v) }

// At is entry i.
func (t *Table) At(i int) int16 { return t.v[i] }

func clampShort(v int) int16 {
	if v < math.MinInt16 {
		return math.MinInt16
	}
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	return int16(v)
}

func normalCDF(x float64) float64 { return .5 + .5*math.Erf(x/math.Sqrt2) }

// normalInverse is normal.c's table[]: for each of TABLESIZE+1 CDF
// points, the last x on a .00005 grid from −10 whose CDF rounds to it.
func normalInverse() []float64 {
	t := make([]float64, distTableSize+1)
	for x := -10.0; x < 10.05; x += .00005 {
		i := int(math.RoundToEven(distTableSize * normalCDF(x)))
		t[i] = x
	}
	return t
}

func makeNormal() *Table {
	inv := normalInverse()
	v := make([]int16, 0, distTableSize/4)
	for i := 0; i < distTableSize; i += 4 {
		v = append(v, clampShort(int(math.RoundToEven(inv[i]*distScale))))
	}
	return &Table{Name: "normal", v: v}
}

// paretoValue is paretovalue of paretonormal.c (a = 3).
func paretoValue(i int) int {
	i = 65536 - 4*i
	d := float64(i) / 65536
	d = 1.0 / math.Pow(d, 1.0/3.0)
	d -= 1.5
	d *= (4.0 / 3.0) * distScale
	if d > 32767 {
		d = 32767
	}
	return int(math.RoundToEven(d))
}

func makePareto() *Table {
	v := make([]int16, 0, distTableSize/4)
	for i := 65536; i > 0; i -= 16 {
		d := float64(i) / 65536
		d = 1.0 / math.Pow(d, 1.0/3.0)
		d -= 1.5
		d *= (4.0 / 3.0) * distScale
		if d > 32767 {
			d = 32767
		}
		v = append(v, int16(math.RoundToEven(d)))
	}
	return &Table{Name: "pareto", v: v}
}

func makeParetoNormal() *Table {
	inv := normalInverse()
	v := make([]int16, 0, distTableSize/4)
	for i := 0; i < distTableSize; i += 4 {
		norm := int(math.RoundToEven(inv[i] * distScale))
		par := paretoValue(i)
		v = append(v, clampShort((norm+3*par)/4)) // C's division truncates, as Go's
	}
	return &Table{Name: "paretonormal", v: v}
}

var (
	tablesOnce sync.Once
	tables     map[string]*Table
)

// Dist returns the distribution called name (normal, pareto,
// paretonormal; "uniform" is nil: no table), made once.
func Dist(name string) (*Table, bool) {
	if name == "uniform" {
		return nil, true
	}
	tablesOnce.Do(func() {
		tables = map[string]*Table{"normal": makeNormal(), "pareto": makePareto(), "paretonormal": makeParetoNormal()}
	})
	t, ok := tables[name]
	return t, ok
}
