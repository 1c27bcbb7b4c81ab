module github.com/uswitch-lab/uswitch

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/google/gopacket v1.1.19
	github.com/mdlayher/netlink v1.7.2
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/net v0.25.0
	golang.org/x/sys v0.20.0
)

require (
	github.com/google/go-cmp v0.6.0 // indirect
	github.com/josharian/native v1.1.0 // indirect
	github.com/mdlayher/socket v0.4.1 // indirect
	golang.org/x/sync v0.7.0 // indirect
)
