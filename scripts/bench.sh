#!/usr/bin/env bash
# bench.sh [ARGS...]: run `pfdemo bench ARGS` in the VM (make bench) and keep its results:
# bench/results.json and the plot bench/pages-per-second.svg. ARGS as in 'pfdemo bench
# --help', e.g. --mib 512 --reps 7. The VM gets 4 GiB by default (VM_MEM) so that 512 MiB
# fits for every mode.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export VM_MEM=${VM_MEM:-4G}
"$RPD_TOP/scripts/kernel.sh" "$FLAVOUR"
"$RPD_TOP/scripts/module.sh" modules
"$RPD_TOP/scripts/user.sh"
"$RPD_TOP/scripts/initramfs.sh" "$FLAVOUR"
log=$RPD_LOGS/bench.log
RPD_GUEST_ARGS="$*" "$RPD_TOP/scripts/vm.sh" bench "$log" |
	sed -E 's/\r$//' | grep -vE '^\[ *[0-9]+\.[0-9]+\]|^RPD-|^\{|^ |^\}' || true
mkdir -p "$RPD_TOP/bench"
sed -E 's/\r$//' "$log" | awk '/^RPD-BENCH-JSON-END/{on=0} on {print} /^RPD-BENCH-JSON-BEGIN/{on=1}' \
	>"$RPD_TOP/bench/results.json"
[ -s "$RPD_TOP/bench/results.json" ] || die "the benchmark wrote no results; console log kept at $log"
"$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/plot_bench.py" \
	"$RPD_SRC_IN/bench/results.json" "$RPD_SRC_IN/bench/pages-per-second.svg"
say "results: bench/results.json, plot: bench/pages-per-second.svg"
