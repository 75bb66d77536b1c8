#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Time from starting the VMM to the Linux test guest's GUEST READY line,
vmrun beside Debian's QEMU (-machine microvm -accel kvm) with the same
kernel, initramfs, memory and vCPUs, each through the kernel's two
entries (the bzImage vmlinuz, and the vmlinux ELF inside it through its
PVH entry), alternating runs in the same session; and vmrun's memory
beyond guest RAM at that moment (the resident size of every mapping that
is not the guest's memfd). vmrun boots the vmlinuz three ways: as it
does by default (the vmlinux inside unpacked on the host and booted
through its PVH entry; a first boot with an empty cache is timed once,
apart, then the runs use the cache), with --kernel-entry bzimage (the
kernel unpacks itself, as under QEMU), and the extracted vmlinux.

  python3 tests/perf/linux_boot.py --vmrun build/vmrun/vmrun --dir DIR \
      [--runs 5] [--cpus 1] [--mem 512] [--markdown]

DIR holds vmlinuz, vmlinux and initrd.img (bash
tests/guest/linux/prepare.sh). Needs a KVM that runs unmodified kernels
(not PVM): tests/perf/run.sh runs it in an emulated host of one CPU.
"""
import argparse
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CMDLINE = "console=ttyS0 panic=-1 quiet loglevel=4 work=idle mib=16 ticks=0"


def non_guest_rss_kib(pid):
    """Resident KiB of pid's mappings other than guest RAM (memfd)."""
    total = 0
    name = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                if not parts[0].endswith(":") or "-" in parts[0]:
                    # A mapping's header line: address range ... [path]
                    name = " ".join(parts[5:]) if len(parts) > 5 else ""
                    continue
                if parts[0] == "Rss:" and "memfd:" not in name:
                    total += int(parts[1])
    except OSError:
        return None
    return total


def one_run(argv, env=None, deadline_s=600):
    """Starts argv, waits for GUEST READY; returns (seconds, pid rss)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env)
    buf = b""
    ready = None
    rss = None
    try:
        while time.monotonic() - t0 < deadline_s:
            r, _, _ = select.select([p.stdout], [], [], 1.0)
            if not r:
                if p.poll() is not None:
                    break
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"GUEST READY" in buf:
                ready = time.monotonic() - t0
                rss = non_guest_rss_kib(p.pid)
                break
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if ready is None:
        err = p.stderr.read().decode(errors="replace")
        sys.exit(f"linux_boot: no GUEST READY from {argv[0]}:\n"
                 f"{buf.decode(errors='replace')[-2000:]}\n{err[-2000:]}")
    return ready, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmrun", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    i = os.path.join(a.dir, "initrd.img")
    kernels = {"bzImage": os.path.join(a.dir, "vmlinuz"),
               "PVH": os.path.join(a.dir, "vmlinux")}
    cache = tempfile.mkdtemp(prefix="linux_boot-cache-")
    env = dict(os.environ, VMRUN_CACHE=cache)
    base = [a.vmrun, "run", "--initrd", i, "--cpus", str(a.cpus), "--mem",
            f"{a.mem}M", "--cmdline", CMDLINE]
    configs = [
        ("vmrun", "bzImage, unpacked on the host (cached; the default)",
         base + ["--kernel", kernels["bzImage"]]),
        ("vmrun", "bzImage, its own entry (--kernel-entry bzimage)",
         base + ["--kernel", kernels["bzImage"], "--kernel-entry",
                 "bzimage"]),
    ]
    if os.path.exists(kernels["PVH"]):
        configs.append(("vmrun", "PVH (the extracted vmlinux)",
                        base + ["--kernel", kernels["PVH"]]))
    qemu = shutil.which("qemu-system-x86_64")
    for entry, k in kernels.items():
        if qemu and os.path.exists(k):
            configs.append(("QEMU microvm", entry, [
                qemu, "-machine", "microvm,acpi=on,pit=on,pic=on,rtc=on",
                "-accel", "kvm", "-cpu", "host", "-m", str(a.mem), "-smp",
                str(a.cpus), "-kernel", k, "-initrd", i, "-append", CMDLINE,
                "-nodefaults", "-no-user-config", "-nographic", "-serial",
                "stdio", "-no-reboot"]))
    times = {c[:2]: [] for c in configs}
    rss = []
    # The default way once with an empty cache: the first boot of a
    # kernel, which unpacks it.
    cold = ("vmrun", "bzImage, unpacked on the host (first boot)")
    t, r = one_run(configs[0][2], env)
    times = {cold: [t], **times}
    # Alternating, so a slow patch of the machine hits every VMM alike.
    for _ in range(a.runs):
        for vmm, entry, argv in configs:
            t, r = one_run(argv, env)
            times[(vmm, entry)].append(t)
            if vmm == "vmrun" and r is not None:
                rss.append(r)
    shutil.rmtree(cache, ignore_errors=True)
    med = {c: statistics.median(t) for c, t in times.items()}
    qref = med.get(("QEMU microvm", "bzImage"))
    line = f"linux_boot: cpus={a.cpus} mem={a.mem}M runs={a.runs}"
    for n, ((vmm, entry), m) in enumerate(med.items()):
        line += (f" {vmm.split()[0].lower()}_{n}_ready_s={m:.3f}"
                 f" (min {min(times[(vmm, entry)]):.3f})")
        if qref:
            line += f" ratio_{n}={m / qref:.2f}"
    if rss:
        line += f" vmrun_non_guest_rss_mib={max(rss) / 1024:.1f}"
    print(line)
    if a.markdown:
        print()
        print("| vCPUs | VMM | kernel entry | to READY (median) | "
              "of QEMU microvm with the bzImage | memory beyond guest RAM |")
        print("| --- | --- | --- | --- | --- | --- |")
        for (vmm, entry), m in med.items():
            ratio = f"{m / qref:.2f}x" if qref else "n/a"
            mem = (f"{max(rss) / 1024:.1f} MiB" if vmm == "vmrun" and rss
                   else "")
            print(f"| {a.cpus} | {vmm} | {entry} | {m:.3f} s | {ratio} | "
                  f"{mem} |")


if __name__ == "__main__":
    main()
