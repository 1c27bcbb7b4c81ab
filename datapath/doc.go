// Package datapath is uswitch's packet pipeline. Its subpackage rules is
// the iptables language (parse, typed IR, print); the packet model, the
// hook graph and the engine come with the offline datapath issue.
package datapath
