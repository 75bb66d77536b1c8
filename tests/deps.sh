#!/usr/bin/env bash
# Installs what vmrun needs to build and test, from Debian's packages.
# Idempotent: does nothing when everything is present. Needs root.
set -euo pipefail

pkgs=(meson ninja-build pkg-config gcc binutils python3
      libzstd-dev liblz4-dev liblzma-dev libxxhash-dev libprotobuf-c-dev protobuf-c-compiler
      protobuf-compiler
      libnl-3-dev libnl-route-3-dev libcunit1-dev iproute2
      clang-format git afl++ xz-utils)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${missing[*]}; run as root to install" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
