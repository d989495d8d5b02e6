#!/usr/bin/env bash
# A flash crowd on an emulated network, with real processes, side by side
# with BitTorrent:
#   sudo bench/swarm_netns.sh                      # N = 10, 20, 30; 32 MiB; p2p, libtorrent, aria2
#   sudo bench/swarm_netns.sh --n 3 --size 8       # a quick look (under a minute)
# The default run takes about 10 minutes (each run at most 140 s plus its
# setup, so never much more than 25).
#
# One seed holds a random file of F bytes; N leechers start fetching it at
# the same moment, each a real process in a network namespace of its own.
# For each system and N it prints the first, median and last finish time
# (seconds from the common start), T/T_min, and what the seed uploaded in
# copies of the file, then a markdown table of every run. Every leecher's
# file is checked against the seed's (b3sum, else sha256sum).
#
#   T_min = max(F/u_seed, F/d_min, N·F/(u_seed + N·u_leech))   (Kumar & Ross)
#
# from the nominal rates, and "T_min meas." from the same formula with the
# goodputs iperf3 measured (tbf counts whole frames, so TCP payload peaks
# near 95 % of the nominal rate: a perfect system is about 1.05 x T_min).
#
# The network (all of it inside `unshare --net --mount --pid`, so nothing
# reaches or changes this machine's own network, and every process dies with
# it; only addresses of 198.18.0.0/15 are used):
#   - a namespace "hub" with a bridge; every other namespace is one veth
#     pair away from it; /run/netns is a private tmpfs.
#   - "trk" 198.18.0.1: the index (p2p tracker, or opentracker), unshaped
#     and undelayed.
#   - "p0" 198.18.0.10: the seed; "p1".."pN" 198.18.0.11..: the leechers.
#   - each peer: upload --up Mbit/s (tbf on its own veth), download --down
#     Mbit/s (tbf on the hub's end), and --delay-ms one way between two
#     peers (RTT twice that). This kernel has no netem and loads no modules:
#     in the hub, br_netfilter hands every bridged packet between peers to
#     iptables -j NFQUEUE, and swarm_netns/nfdelay.c (built into
#     ~/.cache/p2p-bench/) gives it its verdict --delay-ms later.
#   - TSO/GSO/GRO off on every veth (the shapers and the delay see single
#     packets); TCP congestion control --cc on every route (a namespace may
#     only default to the host's allowed ones, a route may name any).
# Before the runs, ping and iperf3 (p0 -> p1 upload-bound, trk -> p1
# download-bound) check the links and their numbers are printed.
#
# The systems (TCP only, each with a fresh index):
#   - p2p: `p2p tracker` on trk; the seed `p2p serve seed --listen
#     198.18.0.10:5000 --tracker ...`; each leecher, at the common start,
#     `p2p --json download FILE --tracker ... --listen ITS_IP:0` (it swarms
#     while it downloads and lingers to seed). Finish = the moment its JSON
#     result line appears (the file is then in place, verified and synced).
#     Seed payload = the leechers' JSON sources[].bytes from the seed.
#     Up to 31 peers share this machine's cores, so each runs with
#     `--threads 1` (--p2p-threads; libtorrent's peers are given few
#     threads alike): with its default of one thread per core every peer
#     wakes threads across cores, and on 2 cores the N = 20 crowd took
#     1.79 x T_min instead of 1.35 x.
#   - libtorrent (python3-libtorrent, swarm_netns/lt_peer.py): opentracker
#     (Debian's is whitelist-only: the infohash is whitelisted), mktorrent
#     256 KiB pieces, DHT/LSD/UPnP/NAT-PMP/uTP off, 2 disk threads and 1
#     hashing thread. Finish = the torrent's finished alert. Seed payload
#     = total_payload_upload.
#   - aria2c: same tracker and torrent, DHT/LPD off. Finish = its
#     --on-bt-download-complete hook. Seed payload = uploadLength (RPC).
#   libtorrent and aria2 leechers keep seeding until the last one
#   finishes; p2p's serve as `download` does by default (until no peer has
#   fetched from them for 3 s).
#   "wire" = bytes the seed's veth carried from the start to the last
#   finish (frames, headers included) / F.
#   Common start: every leecher is started first and blocks on a shared
#   flock of a GO file that the script holds exclusively; it releases it
#   about 0.5 s after the last leecher is ready.
#
# Options:
#   --n LIST        leecher counts (default 10,20,30)
#   --size MIB      file size in MiB (default 32)
#   --systems LIST  of p2p,libtorrent,aria2 (default all three)
#   --reps K        runs of each system at each N (default 1; the order of
#                   the systems rotates between reps)
#   --up MBIT --down MBIT --delay-ms MS   per-peer links (20, 100, 15; whole Mbit/s)
#   --cc NAME       TCP congestion control (default cubic)
#   --timeout SECS  per run, from the common start (default 60 + 6 x T_min:
#                   140 s for 32 MiB); leechers not done by then count as
#                   not finished
#   --p2p-threads N p2p's --threads (default 1; 0: p2p's own default)
#   --p2p PATH      the binary (default target/release/p2p of the project
#                   root, ../ of this script; it is not rebuilt)
#   --out DIR       results: RESULTS.md, results.json, swarm.log, iperf3 and
#                   one folder per run with every process's log (default: a
#                   new folder under /tmp, printed)
#   --keep          keep the peers' files (under OUT/work)
# Run as root. Missing packages are installed with apt-get. The machine's
# other work shares its cores: each run reports how busy they were.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
helpers=$here/swarm_netns
root=$(cd "$here/.." && pwd)

n_list=10,20,30 size_mib=32 systems=p2p,libtorrent,aria2 reps=1 up=20 down=100 delay_ms=15 cc=cubic
timeout=auto p2p=$root/target/release/p2p p2p_threads_n=1 out="" keep=0 inside=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --n) n_list=$2; shift ;;
        --size) size_mib=$2; shift ;;
        --systems) systems=$2; shift ;;
        --reps) reps=$2; shift ;;
        --up) up=$2; shift ;;
        --down) down=$2; shift ;;
        --delay-ms) delay_ms=$2; shift ;;
        --cc) cc=$2; shift ;;
        --timeout) timeout=$2; shift ;;
        --p2p) p2p=$2; shift ;;
        --p2p-threads) p2p_threads_n=$2; shift ;;
        --out) out=$2; shift ;;
        --keep) keep=1 ;;
        --inside) inside=1 ;;
        -h|--help) usage ;;
        *) echo "swarm_netns: unknown option $1" >&2; usage 2 >&2 ;;
    esac
    shift
done
PY=/usr/bin/python3 # Debian's, which has libtorrent
TRK=198.18.0.1
peer_ip() { echo "198.18.0.$((10 + $1))"; }

# ---------------------------------------------------------------- outside
if [ "$inside" = 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "swarm_netns: run as root (it creates network namespaces)" >&2; exit 2; }
    missing=()
    $PY -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
    for c in opentracker:opentracker mktorrent:mktorrent aria2c:aria2 iperf3:iperf3 iptables:iptables \
             ping:iputils-ping ethtool:ethtool tc:iproute2 gcc:gcc curl:curl flock:util-linux; do
        command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
    done
    [ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || missing+=(libnetfilter-queue-dev)
    [ -f /usr/include/libmnl/libmnl.h ] || missing+=(libmnl-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "swarm_netns: installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    [ -x "$p2p" ] || { echo "swarm_netns: no p2p binary at $p2p (cargo build --release, or --p2p PATH)" >&2; exit 1; }
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/p2p-bench
    mkdir -p "$cache"
    if [ ! -x "$cache/nfdelay" ] || [ "$helpers/nfdelay.c" -nt "$cache/nfdelay" ]; then
        gcc -O2 -Wall -o "$cache/nfdelay" "$helpers/nfdelay.c" -lnetfilter_queue -lmnl
    fi
    [ -n "$out" ] || out=$(mktemp -d /tmp/swarm_netns.XXXXXX)
    mkdir -p "$out"
    export SWARM_P2P=$(realpath "$p2p") SWARM_OUT=$(realpath "$out") SWARM_NFDELAY=$cache/nfdelay
    export PATH="$PATH:$HOME/.cargo/bin"
    echo "swarm_netns: results in $SWARM_OUT"
    # A private network, mount and pid namespace: when it ends, so does
    # every process and namespace made in it.
    args=(--inside --n "$n_list" --size "$size_mib" --systems "$systems" --reps "$reps" --up "$up" --down "$down"
          --delay-ms "$delay_ms" --cc "$cc" --timeout "$timeout" --p2p-threads "$p2p_threads_n")
    [ "$keep" = 0 ] || args+=(--keep)
    exec unshare --net --mount --propagation private --pid --fork --kill-child --mount-proc -- bash "$0" "${args[@]}"
fi

# ----------------------------------------------------------------- inside
out=$SWARM_OUT p2p=$SWARM_P2P
p2p_threads=()
[ "$p2p_threads_n" = 0 ] || p2p_threads=(--threads "$p2p_threads_n")
work=$out/work
mkdir -p "$work" "$out/runs"
began=$SECONDS
log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$out/swarm.log"; }
die() { log "error: $*"; exit 1; }

groups=() infra=()
# spawn NS DIR LOG CMD...: CMD in namespace NS and folder DIR, in a process
# group of its own (its id is the pid), output to LOG.
spawn() {
    local ns=$1 dir=$2 log=$3; shift 3
    setsid ip netns exec "$ns" env -C "$dir" "$@" > "$log" 2>&1 < /dev/null &
    groups+=($!)
}
# Stop the process groups of this run: TERM, then KILL after 5 s.
stop_groups() {
    local g i
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for i in $(seq 50); do
        for g in "${groups[@]}"; do kill -0 -- "-$g" 2>/dev/null && break; g=""; done
        [ -z "${g:-}" ] && break
        sleep 0.1
    done
    for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    [ ${#groups[@]} = 0 ] || wait "${groups[@]}" 2>/dev/null || true # (a bare wait would wait for nfdelay too)
    groups=()
}
reported=0
cleanup() {
    stop_groups
    for g in "${infra[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    [ ${#infra[@]} = 0 ] || { wait "${infra[@]}" 2>/dev/null || true; log "$(tail -1 "$out/nfdelay.log")"; }
    # Stopped early: the table of the runs that finished.
    if [ "$reported" = 0 ] && compgen -G "$out/runs/*/result.json" > /dev/null; then
        $PY "$helpers/report.py" final "$out" | tee -a "$out/swarm.log"
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
# wait_for WHAT SECS CMD...: until CMD succeeds, or fail after SECS.
wait_for() {
    local what=$1 end=$((SECONDS + $2)); shift 2
    until "$@" 2>/dev/null; do
        [ $SECONDS -lt $end ] || { log "timed out waiting for $what"; return 1; }
        sleep 0.2
    done
}
listening() { ip netns exec "$1" ss -ltnH "sport = :$2" | grep -q .; }
hash_of() {
    if command -v b3sum >/dev/null; then b3sum --no-names "$1"; else sha256sum "$1" | cut -d' ' -f1; fi
}
# Bytes sent and received by each namespace: rx and tx of its veth's hub end.
counters() {
    ip netns exec hub bash -c 'cd /sys/class/net && for d in h-*; do
        echo "${d#h-} $(<"$d/statistics/rx_bytes") $(<"$d/statistics/tx_bytes")"; done' > "$1"
}

# Every 0.5 s while FLAG exists: the time, the machine's CPU line and what
# every namespace sent so far ("NS:TX_BYTES"), one line each, to FILE: the
# uplinks' use over time (report.py timeline).
sampler() { # FILE FLAG
    touch "$2"
    ip netns exec hub bash -c 'cd /sys/class/net; while [ -e "$1" ]; do
        l="$EPOCHREALTIME $(head -1 /proc/stat)"
        for d in h-*; do l+=" ${d#h-}:$(<"$d/statistics/rx_bytes")"; done
        echo "$l"; sleep 0.5; done' sampler "$2" > "$1"
}

# ---- the network
add_ns() { # NS IP UP_MBIT DOWN_MBIT (0: unshaped)
    local ns=$1 ip=$2 u=$3 d=$4
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
    ip -n hub link add "h-$ns" type veth peer name eth0 netns "$ns"
    ip -n "$ns" addr add "$ip/15" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace 198.18.0.0/15 dev eth0 proto kernel scope link src "$ip" congctl "$cc"
    ip -n hub link set "h-$ns" master br0 up
    ip netns exec "$ns" ethtool -K eth0 tso off gso off gro off
    ip netns exec hub ethtool -K "h-$ns" tso off gso off gro off
    # burst: 4 ms of the rate, at least 16 KiB; queue: 50 ms.
    [ "$u" = 0 ] || tc -n "$ns" qdisc add dev eth0 root tbf rate "${u}mbit" \
        burst $((u * 500 > 16384 ? u * 500 : 16384)) latency 50ms
    [ "$d" = 0 ] || tc -n hub qdisc add dev "h-$ns" root tbf rate "${d}mbit" \
        burst $((d * 500 > 16384 ? d * 500 : 16384)) latency 50ms
}
net_up() { # NMAX
    mkdir -p /run/netns
    mount -t tmpfs swarm-netns /run/netns
    ip link set lo up
    ip netns add hub
    ip -n hub link set lo up
    ip -n hub link add br0 type bridge
    ip -n hub link set br0 up
    ip netns exec hub sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv6.conf.all.disable_ipv6=1 ||
        die "no br_netfilter in this kernel (net.bridge.bridge-nf-call-iptables)"
    add_ns trk "$TRK" 0 0
    local i
    for i in $(seq 0 "$1"); do add_ns "p$i" "$(peer_ip "$i")" "$up" "$down"; done
    setsid ip netns exec hub "$SWARM_NFDELAY" 0 "$delay_ms" > "$out/nfdelay.log" 2>&1 < /dev/null &
    infra+=($!)
    sleep 0.3
    kill -0 "${infra[0]}" 2>/dev/null || die "nfdelay did not start: $(cat "$out/nfdelay.log")"
    local ipt=(ip netns exec hub iptables -w)
    "${ipt[@]}" -A FORWARD -s "$TRK" -j ACCEPT
    "${ipt[@]}" -A FORWARD -d "$TRK" -j ACCEPT
    "${ipt[@]}" -A FORWARD -j NFQUEUE --queue-num 0
    log "network: hub + trk + p0..p$1; up $up Mbit/s, down $down Mbit/s, $delay_ms ms one way between peers, TCP $cc"
}
iperf() { # CLIENT_NS SERVER_NS SERVER_IP SECS LABEL -> "MBIT RTT RETRANS CC"
    local g
    setsid ip netns exec "$2" iperf3 -s -1 -B "$3" > "$out/iperf3-$5.server.log" 2>&1 < /dev/null &
    g=$!
    wait_for "iperf3 -s" 10 listening "$2" 5201 || return 1
    ip netns exec "$1" iperf3 -c "$3" -t "$4" -J > "$out/iperf3-$5.json" || { kill -- "-$g"; return 1; }
    wait "$g" || true
    $PY "$helpers/report.py" iperf "$out/iperf3-$5.json"
}
check_links() {
    log "checking the links: ping p0 -> p1, iperf3 p0 -> p1 (upload-bound), trk -> p1 (download-bound)"
    local rtt u d
    rtt=$(ip netns exec p0 ping -q -c 10 -i 0.2 "$(peer_ip 1)" | sed -n 's|^rtt [^=]*= \([^/]*\)/\([^/]*\)/.*|\1 \2|p' || true)
    [ -n "$rtt" ] || die "ping p0 -> p1 failed"
    u=$(iperf p0 p1 "$(peer_ip 1)" 6 up) || die "iperf3 p0 -> p1 failed"
    d=$(iperf trk p1 "$(peer_ip 1)" 4 down) || die "iperf3 trk -> p1 failed"
    set -- $rtt $u $d
    log "  ping RTT min/avg $1/$2 ms (nominal $((2 * delay_ms)) ms)"
    log "  iperf3 upload-bound:   $3 Mbit/s (nominal $up), TCP RTT mean $4 ms, $5 retransmits, $6"
    log "  iperf3 download-bound: $7 Mbit/s (nominal $down)"
    printf '%s\n' "up=$up" "down=$down" "delay_ms=$delay_ms" "cc=$cc" "ping_min_ms=$1" "ping_avg_ms=$2" \
        "up_meas=$3" "up_tcp_rtt_ms=$4" "up_retransmits=$5" "down_meas=$7" > "$out/links"
    up_meas=$3 down_meas=$7
}

# ---- the leechers' side (exported: they run under ip netns exec)
# leecher OD NAME GO CMD...: say ready, wait for the common start, run CMD.
leecher() {
    local od=$1 name=$2 go=$3; shift 3
    : > "$od/$name.ready"
    flock -s "$go" true
    echo "$EPOCHREALTIME" > "$od/$name.start"
    mark_exit "$od" "$name" "$@"
}
# mark_exit OD NAME CMD...: run CMD, then write its status and the time to NAME.exit.
mark_exit() {
    local od=$1 name=$2 rc=0; shift 2
    "$@" || rc=$?
    echo "$rc $EPOCHREALTIME" > "$od/$name.exit"
}
# p2p_json OD NAME CMD...: CMD's stdout lines, each with the time it came, to
# NAME.out; the first successful result also to NAME.done.
p2p_json() {
    local od=$1 name=$2 line; shift 2
    "$@" 2> "$od/$name.log" | while IFS= read -r line; do
        echo "$EPOCHREALTIME $line" >> "$od/$name.out"
        case $line in *'"status":"downloaded"'*)
            [ -e "$od/$name.done" ] || echo "$EPOCHREALTIME" > "$od/$name.done" ;;
        esac
    done
    return "${PIPESTATUS[0]}"
}
export -f leecher mark_exit p2p_json

aria2_opts=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --disable-ipv6=true --listen-port=6881
    --seed-ratio=0.0 --seed-time=600 --file-allocation=none --max-overall-upload-limit=0
    --max-overall-download-limit=0 --summary-interval=0 --console-log-level=warn --show-console-readout=false
    --auto-save-interval=0 --log-level=notice)

start_opentracker() { # WD OD INFOHASH
    # Debian's opentracker serves whitelisted torrents only; it chroots into
    # its folder and runs as nobody.
    local d=$1/opentracker
    mkdir -p "$d"
    echo "$3" > "$d/whitelist"
    echo "access.whitelist /whitelist" > "$d/opentracker.conf"
    chmod 755 "$1" "$d"
    chmod 644 "$d"/*
    spawn trk "$d" "$2/opentracker.log" opentracker -i "$TRK" -p 6969 -P 6969 -f "$d/opentracker.conf" -d "$d" -u nobody
    wait_for opentracker 15 listening trk 6969
}
seed_in_tracker() { # INFOHASH: the tracker counts a complete peer
    ip netns exec trk curl -s -m 2 "http://$TRK:6969/scrape?info_hash=$(sed 's/../%&/g' <<< "$1")" |
        grep -aq 'completei[1-9]'
}
p2p_listed() { ip netns exec p0 "$p2p" --json filelist --tracker "$TRK:6969" --transport tcp | grep -q '"sources":[1-9]'; }

# run_one SYSTEM N REP: one flash crowd.
run_one() {
    local sys=$1 n=$2 rep=$3 i tag od wd go gofd ok=1 torrent ih limit
    tag=$(printf '%s-N%02d-r%d' "$sys" "$n" "$rep")
    od=$out/runs/$tag wd=$work/$tag
    rm -rf "$od" "$wd"
    mkdir -p "$od" "$wd"
    limit=$timeout
    [ "$limit" != auto ] ||
        limit=$(awk -v n="$n" -v f="$bytes" -v u="$up" -v d="$down" 'BEGIN {
            f *= 8; t = f / (u * 1e6); if (f / (d * 1e6) > t) t = f / (d * 1e6)
            if (n * f / (u * 1e6 * (n + 1)) > t) t = n * f / (u * 1e6 * (n + 1)); printf "%d", 60 + 6 * t }')
    log "--- $sys, N=$n, F=$size_mib MiB, run $rep (time limit ${limit}s)"
    go=$wd/GO
    : > "$go"
    exec {gofd}< "$go"
    flock -x "$gofd"
    for i in $(seq 1 "$n"); do mkdir -p "$wd/l$i"; done
    mkdir -p "$wd/seed"
    case $sys in
    p2p)
        mkdir -p "$wd/index" "$wd/seed/served_files"
        cp "$data" "$wd/seed/served_files/$fname"
        spawn trk "$wd/index" "$od/tracker.log" "$p2p" "${p2p_threads[@]}" tracker --listen "$TRK:6969" --transport tcp
        wait_for "p2p tracker" 15 listening trk 6969 || ok=0
        spawn p0 "$wd/seed" "$od/seed.log" "$p2p" "${p2p_threads[@]}" serve seed --listen "$(peer_ip 0):5000" \
            --tracker "$TRK:6969" --transport tcp
        [ $ok = 0 ] || wait_for "the seed's file in the index" 90 p2p_listed || ok=0
        for i in $(seq 1 "$n"); do
            spawn "p$i" "$wd/l$i" "$od/l$i.wrapper.log" bash -c 'leecher "$@"' _ "$od" "l$i" "$go" \
                p2p_json "$od" "l$i" "$p2p" "${p2p_threads[@]}" --json download "$fname" --tracker "$TRK:6969" --transport tcp \
                --listen "$(peer_ip "$i"):0"
        done ;;
    libtorrent|aria2)
        torrent=$wd/$fname.torrent
        mktorrent -a "http://$TRK:6969/announce" -l 18 -o "$torrent" "$data" > /dev/null
        ih=$($PY -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hash())' "$torrent")
        start_opentracker "$wd" "$od" "$ih" || ok=0
        cp "$data" "$wd/seed/$fname"
        if [ "$sys" = libtorrent ]; then
            spawn p0 "$wd/seed" "$od/seed.log" $PY "$helpers/lt_peer.py" seed seed "$torrent" "$wd/seed" \
                "$(peer_ip 0)" "$od"
            [ $ok = 0 ] || wait_for "the libtorrent seed" 90 test -e "$od/seed.ready" || ok=0
            for i in $(seq 1 "$n"); do
                spawn "p$i" "$wd/l$i" "$od/l$i.log" bash -c 'mark_exit "$@"' _ "$od" "l$i" \
                    $PY "$helpers/lt_peer.py" leech "l$i" "$torrent" "$wd/l$i" \
                    "$(peer_ip "$i")" "$od" "$go"
            done
        else
            spawn p0 "$wd/seed" "$od/seed.log" aria2c "${aria2_opts[@]}" --check-integrity=true \
                --enable-rpc=true --rpc-listen-port=6800 --dir="$wd/seed" --log="$od/seed.aria2.log" "$torrent"
            [ $ok = 0 ] || wait_for "the aria2 seed in the tracker" 90 seed_in_tracker "$ih" || ok=0
            for i in $(seq 1 "$n"); do
                spawn "p$i" "$wd/l$i" "$od/l$i.log" bash -c 'leecher "$@"' _ "$od" "l$i" "$go" \
                    env SWARM_DONE="$od/l$i.done" aria2c "${aria2_opts[@]}" --dir="$wd/l$i" \
                    --log="$od/l$i.aria2.log" --on-bt-download-complete="$helpers/aria2_done.sh" "$torrent"
            done
        fi ;;
    *) die "unknown system $sys" ;;
    esac
    all_marked() { for i in $(seq 1 "$n"); do [ -e "$od/l$i.$1" ] || return 1; done; }
    [ $ok = 0 ] || wait_for "every leecher ready" 120 all_marked ready || ok=0

    # ---- the common start, then wait for every leecher to finish
    local t0="" cpu0="" cpu1="" timed_out=0 finished end
    if [ $ok = 1 ]; then
        sleep 0.5 # the last ones to say ready reach their flock
        counters "$od/counters0"
        cpu0=$(head -1 /proc/stat)
        t0=$EPOCHREALTIME
        sampler "$od/samples" "$od/sampling" &
        flock -u "$gofd"
        end=$(( ${t0%.*} + limit ))
        while :; do
            finished=0
            for i in $(seq 1 "$n"); do
                [ -e "$od/l$i.done" ] || [ -e "$od/l$i.exit" ] && finished=$((finished + 1))
            done
            [ "$finished" -lt "$n" ] || break
            [ "${EPOCHREALTIME%.*}" -lt "$end" ] || { timed_out=1; log "time limit reached: $finished/$n finished"; break; }
            sleep 0.2
        done
        counters "$od/counters1"
        cpu1=$(head -1 /proc/stat)
        rm -f "$od/sampling"
        case $sys in
            p2p) # leechers stop seeding 3 s after the last peer leaves
                wait_for "the p2p leechers to exit" 20 all_marked exit || true ;;
            aria2) ip netns exec p0 curl -s -m 3 http://127.0.0.1:6800/jsonrpc -d \
                '{"jsonrpc":"2.0","id":"q","method":"aria2.tellActive","params":[["uploadLength","completedLength"]]}' \
                > "$od/seed.rpc.json" || true ;;
        esac
    else
        log "setup failed; see $od"
    fi
    exec {gofd}<&-
    stop_groups

    # ---- every copy against the seed's
    local f h
    for i in $(seq 1 "$n"); do
        f=$wd/l$i/$fname
        [ "$sys" != p2p ] || f=$wd/l$i/served_files/$fname
        if [ ! -f "$f" ]; then echo missing
        else h=$(hash_of "$f"); [ "$h" = "$want" ] && echo ok || echo bad; fi > "$od/l$i.verified"
    done
    printf '%s\n' "system=$sys" "n=$n" "rep=$rep" "size=$bytes" "up=$up" "down=$down" "delay_ms=$delay_ms" \
        "up_meas=$up_meas" "down_meas=$down_meas" "t0=${t0:-0}" "timeout=$limit" "timed_out=$timed_out" \
        "seed_ip=$(peer_ip 0)" "cpu0=$cpu0" "cpu1=$cpu1" > "$od/meta"
    $PY "$helpers/report.py" run "$od" | tee -a "$out/swarm.log"
    [ "$keep" = 1 ] || rm -rf "$wd"
}

IFS=, read -ra ns_ <<< "$n_list"
IFS=, read -ra sys_ <<< "$systems"
nmax=0
for n in "${ns_[@]}"; do [ "$n" -le "$nmax" ] || nmax=$n; done
[ "$nmax" -le 200 ] || die "at most 200 leechers"
log "p2p: $p2p (built $(date -r "$p2p" '+%F %T'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')), ${p2p_threads[*]:-default threads}"
net_up "$nmax"
check_links
bytes=$((size_mib * 1048576))
fname=file-${size_mib}MiB.bin
data=$work/data/$fname
mkdir -p "$work/data"
head -c "$bytes" /dev/urandom > "$data"
want=$(hash_of "$data")
log "the file: $bytes random bytes, checked with $(command -v b3sum > /dev/null && echo b3sum || echo sha256sum)"
for n in "${ns_[@]}"; do
    for rep in $(seq 1 "$reps"); do
        for k in $(seq 0 $((${#sys_[@]} - 1))); do
            kill -0 "${infra[0]}" 2>/dev/null || die "nfdelay died: $(tail -3 "$out/nfdelay.log")"
            run_one "${sys_[$(((k + rep - 1) % ${#sys_[@]}))]}" "$n" "$rep"
        done
    done
done
[ "$keep" = 1 ] || rm -rf "$work"
log "all runs done in $((SECONDS - began)) s; results in $out (RESULTS.md, results.json, runs/)"
reported=1
$PY "$helpers/report.py" final "$out" | tee -a "$out/swarm.log"
