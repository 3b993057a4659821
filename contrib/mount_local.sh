#!/usr/bin/env bash
# Demo: serve a small directory with NFS-Ganesha on 127.0.0.1 and mount it with fusenfs.
#
#   bash contrib/mount_local.sh        set up (cleaning up a previous demo first)
#   bash contrib/mount_local.sh stop   unmount and stop Ganesha
#
# Everything lives in /tmp/fusenfs-demo: export/ (what Ganesha serves), mnt/ (the
# fusenfs mount), ganesha/ (config, log, recovery), serve.pid and serve.log.
# Run as root after contrib/setup.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO=/tmp/fusenfs-demo
EXPORT=$DEMO/export
MNT=$DEMO/mnt
WORKDIR=$DEMO/ganesha
PIDFILE=$DEMO/serve.pid
SERVE_LOG=$DEMO/serve.log
python3=${PYTHON:-python3}

die() { echo "mount_local.sh: $*" >&2; exit 1; }

is_mounted() { grep -qs " $MNT fuse" /proc/self/mounts; }

cleanup() {
    if is_mounted; then
        echo "mount_local.sh: unmounting the previous demo at $MNT"
        fusenfs umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null \
            || umount -l "$MNT" || true
    fi
    if [ -f "$PIDFILE" ]; then
        local pid
        pid=$(cat "$PIDFILE")
        if [ -n "$pid" ] && grep -qs "contrib.ganesha" "/proc/$pid/cmdline"; then
            echo "mount_local.sh: stopping the previous demo's Ganesha (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do          # at most 10 s
                [ -d "/proc/$pid" ] || break
                sleep 0.1
            done
            if [ -d "/proc/$pid" ]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$PIDFILE"
    fi
}

[ "$(id -u)" -eq 0 ] || die "run as root (Ganesha's VFS FSAL and FUSE mounts need it)"

cleanup
if [ "${1:-}" = "stop" ]; then
    echo "mount_local.sh: stopped"
    exit 0
fi
command -v fusenfs >/dev/null || die "the fusenfs command is missing: run bash contrib/setup.sh"

is_mounted && die "$MNT is still mounted; unmount it first (fusermount3 -u $MNT)"

# Fresh export with sample content, a fresh RecoveryRoot (so no grace period) and an
# empty mount point.
rm -rf "$EXPORT" "$WORKDIR" "$MNT"
mkdir -p "$EXPORT/docs/deeper" "$MNT" "$WORKDIR"
echo "Hello from NFS-Ganesha through fusenfs." > "$EXPORT/hello.txt"
printf 'line %d\n' $(seq 1 1000) > "$EXPORT/lines.txt"
cat > "$EXPORT/docs/about.txt" <<'TEXT'
fusenfs is a userspace NFSv4.1 client mounted through FUSE.
This file was served by NFS-Ganesha over loopback.
TEXT
echo "three levels down" > "$EXPORT/docs/deeper/note.txt"
head -c 1048576 /dev/urandom > "$EXPORT/random-1MiB.bin"
ln -s hello.txt "$EXPORT/link-to-hello"

# Start Ganesha in the background, detached from this terminal.
setsid nohup "$python3" -m contrib.ganesha serve --export "$EXPORT" --workdir "$WORKDIR" \
    > "$SERVE_LOG" 2>&1 < /dev/null &
echo $! > "$PIDFILE"

port=""
for _ in $(seq 1 300); do                      # at most 30 s
    port=$(sed -n 's/^ganesha: [0-9.]*:\([0-9]*\) .*/\1/p' "$SERVE_LOG" | head -n1)
    [ -n "$port" ] && break
    [ -d "/proc/$(cat "$PIDFILE")" ] || break
    sleep 0.1
done
if [ -z "$port" ]; then
    cat "$SERVE_LOG" >&2
    die "Ganesha did not start (see $SERVE_LOG)"
fi
echo "mount_local.sh: Ganesha serves $EXPORT as 127.0.0.1:/export on port $port"

# Wait for the end of the grace period (immediate with a fresh RecoveryRoot).
for _ in $(seq 1 200); do                      # at most 20 s
    grep -qs "NFS Server Now NOT IN GRACE" "$WORKDIR/ganesha.log" && break
    sleep 0.1
done

fusenfs mount 127.0.0.1:/export "$MNT" -o "port=$port" \
    || die "fusenfs mount failed (clean up: bash contrib/mount_local.sh stop)"
for _ in $(seq 1 100); do                      # at most 10 s
    is_mounted && break
    sleep 0.1
done
is_mounted || die "fusenfs did not mount $MNT (clean up: bash contrib/mount_local.sh stop)"

echo
echo "\$ ls -l $MNT"
ls -l "$MNT"
echo
echo "\$ cat $MNT/hello.txt"
cat "$MNT/hello.txt"
cat <<TEXT

Mounted.  To unmount:        fusenfs umount $MNT
To stop Ganesha as well:     kill \$(cat $PIDFILE)
Or both at once:             bash contrib/mount_local.sh stop
Ganesha's log:               $WORKDIR/ganesha.log
TEXT
