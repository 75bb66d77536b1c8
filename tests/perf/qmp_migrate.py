#!/usr/bin/env python3
# QEMU's side of tests/perf/migrate_perf.sh: a minimal QMP client.
#
#   qmp_migrate.py SOCKET migrate URI [--tuned]
#       sets the downtime limit to 300 ms (QEMU's default too); with
#       --tuned also the bandwidth cap to 10 GB/s (QEMU 7.2's default is
#       128 MiB/s) and auto-converge on; migrates, waits until QEMU says
#       completed or failed, and prints one JSON object: status, ms
#       (total-time), downtime_ms, bytes (ram transferred), rounds
#       (dirty-sync-count).
#   qmp_migrate.py SOCKET quit
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.f.readline()  # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r["return"]


def main():
    if sys.argv[2] == "quit":
        # A QEMU that is gone already (a destination that quit by
        # itself) is as good as one that quits now.
        try:
            Qmp(sys.argv[1]).cmd("quit")
        except (OSError, ValueError):
            pass
        return
    q = Qmp(sys.argv[1])
    uri = sys.argv[3]
    tuned = "--tuned" in sys.argv
    params = {"downtime-limit": 300}
    if tuned:
        params["max-bandwidth"] = 10 * 1000 * 1000 * 1000
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "auto-converge", "state": True}])
    q.cmd("migrate-set-parameters", **params)
    q.cmd("migrate", uri=uri)
    deadline = time.monotonic() + 600
    while True:
        m = q.cmd("query-migrate")
        st = m.get("status")
        if st in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            # Never converged: reported as it stands, then stopped, so
            # that the next run does not share the machine with it.
            q.cmd("migrate_cancel")
            break
        time.sleep(0.02)
    ram = m.get("ram", {})
    print(json.dumps({
        "status": st,
        "ms": m.get("total-time", 0),
        "downtime_ms": m.get("downtime", 0),
        "bytes": ram.get("transferred", 0),
        "rounds": ram.get("dirty-sync-count", 0),
    }))


if __name__ == "__main__":
    main()
