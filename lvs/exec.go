package lvs

import (
	"io"
)

// Exec runs one parsed ipvsadm command against a director, as ipvsadm
// does against the kernel: listings (-L in all its forms, -S), -R (rules
// read from stdin, all or nothing) and the configuring commands. now is
// the director's clock (connection expiry for -Lc). Errors are worded as
// ipvsadm prints them.
func Exec(d *Director, c *Command, stdin io.Reader, stdout io.Writer, now int64) error {
	switch {
	case c.Cmd == CmdRestore:
		return Restore(d, stdin, "stdin")
	case c.Cmd == CmdSave:
		return PrintList(stdout, d, c.Format|FmtRule)
	case c.Cmd != CmdList:
		return c.Apply(d)
	case c.Has("connection"):
		d.Conns.Reap(now)
		return PrintConns(stdout, d, now, c.Format)
	case c.Has("timeout"):
		return PrintTimeout(stdout, d)
	case c.Has("daemon"):
		// no sync daemon: ipvsadm prints nothing
		return nil
	case c.Has("service-address"):
		d.Conns.Reap(now)
		return PrintService(stdout, d, c.Service.Key, c.Format)
	}
	d.Conns.Reap(now)
	return PrintList(stdout, d, c.Format)
}
