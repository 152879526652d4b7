#!/bin/sh
# guest-profile.sh MODE...: for each benchmark mode, the kernel's profile of the timed part of
# one run of it (256 MiB, 5 repetitions, 1 thread), printed as base64 of gzip between
# RPD-PROFILE markers. The kernel samples only its own text: time in the module's code is not
# in it, but every kernel function the handler calls is.
set -u
for mode in "$@"; do
	rm -f /tmp/profile
	pfdemo bench --mib 256 --reps 5 --threads 1 --modes "$mode" --profile-out /tmp/profile \
		>/tmp/bench.out 2>&1 || { cat /tmp/bench.out; exit 1; }
	grep -E "^$mode " /tmp/bench.out
	[ -s /tmp/profile ] || { echo "guest-profile: no profile written for $mode"; exit 1; }
	echo "RPD-PROFILE-BEGIN $mode"
	gzip -c /tmp/profile | base64
	echo "RPD-PROFILE-END"
done
