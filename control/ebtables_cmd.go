package control

import (
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/ebtables/cli"
)

// ebtablesCmd runs `ebtables ARGS` (Request.Args) against the running
// bridge rule set: a listing reads the set in use; a change builds the
// new set and swaps it in at once (Engine.Swap), under the restore lock
// so no other change interleaves. Rules the command leaves alone keep
// their counters (the new set holds the same rules); -Z zeroes the
// running rules' counters in place, as the kernel does.
func (e *Engine) ebtablesCmd(req Request) Response {
	e.restoreMu.Lock()
	defer e.restoreMu.Unlock()
	var out, errb strings.Builder
	code := cli.Run(req.Args, engineEbtables{e}, ebtables.CmdOptions{}, &out, &errb)
	return Response{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// engineEbtables is the engine's ebtables rule set as a cli.Backend.
type engineEbtables struct{ e *Engine }

func (r engineEbtables) Load() (*ebtables.Ruleset, error) {
	rs := r.e.Eng.Config().Ebtables
	if rs == nil {
		rs = &ebtables.Ruleset{}
	}
	return rs, nil
}

func (r engineEbtables) Store(next *ebtables.Ruleset) error {
	cur := r.e.Eng.Config()
	cur.Ebtables = next
	r.e.Eng.Swap(cur)
	return nil
}
