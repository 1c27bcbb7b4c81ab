package lvs

// The listings of ipvsadm 1.31 (ipvsadm.c list_all, print_title,
// print_service_entry, print_tunnel_rule, print_largenum, list_conn,
// print_conn, list_timeout), byte for byte as printed with -n.
//
// Names are never resolved: without FmtNumeric the output is the
// numeric one (ipvsadm -L on a host with neither reverse DNS nor an
// /etc/services entry prints the same). With --nosort the dests come in
// the kernel's list order (newest first, as the netlink dump walks
// svc->destinations) and the services in the order they were added (the
// kernel's is its hash table order, not modelled).

import (
	"bufio"
	"fmt"
	"io"
)

// ConnTabSize is the connection hash size ipvsadm's header shows
// (IP_VS_CONN_TAB_SIZE, CONFIG_IP_VS_TAB_BITS=12).
const ConnTabSize = 4096

// PrintList is `ipvsadm -L` (or -S with FmtRule): every service.
func PrintList(w io.Writer, d *Director, f ListFormat) error {
	bw := bufio.NewWriter(w)
	if f&FmtRule == 0 {
		fmt.Fprintf(bw, "IP Virtual Server version 1.2.1 (size=%d)\n", ConnTabSize)
	}
	list := d.Services()
	if f&FmtNoSort == 0 {
		list = SortedServices(list)
	}
	printTitle(bw, f)
	for _, svc := range list {
		printService(bw, svc, f)
	}
	return bw.Flush()
}

// Save is `ipvsadm -Sn`: the rules that rebuild d's services.
func Save(w io.Writer, d *Director) error { return PrintList(w, d, FmtRule|FmtNumeric) }

// PrintService is `ipvsadm -L -t|-u|-f service`: the title and one
// service, without the version line.
func PrintService(w io.Writer, d *Director, k ServiceKey, f ListFormat) error {
	svc := d.Service(k)
	if svc == nil {
		return failf("No such service")
	}
	bw := bufio.NewWriter(w)
	printTitle(bw, f)
	printService(bw, svc, f)
	return bw.Flush()
}

// PrintTimeout is `ipvsadm -L --timeout`.
func PrintTimeout(w io.Writer, d *Director) error {
	t := d.Timeouts()
	_, err := fmt.Fprintf(w, "Timeout (tcp tcpfin udp): %d %d %d\n", t.TCP, t.TCPFin, t.UDP)
	return err
}

func printTitle(w io.Writer, f ListFormat) {
	const svcCol = "Prot LocalAddress:Port"
	switch {
	case f&FmtStats != 0:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", svcCol,
			"Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case f&FmtRate != 0:
		fmt.Fprintf(w, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", svcCol,
			"CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case f&FmtThresholds != 0:
		fmt.Fprintf(w, "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n", svcCol,
			"Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case f&FmtPersistConn != 0:
		fmt.Fprintf(w, "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n", svcCol,
			"Weight", "PersistConn", "ActiveConn", "InActConn")
	case f&FmtTunInfo != 0:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n"+
			"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	case f&FmtRule == 0:
		fmt.Fprint(w, "Prot LocalAddress:Port Scheduler Flags\n"+
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
}

// largenum is print_largenum: 9 columns, scaled to K/M/G/T past 10^8
// unless exact.
func largenum(w io.Writer, i uint64, f ListFormat) {
	if f&FmtExact != 0 {
		s := fmt.Sprint(i)
		width := len(s) + 1
		if len(s) <= 8 {
			width = 9
		}
		fmt.Fprintf(w, "%*d", width, i)
		return
	}
	switch {
	case i < 100000000:
		fmt.Fprintf(w, "%9d", i)
	case i < 1000000000:
		fmt.Fprintf(w, "%8dK", i/1000)
	case i < 100000000000:
		fmt.Fprintf(w, "%8dM", i/1000000)
	case i < 100000000000000:
		fmt.Fprintf(w, "%8dG", i/1000000000)
	default:
		fmt.Fprintf(w, "%8dT", i/1000000000000)
	}
}

// schedFlagNames is print_sched_flags: the flag names as sh and mh
// call them, flag-N for other schedulers.
func schedFlagNames(svc *Service) string {
	var names [3]string
	switch svc.SchedName {
	case "sh", "mh":
		names = [3]string{svc.SchedName + "-fallback", svc.SchedName + "-port", ""}
	default:
		names = [3]string{"flag-1", "flag-2", "flag-3"}
	}
	s := ""
	for i, bit := range []uint32{SvcSched1, SvcSched2, SvcSched3} {
		if svc.Flags&bit != 0 && names[i] != "" {
			if s != "" {
				s += ","
			}
			s += names[i]
		}
	}
	return s
}

// fwmarkString prints a mark as ipvsadm's "%d" of an unsigned does.
func fwmarkString(m uint32) string { return fmt.Sprint(int32(m)) }

func protoOption(p uint8) string {
	switch p {
	case ProtoTCP:
		return "-t"
	case ProtoUDP:
		return "-u"
	case ProtoSCTP:
		return "--sctp-service"
	}
	return "--xxx-service"
}

func protoColumn(p uint8) string {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		return ProtoName(p)
	}
	return "?"
}

func fwdSwitch(m FwdMethod) string {
	switch m {
	case Masq:
		return "-m"
	case Tunnel:
		return "-i"
	case LocalNode, Route:
		return "-g"
	}
	return "(null)"
}

func fwdColumn(m FwdMethod) string {
	switch m {
	case Masq, LocalNode, Tunnel, Route:
		return m.String()
	}
	return "(null)"
}

var (
	tunFlagShort = [...]string{"-c", "+c", "r+c"}
	tunFlagOpt   = [...]string{"--tun-nocsum", "--tun-csum", "--tun-remcsum"}
)

func tunFlag(tab []string, f uint16) string {
	if int(f) < len(tab) {
		return tab[f]
	}
	return "(null)"
}

// tunInfo is fwd_tun_info: "ipip", "gue:PORT:FLAGS", "gre:FLAGS", or
// "n/a" for other methods.
func tunInfo(dst *Dest) string {
	dp := dst.P()
	if dp.Fwd != Tunnel {
		return "n/a"
	}
	switch dp.TunType {
	case TunIPIP:
		return "ipip"
	case TunGUE:
		return fmt.Sprintf("gue:%d:%s", dp.TunPort, tunFlag(tunFlagShort[:], dp.TunFlags))
	case TunGRE:
		return "gre:" + tunFlag(tunFlagShort[:], dp.TunFlags)
	}
	return "n/a"
}

func printService(w io.Writer, svc *Service, f ListFormat) {
	var name string
	switch {
	case svc.FwMark != 0 && f&FmtRule != 0:
		name = "-f " + fwmarkString(svc.FwMark)
	case svc.FwMark != 0:
		name = "FWM  " + fwmarkString(svc.FwMark)
	case f&FmtRule != 0:
		name = fmt.Sprintf("%s %s:%d", protoOption(svc.Proto), Addr(svc.Addr), svc.Port)
	default:
		name = fmt.Sprintf("%-4s %s:%d", protoColumn(svc.Proto), Addr(svc.Addr), svc.Port)
		if len(name) > 33 {
			name = name[:33]
		}
	}
	const schedBits = SvcSched1 | SvcSched2 | SvcSched3
	switch {
	case f&FmtRule != 0:
		fmt.Fprintf(w, "-A %s -s %s", name, svc.SchedName)
		if svc.Flags&SvcPersistent != 0 {
			fmt.Fprintf(w, " -p %d", svc.Timeout)
			if svc.Netmask != 0xffffffff {
				fmt.Fprintf(w, " -M %s", Addr(svc.Netmask))
			}
		}
		if svc.PE != "" {
			fmt.Fprintf(w, " --pe %s", svc.PE)
		}
		if svc.Flags&SvcOnePacket != 0 {
			fmt.Fprint(w, " -o")
		}
		if svc.Flags&schedBits != 0 {
			fmt.Fprintf(w, " -b %s", schedFlagNames(svc))
		}
	case f&FmtStats != 0:
		st := svc.Stats.Snapshot()
		fmt.Fprintf(w, "%-33s", name)
		for _, v := range []uint64{st.Conns, st.InPkts, st.OutPkts, st.InBytes, st.OutBytes} {
			largenum(w, v, f)
		}
	case f&FmtRate != 0:
		r := svc.Rate
		fmt.Fprintf(w, "%-33s", name)
		for _, v := range []uint64{r.CPS, r.InPPS, r.OutPPS, r.InBPS, r.OutBPS} {
			largenum(w, v, f)
		}
	default:
		fmt.Fprintf(w, "%s %s", name, svc.SchedName)
		if svc.Flags&schedBits != 0 {
			fmt.Fprintf(w, " (%s)", schedFlagNames(svc))
		}
		if svc.Flags&SvcPersistent != 0 {
			fmt.Fprintf(w, " persistent %d", svc.Timeout)
			if svc.Netmask != 0xffffffff {
				fmt.Fprintf(w, " mask %s", Addr(svc.Netmask))
			}
			if svc.PE != "" {
				fmt.Fprintf(w, " pe %s", svc.PE)
			}
		}
		if svc.Flags&SvcOnePacket != 0 {
			fmt.Fprint(w, " ops")
		}
	}
	fmt.Fprint(w, "\n")

	dests := svc.Dests
	if f&FmtNoSort == 0 {
		dests = SortedDests(dests)
	}
	for _, dst := range dests {
		dname := dst.AddrPort().String()
		if f&FmtRule == 0 && len(dname) > 28 {
			dname = dname[:28]
		}
		weight := dst.Weight.Load()
		dp := dst.P()
		active, inact := uint32(dst.ActiveConns.Load()), uint32(dst.InactConns.Load())
		switch {
		case f&FmtRule != 0:
			fmt.Fprintf(w, "-a %s -r %s %s -w %d", name, dname, fwdSwitch(dp.Fwd), weight)
			if dp.Fwd == Tunnel {
				switch dp.TunType {
				case TunGRE:
					fmt.Fprintf(w, " --tun-type gre %s", tunFlag(tunFlagOpt[:], dp.TunFlags))
				case TunGUE:
					fmt.Fprintf(w, " --tun-type gue --tun-port %d %s", dp.TunPort, tunFlag(tunFlagOpt[:], dp.TunFlags))
				case TunIPIP:
					fmt.Fprint(w, " --tun-type ipip")
				}
			}
			fmt.Fprint(w, "\n")
		case f&FmtStats != 0:
			st := dst.Stats.Snapshot()
			fmt.Fprintf(w, "  -> %-28s", dname)
			for _, v := range []uint64{st.Conns, st.InPkts, st.OutPkts, st.InBytes, st.OutBytes} {
				largenum(w, v, f)
			}
			fmt.Fprint(w, "\n")
		case f&FmtRate != 0:
			r := dst.Rate
			fmt.Fprintf(w, "  -> %-28s %8d %8d %8d", dname, r.CPS, r.InPPS, r.OutPPS)
			largenum(w, r.InBPS, f)
			largenum(w, r.OutBPS, f)
			fmt.Fprint(w, "\n")
		case f&FmtThresholds != 0:
			fmt.Fprintf(w, "  -> %-28s %-10d %-10d %-10d %-10d\n", dname, dp.UThreshold, dp.LThreshold, active, inact)
		case f&FmtPersistConn != 0:
			fmt.Fprintf(w, "  -> %-28s %-9d %-11d %-10d %-10d\n", dname, uint32(weight),
				uint32(dst.PersistConns.Load()), active, inact)
		case f&FmtTunInfo != 0:
			fmt.Fprintf(w, "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", dname, fwdColumn(dp.Fwd), tunInfo(dst),
				weight, active, inact)
		default:
			fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", dname, fwdColumn(dp.Fwd), weight, active, inact)
		}
	}
}

// connProtoName is the kernel's ip_vs_proto_name, the first column of
// /proc/net/ip_vs_conn that ipvsadm -Lc prints as it is.
func connProtoName(p uint8) string {
	switch p {
	case 0:
		return "IP"
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		return ProtoName(p)
	case 1:
		return "ICMP"
	}
	return fmt.Sprintf("IP_%d", p)
}

// PrintConns is `ipvsadm -Lnc` (with FmtPersistConn the pe name and
// data columns, always empty here): the connections, templates included,
// in the table's order; expire is the time left as mm:ss (whole
// seconds, rounded down as the kernel's /proc file does).
func PrintConns(w io.Writer, d *Director, now int64, f ListFormat) error {
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, "IPVS connection entries\n")
	if f&FmtPersistConn != 0 {
		fmt.Fprintf(bw, "pro expire %-11s %-18s %-18s %-18s %-16s %s\n",
			"state", "source", "virtual", "destination", "pe name", "pe_data")
	} else {
		fmt.Fprintf(bw, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	}
	d.Conns.Range(now, func(c *Conn) bool {
		printConn(bw, c, now)
		return true
	})
	return bw.Flush()
}

func printConn(w io.Writer, c *Conn, now int64) {
	secs := uint32(c.Expires(now) / 1e9)
	vaddr := c.VAddr
	if vaddr == 0 && c.FwMark != 0 {
		// a fwmark template keeps the mark in vaddr
		vaddr = c.FwMark
	}
	ap := func(a uint32, p uint16) string { return fmt.Sprintf("%s:%d", Addr(a), p) }
	// the pe name/data columns exist only when the kernel line has
	// them (a pe is in use), never here
	fmt.Fprintf(w, "%-3s %-6s %-11s %-18s %-18s %s\n", connProtoName(c.Proto),
		fmt.Sprintf("%02d:%02d", secs/60, secs%60), c.StateName(),
		ap(c.CAddr, c.CPort), ap(vaddr, c.VPort), ap(c.DAddr, c.DPort))
}
