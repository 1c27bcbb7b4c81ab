package rules

// stateFields collects the per-match shared state kinds (see State).
// Matches add their fields here.
type stateFields struct{}
