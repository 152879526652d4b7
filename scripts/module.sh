#!/usr/bin/env bash
# module.sh TARGET: run the module's kbuild TARGET (modules, clean, modules_install,
# rust-analyzer) against the project's kernel of $FLAVOUR, inside the build root.
# The default flavour builds in place, so rust_pagefault_demo.ko lands at the repository
# root. Other flavours, and clippy builds, build a copy of the sources in the cache
# (/build/module-FLAVOUR[-clippy]), so they never mix objects (kbuild's MO= would need a
# clean source tree).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
target=${1:-modules}
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
	mkdir -p "$RPD_ROOT$dir"
	# Copy what changed (an unchanged file keeps its time, so kbuild does not rebuild for it)
	# and drop sources the repository no longer has.
	srcs=$(module_sources)
	for f in $srcs; do
		mkdir -p "$(dirname "$RPD_ROOT$dir/$f")"
		cmp -s "$RPD_TOP/$f" "$RPD_ROOT$dir/$f" || cp "$RPD_TOP/$f" "$RPD_ROOT$dir/$f"
	done
	(cd "$RPD_ROOT$dir" && find . -name '*.rs' | sed 's#^\./##') | while read -r f; do
		grep -qxF "$f" <<<"$(tr ' ' '\n' <<<"$srcs")" || rm -f "$RPD_ROOT$dir/$f"
	done
	# Clippy speaks only while it compiles: make it compile, or an unchanged file that
	# still has warnings would pass the next check silently.
	if [ -n "$extra" ]; then touch "$RPD_ROOT$dir/rust_pagefault_demo.rs"; fi
fi
"$RPD_TOP/scripts/in-root.sh" make -s -C "$dir" KDIR="$kb" $extra "$target"
