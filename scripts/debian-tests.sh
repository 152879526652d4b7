#!/usr/bin/env bash
# debian-tests.sh: host checks of building for Debian's own kernels, as TAP lines ("ok N -
# ...", "not ok N - ..."): the module for the debian flavour's kernel has its vermagic, and
# every kernel the tools cannot match is refused with a message that says what to do.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rel=$(cat "$RPD_ROOT$(debian_image_in).release")
rel_re=$(sed 's/[.+]/\\&/g' <<<"$rel") # the release as a regular expression
n=0
# expect NAME PATTERN CMD...: CMD's output (either stream) matches PATTERN.
expect() {
	local name=$1 pattern=$2 out
	shift 2
	n=$((n + 1))
	out=$("$@" 2>&1) || true
	if grep -qE -- "$pattern" <<<"$out"; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		echo "$out" | tail -n 8 | sed 's/^/# /'
	fi
}
out=$("$RPD_TOP/scripts/debian-module.sh" "$rel" 2>&1) || true
n=$((n + 1))
if grep -q "^  vermagic: $rel SMP preempt mod_unload" <<<"$out" && grep -q 'mokutil --import' <<<"$out"; then
	echo "ok $n - debian-module.sh $rel: vermagic $rel, load and Secure Boot instructions"
else
	echo "not ok $n - debian-module.sh $rel"
	echo "$out" | tail -n 8 | sed 's/^/# /'
fi
expect "a Debian kernel the archive lacks: refused, listing what it carries" \
	"carries \\(version, release\\): .*$rel_re" "$RPD_TOP/scripts/debian-kernel.sh" 7.3.0+deb13-amd64
expect "a kernel of another series: refused, saying which to boot" \
	"not a Linux $KERNEL_SERIES kernel.*|apt install -t trixie-backports" \
	"$RPD_TOP/scripts/debian-module.sh" 7.2.11+deb13-amd64
expect "a kernel that is not Debian's: refused, pointing at make KDIR=" \
	"not the release of a Debian amd64 kernel" "$RPD_TOP/scripts/debian-module.sh" 7.3.4-custom
expect "make KDIR=<Debian's GCC tree> LLVM=1: refused, saying to use LLVM=" \
	"contradicts KDIR=.*built with GCC: use LLVM= " \
	env RPD_ROOT="$RPD_DEBIAN_ROOT" "$RPD_TOP/scripts/in-root.sh" \
	make -C "$(module_dir_in "debian-$rel")" KDIR="$(debian_dir_in "$rel")/linux" LLVM=1 modules
