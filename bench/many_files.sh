#!/usr/bin/env bash
# Many small files, side by side in one run:
#   bench/many_files.sh [COUNT] [SIZE] [ROUNDS]     e.g. bench/many_files.sh 10000 1024 3
#
# Two peers serve the same COUNT files of SIZE bytes (default 10,000 of
# 1 KiB). `p2p download --all` fetches them all from both, over plain TCP
# and over TLS (identities made by `p2p init`), every file verified and
# synced before it gets its name. The baseline copies the same folder with
# `cp -r` and then fsyncs every file (`sync FILE...`), which is what the
# downloads promise for each file. Prints the median seconds of each over
# ROUNDS rounds (default 3), the ratios, and the downloader's peak memory.
set -euo pipefail
count=${1:-10000}
size=${2:-1024}
rounds=${3:-3}
cd "$(dirname "$0")/.."
. bench/lib.sh
[ -x /usr/bin/time ] || { sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"; $sudo apt-get install -y -qq time; }

cargo build --release --quiet -p p2p-cli
P2P="$PWD/target/release/p2p"
work=${BENCH_DIR:-$PWD/target/bench-many}
rm -rf "$work"
mkdir -p "$work/src" "$work/a" "$work/b" "$work/me"
echo "writing $count files of $size bytes..."
python3 - "$work/src" "$count" "$size" <<'PY'
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    with open(os.path.join(root, f"f{i:06}.bin"), "wb") as f:
        f.write(os.urandom(size))
PY
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
serve() { # label, peer id, dir, config ("" for none), serve options... -> prints the address
    local label=$1 name=$2 dir=$3 config=$4; shift 4
    local global=(-q)
    [ -z "$config" ] || global+=(--config "$config")
    "$P2P" "${global[@]}" serve "$name" --listen 127.0.0.1:0 --dir "$dir" "$@" > "$work/$label.out" 2> "$work/$label.log" &
    pids+=($!)
    for _ in $(seq 200); do [ -s "$work/$label.out" ] && break; sleep 0.05; done
    sed -n 's/.* on \([^ ]*\) .*/\1/p' "$work/$label.out"
}
# Plain TCP peers, and TLS peers with identities.
a=$(serve a a "$work/src" "" --transport tcp)
b=$(serve b b "$work/src" "" --transport tcp)
"$P2P" -q --config "$work/a/p2p.ron" init --id a
"$P2P" -q --config "$work/b/p2p.ron" init --id b
"$P2P" -q --config "$work/me/p2p.ron" init --id me
ta=$(serve ta a "$work/src" "$work/a/p2p.ron" --uploads nobody)
tb=$(serve tb b "$work/src" "$work/b/p2p.ron" --uploads nobody)
# Hash once (the peers cache manifests).
"$P2P" -q filelist "$a" "$b" > /dev/null
"$P2P" -q --config "$work/me/p2p.ron" filelist "$ta" "$tb" > /dev/null 2>&1

timed() { # label, command...: appends "seconds maxrss_kb"
    local label=$1; shift
    rm -rf "$work/dst"
    mkdir -p "$work/dst"
    sync
    /usr/bin/time -f "%e %M" -o "$work/$label.one" "$@" > /dev/null
    [ "$(find "$work/dst" -maxdepth 1 -type f | wc -l)" = "$count" ] || { echo "$label: not every file arrived"; exit 1; }
    cat "$work/$label.one" >> "$work/$label.times"
}
run_tcp() { timed tcp "$P2P" -q download --all "$a" "$b" --output "$work/dst"; }
run_tls() { timed tls "$P2P" -q --config "$work/me/p2p.ron" download --all "$ta" "$tb" --output "$work/dst"; }
run_cp() { timed cp sh -c 'cp -r "$1"/. "$2" && find "$2" -type f -print0 | xargs -0 sync' sh "$work/src" "$work/dst"; }
rounds_of "$rounds" run_tcp run_tls run_cp

tcp_s=$(secs tcp); tls_s=$(secs tls); cp_s=$(secs cp)
peak_kb=$(cut -d' ' -f2 "$work/tcp.times" "$work/tls.times" | sort -n | tail -1)
echo
echo "$count files of $size bytes from two loopback peers, median of $rounds rounds:"
printf '  %-36s %6.2f s\n' "p2p download --all (tcp)" "$tcp_s"
printf '  %-36s %6.2f s\n' "p2p download --all (tls)" "$tls_s"
printf '  %-36s %6.2f s\n' "cp -r + fsync of every file" "$cp_s"
awk -v t="$tcp_s" -v s="$tls_s" -v c="$cp_s" 'BEGIN {
    printf "ratios (time / baseline):\n  tcp / cp+fsync %.2f x\n  tls / cp+fsync %.2f x\n", t / c, s / c }'
echo "peak memory of the downloader: $((peak_kb / 1024)) MiB"
