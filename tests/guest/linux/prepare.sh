#!/usr/bin/env bash
# Builds the Linux test guest (docs/linux-guest.md): Debian's kernel, as
# shipped, and an initramfs whose /init is tests/guest/linux/init.c, with
# the virtio modules it needs.
#
#   bash tests/guest/linux/prepare.sh
#
# Prints only the absolute path of a directory holding vmlinuz, vmlinux
# and initrd.img, and exits 0; on failure prints one line on stderr and exits 1.
# Progress goes to stderr. The kernel package is the emulated host's
# (tests/kvmhost/kvmhost.sh) if that was built, else whatever Debian's
# linux-image-amd64 depends on. Everything is cached under
# ${VMRUN_CACHE:-$XDG_CACHE_HOME/vmrun or ~/.cache/vmrun}/linux-<package>/:
#
#   vmlinuz                   the kernel, downloaded once with apt-get download
#   vmlinux                   the ELF inside it (xz -d of its payload), which
#                             boots through its PVH entry, undecompressed
#   modules-<hash>.cpio       the modules and their load order (cpio newc)
#   init-<recipe>             the static init, compiled here with cc
#   initrd-<recipe>.img       the initramfs
#   initrd.img                a symlink to the current initrd-<recipe>.img
#
# <recipe> hashes the init's sources, this script and the module list, so
# a change to any of them builds a new initramfs; only a new module list
# (or package) needs the package again. The unpacked package is removed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${VMRUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrun}

# The modules the init loads, by name; with what they depend on.
modules=(virtio_mmio virtio_pci virtio_blk virtio_net virtio_rng)
# Bumped when the layout of modules-<hash>.cpio changes.
modules_format=1

die() {
	echo "linux-guest: $*" >&2
	exit 1
}
say() { echo "linux-guest: $*" >&2; }

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
need_pkgs gcc libc6-dev busybox-static cpio xz-utils

kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

mkdir -p "$cache" || die "cannot create $cache"
# The emulated host's kernel if it has one, so both run the same.
host_dir=$(ls -d "$cache"/kvmhost-linux-image-* 2>/dev/null | tail -1)
if [ -n "$host_dir" ]; then
	pkg=${host_dir##*/kvmhost-}
else
	pkg=$(kernel_pkg)
	if [ -z "$pkg" ]; then
		apt-get update -qq >&2
		pkg=$(kernel_pkg)
	fi
	[ -n "$pkg" ] || die "cannot find Debian's linux-image-amd64"
fi
out=$cache/linux-$pkg

sources=("$here"/*.c "$here"/*.h)
modhash=$(printf '%s\n' "$pkg" "$modules_format" "${modules[@]}" |
	sha256sum | cut -c1-12)
recipe=$(cat "${sources[@]}" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
recipe=$(printf '%s %s\n' "$recipe" "$modhash" | sha256sum | cut -c1-12)

ready() {
	[ -f "$out/vmlinuz" ] && [ -f "$out/vmlinux" ] &&
		[ -f "$out/initrd-$recipe.img" ] &&
		[ "$(readlink "$out/initrd.img")" = "initrd-$recipe.img" ]
}

# Downloads and unpacks $pkg into $tmp/pkg (once per module list).
unpack_pkg() {
	say "downloading $pkg (once; cached in $out)"
	if ! (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1); then
		apt-get update -qq >&2
		(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
			die "cannot download $pkg"
	fi
	dpkg-deb -x "$tmp"/*.deb "$tmp/pkg" || die "cannot unpack $pkg"
	rm -f "$tmp"/*.deb
}

# The modules asked for and what modules.dep says they need, dependencies
# first, as paths under lib/modules/<kver>; built-in ones are left out.
# Writes $tmp/modules.cpio.
pack_modules() {
	local kver mdir line path m re
	local -A deps=() state=()
	local order=()

	kver=$(ls "$tmp/pkg/lib/modules") || die "no modules in $pkg"
	[ "$(echo "$kver" | wc -l)" -eq 1 ] || die "several kernels in $pkg"
	mdir=$tmp/pkg/lib/modules/$kver
	[ -f "$mdir/modules.dep" ] || busybox depmod -b "$tmp/pkg" "$kver" ||
		die "depmod failed"
	while IFS= read -r line; do
		deps[${line%%:*}]=${line#*:}
	done <"$mdir/modules.dep"

	visit() { # path
		local p=$1 d
		case "${state[$p]:-}" in
		done) return 0 ;;
		busy) die "dependency loop at $p" ;;
		esac
		state[$p]=busy
		for d in ${deps[$p]:-}; do
			visit "$d"
		done
		state[$p]="done"
		order+=("$p")
	}
	for m in "${modules[@]}"; do
		re="/${m//[-_]/[-_]}\.ko(\.[a-z]+)?$"
		path=
		for line in "${!deps[@]}"; do
			[[ "$line" =~ $re ]] && { path=$line; break; }
		done
		if [ -z "$path" ]; then
			grep -qE "$re" "$mdir/modules.builtin" ||
				die "module $m not in $pkg"
			say "$m is built in"
			continue
		fi
		visit "$path"
	done

	mkdir -p "$tmp/mroot/lib/modules"
	for path in "${order[@]}"; do
		mkdir -p "$tmp/mroot/lib/modules/$kver/$(dirname "$path")"
		cp "$mdir/$path" "$tmp/mroot/lib/modules/$kver/$path" ||
			die "cannot copy $path"
		echo "/lib/modules/$kver/$path"
	done >"$tmp/mroot/lib/modules/load.order"
	say "modules ($kver): $(sed 's|.*/||' "$tmp/mroot/lib/modules/load.order" | tr '\n' ' ')"
	(cd "$tmp/mroot" && find . | sort | cpio -o -H newc -R 0:0 --quiet) \
		>"$tmp/modules.cpio" || die "cannot pack the modules"
}

# The kernel ELF inside the bzImage, which boots through its PVH entry
# with no decompression: the setup header's payload_offset and
# payload_length (boot protocol 2.08+) locate the compressed vmlinux
# after the setup sectors. Writes $out/vmlinux.
extract_vmlinux() {
	local z=$out/vmlinuz sects off len magic
	sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$z" | tr -d ' ')
	off=$(od -An -tu4 -j $((0x248)) -N4 "$z" | tr -d ' ')
	len=$(od -An -tu4 -j $((0x24c)) -N4 "$z" | tr -d ' ')
	((sects)) || sects=4
	off=$(((sects + 1) * 512 + off))
	magic=$(od -An -tx1 -j "$off" -N6 "$z" | tr -d ' ')
	[ "$magic" = fd377a585a00 ] ||
		die "the kernel's payload is not xz (magic $magic); no vmlinux"
	dd if="$z" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$len" \
		status=none | xz -dc --single-stream >"$tmp/vmlinux" ||
		die "cannot decompress the kernel's payload"
	[ "$(od -An -c -N4 "$tmp/vmlinux" | tr -d ' ')" = 177ELF ] ||
		die "the kernel's payload is not an ELF"
	mv "$tmp/vmlinux" "$out/vmlinux"
	say "vmlinux: $(($(stat -c %s "$out/vmlinux") >> 20)) MiB, from vmlinuz's xz payload"
}

# A cpio newc archive of one character device node: name mode major minor.
cpio_node() {
	local name=$1 mode=$2 major=$3 minor=$4 len
	len=$((${#name} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		1 $((0x2000 | mode)) 0 0 1 0 0 0 0 "$major" "$minor" "$len" 0
	printf '%s\0' "$name"
	# The name is padded so that header (110 bytes) + name ends at 4.
	printf '%*s' $(((4 - (110 + len) % 4) % 4)) '' | tr ' ' '\0'
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		0 0 0 0 1 0 0 0 0 0 0 11 0
	printf 'TRAILER!!!\0'
	printf '%*s' $(((4 - (110 + 11) % 4) % 4)) '' | tr ' ' '\0'
}

build() {
	tmp=$(mktemp -d "$cache/.linux-build.XXXXXX") || die "cannot write $cache"
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$out" || die "cannot create $out"

	if [ ! -f "$out/vmlinuz" ] || [ ! -f "$out/modules-$modhash.cpio" ]; then
		unpack_pkg
		pack_modules
		cp "$tmp"/pkg/boot/vmlinuz-* "$tmp/vmlinuz" || die "no vmlinuz in $pkg"
		mv "$tmp/vmlinuz" "$out/vmlinuz"
		mv "$tmp/modules.cpio" "$out/modules-$modhash.cpio"
		rm -rf "$tmp/pkg"
	fi
	[ -f "$out/vmlinux" ] || extract_vmlinux

	# Built with the host compiler directly, never by meson: no
	# sanitizer or coverage options of the host build reach it.
	say "compiling init"
	cc -static -O2 -Wall -Wextra -Werror -pthread -o "$tmp/init" \
		"$here"/*.c >"$tmp/cc.log" 2>&1 ||
		die "init does not compile: $(grep -m1 -E 'error|warning' "$tmp/cc.log")"
	mkdir -p "$tmp/iroot"/{dev,proc,sys}
	cp "$tmp/init" "$tmp/iroot/init"
	chmod 755 "$tmp/iroot/init"
	(cd "$tmp/iroot" && find . | sort | cpio -o -H newc -R 0:0 --quiet) \
		>"$tmp/init.cpio" || die "cannot pack the init"
	# /dev/console, which the kernel opens for PID 1 before anything is
	# mounted; written by hand so that packing needs no mknod (or root).
	cpio_node dev/console 0600 5 1 >"$tmp/console.cpio"
	# Uncompressed: it boots faster than gzip -1 (docs/linux-guest.md).
	cat "$out/modules-$modhash.cpio" "$tmp/init.cpio" "$tmp/console.cpio" \
		>"$tmp/initrd" || die "cannot write the initramfs"

	mv "$tmp/init" "$out/init-$recipe"
	mv "$tmp/initrd" "$out/initrd-$recipe.img"
	ln -sfn "initrd-$recipe.img" "$tmp/initrd.img"
	mv -T "$tmp/initrd.img" "$out/initrd.img" || die "cannot link initrd.img"
	# Only the current recipe stays.
	find "$out" -maxdepth 1 \( -name 'initrd-*.img' ! -name "initrd-$recipe.img" \
		-o -name 'init-*' ! -name "init-$recipe" \
		-o -name 'modules-*.cpio' ! -name "modules-$modhash.cpio" \) -delete
	rm -rf "$tmp"
	trap - EXIT
}

if ! ready; then
	exec 9>"$cache/.lock" || die "cannot lock $cache"
	flock 9 || die "cannot lock $cache"
	ready || (build) || exit 1
	exec 9>&-
fi
echo "$out"
