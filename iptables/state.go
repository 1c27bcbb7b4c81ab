package iptables

// State is the rule state that outlives a rule-set swap and is shared by
// every packet and worker: named tables such as -m recent's lists and
// -m hashlimit's buckets, which the kernel keys by name per network
// namespace. Each kind of state keeps its own lock. The zero value is
// ready to use.
type State struct {
	stateFields // defined by the matches that keep state
}
