#!/bin/sh
# The in-guest test suite. printk goes to the console as well, so the host sees the KUnit
# KTAP output of every module load and any kernel report (BUG, WARNING, KASAN, lockdep).
set -u
rc=0
echo "RPD-STEP: insmod (runs the module's KUnit suite)"
insmod /lib/modules/rust_pagefault_demo.ko || { echo "RPD-FAIL: insmod"; exit 1; }
echo "RPD-STEP: end-to-end tests"
pfdemo-e2e || rc=1
echo "RPD-STEP: tour"
pfdemo tour --check >/tmp/tour.out 2>&1 || rc=1
cat /tmp/tour.out
echo "RPD-STEP: unload"
rmmod rust_pagefault_demo || { echo "RPD-FAIL: rmmod"; rc=1; }
if [ -e /sys/kernel/debug/kmemleak ]; then
	echo "RPD-STEP: kmemleak scan"
	echo scan >/sys/kernel/debug/kmemleak
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak
fi
exit $rc
