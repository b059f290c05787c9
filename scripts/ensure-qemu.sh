#!/usr/bin/env bash
# ensure-qemu.sh: make sure the host tools Vigil needs to run real QEMU guests
# and to build its guest image are installed, from Debian's archive only.
#
# Idempotent and quiet when everything is already there (prints nothing and
# exits 0). Otherwise it installs what is missing with
#   apt-get install -y --no-install-recommends
# and runs `apt-get update` only when that install fails (no or stale package
# lists), then retries once. Needs root (or sudo) when something is missing.
#
# Environment:
#   VIGIL_ENSURE_EXTRA="pkg ..."   extra Debian packages to require
#   VIGIL_ENSURE_VERBOSE=1         say what is checked even when nothing is missing
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

# command:package. A package is installed when its command is missing.
# - qemu-system-x86 brings seabios and ipxe-qemu (efi-virtio.rom for
#   virtio-net-pci) as hard dependencies, so --no-install-recommends is enough.
# - the image build uses dpkg-deb/apt-get download (always on Debian), cpio,
#   gzip, mkfs.ext4 -d (e2fsprogs >= 1.43), depmod (kmod).
# - the smoke test makes NoCloud seeds with genisoimage (ISO 9660) and
#   mkfs.vfat + mcopy (vfat), and speaks QMP with python3.
REQUIRED=(
  qemu-system-x86_64:qemu-system-x86
  qemu-img:qemu-utils
  cpio:cpio
  gzip:gzip
  mkfs.ext4:e2fsprogs
  depmod:kmod
  flock:util-linux
  genisoimage:genisoimage
  mkfs.vfat:dosfstools
  mcopy:mtools
  python3:python3
)

missing=()
for pair in "${REQUIRED[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
for pkg in ${VIGIL_ENSURE_EXTRA:-}; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  [ -n "${VIGIL_ENSURE_VERBOSE:-}" ] && echo "ensure-qemu: all present"
  exit 0
fi

# de-duplicate, keep order
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "ensure-qemu: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
fi

APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)

lists_present() {
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

echo "ensure-qemu: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT

install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install "${APT_OPTS[@]}" "${missing[@]}" >"$log" 2>&1
}

if ! lists_present; then
  echo "ensure-qemu: no apt package lists, running apt-get update" >&2
  "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=300 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi

if ! install; then
  # Typically "Unable to locate package" (no lists) or a 404 on a
  # superseded .deb (stale lists): refresh the lists once and retry.
  echo "ensure-qemu: install failed ($(grep -m1 -E '^E:' "$log" || echo 'see below')); running apt-get update and retrying" >&2
  "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=300 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  if ! install; then
    cat "$log" >&2
    echo "ensure-qemu: apt-get install ${missing[*]} failed" >&2
    exit 1
  fi
fi

# verify
still=()
for pair in "${REQUIRED[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || still+=("$cmd($pkg)")
done
if [ "${#still[@]}" -ne 0 ]; then
  echo "ensure-qemu: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "ensure-qemu: installed ${missing[*]}" >&2
