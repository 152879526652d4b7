#!/usr/bin/env bash
# proc-macro-srv.sh: rust-analyzer's proc-macro server of the build root's rustc (Debian's
# 1.85.1, the one that built the kernel's `macros` crate), run on the host. Only a server of
# the very rustc that built a proc-macro library can load it; this one is a Debian trixie
# binary, so it runs with the build root's own dynamic loader and libraries, whatever the
# host's glibc. Point rust-analyzer at it: "rust-analyzer.procMacro.server": "<this file>".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
root=$RPD_ROOT
[ -x "$root/usr/libexec/rust-analyzer-proc-macro-srv" ] || root=$RPD_DEBIAN_ROOT
[ -x "$root/usr/libexec/rust-analyzer-proc-macro-srv" ] ||
	die "no rust-analyzer-proc-macro-srv in $RPD_ROOT or $RPD_DEBIAN_ROOT" "Create the build root first: make buildroot."
libs=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
exec "$root/lib64/ld-linux-x86-64.so.2" --library-path "$libs" "$root/usr/libexec/rust-analyzer-proc-macro-srv" "$@"
