#!/usr/bin/env bash
# debian-kernel.sh [KERNELRELEASE [VERSION]]: recreate the build tree of one of Debian's own
# kernels in the Debian build root ($RPD_DEBIAN_ROOT), so that Rust modules can be built for
# it. Prints the kernel's release (e.g. 7.3.4+deb13-amd64) on stdout, progress on stderr.
#
# Without KERNELRELEASE: $DEBIAN_KERNEL, or else the newest $KERNEL_SERIES kernel the archive
# carries for amd64. VERSION picks the Debian package version (e.g. 7.3.4-1~bpo13+1; a
# running kernel's is in `uname -v`); without it, the newest one of that release.
#
# Debian's linux-headers packages carry no Rust metadata (libkernel.rmeta, libmacros.so), so
# a Rust module cannot be built against them alone. The tree is made again from
# linux-source of the very same Debian version: the headers package's .config,
# `make olddefconfig` with the tools Debian used (pahole present, or the BTF options drop
# and the Rust bindings differ), `make modules_prepare` with Debian's KERNELRELEASE, then the
# headers package's Module.symvers and vmlinux (module BTF is made against it). The tree,
# the packages and Debian's kernel image are kept in /build/debian-<release>/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
want_rel=${1:-$DEBIAN_KERNEL}
want_ver=${2:-}
series=$KERNEL_SERIES
if [ -n "$want_rel" ]; then
	# The release names its series: 7.3.4+deb13-amd64 is a 7.3 kernel.
	series=$(sed -nE 's/^([0-9]+\.[0-9]+)\..*/\1/p' <<<"$want_rel")
	[[ $want_rel =~ ^[0-9]+\.[0-9]+[.0-9]*[+~a-z0-9.]*-amd64$ ]] ||
		die "'$want_rel' is not the release of a Debian amd64 kernel (like 7.3.4+deb13-amd64)" \
			"This builds for Debian's own generic amd64 kernels only (the 'linux-image-<release>'" \
			"packages); for another kernel build its tree and use 'make KDIR=<tree>'."
fi
RPD_ROOT=$RPD_DEBIAN_ROOT "$RPD_TOP/scripts/buildroot.sh" $DEBIAN_ROOT_PACKAGES >&2
in_droot() { RPD_ROOT=$RPD_DEBIAN_ROOT "$RPD_TOP/scripts/in-root.sh" "$@"; }

# What the archive carries: "VERSION RELEASE" for every amd64 headers package whose
# linux-source of the same version is there too, newest first. The package lists are
# refreshed when older than a day (a newer Debian kernel is then picked up).
lists=$RPD_DEBIAN_ROOT/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
	say "debian kernel: refreshing the package lists"
	in_droot apt-get update -q >/dev/null
fi
# shellcheck disable=SC2016
avail=$(in_droot sh -c '
	s=$1
	src=$(apt-cache madison linux-source-$s | awk -F"|" "{gsub(/ /, \"\", \$2); print \$2}")
	apt-cache search --names-only "^linux-headers-$s\..*-amd64\$" | awk "{print \$1}" |
		grep -v -e "-rt-amd64\$" -e "-cloud-amd64\$" | while read -r p; do
		apt-cache madison "$p" | awk -F"|" -v p="$p" "{gsub(/ /, \"\", \$2); print \$2, substr(p, 15)}"
	done | while read -r v r; do
		for sv in $src; do [ "$sv" = "$v" ] && echo "$v $r"; done
	done' sh "$series" | sort -u -V -r)
pick=$(awk -v r="$want_rel" -v v="$want_ver" '(r == "" || $2 == r) && (v == "" || $1 == v)' <<<"$avail" | head -n 1)
if [ -z "$pick" ]; then
	die "the archive has no linux-source + linux-headers pair for ${want_rel:-a $series kernel}${want_ver:+ version $want_ver} (amd64)" \
		"It carries (version, release): $(tr '\n' ';' <<<"${avail:-nothing for $series}")" \
		"Pick one with DEBIAN_KERNEL=<release> (make test) or upgrade to one of them" \
		"(apt install linux-image-<release>) and reboot; Debian's archive keeps only recent versions."
fi
read -r ver rel <<<"$pick"
d=/build/debian-$rel
tree=$d/linux
stamp_want="$ver $rel tree-1"
if [ "$(cat "$RPD_DEBIAN_ROOT$d/.rpd-tree" 2>/dev/null)" = "$stamp_want" ]; then
	say "debian kernel: $rel ($ver) tree up to date"
	echo "$rel"
	exit 0
fi

say "debian kernel: $rel ($ver): fetching linux-source-$series, linux-headers-$rel, linux-binary-$rel"
rm -rf --one-file-system "${RPD_DEBIAN_ROOT:?}$d"
# The kernel image: the signed one Debian boots (linux-binary), else the unsigned build.
run_logged "debian-$rel-fetch" in_droot sh -euc "
	mkdir -p $d/debs $d/pkg && cd $d/debs
	apt-get download -q linux-source-$series=$ver linux-headers-$rel=$ver
	apt-get download -q linux-binary-$rel=$ver || apt-get download -q linux-binary-unsigned-$rel=$ver
	for f in *.deb; do dpkg-deb -x \$f $d/pkg; done
	mkdir -p $tree
	tar -C $tree --strip-components=1 -xaf $d/pkg/usr/src/linux-source-$series.tar.xz
	rm $d/pkg/usr/src/linux-source-$series.tar.xz"
hdr=$RPD_DEBIAN_ROOT$d/pkg/usr/src/linux-headers-$rel
[ -f "$hdr/.config" ] && [ -f "$hdr/Module.symvers" ] ||
	die "linux-headers-$rel ($ver) has no .config or Module.symvers" "The package layout changed: see $hdr."
cp "$hdr/.config" "$RPD_DEBIAN_ROOT$tree/.config"

# The tools Debian built the kernel with, read from its configuration.
cfg() { sed -n "s/^$1=//p" "$hdr/.config" | tr -d '"'; }
rustc_want=$(cfg CONFIG_RUSTC_VERSION_TEXT)
rustc_have=$(in_droot rustc --version)
[ "$rustc_want" = "$rustc_have" ] ||
	die "Debian built $rel with '$rustc_want'; the build root has '$rustc_have'" \
		"A Rust module must be built by the kernel's own rustc (its symbol names depend on it)." \
		"Pick a kernel built by this rustc (DEBIAN_KERNEL=<release>), or DEBIAN_SUITE=<suite> whose rustc matches."
make_args=$(kernel_cc_args "$hdr/.config")
cc=$(sed -n 's/.*CC=\([^ ]*\).*/\1/p' <<<"$make_args")
if [ -n "$cc" ]; then
	cc_have=$(in_droot sh -c "command -v $cc >/dev/null && $cc --version | head -n 1") ||
		die "Debian built $rel with '$(cfg CONFIG_CC_VERSION_TEXT)', and the build root has no $cc" \
			"Add its package to DEBIAN_ROOT_PACKAGES in scripts/lib.sh."
	[ "$cc_have" = "$(cfg CONFIG_CC_VERSION_TEXT)" ] ||
		say "debian kernel: note: Debian used '$(cfg CONFIG_CC_VERSION_TEXT)', the build root has '$cc_have'"
fi
echo "$make_args" >"$RPD_DEBIAN_ROOT$d/make-args"

say "debian kernel: $rel: olddefconfig and modules_prepare ($make_args, ~2 min on 2 cores)"
run_logged "debian-$rel-prepare" in_droot sh -euc "
	cd $tree
	make -s $make_args olddefconfig
	make $make_args KERNELRELEASE=$rel -j$(nproc) modules_prepare"
# olddefconfig must have kept Debian's configuration: a changed line means a tool differs
# (pahole's version, the compiler's), and the Rust bindings would not match the kernel's.
changed=$(diff <(grep '^CONFIG_' "$hdr/.config" | sort) <(grep '^CONFIG_' "$RPD_DEBIAN_ROOT$tree/.config" | sort) |
	grep '^[<>]' || true)
[ -z "$changed" ] || die "the recreated configuration differs from Debian's for $rel:" "$changed" \
	"A build tool differs from Debian's (see CONFIG_*_VERSION above); install the version Debian used."
cp "$hdr/Module.symvers" "$hdr/vmlinux" "$RPD_DEBIAN_ROOT$tree/"
echo "$stamp_want" >"$RPD_DEBIAN_ROOT$d/.rpd-tree"
say "debian kernel: $rel ($ver) tree ready at $RPD_DEBIAN_ROOT$tree"
echo "$rel"
