#!/usr/bin/env bash
# check-rust-project.sh [FLAVOUR]: `make rust-analyzer` for the kernel of FLAVOUR writes a
# rust-project.json an editor on the host can use: every path in it exists on the host, and
# the module's one crate root is the repository's rust_pagefault_demo.rs (kernel's generator
# takes any *.rs whose stem + ".o" appears in Kbuild for one). The repository's own
# rust-project.json, if any, is put back afterwards.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavour=${1:-$FLAVOUR}
json=$RPD_TOP/rust-project.json
keep=$(mktemp)
had=0
if [ -f "$json" ]; then cp "$json" "$keep" && had=1; fi
restore() { if [ "$had" = 1 ]; then mv "$keep" "$json"; else rm -f "$json" "$keep"; fi; }
trap restore EXIT
FLAVOUR=$flavour "$RPD_TOP/scripts/module.sh" rust-analyzer >/dev/null
[ -s "$json" ] || die "make rust-analyzer ($flavour) wrote no $json"
# Paths are the string values that start with "/" (crate roots, include_dirs, the sysroot,
# proc-macro libraries); a cfg such as CONFIG_MODPROBE_PATH="/sbin/modprobe" is not one.
paths=$(sed -nE 's|^ *("[a-z_]+": )?"(/[^"\\]*)",?$|\2|p' "$json" | sort -u)
n=0
missing=()
while IFS= read -r p; do
	n=$((n + 1))
	[ -e "$p" ] || missing+=("$p")
done <<<"$paths"
[ "${#missing[@]}" -eq 0 ] ||
	die "rust-project.json ($flavour): ${#missing[@]} of $n paths do not exist on the host:" "${missing[@]:0:5}"
roots=$(grep -oE '"root_module": "[^"]*"' "$json" | sed 's/.*: "//; s/"$//' | grep -F "$RPD_TOP/" || true)
[ "$roots" = "$RPD_TOP/rust_pagefault_demo.rs" ] ||
	die "rust-project.json ($flavour): the module's crate roots are not just rust_pagefault_demo.rs:" $roots
echo "rust-project.json ($flavour): all $n paths exist on the host; crate root $roots"
# The kernel's proc macros load in the server rust-analyzer is told to use (README).
macros=$(grep -oE '"proc_macro_dylib_path": "[^"]*/libmacros\.so"' "$json" | sed 's/.*: "//; s/"$//')
[ -n "$macros" ] || die "rust-project.json ($flavour) names no libmacros.so"
listed=$(printf '{"ListMacros":{"dylib_path":"%s"}}\n' "$macros" |
	RUST_ANALYZER_INTERNALS_DO_NOT_USE='this is unstable' "$RPD_TOP/scripts/proc-macro-srv.sh")
grep -q '\["module","FuncLike"\]' <<<"$listed" ||
	die "the proc-macro server could not load $macros:" "$listed"
echo "rust-project.json ($flavour): scripts/proc-macro-srv.sh loads the kernel's macros ($(grep -o '\["[A-Za-z_]*",' <<<"$listed" | wc -l) macros)"
