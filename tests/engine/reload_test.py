"""reload_test.py -- SIGHUP reloads that add and remove builtin providers while local
requests are being answered.

A reload that names a new model file loads it on the reload thread (docs/gateway.md); an
engine no config references any more is unloaded once the last snapshot holding it (the
in-flight requests' included) is released. Checked here: new models become servable,
in-flight requests on a removed model complete, removed models are unloaded, the
gateway keeps answering throughout, and (sanitizer builds) no memory error.

Unloading (joining the engine's workers, freeing the weights) happens on the unloader
thread, never on the event loop: AIRLOCK_ENGINE_FAULT_UNLOAD_MS slows every unload
down, and the gateway must answer in the meantime.
"""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from itest import ALICE, Airlock, Suite, free_port, gateway_missing, openai_stream_text, request  # noqa: E402

SHARED = os.environ.get("AIRLOCK_SHARED") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
MODEL_A = os.path.join(SHARED, "models", "tiny-llama3-q8_0.gguf")
MODEL_B = os.path.join(SHARED, "models", "tiny-llama3-q4_0.gguf")
UNLOAD_MS = 1500  # each unload is slowed down this much (test hook)


def config(port, key, with_a=True, with_b=False, extra=None):
    prov, models = "", ""
    if extra:
        prov += '  local-x: {type: builtin, model: "%s", context: 256, threads: 1}\n' % extra
        models += "  - {name: small-x, provider: local-x}\n"
    if with_a:
        prov += '  local-a: {type: builtin, model: "%s", context: 256, threads: 1}\n' % MODEL_A
        models += "  - {name: small-a, provider: local-a}\n"
    if with_b:
        prov += '  local-b: {type: builtin, model: "%s", context: 256, threads: 1}\n' % MODEL_B
        models += "  - {name: small-b, provider: local-b}\n"
    return """listen: [{address: "127.0.0.1:%d"}]
keys: [{name: alice, team: red, key: "%s"}]
providers:
%smodels:
%srules:
  - {name: default, then: {action: allow}}
""" % (port, key, prov, models)


def ask(port, key, model, n=40, stream=False):
    body = {"model": model, "max_tokens": n, "stream": stream,
            "messages": [{"role": "user", "content": "hello there"}]}
    return request(port, "POST", "/v1/chat/completions", body, key=key, timeout=30)


def wait_for(fn, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.05)
    return False


def main():
    s = Suite("engine-reload")
    why = gateway_missing()
    if why:
        s.bail(why)
    for m in (MODEL_A, MODEL_B):
        if not os.path.exists(m):
            s.bail("test model %s not found" % m)
    key = ALICE
    port = free_port()
    gw = Airlock(s, config(port, key), port, name="engine-reload",
                 env={"AIRLOCK_ENGINE_FAULT_UNLOAD_MS": str(UNLOAD_MS)})

    r = ask(port, key, "small-a")
    s.check("before reload: the configured local model answers", r.status == 200, r)
    r = ask(port, key, "small-b")
    s.check("before reload: a model not configured yet is refused", 400 <= r.status < 500, r)

    # clients keep asking the first model while reloads add and remove providers
    stop = threading.Event()
    seen = {"ok": 0, "refused": 0, "bad": []}
    lock = threading.Lock()

    def client(stream):
        while not stop.is_set():
            try:
                rr = ask(port, key, "small-a", n=120, stream=stream)
                st = rr.status
                text = openai_stream_text(rr.body)[0] if stream and st == 200 else None
            except Exception as e:  # noqa: BLE001
                with lock:
                    seen["bad"].append(repr(e))
                continue
            with lock:
                if st == 200 and (not stream or text):
                    seen["ok"] += 1
                elif 400 <= st < 500:
                    seen["refused"] += 1  # small-a removed by the config in force
                else:
                    seen["bad"].append((st, rr.body[:200]))

    threads = [threading.Thread(target=client, args=(i % 2 == 1,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)

    with open(gw.config, "w") as f:
        f.write(config(port, key, with_a=True, with_b=True))
    gw.signal(signal.SIGHUP)
    s.check("reload adding a builtin provider: its model answers",
            wait_for(lambda: ask(port, key, "small-b").status == 200), gw.stderr()[-800:])
    s.check("the new model was loaded once, by the reload",
            gw.stderr().count("loaded %s" % MODEL_B) == 1, gw.stderr()[-800:])

    # remove the first model while its requests are in flight, then bring it back, a few times
    for i in range(3):
        with open(gw.config, "w") as f:
            f.write(config(port, key, with_a=False, with_b=True))
        gw.signal(signal.SIGHUP)
        if i == 0:
            s.check("the removed model's unload starts once its last request is done",
                    wait_for(lambda: "unloading %s" % MODEL_A in gw.stderr()), gw.stderr()[-800:])
            t0 = time.time()
            r = ask(port, key, "small-b", n=4)
            took = time.time() - t0
            pending = "unloaded %s" % MODEL_A not in gw.stderr()
            s.check("while it unloads (slowed to %d ms) the loop answers at once" % UNLOAD_MS,
                    r.status == 200 and took < UNLOAD_MS / 2000.0 and pending,
                    (r.status, took, pending))
        ok = wait_for(lambda: "unloaded %s" % MODEL_A in gw.stderr() and
                      gw.stderr().count("unloaded %s" % MODEL_A) >= i + 1)
        s.check("round %d: the removed model is unloaded once its last request is done" % i, ok,
                gw.stderr()[-800:])
        with open(gw.config, "w") as f:
            f.write(config(port, key, with_a=True, with_b=True))
        gw.signal(signal.SIGHUP)
        s.check("round %d: re-adding it loads it again" % i,
                wait_for(lambda: ask(port, key, "small-a").status == 200), gw.stderr()[-800:])
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(60)
    s.check("clients were answered throughout (200, or 4xx while their model was removed)",
            not seen["bad"] and seen["ok"] > 0, seen)
    s.check("the model kept across every reload was never reloaded",
            gw.stderr().count("loaded %s" % MODEL_B) == 1 and "unloaded %s" % MODEL_B not in gw.stderr(),
            gw.stderr()[-800:])
    # a reload naming a file that is not a model: that provider answers 503, the rest applies
    bad = os.path.join(gw.dir, "not-a-model.gguf")
    with open(bad, "wb") as f:
        f.write(b"not a gguf file")
    with open(gw.config, "w") as f:
        f.write(config(port, key, with_a=True, with_b=True, extra=bad))
    gw.signal(signal.SIGHUP)
    s.check("a model that fails to load is logged and its provider answers 503",
            wait_for(lambda: "local answers from it are unavailable" in gw.stderr()
                     and ask(port, key, "small-x").status == 503), gw.stderr()[-800:])
    s.check("the rest of that reload applies (the loaded models kept)",
            ask(port, key, "small-a").status == 200 and gw.stderr().count("loaded %s" % MODEL_B) == 1,
            gw.stderr()[-800:])
    r = ask(port, key, "small-b", stream=True)
    s.check("after the reloads both models answer", r.status == 200 and ask(port, key, "small-a").status == 200, r)
    s.check("gateway exits cleanly", gw.stop() == 0, gw.stderr()[-800:])
    s.done()


if __name__ == "__main__":
    main()
