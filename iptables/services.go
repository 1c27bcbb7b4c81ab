package iptables

// Well-known service names accepted where iptables calls getservbyname
// (port options). Only the common IANA names are known; anything else must
// be given as a number.
var services = map[string]uint16{
	"tcpmux": 1, "echo": 7, "discard": 9, "systat": 11, "daytime": 13, "netstat": 15,
	"qotd": 17, "chargen": 19, "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23,
	"smtp": 25, "time": 37, "whois": 43, "tacacs": 49, "domain": 53, "gopher": 70,
	"finger": 79, "http": 80, "www": 80, "kerberos": 88, "iso-tsap": 102, "pop3": 110,
	"sunrpc": 111, "auth": 113, "ident": 113, "nntp": 119, "ntp": 123, "epmap": 135,
	"netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139, "imap2": 143, "imap": 143,
	"snmp": 161, "snmp-trap": 162, "bgp": 179, "ldap": 389, "https": 443,
	"microsoft-ds": 445, "kpasswd": 464, "submissions": 465, "isakmp": 500, "syslog": 514,
	"printer": 515, "talk": 517, "ntalk": 518, "route": 520, "uucp": 540, "submission": 587,
	"ldaps": 636, "rsync": 873, "ftps-data": 989, "ftps": 990, "telnets": 992, "imaps": 993,
	"pop3s": 995, "socks": 1080, "openvpn": 1194, "ms-sql-s": 1433, "ms-sql-m": 1434,
	"ingreslock": 1524, "l2f": 1701, "radius": 1812, "radius-acct": 1813, "nfs": 2049,
	"mysql": 3306, "ms-wbt-server": 3389, "svn": 3690, "sip": 5060, "sip-tls": 5061,
	"xmpp-client": 5222, "xmpp-server": 5269, "postgresql": 5432, "x11": 6000,
	"bootps": 67, "bootpc": 68, "tftp": 69, "xdmcp": 177, "exec": 512,
	"biff": 512, "login": 513, "who": 513, "shell": 514,
	"mdns": 5353, "ipp": 631, "rtsp": 554, "nntps": 563, "dhcpv6-client": 546,
	"dhcpv6-server": 547, "ldp": 646, "kerberos-adm": 749, "afs3-fileserver": 7000,
	"zabbix-agent": 10050, "zabbix-trapper": 10051, "git": 9418, "hkp": 11371, "amqp": 5672,
	"redis": 6379, "webcache": 8080, "http-alt": 8080,
	"tproxy": 8081, "domain-s": 853, "ipsec-nat-t": 4500,
	"nrpe": 5666, "nut": 3493, "iax": 4569, "munin": 4949, "cfengine": 5308,
	"puppet": 8140,
}

func lookupService(name, proto string) (uint16, bool) {
	p, ok := services[name]
	return p, ok
}
