#!/usr/bin/env bash
# run.sh: build what is missing and boot the demo VM (make run).
# With a terminal: the tour, then a shell in the guest with the module loaded.
# Without one (stdin not a tty, e.g. CI): the tour with its checks; exits with its status, and
# leaves the walk picture of its first touch in $RPD_LOGS/walk.svg (scripts/walk_svg.py).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$RPD_TOP/scripts/kernel.sh" "$FLAVOUR"
"$RPD_TOP/scripts/module.sh" modules
"$RPD_TOP/scripts/user.sh"
"$RPD_TOP/scripts/initramfs.sh" "$FLAVOUR"
if [ -t 0 ]; then
	say "booting; the guest shell's 'exit' (or Ctrl-A X) ends the VM"
	exec "$RPD_TOP/scripts/vm.sh" shell
fi
# The console without the tour's JSON, which goes to the walk picture instead.
log=$RPD_LOGS/run-demo.log
rc=0
"$RPD_TOP/scripts/vm.sh" demo "$log" | awk '/^RPD-TOUR-JSON-BEGIN/{on=1} !on {print} /^RPD-TOUR-JSON-END/{on=0}' || rc=$?
json=$RPD_LOGS/tour-run.json
sed -E 's/\r$//' "$log" | awk '/^RPD-TOUR-JSON-END/{on=0} on {print} /^RPD-TOUR-JSON-BEGIN/{on=1}' >"$json"
if [ -s "$json" ] && "$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/walk_svg.py" \
	/dev/stdin /dev/stdout <"$json" >"$RPD_LOGS/walk.svg"; then
	say "the page-table walk of this run's first touch, drawn: $RPD_LOGS/walk.svg (from $json)"
else
	say "no walk picture: the tour wrote no JSON (console log: $log)"
	[ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
