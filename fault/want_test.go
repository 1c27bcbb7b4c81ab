package fault

// Exact counts for seed 42 over bigN packets of one flow: a change here
// changes every recorded experiment's draws.
const (
	wantLoss20   = 19985
	wantLoss1    = 945
	wantLossCorr = 120 // 0.12 %: netem's correlation narrows the spread (tc-netem(8))
	wantGE       = 7231
	want4State   = 5015
	wantDup      = 10040
)
