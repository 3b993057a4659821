#!/usr/bin/env bash
# Install everything fusenfs needs on Debian 12, as root: the system packages (FUSE,
# NFS-Ganesha for the tests and the demo, libnfs tools and rpcbind for the benchmark,
# the headers that pyfuse3 and gssapi compile against), pyfuse3 built with fusenfs's
# patches (contrib/pyfuse3/README.md), then fusenfs itself in editable mode with its
# test tools.  Shared by the README's quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get, and Ganesha's VFS FSAL needs root)" >&2
    exit 1
fi

packages=(
    fuse3 libfuse3-dev pkg-config gcc     # FUSE and what pyfuse3 builds with
    patch                                 # applies contrib/pyfuse3/*.patch
    libkrb5-dev                           # gssapi (RPCSEC_GSS) builds against it
    krb5-kdc krb5-admin-server krb5-user  # the throw-away test realm (contrib/krb5.py)
    nfs-ganesha nfs-ganesha-vfs           # the real NFSv4.1 server for tests and demo
    libnfs-utils rpcbind fio              # benchmark peers: nfs-cp / nfs-ls, fio random I/O
    util-linux                            # setpriv (tests run commands as other users)
    iproute2 procps                       # ss, ip netns; pgrep
)
python3=${PYTHON:-python3}
include=$("$python3" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ ! -e "$include/Python.h" ]; then
    packages+=(python3-dev)               # only when this python3 lacks its headers
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${packages[@]}"

# pyfuse3 with the patches in contrib/pyfuse3/ (lock handlers, interrupts, setattr "now"
# flags, zero-copy writes): the release's sdist from the package index, patched, built
# (Cython from PyPI, in pip's isolated build environment) and installed as
# $pyfuse3_version+$pyfuse3_label.
# Skipped when the installed pyfuse3 is that build and behaves patched.  Bump the label
# whenever a patch changes.
pyfuse3_version=3.5.0
pyfuse3_label=fusenfs2
pyfuse3_installed() {
    "$python3" -c 'import importlib.metadata as m; print(m.version("pyfuse3"))' 2>/dev/null ||
        true
}
pyfuse3_patched() {
    "$python3" -c 'import sys, pyfuse3
sys.exit(not (hasattr(pyfuse3, "FileLock")
              and hasattr(pyfuse3.Operations, "enable_interrupts")
              and hasattr(pyfuse3.Operations, "enable_zero_copy_writes")
              and hasattr(pyfuse3.SetattrFields(), "update_atime_now")))' 2>/dev/null
}
if pyfuse3_patched && [ "$(pyfuse3_installed)" = "$pyfuse3_version+$pyfuse3_label" ]; then
    echo "setup.sh: pyfuse3 $pyfuse3_version+$pyfuse3_label already installed"
else
    pyfuse3_build=$(mktemp -d)
    trap 'rm -rf "$pyfuse3_build"' EXIT
    "$python3" -m pip download --disable-pip-version-check -q --no-deps \
        --no-binary :all: -d "$pyfuse3_build" "pyfuse3==$pyfuse3_version"
    tar -xzf "$pyfuse3_build/pyfuse3-$pyfuse3_version.tar.gz" -C "$pyfuse3_build"
    pyfuse3_src=$pyfuse3_build/pyfuse3-$pyfuse3_version
    for patch_file in contrib/pyfuse3/[0-9]*.patch; do
        patch -p1 --batch --forward --quiet -d "$pyfuse3_src" <"$patch_file"
    done
    # The sdist ships an __init__.c generated from the unpatched .pyx, and Cython
    # regenerates it only if a source is newer: remove it rather than trust mtimes.
    rm -f "$pyfuse3_src/src/pyfuse3/__init__.c"
    "$python3" -m pip uninstall --disable-pip-version-check -q -y pyfuse3 2>/dev/null || true
    SETUPTOOLS_SCM_PRETEND_VERSION_FOR_PYFUSE3="$pyfuse3_version+$pyfuse3_label" \
        "$python3" -m pip install --disable-pip-version-check -q "$pyfuse3_src"
    rm -rf "$pyfuse3_build"
    trap - EXIT
    if ! pyfuse3_patched; then
        echo "setup.sh: the pyfuse3 just built lacks the contrib/pyfuse3 patches" >&2
        exit 1
    fi
fi

# Keep that build: pip leaves an installed pyfuse3 that satisfies fusenfs's requirement
# alone, and the constraint turns anything that would replace it into an error.
pyfuse3_constraint=$(mktemp)
trap 'rm -f "$pyfuse3_constraint"' EXIT
echo "pyfuse3==$(pyfuse3_installed)" >"$pyfuse3_constraint"
"$python3" -m pip install --disable-pip-version-check -q -c "$pyfuse3_constraint" -e '.[test]'
rm -f "$pyfuse3_constraint"
trap - EXIT
if ! pyfuse3_patched; then
    echo "setup.sh: pip replaced the patched pyfuse3" >&2
    exit 1
fi

# The commands where mount(8) finds them.  For `mount -t fusenfs` (fstab type fusenfs)
# mount(8) runs /sbin/mount.TYPE and looks nowhere else; for `-t fuse.fusenfs` it runs
# fuse3's mount.fuse3, which runs `fusenfs` through /bin/sh with the default PATH
# (mount(8) drops the caller's).  So: /sbin/mount.fusenfs and, when pip put its
# scripts elsewhere, /usr/local/bin/fusenfs (local software, as Debian keeps it) are
# links to the installed commands.  A file there that is not a link is left alone.
scripts=$("$python3" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
link_command() { # link_command TARGET LINK
    if [ -e "$2" ] && [ ! -L "$2" ]; then
        echo "setup.sh: $2 exists and is not a link; leaving it" >&2
    elif [ "$(readlink -f "$2" 2>/dev/null || true)" != "$(readlink -f "$1")" ]; then
        ln -sfn "$1" "$2"
        echo "setup.sh: $2 -> $1"
    fi
}
link_command "$scripts/mount.fusenfs" /sbin/mount.fusenfs
case "$scripts" in
/usr/local/bin | /usr/bin | /bin) ;;
*) link_command "$scripts/fusenfs" /usr/local/bin/fusenfs ;;
esac

if [ ! -c /dev/fuse ]; then
    echo "setup.sh: warning: /dev/fuse is missing; mounting will not work here" >&2
fi
echo "setup.sh: done ($("$python3" --version), pyfuse3 $(pyfuse3_installed)," \
    "$(ganesha.nfsd -v 2>&1 | head -n1 || true))"
