#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Time from starting the VMM to the Linux test guest's GUEST READY line,
vmrun beside Debian's QEMU (-machine microvm -accel kvm) with the same
kernel, initramfs, memory and vCPUs, alternating runs in the same session;
and vmrun's memory beyond guest RAM at that moment (the resident size of
every mapping that is not the guest's memfd).

  python3 tests/perf/linux_boot.py --vmrun build/vmrun/vmrun --dir DIR \
      [--runs 5] [--cpus 1] [--mem 512] [--markdown]

DIR holds vmlinuz and initrd.img (bash tests/guest/linux/prepare.sh).
Needs a KVM that runs unmodified kernels (not PVM): tests/perf/run.sh runs
it in the emulated host.
"""
import argparse
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
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


def one_run(argv, deadline_s=600):
    """Starts argv, waits for GUEST READY; returns (seconds, pid rss)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
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
    k = os.path.join(a.dir, "vmlinuz")
    i = os.path.join(a.dir, "initrd.img")
    vm = [a.vmrun, "run", "--kernel", k, "--initrd", i, "--cpus",
          str(a.cpus), "--mem", f"{a.mem}M", "--cmdline", CMDLINE]
    qemu = shutil.which("qemu-system-x86_64")
    qm = None
    if qemu:
        qm = [qemu, "-machine", "microvm,acpi=on,pit=on,pic=on,rtc=on",
              "-accel", "kvm", "-cpu", "host", "-m", str(a.mem), "-smp",
              str(a.cpus), "-kernel", k, "-initrd", i, "-append", CMDLINE,
              "-nodefaults", "-no-user-config", "-nographic", "-serial",
              "stdio", "-no-reboot"]
    v_times, q_times, rss = [], [], []
    for _ in range(a.runs):
        t, r = one_run(vm)
        v_times.append(t)
        if r is not None:
            rss.append(r)
        if qm:
            t, _ = one_run(qm)
            q_times.append(t)
    v = statistics.median(v_times)
    line = (f"linux_boot: cpus={a.cpus} mem={a.mem}M runs={a.runs} "
            f"vmrun_ready_s={v:.3f} (min {min(v_times):.3f})")
    if q_times:
        q = statistics.median(q_times)
        line += (f" qemu_microvm_ready_s={q:.3f} (min {min(q_times):.3f})"
                 f" ratio={v / q:.2f}")
    if rss:
        line += f" vmrun_non_guest_rss_mib={max(rss) / 1024:.1f}"
    print(line)
    if a.markdown:
        print()
        print("| vCPUs | vmrun to READY (median) | QEMU microvm to READY "
              "(median) | ratio | vmrun memory beyond guest RAM |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| {a.cpus} | {v:.3f} s | "
              + (f"{statistics.median(q_times):.3f} s | "
                 f"{v / statistics.median(q_times):.2f}x |"
                 if q_times else "n/a | n/a |")
              + (f" {max(rss) / 1024:.1f} MiB |" if rss else " n/a |"))


if __name__ == "__main__":
    main()
