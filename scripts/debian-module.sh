#!/usr/bin/env bash
# debian-module.sh [KERNELRELEASE]: build rust_pagefault_demo.ko for a Debian kernel (make
# debian-module), by default the one this machine runs (uname -r), and say how to load it.
#
# Debian's linux-headers cannot build a Rust module (no Rust metadata in them), so the
# kernel's tree is recreated from Debian's packages of the very same version
# (debian-kernel.sh, about 2.5 minutes the first time, in $RPD_DEBIAN_ROOT). The module lands
# in $RPD_CACHE/debian-modules/<release>/; its vermagic is checked against the kernel.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
rel=${1:-${KERNELRELEASE:-$(uname -r)}}
ver=
if [ "$rel" = "$(uname -r)" ]; then
	# A running Debian kernel names its package version: "... Debian 7.3.4-1~bpo13+1 (date)".
	ver=$(uname -v | sed -n 's/.* Debian \([^ ]*\) .*/\1/p')
	[ -n "$ver" ] || die "the running kernel $rel is not one of Debian's ($(uname -v))" \
		"This command builds for Debian's own kernels. For another kernel, build against its" \
		"configured tree: make KDIR=/path/to/tree (a Rust-enabled one, built by rustc 1.85)," \
		"or name a Debian kernel release: scripts/debian-module.sh 7.3.4+deb13-amd64."
fi
series=$(sed -nE 's/^([0-9]+\.[0-9]+)\..*/\1/p' <<<"$rel")
[ "$series" = "$KERNEL_SERIES" ] ||
	die "kernel $rel is not a Linux $KERNEL_SERIES kernel: the module is written for $KERNEL_SERIES's Rust API" \
		"Install and boot Debian's $KERNEL_SERIES kernel (trixie-backports):" \
		"  apt install -t trixie-backports linux-image-amd64; reboot" \
		"then run this again (or name a release: scripts/debian-module.sh 7.3.4+deb13-amd64)."

"$RPD_TOP/scripts/debian-kernel.sh" "$rel" "$ver" >/dev/null
say "module: building rust_pagefault_demo.ko for $rel"
dir=$(debian_module_build "$rel" modules)
out=$RPD_CACHE/debian-modules/$rel
mkdir -p "$out"
cp "$RPD_DEBIAN_ROOT$dir/rust_pagefault_demo.ko" "$out/"
ko=$out/rust_pagefault_demo.ko

# The kernel loads a module only if its vermagic is the kernel's own: the release first.
vermagic=$(RPD_ROOT=$RPD_DEBIAN_ROOT "$RPD_TOP/scripts/in-root.sh" modinfo -F vermagic "$dir/rust_pagefault_demo.ko" | sed 's/ *$//')
[ "${vermagic%% *}" = "$rel" ] ||
	die "the module's vermagic '$vermagic' does not start with $rel" "The recreated tree is wrong: rm -rf --one-file-system $RPD_DEBIAN_ROOT$(debian_dir_in "$rel") and run this again."
# On the machine that runs the kernel, compare it with one of Debian's own modules as well.
own=$(find "/lib/modules/$rel/kernel" -name '*.ko*' 2>/dev/null | head -n 1 || true)
if [ -n "$own" ] && command -v modinfo >/dev/null; then
	want=$(modinfo -F vermagic "$own" | sed 's/ *$//')
	[ "$vermagic" = "$want" ] ||
		die "the module's vermagic '$vermagic' differs from Debian's own modules' '$want'" \
			"Report this: the recreated tree for $rel does not match Debian's build."
fi

cat <<EOF

Built $ko
  vermagic: $vermagic (the kernel's own; module loading checks it)

Load it (as root; parameters such as prefault=16 or huge=1 follow the file name):
  insmod $ko
  ls /dev/rust_pagefault_demo /sys/kernel/debug/rust_pagefault_demo/
  rmmod rust_pagefault_demo
Or install it, so modprobe finds it:
  install -D -m 0644 $ko /lib/modules/$rel/updates/rust_pagefault_demo.ko
  depmod -a $rel && modprobe rust_pagefault_demo

The taint: the first load logs "loading out-of-tree module taints kernel" and "module
verification failed: signature and/or required key missing - tainting kernel", and
/proc/sys/kernel/tainted gains 4096 (O: out-of-tree module) and 8192 (E: unsigned module).
Nothing runs differently; the flags stay until the next boot and tell whoever reads a bug
report that a module Debian did not ship was loaded.

Secure Boot: with it on (mokutil --sb-state says "SecureBoot enabled"), Debian's kernel is
locked down and refuses unsigned modules: insmod fails with "Operation not permitted" and the
log says "Lockdown: insmod: unsigned module loading is restricted". Sign the module with a
key enrolled as a Machine Owner Key (the key once per machine):
  openssl req -new -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rust_pagefault_demo/" \\
      -keyout MOK.priv -outform DER -out MOK.der
  mokutil --import MOK.der      # choose a password; reboot; in the MOK manager: Enroll MOK
then after every build (sign-file comes with linux-headers-$rel):
  /usr/src/linux-headers-$rel/scripts/sign-file sha256 MOK.priv MOK.der $ko
A signed module with an enrolled key loads without the E taint (O stays: it is out of tree).
EOF
