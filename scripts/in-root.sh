#!/usr/bin/env bash
# in-root.sh CMD...: run CMD inside the build root ($RPD_ROOT; RPD_ROOT=$RPD_DEBIAN_ROOT
# for the root that builds for Debian's own kernels).
#
# The chroot runs in a private mount namespace of its own (unshare --mount):
# its /proc, its minimal /dev (a small tmpfs with a few device nodes, never the
# host's /dev) and the bind mount of the repository at /src exist only in that
# namespace and vanish with its last process, also on Ctrl-C or kill -9. So
# nothing stays mounted in the cache, and deleting the cache can never reach a
# host device node.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
[ -x "$RPD_ROOT/usr/bin/env" ] ||
	die "no build root at $RPD_ROOT" "Create it with: scripts/buildroot.sh (or 'make buildroot');" \
		"the Debian kernels' root ($RPD_DEBIAN_ROOT) with scripts/debian-kernel.sh."

# HTTPS from the root (cargo) trusts what the host trusts: the host's CA bundle.
host_ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
if [ -r "$host_ca" ]; then
	mkdir -p "$RPD_ROOT/etc/ssl/certs"
	cmp -s "$host_ca" "$RPD_ROOT/etc/ssl/certs/rpd-host-ca.crt" ||
		cp "$host_ca" "$RPD_ROOT/etc/ssl/certs/rpd-host-ca.crt"
fi

# Runs inside the new mount namespace.
# shellcheck disable=SC2016
inner='
set -eu
r=$RPD_ROOT
mount -t tmpfs -o mode=0755,size=4m rpd-dev "$r/dev"
mknod -m 0666 "$r/dev/null" c 1 3
mknod -m 0666 "$r/dev/zero" c 1 5
mknod -m 0666 "$r/dev/full" c 1 7
mknod -m 0666 "$r/dev/random" c 1 8
mknod -m 0666 "$r/dev/urandom" c 1 9
mknod -m 0666 "$r/dev/tty" c 5 0
if [ -c /dev/kvm ]; then mknod -m 0666 "$r/dev/kvm" c 10 232; fi
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t proc proc "$r/proc"
mkdir -p "$r/src"
mount --bind "$RPD_TOP" "$r/src"
exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
	PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin \
	CARGO_HOME=/build/cargo CARGO_HTTP_CAINFO=/etc/ssl/certs/rpd-host-ca.crt \
	SSL_CERT_FILE=/etc/ssl/certs/rpd-host-ca.crt RPD_IN_ROOT=1 KERNEL_SERIES="$KERNEL_SERIES" \
	CI="${CI:-}" "$@"
'
exec unshare --mount --propagation private --fork --kill-child -- bash -c "$inner" in-root "$@"
