module github.com/uswitch-lab/uswitch

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/google/gopacket v1.1.19
	github.com/mdlayher/netlink v1.7.2
	github.com/prometheus/common v0.74.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/josharian/native v1.1.0 // indirect
	github.com/mdlayher/socket v0.4.1 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pandatix/go-abnf v0.5.5 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	golang.org/x/sync v0.7.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
