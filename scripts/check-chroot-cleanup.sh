#!/usr/bin/env bash
# check-chroot-cleanup.sh: prove that interrupting a command inside the build root, with
# Ctrl-C (SIGINT to its process group) or with SIGKILL, leaves no mount behind, and that
# the host never sees the build root's mounts even while the command runs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# The processes of session $1 (the command below and all it starts) that have anything under
# the build root mounted. Other runs' chroots, e.g. a second checkout testing at the same
# time, are in sessions of their own and do not count.
mounts_of_root() {
	local f pid stat sid
	for f in /proc/[0-9]*/mountinfo; do
		pid=${f#/proc/}
		pid=${pid%/mountinfo}
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		# Fields after the command name: state, ppid, pgrp, session.
		read -r _ _ _ sid _ <<<"${stat##*) }"
		if [ "$sid" = "$1" ] && grep -q -F " $RPD_ROOT/" "$f" 2>/dev/null; then
			echo "$f"
		fi
	done
}

for sig in INT KILL; do
	: >"$tmp"
	# A job started in the background from a script ignores SIGINT (POSIX); a Ctrl-C job
	# does not, so restore the default disposition to model Ctrl-C faithfully.
	setsid env --default-signal=INT "$RPD_TOP/scripts/in-root.sh" sh -c 'echo inside; exec sleep 120' >"$tmp" 2>&1 &
	leader=$!
	for _ in $(seq 100); do grep -q inside "$tmp" && break; sleep 0.2; done
	grep -q inside "$tmp" || die "the command never started inside the build root: $(cat "$tmp")"
	# The chroot's own namespace has /dev, /proc and /src mounted...
	[ -n "$(mounts_of_root "$leader")" ] || die "found no process with the build root's mounts: the check is blind"
	# ...and the host's does not.
	if grep -q -F " $RPD_ROOT/" /proc/self/mountinfo; then
		die "the host's mount table shows the build root's mounts during a run"
	fi
	kill -s "$sig" -- "-$leader"
	for _ in $(seq 50); do [ -z "$(mounts_of_root "$leader")" ] && break; sleep 0.2; done
	left=$(mounts_of_root "$leader")
	[ -z "$left" ] || die "SIG$sig mid-chroot left mounts behind, held by: $left"
	{ wait "$leader"; } 2>/dev/null || true
	echo "SIG$sig mid-chroot: no mount left behind"
done
