#!/usr/bin/env bash
# build-guest-image.sh: builds Vigil's test guest from Debian packages only.
#
#   scripts/build-guest-image.sh [OUTDIR]
#
# OUTDIR defaults to $VIGIL_GUEST_DIR, else ${VIGIL_CACHE:-$HOME/.cache/vigil}/guest.
# Outputs, in OUTDIR:
#   vmlinuz         the Debian cloud kernel (linux-image-*-cloud-amd64)
#   initramfs.img   gzip'd newc cpio: busybox-static userland + modules + init
#   rootfs.img      the same userland as a raw ext4 image (boot it with the
#                   same vmlinuz + initramfs.img and "root=/dev/vda rw")
#   manifest        key=value lines: versions, inputs key, sha256s. Written
#                   last: a directory without it is not a complete image.
#   debs/           the downloaded .debs (reused by rebuilds)
# A second run with unchanged inputs (this script, scripts/guest/*, the
# candidate versions of the kernel and busybox-static packages, the module
# list and the rootfs size) does nothing. Prints OUTDIR on stdout.
#
# Environment:
#   VIGIL_KERNEL_PKG     kernel package (default: what linux-image-cloud-amd64 depends on)
#   VIGIL_ROOTFS_SIZE    size of rootfs.img (default 64M)
#   VIGIL_EXTRA_MODULES  more kernel modules to put in the guest (names)
#   VIGIL_FORCE_REBUILD=1  rebuild even if up to date
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

FORMAT=1 # bump on incompatible changes of the layout
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_SRC="$HERE/guest"
OUT=${1:-${VIGIL_GUEST_DIR:-${VIGIL_CACHE:-$HOME/.cache/vigil}/guest}}
ROOTFS_SIZE=${VIGIL_ROOTFS_SIZE:-64M}
KERNEL_META=linux-image-cloud-amd64
BUSYBOX_PKG=busybox-static
# Wanted in the guest when modular in the kernel (built-in ones are skipped).
MODULES="virtio_pci virtio_blk virtio_net virtio_scsi virtio_rng virtio_console
virtio_balloon sd_mod sr_mod cdrom ata_piix ata_generic isofs vfat nls_cp437
nls_ascii nls_utf8 nls_iso8859_1 pvpanic_pci pvpanic_mmio button evdev
${VIGIL_EXTRA_MODULES:-}"
MODULES=$(echo $MODULES | tr '-' '_')

log() { echo "build-guest-image: $*" >&2; }
die() { log "$*"; exit 1; }

for c in apt-get apt-cache dpkg-deb cpio gzip mkfs.ext4 sha256sum flock; do
  command -v "$c" >/dev/null 2>&1 || die "missing $c: run scripts/ensure-qemu.sh first"
done

mkdir -p "$OUT/debs"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.lock"
flock 9

APT_DL_OPTS=(-q)
[ "$(id -u)" -eq 0 ] && APT_DL_OPTS+=(-o APT::Sandbox::User=root)

# --- inputs ---------------------------------------------------------------
resolve_kernel_pkg() {
  if [ -n "${VIGIL_KERNEL_PKG:-}" ]; then
    echo "$VIGIL_KERNEL_PKG"
    return
  fi
  apt-cache depends "$KERNEL_META" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'; }

# apt-cache is slow (~1s): remember its answers for as long as the package
# lists, the apt configuration and VIGIL_KERNEL_PKG are unchanged.
apt_stamp() {
  {
    ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null
    cat /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/* 2>/dev/null
    echo "kernel=${VIGIL_KERNEL_PKG:-} meta=$KERNEL_META busybox=$BUSYBOX_PKG"
  } | sha256sum | cut -d' ' -f1
}
resolve_inputs() {
  local stamp cached
  stamp=$(apt_stamp)
  if [ "${1:-}" != fresh ] && [ -f "$OUT/.resolved" ] && read -r cached KERNEL_PKG KERNEL_VER BUSYBOX_VER <"$OUT/.resolved" &&
    [ "$cached" = "$stamp" ] && [ -n "$BUSYBOX_VER" ]; then
    return
  fi
  KERNEL_PKG=$(resolve_kernel_pkg)
  KERNEL_VER=${KERNEL_PKG:+$(candidate "$KERNEL_PKG")}
  BUSYBOX_VER=$(candidate "$BUSYBOX_PKG")
  if [ -n "$KERNEL_VER" ] && [ -n "$BUSYBOX_VER" ]; then
    echo "$stamp $KERNEL_PKG $KERNEL_VER $BUSYBOX_VER" >"$OUT/.resolved"
  fi
}

apt_update() {
  if [ "$(id -u)" -ne 0 ]; then
    log "apt package lists are missing or stale and this is not root: run apt-get update"
    return 1
  fi
  log "running apt-get update"
  apt-get update -q -o DPkg::Lock::Timeout=300 >&2
}

resolve_inputs
if [ -z "$KERNEL_VER" ] || [ -z "$BUSYBOX_VER" ]; then
  apt_update && resolve_inputs fresh || true
fi

script_sum() {
  (cd "$HERE" && sha256sum build-guest-image.sh && find guest -type f | sort | xargs sha256sum) |
    sha256sum | cut -d' ' -f1
}
SCRIPT_SUM=$(script_sum)

if [ -z "$KERNEL_VER" ] || [ -z "$BUSYBOX_VER" ]; then
  # No package lists (offline): an existing image built by this same script
  # is still good.
  if [ -f "$OUT/manifest" ] && grep -qx "script_sha256=$SCRIPT_SUM" "$OUT/manifest" &&
    [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.img" ] && [ -f "$OUT/rootfs.img" ]; then
    log "cannot resolve package versions; reusing existing image in $OUT"
    echo "$OUT"
    exit 0
  fi
  die "cannot resolve ${KERNEL_PKG:-$KERNEL_META} / $BUSYBOX_PKG from apt (package lists?)"
fi

compute_key() {
  printf '%s\n' "format=$FORMAT" "script=$SCRIPT_SUM" "kernel=$KERNEL_PKG=$KERNEL_VER" \
    "busybox=$BUSYBOX_PKG=$BUSYBOX_VER" "modules=$MODULES" "rootfs_size=$ROOTFS_SIZE" |
    sha256sum | cut -d' ' -f1
}
KEY=$(compute_key)

exit_if_up_to_date() {
  if [ -z "${VIGIL_FORCE_REBUILD:-}" ] && [ -f "$OUT/manifest" ] && grep -qx "key=$KEY" "$OUT/manifest" &&
    [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.img" ] && [ -f "$OUT/rootfs.img" ]; then
    log "up to date: $OUT"
    echo "$OUT"
    exit 0
  fi
}
exit_if_up_to_date

# --- build ----------------------------------------------------------------
start=$(date +%s.%N)
# We hold the lock: any earlier .build.* is the leftover of a killed build.
rm -rf "$OUT"/.build.*
TMP=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# fetch PKG VERSION -> path of the .deb in $OUT/debs (downloaded if needed)
fetch() {
  local pkg=$1 ver=$2 f
  for f in "$OUT"/debs/"${pkg}"_*.deb; do
    [ -f "$f" ] || continue
    if [ "$(dpkg-deb -f "$f" Package)" = "$pkg" ] && [ "$(dpkg-deb -f "$f" Version)" = "$ver" ]; then
      echo "$f"
      return 0
    fi
  done
  mkdir -p "$TMP/dl"
  log "downloading $pkg=$ver"
  if ! (cd "$TMP/dl" && apt-get download "${APT_DL_OPTS[@]}" "$pkg=$ver" >&2); then
    return 1
  fi
  for f in "$TMP"/dl/"${pkg}"_*.deb; do
    [ -f "$f" ] || continue
    mv "$f" "$OUT/debs/"
    echo "$OUT/debs/${f##*/}"
    return 0
  done
  return 1
}

if ! KDEB=$(fetch "$KERNEL_PKG" "$KERNEL_VER") || ! BDEB=$(fetch "$BUSYBOX_PKG" "$BUSYBOX_VER"); then
  # Stale lists (the candidate .deb left the archive): refresh once.
  apt_update || die "download failed"
  resolve_inputs fresh
  KEY=$(compute_key)
  exit_if_up_to_date
  KDEB=$(fetch "$KERNEL_PKG" "$KERNEL_VER") || die "cannot download $KERNEL_PKG=$KERNEL_VER"
  BDEB=$(fetch "$BUSYBOX_PKG" "$BUSYBOX_VER") || die "cannot download $BUSYBOX_PKG=$BUSYBOX_VER"
fi

log "unpacking $(basename "$KDEB") and $(basename "$BDEB")"
dpkg-deb -x "$KDEB" "$TMP/kernel"
dpkg-deb -x "$BDEB" "$TMP/busybox"

VMLINUZ=$(ls "$TMP"/kernel/boot/vmlinuz-* | head -n 1)
[ -f "$VMLINUZ" ] || die "no vmlinuz in $KDEB"
KREL=${VMLINUZ##*/vmlinuz-}
KMOD="$TMP/kernel/lib/modules/$KREL"
[ -d "$KMOD" ] || die "no /lib/modules/$KREL in $KDEB"
BB="$TMP/busybox/bin/busybox"
[ -x "$BB" ] || die "no /bin/busybox in $BDEB"

run_depmod() { # BASE: (re)generates modules.dep & co for $KREL under BASE
  if command -v depmod >/dev/null 2>&1; then
    depmod -b "$1" "$KREL"
  else
    "$BB" depmod -b "$1" "$KREL"
  fi
}

# Modules: closure of $MODULES over modules.dep of the full kernel tree.
run_depmod "$TMP/kernel"
R="$TMP/root"
mkdir -p "$R/lib/modules/$KREL"
awk -v want="$MODULES" -v builtin="$KMOD/modules.builtin" '
  function norm(p) { sub(/.*\//, "", p); sub(/\.ko(\.[a-z]+)?$/, "", p); gsub(/-/, "_", p); return p }
  BEGIN {
    n = split(want, w, /[ \t\n]+/)
    for (i = 1; i <= n; i++) if (w[i] != "") wanted[w[i]] = 1
    while ((getline line < builtin) > 0) isbuiltin[norm(line)] = 1
  }
  {
    sub(/:$/, "", $1)
    m = norm($1)
    if (!(m in wanted)) next
    found[m] = 1
    for (i = 1; i <= NF; i++) { f = $i; sub(/:$/, "", f); print f }
  }
  END {
    for (m in wanted) if (!(m in found) && !(m in isbuiltin)) print "warning: module " m " not in kernel" > "/dev/stderr"
    for (m in wanted) if (m in found) print "#loaded " m
  }
' "$KMOD/modules.dep" >"$TMP/modlist"
grep -v '^#' "$TMP/modlist" | sort -u | while read -r f; do
  mkdir -p "$R/lib/modules/$KREL/$(dirname "$f")"
  cp "$KMOD/$f" "$R/lib/modules/$KREL/$f"
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
  [ -f "$KMOD/$f" ] && cp "$KMOD/$f" "$R/lib/modules/$KREL/"
done
run_depmod "$R"
# Modules to load, in $MODULES order (modprobe pulls the dependencies).
LOADED=$(for m in $MODULES; do grep -qx "#loaded $m" "$TMP/modlist" && echo "$m"; done)

# Userland: busybox-static and its applet links.
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/vigil,etc/acpi/PWRF,proc,sys,dev,run,tmp,mnt,root,var/log,var/lib/vigil}
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
cp "$BB" "$R/bin/busybox"
"$BB" --list-full | while read -r a; do
  case "$a" in bin/busybox | linuxrc) continue ;; esac
  [ -e "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
G="$GUEST_SRC"
install -m 0755 "$G/init" "$R/init"
install -m 0755 "$G/rc.sysinit" "$G/rc.boot" "$G/rc.shutdown" "$G/load-modules" "$G/udhcpc.script" "$G/console" "$R/etc/vigil/"
install -m 0644 "$G/cloud-config.awk" "$R/etc/vigil/"
install -m 0755 "$G/vigil-cloud-init" "$G/vigil-panic" "$G/vigil-shutdown" "$R/sbin/"
for a in poweroff reboot halt; do ln -sf vigil-shutdown "$R/sbin/$a"; done
install -m 0755 "$G/acpi-power" "$R/etc/acpi/PWRF/00000080"
install -m 0644 "$G/inittab" "$R/etc/inittab"
install -m 0644 "$G/profile" "$R/etc/profile"
echo "$LOADED" >"$R/etc/vigil/modules"
echo vigil >"$R/etc/hostname"
printf 'root::0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' >"$R/etc/group"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost\n' >"$R/etc/hosts"
: >"$R/etc/resolv.conf"
: >"$R/etc/fstab"
{
  echo "kernel_release=$KREL"
  echo "kernel_package=$KERNEL_PKG=$KERNEL_VER"
  echo "busybox_package=$BUSYBOX_PKG=$BUSYBOX_VER"
  echo "key=$KEY"
} >"$R/etc/vigil/version"
# An initial console for the kernel to open before /init runs (needs root;
# without it, /init reopens /dev/console itself once devtmpfs is mounted).
if [ "$(id -u)" -eq 0 ]; then
  mknod -m 0600 "$R/dev/console" c 5 1
  mknod -m 0666 "$R/dev/null" c 1 3
fi

# Same timestamps for the same inputs (reproducible cpio).
find "$R" -exec touch -h -d @0 {} +

log "packing initramfs.img"
(cd "$R" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n >"$TMP/initramfs.img"

log "making rootfs.img ($ROOTFS_SIZE ext4)"
truncate -s "$ROOTFS_SIZE" "$TMP/rootfs.img"
# UUID and directory hash seed derived from the inputs key (the same inputs
# give the same root=UUID=...). Not byte-reproducible: e2fsprogs 1.47.0 -d
# copies the staging files' ctime/atime.
uuid=$(echo "$KEY" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -L vigil-root -U "$uuid" -m 0 \
  -E root_owner=0:0,hash_seed="$uuid" -d "$R" "$TMP/rootfs.img"

cp "$VMLINUZ" "$TMP/vmlinuz"

sum() { sha256sum "$1" | cut -d' ' -f1; }
{
  echo "# Vigil guest image. Complete only when this file exists."
  echo "format=$FORMAT"
  echo "key=$KEY"
  echo "script_sha256=$SCRIPT_SUM"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel_package=$KERNEL_PKG"
  echo "kernel_version=$KERNEL_VER"
  echo "kernel_release=$KREL"
  echo "busybox_package=$BUSYBOX_PKG"
  echo "busybox_version=$BUSYBOX_VER"
  echo "modules=$(echo $LOADED)"
  echo "rootfs_size=$ROOTFS_SIZE"
  echo "rootfs_label=vigil-root"
  echo "rootfs_uuid=$uuid"
  echo "cmdline=console=ttyS0 panic=-1"
  echo "rootfs_cmdline=console=ttyS0 panic=-1 root=/dev/vda rw"
  echo "vmlinuz_sha256=$(sum "$TMP/vmlinuz")"
  echo "initramfs_sha256=$(sum "$TMP/initramfs.img")"
  echo "rootfs_sha256=$(sum "$TMP/rootfs.img")"
} >"$TMP/manifest"

# Install: the manifest goes first out and last in, so an interrupted
# install never leaves a manifest next to mismatched files.
rm -f "$OUT/manifest"
for f in vmlinuz initramfs.img rootfs.img; do
  # Read-only: boot rootfs.img through an overlay (qemu-img create -b) or
  # snapshot=on, never writable in place.
  chmod 0444 "$TMP/$f"
  sync "$TMP/$f" 2>/dev/null || true
  mv -f "$TMP/$f" "$OUT/$f"
done
sync "$TMP/manifest" 2>/dev/null || true
mv -f "$TMP/manifest" "$OUT/manifest"
sync "$OUT" 2>/dev/null || true

# Keep only the .debs in use.
for f in "$OUT"/debs/*.deb; do
  [ "$f" = "$KDEB" ] || [ "$f" = "$BDEB" ] || rm -f "$f"
done

log "built in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s: $KERNEL_PKG $KERNEL_VER, busybox $BUSYBOX_VER"
log "vmlinuz $(du -k --apparent-size "$OUT/vmlinuz" | cut -f1)K, initramfs.img $(du -k --apparent-size "$OUT/initramfs.img" | cut -f1)K, rootfs.img $ROOTFS_SIZE (allocated $(du -k "$OUT/rootfs.img" | cut -f1)K)"
echo "$OUT"
