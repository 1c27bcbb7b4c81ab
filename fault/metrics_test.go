package fault

import (
	"bytes"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/prom"
)

func TestMetrics(t *testing.T) {
	s, err := NewSet([]Spec{{Name: "l", At: "wire:t0:egress", Action: "loss", Every: 2}}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s.Faults[0], 10)
	var b bytes.Buffer
	s.WriteMetrics(prom.New(&b))
	for _, want := range []string{
		`uswitch_fault_matched_total{fault="l"} 10`,
		`uswitch_fault_acted_total{fault="l"} 5`,
		`uswitch_fault_actions_total{fault="l",action="drop"} 5`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
}
