#!/bin/sh
# The in-guest test suite. Only kernel errors go to the console while it runs (so they
# show even if the guest dies), keeping the tests' own lines whole; the full kernel log,
# with the KUnit KTAP output of every module load and any report (BUG, WARNING, KASAN,
# lockdep, kmemleak), is printed at the end between RPD-DMESG markers for the host to parse.
# The end-to-end tests run seven times: with the default parameters, with prefault=16 (each
# fault maps 16 pages, whose frames come in blocks) and the flight recorder on from the load
# (events=1: every group then faults through the recording path), with huge=1 (2 MiB
# frames), and with the fault path's switches
# flipped (issue 16): map_pages=0 (faults retried under the mmap lock), insert_pages=1
# (vm_insert_pages for one page) and latency=0 (no clock) on the 4 KiB path, and
# map_pages=0 with latency=7 (every 7th call timed) on the 2 MiB path, and return_page=1 (the
# core maps the handler's page) with latency=16, and prefault=7 with alloc_blocks=0 (one
# allocation per frame of a batch; 7, so that the blocks it no longer uses would have been
# of 4 and 2 pages); they derive their
# expected counts from the settings the module prints in its stats file.
# The tour's chapters (`pfdemo tour all`) run with default, prefault=16 and huge=1, after the tour.
set -u
# Each step says when it starts (seconds since boot), so a slow step shows in the log.
step() { echo "RPD-STEP: $* (at $(cut -d' ' -f1 /proc/uptime) s)"; }
dmesg -n 4
rc=0
module=/lib/modules/rust_pagefault_demo.ko
step "insmod (runs the module's KUnit suite)"
insmod $module || { echo "RPD-FAIL: insmod"; exit 1; }
step "end-to-end tests"
pfdemo-e2e || rc=1
step "tour"
pfdemo tour --check >/tmp/tour.out 2>&1 || rc=1
cat /tmp/tour.out
echo "RPD-TOUR-JSON-BEGIN"
pfdemo tour --check --json || rc=1
echo "RPD-TOUR-JSON-END"
step "tour chapters"
pfdemo tour all --check >/tmp/chapters.out 2>&1 || rc=1
cat /tmp/chapters.out
echo "RPD-CHAPTERS-JSON-BEGIN"
pfdemo tour all --check --json || rc=1
echo "RPD-CHAPTERS-JSON-END"
for params in "prefault=16 events=1" "huge=1" "map_pages=0 insert_pages=1 latency=0" "huge=1 map_pages=0 latency=7" "return_page=1 latency=16" "prefault=7 alloc_blocks=0"; do
	step "end-to-end tests with $params"
	rmmod rust_pagefault_demo && insmod $module $params || { echo "RPD-FAIL: reload"; rc=1; }
	RPD_PARAMS="$params" pfdemo-e2e || rc=1
	pfdemo tour --check >/tmp/tour.out 2>&1 || { cat /tmp/tour.out; rc=1; }
	tail -n 1 /tmp/tour.out
	# The chapters with the parameter sets that change what they show (the frame's size and
	# how many pages a fault maps), not with the switch sets.
	case $params in
	prefault=16* | huge=1)
		pfdemo tour all --check >/tmp/chapters.out 2>&1 || { cat /tmp/chapters.out; rc=1; }
		tail -n 1 /tmp/chapters.out
		;;
	esac
	step "stress with $params (seeded, bounded; leaks judged by the run's memory cgroup)"
	pfdemo-stress run --seed 3 --procs 2 --threads 2 --ops 1500 --seconds 15 || rc=1
	if [ "$params" = huge=1 ]; then
		step "4 KiB and PMD faults mixed in one 2 MiB range, THP toggled"
		pfdemo-stress mix --seconds 5 || rc=1
	fi
done
step "stress (seeded, bounded)"
rmmod rust_pagefault_demo && insmod $module || { echo "RPD-FAIL: reload"; rc=1; }
pfdemo-stress run --seed 1 --procs 4 --threads 3 --ops 8000 --seconds 40 || rc=1
if [ -d /sys/kernel/debug/fail_page_alloc ]; then
	step "stress with fault injection (5% of the workers' allocations fail)"
	pfdemo-stress run --seed 2 --procs 2 --threads 2 --ops 1500 --seconds 30 --inject 5 || rc=1
fi
step "insmod/rmmod lifecycle"
pfdemo-stress lifecycle --cycles 200 || rc=1
step "unload"
rmmod rust_pagefault_demo || { echo "RPD-FAIL: rmmod"; rc=1; }
if [ -e /sys/kernel/debug/kmemleak ]; then
	step "kmemleak scan"
	echo scan >/sys/kernel/debug/kmemleak
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak
fi
echo "RPD-DMESG-BEGIN"
dmesg
echo "RPD-DMESG-END"
exit $rc
