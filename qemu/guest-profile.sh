#!/bin/sh
# guest-profile.sh MODE[:PARAMS]...: for each benchmark mode, the kernel's profile of the timed
# part of one run of it (256 MiB, 5 repetitions, 1 thread), printed as base64 of gzip between
# RPD-PROFILE markers. MODE:PARAMS runs a device mode with module parameters beyond its own,
# e.g. device:map_pages=0 or device:latency=0,insert_pages=1 (the ablation's switches). The
# kernel samples only its own text: time in the module's code is not in it, but every kernel
# function the handler calls is.
set -u
for spec in "$@"; do
	mode=${spec%%:*}
	extra=
	case $spec in *:*) extra="--params ${spec#*:}" ;; esac
	rm -f /tmp/profile
	# shellcheck disable=SC2086
	pfdemo bench --sets main --mib 256 --reps 5 --max-reps 5 --threads 1 --modes "$mode" $extra \
		--profile-out /tmp/profile >/tmp/bench.out 2>&1 || { cat /tmp/bench.out; exit 1; }
	echo "$spec:"
	grep -E "^$mode " /tmp/bench.out
	[ -s /tmp/profile ] || { echo "guest-profile: no profile written for $spec"; exit 1; }
	echo "RPD-PROFILE-BEGIN $spec"
	gzip -c /tmp/profile | base64
	echo "RPD-PROFILE-END"
done
