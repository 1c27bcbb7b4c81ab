module github.com/uswitch-lab/uswitch

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/google/gopacket v1.1.19
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.10.0
)

require golang.org/x/net v0.0.0-20190620200207-3b0461eec859 // indirect
