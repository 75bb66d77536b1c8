#!/usr/bin/env bash
# Live migration over loopback, side by side with QEMU: the reference
# guest at a size and a write rate migrates from one VMM process to
# another on this host, under vmrun, under Debian's QEMU with its
# defaults (-machine microvm -accel kvm), and under QEMU tuned (bandwidth
# cap lifted, auto-converge on). One line per run and a Markdown table:
# total time, the downtime the VMM reports (vmrun: the source's vCPUs
# frozen; QEMU: its "downtime"), the gap the guest's console shows (the
# host's time from the source's last tick line to the destination's
# first; ticks come every 10 ms, so it includes up to one interval),
# rounds, bytes on the wire, and tick lines reporting a mismatch (the
# destination must verify all the guest's memory once more: any bad
# line is a lost or garbled page). Then the ratios of vmrun to QEMU.
#
#   bash tests/perf/migrate_perf.sh [--quick] [--runs N] [--no-qemu]
#        [--sizes "MIB ..."] [--migrate-args "ARGS"]
#
# --migrate-args: more options for vmrun's ctl migrate (say
# "--connections 4" or "--compress none").
#
# Needs a KVM (this host's, or run it inside tests/kvmhost/kvmhost.sh).
# One vCPU each: the reference guest finds only its boot CPU under QEMU's
# microvm (no MP table there).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
vmrun=${VMRUN:-$top/build/vmrun/vmrun}
ref=$top/build/tests/guest/ref/refguest.elf
runs=3
sizes="256 1024"
rates="idle 64 0"
vmms="vmrun qemu qemu-tuned"
margs=""
while (($#)); do
	case "$1" in
	--quick) runs=1; sizes=256; rates="idle 0" ;;
	--runs) runs=$2; shift ;;
	--no-qemu) vmms=vmrun ;;
	--sizes) sizes=$2; shift ;;
	--migrate-args) margs=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "migrate_perf: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -x "$vmrun" ] || { echo "migrate_perf: no $vmrun (build first)" >&2; exit 2; }
if [ "$vmms" != vmrun ] && ! command -v qemu-system-x86_64 >/dev/null; then
	echo "migrate_perf: no qemu-system-x86_64: vmrun alone" >&2
	vmms=vmrun
fi

dir=$(mktemp -d /tmp/vmrun-migperf.XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$dir"' EXIT

# stamp FILE: stdin's lines into FILE, each after the host's time (s).
stamp() {
	local l
	while IFS= read -r l; do
		printf '%s %s\n' "$EPOCHREALTIME" "$l"
	done >"$1"
}

# verified FILE: "verified" of the last whole TICK line (0 if none).
verified() {
	local v
	v=$(grep -a 'GUEST TICK n=.*mismatches=' "$1" 2>/dev/null | tail -1 |
		sed 's/.*verified=\([0-9]*\).*/\1/')
	echo "${v:-0}"
}

# gap SRC DST: ms from the source's last tick line to the destination's first.
gap() {
	local a b
	a=$(grep -a 'GUEST TICK' "$1" | tail -1 | cut -d' ' -f1)
	b=$(grep -a 'GUEST TICK' "$2" | head -1 | cut -d' ' -f1)
	# No tick on one side (a destination that never ran): no gap.
	[ -n "$a" ] && [ -n "$b" ] || return 1
	python3 -c "print(f'{($b - $a) * 1000:.0f}')"
}

# wait_verified FILE PAGES: until the guest has verified PAGES more.
wait_verified() {
	local _
	for _ in $(seq 1 3000); do
		(($(verified "$1") >= $2)) && return 0
		sleep 0.1
	done
	return 1
}

qemu_run() { # NAME MIB CMDLINE [QEMU OPTIONS...]
	local name=$1 mib=$2 cmd=$3
	shift 3
	qemu-system-x86_64 -machine microvm -accel kvm -cpu host -m "${mib}M" \
		-smp 1 -nodefaults -no-user-config -display none -serial stdio \
		-kernel "$ref" -append "$cmd" \
		-qmp "unix:$dir/$name.qmp,server=on,wait=off" "$@" \
		2>"$dir/$name.err" > >(stamp "$dir/$name.con") &
}

# migrate_one VMM MIB CMDLINE: one migration; prints its JSON on stdout.
migrate_one() {
	local vmm=$1 mib=$2 cmd=$3 own=$(($2 / 2 * 256)) json uri port src dst
	if [ "$vmm" = vmrun ]; then
		"$vmrun" run --mem "${mib}M" --cpus 1 --cmdline "$cmd" \
			--ctl "$dir/src.sock" --console stdio \
			2>"$dir/src.err" > >(stamp "$dir/src.con") &
		src=$!
		"$vmrun" run --incoming tcp:127.0.0.1:0 --ctl "$dir/dst.sock" \
			--console stdio 2>"$dir/dst.err" > >(stamp "$dir/dst.con") &
		dst=$!
		for _ in $(seq 1 3000); do
			grep -q "on tcp:" "$dir/dst.err" 2>/dev/null &&
				[ -S "$dir/src.sock" ] && break
			sleep 0.1
		done
		# Once the workload has filled its memory and verified it
		# whole: every page it owns is written.
		wait_verified "$dir/src.con" "$own"
		uri=$(grep -o 'tcp:127.0.0.1:[0-9]*' "$dir/dst.err")
		# shellcheck disable=SC2086 # the extra options, word-split
		json=$("$vmrun" ctl "$dir/src.sock" migrate "$uri" $margs --json)
		wait "$src"
		wait_verified "$dir/dst.con" $(($(verified "$dir/src.con") + own))
		"$vmrun" ctl "$dir/dst.sock" stop >/dev/null
		wait "$dst" || true
	else
		port=$((20000 + RANDOM % 20000))
		qemu_run src "$mib" "$cmd"
		src=$!
		qemu_run dst "$mib" "$cmd" -incoming "tcp:127.0.0.1:$port"
		dst=$!
		for _ in $(seq 1 3000); do
			[ -S "$dir/src.qmp" ] && [ -S "$dir/dst.qmp" ] && break
			sleep 0.1
		done
		wait_verified "$dir/src.con" "$own"
		# shellcheck disable=SC2046 # no word at all when not tuned
		json=$(python3 "$top/tests/perf/qmp_migrate.py" "$dir/src.qmp" \
			migrate "tcp:127.0.0.1:$port" \
			$([ "$vmm" = qemu-tuned ] && echo --tuned))
		python3 "$top/tests/perf/qmp_migrate.py" "$dir/src.qmp" quit
		wait "$src" || true
		# A destination that never runs (a failed migration) has no
		# ticks: give up on it after the deadline.
		wait_verified "$dir/dst.con" $(($(verified "$dir/src.con") + own)) || true
		python3 "$top/tests/perf/qmp_migrate.py" "$dir/dst.qmp" quit
		wait "$dst" || true
	fi
	echo "$json"
}

rows=()
declare -A total
for mib in $sizes; do
	for rate in $rates; do
		if [ "$rate" = idle ]; then
			cmd="work=idle mib=$((mib / 2)) tick_ms=10"
		else
			cmd="work=dirty mib=$((mib / 2)) rate=$rate tick_ms=10"
		fi
		for vmm in $vmms; do
			for ((r = 1; r <= runs; r++)); do
				rm -rf "${dir:?}"/*
				json=$(migrate_one "$vmm" "$mib" "$cmd")
				sleep 0.2 # the stamping readers' last lines
				bad=$(cat "$dir/src.con" "$dir/dst.con" | grep -a 'GUEST TICK' | grep -vc 'mismatches=0' || true)
				g=$(gap "$dir/src.con" "$dir/dst.con" 2>/dev/null || echo "?")
				echo "migrate_perf: $vmm mem=${mib}M rate=$rate run=$r $json guest_gap_ms=$g bad_lines=$bad"
				row=$(echo "$json" | python3 -c "
import json,sys
d=json.load(sys.stdin)
st=d.get('status','completed')
bad=' ' + st if st != 'completed' else ' no total-time from QEMU' if d['ms'] <= 0 else ''
print(f\"| $mib MiB | $rate | $vmm | {d['ms']:.0f} ms | {d['downtime_ms']:.1f} ms | $g ms | {d['rounds']} | {d['bytes']/1048576:.1f} MiB | $bad |\" + bad)")
				rows+=("$row")
				# Only completed migrations count in the medians.
				total["$mib $rate $vmm"]+="$(echo "$json" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(d['ms'] if d.get('status','completed') == 'completed' and d['ms'] > 0 else '')") "
			done
		done
	done
done
echo
echo "| guest | write rate (MiB/s; 0 = as fast as it can) | VMM | total | downtime (VMM's figure) | gap in the guest's ticks | rounds | on the wire | bad tick lines |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
if [ "$vmms" != vmrun ]; then
	echo
	echo "Total time, vmrun over QEMU (medians):"
	for mib in $sizes; do
		for rate in $rates; do
			python3 -c "
import statistics as s
def med(k):
    x=[float(v) for v in k.split()]
    return s.median(x) if x else float('nan')
v=med('${total["$mib $rate vmrun"]}')
q=med('${total["$mib $rate qemu"]}')
t=med('${total["$mib $rate qemu-tuned"]}')
print(f'  {$mib} MiB, rate $rate: {v/q:.2f}x QEMU defaults, {v/t:.2f}x QEMU tuned')"
		done
	done
fi
