#!/usr/bin/env python3
"""Boot smoke test of Vigil's guest image under QEMU (TCG), stdlib only.

Run through scripts/boot-smoke.sh, which builds the image first:
    boot-smoke.py GUEST_DIR [--keep]

Each boot starts qemu-system-x86_64 -M q35 -accel tcg with the serial port on
a unix-socket chardev (read here and logged to WORK/NAME/serial.log) and QMP
on a unix socket, and
times process start -> "VIGIL-GUEST-READY". Scenarios:
  initramfs #1  NoCloud ISO seed on a virtio-scsi CD-ROM (#cloud-config with
                write_files + runcmd), DHCP IP, then QMP system_powerdown ->
                SHUTDOWN {guest: true, reason: guest-shutdown}, exit 0
  initramfs #2  no seed (VIGIL-CLOUD-INIT-NONE), "poweroff" typed on the
                serial console -> SHUTDOWN guest-shutdown
  initramfs #3  "#!" script seed on a vfat virtio disk, then QMP send-key
                ctrl-alt-delete with -no-reboot -> SHUTDOWN guest-reset
  panic         vigil-panic typed on the console with pvpanic-pci ->
                GUEST_PANICKED, then QEMU exits
  power_state   cloud-config runcmd + power_state poweroff (vfat seed) ->
                SHUTDOWN guest-shutdown
  early         system_powerdown as soon as the marker shows -> guest-shutdown
  rootfs #1     rootfs.img (qcow2 overlay) as /dev/vda, root=/dev/vda rw,
                ISO seed; system_powerdown
  rootfs #2     same overlay again: written file persisted, cloud-init
                per-instance (first=0); ctrl-alt-delete without -no-reboot
                -> RESET + second boot; system_powerdown
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
CMDLINE = "console=ttyS0 panic=-1"
MARK_READY = "VIGIL-GUEST-READY"


class Fail(Exception):
    pass


class QMP:
    def __init__(self, path, proc, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if proc.poll() is not None:
                    raise Fail("QEMU exited (%s) at start" % proc.returncode)
                if time.monotonic() > deadline:
                    raise Fail("QMP socket %s never came up" % path)
                time.sleep(0.02)
        self.f = self.sock.makefile("rwb", buffering=0)
        self.events = []
        self.replies = []
        self.cv = threading.Condition()
        greeting = json.loads(self.f.readline())
        assert "QMP" in greeting, greeting
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()
        self.cmd("qmp_capabilities")

    def _reader(self):
        for line in self.f:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                if "event" in msg:
                    msg["_t"] = time.monotonic()
                    self.events.append(msg)
                else:
                    self.replies.append(msg)
                self.cv.notify_all()
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        with self.cv:
            n = len(self.replies)
        self.f.write(json.dumps(msg).encode() + b"\n")
        with self.cv:
            if not self.cv.wait_for(lambda: len(self.replies) > n, timeout=10):
                raise Fail("no QMP reply to %s" % name)
            r = self.replies[n]
        if "error" in r:
            raise Fail("QMP %s: %s" % (name, r["error"]))
        return r.get("return")

    def wait_event(self, names, timeout):
        if isinstance(names, str):
            names = [names]
        with self.cv:
            ok = self.cv.wait_for(lambda: any(e["event"] in names for e in self.events), timeout=timeout)
            if not ok:
                raise Fail("no QMP event %s in %ss (got %s)" % (names, timeout, [e["event"] for e in self.events]))
            return next(e for e in self.events if e["event"] in names)


class VM:
    def __init__(self, work, name, guest, extra, append="", no_reboot=True):
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.serial_log = os.path.join(self.dir, "serial.log")
        self.serial_sock = os.path.join(self.dir, "serial.sock")
        self.qmp_sock = os.path.join(self.dir, "qmp.sock")
        self.stderr_path = os.path.join(self.dir, "qemu.stderr")
        self.argv = [
            QEMU, "-M", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
            "-nographic", "-monitor", "none",
            "-kernel", os.path.join(guest, "vmlinuz"),
            "-initrd", os.path.join(guest, "initramfs.img"),
            "-append", (CMDLINE + " " + append).strip(),
            # Not "logfile=": QEMU 7.2 garbles a socket chardev's logfile
            # (repeated/lost characters) whenever the socket backs up. The
            # stream itself is clean: read it and keep our own log.
            "-chardev", "socket,id=ser0,path=%s,server=on,wait=off" % self.serial_sock,
            "-serial", "chardev:ser0",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock,
            "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
            "-device", "pvpanic-pci",
        ] + (["-no-reboot"] if no_reboot else []) + extra
        self.text = ""
        self.lock = threading.Lock()

    def start(self):
        with open(os.path.join(self.dir, "cmd"), "w") as f:
            f.write(" ".join(self.argv) + "\n")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"))
        # Serial first: output written before a client connects is lost.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ser = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.ser.connect(self.serial_sock)
                break
            except OSError:
                self.ser.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    with open(self.stderr_path) as f:
                        sys.stderr.write(f.read())
                    raise Fail("%s: serial socket never came up" % self.name)
                time.sleep(0.005)
        threading.Thread(target=self._reader, daemon=True).start()
        try:
            self.qmp = QMP(self.qmp_sock, self.proc)
        except Fail:
            with open(self.stderr_path) as f:
                sys.stderr.write(f.read())
            raise
        return self

    def _reader(self):
        with open(self.serial_log, "wb") as log:
            while True:
                try:
                    data = self.ser.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                log.write(data)
                log.flush()
                with self.lock:
                    self.text += data.decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=60, start=0):
        """Waits for regex pattern in serial output after offset start; returns
        (match, seconds since process start)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                text = self.text
            m = rx.search(text, start)
            if m:
                return m, time.monotonic() - self.t0
            if self.proc.poll() is not None:
                raise Fail("%s: QEMU exited (%s) before %r" % (self.name, self.proc.returncode, pattern))
            if time.monotonic() > deadline:
                raise Fail("%s: no %r in %ss" % (self.name, pattern, timeout))
            time.sleep(0.02)

    def type(self, s):
        self.ser.sendall(s.encode())

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Fail("%s: QEMU did not exit in %ss" % (self.name, timeout))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n=40):
        with self.lock:
            return "\n".join(self.text.splitlines()[-n:])


def make_iso(path, files, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    for k, v in files.items():
        with open(os.path.join(d, k), "w") as f:
            f.write(v)
    subprocess.run(["genisoimage", "-quiet", "-output", path, "-volid", "cidata", "-joliet", "-rock", d],
                   check=True)


def make_vfat(path, files, tmp):
    subprocess.run(["mkfs.vfat", "-n", "cidata", "-C", path, "1024"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = tempfile.mkdtemp(dir=tmp)
    names = []
    for k, v in files.items():
        p = os.path.join(d, k)
        with open(p, "w") as f:
            f.write(v)
        names.append(p)
    subprocess.run(["mcopy", "-i", path] + names + ["::"], check=True)


CLOUD_CONFIG = """#cloud-config
hostname: smoke-host
write_files:
  - path: /var/lib/smoke/hello.txt
    permissions: '0600'
    content: |
      hello from write_files
      second line
runcmd:
  - echo "SMOKE-RUNCMD-1 $(hostname) $(cat /var/lib/smoke/hello.txt | wc -l)"
  - [ sh, -c, "echo SMOKE-RUNCMD-2 argv form" ]
  - |
    for i in 1 2; do echo SMOKE-RUNCMD-3 loop $i; done
"""
META = "instance-id: smoke-1\nlocal-hostname: smoke-meta\n"
SCRIPT = "#!/bin/sh\necho SMOKE-SCRIPT ran as $(id -u) on $(uname -r)\nexit 3\n"


def cdrom(iso):
    return ["-device", "virtio-scsi-pci,id=scsi0",
            "-drive", "if=none,id=cd0,file=%s,format=raw,media=cdrom,readonly=on" % iso,
            "-device", "scsi-cd,drive=cd0,bus=scsi0.0"]


def vdisk(img, id_, fmt="raw", ro=False):
    return ["-drive", "if=none,id=%s,file=%s,format=%s%s" % (id_, img, fmt, ",readonly=on" if ro else ""),
            "-device", "virtio-blk-pci,drive=%s" % id_]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("guest")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()
    guest = os.path.abspath(opts.guest)
    work = tempfile.mkdtemp(prefix="vigil-smoke.")
    results, times = [], []
    vms = []

    def step(name, fn):
        t = time.monotonic()
        try:
            fn()
            results.append((name, True, ""))
            print("PASS %-50s %5.1fs" % (name, time.monotonic() - t), flush=True)
        except Exception as e:  # noqa: BLE001
            results.append((name, False, str(e)))
            print("FAIL %-50s %s" % (name, e), flush=True)
            for vm in vms[-1:]:
                print("---- %s serial tail ----\n%s\n----" % (vm.name, vm.tail()), flush=True)
        finally:
            for vm in vms:
                vm.kill()

    iso = os.path.join(work, "seed.iso")
    make_iso(iso, {"user-data": CLOUD_CONFIG, "meta-data": META}, work)
    vfat = os.path.join(work, "seed-script.img")
    make_vfat(vfat, {"user-data": SCRIPT, "meta-data": "instance-id: smoke-2\n"}, work)

    def ready(vm, label):
        m, t = vm.wait_for(MARK_READY + r" uptime=(\S+) root=(\S+)", 90)
        times.append((label, t, float(m.group(1))))
        return m

    def powerdown(vm, how="qmp"):
        if how == "qmp":
            vm.qmp.cmd("system_powerdown")
        ev = vm.qmp.wait_event("SHUTDOWN", 60)
        d = ev["data"]
        if not (d.get("guest") is True and d.get("reason") == "guest-shutdown"):
            raise Fail("unexpected SHUTDOWN %s" % d)
        rc = vm.wait_exit(30)
        if rc != 0:
            raise Fail("QEMU exit code %s" % rc)

    def initramfs1():
        vm = VM(work, "initramfs-1", guest, cdrom(iso))
        vms.append(vm)
        vm.start()
        m = ready(vm, "initramfs #1 (cdrom seed)")
        if m.group(2) != "initramfs":
            raise Fail("root=%s" % m.group(2))
        vm.wait_for(r"VIGIL-GUEST-IP eth0 10\.0\.2\.15/24", 60)
        vm.wait_for(r"VIGIL-CLOUD-INIT-START seed=/dev/sr0 fs=iso9660 format=cloud-config instance=smoke-1", 60)
        vm.wait_for(r"SMOKE-RUNCMD-1 smoke-host 2", 60)
        vm.wait_for(r"SMOKE-RUNCMD-2 argv form", 30)
        vm.wait_for(r"SMOKE-RUNCMD-3 loop 2", 30)
        vm.wait_for(r"VIGIL-CLOUD-INIT-DONE rc=0 instance=smoke-1", 30)
        t = time.monotonic()
        powerdown(vm)
        vm.wait_for(r"VIGIL-GUEST-POWER-BUTTON")
        print("     system_powerdown -> QEMU exit: %.1fs" % (time.monotonic() - t))

    def initramfs2():
        vm = VM(work, "initramfs-2", guest, [])
        vms.append(vm)
        vm.start()
        ready(vm, "initramfs #2 (no seed)")
        vm.wait_for(r"VIGIL-CLOUD-INIT-NONE", 60)
        vm.wait_for(r"vigil:/# ", 30)
        vm.type("poweroff\n")
        powerdown(vm, how="console")

    def initramfs3():
        vm = VM(work, "initramfs-3", guest, vdisk(vfat, "seed", ro=True))
        vms.append(vm)
        vm.start()
        ready(vm, "initramfs #3 (vfat script seed)")
        vm.wait_for(r"VIGIL-CLOUD-INIT-START seed=/dev/vda fs=vfat format=script instance=smoke-2", 60)
        vm.wait_for(r"SMOKE-SCRIPT ran as 0 on ", 30)
        vm.wait_for(r"VIGIL-CLOUD-INIT-DONE rc=3 instance=smoke-2", 30)
        vm.qmp.cmd("send-key", keys=[{"type": "qcode", "data": k} for k in ("ctrl", "alt", "delete")])
        ev = vm.qmp.wait_event("SHUTDOWN", 60)
        if ev["data"].get("reason") != "guest-reset":
            raise Fail("ctrl-alt-del with -no-reboot gave %s" % ev["data"])
        vm.wait_exit(30)

    def panic():
        vm = VM(work, "panic", guest, [])
        vms.append(vm)
        vm.start()
        ready(vm, "panic")
        vm.wait_for(r"vigil:/# ", 60)
        vm.type("vigil-panic\n")
        vm.qmp.wait_event("GUEST_PANICKED", 60)
        vm.wait_exit(30)
        print("     QMP events: %s" % [(e["event"], e.get("data")) for e in vm.qmp.events
                                       if e["event"] != "NIC_RX_FILTER_CHANGED"])
        vm.wait_for(r"Kernel panic - not syncing", 5)

    overlay = os.path.join(work, "root.qcow2")

    def rootfs1():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        os.path.join(guest, "rootfs.img"), overlay], check=True)
        vm = VM(work, "rootfs-1", guest, vdisk(overlay, "root", fmt="qcow2") + cdrom(iso), append="root=/dev/vda rw")
        vms.append(vm)
        vm.start()
        m = ready(vm, "rootfs #1 (root=/dev/vda)")
        if m.group(2) != "/dev/vda":
            raise Fail("root=%s" % m.group(2))
        vm.wait_for(r"VIGIL-CLOUD-INIT-DONE rc=0 instance=smoke-1", 60)
        vm.wait_for(r"SMOKE-RUNCMD-1 smoke-host 2", 1)
        powerdown(vm)

    def rootfs2():
        vm = VM(work, "rootfs-2", guest, vdisk(overlay, "root", fmt="qcow2") + cdrom(iso),
                append="root=/dev/vda rw", no_reboot=False)
        vms.append(vm)
        vm.start()
        ready(vm, "rootfs #2 (same disk)")
        m, _ = vm.wait_for(r"VIGIL-CLOUD-INIT-START \S+ \S+ \S+ \S+ first=(\d)", 60)
        if m.group(1) != "0":
            raise Fail("cloud-init per-instance: first=%s on second boot" % m.group(1))
        vm.wait_for(r"VIGIL-CLOUD-INIT-DONE rc=0", 30)
        if "SMOKE-RUNCMD-1" in vm.text:
            raise Fail("runcmd ran again on second boot")
        vm.wait_for(r"vigil:/# ", 30)
        vm.type("cat /var/lib/smoke/hello.txt; dmesg | grep -c 'EXT4-fs.*recovery' ; echo CHECK-END\n")
        m, _ = vm.wait_for(r"hello from write_files\s+second line\s+(\d+)\s+CHECK-END", 30)
        if m.group(1) != "0":
            raise Fail("ext4 needed journal recovery: not cleanly unmounted")
        # ctrl-alt-del -> guest reboot; without -no-reboot QEMU resets and the guest boots again
        start = len(vm.text)
        vm.qmp.cmd("send-key", keys=[{"type": "qcode", "data": k} for k in ("ctrl", "alt", "delete")])
        ev = vm.qmp.wait_event("RESET", 60)
        if ev["data"].get("reason") != "guest-reset":
            raise Fail("RESET %s" % ev["data"])
        vm.wait_for(MARK_READY, 90, start=start)
        vm.wait_for(r"VIGIL-CLOUD-INIT-DONE", 60, start=start)
        powerdown(vm)

    vfat2 = os.path.join(work, "seed-power.img")
    make_vfat(vfat2, {"user-data": "#cloud-config\nruncmd:\n  - echo SMOKE-BYE\npower_state:\n  mode: poweroff\n",
                      "meta-data": "instance-id: smoke-3\n"}, work)

    def early_powerdown():
        vm = VM(work, "early-powerdown", guest, [])
        vms.append(vm)
        vm.start()
        ready(vm, "")
        t = time.monotonic()
        powerdown(vm)  # right at the marker: acpid is already listening
        print("     system_powerdown at the marker -> QEMU exit: %.1fs" % (time.monotonic() - t))

    def power_state():
        vm = VM(work, "power-state", guest, vdisk(vfat2, "seed", ro=True))
        vms.append(vm)
        vm.start()
        ready(vm, "")
        vm.wait_for(r"SMOKE-BYE", 60)
        powerdown(vm, how="guest")

    step("initramfs: iso seed, cloud-config, powerdown", initramfs1)
    step("initramfs: no seed, console poweroff", initramfs2)
    step("initramfs: vfat script seed, ctrl-alt-del", initramfs3)
    step("initramfs: panic with pvpanic-pci", panic)
    step("initramfs: cloud-config power_state poweroff", power_state)
    step("initramfs: system_powerdown right at the marker", early_powerdown)
    step("rootfs: root=/dev/vda, powerdown", rootfs1)
    step("rootfs: persistence, reboot, powerdown", rootfs2)

    print("\nboot time, QEMU process start -> %s (guest uptime at marker):" % MARK_READY)
    for label, t, up in times:
        if not label:
            continue
        print("  %-34s %5.2fs  (uptime %.2fs)" % (label, t, up))
    failed = [r for r in results if not r[1]]
    print("\n%d passed, %d failed" % (len(results) - len(failed), len(failed)))
    if opts.keep or failed:
        print("work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
