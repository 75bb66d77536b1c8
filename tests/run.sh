#!/usr/bin/env bash
# The whole test suite: installs build dependencies, checks formatting,
# builds vmrun three times (plain and ASan/UBSan with warnings as errors,
# ThreadSanitizer) and runs the unit tests and fuzz replays here, and the
# KVM suites on every KVM it can reach:
#   - this host's /dev/kvm, when it opens and can create a VM;
#   - always, the emulated hardware-virtualisation host (tests/kvmhost/:
#     QEMU TCG with AMD SVM and nested paging, Debian's kernel, kvm-amd),
#     since users run hardware KVM and development hosts may have none.
# A run that reaches no KVM at all fails; it never passes vacuously. The
# summary gives each KVM's counts; the last line is "N passed, N failed".
#
#   bash tests/run.sh            everything
#   bash tests/run.sh --quick    the plain build only
#   VMRUN_TEST_NPT=off ...       the emulated host with shadow paging
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
bash tests/deps.sh || exit 1

quick=0
[ "${1:-}" = "--quick" ] && quick=1
npt=${VMRUN_TEST_NPT:-on}

passed=0
failed=0
status=0
declare -A kvm_passed kvm_failed
kvm_labels=()

count() { # label passed failed
	passed=$((passed + $2))
	failed=$((failed + $3))
	[ -z "$1" ] && return
	if [ -z "${kvm_passed[$1]+x}" ]; then
		kvm_labels+=("$1")
		kvm_passed[$1]=0
		kvm_failed[$1]=0
	fi
	kvm_passed[$1]=$((kvm_passed[$1] + $2))
	kvm_failed[$1]=$((kvm_failed[$1] + $3))
}

# run_suite LABEL COMMAND...: runs a CUnit binary (directly or through the
# emulated host), shows its output and counts its closing line under LABEL
# (empty: no KVM involved). A run that ends without that line, or exits
# non-zero, counts as one more failure.
run_suite() {
	local label=$1 out rc line p=0 f=0 t0=$SECONDS
	shift
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	count_output "$label" "$out" "$rc" "$((SECONDS - t0))" "$*"
	rm -f "$out"
}

# count_output LABEL FILE RC SECONDS WHAT: counts a finished suite's
# output (see run_suite).
count_output() {
	local label=$1 out=$2 rc=$3 p=0 f=0 line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	if [ -n "$line" ]; then
		p=$(echo "$line" | awk '{print $1}')
		f=$(echo "$line" | awk '{print $3}')
	fi
	if [ "$rc" -ne 0 ]; then
		echo "tests/run.sh: '$5' exited with $rc" >&2
		[ -z "$line" ] || [ "$f" -eq 0 ] && f=$((f + 1))
		status=1
	fi
	echo "tests/run.sh: $5: done in $4 s"
	count "$label" "$p" "$f"
}

# The linux suite of the plain build on a one-CPU emulated host, in the
# background; its output is shown and counted at the end.
linux_label="kvm_amd npt, 1 CPU (emulated)"
start_linux() {
	[ -n "${linux_pid:-}" ] || [ ! -x build/tests/kvm/kvm_tests ] && return
	echo "--- build: the linux suite on a one-CPU emulated host, in the background ---"
	linux_out=$(mktemp)
	linux_t0=$SECONDS
	# A Linux guest whose I/O stalls is saved there, as evidence.
	mkdir -p build/evidence
	bash tests/kvmhost/kvmhost.sh --npt "$npt" --cpus 1 --timeout 900 \
		-- env VMRUN_TEST_EVIDENCE="$top/build/evidence" \
		build/tests/kvm/kvm_tests linux >"$linux_out" 2>&1 &
	linux_pid=$!
	# What runs beside it from here (sanitizer builds and suites) yields
	# the CPU to it: twice, starved beside them, the one-CPU emulated
	# host stopped getting its timer interrupts and hung (alone it has
	# not; see docs/linux-guest.md).
	renice -n 10 -p $$ >/dev/null 2>&1 || true
}

build() { # dir [meson options...]
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null || return 1
	fi
	ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
}

# Formatting, as STYLE.md asks: one check, counted like a test.
if command -v clang-format >/dev/null; then
	bad=$(git ls-files '*.c' '*.h' 2>/dev/null | while read -r f; do
		clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"
	done)
	if [ -n "$bad" ]; then
		echo "clang-format: these files need formatting:" $bad
		count "" 0 1
		status=1
	else
		count "" 1 0
	fi
fi

# The unit test of virtio-net's tap back end needs an existing tap.
tap_made=0
if [ "$(id -u)" -eq 0 ] && [ -z "${VMRUN_TEST_TAP:-}" ] &&
	ip tuntap add vmrun-ut$$ mode tap 2>/dev/null; then
	export VMRUN_TEST_TAP=vmrun-ut$$
	# No IPv6 chatter from the host stack on the test tap.
	sysctl -qw "net.ipv6.conf.$VMRUN_TEST_TAP.disable_ipv6=1" 2>/dev/null || true
	tap_made=1
fi
trap '[ $tap_made = 1 ] && ip link del "$VMRUN_TEST_TAP" 2>/dev/null' EXIT

# The emulated host's kernel and initramfs, made once (cached).
bash tests/kvmhost/kvmhost.sh --prepare >/dev/null ||
	echo "tests/run.sh: the emulated host could not be prepared" >&2
# The Linux test guest (Debian's kernel and the project's initramfs), made
# once (cached); the linux suite finds it through VMRUN_LINUX_DIR, and
# fails, never skips, where it could boot it but the variable is missing.
if linux_dir=$(bash tests/guest/linux/prepare.sh); then
	export VMRUN_LINUX_DIR=$linux_dir
else
	echo "tests/run.sh: the Linux test guest could not be prepared" >&2
fi

configs=("build")
((quick)) || configs+=("build-asan" "build-tsan")
native=""

for dir in "${configs[@]}"; do
	echo "=== $dir ==="
	suites=()
	case "$dir" in
	build-asan)
		build "$dir" -Db_sanitize=address,undefined -Db_lundef=false ||
			{ status=1; count "" 0 1; start_linux; continue; }
		start_linux
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
		export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
		;;
	build-tsan)
		# The threaded core only: vCPUs, pause, memory, dirty tracking,
		# the image's codec workers and the connection threads.
		# (werror off: GCC warns that TSan cannot see fences.)
		build "$dir" -Db_sanitize=thread -Db_lundef=false -Dwerror=false ||
			{ status=1; count "" 0 1; continue; }
		export TSAN_OPTIONS=halt_on_error=1
		suites=(vm mem dirty pause)
		;;
	*)
		build "$dir" || { status=1; count "" 0 1; continue; }
		# Which KVM this host has, if any (vmrun info says why not).
		native=$("$dir/vmrun/vmrun" info --kvm 2>/dev/null) || native=""
		;;
	esac
	if [ "$dir" = build-tsan ]; then
		# The image's codec workers, each side, and a migration's
		# connection threads.
		run_suite "" "$dir/tests/unit/unit_tests" \
			image/threads_rewrites_in_order image/round_trip_codecs \
			stripe
	else
		run_suite "" "$dir/tests/unit/unit_tests"
		# Fuzz harnesses, replayed over pseudo-random and mutated inputs.
		for f in fuzz_virtq fuzz_image_load fuzz_image_read fuzz_vmsnap_info \
			fuzz_migrate_recv fuzz_kernel_unpack; do
			# The receiver builds a machine for a quarter of its
			# inputs (with a KVM here), the kernel loader
			# compresses a payload for half: fewer of those.
			n=20000
			[ "$f" = fuzz_migrate_recv ] && n=2000
			[ "$f" = fuzz_kernel_unpack ] && n=4000
			if FUZZ_SEEDS="$dir/tests/guest" "$dir/tests/fuzz/$f" --smoke "$n"; then
				count "" 1 0
			else
				echo "tests/run.sh: $dir/tests/fuzz/$f crashed" >&2
				count "" 0 1
				status=1
			fi
		done
	fi
	# With a KVM here the ASan build's suites run on it (below), and the
	# plain build's run everywhere in the emulated host: the plain
	# build's native run would only repeat the ASan build's.
	if [ -n "$native" ] && { ((quick)) || [ "$dir" != build ]; }; then
		echo "--- $dir: KVM suites on this host's KVM ($native) ---"
		run_suite "$native" "$dir/tests/kvm/kvm_tests" "${suites[@]}"
	fi
	label="kvm_amd npt"
	[ "$npt" = off ] && label="kvm_amd shadow"
	# The sanitizers look at vmrun's own code: with a KVM here the ASan
	# build's suites ran on it, and the emulated host (the slowest run,
	# over five minutes) adds nothing the plain build's run there lacks.
	if [ "$dir" = build-asan ] && [ -n "$native" ]; then
		echo "--- $dir: the emulated host skipped (its suites ran on $native) ---"
		unset ASAN_OPTIONS UBSAN_OPTIONS
		continue
	fi
	# Without a KVM here the ASan build's suites run in the emulated host
	# too, the core ones only: the slow guest suites (snapshot, fuzz,
	# linux) ran there in the plain build, and under ASan they would
	# push the whole run past 20 minutes.
	if [ "$dir" = build-asan ]; then
		suites=(vm mem dirty pause run guest ctl state migrate)
	fi
	echo "--- $dir: KVM suites on the emulated host ($label) ---"
	run_suite "$label (emulated)" bash tests/kvmhost/kvmhost.sh --npt "$npt" \
		--timeout 1500 -- "$dir/tests/kvm/kvm_tests" "${suites[@]}"
	# Debian's kernel boots reliably only in an emulated host of one CPU
	# (docs/linux-guest.md), so the linux suite's boots run in one of
	# those (in the run above they skip): in the background, beside the
	# sanitizer builds' suites, as it keeps one core busy for minutes;
	# started once the ASan build is compiled (or now, with --quick).
	if [ "$dir" = build ]; then
		linux_label="$label, 1 CPU (emulated)"
		((quick)) && start_linux
	fi
	unset ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS
done

if [ -n "${linux_pid:-}" ]; then
	echo "=== build: the linux suite on a one-CPU emulated host ==="
	wait "$linux_pid"
	linux_rc=$?
	cat "$linux_out"
	count_output "$linux_label" "$linux_out" "$linux_rc" \
		"$((SECONDS - linux_t0))" "the linux suite on a one-CPU emulated host"
	rm -f "$linux_out"
fi

echo
echo "=== summary ==="
for l in "${kvm_labels[@]}"; do
	echo "KVM $l: ${kvm_passed[$l]} passed, ${kvm_failed[$l]} failed"
done
reached=0
for l in "${kvm_labels[@]}"; do
	# A KVM counts as reached when some test passed on it.
	((kvm_passed[$l] > 0)) && reached=1
done
if ((!reached)); then
	echo "tests/run.sh: no KVM was reached (no usable /dev/kvm here, and the emulated host failed)" >&2
	count "" 0 1
	status=1
fi
echo "tests/run.sh: the whole run took $SECONDS s"
echo "${passed} passed, ${failed} failed"
exit $status
