#!/usr/bin/env bash
# run.sh: build what is missing and boot the demo VM (make run).
# With a terminal: the tour, then a shell in the guest with the module loaded.
# Without one (stdin not a tty, e.g. CI): the tour with its checks; exits with its status.
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
exec "$RPD_TOP/scripts/vm.sh" demo
