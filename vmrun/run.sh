#!/usr/bin/env bash
# The main job: install what the build needs (Debian packages, as root,
# idempotently), build vmrun, and boot the built-in reference guest with a
# memory-dirtying workload that verifies its own pages, for a few seconds.
# Extra arguments go to 'vmrun run' (for example --cpus 4 --mem 1G).
# On a host without a usable /dev/kvm it says so and runs the same demo
# inside the emulated hardware-virtualisation host (tests/kvmhost/).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || ninja -C build
demo=(build/vmrun/vmrun run --cpus 2 --mem 512M
	--cmdline "work=dirty mib=64 rate=200 pattern=random ticks=20 tick_ms=250" "$@")
info="build/vmrun/vmrun info | sed -n '1,/VM creation\|KVM API/p' | grep -v 'KVM API' >&2"
title="== vmrun run: the reference guest, 2 vCPUs, dirtying 64 MiB at 200 MB/s, 20 ticks =="
if ! build/vmrun/vmrun info --kvm >/dev/null 2>&1; then
	echo "vmrun/run.sh: no usable /dev/kvm here ($(build/vmrun/vmrun info 2>&1 | head -1 | sed 's/^vmrun: //')); running the demo inside the emulated host (tests/kvmhost/, about 10 s to boot)" >&2
	exec bash tests/kvmhost/kvmhost.sh --quiet -- bash -c \
		"echo '== vmrun info (emulated host) ==' >&2; $info; echo '$title' >&2; exec \"\$@\"" \
		vmrun "${demo[@]}"
fi
echo "== vmrun info ==" >&2
eval "$info"
echo "$title" >&2
exec "${demo[@]}"
