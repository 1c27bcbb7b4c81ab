// Package nat will hold NAT bindings, port and address selection as
// nf_nat_core.c does it, and packet rewriting with incremental checksums.
// Empty until the offline datapath issue.
package nat
