package cli

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
)

// TestEmptyJumpTarget: `ebtables -A FORWARD -j ""` (an empty target) is refused as the
// real ebtables 1.8.9 refuses it ("Invalid target name (too short)",
// exit 2), and so is an argument that C would see as empty because it
// starts with a NUL byte (argv strings end at their first NUL).
func TestEmptyJumpTarget(t *testing.T) {
	for _, target := range []string{"", "\x00", "\x00ACCEPT"} {
		rs, err := (&ebtables.Loader{}).Load("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n")
		if err != nil {
			t.Fatal(err)
		}
		m := &memRules{rs: rs}
		var o, e strings.Builder
		code := Run([]string{"-A", "FORWARD", "-j", target}, m, ebtables.CmdOptions{}, &o, &e)
		want := "ebtables v1.8.9 (nf_tables): Invalid target name (too short)\n"
		if code != 2 || !strings.HasPrefix(e.String(), want) {
			t.Errorf("-j %q: exit %d, stderr %q; want exit 2 and %q", target, code, e.String(), want)
		}
	}
}
