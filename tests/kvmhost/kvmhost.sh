#!/usr/bin/env bash
# The emulated hardware-virtualisation host: runs one command against this
# machine's own files inside Debian's QEMU with TCG, whose CPU offers AMD
# SVM with nested paging, under Debian's own kernel with kvm-amd loaded.
# The guest sees the host's / read-only over virtio-9p, the project's tree
# writable at the same path, tmpfs on /tmp, /run and /dev/shm; so the same
# binaries, libraries and test files run unchanged against a hardware-style
# KVM (NPT), which machines whose kernel is itself a PVM guest do not have.
#
#   tests/kvmhost/kvmhost.sh [options] [--] COMMAND [ARG...]
#   tests/kvmhost/kvmhost.sh --prepare      only build the cached kernel/initramfs
#
# Options:
#   --mem SIZE      memory of the emulated host (default 6G)
#   --cpus N        its CPUs (default: this machine's, at most 4)
#   --npt on|off    kvm-amd's nested paging (default on; off = shadow paging)
#   --timeout SEC   wall-clock limit for the whole run (default 1800)
#   --cwd DIR       directory the command starts in (default: the current one)
#   --share DIR     the writable tree (default: the project's top directory)
#   --quiet         no progress lines on stderr
#   --dump-after S  after S seconds print every task's kernel stack on the
#                   guest console (shown on failure): for finding hangs
#
# Environment: KVMHOST_CPU, QEMU's -cpu for the emulated host (default
# max: TCG's AMD CPU of family 0Fh, for which Linux scans PCI config space
# for an AGP/GART aperture at boot, port I/O exit by exit, in the emulated
# host and in a stock kernel under vmrun or QEMU alike; max,family=25,model=1
# presents a current AMD family instead; docs/benchmarks.md, linux_boot).
#
# The command's standard output and error arrive on this script's standard
# output as it runs, and its exit status is this script's. When the guest
# cannot get /dev/kvm, panics, hangs past the limit or QEMU dies, the script
# says so with the tail of the guest console and exits 125 (126 for a
# setup failure here). The kernel and initramfs are built once from Debian's
# packages and cached in ${VMRUN_CACHE:-$XDG_CACHE_HOME/vmrun or ~/.cache/vmrun}.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${VMRUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrun}

mem=6G
cpus=$(nproc)
((cpus > 4)) && cpus=4
npt=on
timeout=1800
cwd=$PWD
share=$top
quiet=0
prepare_only=0
dump_after=0

die() {
	echo "kvmhost: $*" >&2
	exit 126
}
say() { ((quiet)) || echo "kvmhost: $*" >&2; }

while (($#)); do
	case "$1" in
	--mem) mem=$2; shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--npt) npt=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--cwd) cwd=$2; shift 2 ;;
	--share) share=$(cd "$2" && pwd) || die "no directory $2"; shift 2 ;;
	--quiet) quiet=1; shift ;;
	--dump-after) dump_after=$2; shift 2 ;;
	--prepare) prepare_only=1; shift ;;
	-h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) break ;;
	esac
done
case "$npt" in on) npt_arg=1 ;; off) npt_arg=0 ;; *) die "--npt takes on or off" ;; esac
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "--cpus takes a positive number"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout takes seconds"
[[ "$dump_after" =~ ^[0-9]+$ ]] || die "--dump-after takes seconds"
((prepare_only)) || (($#)) || die "no command given (see --help)"

# --- Dependencies: QEMU, busybox, and the kernel package, from Debian ----

need_pkgs() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root to install"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 &&
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "could not install ${missing[*]}"
}
need_pkgs qemu-system-x86 busybox-static cpio gzip

# The kernel: whatever Debian's linux-image-amd64 points at when the cache
# is first made; after that the cached one, so runs need no network.
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

# Everything that goes into the initramfs is hashed into its name, so a
# change to init or to the module list builds a new one.
modules=(kvm-amd virtio_pci 9pnet_virtio 9p virtio_console tun bridge veth)
recipe=$(cat "$here/init" "$0" | sha256sum | cut -c1-12)

build_initramfs() { # pkg dir
	local pkg=$1 dir=$2 tmp kver root m
	tmp=$(mktemp -d "$cache/.build.XXXXXX") || die "cannot write $cache"
	say "unpacking $pkg (once; cached in $dir)"
	if ! (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1); then
		apt-get update -qq >&2
		(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
			{ rm -rf "$tmp"; die "cannot download $pkg"; }
	fi
	dpkg-deb -x "$tmp"/*.deb "$tmp/pkg" || { rm -rf "$tmp"; die "cannot unpack $pkg"; }
	kver=$(ls "$tmp/pkg/lib/modules")
	busybox depmod -b "$tmp/pkg" "$kver" || { rm -rf "$tmp"; die "depmod failed"; }

	root=$tmp/root
	mkdir -p "$root"/{bin,dev,proc,sys,newroot,ctl} "$root/lib/modules/$kver"
	cp /bin/busybox "$root/bin/busybox"
	cp "$here/init" "$root/init"
	chmod 755 "$root/init"
	# The modules asked for and everything they depend on.
	local dep=$tmp/pkg/lib/modules/$kver/modules.dep
	local want=() seen=" " path line
	for m in "${modules[@]}"; do
		line=$(grep -E "/${m//[-_]/[-_]}\.ko:" "$dep") ||
			{ rm -rf "$tmp"; die "module $m not in $pkg"; }
		for path in ${line/:/}; do
			case "$seen" in *" $path "*) continue ;; esac
			seen+="$path "
			want+=("$path")
		done
	done
	for path in "${want[@]}"; do
		mkdir -p "$root/lib/modules/$kver/$(dirname "$path")"
		cp "$tmp/pkg/lib/modules/$kver/$path" "$root/lib/modules/$kver/$path"
	done
	(cd "$tmp/pkg/lib/modules/$kver" && cp modules.dep modules.alias \
		modules.builtin modules.order modules.symbols "$root/lib/modules/$kver/")
	printf '%s\n' "${modules[@]}" >"$root/modules"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd" ||
		{ rm -rf "$tmp"; die "cannot pack the initramfs"; }
	mkdir -p "$dir"
	cp "$tmp/pkg/boot/vmlinuz-$kver" "$dir/vmlinuz"
	mv "$tmp/initrd" "$dir/initrd-$recipe"
	rm -rf "$tmp"
}

mkdir -p "$cache" || die "cannot create $cache"
dir=$(ls -d "$cache"/kvmhost-linux-image-* 2>/dev/null | tail -1)
if [ -z "$dir" ]; then
	pkg=$(kernel_pkg)
	if [ -z "$pkg" ]; then
		apt-get update -qq >&2
		pkg=$(kernel_pkg)
	fi
	[ -n "$pkg" ] || die "cannot find Debian's linux-image-amd64"
	dir=$cache/kvmhost-$pkg
fi
if [ ! -f "$dir/initrd-$recipe" ] || [ ! -f "$dir/vmlinuz" ]; then
	(
		flock 9
		[ -f "$dir/initrd-$recipe" ] && [ -f "$dir/vmlinuz" ] ||
			build_initramfs "${dir##*/kvmhost-}" "$dir"
	) 9>"$cache/.lock" || exit 126
	for f in "$dir"/initrd-*; do
		[ "$f" = "$dir/initrd-$recipe" ] || rm -f "$f"
	done
fi
((prepare_only)) && { echo "$dir"; exit 0; }

# --- The run ------------------------------------------------------------

run=$(mktemp -d "${TMPDIR:-/tmp}/kvmhost.XXXXXX") || die "no temporary directory"
qpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null
	[ -n "${KVMHOST_KEEP:-}" ] && echo "kvmhost: kept $run" >&2 || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The command, with the environment the suites read.
{
	echo "export PATH='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'"
	echo "export HOME=/tmp TMPDIR=/tmp"
	echo "export VMRUN_KVMHOST=1 VMRUN_KVMHOST_CPUS=$cpus"
	while IFS='=' read -r name _; do
		case "$name" in
		VMRUN_* | ASAN_OPTIONS | UBSAN_OPTIONS | TSAN_OPTIONS | LSAN_OPTIONS | \
			FUZZ_* | CI | TERM | LANG | LC_ALL)
			printf 'export %s=%q\n' "$name" "${!name}"
			;;
		esac
	done < <(env)
	printf 'cd %q || exit 126\n' "$cwd"
	printf 'exec'
	printf ' %q' "$@"
	echo
} >"$run/cmd"
echo "$share" >"$run/share"

say "booting the emulated host ($(basename "$dir"), $cpus CPUs, $mem, npt=$npt)"
start=$(date +%s)
# One TCG thread for all emulated CPUs: with a thread per CPU (thread=multi)
# QEMU 7.2 could leave a CPU running a stale translation of kernel code that
# another CPU had just patched (jump labels, text_poke_bp): in the hang
# reports a CPU looped in exc_int3 at a site whose bytes were already the
# final ones, with the other CPU spinning on a lock it held. That was seen
# at __schedule (KVM's preempt-notifier key, which the init's idle VM now
# pins) and at hrtimer_start_range_ns. Half the emulation speed, no hang.
# (Not tsc=reliable: with a TSC the kernel trusts, Linux 6.1's KVM treats a
# restored TSC within a second of the VM's own as a "synchronisation" and
# drops it; the state suite caught that. See the snapshot issue.)
qemu-system-x86_64 \
	-accel tcg,thread=single,tb-size=512 -cpu "${KVMHOST_CPU:-max}" -smp "$cpus" -m "$mem" \
	-machine q35 -nodefaults -no-user-config -display none -no-reboot \
	-kernel "$dir/vmlinuz" -initrd "$dir/initrd-$recipe" \
	-append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off nokaslr rdinit=/init vmrun.npt=$npt_arg vmrun.dump=$dump_after vmrun.kvmopts=${KVMHOST_KVM_AMD_OPTS:-none}" \
	-serial "file:$run/console" \
	-device virtio-serial-pci \
	-chardev "file,id=out,path=$run/out" -device virtconsole,chardev=out \
	-fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
	-fsdev "local,id=share,path=$share,security_model=none,multidevs=remap" \
	-device virtio-9p-pci,fsdev=share,mount_tag=share \
	-fsdev "local,id=ctl,path=$run,security_model=none" \
	-device virtio-9p-pci,fsdev=ctl,mount_tag=ctl \
	-monitor "unix:$run/monitor,server=on,wait=off" \
	</dev/null >"$run/qemu.log" 2>&1 &
qpid=$!

# Where each emulated CPU is, from QEMU's monitor: for a hang report.
cpu_state() {
	python3 - "$run/monitor" "$cpus" <<-'PY'
	import socket, sys, time
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(10)
	s.connect(sys.argv[1])
	def ask(cmd):
	    s.sendall(cmd.encode() + b"\n")
	    out, end = b"", time.time() + 10
	    while time.time() < end:
	        try:
	            out += s.recv(65536)
	        except socket.timeout:
	            break
	        if out.endswith(b"(qemu) "):
	            break
	    # The monitor ends its lines in CR LF.
	    return out.decode(errors="replace").replace("\r", "")
	ask("")
	cmds = ["info cpus", "info registers -a"]
	for n in range(int(sys.argv[2])):
	    cmds += ["cpu %d" % n, "x/6i $pc"]
	for c in cmds:
	    print(ask(c).replace("\r", "").rsplit("(qemu)", 1)[0])
	PY
}

# QEMU 7.2's TCG sometimes loses the wakeup of a halted CPU: the host's
# LAPIC timer interrupt sits in the IRR (deliverable: above the PPR) while
# the CPU stays halted with interrupts on, and since the kernel's timer
# is one-shot nothing ever comes again; the whole emulated host stops
# (docs/linux-guest.md, seen by QEMU's monitor: "info lapic" showed vector
# 236, the local timer, pending). Any new interrupt makes QEMU look at the
# APIC again, so a key press (IRQ 1, which nothing in the host reads)
# wakes it. lost_wakeup prints the CPUs halted with a vector pending;
# the loop below, every 3 s from the first half minute, nudges a CPU
# seen so twice in a row (a host idling a lot, as one running a mostly
# idle guest does, loses its wakeup every few seconds).
lost_wakeup() {
	python3 - "$run/monitor" "$cpus" <<-'PY' 2>/dev/null
	import re, socket, sys, time
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(5)
	s.connect(sys.argv[1])
	def ask(cmd):
	    s.sendall(cmd.encode() + b"\n")
	    out, end = b"", time.time() + 5
	    while time.time() < end:
	        try:
	            out += s.recv(65536)
	        except socket.timeout:
	            break
	        if out.endswith(b"(qemu) "):
	            break
	    # The monitor ends its lines in CR LF.
	    return out.decode(errors="replace").replace("\r", "")
	ask("")
	for n in range(int(sys.argv[2])):
	    ask("cpu %d" % n)
	    if not re.search(r"HLT=1", ask("info registers")):
	        continue
	    irr = re.search(r"^IRR\s+([0-9 ]+)$", ask("info lapic"), re.M)
	    if irr and irr.group(1).strip():
	        print("%d:%s" % (n, irr.group(1).strip()))
	PY
}

# Stream the command's output while QEMU runs; stop at the time limit.
: >"$run/out"
tail -n +1 -f --pid="$qpid" "$run/out" &
tpid=$!
# A wedged emulated kernel (a CPU stuck for minutes, as the soft-lockup
# watchdog reports) will not recover: stop it at once, not at the limit.
timed_out=0
wedged=0
nudges=0
stuck_last=
next_check=$((start + 30))
while kill -0 "$qpid" 2>/dev/null; do
	if (($(date +%s) >= next_check)); then
		next_check=$(($(date +%s) + 3))
		stuck=$(lost_wakeup)
		if [ -n "$stuck" ] && [ "$stuck" = "$stuck_last" ]; then
			say "CPU halted with an interrupt pending (cpu:vectors $stuck), QEMU lost its wakeup: a key press nudges it"
			printf 'sendkey shift\n' |
				python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(0.3); s.sendall(sys.stdin.read().encode()); time.sleep(0.5)' \
					"$run/monitor" 2>/dev/null || true
			nudges=$((nudges + 1))
			stuck=
		fi
		stuck_last=$stuck
	fi
	if (($(date +%s) - start > timeout)); then
		timed_out=1
		cpu_state >"$run/cpus" 2>&1
		kill "$qpid" 2>/dev/null
		break
	fi
	if grep -qE 'soft lockup - CPU#[0-9]+ stuck for ([2-9][0-9]{2}|1[2-9][0-9])s' \
		"$run/console" 2>/dev/null; then
		wedged=1
		cpu_state >"$run/cpus" 2>&1
		kill "$qpid" 2>/dev/null
		break
	fi
	sleep 1
done
wait "$qpid" 2>/dev/null
qrc=$?
qpid=
wait "$tpid" 2>/dev/null

# The kernel functions the emulated CPUs were in, from the symbols the
# emulated host's init saved.
where() {
	[ -f "$run/kallsyms" ] || return 0
	python3 - "$run/kallsyms" "$run/cpus" <<-'PY'
	import bisect, re, sys
	syms = []
	for line in open(sys.argv[1]):
	    f = line.split()
	    if len(f) >= 3 and f[1] in "tTwW":
	        syms.append((int(f[0], 16), " ".join(f[2:])))
	syms.sort()
	addrs = [a for a, _ in syms]
	for m in re.finditer(r"^RIP=([0-9a-f]+)", open(sys.argv[2]).read(), re.M):
	    rip = int(m.group(1), 16)
	    i = bisect.bisect_right(addrs, rip) - 1
	    if i >= 0 and rip - addrs[i] < 0x100000:
	        print("kvmhost: RIP %x is in %s+0x%x" % (rip, syms[i][1], rip - addrs[i]))
	    else:
	        print("kvmhost: RIP %x is in no known function" % rip)
	PY
}

fail() {
	echo "kvmhost: $*" >&2
	echo "kvmhost: --- last lines of the emulated host's console ---" >&2
	tail -n "${KVMHOST_TAIL:-40}" "$run/console" >&2
	[ -s "$run/qemu.log" ] && { echo "kvmhost: --- QEMU ---" >&2; tail -n 20 "$run/qemu.log" >&2; }
	[ -s "$run/cpus" ] && { echo "kvmhost: --- the emulated CPUs when stopped ---" >&2; grep -E '^(0x|\*? *CPU|RIP|RAX|RBX|RSI|R8 |R12|CR0|EFER|CS |SS )' "$run/cpus" >&2
		where >&2; }
	exit 125
}
((wedged)) && fail "the emulated host's kernel is wedged (a CPU stuck for minutes); stopped"
((timed_out)) && fail "the command did not finish within ${timeout}s; stopped"
if [ -f "$run/nokvm" ]; then
	fail "the emulated host could not get /dev/kvm: $(cat "$run/nokvm")"
fi
[ -f "$run/rc" ] || fail "the emulated host stopped before the command finished (QEMU exit $qrc)"
rc=$(cat "$run/rc")
say "$(cat "$run/kvm" 2>/dev/null): command exited with $rc after $(($(date +%s) - start))s"
exit "$rc"
