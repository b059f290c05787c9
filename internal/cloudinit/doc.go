// Package cloudinit builds cloud-init NoCloud seed images: an ISO 9660
// image labelled "cidata" holding the files user-data, meta-data and,
// optionally, network-config, where cloud-init (and the test guest's small
// cloud-init, scripts/guest/vigil-cloud-init) looks for them.
//
// The image comes from a small ISO 9660 writer of our own (iso.go) rather
// than a library: a seed is one root directory with at most three small
// files, which takes under 300 lines, and it has to be byte-for-byte
// reproducible. (github.com/kdomanski/iso9660's writer turns "user-data"
// into "user_data", stamps the current time and writes no path tables.) Like `genisoimage -V cidata -J`, the image carries a
// Joliet supplementary volume descriptor, so that the exact lower-case
// names with '-' survive on every reader (Linux isofs uses Joliet when it
// is there). The primary descriptor's names are the upper-case forms
// ("USER-DATA.;1"), which Linux without Joliet also shows as "user-data".
// Every date on the image is fixed, so the same Seed gives the same bytes,
// and the image ends with 150 sectors of padding, as genisoimage's does,
// which also keeps it above the 64 KiB below which busybox's findfs does
// not look for a label.
package cloudinit
