#!/usr/bin/env bash
# Loopback throughput and memory, side by side in one run:
#   bench/loopback.sh [SIZE] [ROUNDS]      e.g. bench/loopback.sh 1G 5
#
# Downloads one SIZE file (default 1G) over loopback TCP from one
# `p2p serve` (verified and synced to disk), the same file from nginx
# (sendfile) with curl writing to disk, and copies it with cp (and cp +
# fsync). Prints the median MB/s of each over ROUNDS rounds (default 3),
# the ratios, and the peak memory of the p2p client and server.
# Machines here are noisy: trust the ratios of one run, not the absolutes.
set -euo pipefail
size=${1:-1G}
rounds=${2:-3}
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/bin/time ] || missing+=(time)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet -p p2p-cli
P2P="$PWD/target/release/p2p"
work=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$work/src" "$work/dst" "$work/nginx/tmp"
src="$work/src/big.bin"
bytes=$(numfmt --from=iec "$size")
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != "$bytes" ]; then
    echo "writing a $size test file..."
    head -c "$bytes" /dev/urandom > "$src"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    server { listen 127.0.0.1:$nginx_port; root $work/src; }
}
CONF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
"$P2P" -q serve bench --listen 127.0.0.1:0 --dir "$work/src" > "$work/serve.out" 2> "$work/serve.log" &
serve_pid=$!
trap 'kill $serve_pid $nginx_pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -s "$work/serve.out" ] && break; sleep 0.05; done
addr=$(sed -n 's/.* on \([^ ]*\) .*/\1/p' "$work/serve.out")
# Hash once (the server caches manifests), and warm both servers.
"$P2P" -q filelist "$addr" > /dev/null
curl -s -o /dev/null "http://127.0.0.1:$nginx_port/big.bin"

timed() { # label, command...: appends "seconds maxrss_kb" to $work/$label.times
    local label=$1; shift
    rm -f "$work"/dst/*
    sync
    /usr/bin/time -f "%e %M" -o "$work/$label.one" "$@" > /dev/null
    cat "$work/$label.one" >> "$work/$label.times"
}
rm -f "$work"/*.times
for r in $(seq "$rounds"); do
    timed p2p "$P2P" -q download big.bin "$addr" --output "$work/dst"
    cmp -s "$src" "$work/dst/big.bin" || { echo "p2p download differs from the source!"; exit 1; }
    timed nginx_curl curl -s -o "$work/dst/big.bin" "http://127.0.0.1:$nginx_port/big.bin"
    timed cp cp "$src" "$work/dst/big.bin"
    timed cp_fsync sh -c 'cp "$1" "$2" && sync "$2"' sh "$src" "$work/dst/big.bin"
    echo "round $r done"
done
rm -f "$work"/dst/*

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { cut -d' ' -f1 "$work/$1.times" | median; }
mbs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
p2p_s=$(secs p2p); curl_s=$(secs nginx_curl); cp_s=$(secs cp); cpf_s=$(secs cp_fsync)
client_kb=$(cut -d' ' -f2 "$work/p2p.times" | sort -n | tail -1)
server_kb=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")

echo
echo "loopback, $size file, median of $rounds rounds:"
printf '  %-28s %8s MB/s\n' "p2p download (verify+fsync)" "$(mbs "$p2p_s")"
printf '  %-28s %8s MB/s\n' "nginx sendfile -> curl" "$(mbs "$curl_s")"
printf '  %-28s %8s MB/s\n' "cp" "$(mbs "$cp_s")"
printf '  %-28s %8s MB/s\n' "cp + fsync" "$(mbs "$cpf_s")"
echo "ratios:"
awk -v p="$p2p_s" -v c="$curl_s" -v k="$cp_s" -v f="$cpf_s" 'BEGIN {
    printf "  p2p / nginx->curl  %.2f x\n", c / p
    printf "  p2p / cp           %.2f x\n", k / p
    printf "  p2p / cp+fsync     %.2f x\n", f / p }'
echo "peak memory: p2p download $((client_kb / 1024)) MiB, p2p serve $((server_kb / 1024)) MiB"
