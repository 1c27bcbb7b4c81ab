package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/iptables"
)

// ftpLab is a client behind uswitch's MASQUERADE and an ftp server on
// the far side, FORWARD dropping what is not ESTABLISHED, RELATED or
// from the client: the server's data connection (active mode) passes
// only as RELATED, which only the FTP helper makes, and reaches the
// client only because the PORT payload was rewritten to uswitch's
// address.
const ftpLab = `
name = "ftp"
[uswitch]
workers = 2
seed = 7
rules = """
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o tw -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -i tc -o tw -m conntrack --ctstate NEW -j ACCEPT
COMMIT
"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "tc"
netns = "P-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "tw"
netns = "P-wan"
addresses = ["203.0.113.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "P-wan"
addresses = ["203.0.113.2/24"]
server = [{ kind = "ftp", port = 21 }]
`

// An FTP session through a lab, the data connection opened both ways
// (PORT and EPRT: the server connects back; PASV and EPSV: the client
// connects), through uswitch's MASQUERADE with the FTP helper.
func TestLabFTP(t *testing.T) {
	needRoot(t)
	c, p := prefixedConfig(t, "ftp.toml", ftpLab)
	l := upLab(t, c)
	cli, wan := p+"-c", p+"-wan"
	for _, mode := range []string{FTPActive, FTPPassive, FTPEPRT, FTPEPSV} {
		got, err := l.FTPGet(cli, "203.0.113.2:21", mode, 5*time.Second)
		if err != nil {
			t.Errorf("%s: %v", mode, err)
			continue
		}
		// the server saw the client as uswitch's address
		if !strings.HasPrefix(got, wan+" 203.0.113.1:") {
			t.Errorf("%s: data %q", mode, got)
		}
	}
	// the data connections were RELATED: the helper rule counted them
	var save strings.Builder
	l.Engine().Config().Rules.Save(&save, iptables.SaveOptions{Counters: true, Table: "filter"})
	if !strings.Contains(save.String(), "] -A FORWARD -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT") ||
		strings.Contains(save.String(), "[0:0] -A FORWARD -m conntrack --ctstate RELATED") {
		t.Errorf("no RELATED packets counted:\n%s", save.String())
	}
}
