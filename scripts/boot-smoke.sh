#!/usr/bin/env bash
# boot-smoke.sh: boots Vigil's guest image under QEMU (q35, TCG) and checks
# the boot marker, DHCP, NoCloud cloud-init (ISO CD-ROM and vfat disk seeds),
# ACPI power-off over QMP, console poweroff, ctrl-alt-del, panic (pvpanic)
# and the rootfs.img root-disk variant. Prints boot times.
#
#   scripts/boot-smoke.sh [GUEST_DIR] [--keep]
#
# GUEST_DIR defaults to what build-guest-image.sh uses; the image is built
# (or found up to date) first. Takes 35-40 s on 2 cores (8 scenarios).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
args=()
dir=
for a in "$@"; do
  case "$a" in
  --*) args+=("$a") ;;
  *) dir=$a ;;
  esac
done
"$HERE/ensure-qemu.sh"
dir=$("$HERE/build-guest-image.sh" ${dir:+"$dir"})
exec python3 "$HERE/boot-smoke.py" "$dir" ${args[@]+"${args[@]}"}
