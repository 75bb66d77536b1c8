#!/usr/bin/env bash
# The benchmarks (dirty_perf, guest_perf, snapshot_perf, fuzz_perf,
# migrate_perf, linux_boot) on every KVM this host reaches:
# its own /dev/kvm when usable, and the emulated hardware-virtualisation
# host (tests/kvmhost/). Figures from the emulated host are for ratios
# between rows, not for absolute speed. Record them in docs/benchmarks.md
# with the KVM each came from, the machine and the date.
#
#   bash tests/perf/run.sh [--quick] [--native-only|--emulated-only]
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
bash tests/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null || ninja -C build

quick=() native=1 emulated=1
for a in "$@"; do
	case "$a" in
	--quick) quick=(--quick) ;;
	--native-only) emulated=0 ;;
	--emulated-only) native=0 ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "tests/perf/run.sh: unknown argument $a" >&2; exit 2 ;;
	esac
done

benches="build/tests/perf/dirty_perf ${quick[*]} --markdown && build/tests/perf/guest_perf ${quick[*]} && bash tests/perf/snapshot_perf.sh ${quick[*]} && bash tests/perf/fuzz_perf.sh ${quick[*]} && bash tests/perf/migrate_perf.sh ${quick[*]}"
# Debian's kernel and the Linux test guest, beside QEMU microvm: on a KVM
# that runs stock kernels (not PVM), and in an emulated host of one CPU
# (with more, the kernel hangs there; docs/linux-guest.md).
linux_dir=$(bash tests/guest/linux/prepare.sh)
runs=5
((${#quick[@]})) && runs=2
linux_boot="python3 tests/perf/linux_boot.py --vmrun build/vmrun/vmrun --dir $linux_dir --runs $runs --markdown"
linux_boot="$linux_boot --cpus 1 && $linux_boot --cpus 4"
if ((native)) && label=$(build/vmrun/vmrun info --kvm 2>/dev/null); then
	echo "=== benchmarks on this host's KVM ($label), $(date -u +%F) ==="
	bash -c "$benches"
	[ "$label" = kvm_pvm ] || bash -c "$linux_boot"
elif ((native)); then
	echo "tests/perf/run.sh: no usable /dev/kvm here; only the emulated host" >&2
fi
if ((emulated)); then
	echo "=== benchmarks on the emulated host (kvm_amd npt under QEMU TCG), $(date -u +%F) ==="
	bash tests/kvmhost/kvmhost.sh --timeout 3000 -- bash -c "$benches"
	echo "=== linux_boot on a one-CPU emulated host, $(date -u +%F) ==="
	bash tests/kvmhost/kvmhost.sh --cpus 1 --timeout 3000 -- bash -c "$linux_boot"
fi
