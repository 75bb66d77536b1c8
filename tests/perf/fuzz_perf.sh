#!/usr/bin/env bash
# fuzz_perf: vmrun fuzz's resets per second against the pages an
# execution writes (1, 16, 256, 4096, with the reference guest's
# work=fuzz fuzz_pages=N), for 256 MiB and 4 GiB guests, beside the floor
# measured in the same run on the same KVM (tests/perf/fuzz_floor: one
# exit to user space and entry, plus copying that many pages, scattered or
# consecutive, whichever is cheaper). The pages
# column is what each reset copied back: N, plus the guest's stack, the
# input buffer, the descriptor and the coverage map (and on hardware
# paging the page-table pages the CPU's walker marks). Also the dirty log
# instead of the ring at 16 pages, whose cost grows with the guest,
# --no-hold at 16 and 256 pages (every page given back to KVM's write
# protection at each reset: a fault per page and execution), and
# --jobs 2 at 16 pages. Each figure is the median of N runs (default 3).
#
#   bash tests/perf/fuzz_perf.sh [--quick] [--runs N] [--vmrun PATH]
#       [--sizes "MiB ..."] [--pages "N ..."]
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
vmrun=$top/build/vmrun/vmrun floor=$top/build/tests/perf/fuzz_floor runs=3
sizes="256 4096" pages="1 16 256 4096"
while (($#)); do
	case "$1" in
	--quick) runs=1 sizes=256 pages="1 16" ;;
	--runs) runs=$2; shift ;;
	--vmrun) vmrun=$2; shift ;;
	--sizes) sizes=$2; shift ;;
	--pages) pages=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "fuzz_perf: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
w=$(mktemp -d /tmp/vmrun-fperf-XXXXXX)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/c" "$w/x"
printf 'VMPA\002hi' > "$w/c/seed"

kv() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1" | tail -1; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One configuration: prints "resets_per_s pages reset_us".
one() { # MEM PAGES EXTRA...
	local mem=$1 p=$2 n out r=() pg=0 us=0
	shift 2
	n=$((p >= 4096 ? 600 : p >= 256 ? 4000 : 20000))
	for ((i = 0; i < runs; i++)); do
		out=$("$vmrun" fuzz --mem "${mem}M" --cmdline "work=fuzz fuzz_pages=$p" \
			--corpus "$w/c" --crashes "$w/x" --iterations $n "$@" 2>/dev/null | tail -1)
		r+=("$(kv "$out" resets_per_s)")
		pg=$(kv "$out" pages_per_reset)
		us=$(kv "$out" reset_us)
	done
	echo "$(printf '%s\n' "${r[@]}" | median) $pg $us"
}

echo "| guest | pages written | pages reset | resets/s | reset alone µs | floor resets/s | of floor |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mem in $sizes; do
	for p in $pages; do
		read -r rps pg us <<<"$(one "$mem" "$p")"
		fl=$("$floor" "$mem" "${pg%.*}" | sed -n 's/.*resets_per_s=\([0-9]*\).*/\1/p')
		printf '| %s MiB | %s | %s | %s | %s | %s | %.0f%% |\n' "$mem" "$p" "$pg" \
			"$rps" "$us" "$fl" "$(echo "100 * $rps / $fl" | bc -l)"
	done
	read -r rps pg us <<<"$(one "$mem" 16 --dirty-log)"
	printf '| %s MiB, dirty log | 16 | %s | %s | %s | | |\n' "$mem" "$pg" "$rps" "$us"
	for p in 16 256; do
		[[ " $pages " == *" $p "* ]] || continue
		read -r rps pg us <<<"$(one "$mem" "$p" --no-hold)"
		printf '| %s MiB, --no-hold | %s | %s | %s | %s | | |\n' "$mem" "$p" "$pg" "$rps" "$us"
	done
done
read -r rps pg us <<<"$(one 256 16 --jobs 2)"
printf '| 256 MiB, --jobs 2 (sum) | 16 | %s | %s | %s | | |\n' "$pg" "$rps" "$us"
