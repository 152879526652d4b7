#!/usr/bin/env bash
# vm.sh MODE [LOG]: boot the VM kernel of $FLAVOUR with its initramfs in QEMU.
#
# MODE is the guest's rpd.mode (test, demo, bench, profile, exec, shell). Non-interactive modes print the
# console to stdout and to LOG, enforce a hard timeout ($VM_TIMEOUT s), and exit with the
# guest's status, read from its "RPD-EXIT=<n>" line. TCG by default; RPD_KVM=1 uses KVM
# (nested KVM hangs at boot on some hosts, hence opt-in); ICOUNT=1 makes the guest's clock
# count instructions (below).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mode=${1:?usage: vm.sh MODE [LOG]}
log=${2:-$RPD_LOGS/vm-$mode-$FLAVOUR.log}
timeout=${VM_TIMEOUT:-900}
mem=${VM_MEM:-2G}
cpus=${VM_CPUS:-2}
kernel=$(kernel_image_in "$FLAVOUR")
initrd=$(initramfs_in "$FLAVOUR").cpio
[ -f "$RPD_ROOT$kernel" ] || die "no kernel at $RPD_ROOT$kernel" "Build it with: make kernel FLAVOUR=$FLAVOUR"
[ -f "$RPD_ROOT$initrd" ] || die "no initramfs at $RPD_ROOT$initrd" "Build it with: scripts/initramfs.sh $FLAVOUR"

# The CPU model under TCG ($VM_CPU overrides):
# - no LA57: with 5-level paging, KASAN kernels intermittently report a wild-memory-access
#   from an interrupt during early boot (identify_cpu), before any module is loaded;
# - no ERMS/FSRM: the kernel's clear_page then uses rep stosq instead of rep stosb, which
#   TCG emulates about 3x slower (measured: 18.3 us vs 6.3 us per fault in our handler).
#   Anonymous memory zeroes with the same clear_page, so no comparison changes.
accel=(-accel tcg -cpu "${VM_CPU:-max,la57=off,erms=off,fsrm=off}")
if [ "${RPD_KVM:-0}" = 1 ]; then
	[ -c /dev/kvm ] || die "RPD_KVM=1 but /dev/kvm is missing" "Unset RPD_KVM to use TCG."
	[ "${ICOUNT:-0}" = 1 ] && die "ICOUNT=1 counts instructions under TCG; KVM has no such clock" "Unset RPD_KVM or ICOUNT."
	accel=(-accel kvm -cpu host)
fi
# ICOUNT=1: the guest's clock counts its instructions, one per ns (shift=0), and jumps over
# idle time to the next timer (sleep=off), so a time measured in the guest is a path length,
# the same however busy the host is. QEMU then runs the vCPUs in turns on one host thread,
# and adds the instructions of all of them to the one clock. (QEMU's own manual long had
# sleep=on and sleep=off the wrong way round: off is the one that jumps.)
if [ "${ICOUNT:-0}" = 1 ]; then
	accel+=(-icount shift=0,sleep=off)
fi
# log_buf_len: the whole kernel log of a test run (the debug kernel's is long) must survive in
# the printk buffer until the guest dumps it at the end, where the host scans it for reports.
# rpd.flavour tells the guest's tests which kernel they run on (Debian's lacks some options).
append="console=ttyS0 rpd.mode=$mode rpd.flavour=$FLAVOUR panic=-1 oops=panic log_buf_len=16M ${VM_APPEND:-}"
# Arguments for the guest's program (e.g. the benchmark's), with ';' for spaces on the kernel
# command line (commas stay: '--modes anon,device' is one argument).
if [ -n "${RPD_GUEST_ARGS:-}" ]; then
	case $RPD_GUEST_ARGS in *[\;\"]*) die "guest arguments cannot contain ';' or a double quote: $RPD_GUEST_ARGS" ;; esac
	append="$append rpd.args=$(echo "$RPD_GUEST_ARGS" | tr ' ' ';')"
fi
qemu=(qemu-system-x86_64 -M pc "${accel[@]}" -smp "$cpus" -m "$mem" -nodefaults -no-reboot
	-kernel "$kernel" -initrd "$initrd")
# Measurements want every page of guest RAM backed by the host before they start: the host's
# first touch of a guest page is a fault of its own, which would land on whichever mode first
# got that page from the guest's allocator.
case $mode in bench | profile) qemu+=(-mem-prealloc) ;; esac

if [ "$mode" = shell ]; then
	# -nodefaults leaves no serial port: give the guest one, multiplexed with the monitor
	# (Ctrl-A X quits, Ctrl-A C switches to the monitor).
	exec "$RPD_TOP/scripts/in-root.sh" "${qemu[@]}" -display none -serial mon:stdio -append "$append quiet"
fi

mkdir -p "$(dirname "$log")"
say "vm: booting $FLAVOUR kernel, mode $mode, $cpus vCPUs, $mem ($([ "${RPD_KVM:-0}" = 1 ] && echo KVM || echo TCG)$([ "${ICOUNT:-0}" = 1 ] && echo ', clock counting instructions')), timeout ${timeout}s"
rc=0
timeout -k 10 "$timeout" "$RPD_TOP/scripts/in-root.sh" "${qemu[@]}" -display none -serial stdio \
	-append "$append" </dev/null | tee "$log" || rc=$?
status=$(sed -n 's/^RPD-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$status" ]; then
	[ "$rc" -eq 124 ] && die "the VM did not finish within ${timeout}s; console log kept at $log"
	die "the VM ended without reporting a status (QEMU exit $rc); console log kept at $log"
fi
exit "$status"
