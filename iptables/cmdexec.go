package iptables

import (
	"errors"
	"fmt"
	"io"
)

// CmdError is how the iptables command reports a failure: its exact
// stderr and exit status.
type CmdError struct {
	Code   int
	Stderr string
}

func (e *CmdError) Error() string { return e.Stderr }

// cmdProgram is the program name iptables' messages carry.
const cmdProgram = "iptables"

// CmdHint is the line iptables prints after a parameter problem.
const CmdHint = "Try `iptables -h' or 'iptables --help' for more information.\n"

// ParamStderr is xtables_error(PARAMETER_PROBLEM) of the command.
func ParamStderr(msg string) string {
	return fmt.Sprintf("%s %s: %s\n%s", cmdProgram, Version, msg, CmdHint)
}

// CommandError turns a ParseCommandLine or Exec error into the
// command's stderr and exit status.
func CommandError(err error) *CmdError {
	var ce *CmdError
	var pe *ParamError
	var ba *BadArgError
	var re *RestoreError
	var nc *ErrNoChain
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &ba):
		return &CmdError{2, "Bad argument `" + ba.Arg + "'\n" + CmdHint}
	case errors.As(err, &pe):
		return &CmdError{2, ParamStderr(pe.Msg)}
	case errors.As(err, &nc):
		return &CmdError{1, fmt.Sprintf("%s %s: %s\n", cmdProgram, Version, nc.Error())}
	case errors.As(err, &re):
		switch re.Kind {
		case KindParam:
			return &CmdError{2, ParamStderr(re.Msg)}
		case KindBadArg:
			return &CmdError{2, "Bad argument `" + re.Msg + "'\n" + CmdHint}
		case KindKernel:
			return &CmdError{4, fmt.Sprintf("%s %s:  %s\n", cmdProgram, Version, re.Msg)}
		}
		return lineFailedCmd(re.Msg)
	}
	return &CmdError{1, fmt.Sprintf("%s: %v\n", cmdProgram, err)}
}

// lineFailedCmd is nft_strerror's "iptables: MSG." (exit 1).
func lineFailedCmd(msg string) *CmdError {
	if msg == msgBadPolicy {
		return &CmdError{1, "iptables: Bad policy name. Run `dmesg' for more information.\n"}
	}
	return &CmdError{1, "iptables: " + msg + ".\n"}
}

// TableOf returns the table a command line names (filter by default),
// or iptables' error for a table that does not exist.
func (c *CommandLine) TableOf() (TableID, error) {
	name := c.Table
	if name == "" {
		name = "filter"
	}
	id, ok := ParseTable(name)
	if !ok {
		return 0, &CmdError{3, fmt.Sprintf("%s %s: table '%s' does not exist\nPerhaps iptables or your kernel needs to be upgraded.\n", cmdProgram, Version, name)}
	}
	return id, nil
}

// Exec runs a modifying command line (-A -C -D -I -R -F -Z -N -X -P -E)
// on the rule set and returns the new one; rs is left alone. Rules the
// command does not touch keep their counters. -C returns rs itself.
// Errors are *CmdError.
func (rs *Ruleset) Exec(c *CommandLine) (*Ruleset, error) { return rs.ExecEcho(c, nil) }

// ExecEcho is Exec that writes to echo, when not nil, the line iptables
// -v prints for each rule -A, -I, -R, -D or -C names, where iptables-nft
// 1.8.9 prints it: -A before the chain is looked for, -I and -R once
// the chain and index are found, -D and -C once the rule is (up to the
// first that is not).
func (rs *Ruleset) ExecEcho(c *CommandLine, echo io.Writer) (*Ruleset, error) {
	tid, err := c.TableOf()
	if err != nil {
		return nil, err
	}
	if c.Op == 'Z' || (c.Zero && (c.Op == 'L' || c.Op == 'S')) {
		t := rs.table(tid)
		if ch := t.byName[c.Chain]; c.Chain != "" && (ch == nil || c.Op == 'Z' && ch.Builtin && !ch.made) {
			// a builtin chain nothing made is not in the kernel
			return nil, lineFailedCmd(msgNoChain)
		}
		rn := 0
		if c.Op == 'Z' {
			rn = c.RuleNum
		}
		return rs.withTable(tid, t).ZeroCounters(tid, c.Chain, rn), nil
	}
	st := &loadState{l: &Loader{NoFlush: true, Base: rs}, rs: rs.clone(), echo: echo}
	t := st.rs.Tables[tid]
	if t == nil {
		t = newTable(tid)
	} else {
		t = t.clone()
	}
	st.cur = t
	// what iptables-nft 1.8.9 says where the restore path says less: a
	// rule number past the end of a chain that has rules (an empty
	// chain has no rule to find: ENOENT)
	ch := t.byName[c.cmd.chain]
	switch {
	case ch == nil:
	case (c.cmd.op == 'R' || c.cmd.op == 'D' && c.cmd.deleteNum) && c.cmd.rulenum > len(ch.Rules):
		if len(ch.Rules) == 0 {
			return nil, lineFailedCmd(msgNoChain)
		}
		if c.cmd.op == 'R' {
			return nil, lineFailedCmd("Index of replacement too big")
		}
		return nil, lineFailedCmd("Index of deletion too big")
	}
	if err := st.apply(&c.cmd, 1); err != nil {
		return nil, CommandError(err)
	}
	if c.cmd.op == 'C' {
		return rs, nil
	}
	if err := st.commit(1); err != nil {
		return nil, CommandError(err)
	}
	st.rs.Compile()
	st.rs.prepareMemo()
	return st.rs, nil
}

// table returns the table, or an empty one when the set lacks it.
func (rs *Ruleset) table(id TableID) *Table {
	if rs != nil && rs.Tables[id] != nil {
		return rs.Tables[id]
	}
	return newTable(id)
}

// withTable is rs with table id present (an empty one when missing).
func (rs *Ruleset) withTable(id TableID, t *Table) *Ruleset {
	if rs != nil && rs.Tables[id] != nil {
		return rs
	}
	n := rs.clone()
	n.Tables[id] = t
	return n
}

// Table returns the table the set holds, or an empty one (its builtin
// chains, ACCEPT) as iptables shows a table nothing created yet.
func (rs *Ruleset) Table(id TableID) *Table { return rs.table(id) }
