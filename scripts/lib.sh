# shellcheck shell=bash
# Common settings and helpers for the project's scripts. Sourced, never run.
#
# Everything the scripts build or download lives in $RPD_CACHE, outside the
# repository, so a fresh clone reuses a warm cache and deleting the cache is
# always safe (nothing is ever left mounted in it; see in-root.sh).

RPD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RPD_CACHE=${RPD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rust-pagefault-demo}
RPD_ROOT=${RPD_ROOT:-$RPD_CACHE/root}           # the Debian build root (a chroot)
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
export RPD_TOP RPD_CACHE RPD_ROOT RPD_TAG RPD_LOGS KERNEL_SERIES DEBIAN_SUITE FLAVOUR

# Paths inside the build root.
RPD_SRC_IN=/src                     # the repository, bind-mounted
RPD_KSRC_IN=/build/linux            # unpacked kernel source
kbuild_in() { echo "/build/kbuild-$1"; }   # kernel object tree of a flavour
# What a checkout builds for the guest (per RPD_TAG, see above).
RPD_USER_TARGET_IN=/build/user-target${RPD_TAG:+-$RPD_TAG}
module_dir_in() { echo "/build/module${RPD_TAG:+-$RPD_TAG}-$1"; }   # module copy of a flavour
initramfs_in() { echo "/build/initramfs${RPD_TAG:+-$RPD_TAG}-$1"; } # guest of a flavour (+.cpio)

# The module's sources, relative to the repository: Kbuild, the Makefile, the crate root and
# its sibling files (x.rs), and the files under a sibling's folder of parts (x/).
module_sources() {
	(
		cd "$RPD_TOP"
		echo Kbuild Makefile
		for f in *.rs; do
			echo "$f"
			if [ -d "${f%.rs}" ]; then find "${f%.rs}" -name '*.rs' | sort; fi
		done
	)
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
