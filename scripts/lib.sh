# shellcheck shell=bash
# Common settings and helpers for the project's scripts. Sourced, never run.
#
# Everything the scripts build or download lives in $RPD_CACHE, outside the
# repository, so a fresh clone reuses a warm cache and deleting the cache is
# always safe (nothing is ever left mounted in it; see in-root.sh).

RPD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RPD_CACHE=${RPD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rust-pagefault-demo}
RPD_ROOT=${RPD_ROOT:-$RPD_CACHE/root}           # the Debian build root (a chroot)
# A second build root for modules for Debian's own kernels: the same packages plus the
# tools those kernels were built with (GCC 14, pahole), which must not reach the first.
RPD_DEBIAN_ROOT=${RPD_DEBIAN_ROOT:-$RPD_CACHE/root-debian}
DEBIAN_ROOT_PACKAGES="gcc-14 dwarves"
# The Debian kernel the "debian" flavour boots, by its release (uname -r), e.g.
# 7.3.4+deb13-amd64; empty: the newest $KERNEL_SERIES one the archive carries.
DEBIAN_KERNEL=${DEBIAN_KERNEL:-}
# RPD_TAG gives a second checkout that shares the cache (a scratch clone, an experiment) a
# set of its own logs, cargo target, module copies and initramfs, so two runs side by side
# never overwrite each other's guest; unset, all checkouts share one set.
RPD_TAG=${RPD_TAG:-}
[[ $RPD_TAG =~ ^[A-Za-z0-9_-]*$ ]] ||
	{ echo "error: RPD_TAG='$RPD_TAG': use letters, digits, '_' and '-' only" >&2; exit 1; }
RPD_LOGS=$RPD_CACHE/logs${RPD_TAG:+-$RPD_TAG}   # logs of every long step, kept on failure
KERNEL_SERIES=${KERNEL_SERIES:-7.3}
DEBIAN_SUITE=${DEBIAN_SUITE:-trixie}
FLAVOUR=${FLAVOUR:-default}         # kernel flavour: default, debug or profile
export RPD_TOP RPD_CACHE RPD_ROOT RPD_DEBIAN_ROOT DEBIAN_KERNEL RPD_TAG RPD_LOGS KERNEL_SERIES DEBIAN_SUITE FLAVOUR

# Paths inside the build root.
RPD_SRC_IN=/src                     # the repository, bind-mounted
RPD_KSRC_IN=/build/linux            # unpacked kernel source
# The config fragments a flavour's kernel is built from (default, debug, profile).
kernel_frags() {
	case $1 in
	default) echo "qemu/kernel.config" ;;
	debug) echo "qemu/kernel.config qemu/kernel-debug.config" ;;
	profile) echo "qemu/kernel.config qemu/kernel-profile.config" ;;
	esac
}
# The hash of a flavour's fragments: what its kernel was configured from.
kernel_frags_hash() { (cd "$RPD_TOP" && cat $(kernel_frags "$1") | sha256sum | cut -c1-16); }
# The kernel object tree of a flavour, one per set of fragments: checkouts that share the
# cache but not the fragments (a branch adding an option) each keep their kernel, instead of
# rebuilding the other's (and racing it) on every run.
kbuild_in() { echo "/build/kbuild-$1-$(kernel_frags_hash "$1")"; }
# What a checkout builds for the guest (per RPD_TAG, see above).
RPD_USER_TARGET_IN=/build/user-target${RPD_TAG:+-$RPD_TAG}
module_dir_in() { echo "/build/module${RPD_TAG:+-$RPD_TAG}-$1"; }   # module copy of a flavour
initramfs_in() { echo "/build/initramfs${RPD_TAG:+-$RPD_TAG}-$1"; } # guest of a flavour (+.cpio)

# The Debian kernel trees (debian-kernel.sh), in $RPD_DEBIAN_ROOT, and where the "debian"
# flavour's kernel image is copied in the project's root for the VM.
debian_dir_in() { echo "/build/debian-$1"; }
debian_image_in() { echo "/build/debian-kernel/vmlinuz"; }
# The kernel image the VM of a flavour boots, in $RPD_ROOT.
kernel_image_in() {
	if [ "$1" = debian ]; then debian_image_in; else echo "$(kbuild_in "$1")/arch/x86/boot/bzImage"; fi
}

# The host path of the .config of a flavour's kernel (the debian flavour: the tree of the
# Debian kernel its VM boots).
kernel_config_of() {
	if [ "$1" = debian ]; then
		echo "$RPD_DEBIAN_ROOT$(debian_dir_in "$(cat "$RPD_ROOT$(debian_image_in).release")")/linux/.config"
	else
		echo "$RPD_ROOT$(kbuild_in "$1")/.config"
	fi
}

# kernel_cc_args CONFIG: the make arguments that pick the compiler a kernel was built with,
# read from its .config: LLVM=1 for Clang, else LLVM= and CC=<the compiler's name as the
# kernel recorded it> (Debian's: x86_64-linux-gnu-gcc-14).
kernel_cc_args() {
	if grep -qx 'CONFIG_CC_IS_CLANG=y' "$1"; then
		echo "LLVM=1"
	else
		echo "LLVM= CC=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\).*/\1/p' "$1")"
	fi
}

# module_sources: the module's sources, relative to the repository, whatever its file list:
# Kbuild, Makefile, the top-level *.rs files, and the Rust sources (with any Kbuild or
# Makefile) of every top-level folder that has some, but user/ (the programs' own crate).
module_sources() {
	(
		cd "$RPD_TOP"
		ls Kbuild Makefile ./*.rs 2>/dev/null | sed 's|^\./||'
		for d in */; do
			d=${d%/}
			[ "$d" = user ] && continue
			find "$d" -type f \( -name '*.rs' -o -name Kbuild -o -name Makefile \)
		done
	)
}
# sync_module_sources DEST: make DEST (a host path) a copy of the module's sources. Only
# changed files are written (kbuild rebuilds by mtime); Rust files gone from the repository
# are removed from the copy.
sync_module_sources() {
	local dest=$1 f list
	list=$(module_sources)
	mkdir -p "$dest"
	while IFS= read -r f; do
		cmp -s "$RPD_TOP/$f" "$dest/$f" && continue
		mkdir -p "$dest/$(dirname "$f")"
		cp "$RPD_TOP/$f" "$dest/$f"
	done <<<"$list"
	(cd "$dest" && find . -name '*.rs' | sed 's|^\./||') | while IFS= read -r f; do
		grep -qxF "$f" <<<"$list" || rm -f "$dest/$f"
	done
}

# debian_module_build RELEASE TARGET: run the module's kbuild TARGET for Debian's kernel
# RELEASE (its tree made by debian-kernel.sh), on a copy of the sources in the Debian root,
# with the compiler Debian used. Prints the copy's path inside that root.
debian_module_build() {
	local d dir
	d=$(debian_dir_in "$1")
	dir=$(module_dir_in "debian-$1")
	sync_module_sources "$RPD_DEBIAN_ROOT$dir"
	# shellcheck disable=SC2046
	RPD_ROOT=$RPD_DEBIAN_ROOT "$RPD_TOP/scripts/in-root.sh" make -s -C "$dir" KDIR="$d/linux" \
		$(cat "$RPD_DEBIAN_ROOT$d/make-args") "$2" >&2
	echo "$dir"
}

# rust_project_to_host ROOT DIR: the rust-project.json that kbuild wrote in DIR (a path in
# build root ROOT) becomes the repository's, every path in it made one that exists on the
# host: DIR's files are the repository's, the rest is the build root's (ROOT + path).
rust_project_to_host() {
	local from=$1$2/rust-project.json
	# The repository itself is DIR /src, a bind mount that exists only inside the root.
	[ "$2" != "$RPD_SRC_IN" ] || from=$RPD_TOP/rust-project.json
	RPD_ROOT=$1 "$RPD_TOP/scripts/in-root.sh" python3 "$RPD_SRC_IN/scripts/rust_project_paths.py" \
		"$2" "$RPD_TOP" "$1" <"$from" >"$RPD_TOP/rust-project.json.tmp"
	mv "$RPD_TOP/rust-project.json.tmp" "$RPD_TOP/rust-project.json"
}

_rpd_t0=${_rpd_t0:-$(date +%s)}
export _rpd_t0

elapsed() { local s=$(($(date +%s) - _rpd_t0)); printf '%d:%02d' $((s / 60)) $((s % 60)); }
say() { printf '[%s] %s\n' "$(elapsed)" "$*" >&2; }
die() {
	printf 'error: %s\n' "$1" >&2
	shift
	for l in "$@"; do printf '  %s\n' "$l" >&2; done
	exit 1
}

need_root() {
	[ "$(id -u)" -eq 0 ] && return 0
	die "this step needs root: it runs debootstrap and chroot into $RPD_ROOT." \
		"Run it again as root (e.g. 'sudo -E make test'), or point RPD_CACHE at a cache" \
		"that root has already built; no unprivileged path is supported."
}

# run_logged NAME CMD...: run a long step with its output in $RPD_LOGS/NAME.log,
# printing a heartbeat every 30 s; on failure show the log's tail and stop.
run_logged() {
	local name=$1 log rc start
	shift
	mkdir -p "$RPD_LOGS"
	log=$RPD_LOGS/$name.log
	start=$(date +%s)
	say "$name: started (log: $log)"
	"$@" >"$log" 2>&1 &
	local pid=$!
	trap 'kill -- "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 130' INT TERM
	while kill -0 "$pid" 2>/dev/null; do
		for _ in $(seq 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		kill -0 "$pid" 2>/dev/null &&
			say "$name: still running ($(($(date +%s) - start)) s): $(tail -n 1 "$log" | cut -c1-100)"
	done
	rc=0
	wait "$pid" || rc=$?
	trap - INT TERM
	if [ "$rc" -ne 0 ]; then
		printf '\n--- last lines of %s ---\n' "$log" >&2
		tail -n 30 "$log" >&2
		die "step '$name' failed (exit $rc); the whole log is kept at $log"
	fi
	say "$name: done in $(($(date +%s) - start)) s"
}

# The Debian mirror: $DEBIAN_MIRROR, or the first Debian archive the host's apt
# sources name. Nothing about the mirror is written into the repository.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local m
	m=$({
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{for(i=2;i<=NF;i++)print $i}'
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
	} | grep -v -e security -e '^$' | grep -E '/debian/?$' | head -n 1)
	[ -n "$m" ] || die "no Debian mirror found in the host's apt sources" \
		"Set DEBIAN_MIRROR to a Debian archive URL (the one your apt uses)."
	echo "${m%/}"
}
