package control

import (
	"strings"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/iptables/cli"
)

// iptablesCmd runs `iptables ARGS` (Request.Args) against the running
// rule set: a listing reads the set in use; a change builds the new set
// and swaps it in at once (Engine.Swap), under the restore lock so no
// other change interleaves. Rules the command leaves alone keep their
// counters.
func (e *Engine) iptablesCmd(req Request) Response {
	e.mu().Lock()
	defer e.mu().Unlock()
	var out, errb strings.Builder
	code := cli.Run(req.Args, engineRules{e}, hostNames, &out, &errb)
	return Response{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// hostNames answers -L's lookups from the host's /etc files.
var hostNames = &cli.FileNames{}

// engineRules is the engine's rule set as a cli.Backend.
type engineRules struct{ e *Engine }

func (r engineRules) Load() (*iptables.Ruleset, error) { return r.e.Eng.Config().Rules, nil }

func (r engineRules) Store(next *iptables.Ruleset) error {
	cur := r.e.Eng.Config()
	cur.Rules = next
	r.e.Eng.Swap(cur)
	return nil
}
