"""crash_test.py -- SPEC §5.2/§5.5 under a real crash.

Load from several threads, `kill -9` the gateway in the middle of it, tear the
tail of the last segment the way a crash mid-write does, restart on the same
audit directory, and check: the torn tail was cut and kept aside as .broken,
`audit verify` passes, and every request whose client received a complete
answer has both its request and response records.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itest import (AIRLOCK, Airlock, Mock, Suite, base_config, chat, free_port,  # noqa: E402
                   gateway_missing, openai_stream_text, request)


def load(port, stop, answered, lock):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            r = request(port, "POST", "/v1/chat/completions",
                        chat("load %d MOCK:words=5" % i, stream=(i % 2 == 0)), timeout=5)
        except Exception:  # noqa: BLE001 -- the gateway is being killed
            continue
        if r.status != 200:
            continue
        complete = b"[DONE]" in r.body if i % 2 == 0 else (r.json() or {}).get("choices") is not None
        if complete:
            with lock:
                answered.append(r.headers.get("x-airlock-request-id"))


def main():
    s = Suite("crash")
    why = gateway_missing()
    if why:
        s.bail(why)
    mock = Mock(s)
    port = free_port()
    gw = Airlock(s, base_config(port, mock.port, audit="{dir: ./audit, sync: batch}"), port)
    audit_dir = os.path.join(gw.dir, "audit")

    stop = threading.Event()
    answered, lock = [], threading.Lock()
    threads = [threading.Thread(target=load, args=(port, stop, answered, lock)) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    s.check("load ran: answers before the crash", len(answered) >= 10, len(answered))

    # a crash in the middle of a write leaves a partial record at the end
    segs = sorted(glob.glob(os.path.join(audit_dir, "*.alog")))
    s.check("segments exist", len(segs) >= 1, segs)
    with open(segs[-1], "ab") as f:
        f.write(os.urandom(97))

    # restart on the same directory (the config names it relative to the first run's dir)
    cfg = open(gw.config).read().replace("{dir: ./audit, sync: batch}", "{dir: %s, sync: batch}" % audit_dir)
    gw3 = Airlock(s, cfg, port, name="restart2")
    r = request(port, "POST", "/v1/chat/completions", chat("after the crash"))
    s.check("serving after restart", r.status == 200, r)
    broken = glob.glob(os.path.join(audit_dir, "*.broken*"))
    s.check("torn tail kept aside as .broken", len(broken) >= 1, os.listdir(audit_dir))
    s.check("torn tail logged", "broken" in gw3.stderr().lower() or "torn" in gw3.stderr().lower(), gw3.stderr()[-500:])
    rc = gw3.stop()
    s.check("clean shutdown after restart", rc == 0, rc)

    v = subprocess.run([AIRLOCK, "audit", "verify", audit_dir], capture_output=True, text=True, timeout=60)
    s.check("audit verify passes on what remains", v.returncode == 0, v.stdout + v.stderr)
    show = subprocess.run([AIRLOCK, "audit", "show", audit_dir], capture_output=True, text=True, timeout=60)
    have = {}
    for line in show.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        mid = (rec.get("meta") or {}).get("id")
        if mid:
            have.setdefault(mid, set()).add(rec.get("type"))
    missing = [a for a in answered if have.get(a) != {"request", "response"}]
    s.check("every answered request has its request and response records (%d answered)" % len(answered),
            not missing, missing[:5])
    s.done()


if __name__ == "__main__":
    main()
