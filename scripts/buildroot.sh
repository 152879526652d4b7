#!/usr/bin/env bash
# buildroot.sh [EXTRA-PACKAGE...]: create (or reuse) the pinned Debian build root $RPD_ROOT.
#
# The root is Debian $DEBIAN_SUITE made with debootstrap, with Debian's own Rust
# toolchain (the one Debian builds its Rust-enabled kernels with), LLVM/clang,
# busybox and QEMU. It is rebuilt only when the package list below (plus the extra
# packages given) changes. The project's root takes no extras; a root for other
# tools (Debian's kernels want gcc-14 and pahole) is a second root at another path
# (RPD_ROOT=...), so those tools never change what the project's kernels see.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
extra="$*"

PACKAGES="rustc rust-src cargo rustfmt rust-clippy bindgen libclang-dev clang lld llvm
	busybox-static qemu-system-x86 make bc flex bison libelf-dev libssl-dev cpio kmod
	python3 perl xz-utils zstd ca-certificates file gcc libc6-dev"
# shellcheck disable=SC2086
stamp_want=$(printf '%s\n' "$DEBIAN_SUITE" $PACKAGES $extra | sha256sum | cut -c1-16)
# Logs of a second root get its name as a prefix (root-debian-apt-install.log).
pre=
[ "$RPD_ROOT" = "$RPD_CACHE/root" ] || pre="$(basename "$RPD_ROOT")-"
stamp=$RPD_ROOT/.rpd-buildroot
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_want" ]; then
	say "build root: up to date ($RPD_ROOT)"
	exit 0
fi

if ! command -v debootstrap >/dev/null; then
	# A fresh Debian/Ubuntu host: debootstrap is the one host package the build needs.
	command -v apt-get >/dev/null ||
		die "debootstrap is not installed and this host has no apt-get" \
			"Install debootstrap with your package manager, then run the command again."
	say "host: installing debootstrap (the only host package needed)"
	run_logged host-debootstrap sh -c \
		"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap"
fi
mirror=$(debian_mirror)
new=$RPD_ROOT.new
mkdir -p "$RPD_CACHE"
# A half-made root from an interrupted run: nothing is mounted in it (every
# mount lived in a private namespace), and --one-file-system keeps rm on disk.
rm -rf --one-file-system "$new"

say "build root: debootstrap $DEBIAN_SUITE (minbase) into $new (~1 min)"
# debootstrap mounts /proc and /sys in the target: keep those mounts private.
run_logged "${pre}debootstrap" unshare --mount --propagation private --fork --kill-child -- \
	debootstrap --variant=minbase "$DEBIAN_SUITE" "$new" "$mirror"

cat >"$new/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates $DEBIAN_SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -f "$new/etc/apt/sources.list"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$new/etc/apt/apt.conf.d/90rpd"

say "build root: installing the toolchain (~1 min, ~2.5 GB)"
# shellcheck disable=SC2086
RPD_ROOT=$new run_logged "${pre}apt-install" "$RPD_TOP/scripts/in-root.sh" sh -c \
	"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(echo $PACKAGES $extra)"

echo "$stamp_want" >"$new/.rpd-buildroot"
if [ -d "$RPD_ROOT" ]; then
	rm -rf --one-file-system "$RPD_ROOT"
fi
mv "$new" "$RPD_ROOT"
RPD_ROOT=$RPD_ROOT "$RPD_TOP/scripts/in-root.sh" sh -c 'rustc --version; bindgen --version; clang --version | head -n 1'
say "build root: ready"
