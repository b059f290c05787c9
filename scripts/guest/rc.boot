#!/bin/sh
# Vigil guest: runs once after rc.sysinit, in parallel with the console
# shell: network (DHCP on every ethernet interface), then cloud-init.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

nics=0
for path in /sys/class/net/*; do
	[ -e "$path/device" ] || continue # skip lo and virtual interfaces
	ifc=${path##*/}
	nics=$((nics + 1))
	ip link set "$ifc" up
	# The handler prints "VIGIL-GUEST-IP <iface> <ip>/<prefix> gw=<router>".
	udhcpc -i "$ifc" -s /etc/vigil/udhcpc.script -t 5 -T 1 -n -q -f \
		>/run/vigil/udhcpc-"$ifc".log 2>&1 || echo "VIGIL-GUEST-IP $ifc none"
done
[ "$nics" = 0 ] && echo "VIGIL-GUEST-IP none"

/sbin/vigil-cloud-init

: >/run/vigil/boot-done
