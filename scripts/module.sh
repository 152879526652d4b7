#!/usr/bin/env bash
# module.sh TARGET: run the module's kbuild TARGET (modules, clean, modules_install,
# rust-analyzer) against the project's kernel of $FLAVOUR, inside the build root (for the
# debian flavour, Debian's own kernel, in the Debian root). rust-analyzer writes the
# repository's rust-project.json with paths that exist on the host.
# The default flavour builds in place, so rust_pagefault_demo.ko lands at the repository
# root. Other flavours, and clippy builds, build a copy of the sources in the cache
# (/build/module-FLAVOUR[-clippy]), so they never mix objects (kbuild's MO= would need a
# clean source tree).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
target=${1:-modules}
if [ "$FLAVOUR" = debian ]; then
	[ "$target" = clean ] && [ ! -f "$RPD_ROOT$(debian_image_in).release" ] && exit 0
	# Debian's own kernel: built in the Debian root, with the compiler Debian used. The
	# module is then copied where the VM's initramfs takes every flavour's from.
	"$RPD_TOP/scripts/kernel.sh" debian
	rel=$(cat "$RPD_ROOT$(debian_image_in).release")
	dir=$(debian_module_build "$rel" "$target")
	if [ "$target" = modules ]; then
		mkdir -p "$RPD_ROOT$(module_dir_in debian)"
		cp "$RPD_DEBIAN_ROOT$dir/rust_pagefault_demo.ko" "$RPD_ROOT$(module_dir_in debian)/"
	fi
	[ "$target" != rust-analyzer ] || rust_project_to_host "$RPD_DEBIAN_ROOT" "$dir"
	exit 0
fi
[ "$target" = clean ] && [ ! -d "$RPD_ROOT$(kbuild_in "$FLAVOUR")" ] && exit 0
"$RPD_TOP/scripts/kernel.sh" "$FLAVOUR"
kb=$(kbuild_in "$FLAVOUR")
extra=
[ -n "${CLIPPY:-}" ] && extra="CLIPPY=$CLIPPY"
if [ "$FLAVOUR" = default ] && [ -z "$extra" ]; then
	dir=$RPD_SRC_IN
else
	# A clippy build also gets a copy of its own, so it never invalidates the plain build.
	dir=$(module_dir_in "$FLAVOUR")${extra:+-clippy}
	sync_module_sources "$RPD_ROOT$dir"
	# Clippy speaks only while it compiles: make it compile, or an unchanged file that
	# still has warnings would pass the next check silently.
	if [ -n "$extra" ]; then touch "$RPD_ROOT$dir/rust_pagefault_demo.rs"; fi
fi
"$RPD_TOP/scripts/in-root.sh" make -s -C "$dir" KDIR="$kb" $extra "$target"
[ "$target" != rust-analyzer ] || rust_project_to_host "$RPD_ROOT" "$dir"
