#!/usr/bin/env bash
# user.sh: build the user programs (pfdemo, pfdemo-e2e) as static binaries, in the build root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$RPD_TOP/scripts/buildroot.sh" >/dev/null
run_logged user-build "$RPD_TOP/scripts/in-root.sh" sh -c \
	"cd $RPD_SRC_IN/user && cargo build --release --locked --target-dir $RPD_USER_TARGET_IN"
