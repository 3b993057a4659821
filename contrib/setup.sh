#!/usr/bin/env bash
# Install everything fusenfs needs on Debian 12, as root: the system packages (FUSE,
# NFS-Ganesha for the tests and the demo, libnfs tools and rpcbind for the benchmark,
# the headers that pyfuse3 and gssapi compile against), then fusenfs itself in editable
# mode with its test tools.  Shared by the README's quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get, and Ganesha's VFS FSAL needs root)" >&2
    exit 1
fi

packages=(
    fuse3 libfuse3-dev pkg-config gcc     # FUSE and what pyfuse3 builds with
    libkrb5-dev                           # gssapi (RPCSEC_GSS) builds against it
    nfs-ganesha nfs-ganesha-vfs           # the real NFSv4.1 server for tests and demo
    libnfs-utils rpcbind                  # nfs-cp / nfs-ls peers for the benchmark
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

"$python3" -m pip install --disable-pip-version-check -q -e '.[test]'

if [ ! -c /dev/fuse ]; then
    echo "setup.sh: warning: /dev/fuse is missing; mounting will not work here" >&2
fi
echo "setup.sh: done ($("$python3" --version), $(ganesha.nfsd -v 2>&1 | head -n1 || true))"
