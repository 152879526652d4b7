#!/usr/bin/env bash
# profile.sh [MODE...]: where the fault paths spend their time (make profile). Boots the
# profile kernel (the default one plus the kernel's sampling profiler at 1000 Hz) with
# profile=2, runs each benchmark MODE (default: the list below) under a
# fresh profile, and prints the kernel functions that took the most samples, per mode, also
# kept in bench/profile.txt. Idle time is left out. MODE:PARAMS adds module parameters to a
# device mode (device:map_pages=0): the default list has the ablation's switches too.
# ICOUNT=1 (scripts/vm.sh): the guest's clock, and so its profiler's ticks, count
# instructions; the samples are then shares of the path's instructions, not of its time,
# kept in bench/icount/profile.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export FLAVOUR=profile
modes=${*:-anon device device-batch device-huge device:map_pages=0 device:latency=0 device:insert_pages=1 device:return_page=1 device-batch:alloc_blocks=0}
"$RPD_TOP/scripts/kernel.sh" profile
"$RPD_TOP/scripts/module.sh" modules
"$RPD_TOP/scripts/user.sh"
"$RPD_TOP/scripts/initramfs.sh" profile
log=$RPD_LOGS/profile.log
[ "${ICOUNT:-0}" != 1 ] || export VM_TIMEOUT=${VM_TIMEOUT:-1800}
say "profile: $modes (about 30 s per mode)"
VM_APPEND="profile=2 ${VM_APPEND:-}" RPD_GUEST_ARGS="$modes" "$RPD_TOP/scripts/vm.sh" profile "$log" |
	sed -E 's/\r$//' | grep -vE '^\[ *[0-9]+\.[0-9]+\]|^RPD-|^[A-Za-z0-9+/=]{60,}$' || true
grep -q '^RPD-PROFILE-END' "$log" || die "the guest printed no profile; console log kept at $log"
# The report runs in the build root, next to the kernel's System.map.
in_root_log=/build/profile${RPD_TAG:+-$RPD_TAG}.log
cp "$log" "$RPD_ROOT$in_root_log"
out=bench
[ "${ICOUNT:-0}" != 1 ] || out=bench/icount
mkdir -p "$RPD_TOP/$out"
"$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/profile_report.py" \
	"$in_root_log" "$(kbuild_in profile)/System.map" | tee "$RPD_TOP/$out/profile.txt"
say "profile kept in $out/profile.txt"
