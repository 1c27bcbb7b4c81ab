// Package lvs will hold the IPVS virtual servers, schedulers, connection
// table and the ipvsadm language. Empty until the IPVS issue.
package lvs
