#!/usr/bin/env bash
# Live migration over loopback, first figures: the reference guest at a
# size and a write rate migrates from one vmrun to another on this host;
# prints what `vmrun ctl migrate --json` reports (total time, the
# source's frozen time, rounds, bytes on the wire), one line per run, and
# a Markdown table; the destination must verify all the guest's memory
# once more with no mismatch (bad tick lines: 0).
#
#   bash tests/perf/migrate_perf.sh [--quick] [--runs N]
#
# Needs a KVM (this host's, or run it inside tests/kvmhost/kvmhost.sh).
# Not yet: QEMU side by side, several links, rates near the link's.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
vmrun=${VMRUN:-$top/build/vmrun/vmrun}
runs=3
sizes="256 1024"
rates="idle 64 0"
while (($#)); do
	case "$1" in
	--quick) runs=1; sizes=256; rates="idle 0" ;;
	--runs) runs=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "migrate_perf: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -x "$vmrun" ] || { echo "migrate_perf: no $vmrun (build first)" >&2; exit 2; }

dir=$(mktemp -d /tmp/vmrun-migperf.XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$dir"' EXIT

# verified FILE: "verified" of the last whole TICK line (0 if none).
verified() {
	local v
	v=$(grep -a 'GUEST TICK n=.*mismatches=' "$1" 2>/dev/null | tail -1 |
		sed 's/.*verified=\([0-9]*\).*/\1/')
	echo "${v:-0}"
}

rows=()
for mib in $sizes; do
	for rate in $rates; do
		for ((r = 1; r <= runs; r++)); do
			rm -f "$dir"/*
			if [ "$rate" = idle ]; then
				cmd="work=idle mib=$((mib / 2)) tick_ms=10"
			else
				cmd="work=dirty mib=$((mib / 2)) rate=$rate tick_ms=10"
			fi
			"$vmrun" run --mem "${mib}M" --cpus 2 --cmdline "$cmd" \
				--ctl "$dir/src.sock" --console "file:$dir/src.con" \
				2>"$dir/src.err" &
			src=$!
			"$vmrun" run --incoming tcp:127.0.0.1:0 --ctl "$dir/dst.sock" \
				--console "file:$dir/dst.con" 2>"$dir/dst.err" &
			dst=$!
			# Once the workload has filled its memory and verified
			# it whole: every page it owns is written.
			for i in $(seq 1 3000); do
				grep -q "on tcp:" "$dir/dst.err" 2>/dev/null &&
					[ -S "$dir/src.sock" ] &&
					(($(verified "$dir/src.con") >= mib / 2 * 256)) && break
				sleep 0.1
			done
			uri=$(grep -o 'tcp:127.0.0.1:[0-9]*' "$dir/dst.err")
			json=$("$vmrun" ctl "$dir/src.sock" migrate "$uri" --json)
			wait "$src"
			# The destination verifies everything once more.
			v0=$(verified "$dir/src.con")
			for i in $(seq 1 3000); do
				(($(verified "$dir/dst.con") >= v0 + mib / 2 * 256)) && break
				sleep 0.1
			done
			"$vmrun" ctl "$dir/dst.sock" stop >/dev/null
			wait "$dst" || true
			bad=$(cat "$dir/src.con" "$dir/dst.con" | grep -a 'GUEST TICK' | grep -vc 'mismatches=0' || true)
			echo "migrate_perf: mem=${mib}M rate=$rate run=$r $json bad_lines=$bad"
			rows+=("$(echo "$json" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(f\"| $mib MiB | $rate | {d['ms']:.0f} ms | {d['downtime_ms']:.1f} ms | {d['accept_ms']:.1f} ms | {d['rounds']} | {d['bytes']/1048576:.1f} MiB | $bad |\")")")
		done
	done
done
echo
echo "| guest | write rate (MiB/s; 0 = as fast as it can) | total | source frozen | of which the destination loading | rounds | on the wire | bad tick lines |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
