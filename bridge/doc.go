// Package bridge will hold the bridge FDB, ebtables and the br_netfilter
// glue. Empty until the bridge issue.
package bridge
