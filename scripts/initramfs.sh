#!/usr/bin/env bash
# initramfs.sh [FLAVOUR]: pack the guest: busybox, the module of FLAVOUR, the user programs
# and qemu/init, into $RPD_ROOT/build/initramfs-FLAVOUR.cpio (see initramfs_in in lib.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
flavour=${1:-$FLAVOUR}
if [ "$flavour" = default ]; then ko=$RPD_SRC_IN/rust_pagefault_demo.ko; else ko=$(module_dir_in "$flavour")/rust_pagefault_demo.ko; fi
bin=$RPD_USER_TARGET_IN/x86_64-unknown-linux-gnu/release
"$RPD_TOP/scripts/in-root.sh" sh -euc "
	s=$(initramfs_in "$flavour")
	rm -rf \$s && mkdir -p \$s/bin \$s/sbin \$s/proc \$s/sys \$s/dev \$s/tmp \$s/lib/modules \$s/etc
	cp /bin/busybox \$s/bin/busybox
	cp $RPD_SRC_IN/qemu/init \$s/init
	cp $RPD_SRC_IN/qemu/guest-test.sh $RPD_SRC_IN/qemu/guest-profile.sh \$s/bin/
	cp $ko \$s/lib/modules/
	cp $bin/pfdemo $bin/pfdemo-e2e $bin/pfdemo-stress \$s/bin/
	echo 'root:x:0:0:root:/root:/bin/sh' >\$s/etc/passwd
	echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>\$s/etc/passwd
	cd \$s && find . | cpio -o -H newc --quiet >\$s.cpio.tmp && mv \$s.cpio.tmp \$s.cpio"
say "initramfs ($flavour): $(du -h "$RPD_ROOT$(initramfs_in "$flavour").cpio" | cut -f1)"
