#!/usr/bin/env bash
# The whole test suite: installs build dependencies, builds vmrun twice
# (a normal build and an ASan/UBSan build, both with warnings as errors),
# and runs the unit tests and the KVM tests against /dev/kvm in each.
# A host without a usable /dev/kvm fails the run; it never passes vacuously.
#
#   bash tests/run.sh            everything
#   bash tests/run.sh --quick    the normal build only
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/deps.sh || exit 1

quick=0
[ "${1:-}" = "--quick" ] && quick=1

passed=0
failed=0
status=0

run_suite() { # build-dir binary [suites...]
	local out dir=$1 bin=$2
	shift 2
	out=$(mktemp)
	"$dir/$bin" "$@" 2>&1 | tee "$out"
	local rc=${PIPESTATUS[0]}
	local line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	if [ -n "$line" ]; then
		passed=$((passed + $(echo "$line" | awk '{print $1}')))
		failed=$((failed + $(echo "$line" | awk '{print $3}' | tr -d ,)))
	fi
	if [ "$rc" -ne 0 ]; then
		echo "tests/run.sh: $dir/$bin exited with $rc" >&2
		[ -z "$line" ] && failed=$((failed + 1))
		status=1
	fi
	rm -f "$out"
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
		failed=$((failed + 1))
		status=1
	else
		passed=$((passed + 1))
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

configs=("build")
((quick)) || configs+=("build-asan" "build-tsan")

for dir in "${configs[@]}"; do
	echo "=== $dir ==="
	if [ "$dir" = build-asan ]; then
		build "$dir" -Db_sanitize=address,undefined -Db_lundef=false || { status=1; failed=$((failed + 1)); continue; }
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
		export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	elif [ "$dir" = build-tsan ]; then
		# The threaded core only: vCPUs, pause, memory, dirty tracking.
		# (werror off: GCC warns that TSan cannot see fences.)
		build "$dir" -Db_sanitize=thread -Db_lundef=false -Dwerror=false || { status=1; failed=$((failed + 1)); continue; }
		export TSAN_OPTIONS=halt_on_error=1
		run_suite "$dir" tests/kvm/kvm_tests vm mem dirty pause
		unset TSAN_OPTIONS
		continue
	else
		build "$dir" || { status=1; failed=$((failed + 1)); continue; }
	fi
	run_suite "$dir" tests/unit/unit_tests
	run_suite "$dir" tests/kvm/kvm_tests
	# Fuzz harnesses, replayed over pseudo-random and mutated inputs.
	for f in fuzz_virtq fuzz_image_load; do
		if FUZZ_SEEDS="$dir/tests/guest" "$dir/tests/fuzz/$f" --smoke 20000; then
			passed=$((passed + 1))
		else
			echo "tests/run.sh: $dir/tests/fuzz/$f crashed" >&2
			failed=$((failed + 1))
			status=1
		fi
	done
done

echo
echo "${passed} passed, ${failed} failed"
exit $status
