package fault

import "github.com/uswitch-lab/uswitch/route"

// NoRouteEnv is the iptables.Env a fault's match sees where no routes
// are at hand (at the wire, at an NFQUEUE verdict, offline in a trace):
// every address unicast, every reverse path good, and a fixed Rand32 (a
// fault's probabilities come from its own draws, not -m statistic). At
// is the packet's time (Now). The caller owns it and reuses it.
type NoRouteEnv struct{ At int64 }

func (e *NoRouteEnv) AddrType(uint32, string) uint8 { return uint8(route.Unicast) }
func (e *NoRouteEnv) Now() int64                    { return e.At }
func (e *NoRouteEnv) Rand32() uint32                { return 0 }
func (e *NoRouteEnv) ReversePath(src, dst uint32, inIf string, mark uint32, tos uint8, loose, validMark, acceptLocal bool) bool {
	return true
}
