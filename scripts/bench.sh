#!/usr/bin/env bash
# bench.sh [ARGS...]: run `pfdemo bench ARGS` in the VM (make bench) and keep its results:
# bench/results.json, the plots bench/pages-per-second.svg and bench/prefault-sweep.svg, and
# the tables bench/tables.md, which also replace the tables part of BENCHMARKS.md (all made
# from the JSON by scripts/plot_bench.py). ARGS as in 'pfdemo bench --help', e.g. --mib 256
# --reps 7; without ARGS, every set runs (the modes, the ablation, the prefault sweep, the
# fault loops) at 64 MiB, in about 6 to 12 minutes. The VM gets 4 GiB by default (VM_MEM) so
# that 512 MiB fits for every mode. FLAVOUR=debian make bench: the same on Debian's own
# kernel, kept in bench/debian/ and in BENCHMARKS.md's debian part (any other flavour: in
# bench/FLAVOUR/, and in BENCHMARKS.md only if it has a part of that name). ICOUNT=1 make
# bench: the guest's clock counts instructions (scripts/vm.sh), so every figure is a path
# length; one thread unless ARGS say otherwise (two vCPUs' instructions add up on that clock);
# kept in bench/icount/ (bench/FLAVOUR-icount/) and BENCHMARKS.md's part of that name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export VM_MEM=${VM_MEM:-4G}
args=("$@")
case ${ICOUNT:-0} in
0) ;;
1)
	args=(--icount "${args[@]}")
	case " $* " in *" --threads"*) ;; *) args+=(--threads 1) ;; esac
	;;
*) die "ICOUNT=$ICOUNT: use 1 (count instructions) or 0 (time)" ;;
esac
"$RPD_TOP/scripts/kernel.sh" "$FLAVOUR"
"$RPD_TOP/scripts/module.sh" modules
"$RPD_TOP/scripts/user.sh"
"$RPD_TOP/scripts/initramfs.sh" "$FLAVOUR"
log=$RPD_LOGS/bench.log
# The whole run under TCG: boot, the modes, the ablation, the sweep, the loops.
# (With ICOUNT=1 it took 5 min: its intervals are narrow, so few rounds are added.)
export VM_TIMEOUT=${VM_TIMEOUT:-2400}
say "bench: pfdemo bench ${args[*]:-(every set, 64 MiB)}; progress below, one line per measurement"
RPD_GUEST_ARGS="${args[*]}" "$RPD_TOP/scripts/vm.sh" bench "$log" |
	sed -u -E 's/\r$//' | grep --line-buffered -vE '^\[ *[0-9]+\.[0-9]+\]|^RPD-|^\{|^ |^\}' || true
# The default kernel's run goes to bench/ and BENCHMARKS.md's tables; another flavour's
# to bench/FLAVOUR/ and the part of BENCHMARKS.md named after it, if there is one; a run
# that counts instructions to bench/icount/ or bench/FLAVOUR-icount/, and that part.
name=
[ "$FLAVOUR" = default ] || name=$FLAVOUR
[ "${ICOUNT:-0}" != 1 ] || name=${name:+$name-}icount
out=bench
part=()
if [ -n "$name" ]; then
	out=bench/$name
	part=(--part "$name")
fi
mkdir -p "$RPD_TOP/$out"
sed -E 's/\r$//' "$log" | awk '/^RPD-BENCH-JSON-END/{on=0} on {print} /^RPD-BENCH-JSON-BEGIN/{on=1}' \
	>"$RPD_TOP/$out/results.json"
[ -s "$RPD_TOP/$out/results.json" ] || die "the benchmark wrote no results; console log kept at $log"
"$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/plot_bench.py" \
	"$RPD_SRC_IN/$out/results.json" "$RPD_SRC_IN/$out" --doc "$RPD_SRC_IN/BENCHMARKS.md" "${part[@]}"
say "results: $out/results.json; plots: $out/pages-per-second.svg, $out/prefault-sweep.svg;" \
	"tables: $out/tables.md (and in BENCHMARKS.md where it has a part for them)"
