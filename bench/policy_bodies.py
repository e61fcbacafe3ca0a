"""policy_bodies.py -- the bodies of many tiny values that docs/performance.md and
docs/security.md (F11) time with `policy_bench --body FILE RUNS` (policy_bench is built by
bench/policy.sh into $BUILD/policy_bench).

    python3 bench/policy_bodies.py DIR
    for f in DIR/*.json; do build/policy_bench --body "$f" 10; done

Each body is an OpenAI chat body for model gpt-4o (policy_bench's config). The ones named
at_limit_* hold exactly 100,000 JSON values (the default limits.max_body_values)."""
import json
import os
import sys

M = {"model": "gpt-4o"}
HI = [{"role": "user", "content": "hi"}]


def nvalues(v):
    """JSON values as the gateway counts them: every value and every member name."""
    if isinstance(v, dict):
        return 1 + sum(1 + nvalues(x) for x in v.values())
    if isinstance(v, list):
        return 1 + sum(nvalues(x) for x in v)
    return 1


def fit(make, target=100000):
    """make(n) for the largest n whose body has at most target values"""
    lo, hi = 1, 1000000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if nvalues(make(mid)) <= target:
            lo = mid
        else:
            hi = mid - 1
    return make(lo)


def parts(texts):
    return dict(M, messages=[{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}])


WORDS = ("The service reads its configuration once at start-up and keeps it in memory and "
         "then some more words here").split()


def prose(n, i):
    s, k = "", i
    while len(s) < n:
        s += WORDS[k % len(WORDS)] + " "
        k += 1
    return s[:n]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "policy-bodies"
    os.makedirs(out, exist_ok=True)
    bodies = {
        "parts8": dict(M, messages=[{"role": "system", "content": "You are a careful assistant."},
                                    {"role": "user", "content": [{"type": "text", "text": prose(100, i)}
                                                                 for i in range(8)]}]),
        "parts40000": parts(["ab"] * 40000),
        "messages40000": dict(M, messages=[{"role": "user", "content": "ab"}] * 40000),
        "metadata45000": dict(M, messages=HI, metadata={"k%d" % i: "v" for i in range(45000)}),
        "split16000": parts(["3.4 10.0.0.1 1.2."] * 16000),
        "emails20000_one_string": parts([" ".join("a%d@ex.com" % i for i in range(20000))]),
        "at_limit_parts": fit(lambda n: parts(["ab"] * n)),
        "at_limit_metadata": fit(lambda n: dict(M, messages=HI, metadata={"k%d" % i: "v" for i in range(n)})),
        "at_limit_split": fit(lambda n: parts(["3.4 10.0.0.1 1.2."] * n)),
        "at_limit_secret_members": fit(lambda n: dict(M, messages=HI, metadata={
            "password_%06d" % i: "Zx9#kq2LmP%06d" % i for i in range(n)})),
    }
    for name, b in bodies.items():
        with open(os.path.join(out, name + ".json"), "w") as f:
            f.write(json.dumps(b, separators=(",", ":")))
    # 2,000,000 numbers: 4 MiB
    n = (4 * 1024 * 1024 - 200) // 2
    with open(os.path.join(out, "numbers_4mib.json"), "w") as f:
        f.write('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":{"x":[' +
                ",".join(["0"] * n) + "]}}")
    print("wrote %d bodies to %s" % (len(bodies) + 1, out))


if __name__ == "__main__":
    main()
