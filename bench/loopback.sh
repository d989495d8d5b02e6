#!/usr/bin/env bash
# Loopback throughput and memory, side by side in one run:
#   bench/loopback.sh [SIZE] [ROUNDS]      e.g. bench/loopback.sh 1G 5
#
# Downloads one SIZE file (default 1G) over loopback from one `p2p serve`
# over plain TCP, from two at once, and from one over TLS (verified and
# synced to disk),
# the same file from nginx over HTTP (sendfile) and over HTTPS with curl
# writing to disk, and copies it with cp (and cp + fsync). Prints the
# median MB/s of each over ROUNDS rounds (default 3), the ratios, and the
# peak memory of the p2p clients and servers.
# Machines here are noisy: trust the ratios of one run, not the absolutes.
# Run it as root for steadier numbers (it then drops the page cache before
# each download).
set -euo pipefail
size=${1:-1G}
rounds=${2:-3}
cd "$(dirname "$0")/.."
. bench/lib.sh

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/bin/time ] || missing+=(time)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet -p p2p-cli
P2P="$PWD/target/release/p2p"
work=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$work/src" "$work/dst" "$work/nginx/tmp" "$work/tls-peer" "$work/tls-client"
src="$work/src/big.bin"
bytes=$(numfmt --from=iec "$size")
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != "$bytes" ]; then
    echo "writing a $size test file..."
    head -c "$bytes" /dev/urandom > "$src"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
nginx_tls_port=$(free_port)
# nginx HTTPS: TLS 1.3 with an ECDSA P-256 certificate, as p2p's identities.
[ -f "$work/nginx/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=127.0.0.1 -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
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
    server {
        listen 127.0.0.1:$nginx_tls_port ssl;
        ssl_certificate $work/nginx/cert.pem;
        ssl_certificate_key $work/nginx/key.pem;
        ssl_protocols TLSv1.3;
        root $work/src;
    }
}
CONF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
serve_pid=""; serve2_pid=""; serve_tls_pid=""
trap 'kill $serve_pid $serve2_pid $serve_tls_pid $nginx_pid 2>/dev/null || true' EXIT
"$P2P" -q serve bench --transport tcp --listen 127.0.0.1:0 --dir "$work/src" > "$work/serve.out" 2> "$work/serve.log" &
serve_pid=$!
# A second peer with the same file, for the download from two at once.
"$P2P" -q serve bench2 --transport tcp --listen 127.0.0.1:0 --dir "$work/src" > "$work/serve2.out" 2> "$work/serve2.log" &
serve2_pid=$!
# The TLS peer and client: identities made by `p2p init`, as a user would.
[ -f "$work/tls-peer/p2p.ron" ] || "$P2P" -q --config "$work/tls-peer/p2p.ron" init --id bench
[ -f "$work/tls-client/p2p.ron" ] || "$P2P" -q --config "$work/tls-client/p2p.ron" init --id client
rm -f "$work/tls-client/known_peers.txt"
"$P2P" -q --config "$work/tls-peer/p2p.ron" serve --uploads nobody --listen 127.0.0.1:0 --dir "$work/src" \
    > "$work/serve-tls.out" 2> "$work/serve-tls.log" &
serve_tls_pid=$!
for _ in $(seq 200); do [ -s "$work/serve.out" ] && [ -s "$work/serve2.out" ] && [ -s "$work/serve-tls.out" ] && break; sleep 0.05; done
addr=$(sed -n 's/.* on \([^ ]*\) .*/\1/p' "$work/serve.out")
addr2=$(sed -n 's/.* on \([^ ]*\) .*/\1/p' "$work/serve2.out")
tls_addr=$(sed -n 's/.* on \([^ ]*\) .*/\1/p' "$work/serve-tls.out")
P2P_TLS=("$P2P" -q --config "$work/tls-client/p2p.ron")
# Hash once (the servers cache manifests), and warm every server.
"$P2P" -q filelist "$addr" "$addr2" > /dev/null
"${P2P_TLS[@]}" filelist "$tls_addr" > /dev/null 2>&1
curl -s -o /dev/null "http://127.0.0.1:$nginx_port/big.bin"
curl -sk -o /dev/null "https://127.0.0.1:$nginx_tls_port/big.bin"

timed() { # label, command...: appends "seconds maxrss_kb" to $work/$label.times
    local label=$1; shift
    rm -f "$work"/dst/*
    sync
    # The same start for everyone: with the page cache full of other files,
    # a writer pays for reclaiming it (seen here: 3x the system time), and
    # which contender pays is luck. As root, drop the cache and read the
    # source back in, as the servers would have it.
    if [ -w /proc/sys/vm/drop_caches ]; then
        echo 1 > /proc/sys/vm/drop_caches
        cat "$src" > /dev/null
    fi
    /usr/bin/time -f "%e %M" -o "$work/$label.one" "$@" > /dev/null
    cat "$work/$label.one" >> "$work/$label.times"
}
run_p2p() {
    timed p2p "$P2P" -q download big.bin "$addr" --output "$work/dst"
    cmp -s "$src" "$work/dst/big.bin" || { echo "p2p download differs from the source!"; exit 1; }
}
run_p2p_two() {
    timed p2p_two "$P2P" -q download big.bin "$addr" "$addr2" --output "$work/dst"
    cmp -s "$src" "$work/dst/big.bin" || { echo "p2p download from two differs from the source!"; exit 1; }
}
run_p2p_tls() {
    timed p2p_tls "${P2P_TLS[@]}" download big.bin "$tls_addr" --output "$work/dst"
    cmp -s "$src" "$work/dst/big.bin" || { echo "p2p TLS download differs from the source!"; exit 1; }
}
run_nginx_curl() { timed nginx_curl curl -s -o "$work/dst/big.bin" "http://127.0.0.1:$nginx_port/big.bin"; }
run_nginx_https_curl() { timed nginx_https_curl curl -sk -o "$work/dst/big.bin" "https://127.0.0.1:$nginx_tls_port/big.bin"; }
run_cp() { timed cp cp "$src" "$work/dst/big.bin"; }
run_cp_fsync() { timed cp_fsync sh -c 'cp "$1" "$2" && sync "$2"' sh "$src" "$work/dst/big.bin"; }
rounds_of "$rounds" run_p2p run_p2p_two run_p2p_tls run_nginx_curl run_nginx_https_curl run_cp run_cp_fsync
rm -f "$work"/dst/*

mbs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
p2p_s=$(secs p2p); two_s=$(secs p2p_two); tls_s=$(secs p2p_tls); curl_s=$(secs nginx_curl); https_s=$(secs nginx_https_curl)
cp_s=$(secs cp); cpf_s=$(secs cp_fsync)
client_kb=$(cut -d' ' -f2 "$work/p2p.times" "$work/p2p_two.times" "$work/p2p_tls.times" | sort -n | tail -1)
server_kb=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status" "/proc/$serve2_pid/status" "/proc/$serve_tls_pid/status" | sort -n | tail -1)

echo
echo "loopback, $size file, median of $rounds rounds:"
printf '  %-28s %8s MB/s\n' "p2p download (verify+fsync)" "$(mbs "$p2p_s")"
printf '  %-28s %8s MB/s\n' "p2p from two peers at once" "$(mbs "$two_s")"
printf '  %-28s %8s MB/s\n' "p2p download over TLS" "$(mbs "$tls_s")"
printf '  %-28s %8s MB/s\n' "nginx sendfile -> curl" "$(mbs "$curl_s")"
printf '  %-28s %8s MB/s\n' "nginx HTTPS -> curl" "$(mbs "$https_s")"
printf '  %-28s %8s MB/s\n' "cp" "$(mbs "$cp_s")"
printf '  %-28s %8s MB/s\n' "cp + fsync" "$(mbs "$cpf_s")"
echo "ratios:"
awk -v p="$p2p_s" -v w="$two_s" -v t="$tls_s" -v h="$https_s" -v c="$curl_s" -v k="$cp_s" -v f="$cpf_s" 'BEGIN {
    printf "  p2p TLS / p2p TCP          %.2f x  (target 0.6)\n", p / t
    printf "  p2p TLS / nginx HTTPS->curl %.2f x (target 1.0)\n", h / t
    printf "  p2p / nginx->curl  %.2f x  (target 1.0)\n", c / p
    printf "  p2p / cp           %.2f x\n", k / p
    printf "  p2p / cp+fsync     %.2f x  (target 0.8)\n", f / p
    printf "  two peers / one    %.2f x  (target 1.0: not slower)\n", p / w }'
echo "peak memory (the largest of any run): p2p download $((client_kb / 1024)) MiB, p2p serve $((server_kb / 1024)) MiB (target < 32 MiB each)"
