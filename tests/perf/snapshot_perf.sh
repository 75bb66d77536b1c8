#!/usr/bin/env bash
# snapshot_perf: vmrun's save and restore with the reference guest, from
# the outside, through the figures vmrun prints itself (--json):
#   - save time, time the vCPUs were frozen and image size, per codec;
#   - restore to running (image opened to vCPUs about to run, VM
#     creation included), full and lazy, and for lazy the time until
#     memory was complete;
# for 256 MiB and 1 GiB guests, idle and with half of RAM written.
# Then, side by side on the same KVM, the same guest (PVH entry) under
# Debian's QEMU (-machine microvm -accel kvm; tests/perf/qemu_snap.py):
# saved stopped with QMP migrate to a file, restored with -incoming; and
# vmrun (zstd) timed the same way from outside, from starting the process
# to the guest running (QEMU: query-status running after cont; vmrun: its
# control socket up, which it opens as the vCPUs start).
# Each figure is the median of N runs (default 3).
#
#   bash tests/perf/snapshot_perf.sh [--quick] [--runs N] [--vmrun PATH]
#                                    [--sizes 256,1024] [--no-qemu]
#                                    [--qemu-only]
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
vmrun=$top/build/vmrun/vmrun runs=3 sizes="256 1024" qemu=1 qemu_only=0
while (($#)); do
	case "$1" in
	--no-qemu) qemu=0 ;;
	--qemu-only) qemu_only=1 ;;
	--sizes) sizes=${2//,/ }; shift ;;
	--quick) runs=1 sizes=256 ;;
	--runs) runs=$2; shift ;;
	--vmrun) vmrun=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "snapshot_perf: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
w=$(mktemp -d /tmp/vmrun-sperf-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$w"' EXIT

# The value of "key": in a JSON line.
jget() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wait_sock() {
	local i
	for ((i = 0; i < 3000; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.01
	done
	echo "snapshot_perf: no control socket $1" >&2
	return 1
}

# Runs the guest with @1 MiB of RAM writing @2 MiB, saves it in each codec.
save_all() {
	local mem=$1 mib=$2 codec pid i
	rm -f "$w"/s.sock "$w"/con
	"$vmrun" run --mem "${mem}M" --ctl "$w/s.sock" --console "file:$w/con" \
		--cmdline "work=dirty mib=$mib rate=0 tick_ms=200" &
	pid=$!
	wait_sock "$w/s.sock"
	# Until the workload has written all it owns (or, idle, ticks).
	for ((i = 0; i < 3000; i++)); do
		n=$(grep -c "GUEST TICK" "$w/con" 2>/dev/null || true)
		written=$({ grep "GUEST TICK" "$w/con" 2>/dev/null || true; } |
			tail -1 | sed -n 's/.*written=\([0-9]*\).*/\1/p')
		((n >= 2 && ${written:-0} >= mib * 256)) && break
		sleep 0.05
	done
	# A live save of the running guest first (lz4).
	for ((i = 0; i < runs; i++)); do
		"$vmrun" ctl "$w/s.sock" save "$w/img-live" --live --compress lz4 --json
	done >"$w/save-live.json"
	"$vmrun" ctl "$w/s.sock" pause >/dev/null
	for codec in lz4 zstd none; do
		for ((i = 0; i < runs; i++)); do
			"$vmrun" ctl "$w/s.sock" save "$w/img-$codec" --compress $codec --json
		done >"$w/save-$codec.json"
	done
	kill -9 $pid
	wait $pid 2>/dev/null || true
}

# Restores @1 (with options @2...) N times; prints "ms complete_ms".
restore_times() {
	local img=$1 i pid
	shift
	for ((i = 0; i < runs; i++)); do
		rm -f "$w/r.sock"
		"$vmrun" restore "$img" --ctl "$w/r.sock" --console none --json "$@" 2>"$w/r.err" &
		pid=$!
		wait_sock "$w/r.sock"
		if [[ " $* " == *" --lazy "* ]]; then
			for ((k = 0; k < 3000; k++)); do
				grep -q lazy_complete "$w/r.err" && break
				sleep 0.01
			done
		fi
		kill $pid
		wait $pid 2>/dev/null || true
		echo "$(grep '"restored"' "$w/r.err" | jget ms) $({ grep lazy_complete "$w/r.err" || true; } | jget ms)"
	done
}

# Milliseconds from starting `vmrun restore @1 @2...` to its control socket.
restore_wall() {
	local img=$1 t0 t1 pid
	shift
	rm -f "$w/rw.sock"
	t0=$(date +%s%N)
	"$vmrun" restore "$img" --ctl "$w/rw.sock" --console none "$@" 2>/dev/null &
	pid=$!
	until [ -S "$w/rw.sock" ]; do
		kill -0 $pid 2>/dev/null || { echo "snapshot_perf: restore died" >&2; return 1; }
		sleep 0.001
	done
	t1=$(date +%s%N)
	kill $pid
	wait $pid 2>/dev/null || true
	echo "scale=1; ($t1 - $t0) / 1000000" | bc
}

echo "snapshot_perf: $("$vmrun" info --kvm 2>/dev/null || echo '?'), $(date -u +%F), median of $runs"
echo
if ((!qemu_only)); then
echo "| RAM | written | codec | save (frozen) | image | restore to running | lazy: to running | lazy: memory complete | live save while running, lz4 (frozen, rounds) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for mem in $sizes; do
	for load in idle half; do
		mib=1
		[ $load = half ] && mib=$((mem / 2))
		save_all "$mem" "$mib"
		for codec in lz4 zstd none; do
			save=$(jget ms <"$w/save-$codec.json" | median)
			frozen=$(grep -o '"frozen_ms":[0-9.]*' "$w/save-$codec.json" | cut -d: -f2 | median)
			size=$(stat -c %s "$w/img-$codec")
			full=$(restore_times "$w/img-$codec" | cut -d' ' -f1 | median)
			restore_times "$w/img-$codec" --lazy >"$w/lazy.txt"
			lazy=$(cut -d' ' -f1 "$w/lazy.txt" | median)
			done_ms=$(cut -d' ' -f2 "$w/lazy.txt" | median)
			if ((size < 1048576)); then
				size="$((size / 1024)) KiB"
			else
				size="$(printf %.1f "$(echo "$size / 1048576" | bc -l)") MiB"
			fi
			live="-"
			if [ $codec = lz4 ]; then
				live=$(printf "%.1f ms (%.1f, %s)" \
					"$(jget ms <"$w/save-live.json" | median)" \
					"$(grep -o '"frozen_ms":[0-9.]*' "$w/save-live.json" | cut -d: -f2 | median)" \
					"$(grep -o '"rounds":[0-9]*' "$w/save-live.json" | cut -d: -f2 | median)")
			fi
			printf "| %s MiB | %s | %s | %.1f ms (%.1f) | %s | %.1f ms | %.1f ms | %.0f ms | %s |\n" \
				"$mem" "$([ $load = idle ] && echo idle || echo "$mib MiB")" "$codec" \
				"$save" "$frozen" "$size" "$full" "$lazy" "${done_ms:-0}" "$live"
		done
	done
done
fi

if ((qemu)) && command -v qemu-system-x86_64 >/dev/null; then
	elf=$top/build/tests/guest/ref/refguest.elf
	echo
	echo "Side by side with QEMU (microvm, KVM), restore timed from process start to running:"
	echo
	echo "| RAM | written | QEMU save | QEMU image | QEMU restore | vmrun zstd save | vmrun image | vmrun restore | vmrun lazy restore | save ratio | image ratio | restore: QEMU / vmrun lazy |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	for mem in $sizes; do
		for load in idle half; do
			mib=1
			[ $load = half ] && mib=$((mem / 2))
			for ((i = 0; i < runs; i++)); do
				python3 "$top/tests/perf/qemu_snap.py" "$elf" "$mem" "$mib" "$w"
			done >"$w/qemu.txt"
			qs=$(cut -d' ' -f1 "$w/qemu.txt" | median)
			qb=$(cut -d' ' -f2 "$w/qemu.txt" | median)
			qr=$(cut -d' ' -f3 "$w/qemu.txt" | median)
			save_all "$mem" "$mib"
			vs=$(jget ms <"$w/save-zstd.json" | median)
			vb=$(stat -c %s "$w/img-zstd")
			vr=$(for ((i = 0; i < runs; i++)); do restore_wall "$w/img-zstd"; done | median)
			vl=$(for ((i = 0; i < runs; i++)); do restore_wall "$w/img-zstd" --lazy; done | median)
			printf "| %s MiB | %s | %.0f ms | %.1f MiB | %.0f ms | %.1f ms | %.2f MiB | %.0f ms | %.0f ms | %.3fx | %.4fx | %.0fx |\n" \
				"$mem" "$([ $load = idle ] && echo idle || echo "$mib MiB")" \
				"$qs" "$(echo "$qb / 1048576" | bc -l)" "$qr" "$vs" \
				"$(echo "$vb / 1048576" | bc -l)" "$vr" "$vl" \
				"$(echo "$vs / $qs" | bc -l)" "$(echo "$vb / $qb" | bc -l)" \
				"$(echo "$qr / $vl" | bc -l)"
		done
	done
elif ((qemu)); then
	echo "snapshot_perf: no qemu-system-x86_64: the QEMU comparison is left out" >&2
fi
