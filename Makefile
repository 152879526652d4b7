# SPDX-License-Identifier: GPL-2.0
#
# Out-of-tree build of rust_pagefault_demo.ko, in the shape of Rust-for-Linux's
# out-of-tree template, plus the project's own targets.
#
#   make KDIR=/path/to/rust-enabled/tree   build against any configured tree
#   make                                   build against the project's VM kernel
#   make run | test | test-debug | bench   the demo, the tests (default / debug kernel),
#                                          the benchmark
#   make profile                           where the fault paths spend their time
#   make bench ICOUNT=1 (or profile)       the same, the guest's clock counting instructions
#
# Without KDIR the build runs inside the project's build root (see scripts/),
# because a Rust module must be built by the same rustc as its kernel.

KDIR ?=
LLVM ?= 1
FLAVOUR ?= default
export FLAVOUR CLIPPY TEST_FLAVOURS ICOUNT

ifneq ($(KDIR),)
# The tree's own configuration says which compiler built it, and so what LLVM must be:
# 1 for a Clang tree, empty for a GCC one (Debian's kernels). An LLVM= given on the command
# line or in the environment must agree with it; the default above is replaced by it.
KCONFIG := $(firstword $(wildcard $(KDIR)/include/config/auto.conf $(KDIR)/.config))
ifeq ($(KCONFIG),)
$(error KDIR=$(KDIR) is not a configured kernel tree (no include/config/auto.conf, no .config): configure and prepare it first (make olddefconfig modules_prepare in that tree))
endif
TREE_LLVM := $(if $(shell grep -sx CONFIG_CC_IS_CLANG=y $(KCONFIG)),1)
ifneq ($(filter command line environment,$(origin LLVM)),)
ifneq ($(if $(LLVM),1),$(TREE_LLVM))
$(error LLVM=$(LLVM) ($(origin LLVM)) contradicts KDIR=$(KDIR), which was built with $(if $(TREE_LLVM),Clang: use LLVM=1,GCC: use LLVM= (empty)), or leave LLVM out and the tree decides)
endif
else
override LLVM := $(TREE_LLVM)
endif
KBUILD = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM)

default: modules
modules:
	$(KBUILD) modules
modules_install:
	$(KBUILD) modules_install
# kbuild's clean leaves the bitcode of CONFIG_RUST_INLINE_HELPERS behind.
clean:
	$(KBUILD) clean
	rm -f *.bc
rust-analyzer:
	$(KBUILD) rust-analyzer
else
IN_ROOT = scripts/module.sh

default: modules
modules:
	$(IN_ROOT) modules
modules_install:
	$(IN_ROOT) modules_install
clean:
	$(IN_ROOT) clean
	rm -rf user/target
rust-analyzer:
	$(IN_ROOT) rust-analyzer
endif

# rustfmt with the kernel's .rustfmt.toml (check only; `make fmt` rewrites).
fmtcheck:
	scripts/fmt.sh --check
fmt:
	scripts/fmt.sh

buildroot:
	scripts/buildroot.sh
kernel:
	scripts/kernel.sh $(FLAVOUR)
run:
	scripts/run.sh
test:
	scripts/test.sh
test-debug:
	TEST_FLAVOURS=debug scripts/test.sh
bench:
	scripts/bench.sh
profile:
	scripts/profile.sh
# rust_pagefault_demo.ko for the Debian kernel this machine runs (or KERNELRELEASE=...).
debian-module:
	scripts/debian-module.sh $(KERNELRELEASE)
.PHONY: debian-module

.PHONY: default modules modules_install clean rust-analyzer fmtcheck fmt buildroot kernel run test test-debug bench profile
