#!/usr/bin/python3
"""Numbers for swarm_netns.sh (standard library only).

  report.py iperf FILE.json     -> "RECEIVED_MBIT MEAN_RTT_MS RETRANSMITS CC"
  report.py run RUNDIR          -> RUNDIR/result.json, and one summary line
  report.py final OUTDIR        -> OUTDIR/results.json and OUTDIR/RESULTS.md
                                   (the markdown table is printed too)
  report.py timeline RUNDIR     -> per second: leechers done, the seed's and
                                   the leechers' uplinks in use, CPU busy

A run folder holds `meta` (KEY=VALUE lines written by the script), per
leecher lK.start / lK.done (epoch seconds), lK.verified (ok, bad or
missing), the namespaces' byte counters at the start and at the end
(counters0/counters1: "NS SENT RECEIVED"), and the applications' own
counts: p2p's JSON results (lK.out, each line "EPOCH JSON"), libtorrent's
seed.stats.json, aria2's seed.rpc.json; `samples` (the script's sampler:
"EPOCH cpu ... NS:SENT ..." every 0.5 s).
"""
import glob
import json
import os
import re
import statistics
import sys


def kv(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def num(path):
    try:
        return float(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def counters(path):
    res = {}
    if os.path.exists(path):
        for line in open(path):
            ns, sent, recv = line.split()
            res[ns] = (int(sent), int(recv))
    return res


def t_min(n, size, up_mbit, down_mbit):
    """Kumar & Ross: max(F/u_seed, F/d_min, N·F/(u_seed + N·u_leech)); here
    the seed and the leechers have the same links."""
    f, u, d = size * 8, up_mbit * 1e6, down_mbit * 1e6
    return max(f / u, f / d, n * f / (u + n * u))


def cpu_busy(a, b):
    a = [int(x) for x in a.split()[1:9]]
    b = [int(x) for x in b.split()[1:9]]
    total = sum(b) - sum(a)
    idle = (b[3] + b[4]) - (a[3] + a[4])
    return round(100 * (1 - idle / total)) if total > 0 else None


def iperf(path):
    j = json.load(open(path))
    e = j["end"]
    rtt = e["streams"][0]["sender"].get("mean_rtt", 0) / 1000
    print(f'{e["sum_received"]["bits_per_second"] / 1e6:.2f} {rtt:.2f} '
          f'{e["sum_sent"].get("retransmits", 0)} {e.get("sender_tcp_congestion", "?")}')


def run(d):
    m = kv(os.path.join(d, "meta"))
    system, n, size = m["system"], int(m["n"]), int(m["size"])
    t0 = float(m["t0"])
    names = [f"l{i}" for i in range(1, n + 1)]
    r = {"system": system, "N": n, "F": size, "rep": int(m["rep"]), "run": os.path.basename(d),
         "timed_out": m.get("timed_out") == "1", "timeout_s": float(m["timeout"])}
    times, verified, skew = {}, {}, []
    for l in names:
        v = open(os.path.join(d, f"{l}.verified")).read().strip() if os.path.exists(
            os.path.join(d, f"{l}.verified")) else "missing"
        verified[l] = v
        done, start = num(os.path.join(d, f"{l}.done")), num(os.path.join(d, f"{l}.start"))
        if start is not None:
            skew.append(start - t0)
        if done is not None and v == "ok":
            times[l] = round(done - t0, 3)
    t = sorted(times.values())
    r["times"] = times
    r["verified"] = sum(v == "ok" for v in verified.values())
    r["not_ok"] = {l: v for l, v in verified.items() if v != "ok" or l not in times}
    r["start_skew_max_s"] = round(max(skew), 3) if skew else None
    r["T_first"] = t[0] if t else None
    r["T_median"] = round(statistics.median(t), 3) if len(t) == n else None
    r["T_last"] = t[-1] if len(t) == n else None
    r["T_min"] = round(t_min(n, size, float(m["up"]), float(m["down"])), 3)
    r["T_min_measured"] = round(t_min(n, size, float(m["up_meas"]), float(m["down_meas"])), 3)
    r["T_over_T_min"] = round(r["T_last"] / r["T_min"], 2) if r["T_last"] else None
    r["T_over_T_min_measured"] = round(r["T_last"] / r["T_min_measured"], 2) if r["T_last"] else None
    # Bytes each namespace sent from the start to the last completion (the
    # rx counter of its veth's hub end: frames, headers included).
    c0, c1 = counters(os.path.join(d, "counters0")), counters(os.path.join(d, "counters1"))
    sent = {ns: c1[ns][0] - c0[ns][0] for ns in c1 if ns in c0}
    r["wire_sent"] = sent
    r["seed_copies_wire"] = round(sent.get("p0", 0) / size, 2)
    r["leechers_copies_wire"] = round(sum(v for k, v in sent.items() if k not in ("p0", "trk")) / size, 2)
    # The seed's payload by the applications' own count.
    payload = None
    if system == "p2p":
        payload = 0
        r["p2p_results"] = {}
        for l in names:
            p = os.path.join(d, f"{l}.out")
            if not os.path.exists(p):
                continue
            for line in open(p):
                try:
                    j = json.loads(line.split(" ", 1)[1])
                except (ValueError, IndexError):
                    continue
                r["p2p_results"][l] = j.get("status") or j.get("error")
                for s in j.get("sources", []):
                    if s.get("peer") == "seed" or str(s.get("peer", "")).startswith(m["seed_ip"] + ":"):
                        payload += int(s.get("bytes", 0))
    elif system == "libtorrent":
        try:
            payload = json.load(open(os.path.join(d, "seed.stats.json")))["payload_up"]
        except (OSError, ValueError, KeyError):
            pass
    elif system == "aria2":
        try:
            payload = int(json.load(open(os.path.join(d, "seed.rpc.json")))["result"][0]["uploadLength"])
        except (OSError, ValueError, KeyError, IndexError):
            pass
    r["seed_copies_payload"] = round(payload / size, 2) if payload is not None else None
    if system == "p2p":  # what the seed itself says it sent ("sent NAME: 3.0 MiB to ADDR in 4.2s")
        unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
        sent_log = sum(float(x) * unit[u] for x, u in re.findall(r" sent .*?: ([\d.]+) (B|KiB|MiB|GiB) to ",
                                                                open(os.path.join(d, "seed.log")).read()))
        r["seed_copies_seed_log"] = round(sent_log / size, 2)
    r["cpu_busy_pct"] = cpu_busy(m["cpu0"], m["cpu1"]) if m.get("cpu1") else None
    json.dump(r, open(os.path.join(d, "result.json"), "w"), indent=1)
    print(f"  {system} N={n}: {len(t)}/{n} done and verified; T first/median/last "
          f"{r['T_first']}/{r['T_median']}/{r['T_last']} s; T_last/T_min {r['T_over_T_min']} "
          f"(T_min {r['T_min']} s); seed sent {r['seed_copies_payload']} copies of payload"
          f"{' (its log: %s)' % r['seed_copies_seed_log'] if 'seed_copies_seed_log' in r else ''}, "
          f"{r['seed_copies_wire']} on the wire; start skew ≤ {r['start_skew_max_s']} s; "
          f"CPU {r['cpu_busy_pct']} % busy")
    if r["not_ok"]:
        print(f"  not done or not verified: {r['not_ok']}")


def fmt(v):
    return "–" if v is None else str(v)


def final(out):
    links = kv(os.path.join(out, "links"))
    # in the order they ran (meta is written at the end of each run)
    dirs = sorted(glob.glob(os.path.join(out, "runs", "*", "meta")), key=os.path.getmtime)
    runs = [json.load(open(os.path.join(os.path.dirname(p), "result.json"))) for p in dirs
            if os.path.exists(os.path.join(os.path.dirname(p), "result.json"))]
    json.dump({"links": links, "runs": runs}, open(os.path.join(out, "results.json"), "w"), indent=1)
    L = []
    if links:
        L += [f"Links: upload {links['up']} Mbit/s, download {links['down']} Mbit/s, {links['delay_ms']} ms one "
              f"way between peers, TCP {links.get('cc')}. Measured: ping RTT {links.get('ping_avg_ms')} ms "
              f"(min {links.get('ping_min_ms')}); iperf3 upload-bound {links.get('up_meas')} Mbit/s, "
              f"download-bound {links.get('down_meas')} Mbit/s.", ""]
    L += ["| system | N | F | ok | T first (s) | T median (s) | T last (s) | T_min (s) | T/T_min | "
          "T_min meas. (s) | T/T_min meas. | seed sent (copies: payload, wire) | CPU |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        last = r["T_last"] if r["T_last"] is not None else (
            f"timeout {r['timeout_s']:.0f}" if r["timed_out"] else "failed")
        L.append(f"| {r['system']} | {r['N']} | {r['F'] >> 20} MiB | {r['verified']}/{r['N']} | "
                 f"{fmt(r['T_first'])} | {fmt(r['T_median'])} | {last} | {r['T_min']} | "
                 f"{fmt(r['T_over_T_min'])} | {r['T_min_measured']} | {fmt(r['T_over_T_min_measured'])} | "
                 f"{fmt(r['seed_copies_payload'])}"
                 f"{' (%s)' % r['seed_copies_seed_log'] if 'seed_copies_seed_log' in r else ''}, "
                 f"{r['seed_copies_wire']} | {fmt(r['cpu_busy_pct'])} % |")
    L += ["", "T in seconds from the common start, for leechers whose file matched the seed's. Seed sent: "
          "payload by the applications' count (p2p: the bytes the leechers' JSON results credit to the seed, in "
          "brackets what the seed's log says it sent; libtorrent: total_payload_upload; aria2: uploadLength), "
          "and frames on the seed's link from the start to the last finish. CPU: share of the machine's cores "
          "busy (all its processes) during the run."]
    text = "\n".join(L) + "\n"
    open(os.path.join(out, "RESULTS.md"), "w").write(text)
    print(text)


def timeline(d):
    """Where the time went: for each second from the common start, how many
    leechers were done, the seed's uplink and the leechers' uplinks in use
    (share of the nominal rate; "busy" counts leechers above half of it),
    and the machine's CPU. Uplinks idle while leechers still wait point at
    the protocol; everything slow at full CPU points at the machine."""
    m = kv(os.path.join(d, "meta"))
    n, up, t0 = int(m["n"]), float(m["up"]) * 1e6 / 8, float(m["t0"])
    done = sorted(t - t0 for t in (num(os.path.join(d, f"l{k}.done")) for k in range(1, n + 1)) if t)
    rows = []
    for line in open(os.path.join(d, "samples")):
        f = line.split()
        if len(f) < 12:
            continue
        sent = dict((k, int(v)) for k, v in (x.split(":") for x in f[12:]))
        rows.append((float(f[0]) - t0, " ".join(f[1:12]), sent))
    print("   t  done  seed%  leechers%  busy  cpu%")
    last = None
    for t, cpu, sent in rows:
        if last is None or t - last[0] >= 0.99:
            if last is not None:
                dt = t - last[0]
                rate = lambda ns: (sent.get(ns, 0) - last[2].get(ns, 0)) / dt / up
                seed = rate("p0")
                leech = [rate(f"p{k}") for k in range(1, n + 1)]
                print(f"{t:5.1f}  {sum(1 for x in done if x <= t):4d}  {100 * seed:5.0f}  "
                      f"{100 * sum(leech) / n:9.0f}  {sum(1 for x in leech if x > 0.5):4d}  "
                      f"{cpu_busy(last[1], cpu) or 0:4d}")
            last = (t, cpu, sent)


if __name__ == "__main__":
    {"iperf": iperf, "run": run, "final": final, "timeline": timeline}[sys.argv[1]](sys.argv[2])
