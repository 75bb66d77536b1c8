#!/usr/bin/env bash
# The main job: install what the build needs (Debian packages, as root,
# idempotently), build vmrun, and boot the built-in reference guest with a
# memory-dirtying workload that verifies its own pages, for a few seconds.
# Extra arguments go to 'vmrun run' (for example --cpus 4 --mem 1G).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || ninja -C build
echo "== vmrun info ==" >&2
build/vmrun/vmrun info | sed -n '1p;/dirty tracking/,/ring /p' >&2
echo "== vmrun run: the reference guest, 2 vCPUs, dirtying 64 MiB at 200 MB/s, 20 ticks ==" >&2
exec build/vmrun/vmrun run --cpus 2 --mem 512M \
	--cmdline "work=dirty mib=64 rate=200 pattern=random ticks=20 tick_ms=250" "$@"
