#!/usr/bin/env bash
# module.sh TARGET: run the module's kbuild TARGET (modules, clean, modules_install,
# rust-analyzer) against the project's kernel of $FLAVOUR, inside the build root.
# The default flavour writes rust_pagefault_demo.ko at the repository root; other
# flavours build into the cache (kbuild's MO=), so the flavours never mix objects.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
target=${1:-modules}
[ "$target" = clean ] && [ ! -d "$RPD_ROOT$(kbuild_in "$FLAVOUR")" ] && exit 0
"$RPD_TOP/scripts/kernel.sh" "$FLAVOUR"
kb=$(kbuild_in "$FLAVOUR")
mo=
[ "$FLAVOUR" = default ] || mo="MO=/build/module-$FLAVOUR"
extra=
[ -n "${CLIPPY:-}" ] && extra="CLIPPY=$CLIPPY"
"$RPD_TOP/scripts/in-root.sh" sh -c "mkdir -p /build/module-$FLAVOUR && \
	make -s -C $RPD_SRC_IN KDIR=$kb $mo $extra $target"
