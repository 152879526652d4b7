#!/usr/bin/env bash
# test.sh: the whole test suite (make test). Builds what is missing, then runs:
#   - host checks: rustfmt (kernel's .rustfmt.toml), clippy on the module, cargo test
#   - in the VM: the module's KUnit suite (KTAP, parsed), the end-to-end tests, the tour's
#     checks, and a scan of the kernel log for reports (BUG, WARNING, KASAN, lockdep, leaks)
# for each kernel flavour in $TEST_FLAVOURS: "default" for make test, "debug" for make
# test-debug (KASAN, lockdep, kmemleak, fault injection), both for CI. Ends with one line
# "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavours=${TEST_FLAVOURS:-default}
passed=0
failed=0
skipped=0
failures=()
pass() { passed=$((passed + ${2:-1})); }
fail() { failed=$((failed + ${2:-1})); failures+=("$1"); printf 'FAILED: %s\n' "$1" >&2; }
summary=$RPD_LOGS/reliability-summary.md
# summarise FLAVOUR REPORTS: the reliability figures of one VM run, from its RPD-RELIABILITY
# lines (reliability-FLAVOUR.txt) and the count of kernel reports in its log, as rows of the
# README's reliability table.
summarise() {
	awk -v f="$1" -v reports="$2" -f "$RPD_TOP/scripts/reliability_table.awk" "$RPD_LOGS/reliability-$1.txt"
}
check() { # check NAME CMD...: one test that passes when CMD succeeds
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

"$RPD_TOP/scripts/buildroot.sh"
for f in $flavours; do "$RPD_TOP/scripts/kernel.sh" "$f"; done

say "host: the build root's safety, format, lint and unit tests"
check "an interrupted chroot (SIGINT, SIGKILL) leaves no mount behind" "$RPD_TOP/scripts/check-chroot-cleanup.sh"
series_msg=$(KERNEL_SERIES=0.1 "$RPD_TOP/scripts/kernel.sh" default 2>&1 >/dev/null || true)
if grep -q "carries these series: .*$KERNEL_SERIES" <<<"$series_msg"; then
	pass "a kernel series the archive lacks fails with the list it carries"
else
	fail "KERNEL_SERIES=0.1 did not list the available series: $series_msg"
fi

check "rustfmt (module and user programs)" "$RPD_TOP/scripts/fmt.sh" --check
check "make profile's report attributes samples to the right functions" "$RPD_TOP/scripts/in-root.sh" \
	python3 "$RPD_SRC_IN/scripts/profile_report.py" --self-test
# The README's walk picture is the drawing of the tour JSON committed with it, from a real run.
check "docs/walk.svg is scripts/walk_svg.py's drawing of docs/walk-tour.json" "$RPD_TOP/scripts/in-root.sh" sh -c \
	"python3 $RPD_SRC_IN/scripts/walk_svg.py $RPD_SRC_IN/docs/walk-tour.json /dev/stdout | cmp - $RPD_SRC_IN/docs/walk.svg &&
	python3 $RPD_SRC_IN/scripts/walk_svg.py --check $RPD_SRC_IN/docs/walk-tour.json $RPD_SRC_IN/docs/walk.svg >/dev/null"
check "make bench's plots and tables (bench/, BENCHMARKS.md) carry the numbers of bench/results.json" \
	"$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/plot_bench.py" --self-test "$RPD_SRC_IN"
# BENCHMARKS.md's measure of what the promises cost is a patch of the module: it must keep
# applying. The ceiling keeps git from taking an enclosing repository for this tree's, where
# it would skip every file of the patch and succeed.
check "bench/no-bookkeeping.patch (BENCHMARKS.md's experiment) applies to this tree" \
	env GIT_CEILING_DIRECTORIES="$(dirname "$RPD_TOP")" git -C "$RPD_TOP" apply --check bench/no-bookkeeping.patch
# Clippy's findings are rustc-style diagnostics: "warning: ..." or "error[E0425]: ..." with a
# "--> file.rs:LINE:COL" line after. Other lines starting with "warning:" (kbuild's notes,
# such as a pahole version that differs from the kernel's) are not the linter's.
lint_findings() { grep -E -A1 '^(warning|error)(\[[A-Za-z0-9_:]+\])?: ' | grep -E -B1 '^ *--> [^ ]+\.rs:[0-9]+:[0-9]+' | grep -E '^(warning|error)' || true; }
sample=$(printf '%s\n' 'warning: pahole version differs from the one used to build the kernel' \
	'  The kernel was built with: 130' 'warning: this `if` has identical blocks' '   --> src/a.rs:3:5')
if [ "$(lint_findings <<<"$sample")" = 'warning: this `if` has identical blocks' ]; then
	pass "the lint check counts clippy's findings, not kbuild's notes"
else
	fail "the lint check's filter: got '$(lint_findings <<<"$sample")'"
fi
# Kernel reports in a guest log: the lines that begin one.
kernel_reports() { grep -E 'BUG:|WARNING:|KASAN|UBSAN|Oops|Kernel panic|panicked at|RIP:|general protection|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|unreferenced object|kmemleak: [0-9]+ new suspected|sleeping function called from invalid context|Bad page' || true; }
# The OOM killer's reports, which the e2e memcg cases cause on purpose, show the registers of
# the user task whose allocation invoked it: its "RIP: 0033:" line is no report of its own.
# Only that line goes, and only inside such a report (up to its kill, or its finding none);
# a BUG or WARNING within one still counts.
without_oom_user_registers() {
	awk '/ invoked oom-killer: /{oom=1} oom && /RIP: 0033:/{next} {print} /Killed process|Out of memory and no killable processes/{oom=0}'
}
sample=$(printf '%s\n' '[ 5.4] pfdemo-e2e invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0' \
	'[ 5.4] RIP: 0033:0x7fd5e40bfb8a' '[ 5.4] Memory cgroup out of memory: Killed process 228 (pfdemo-e2e)' \
	'[ 6.1] WARNING: CPU: 1 PID: 230 at mm/memory.c:1 f+0x1/0x2' '[ 6.1] RIP: 0033:0x7fd5e40bfb8a')
if [ "$(without_oom_user_registers <<<"$sample" | kernel_reports | wc -l)" -eq 2 ]; then
	pass "the report scan takes an OOM report's user registers for no report, and all else"
else
	fail "the report scan's OOM filter: got '$(without_oom_user_registers <<<"$sample" | kernel_reports | tr '\n' ';')'"
fi
lint_rc=0
lint=$(FLAVOUR=default CLIPPY=1 "$RPD_TOP/scripts/module.sh" modules 2>&1) || lint_rc=$?
if [ "$lint_rc" -ne 0 ] || [ -n "$(lint_findings <<<"$lint")" ]; then
	echo "$lint" >&2
	fail "make CLIPPY=1: not clean (exit $lint_rc): $(lint_findings <<<"$lint" | head -n 3 | tr '\n' ';')"
else
	pass "make CLIPPY=1 is clean"
fi
for f in $flavours; do
	check "[$f] make rust-analyzer: every path exists on the host, macros load" \
		"$RPD_TOP/scripts/check-rust-project.sh" "$f"
done
# make KDIR= takes LLVM from the tree: a contradicting LLVM= fails, saying what to use.
llvm_msg=$("$RPD_TOP/scripts/in-root.sh" make -C "$RPD_SRC_IN" KDIR="$(kbuild_in default)" LLVM= modules 2>&1 || true)
if [ ! -f "$RPD_ROOT$(kbuild_in default)/.config" ]; then
	say "make KDIR=<Clang tree> LLVM=: not checked (the default kernel is not built)"
elif grep -q 'contradicts KDIR=.*built with Clang: use LLVM=1' <<<"$llvm_msg"; then
	pass "make KDIR=<Clang tree> LLVM= fails with what to use"
else
	fail "make KDIR=<Clang tree> LLVM= did not refuse: $llvm_msg"
fi
if [[ " $flavours " == *" debian "* ]]; then
	# Building for Debian's own kernels: refusals that say what to do, and the vermagic.
	"$RPD_TOP/scripts/debian-tests.sh" >"$RPD_LOGS/debian-host.tap" 2>&1 || true
	cat "$RPD_LOGS/debian-host.tap" >&2
	pass "Debian host checks" "$(grep -c '^ok ' "$RPD_LOGS/debian-host.tap" || true)"
	while IFS= read -r l; do fail "Debian host check: ${l#not ok }"; done < <(grep '^not ok ' "$RPD_LOGS/debian-host.tap" || true)
fi
check "cargo clippy on the user programs is clean" "$RPD_TOP/scripts/in-root.sh" sh -c \
	"cd $RPD_SRC_IN/user && cargo clippy --release --locked --target-dir $RPD_USER_TARGET_IN --all-targets -- -D warnings"
out=$("$RPD_TOP/scripts/in-root.sh" sh -c \
	"cd $RPD_SRC_IN/user && cargo test --release --locked --target-dir $RPD_USER_TARGET_IN 2>&1") || true
echo "$out" | grep -E '^test |test result' >&2 || true
n_ok=$(echo "$out" | sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' | awk '{s+=$1} END {print s+0}')
n_bad=$(echo "$out" | sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' | awk '{s+=$1} END {print s+0}')
pass "cargo test" "$n_ok"
[ "$n_bad" -eq 0 ] || fail "cargo test ($n_bad)" "$n_bad"
[ "$n_ok" -gt 0 ] || fail "cargo test ran no test (output above)"

"$RPD_TOP/scripts/user.sh"
ksrc=$(ls -d "$RPD_ROOT"/build/linux-*/ | head -n 1)
ksrc=${ksrc#"$RPD_ROOT"}
printf '| what | figure |\n|---|---|\n' >"$summary"
for f in $flavours; do
	say "VM ($f kernel): module, initramfs, boot"
	FLAVOUR=$f "$RPD_TOP/scripts/module.sh" modules
	"$RPD_TOP/scripts/initramfs.sh" "$f"
	log=$RPD_LOGS/test-$f.log
	vm_rc=0
	# The debug kernel's run takes about 13 min under TCG on an idle host, and a busy one
	# (CI's cold run, with a build beside it) made it pass 15: it gets 45 min, the others 15.
	# VM_TIMEOUT overrides both.
	case $f in debug) vm_timeout=2700 ;; *) vm_timeout=900 ;; esac
	FLAVOUR=$f VM_TIMEOUT=${VM_TIMEOUT:-$vm_timeout} "$RPD_TOP/scripts/vm.sh" test "$log" >/dev/null || vm_rc=$?
	# Drop the printk timestamps for parsing.
	clean=$(sed -E 's/\r$//; s/^\[ *[0-9]+\.[0-9]+\] //' "$log")

	# KUnit: the module's suites (one per file it tests, rust_pagefault_demo_*) from its first
	# load, parsed by the kernel's own kunit.py.
	ktap=$("$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/kunit_first_load.py" \
		rust_pagefault_demo_ <<<"$clean")
	k_ok=$(grep -cE '^    ok [0-9]+ ' <<<"$ktap" || true)
	k_bad=$(grep -cE '^    not ok [0-9]+ ' <<<"$ktap" || true)
	k_suites=$(grep -cE '^(not )?ok [0-9]+ rust_pagefault_demo_' <<<"$ktap" || true)
	if ! grep -qx 'CONFIG_KUNIT=y' "$(kernel_config_of "$f")"; then
		echo "[$f] KUnit: not run: this kernel is built without CONFIG_KUNIT, so the module's suites are compiled out" >&2
		skipped=$((skipped + 1))
	elif [ "$k_ok" -eq 0 ]; then
		fail "[$f] KUnit: no results for the rust_pagefault_demo_* suites"
	else
		pass "[$f] KUnit ($k_suites suites)" "$k_ok"
		[ "$k_bad" -eq 0 ] || fail "[$f] KUnit failures" "$k_bad"
		echo "$ktap" >"$RPD_LOGS/kunit-$f.ktap"
		check "[$f] kunit.py parse agrees" "$RPD_TOP/scripts/in-root.sh" sh -c \
			"python3 $ksrc/tools/testing/kunit/kunit.py parse </dev/stdin >/dev/null" <"$RPD_LOGS/kunit-$f.ktap"
	fi
	# Every later load ran the suites again: none may fail.
	again=$(grep -cE '^not ok [0-9]+ rust_pagefault_demo' <<<"$clean" || true)
	[ "$again" -eq 0 ] || fail "[$f] KUnit failed on a later module load" "$again"

	# End-to-end, stress and lifecycle tests (TAP lines) and the tour.
	grep '^RPD-RELIABILITY:' <<<"$clean" >"$RPD_LOGS/reliability-$f.txt" || true
	if [ "$f" = debug ] && ! grep -q ' mode=inject ' "$RPD_LOGS/reliability-$f.txt"; then
		fail "[$f] no fault-injection run (mode=inject) in the reliability figures"
	fi
	e_ok=$(grep -cE '^ok [0-9]+ - ' <<<"$clean" || true)
	e_bad=$(grep -cE '^not ok [0-9]+ - ' <<<"$clean" || true)
	[ "$e_ok" -gt 0 ] || fail "[$f] in-VM tests: no results"
	pass "[$f] in-VM tests" "$e_ok"
	[ "$e_bad" -eq 0 ] || fail "[$f] in-VM test failures: $(grep -E '^not ok [0-9]+ - ' <<<"$clean" | tr '\n' ';')" "$e_bad"
	# The tour runs with the default parameters and each parameter set of qemu/guest-test.sh.
	sets=$(sed -n 's/^for params in \(.*\); do$/\1/p' "$RPD_TOP/qemu/guest-test.sh" | grep -o '"[^"]*"' | wc -l)
	tours=$(grep -cE '^tour: all [0-9]+ checks passed' <<<"$clean" || true)
	if [ "$tours" -eq $((sets + 1)) ]; then pass "[$f] tour, with each parameter set"; else fail "[$f] tour checks ($tours of $((sets + 1)) passed)"; fi
	awk '/^RPD-TOUR-JSON-END/{on=0} on {print} /^RPD-TOUR-JSON-BEGIN/{on=1}' <<<"$clean" >"$RPD_LOGS/tour-$f.json"
	check "[$f] tour --json: every step present and ok" "$RPD_TOP/scripts/in-root.sh" \
		python3 "$RPD_SRC_IN/scripts/check_tour_json.py" <"$RPD_LOGS/tour-$f.json"
	# The walk picture of this run (as make run draws it) must carry this run's numbers.
	svg=$RPD_LOGS/walk-$f.svg
	if "$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/walk_svg.py" /dev/stdin /dev/stdout \
		<"$RPD_LOGS/tour-$f.json" >"$svg"; then
		check "[$f] the walk picture carries the tour's numbers ($svg)" "$RPD_TOP/scripts/in-root.sh" \
			python3 "$RPD_SRC_IN/scripts/walk_svg.py" --check /dev/fd/3 /dev/stdin 3<"$RPD_LOGS/tour-$f.json" <"$svg" >/dev/null
	else
		fail "[$f] scripts/walk_svg.py could not draw the tour's walk (tour JSON: $RPD_LOGS/tour-$f.json)"
	fi
	# The tour's chapters, with each parameter set too.
	chapters=$(grep -cE '^chapters: all [0-9]+ checks passed' <<<"$clean" || true)
	if [ "$chapters" -eq 3 ]; then pass "[$f] tour chapters, with default, prefault=16 and huge=1"; else fail "[$f] tour chapters ($chapters of 3 passed)"; fi
	awk '/^RPD-CHAPTERS-JSON-END/{on=0} on {print} /^RPD-CHAPTERS-JSON-BEGIN/{on=1}' <<<"$clean" >"$RPD_LOGS/chapters-$f.json"
	check "[$f] tour all --json: every chapter's steps present and ok" "$RPD_TOP/scripts/in-root.sh" \
		python3 "$RPD_SRC_IN/scripts/check_chapters_json.py" <"$RPD_LOGS/chapters-$f.json"

	# Kernel reports: any of these in the guest log is a failure. The console shows only
	# errors while the tests run; a WARNING survives in the printk buffer, dumped at the end:
	# the dump must still begin with the boot's first line, or the buffer wrapped and a
	# report may be lost.
	if ! grep -q '^RPD-DMESG-BEGIN' <<<"$clean"; then
		fail "[$f] the guest never dumped its kernel log: its run did not finish (the VM's error above says why)"
	elif awk '/^RPD-DMESG-BEGIN/{on=1; next} on {print; exit}' <<<"$clean" | grep -q '^Linux version'; then
		pass "[$f] the kernel log is whole, from boot to the end"
	else
		fail "[$f] the kernel log dumped at the end does not start at boot: the printk buffer wrapped (raise log_buf_len in scripts/vm.sh)"
	fi
	splats=$(without_oom_user_registers <<<"$clean" | kernel_reports)
	if [ -n "$splats" ]; then fail "[$f] kernel reports in the guest log: $(echo "$splats" | head -n 3 | tr '\n' ';')"; else pass "[$f] no kernel reports"; fi
	summarise "$f" "$(grep -c . <<<"$splats" || true)" >>"$summary"
	[ "$vm_rc" -eq 0 ] || fail "[$f] guest exit status $vm_rc (log: $log)"
done

say "summary"
echo "reliability figures ($summary):"
cat "$summary"
for x in "${failures[@]}"; do echo "  failed: $x"; done
echo "$passed passed, $failed failed$([ "$skipped" -eq 0 ] || echo ", $skipped skipped")"
[ "$failed" -eq 0 ]
