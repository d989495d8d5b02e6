#!/usr/bin/python3
"""One libtorrent peer for swarm_netns.sh (Debian's python3-libtorrent).

  lt_peer.py seed  NAME TORRENT DIR IP OUTDIR
  lt_peer.py leech NAME TORRENT DIR IP OUTDIR GOFILE

seed: adds the torrent (its data already in DIR), writes OUTDIR/NAME.ready
once it seeds. leech: opens its session, writes OUTDIR/NAME.ready, waits
for a shared lock on GOFILE (the script holds it exclusively until the
common start), writes NAME.start, adds the torrent and writes NAME.done
(epoch seconds) when the torrent finishes (every piece hash-checked).
Both keep seeding until SIGTERM, then write NAME.stats.json.
DHT, LSD, UPnP, NAT-PMP and uTP are off; no rate limits (tc shapes).
"""
import fcntl
import json
import os
import signal
import sys
import time

import libtorrent as lt

role, name, torrent, save, ip, od = sys.argv[1:7]
stopping = False


def on_term(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def mark(what, text=""):
    path = os.path.join(od, f"{name}.{what}")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def log(msg):
    print(f"{time.time():.3f} {msg}", file=sys.stderr, flush=True)


cat = lt.alert.category_t
ses = lt.session({
    "listen_interfaces": f"{ip}:6881",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "upload_rate_limit": 0, "download_rate_limit": 0,
    "allow_multiple_connections_per_ip": True,
    # Up to 31 sessions share 2 cores: few threads each.
    "aio_threads": 2, "hashing_threads": 1,
    "alert_mask": cat.error_notification | cat.status_notification | cat.tracker_notification,
})
ti = lt.torrent_info(torrent)


def add():
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = save
    p.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    return ses.add_torrent(p)


if role == "seed":
    h = add()
else:
    mark("ready")
    with open(sys.argv[7]) as go:
        fcntl.flock(go, fcntl.LOCK_SH)  # blocks until the common start
    mark("start", f"{time.time():.6f}\n")
    h = add()

announced = finished = False
last = 0.0
while not stopping:
    for a in ses.pop_alerts():
        kind = type(a).__name__
        if kind == "torrent_finished_alert" and role == "leech" and not finished:
            finished = True
            mark("done", f"{time.time():.6f}\n")
        if kind == "tracker_reply_alert":
            announced = True
        if kind != "state_changed_alert":
            log(f"{kind}: {a.message()}")
    st = h.status()
    if role == "seed" and announced and st.is_seeding and not finished:
        finished = True
        mark("ready")
    if time.time() - last >= 5:
        last = time.time()
        log(f"progress {st.progress:.3f} peers {st.num_peers} down {st.download_payload_rate / 1e6:.2f} MB/s "
            f"up {st.upload_payload_rate / 1e6:.2f} MB/s")
    ses.wait_for_alert(250)

st = h.status()
with open(os.path.join(od, f"{name}.stats.json"), "w") as f:
    json.dump({"payload_up": st.total_payload_upload, "payload_down": st.total_payload_download,
               "up": st.total_upload, "down": st.total_download, "seeding": st.is_seeding,
               "libtorrent": lt.__version__}, f)
