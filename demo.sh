#!/usr/bin/env bash
# A three-peer demo on this machine, no configuration needed:
#   ./demo.sh            (KEEP=1 ./demo.sh keeps the demo folder)
# Builds p2p, gives an index, three peers and "me" an identity (`p2p
# init`), starts them on free loopback ports in a temporary folder laid out
# like the original tool (peer_settings.txt beside one folder per peer,
# each line pinning that peer's certificate), then lists, uploads and
# downloads between them over mutually authenticated TLS, first naming
# the peers, then through the index.
set -euo pipefail

cd "$(dirname "$0")"
echo "building p2p (release)..."
cargo build --release --quiet -p p2p-cli
P2P="$PWD/target/release/p2p"

demo=$(mktemp -d "${TMPDIR:-/tmp}/p2p-demo.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "demo folder kept: $demo"; else rm -rf "$demo"; fi
}
trap cleanup EXIT

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

for id in peer1 peer2 peer3 me; do mkdir -p "$demo/$id/served_files"; done
echo "hello from peer1" > "$demo/peer1/served_files/notes.txt"
head -c 64000000 /dev/urandom > "$demo/peer1/served_files/video.bin"
cp "$demo/peer1/served_files/video.bin" "$demo/peer2/served_files/video.bin"
echo "my report" > "$demo/me/served_files/report.txt"
# An identity per folder: a key, a self-signed certificate, p2p.ron.
mkdir -p "$demo/index"
for id in index peer1 peer2 peer3 me; do (cd "$demo/$id" && "$P2P" -q init --id "$id"); done
# Each peer picks a free port; the peer list is written with what they got
# and the fingerprint `p2p id` prints for each. "me" is listed too (it
# serves nothing here) so that the peers know it and accept its uploads.
fingerprint() { (cd "$demo/$1" && "$P2P" --json id | sed 's/.*"fingerprint":"\([0-9a-f]*\)".*/\1/'); }
echo "me 127.0.0.1 9 $(fingerprint me)" > "$demo/peer_settings.txt"
listed() { # id: waits for its first line, then lists it in the peer list
    for _ in $(seq 100); do [ -s "$demo/$1.out" ] && break; sleep 0.05; done
    addr=$(sed -n 's/.* on \([0-9.]*\):\([0-9]*\) .*/\1 \2/p' "$demo/$1.out")
    [ -n "$addr" ] || { echo "$1 did not start:"; cat "$demo/$1.log"; exit 1; }
    echo "$1 $addr $(fingerprint "$1")" >> "$demo/peer_settings.txt"
}
# The index first: the peers announce their folders to it.
(cd "$demo/index" && exec "$P2P" tracker --listen 127.0.0.1:0 >"$demo/index.out" 2>"$demo/index.log") &
pids+=("$!")
listed index
for id in peer1 peer2 peer3; do
    (cd "$demo/$id" && exec "$P2P" serve "$id" --listen 127.0.0.1:0 --tracker index >"$demo/$id.out" 2>"$demo/$id.log") &
    pids+=("$!")
done
for id in peer1 peer2 peer3; do listed "$id"; done
# "me" asks the index when it names no peer.
sed -i 's/^(/(\n    tracker: Some("index"),/' "$demo/me/p2p.ron"

cd "$demo/me"

show "$P2P" id
show cat ../peer_settings.txt
show "$P2P" filelist peer1 peer2 peer3
show "$P2P" upload report.txt peer2 peer3
show "$P2P" download video.bin peer1 peer2
show "$P2P" --json filelist peer3
show "$P2P" download missing.txt peer1 peer3 || echo "(exit status $?: failures are one line each)"

printf '\n\033[1mThe index: no peer named\033[0m\n'
echo "dropped into peer3's folder" > "$demo/peer3/served_files/new.txt"
printf '\n(new.txt dropped into peer3'"'"'s folder; its folder watcher tells the index)\n'
for _ in $(seq 100); do "$P2P" -q filelist | grep -q new.txt && break; sleep 0.05; done
show "$P2P" peers
show "$P2P" filelist
show "$P2P" download new.txt
printf '\nlogs (one line per transfer, and the index'"'"'s joins):\n'
for id in index peer1 peer2 peer3; do sed "s/^/$id: /" "$demo/$id.log"; done
