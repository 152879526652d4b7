#!/usr/bin/env bash
# kernel.sh [FLAVOUR]: build (or reuse) the VM kernel of a flavour (debian: fetch Debian's
# own kernel and recreate its tree, see debian-kernel.sh).
#
# Debian's linux-source-$KERNEL_SERIES (from $DEBIAN_SUITE-backports) is
# configured from tinyconfig plus qemu/kernel.config (and, for the debug
# flavour, qemu/kernel-debug.config), then fully built: out-of-tree modules need
# Module.symvers, not only bzImage. It is rebuilt only when the kernel version
# or a fragment changes. The exact version is recorded in the tree's .rpd-kernel.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavour=${1:-$FLAVOUR}
case $flavour in
default | debug | profile) frags=$(kernel_frags "$flavour") ;;
debian)
	# Debian's own kernel, not built here: its tree is recreated for modules, and its image
	# copied into the build root for the VM, with its release beside it.
	"$RPD_TOP/scripts/buildroot.sh"
	rel=$("$RPD_TOP/scripts/debian-kernel.sh")
	img=$RPD_ROOT$(debian_image_in)
	mkdir -p "$(dirname "$img")"
	cmp -s "$RPD_DEBIAN_ROOT$(debian_dir_in "$rel")/pkg/usr/lib/modules/$rel/vmlinuz" "$img" ||
		cp "$RPD_DEBIAN_ROOT$(debian_dir_in "$rel")/pkg/usr/lib/modules/$rel/vmlinuz" "$img"
	echo "$rel" >"$img.release"
	exit 0
	;;
*) die "unknown kernel flavour '$flavour'" "Flavours: default, debug, profile, debian." ;;
esac
"$RPD_TOP/scripts/buildroot.sh"

pkg=linux-source-$KERNEL_SERIES
# Install (or update) the source package and learn its exact version.
ver=$("$RPD_TOP/scripts/in-root.sh" sh -c "
	if ! apt-cache show $pkg >/dev/null 2>&1; then apt-get update -q >/dev/null; fi
	apt-cache show $pkg >/dev/null 2>&1 || exit 3
	v=\$(apt-cache policy $pkg | awk '/Candidate:/{print \$2}')
	if [ \"\$(dpkg-query -W -f='\${Version}' $pkg 2>/dev/null)\" != \"\$v\" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkg >/dev/null || exit 4
	fi
	echo \$v") || {
	rc=$?
	if [ "$rc" -eq 3 ]; then
		have=$("$RPD_TOP/scripts/in-root.sh" sh -c "apt-cache search --names-only '^linux-source-[0-9]' | sed 's/^linux-source-//; s/ .*//' | sort -V | tr '\n' ' '")
		die "$DEBIAN_SUITE (with backports) carries no $pkg" \
			"The archive carries these series: $have" \
			"Pick one with KERNEL_SERIES=<series> (e.g. KERNEL_SERIES=${have%% *})."
	fi
	die "could not install $pkg in the build root (exit $rc)" "Check the network and the mirror ($(debian_mirror))."
}

kb=$(kbuild_in "$flavour")
stamp_want=$(kernel_frags_hash "$flavour")
stamp_want="$ver $flavour $stamp_want"
stamp=$RPD_ROOT$kb/.rpd-kernel
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_want" ] && [ -f "$RPD_ROOT$kb/Module.symvers" ]; then
	say "kernel ($flavour): $ver up to date"
	exit 0
fi

ksrc=$RPD_KSRC_IN-$ver
if [ ! -f "$RPD_ROOT$ksrc/.rpd-unpacked" ]; then
	rm -rf --one-file-system "$RPD_ROOT$ksrc"
	run_logged kernel-unpack "$RPD_TOP/scripts/in-root.sh" sh -c "
		set -e; mkdir -p $ksrc.tmp; tar -C $ksrc.tmp --strip-components=1 -xaf /usr/src/$pkg.tar.xz
		mv $ksrc.tmp $ksrc; touch $ksrc/.rpd-unpacked"
fi

frags_in=$(for f in $frags; do printf '%s/%s ' "$RPD_SRC_IN" "$f"; done)
say "kernel ($flavour): configuring $ver (tinyconfig + $frags)"
run_logged "kernel-$flavour-config" "$RPD_TOP/scripts/in-root.sh" sh -c "
	set -e; rm -f $kb/.rpd-kernel; mkdir -p $kb; cd $ksrc
	make -s O=$kb LLVM=1 tinyconfig
	scripts/kconfig/merge_config.sh -m -O $kb $kb/.config $frags_in
	make -s O=$kb LLVM=1 olddefconfig
	make -s O=$kb LLVM=1 rustavailable"
# Every requested option must have survived olddefconfig.
missing=$(cat $(printf "$RPD_TOP/%s " $frags) | grep -E '^(CONFIG_|# CONFIG_.* is not set)' |
	while IFS= read -r line; do grep -qxF "$line" "$RPD_ROOT$kb/.config" || echo "$line"; done)
[ -z "$missing" ] || die "the kernel config dropped options from the fragment:" $missing \
	"A dependency is missing: add it to the fragment (see 'make menuconfig' in $RPD_ROOT$kb)."

say "kernel ($flavour): building $ver with $(nproc) jobs (~5 min for default, longer for debug)"
run_logged "kernel-$flavour-build" "$RPD_TOP/scripts/in-root.sh" sh -c \
	"cd $ksrc && make O=$kb LLVM=1 -j$(nproc) all"
echo "$stamp_want" >"$stamp"
say "kernel ($flavour): $ver built"
