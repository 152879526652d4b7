#!/usr/bin/env bash
# fmt.sh [--check]: rustfmt the module with the kernel's .rustfmt.toml, and the user programs
# with cargo fmt. --check changes nothing and fails when a file is not formatted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
check=
[ "${1:-}" = --check ] && check=--check
ksrc=$(ls -d "$RPD_ROOT"/build/linux-*/ 2>/dev/null | head -n 1)
[ -n "$ksrc" ] || die "no kernel source in the build root" "Run 'make kernel' first."
ksrc=${ksrc#"$RPD_ROOT"}
"$RPD_TOP/scripts/in-root.sh" sh -c "cd $RPD_SRC_IN && \
	rustfmt $check --edition 2021 --config-path $ksrc/.rustfmt.toml rust_pagefault_demo.rs && \
	cd user && cargo fmt -- $check"
