#!/usr/bin/env python3
"""The peer for snapshot_perf.sh: Debian's QEMU (-machine microvm -accel
kvm) running the same reference guest through its PVH entry, saved with
QMP `migrate` to a file (exec:cat, QEMU 7.2 has no file: URI) while
stopped, and restored with -incoming and `cont`.

  qemu_snap.py GUEST_ELF MEM_MIB WRITE_MIB DIR

Prints one line: save_ms image_bytes restore_ms, where save_ms is QEMU's
own total-time of the migration and restore_ms runs from starting the
QEMU process to `query-status` saying running after `cont` (as
snapshot_perf.sh times vmrun from starting `vmrun restore` to its control
socket answering)."""
import json
import os
import socket
import subprocess
import sys
import time


def qmp(path, proc):
    deadline = time.time() + 120
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                sys.exit("qemu_snap: QEMU did not open its QMP socket")
            time.sleep(0.002)
    f = s.makefile("rw")
    json.loads(f.readline())

    def cmd(name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "error" in r:
                sys.exit("qemu_snap: %s: %s" % (name, r["error"]))
            if "return" in r:
                return r["return"]

    cmd("qmp_capabilities")
    return cmd


def main():
    elf, mem, mib, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sock, img, con = d + "/q.sock", d + "/qemu.img", d + "/qcon"
    base = ["qemu-system-x86_64", "-machine", "microvm", "-accel", "kvm",
            "-m", "%dM" % mem, "-kernel", elf,
            "-append", "work=dirty mib=%d rate=0 tick_ms=200" % mib,
            "-display", "none", "-serial", "file:" + con,
            "-qmp", "unix:%s,server=on,wait=off" % sock, "-no-reboot"]
    for p in (sock, img, con):
        if os.path.exists(p):
            os.unlink(p)
    p = subprocess.Popen(base, stderr=subprocess.DEVNULL)
    cmd = qmp(sock, p)
    # Until the workload has written what it owns, as for vmrun.
    deadline = time.time() + 600
    while time.time() < deadline:
        text = open(con, errors="replace").read()
        # Whole lines only: the last one may be on its way.
        lines = [l for l in text[:text.rfind("\n") + 1].splitlines()
                 if l.startswith("GUEST TICK") and "written=" in l]
        if len(lines) >= 2:
            w = int(lines[-1].split("written=")[1].split()[0])
            if w >= mib * 256:
                break
        time.sleep(0.05)
    cmd("stop")
    cmd("migrate", uri="exec:cat > " + img)
    while True:
        r = cmd("query-migrate")
        if r.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.002)
    p.kill()
    p.wait()
    if r["status"] != "completed":
        sys.exit("qemu_snap: migrate %s" % r["status"])
    save_ms = r.get("total-time", 0)
    size = os.path.getsize(img)
    os.unlink(sock)
    t0 = time.monotonic()
    p = subprocess.Popen(base + ["-incoming", "exec:cat " + img],
                         stderr=subprocess.DEVNULL)
    cmd = qmp(sock, p)
    while cmd("query-status")["status"] == "inmigrate":
        time.sleep(0.001)
    cmd("cont")
    while cmd("query-status")["status"] != "running":
        time.sleep(0.001)
    restore_ms = (time.monotonic() - t0) * 1000
    p.kill()
    p.wait()
    os.unlink(img)
    print("%d %d %.1f" % (save_ms, size, restore_ms))


main()
