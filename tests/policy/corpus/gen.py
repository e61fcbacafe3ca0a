#!/usr/bin/env python3
"""gen.py -- generate corpus.jsonl, the labelled policy evaluation corpus.

Run from anywhere:  python3 tests/policy/corpus/gen.py   (rewrites corpus.jsonl
next to this file; the output is byte-identical on every run: fixed seed, standard
library only).

Every value is made up. Names are drawn from generic lists, e-mail domains are
example.com/.org/.net, phone numbers sit in ranges reserved for fiction (US 555-01xx,
UK 020 7946 0xxx / 07700 900xxx) or are random, and every secret is random bytes from
the seeded generator in the provider's real syntax (with its real checksum where the
format has one) -- syntactically valid, never issued by anyone. Most secrets carry the
marker FAKE inside their random part.

Line format (one JSON object per line):
  {"id": str, "api": "openai"|"anthropic", "category": str,
   "text": str            -- a plain prompt; the test wraps it in a one-message body
   | "body": str,         -- the request body exactly as sent (escapes kept)
   "expect": [{"detector": str, "value": str,
               "raw": str?,     -- how the value is spelt in `body` when it differs
               "also": [str]?}] -- other detectors that may fire on the same span
  }
An empty `expect` means benign: no built-in detector should fire anywhere in it.
Labelling decisions (see docs/policy.md):
  - an address at example.com IS an e-mail address;
  - a dotted quad with every part <= 255 IS an IPv4 address, even in prose; version
    strings used as look-alikes have a part > 255, five parts, or a "v" glued in front;
  - generic_secret means a high-entropy token next to a secret-like word; a weak
    password ("changeme") or a ${VAR} placeholder is not labelled;
  - a specific secret (AWS key, GitHub token, ...) written after a secret-like word
    may also be reported as generic_secret (listed in "also").
"""
import base64
import hashlib
import hmac
import json
import os
import random
import string
import zlib

R = random.Random(20261123)
HERE = os.path.dirname(os.path.abspath(__file__))

FIRST = ["Jane", "John", "Maria", "Lukas", "Sophie", "Ahmed", "Yuki", "Chen", "Olga", "Pierre",
         "Lucia", "Tom", "Anna", "Ravi", "Fatima", "Erik", "Nora", "Diego", "Hana", "Igor",
         "Claire", "Omar", "Lena", "Kenji", "Mei", "Paul", "Sara", "Jonas", "Amelie", "Carlos"]
LAST = ["Doe", "Miller", "Schmidt", "Dubois", "Garcia", "Tanaka", "Wang", "Ivanova", "Rossi",
        "Novak", "Berg", "Costa", "Fischer", "Martin", "Lopez", "Sato", "Li", "Petrov", "Haddad",
        "Weber", "Moreau", "Silva", "Jensen", "Kowalski", "Nakamura", "Brown", "Keller"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "support.example.org",
           "eu.example.net"]

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
B64URL = string.ascii_letters + string.digits + "-_"
ALNUM = string.ascii_letters + string.digits


def rs(alphabet, n):
    return "".join(R.choice(alphabet) for _ in range(n))


def with_fake(s):
    """Put the marker FAKE somewhere inside a random part (keeps the syntax)."""
    i = R.randrange(0, len(s) - 4)
    return s[:i] + "FAKE" + s[i + 4:]


def name():
    return R.choice(FIRST), R.choice(LAST)


def email(first=None, last=None):
    if first is None:
        first, last = name()
    style = R.randrange(6)
    f, l = first.lower(), last.lower()
    local = [f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{R.randrange(10, 99)}", f"{f}+billing",
             f"{l}.{f}", f"{f}{R.randrange(1, 9)}"][style]
    return f"{local}@{R.choice(DOMAINS)}"


def phone():
    k = R.randrange(12)
    d = lambda n: rs(string.digits, n)
    if k == 0:
        return f"+1 415-555-01{d(2)}"
    if k == 1:
        return f"(212) 555-01{d(2)}"
    if k == 2:
        return f"+1 (646) 555-01{d(2)}"
    if k == 3:
        return f"+44 20 7946 0{d(3)}"
    if k == 4:
        return f"+44 7700 900{d(3)}"
    if k == 5:
        return f"+49 30 {R.randrange(2, 9)}{d(6)}"
    if k == 6:
        return f"+49 171 {R.randrange(2, 9)}{d(6)}"
    if k == 7:
        return f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}"
    if k == 8:
        return f"+34 91{R.randrange(2, 9)} {d(3)} {d(3)}"
    if k == 9:
        return f"+81 3-{R.randrange(2, 9)}{d(3)}-{d(4)}"
    if k == 10:
        return f"+86 138 {d(4)} {d(4)}"
    return f"+7 495 {R.randrange(2, 9)}{d(2)}-{d(2)}-{d(2)}"


def luhn_sum(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total


def luhn_ok(digits):
    return luhn_sum(digits) % 10 == 0


def card_digits(valid=True):
    brand = R.randrange(4)
    if brand == 0:
        prefix, n = "4" + rs(string.digits, 5), 16
    elif brand == 1:
        prefix, n = "5" + str(R.randrange(1, 6)) + rs(string.digits, 4), 16
    elif brand == 2:
        prefix, n = R.choice(["34", "37"]) + rs(string.digits, 4), 15
    else:
        prefix, n = "6011" + rs(string.digits, 2), 16
    body = prefix + rs(string.digits, n - len(prefix) - 1)
    for c in string.digits:
        if luhn_ok(body + c) == valid:
            return body + c
    raise AssertionError


def card_format(digits):
    k = R.randrange(3)
    if len(digits) == 15:
        parts = [digits[:4], digits[4:10], digits[10:]]
    else:
        parts = [digits[i:i + 4] for i in range(0, 16, 4)]
    if k == 0:
        return digits
    return (" " if k == 1 else "-").join(parts)


def card(valid=True):
    return card_format(card_digits(valid))


IBAN_BBAN = {  # country: BBAN layout as (kind, count) runs; total lengths per ISO 13616
    "DE": [("n", 18)], "FR": [("n", 23)], "ES": [("n", 20)], "GB": [("a", 4), ("n", 14)],
    "NL": [("a", 4), ("n", 10)], "IT": [("a", 1), ("n", 22)], "CH": [("n", 17)],
    "AT": [("n", 16)], "BE": [("n", 12)], "PL": [("n", 24)], "SE": [("n", 20)],
}


def iban_check(cc, bban):
    num = "".join(str(int(ch, 36)) for ch in bban + cc + "00")
    return "%02d" % (98 - int(num) % 97)


def iban(valid=True, cc=None, wrong_length=False, grouped=None):
    cc = cc or R.choice(sorted(IBAN_BBAN))
    bban = "".join(rs(string.ascii_uppercase if k == "a" else string.digits, n)
                   for k, n in IBAN_BBAN[cc])
    if wrong_length:
        bban = bban[:-1]
    chk = iban_check(cc, bban)
    if not valid:
        chk = "%02d" % ((int(chk) + R.randrange(1, 90)) % 97 + 2)
        if chk == iban_check(cc, bban):
            chk = "%02d" % ((int(chk) + 1) % 97 + 2)
    s = cc + chk + bban
    if grouped is None:
        grouped = R.random() < 0.6
    if grouped:
        s = " ".join(s[i:i + 4] for i in range(0, len(s), 4))
    return s


def ssn(valid=True):
    if valid:
        while True:
            area = R.randrange(1, 900)
            if area != 666:
                break
        return "%03d-%02d-%04d" % (area, R.randrange(1, 100), R.randrange(1, 10000))
    k = R.randrange(5)
    if k == 0:
        return "000-%02d-%04d" % (R.randrange(1, 100), R.randrange(1, 10000))
    if k == 1:
        return "666-%02d-%04d" % (R.randrange(1, 100), R.randrange(1, 10000))
    if k == 2:
        return "%03d-%02d-%04d" % (R.randrange(900, 1000), R.randrange(1, 100), R.randrange(1, 10000))
    if k == 3:
        return "%03d-00-%04d" % (R.randrange(1, 600), R.randrange(1, 10000))
    return "%03d-%02d-0000" % (R.randrange(1, 600), R.randrange(1, 100))


def ipv4():
    k = R.randrange(5)
    if k == 0:
        return f"10.{R.randrange(256)}.{R.randrange(256)}.{R.randrange(1, 255)}"
    if k == 1:
        return f"192.168.{R.randrange(256)}.{R.randrange(1, 255)}"
    if k == 2:
        return f"203.0.113.{R.randrange(1, 255)}"
    if k == 3:
        return f"198.51.100.{R.randrange(1, 255)}"
    return f"172.{R.randrange(16, 32)}.{R.randrange(256)}.{R.randrange(1, 255)}"


def pem(kind=None):
    kind = kind or R.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                             "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
    blob = base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(160, 900)))).decode()
    lines = [blob[i:i + 64] for i in range(0, len(blob), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def pem_public(kind=None):
    kind = kind or R.choice(["PUBLIC KEY", "CERTIFICATE", "CERTIFICATE REQUEST", "RSA PUBLIC KEY"])
    blob = base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(160, 700)))).decode()
    lines = [blob[i:i + 64] for i in range(0, len(blob), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


AWS_ALPHA = string.ascii_uppercase + "234567"


def aws_key():
    return R.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + with_fake(rs(AWS_ALPHA, 16))


def aws_secret():
    return rs(string.ascii_letters + string.digits + "+/", 40)


def base62(n, width):
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(width, "0")


def github_token():
    k = R.randrange(6)
    if k == 5:
        return "github_pat_11" + with_fake(rs(string.ascii_uppercase + string.digits, 20)) + "_" + rs(ALNUM, 59)
    prefix = ["ghp_", "ghp_", "gho_", "ghs_", "ghu_"][k]
    ent = with_fake(rs(ALNUM, 30))
    return prefix + ent + base62(zlib.crc32(ent.encode()), 6)


def openai_key():
    k = R.randrange(4)
    if k == 0:
        return "sk-" + with_fake(rs(ALNUM, 20)) + "T3BlbkFJ" + rs(ALNUM, 20)
    if k == 3:
        return "sk-svcacct-" + with_fake(rs(B64URL, 74)) + "T3BlbkFJ" + rs(B64URL, 74)
    return "sk-proj-" + with_fake(rs(B64URL, 74)) + "T3BlbkFJ" + rs(B64URL, 74)


def anthropic_key():
    return "sk-ant-api03-" + with_fake(rs(B64URL, 93)) + "AA"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt():
    alg = R.choice(["HS256", "RS256"])
    header = {"alg": alg, "typ": "JWT"}
    first, last = name()
    iat = 1700000000 + R.randrange(10 ** 7)
    payload = {"sub": f"user-{R.randrange(10 ** 5)}", "name": f"{first} {last}", "iat": iat,
               "exp": iat + 3600, "scope": R.choice(["read", "read write", "admin"])}
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    if alg == "HS256":
        sig = hmac.new(bytes(R.randrange(256) for _ in range(32)), f"{h}.{p}".encode(),
                       hashlib.sha256).digest()
    else:
        sig = bytes(R.randrange(256) for _ in range(256))
    return f"{h}.{p}.{b64url(sig)}"


def gsecret():
    n = R.randrange(24, 44)
    while True:
        s = rs(ALNUM + "_-", n)
        # a random token of this length is high-entropy; insist on mixed classes
        if (any(c.isdigit() for c in s) and any(c.isupper() for c in s)
                and any(c.islower() for c in s)):
            return s


def uuid4():
    h = rs("0123456789abcdef", 32)
    h = h[:12] + "4" + h[13:16] + R.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hexs(n):
    return rs("0123456789abcdef", n)


def b64blob(n):
    return base64.b64encode(bytes(R.randrange(256) for _ in range(n))).decode()


FILLER = [
    "The service reads its configuration once at start-up and keeps it in memory.",
    "Each worker handles one queue and reports its progress to the coordinator.",
    "When a request fails, the client retries with exponential backoff and jitter.",
    "We migrated the reporting jobs to the new scheduler during the last sprint.",
    "The dashboard shows latency percentiles, error rates and saturation per region.",
    "Caching the rendered templates halved the time spent in the view layer.",
    "Our on-call rotation changes every Monday morning at the stand-up meeting.",
    "The design review asked for clearer ownership of the ingestion pipeline.",
    "Feature flags let us roll out the change gradually and roll it back quickly.",
    "Logs are shipped to the central store and kept for the retention period.",
    "The team agreed to deprecate the old endpoint after the next major release.",
    "Integration tests run against a disposable database created for each build.",
    "Please summarise the main risks and propose mitigations for each of them.",
    "The quarterly planning document lists goals, non-goals and open questions.",
    "A small number of customers reported slow page loads in the evening hours.",
    "The vendor contract covers support, maintenance and security updates.",
    "We should document the fallback procedure before the maintenance window.",
    "Load balancers drain connections gracefully before instances are replaced.",
    "The migration script is idempotent, so running it twice does no harm.",
    "Accessibility checks are now part of the continuous integration pipeline.",
    "The finance team needs the cost breakdown by project before the offsite.",
    "Backups are encrypted at rest and restored weekly to verify their integrity.",
    "Onboarding material explains the architecture, the tooling and the rituals.",
    "The incident review found no single root cause but several contributing factors.",
    "Translations for the new screens are pending review by the localisation team.",
    "Memory usage grows slowly under sustained load, which suggests a leak.",
    "The proposal replaces nightly batch exports with an event-driven stream.",
    "Rate limits protect the shared cluster from a single noisy tenant.",
    "Developers can run the whole stack locally with a single command.",
    "The style guide prefers short functions, clear names and explicit errors.",
]


def filler(nbytes):
    out = []
    size = 0
    while size < nbytes:
        para = " ".join(R.choice(FILLER) for _ in range(R.randrange(4, 9)))
        out.append(para)
        size += len(para) + 2
    return "\n\n".join(out)


ENTRIES = []
IDS = set()


def lab(det, value, also=None, raw=None):
    d = {"detector": det, "value": value}
    if raw is not None and raw != value:
        d["raw"] = raw
    if also:
        d["also"] = also
    return d


SECRET_ALSO = ["generic_secret"]


def add(cat, text=None, body=None, expect=(), api=None):
    api = api or R.choice(["openai", "anthropic"])
    eid = f"{cat}-{sum(1 for e in ENTRIES if e['category'] == cat) + 1:03d}"
    assert eid not in IDS
    IDS.add(eid)
    e = {"id": eid, "api": api, "category": cat}
    hay = text if text is not None else body
    for x in expect:
        spelt = x.get("raw", x["value"])
        assert spelt in hay, (eid, x)
    if text is not None:
        e["text"] = text
    else:
        e["body"] = body
    e["expect"] = list(expect)
    ENTRIES.append(e)


# ---------------------------------------------------------------- support tickets
TICKET_OPEN = ["Hi team,", "Hello,", "Dear support,", "Good morning,", "Hi there,"]
TICKET_CLOSE = ["Thanks, {n}", "Best regards,\n{n}", "Cheers, {n}", "Kind regards, {n}"]


def ticket_positive():
    first, last = name()
    n = f"{first} {last}"
    parts, exp = [], []
    kinds = R.sample(["email", "phone", "credit_card", "iban", "us_ssn"], R.randrange(1, 4))
    order = f"#{R.randrange(100000, 999999)}"
    parts.append(R.choice(TICKET_OPEN))
    parts.append(R.choice([
        f"My order {order} arrived damaged and I would like a refund.",
        f"I was charged twice for order {order} last week.",
        f"I cannot log in to my account since yesterday's update.",
        f"Please update the billing details on my subscription.",
        f"The invoice for order {order} shows the wrong company name.",
    ]))
    for k in kinds:
        if k == "email":
            v = email(first, last)
            parts.append(R.choice([f"You can reach me at {v}.", f"My account email is {v}",
                                   f"Please reply to <{v}> rather than the old address.",
                                   f"Send the receipt to mailto:{v} please."]))
        elif k == "phone":
            v = phone()
            parts.append(R.choice([f"Call me on {v} after 5pm.", f"My mobile: {v}",
                                   f"Phone number on file should be {v} (not the landline)."]))
        elif k == "credit_card":
            v = card()
            parts.append(R.choice([f"The card used was {v}, expiry 09/27.",
                                   f"Card number: {v}", f"Please refund to the card {v}."]))
        elif k == "iban":
            v = iban()
            parts.append(R.choice([f"Refund to IBAN {v} please.", f"My bank account: {v}",
                                   f"IBAN: {v} (account holder {n})"]))
        else:
            v = ssn()
            parts.append(R.choice([f"For the tax form, my SSN is {v}.", f"SSN: {v}",
                                   f"They asked for my social security number ({v}) again."]))
        exp.append(lab(k, v))
    parts.append(R.choice(TICKET_CLOSE).format(n=n))
    return "\n".join(parts), exp


for _ in range(48):
    t, e = ticket_positive()
    add("ticket", text=t, expect=e)

# ---------------------------------------------------------------- code and config secrets


def env_file():
    exp, lines = [], ["# .env -- local development", f"APP_ENV=staging", f"PORT=8080",
                      f"LOG_LEVEL=debug"]
    k = R.randrange(6)
    if k == 0:
        a, s = aws_key(), aws_secret()
        lines += [f"AWS_ACCESS_KEY_ID={a}", f"AWS_SECRET_ACCESS_KEY={s}", "AWS_REGION=eu-central-1"]
        exp += [lab("aws_access_key", a, SECRET_ALSO), lab("generic_secret", s)]
    elif k == 1:
        v = openai_key()
        lines += [f"OPENAI_API_KEY={v}", "OPENAI_MODEL=gpt-4o-mini"]
        exp.append(lab("openai_key", v, SECRET_ALSO))
    elif k == 2:
        v = anthropic_key()
        lines += [f"ANTHROPIC_API_KEY={v}", "ANTHROPIC_MODEL=claude-3-5-sonnet-latest"]
        exp.append(lab("anthropic_key", v, SECRET_ALSO))
    elif k == 3:
        v = github_token()
        lines += [f"GITHUB_TOKEN={v}", "GITHUB_REPO=acme/widgets"]
        exp.append(lab("github_token", v, SECRET_ALSO))
    elif k == 4:
        v = gsecret()
        lines += ["DB_HOST=db.internal", "DB_USER=app", f"DB_PASSWORD={v}"]
        exp.append(lab("generic_secret", v))
    else:
        v = jwt()
        lines += [f"SESSION_TOKEN={v}"]
        exp.append(lab("jwt", v, SECRET_ALSO))
    ask = R.choice(["Why does my app not pick up these variables?\n",
                    "Can you convert this .env into a docker-compose environment block?\n",
                    "Which of these settings are required in production?\n"])
    return ask + "\n".join(lines) + "\n", exp


def yaml_file():
    exp = []
    k = R.randrange(4)
    if k == 0:
        v = gsecret()
        y = f"""database:
  host: postgres.internal
  port: 5432
  user: billing
  password: "{v}"
pool:
  max_size: 20
"""
        exp.append(lab("generic_secret", v))
    elif k == 1:
        v = github_token()
        y = f"""name: release
on: [push]
jobs:
  publish:
    runs-on: ubuntu-latest
    env:
      GH_TOKEN: {v}
    steps:
      - uses: actions/checkout@v4
      - run: make release
"""
        exp.append(lab("github_token", v, SECRET_ALSO))
    elif k == 2:
        v = openai_key()
        y = f"""llm:
  provider: openai
  model: gpt-4o
  api_key: {v}
  temperature: 0.2
"""
        exp.append(lab("openai_key", v, SECRET_ALSO))
    else:
        v = gsecret()
        y = f"""oauth:
  client_id: dashboard-web
  client_secret: {v}
  redirect_uri: https://dashboard.example.com/callback
"""
        exp.append(lab("generic_secret", v))
    ask = R.choice(["Please review this config file:\n", "Why does this YAML fail to load?\n",
                    "Convert this to TOML:\n"])
    return ask + y, exp


def terraform_file():
    a, s = aws_key(), aws_secret()
    t = f"""provider "aws" {{
  region     = "us-east-1"
  access_key = "{a}"
  secret_key = "{s}"
}}

resource "aws_s3_bucket" "logs" {{
  bucket = "acme-build-logs"
}}
"""
    return R.choice(["terraform plan fails with this provider block, why?\n",
                     "Refactor this into variables:\n"]) + t, [
        lab("aws_access_key", a, SECRET_ALSO), lab("generic_secret", s)]


def python_file():
    k = R.randrange(5)
    if k == 0:
        v = anthropic_key()
        code = f"""import anthropic

client = anthropic.Anthropic(api_key="{v}")
msg = client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=256,
                             messages=[{{"role": "user", "content": "hello"}}])
print(msg.content)
"""
        exp = [lab("anthropic_key", v, SECRET_ALSO)]
    elif k == 1:
        v = openai_key()
        code = f"""from openai import OpenAI

client = OpenAI(api_key="{v}")
resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
"""
        exp = [lab("openai_key", v, SECRET_ALSO)]
    elif k == 2:
        v = pem()
        code = f'''PRIVATE_KEY = """{v}"""

def sign(payload: bytes) -> bytes:
    key = load_pem_private_key(PRIVATE_KEY.encode(), password=None)
    return key.sign(payload)
'''
        exp = [lab("private_key", v, SECRET_ALSO)]
    elif k == 3:
        v = gsecret()
        code = f"""import requests

API_TOKEN = "{v}"
resp = requests.get("https://api.example.com/v2/items", headers={{"Authorization": f"Bearer {{API_TOKEN}}"}})
resp.raise_for_status()
"""
        exp = [lab("generic_secret", v)]
    else:
        v = jwt()
        code = f"""headers = {{
    "Authorization": "Bearer {v}",
    "Accept": "application/json",
}}
r = httpx.get(url, headers=headers, timeout=10)
"""
        exp = [lab("jwt", v, SECRET_ALSO)]
    ask = R.choice(["Why does this raise an exception?\n", "Add type hints to this:\n",
                    "Write a unit test for this code:\n"])
    return ask + "```python\n" + code + "```\n", exp


def misc_secret():
    k = R.randrange(4)
    if k == 0:
        v = pem()
        return ("I generated this key for the deploy user, is the format right?\n\n" + v + "\n",
                [lab("private_key", v, SECRET_ALSO)])
    if k == 1:
        v = github_token()
        return (f"git clone https://{v}@github.com/acme/private-repo.git fails with 403, why?",
                [lab("github_token", v, SECRET_ALSO)])
    if k == 2:
        v = jwt()
        return (f"Decode this token and tell me when it expires: {v}",
                [lab("jwt", v, SECRET_ALSO)])
    v = gsecret()
    return (f"curl -H 'X-Api-Key: {v}' https://api.example.com/v1/reports returns 401. Is the header wrong?",
            [lab("generic_secret", v)])


for f in [env_file] * 14 + [yaml_file] * 12 + [terraform_file] * 6 + [python_file] * 14 + [misc_secret] * 12:
    t, e = f()
    add("code", text=t, expect=e)

# ---------------------------------------------------------------- secrets in chat, shell, JSON
GEN = {"jwt": jwt, "private_key": pem, "openai_key": openai_key, "anthropic_key": anthropic_key,
       "github_token": github_token, "aws_access_key": aws_key, "generic_secret": gsecret}
CHAT_CTX = {
    "jwt": ["My session cookie is {v} -- why does the API say it expired?",
            "{{\"Authorization\": \"Bearer {v}\"}} is what the frontend sends; is the header right?",
            "curl -H \"Authorization: Bearer {v}\" https://api.example.com/me returns 403."],
    "private_key": ["ssh fails with 'invalid format' for this key:\n{v}\nWhat's wrong?",
                    "Convert this key to PKCS#8 please:\n\n{v}\n",
                    "kubectl create secret tls web --key key.pem, where key.pem is:\n{v}"],
    "openai_key": ["I get 401 with the key {v}, is it revoked?",
                   "export OPENAI_API_KEY=\"{v}\" && python app.py fails, why?",
                   "{{\"openai\": {{\"key\": \"{v}\", \"model\": \"gpt-4o\"}}}}"],
    "anthropic_key": ["The key {v} stopped working after we changed workspaces.",
                      "x-api-key: {v}\nanthropic-version: 2023-06-01\nWhat other headers do I need?",
                      "settings = {{\"anthropic_api_key\": \"{v}\"}}  # TODO move to vault"],
    "github_token": ["Our bot uses {v} and gets rate limited, why?",
                     "git remote set-url origin https://x-access-token:{v}@github.com/acme/app.git",
                     "gh auth login --with-token <<< {v}"],
    "aws_access_key": ["aws configure asks for the access key id; I typed {v}, is that the right field?",
                       "The CloudTrail event shows accessKeyId {v} calling DeleteBucket.",
                       "[default]\naws_access_key_id = {v}\nregion = eu-west-1"],
    "generic_secret": ["mysql -u root --password={v} -h db.internal",
                       "The webhook secret is {v}; how do I verify the signature in Node?",
                       "spring.datasource.password={v}\nspring.datasource.url=jdbc:postgresql://db/app"],
}
for det in sorted(CHAT_CTX):
    for i in range(10 if det != "generic_secret" else 8):
        v = GEN[det]()
        t = CHAT_CTX[det][i % len(CHAT_CTX[det])].format(v=v)
        add("secret-chat", text=t, expect=[lab(det, v, None if det == "generic_secret" else SECRET_ALSO)])

# ---------------------------------------------------------------- logs


def log_lines():
    exp = []
    lines = []
    ips = set()
    emails = set()
    for _ in range(R.randrange(4, 12)):
        ts = f"2025-0{R.randrange(1, 10)}-{R.randrange(10, 29)}T{R.randrange(10, 24)}:{R.randrange(10, 60)}:{R.randrange(10, 60)}Z"
        k = R.randrange(3)
        if k == 0:
            ip = ipv4()
            ips.add(ip)
            lines.append(f'{ip} - - [{ts}] "GET /api/v1/orders/{R.randrange(1000, 99999)} HTTP/1.1" '
                         f'{R.choice([200, 200, 404, 500])} {R.randrange(200, 9000)} "-" "curl/8.5.0"')
        elif k == 1:
            em = email()
            emails.add(em)
            lines.append(f"{ts} INFO auth: login succeeded user={em} request_id={uuid4()}")
        else:
            lines.append(f"{ts} WARN worker: job {uuid4()} took {R.randrange(1000, 9000)}ms (retry {R.randrange(1, 4)})")
    if not ips and not emails:
        ip = ipv4()
        ips.add(ip)
        lines.append(f"2025-03-01T10:00:00Z ERROR upstream {ip}:8443 connection refused")
    for ip in sorted(ips):
        exp.append(lab("ipv4", ip))
    for em in sorted(emails):
        exp.append(lab("email", em))
    # an address that is a prefix of another would make labels ambiguous
    allv = sorted(ips | emails)
    for a in allv:
        for b in allv:
            assert a == b or a not in b
    return R.choice(["What is going wrong in these logs?\n", "Summarise these log lines:\n",
                     "Find the failing requests here:\n"]) + "\n".join(lines) + "\n", exp


for _ in range(22):
    t, e = log_lines()
    add("logs", text=t, expect=e)

# ---------------------------------------------------------------- multilingual


def ml_positive(lang):
    first, last = name()
    em, ph, ib, cc = email(first, last), phone(), iban(), card()
    order = R.randrange(1000000, 9999999)
    T = {
        "de": (f"Sehr geehrte Damen und Herren,\nmeine Bestellung Nr. {order} ist nicht angekommen. "
               f"Bitte kontaktieren Sie mich unter {em} oder telefonisch unter {ph}. "
               f"Die Erstattung bitte auf mein Konto mit der IBAN {ib}.\nMit freundlichen Grüßen\n{first} {last}",
               [("email", em), ("phone", ph), ("iban", ib)]),
        "fr": (f"Bonjour,\nJ'ai été débité deux fois pour la commande {order}. Ma carte bancaire est {cc}. "
               f"Vous pouvez me joindre à l'adresse {em}.\nCordialement, {first} {last}",
               [("credit_card", cc), ("email", em)]),
        "es": (f"Hola, necesito cambiar la dirección de envío del pedido {order}. "
               f"Mi correo es {em} y mi teléfono {ph}. ¡Gracias!",
               [("email", em), ("phone", ph)]),
        "ja": (f"お世話になっております。注文番号{order}の件でご連絡しました。"
               f"返信はメールアドレス{em}までお願いします。電話番号は{ph}です。",
               [("email", em), ("phone", ph)]),
        "zh": (f"您好，我的订单号是{order}，至今还没有收到。请通过邮箱{em}或电话{ph}联系我。"
               f"退款请打到我的账户 {ib}。",
               [("email", em), ("phone", ph), ("iban", ib)]),
        "ru": (f"Здравствуйте! Мой заказ №{order} пришёл повреждённым. "
               f"Свяжитесь со мной по адресу {em} или по телефону {ph}. Номер карты для возврата: {cc}.",
               [("email", em), ("phone", ph), ("credit_card", cc)]),
        "ar": (f"مرحبا، لم يصل طلبي رقم {order} بعد. يرجى التواصل معي عبر البريد الإلكتروني {em} "
               f"أو الهاتف {ph}. شكرا لكم.",
               [("email", em), ("phone", ph)]),
    }
    t, e = T[lang]
    return t, [lab(d, v) for d, v in e]


def ml_benign(lang):
    order = R.randrange(1000000, 9999999)
    price = f"{R.randrange(10, 999)},{R.randrange(10, 99)}"
    date = f"{R.randrange(10, 28)}.0{R.randrange(1, 9)}.2025"
    T = {
        "de": [f"Können Sie mir erklären, wie ich die Bestellung {order} vom {date} stornieren kann? Der Betrag war {price} €.",
               "Bitte fasse den folgenden Absatz in drei Sätzen zusammen: Die Stadtwerke erweitern das Fernwärmenetz im Norden der Stadt."],
        "fr": [f"Pouvez-vous traduire ce paragraphe en anglais ? La réunion du {date} est reportée à la semaine prochaine.",
               f"Quel est le délai de livraison pour la commande {order} d'un montant de {price} € ?"],
        "es": [f"¿Cuál es la diferencia entre «ser» y «estar»? Dame ejemplos con fechas como el {date}.",
               f"Mi pedido {order} costó {price} euros; ¿cómo solicito la factura?"],
        "ja": [f"次の文章を要約してください。会議は{date}に延期されました。資料は前日までに共有します。",
               f"注文番号{order}の配送状況を確認する方法を教えてください。"],
        "zh": [f"请帮我把这段话翻译成英文：会议改到{date}举行，请大家提前准备材料。",
               f"订单{order}的金额是{price}元，请问如何申请发票？"],
        "ru": [f"Объясните, пожалуйста, разницу между «дом» и «здание». Встреча назначена на {date}.",
               f"Сколько стоит доставка заказа {order}? Сумма заказа {price} руб."],
        "ar": [f"هل يمكنك تلخيص هذا النص؟ تم تأجيل الاجتماع إلى {date} بسبب الظروف الجوية.",
               f"ما هي مدة توصيل الطلب رقم {order}؟ المبلغ الإجمالي {price} درهم."],
    }
    return T[lang]


LANGS = ["de", "fr", "es", "ja", "zh", "ru", "ar"]
for lang in LANGS:
    for _ in range(3):
        t, e = ml_positive(lang)
        add(f"ml-{lang}", text=t, expect=e)
    for t in ml_benign(lang):
        add(f"ml-{lang}-benign", text=t, expect=[])

# ---------------------------------------------------------------- long documents
BURY = [
    lambda: (lambda v: (f"Note for ops: the staging key is {v}, rotate it after the demo.", lab("aws_access_key", v)))(aws_key()),
    lambda: (lambda v: (f"Contact for escalations: {v}", lab("email", v)))(email()),
    lambda: (lambda v: (f"The test payment went through on card {v} this morning.", lab("credit_card", v)))(card()),
    lambda: (lambda v: (f"export ANTHROPIC_API_KEY={v}", lab("anthropic_key", v, SECRET_ALSO)))(anthropic_key()),
    lambda: (lambda v: (f"Appendix C: deploy key\n{v}", lab("private_key", v, SECRET_ALSO)))(pem()),
    lambda: (lambda v: (f"Wire the deposit to {v} before Friday.", lab("iban", v)))(iban()),
    lambda: (lambda v: (f"Employee record: SSN {v}, start date next month.", lab("us_ssn", v)))(ssn()),
    lambda: (lambda v: (f"The bastion host is at {v}, port 22.", lab("ipv4", v)))(ipv4()),
    lambda: (lambda v: (f"CI uses the token {v} to publish packages.", lab("github_token", v, SECRET_ALSO)))(github_token()),
    lambda: (lambda v: (f"Call the hotline at {v} if the dashboard is down.", lab("phone", v)))(phone()),
]
for i, b in enumerate(BURY):
    sentence, label = b()
    size = R.randrange(22000, 60000)
    pos = R.uniform(0.6, 0.95)
    t = filler(int(size * pos)) + "\n\n" + sentence + "\n\n" + filler(int(size * (1 - pos)))
    add("long", text="Summarise this design document for a newcomer:\n\n" + t, expect=[label])

for i in range(6):
    add("long-benign", text="Proofread this document and list unclear sentences:\n\n" + filler(R.randrange(21000, 40000)),
        expect=[])


# ---------------------------------------------------------------- bodies: escapes, tool calls, parts
def jdump(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def esc_at(s):
    return s.replace("@", "\\u0040")


def openai_body(messages, extra=None):
    o = {"model": R.choice(["gpt-4o", "gpt-4o-mini"]), "messages": messages}
    if extra:
        o.update(extra)
    return jdump(o)


def anthropic_body(messages, system=None):
    o = {"model": "claude-3-5-sonnet-latest", "max_tokens": 1024}
    if system is not None:
        o["system"] = system
    o["messages"] = messages
    return jdump(o)


for i in range(8):  # \u0040 in e-mail addresses, plus other escapes
    em = email()
    body_plain = openai_body([{"role": "system", "content": "You are a helpful assistant."},
                              {"role": "user", "content": f"Draft a reply to {em} about the late delivery."}]) \
        if i % 2 == 0 else anthropic_body([{"role": "user", "content": f"Draft a reply to {em} about the late delivery."}])
    body = body_plain.replace(em, esc_at(em))
    add("escape", body=body, api="openai" if i % 2 == 0 else "anthropic",
        expect=[lab("email", em, raw=esc_at(em))])

for i in range(4):  # other escapes inside and around values
    ph = phone()
    cc = card_digits()
    raw_ph = ph.replace("+", "\\u002b")
    raw_cc = cc[:4] + "\\u0020" + cc[4:8] + "\\u0020" + cc[8:12] + "\\u0020" + cc[12:]
    val_cc = cc[:4] + " " + cc[4:8] + " " + cc[8:12] + " " + cc[12:]
    content = f"Stra\\u00dfe 12, Tel. {raw_ph}, Karte {raw_cc} \\/ bitte pr\\u00fcfen \\\"dringend\\\""
    body = '{"model":"gpt-4o","messages":[{"role":"user","content":"' + content + '"}]}'
    json.loads(body)
    add("escape", body=body, api="openai",
        expect=[lab("phone", ph, raw=raw_ph), lab("credit_card", val_cc, raw=raw_cc)])

for i in range(3):  # PEM key inside a JSON string: newlines are \n escapes
    k = pem()
    body = openai_body([{"role": "user", "content": "Is this key encrypted?\n" + k}])
    add("escape", body=body, api="openai",
        expect=[lab("private_key", k, SECRET_ALSO, raw=json.dumps(k)[1:-1])])

for i in range(10):  # OpenAI tool calls: arguments (a JSON string) and tool results
    first, last = name()
    em, ph, cc = email(first, last), phone(), card()
    args = jdump({"customer_email": em, "phone": ph})
    result = jdump({"status": "found", "card_on_file": cc, "customer": f"{first} {last}"})
    msgs = [{"role": "user", "content": "Look up the customer and summarise their account."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{rs(ALNUM, 12)}", "type": "function",
                 "function": {"name": "lookup_customer", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]
    add("tool-openai", body=openai_body(msgs, {"tools": [{"type": "function", "function": {
        "name": "lookup_customer", "parameters": {"type": "object", "properties": {
            "customer_email": {"type": "string"}}}}}]}), api="openai",
        expect=[lab("email", em), lab("phone", ph), lab("credit_card", cc)])

for i in range(10):  # Anthropic tool_use input (an object) and tool_result content
    em, ib = email(), iban()
    v = github_token() if i % 2 else aws_key()
    det = "github_token" if i % 2 else "aws_access_key"
    result = [{"type": "text", "text": f"Deploy config loaded. token={v}"}] if i % 3 else f"Deploy config loaded. token={v}"
    msgs = [{"role": "user", "content": f"Set up payouts for {em}."},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I will look up the payout account."},
                {"type": "tool_use", "id": f"toolu_{rs(ALNUM, 16)}", "name": "payout_setup",
                 "input": {"recipient": em, "iban": ib}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": result}]}]
    add("tool-anthropic", body=anthropic_body(msgs), api="anthropic",
        expect=[lab("email", em), lab("iban", ib), lab(det, v, SECRET_ALSO)])

for i in range(8):  # system prompts and content parts
    em, ip = email(), ipv4()
    if i % 2 == 0:
        body = anthropic_body([{"role": "user", "content": [{"type": "text", "text": "Who should I contact?"}]}],
                              system=[{"type": "text", "text": f"The on-call engineer is {em}; the VPN gateway is {ip}."}]
                              if i % 4 == 0 else f"The on-call engineer is {em}; the VPN gateway is {ip}.")
        api = "anthropic"
    else:
        body = openai_body([{"role": "developer" if i % 4 == 1 else "system",
                             "content": f"The on-call engineer is {em}."},
                            {"role": "user", "content": [
                                {"type": "text", "text": f"Is {ip} inside our VPN range?"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64blob(300)}}]}])
        api = "openai"
    add("parts", body=body, api=api, expect=[lab("email", em), lab("ipv4", ip)])

# ================================================================= benign look-alikes

for _ in range(16):  # 13-19 digit numbers that fail Luhn
    v = card(valid=False)
    add("benign-number", text=R.choice([
        f"Tracking number {v} shows no movement since Monday, what should I do?",
        f"Reference {v} appears on the bank statement; what does it mean?",
        f"Our ERP exported the id {v} twice, how can I dedupe the rows?",
        f"Is {v} a valid card number? It was rejected at checkout.",
    ]), expect=[])

for _ in range(10):
    add("benign-order", text=R.choice([
        f"Order #{R.randrange(10 ** 6, 10 ** 9)} was split into two shipments; why?",
        f"Invoice INV-2025-{R.randrange(10000, 99999)} lists {R.randrange(2, 40)} items at {R.randrange(10, 99)}.{R.randrange(10, 99)} EUR each.",
        f"Ticket {R.randrange(10000, 99999)} was closed without a reply.",
        f"Customer number {R.randrange(10 ** 7, 10 ** 8)} wants to merge accounts {R.randrange(10 ** 5, 10 ** 6)} and {R.randrange(10 ** 5, 10 ** 6)}.",
        f"PO {R.randrange(4500000000, 4599999999)} needs approval from procurement.",
    ]), expect=[])

for _ in range(16):
    k = R.randrange(4)
    if k == 0:
        t = f"Request {uuid4()} failed, and so did {uuid4()}. Are these retries related?"
    elif k == 1:
        t = f"git revert {hexs(40)} broke the build; commit {hexs(7)} was the parent."
    elif k == 2:
        t = f"The download's sha256 is {hexs(64)} but the release page says {hexs(64)}."
    else:
        t = f"docker pull python@sha256:{hexs(64)} takes forever; which tag is that?"
    add("benign-id", text=t, expect=[])

for _ in range(12):
    k = R.randrange(6)
    if k == 0:
        t = f"After upgrading to Windows 10.0.{R.randrange(19041, 22631)}.{R.randrange(1000, 4000)} the driver stopped loading."
    elif k == 1:
        t = f"User agent Chrome/{R.randrange(110, 131)}.0.{R.randrange(5000, 6800)}.{R.randrange(50, 200)} renders the page incorrectly."
    elif k == 2:
        t = f"We pinned the package to version {R.randrange(1, 9)}.{R.randrange(0, 30)}.{R.randrange(0, 20)}; release {R.randrange(1, 9)}.{R.randrange(0, 9)}.{R.randrange(0, 9)}.{R.randrange(0, 9)}.{R.randrange(0, 9)} is broken."
    elif k == 3:
        t = f"The firmware v{R.randrange(1, 9)}.{R.randrange(0, 9)}.{R.randrange(0, 9)}.{R.randrange(0, 9)} changelog mentions a fix for the fan curve."
    elif k == 4:
        t = f"Build {R.randrange(2023, 2026)}.{R.randrange(1000, 1300)}.{R.randrange(300, 999)}.{R.randrange(1, 99)} of the installer fails on macOS."
    else:
        t = f"The document is dated 2025.{R.randrange(10, 12)}.{R.randrange(10, 28)} and references section 4.2.1."
    add("benign-version", text=t, expect=[])

for _ in range(10):
    k = R.randrange(4)
    if k == 0:
        t = f"Schedule the job for 2025-{R.randrange(10, 12)}-{R.randrange(10, 28)}T{R.randrange(10, 23)}:{R.randrange(10, 59)}:00+01:00 and again at 23:59:59."
    elif k == 1:
        t = f"The event at epoch {R.randrange(1700000000, 1799999999)} and the one at {R.randrange(1700000000, 1799999999)} look identical."
    elif k == 2:
        t = f"Meeting moved from 03/{R.randrange(10, 28)}/2025 2:30 PM to {R.randrange(10, 28)}/04/2025 09:15."
    else:
        t = f"The log shows 2025-0{R.randrange(1, 9)}-{R.randrange(10, 28)} {R.randrange(10, 23)}:{R.randrange(10, 59)}:{R.randrange(10, 59)}.{R.randrange(100, 999)} for both writes."
    add("benign-date", text=t, expect=[])

for _ in range(14):
    wrong_len = R.random() < 0.3
    v = iban(valid=wrong_len, wrong_length=wrong_len) if wrong_len else iban(valid=False)
    add("benign-iban", text=R.choice([
        f"The bank rejected IBAN {v} as invalid. Can you spot the typo?",
        f"Is {v} a real account number? The check fails in our form.",
    ]), expect=[])

for _ in range(12):
    v = ssn(valid=False)
    add("benign-ssn", text=R.choice([
        f"Our validator rejects {v}; is that pattern ever issued?",
        f"The test fixture uses {v} as an obviously invalid number.",
    ]), expect=[])

for _ in range(10):
    k = R.randrange(4)
    if k == 0:
        t = f"Part number {R.randrange(1000, 9999)}-{R.randrange(1000, 9999)}-{R.randrange(10, 99)} is out of stock; is there a substitute?"
    elif k == 1:
        t = f"The ISBN 978-{R.randrange(0, 9)}-{R.randrange(100, 999)}-{R.randrange(10000, 99999)}-{R.randrange(0, 9)} is printed on the back cover."
    elif k == 2:
        t = f"Model RX-{R.randrange(100, 999)}-{R.randrange(1000, 9999)} ships with firmware {R.randrange(1, 9)}.{R.randrange(0, 9)}."
    else:
        t = f"The pallet label reads LOT {R.randrange(10, 99)}/{R.randrange(100, 999)}/{R.randrange(1000, 9999)} and weight {R.randrange(100, 900)} kg."
    add("benign-code", text=t, expect=[])

for _ in range(14):
    k = R.randrange(5)
    if k == 0:
        t = "Is this a valid public key?\n" + pem_public()
    elif k == 1:
        t = f"Here is the icon: data:image/png;base64,{b64blob(R.randrange(200, 600))}"
    elif k == 2:
        t = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{b64blob(32)[:43]} deploy@buildbox -- where do I put this public key?"
    elif k == 3:
        t = f"The attachment field contains {b64blob(R.randrange(100, 400))} -- how do I decode it in Python?"
    else:
        t = "Verify this certificate chain:\n" + pem_public("CERTIFICATE") + "\n" + pem_public("CERTIFICATE")
    add("benign-blob", text=t, expect=[])

SECRET_LOOKALIKES = [
    lambda: "Our GitHub tokens start with ghp_ and our AWS keys with AKIA; how do we scan for them?",
    lambda: "password: ${DB_PASSWORD}\nuser: ${DB_USER}\n-- why is the variable not expanded?",
    lambda: "api_key: <your-api-key-here>\nendpoint: https://api.example.com",
    lambda: "The default password is changeme, please change it on first login.",
    lambda: "Set OPENAI_API_KEY=sk-... in your shell before running the script.",
    lambda: "Reset your password at https://accounts.example.com/reset and then log in again.",
    lambda: f"The IAM user id is AIDA{rs(AWS_ALPHA, 16)} and the role id AROA{rs(AWS_ALPHA, 16)}; are these secret?",
    lambda: "token_limit: 4096\nmax_tokens: 512\ntemperature: 0.7",
    lambda: f"The token count was {R.randrange(1000, 90000)} for that prompt, and the password policy requires 12 characters.",
    lambda: f"kubectl annotate deploy web config-hash={hexs(16)} -- is that enough to trigger a rollout?",
    lambda: "secret_name: prod-db-credentials\nsecret_namespace: payments",
    lambda: f"The JWT header alone decodes to eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 -- what does alg mean?",
    lambda: "Use the publishable key pk_live_ prefix in the browser and never the secret key.",
    lambda: "Rotate the anthropic key (sk-ant-...) every 90 days per policy.",
    lambda: "PASSWORD_MIN_LENGTH=12\nPASSWORD_REQUIRE_SYMBOL=true\nSESSION_TIMEOUT_MINUTES=30",
    lambda: "Why does my regex [A-Za-z0-9]{40} match so many things in the repository?",
]
for f in SECRET_LOOKALIKES:
    add("benign-secretlike", text=f(), expect=[])

EMAIL_LOOKALIKES = [
    "Thanks @jdoe and @maria_s for the review!",
    "npm install lodash@4.17.21 react@18.2.0 -- peer dependency warning, why?",
    "In Flask, @app.route('/users') and @login_required are stacked in which order?",
    "The CSS rule @media (max-width: 600px) is ignored on Safari.",
    "pip install requests==2.31.0 and then import it in the @dataclass module",
    "Python decorators like @staticmethod and @property, explain the difference.",
    "In Java, @Override and @Deprecated annotations are both present on the method.",
    "Use the at sign (@) to mention a teammate in the chat.",
]
for t in EMAIL_LOOKALIKES:
    add("benign-emailish", text=t, expect=[])

CODE_BENIGN = [
    "```python\nimport os\n\nDB_PASSWORD = os.environ[\"DB_PASSWORD\"]\nAPI_KEY = os.getenv(\"API_KEY\", \"\")\n```\nIs reading secrets like this safe?",
    "resource \"aws_iam_access_key\" \"ci\" {\n  user = aws_iam_user.ci.name\n}\n\noutput \"secret\" {\n  value     = aws_iam_access_key.ci.secret\n  sensitive = true\n}",
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\ntype: Opaque\nstringData:\n  password: ${APP_PASSWORD}",
    "for i in range(10):\n    print(i * 255, hex(i), oct(i))",
    "SELECT id, created_at FROM orders WHERE total > 1000 AND status = 'paid' ORDER BY created_at DESC LIMIT 50;",
    "const port = process.env.PORT || 3000;\napp.listen(port, () => console.log(`listening on ${port}`));",
    "func main() {\n\tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)\n\tdefer cancel()\n}",
    "docker run -p 8080:80 -e TOKEN=$TOKEN nginx:1.25.3",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 1 << 16); return 0; }",
    "Explain this regex: ^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$",
]
for t in CODE_BENIGN:
    add("benign-code-file", text=t, expect=[])

for _ in range(8):
    lines = []
    for _ in range(R.randrange(5, 15)):
        lines.append(f"2025-0{R.randrange(1, 9)}-{R.randrange(10, 28)}T{R.randrange(10, 23)}:{R.randrange(10, 59)}:{R.randrange(10, 59)}Z "
                     f"{R.choice(['INFO', 'WARN', 'DEBUG'])} {R.choice(['scheduler', 'api', 'worker'])}: "
                     f"{R.choice(['job', 'request', 'batch'])} {uuid4()} finished in {R.randrange(1, 9999)}ms "
                     f"(attempt {R.randrange(1, 5)}, queue depth {R.randrange(0, 500)})")
    add("benign-logs", text="Anything unusual in these logs?\n" + "\n".join(lines), expect=[])

GENERAL = [
    "Write a haiku about autumn leaves falling in a quiet park.",
    "Explain the difference between TCP and UDP to a high-school student.",
    "What are the pros and cons of microservices compared with a monolith?",
    "Give me a recipe for a vegetarian lasagne for four people.",
    "Summarise the plot of Pride and Prejudice in five sentences.",
    "How do I compute compound interest over 12 years at 3.5 percent?",
    "Translate 'good morning, how are you?' into Italian and Portuguese.",
    "List ten interview questions for a senior backend engineer.",
    "What is 17 times 23, and how would you do it in your head?",
    "Draft a polite email declining a meeting invitation for Thursday.",
    "Explain how public-key cryptography works without any formulas.",
    "Which is faster for lookups, a hash map or a balanced tree, and why?",
]
for t in GENERAL:
    add("benign-general", text=t, expect=[])

for i in range(4):  # benign bodies with tools and system prompts
    msgs = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What's the weather in Berlin?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_w1", "type": "function",
             "function": {"name": "get_weather", "arguments": jdump({"city": "Berlin", "unit": "celsius"})}}]},
            {"role": "tool", "tool_call_id": "call_w1", "content": jdump({"temp_c": R.randrange(-5, 30), "condition": "cloudy", "observed": "2025-03-01T10:00:00Z"})}]
    add("benign-tool", body=openai_body(msgs), api="openai", expect=[])
for i in range(4):
    msgs = [{"role": "user", "content": "Convert 100 USD to EUR."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x1", "name": "fx",
                                               "input": {"from": "USD", "to": "EUR", "amount": 100}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x1",
                                          "content": jdump({"rate": 0.92, "as_of": "2025-03-01"})}]}]
    add("benign-tool", body=anthropic_body(msgs, system="You are a currency assistant. Caf\u00e9 prices in \u20ac."),
        api="anthropic", expect=[])


# ---------------------------------------------------------------- harder positives (appended
# last so that the entries above keep their random values)
HARD = [
    lambda: (lambda v: (f"Forward this to {v} please", [lab("email", v)]))(email().upper()),
    lambda: (lambda v: (f"Escalate to ops-team@eu-west.example.org and {v}", [lab("email", "ops-team@eu-west.example.org"), lab("email", v)]))(email()),
    lambda: (lambda v: (f"Contact [the owner](mailto:{v}) before merging.", [lab("email", v)]))(email()),
    lambda: (lambda v: (f'Parse this: {{"id": 42, "email": "{v}", "active": true}}', [lab("email", v)]))(email()),
    lambda: (lambda v: (f"担当者：{v}、よろしくお願いします。", [lab("email", v)]))(email()),
    lambda: (lambda v, p: (f"Kontakt: {v}; Tel. {p}", [lab("email", v), lab("phone", p)]))(
        email(), f"030 {R.randrange(2000, 9999)} {R.randrange(1000, 9999)}"),
    lambda: (lambda v: (f"Bitte ruf mich unter {v} an.", [lab("phone", v)]))(f"030 {R.randrange(2000, 9999)} {R.randrange(1000, 9999)}"),
    lambda: (lambda v: (f"Our London office: {v}", [lab("phone", v)]))(f"020 7946 0{R.randrange(100, 999)}"),
    lambda: (lambda v: (f"Appelez-moi au {v} demain.", [lab("phone", v)]))(f"06 {R.randrange(10, 99)} {R.randrange(10, 99)} {R.randrange(10, 99)} {R.randrange(10, 99)}"),
    lambda: (lambda v: (f"<a href=\"tel:{v}\">call us</a>", [lab("phone", v)]))(f"+1415555{R.randrange(100, 199):04d}"),
    lambda: (lambda v: (f"Fax: {v}", [lab("phone", v)]))(f"+49 (0)30 {R.randrange(2000000, 9999999)}"),
    lambda: (lambda v: (f"Amex on file: {v}", [lab("credit_card", v)]))((lambda d: f"{d[:4]} {d[4:10]} {d[10:]}")(
        next(x for x in (card_digits() for _ in range(100)) if len(x) == 15))),
    lambda: (lambda v: (f"Charge it to {v}, CVC on the back.", [lab("credit_card", v)]))(
        (lambda b: b + next(c for c in string.digits if luhn_ok(b + c)))("2221" + rs(string.digits, 11))),
    lambda: (lambda v: (f"card={v}&exp=1227", [lab("credit_card", v)]))(card_digits()),
    lambda: (lambda v: (f"Payout account ({v}) was closed.", [lab("iban", v)]))(iban(grouped=True)),
    lambda: (lambda v: (f"IBAN:{v}", [lab("iban", v)]))(iban(grouped=False)),
    lambda: (lambda v: (f"SSN:{v}", [lab("us_ssn", v)]))(ssn()),
    lambda: (lambda v: (f"Applicant SSN {v.replace('-', ' ')} verified.", [lab("us_ssn", v.replace('-', ' '))]))(ssn()),
    lambda: (lambda v: (f"The admin panel is at http://{v}:8080/admin", [lab("ipv4", v)]))(ipv4()),
    lambda: (lambda v: (f"Allow traffic from {v}/32 only.", [lab("ipv4", v)]))(ipv4()),
    lambda: (lambda v: (f"ssh -i key.pem ubuntu@{v}", [lab("ipv4", v)]))(ipv4()),
    lambda: (lambda v: (f"curl -H 'Authorization: token {v}' https://api.github.com/user", [lab("github_token", v, SECRET_ALSO)]))(github_token()),
    lambda: (lambda v: (f'{{"Credentials": {{"AccessKeyId": "{v}", "Expiration": "2025-03-01T12:00:00Z"}}}}', [lab("aws_access_key", v, SECRET_ALSO)]))(aws_key()),
    lambda: (lambda v: ("Windows line endings in this key, does that matter?\r\n" + v.replace("\n", "\r\n"), [lab("private_key", v.replace("\n", "\r\n"), SECRET_ALSO)]))(pem("EC PRIVATE KEY")),
    lambda: (lambda v: (f"The redirect went to https://app.example.com/cb?access_token={v}&state=xyz", [lab("jwt", v, SECRET_ALSO)]))(jwt()),
    lambda: (lambda v: (f"passwd: '{v}'", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"pwd={v} ./deploy.sh", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"headers:\n  api-key: {v}\n  accept: json", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"client = Client(token=\"{v}\")", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"Use this key: {v} (it is the staging one)", [lab("openai_key", v)]))(openai_key()),
    lambda: (lambda v: (f"ANTHROPIC_API_KEY='{v}' npm start", [lab("anthropic_key", v, SECRET_ALSO)]))(anthropic_key()),
]
for f in HARD:
    t, e = f()
    add("hard", text=t, expect=e)

BENIGN_MORE = [
    lambda: "The palette uses #ff00aa, #00ccff and #333333 for the charts.",
    lambda: f"The crash dump shows 0x7ffee4b8{hexs(4)} and 0x0000{hexs(8)} in the stack.",
    lambda: "The NIC's MAC address is 00:1A:2B:3C:4D:5E; is it locally administered?",
    lambda: f"The venue is at 52.{R.randrange(100000, 999999)}, 13.{R.randrange(100000, 999999)} (WGS84).",
    lambda: f"Der Umsatz lag bei {R.randrange(1, 9)}.{R.randrange(100, 999)}.{R.randrange(100, 999)},{R.randrange(10, 99)} € im Jahr 2024.",
    lambda: f"Die Frist endet am 0{R.randrange(1, 9)}.0{R.randrange(1, 9)}.2025 um 12:00 Uhr.",
    lambda: "Avogadro's number is about 6.022e23 and pi is 3.14159265358979323846.",
    lambda: f"Upgrade from 1.{R.randrange(2, 9)}.3-rc.4 to Python 3.11.7 broke the wheel build.",
    lambda: f"Account {R.randrange(10 ** 7, 10 ** 8)} with sort code {R.randrange(10, 99)}-{R.randrange(10, 99)}-{R.randrange(10, 99)} is a savings account.",
    lambda: f"The routing number {R.randrange(10 ** 8, 10 ** 9)} is printed on the cheque.",
    lambda: f"Our EIN is listed as {R.randrange(10, 99)}-{R.randrange(1000000, 9999999)} in the filing template.",
    lambda: "The duration P3Y6M4DT12H30M5S is ISO 8601.",
    lambda: f"Total: USD {R.randrange(1, 9)},{R.randrange(100, 999)},{R.randrange(100, 999)}.00 across {R.randrange(10, 99)} invoices.",
    lambda: "After 1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 the Ruy Lopez continues.",
    lambda: f"The SNMP OID 1.3.6.1.4.1.{R.randrange(1000, 60000)}.1.2 returns the fan speed.",
    lambda: f"Kubernetes pod CIDR is fd00::/8 and the IPv6 address fe80::1ff:fe23:4567:890a is link-local.",
    lambda: f"Room {R.randrange(100, 999)}, floor {R.randrange(1, 30)}, badge {R.randrange(10000, 99999)}.",
    lambda: f"The SKU 2023-{R.randrange(1000, 9999)}-{R.randrange(100, 999)} ships in {R.randrange(2, 9)} days.",
    lambda: f"Ticket counts per week: {', '.join(str(R.randrange(100, 999)) for _ in range(8))}.",
    lambda: f"Temperature readings: {' '.join(f'{R.randrange(10, 40)}.{R.randrange(0, 9)}' for _ in range(10))}",
    lambda: f"Base64 of the config is {b64blob(45)} and its md5 is {hexs(32)}.",
    lambda: f"git log shows Author: Jane Doe and Date: Mon Mar 3 10:{R.randrange(10, 59)}:00 2025 +0100.",
    lambda: "The function tokenize() splits on whitespace; the author field is optional.",
    lambda: "Password rules: at least 12 characters, one digit, one symbol.",
    lambda: "In the UI, click Secrets > New secret and paste the value there (do not paste it here).",
    lambda: f"The certificate fingerprint is SHA256:{b64blob(32)[:43]}",
    lambda: f"Invoice {R.randrange(10 ** 9, 10 ** 10)}-{R.randrange(10, 99)} was paid by wire.",
    lambda: "Das Passwort muss mindestens zwölf Zeichen lang sein.",
    lambda: "Le mot de passe doit être changé tous les 90 jours.",
    lambda: "请不要在聊天中分享密码或密钥。",
]
for f in BENIGN_MORE:
    add("benign-more", text=f(), expect=[])


# ---------------------------------------------------------------- round 2: templates written
# after the detectors were tuned on the entries above (a check that the tuning generalises)
def gcp_service_account():
    k = pem("PRIVATE KEY")
    esc = k.replace("\n", "\\n")
    return ('Why does google.auth reject this service account file?\n{\n  "type": "service_account",\n'
            f'  "project_id": "demo-project",\n  "private_key": "{esc}\\n",\n'
            '  "client_email": "svc@demo-project.iam.gserviceaccount.com"\n}\n'), [
        lab("private_key", esc, SECRET_ALSO), lab("email", "svc@demo-project.iam.gserviceaccount.com")]


R2 = [
    lambda: (lambda v: (f'From: "Jane Doe" <{v}>\nSubject: refund', [lab("email", v)]))(email()),
    lambda: (lambda v: (f"name,email,plan\nJane Doe,{v},pro\n", [lab("email", v)]))(email()),
    lambda: (lambda n, v: (f"Reach the client at {n}@example.com or {v}.",
                           [lab("email", f"{n}@example.com"), lab("email", v)]))(R.randrange(10000, 99999), email()),
    lambda: (lambda v: (f"Call +1-415-555-01{v} for the demo.", [lab("phone", f"+1-415-555-01{v}")]))(f"{R.randrange(10, 99)}"),
    lambda: (lambda v: (f"Our Amsterdam desk: {v}", [lab("phone", v)]))(f"+31 6 {R.randrange(10000000, 99999999)}"),
    lambda: (lambda v: (f"Sydney office {v} (business hours)", [lab("phone", v)]))(f"+61 2 {R.randrange(2000, 9999)} {R.randrange(1000, 9999)}"),
    lambda: (lambda v: (f"WhatsApp: {v}", [lab("phone", v)]))(f"+55 11 9{R.randrange(1000, 9999)}-{R.randrange(1000, 9999)}"),
    lambda: (lambda v: (f"Mobile {v}, please SMS first.", [lab("phone", v)]))(f"+91 9{R.randrange(1000, 9999)} {R.randrange(10000, 99999)}"),
    lambda: (lambda v: (f"UK number with trunk: {v}", [lab("phone", v)]))(f"+44 (0)20 7946 0{R.randrange(100, 999)}"),
    lambda: (lambda v: (f"| customer | card |\n|---|---|\n| J. Doe | {v} |", [lab("credit_card", v)]))(card()),
    lambda: (lambda v: (f"Card no.: {v} (Mastercard)", [lab("credit_card", v)]))(
        card_format((lambda b: b + next(c for c in string.digits if luhn_ok(b + c)))("5" + str(R.randrange(1, 6)) + rs(string.digits, 13)))),
    lambda: (lambda v: (f"Beneficiary IBAN {v}, BIC DEUTDEFFXXX.", [lab("iban", v)]))(iban(cc="DE")),
    lambda: (lambda v: (f"Virement sur {v} avant vendredi.", [lab("iban", v)]))(iban(cc="FR", grouped=True)),
    lambda: (lambda v: (f"name,ssn\nJane Doe,{v}\n", [lab("us_ssn", v)]))(ssn()),
    lambda: (lambda v: (f'{{"event": "login", "ip": "{v}", "ok": true}}', [lab("ipv4", v)]))(ipv4()),
    lambda: (lambda a, b: (f"X-Forwarded-For: {a}, {b}", [lab("ipv4", a), lab("ipv4", b)]))(f"203.0.113.{R.randrange(1, 99)}", f"198.51.100.{R.randrange(100, 254)}"),
    lambda: (lambda v: (f"[{v}] connection reset by peer", [lab("ipv4", v)]))(ipv4()),
    lambda: (lambda v: (f"aws.accessKeyId={v}\naws.region=eu-west-1", [lab("aws_access_key", v, SECRET_ALSO)]))(aws_key()),
    lambda: (lambda v: (f"My .npmrc:\n//npm.pkg.github.com/:_authToken={v}\n@acme:registry=https://npm.pkg.github.com", [lab("github_token", v, SECRET_ALSO)]))(github_token()),
    lambda: (lambda v: (f"In [3]: openai.api_key = \"{v}\"\nIn [4]: openai.models.list()", [lab("openai_key", v, SECRET_ALSO)]))(openai_key()),
    lambda: (lambda v: (f"curl https://api.anthropic.com/v1/messages -H \"x-api-key: {v}\" -H \"anthropic-version: 2023-06-01\"", [lab("anthropic_key", v, SECRET_ALSO)]))(anthropic_key()),
    gcp_service_account,
    lambda: (lambda v: (f"Cookie: session={v}; theme=dark", [lab("jwt", v, SECRET_ALSO)]))(jwt()),
    lambda: (lambda v: (f'{{"client_id": "web", "client_secret": "{v}"}}', [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"SECRET_KEY = \"{v}\"\nDEBUG = False", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"Authorization: Bearer {v}", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"Connect to the replica with password {v} and read-only mode.", [lab("generic_secret", v)]))(gsecret()),
    lambda: (lambda v: (f"Voici mon email : {v}. Merci !", [lab("email", v)]))(email()),
    lambda: (lambda v: (f"Мой телефон: {v}", [lab("phone", v)]))(f"+7 916 {R.randrange(100, 999)}-{R.randrange(10, 99)}-{R.randrange(10, 99)}"),
    lambda: (lambda v: (f"رقم الآيبان الخاص بي هو {v}", [lab("iban", v)]))(iban(cc="SA" if "SA" in IBAN_BBAN else "DE")),
]
for f in R2:
    t, e = f()
    add("round2", text=t, expect=e)

R2_BENIGN = [
    "The tokenizer produced 512 tokens and the attention mask has shape (1, 512).",
    "The password reset link expired after 30 minutes; how do I extend that?",
    "Organise a secret santa for 12 people with a 25 EUR limit.",
    "Our API key rotation policy says keys expire every 90 days; draft the announcement.",
    "auth service latency p99 went from 120 ms to 480 ms after the deploy.",
    f"commit {hexs(40)}\nAuthor: CI Bot\n\n    bump version to 4.2.0",
    f"ZIP code {R.randrange(10000, 99999)}-{R.randrange(1000, 9999)} is outside the delivery area.",
    f"Batch {R.randrange(10 ** 11, 10 ** 12)} contains {R.randrange(100, 999)} records.",
    "Country codes DE, FR and ES; currencies EUR and GBP; languages de-DE and fr-FR.",
    f"The hash table has {R.randrange(2 ** 20, 2 ** 24)} buckets and a load factor of 0.75.",
    "Call me maybe -- the song, not a request. Who wrote it?",
    f"Seat 14C, flight LH{R.randrange(100, 999)}, gate B{R.randrange(10, 60)}, boarding 07:45.",
    f"Serial number SN-{R.randrange(10 ** 9, 10 ** 10)}-{rs(string.ascii_uppercase, 2)} under warranty until 2027-06-30.",
    "Explain the difference between authentication and authorization with examples.",
    f"Our npm token scope is read-only; the token name is ci-readonly-{R.randrange(10, 99)}.",
    "Generate a strong password policy for a hospital: length, rotation, MFA.",
    f"GPS trace: 48.{R.randrange(100000, 999999)},2.{R.randrange(100000, 999999)} -> 48.{R.randrange(100000, 999999)},2.{R.randrange(100000, 999999)}",
    f"Matrix row: 0.{R.randrange(1000, 9999)} 0.{R.randrange(1000, 9999)} 0.{R.randrange(1000, 9999)} 0.{R.randrange(1000, 9999)}",
    "Our office hours are 9-17 Mon-Fri; closed on 24.12. and 31.12.",
    f"Product key format is XXXXX-XXXXX-XXXXX-XXXXX-XXXXX; never share yours.",
]
for t in R2_BENIGN:
    add("round2-benign", text=t, expect=[])



# ================================================================= round 3: issue 13's families
# (appended after everything above so that its random values do not move). Each family is
# its own category, so test_corpus reports recall and false positives per family.
D = string.digits


def d_(n, first=None):
    return (first if first is not None else "") + rs(D, n - (1 if first is not None else 0))


def luhn_complete(prefix, n):
    body = prefix + rs(D, n - len(prefix) - 1)
    return body + next(c for c in D if luhn_ok(body + c))


# -- phone numbers in national forms, and bare numbers after a label (family "phone-forms")
def fr_dotted():
    return f"0{R.randrange(1, 10)}." + ".".join(f"{R.randrange(100):02d}" for _ in range(4))


def fr_plus():
    return f"+33 {R.randrange(1, 8)} " + " ".join(f"{R.randrange(100):02d}" for _ in range(4))


def de_slash():
    area = R.choice(["030", "089", "040", "0221", "069", "0711", "0341", "0171", "0151", "0160", "0176"])
    sub = str(R.randrange(2, 10)) + rs(D, (7 if len(area) == 4 else R.randrange(6, 9)) - 1)
    if len(sub) >= 7 and R.random() < 0.3:
        sub = sub[:3] + " " + sub[3:]
    return f"{area}/{sub}"


def in_55():
    return f"{R.choice('6789')}{rs(D, 4)} {rs(D, 5)}"


def de_mobile12():
    return f"01{R.choice(['51', '60', '62', '70', '71', '76'])} {R.randrange(2, 10)}{rs(D, 7)}"


def bare_nanp():
    return f"{R.randrange(2, 10)}{rs(D, 2)}{R.randrange(2, 10)}{rs(D, 2)}{rs(D, 4)}"


BARE = {  # language: (number maker, label templates)
    "en": (bare_nanp, ["Phone: {v}", "Tel. {v}", "My mobile is {v}, text me anytime.",
                       "Contact number: {v}", "WhatsApp {v} (after 6pm)", "Call me at {v} tomorrow.",
                       "Phone number on file should be {v}."]),
    "de": (lambda: f"01{R.choice(['51', '60', '71', '76'])}{rs(D, 8)}",
           ["Telefon: {v}", "Handy {v}", "Meine Handynummer ist {v}.", "Rufnummer {v}",
            "Tel.: {v} (Büro)", "Mobil: {v}"]),
    "fr": (lambda: f"0{R.choice('67')}{rs(D, 8)}",
           ["Téléphone : {v}", "Mon portable : {v}", "Tél. {v}", "Appelez-moi au {v} svp."]),
    "es": (lambda: f"{R.choice('67')}{rs(D, 8)}",
           ["Teléfono: {v}", "Mi móvil es {v}.", "Llámame al {v} mañana.", "celular {v}"]),
    "it": (lambda: f"3{R.choice('2456789')}{rs(D, 8)}",
           ["Telefono: {v}", "Il mio cellulare è {v}.", "Chiamami al {v} stasera."]),
    "ja": (lambda: f"0{R.choice('789')}0{rs(D, 8)}",
           ["電話：{v}", "携帯番号は{v}です。", "電話番号 {v} までご連絡ください。"]),
    "hi": (lambda: f"{R.choice('6789')}{rs(D, 9)}",
           ["मेरा मोबाइल नंबर {v} है।", "फ़ोन: {v}", "mera number {v} hai, call kar lena",
            "Phone no {v} pe WhatsApp karo", "मेरा नंबर {v} है"]),
}
for lang in sorted(BARE):
    make, tpls = BARE[lang]
    for tpl in tpls:
        v = make()
        add("phone-forms", text=tpl.format(v=v), expect=[lab("phone", v)])

FORMS = [
    lambda v: (f"Appelez-moi au {v} demain matin.", v, fr_dotted),
    lambda v: (f"Le standard : {v}, poste 12.", v, fr_dotted),
    lambda v: (f"Nouveau numéro {v} à partir de lundi.", v, fr_plus),
    lambda v: (f"Büro {v}, bitte vormittags anrufen.", v, de_slash),
    lambda v: (f"Erreichbar unter {v}.", v, de_slash),
    lambda v: (f"Rückruf bitte an {v}", v, de_slash),
    lambda v: (f"Call {v} for the Bangalore office.", v, in_55),
    lambda v: (f"Customer care: +91 {v}", "+91 " + v, in_55),
    lambda v: (f"Mein neues Handy: {v}", v, de_mobile12),
    lambda v: (f"Sprechen Sie mit mir unter {v}.", v, de_mobile12),
]
for i in range(20):
    f = FORMS[i % len(FORMS)]
    maker = f("")[2]
    v = maker()
    text, value, _ = f(v)
    add("phone-forms", text=text, expect=[lab("phone", value)])

PHONE_BENIGN = [
    lambda: f"Die Rechnung {R.randrange(2023, 2026)}/{R.randrange(1000000, 9999999)} ist noch offen.",
    lambda: f"Termin am {R.randrange(10, 28)}/0{R.randrange(1, 9)}/2025 um 10:30.",
    lambda: f"Bitte Ref. 0815/{R.randrange(1000, 9999)} angeben.",
    lambda: f"Scores: {R.randrange(60000, 99999)} {R.randrange(10000, 99999)} {R.randrange(10000, 99999)} {R.randrange(10000, 99999)}",
    lambda: f"The phone log shows epoch {R.randrange(1700000000, 1799999999)} for the last sync.",
    lambda: f"Hotel booking ref {bare_nanp()} is confirmed.",
    lambda: f"The mobile app build {R.randrange(2024010100, 2025123199)} crashes on start.",
    lambda: f"Phone case order {R.randrange(10 ** 9, 10 ** 10)} shipped today.",
    lambda: f"Telefonkonferenz: Raum 4, Einwahlcode {R.randrange(100000000, 999999999)}",
    lambda: f"Mobile data used: {R.randrange(1000000000, 9999999999)} bytes this month.",
    lambda: f"Call volume was {R.randrange(1000, 9999)} on Monday; invoice {bare_nanp()} is unrelated.",
    lambda: f"Version {R.randrange(1, 9)}.{R.randrange(10, 99)}.{R.randrange(10, 99)}.{R.randrange(10, 99)}.{R.randrange(10, 99)} fixes the dialer.",
    lambda: f"Tel Aviv office opened in {R.randrange(1990, 2024)}; staff id {R.randrange(10 ** 9, 10 ** 10)}.",
    lambda: f"Cellular plan SKU {R.randrange(10 ** 11, 10 ** 12)}",
    lambda: f"SMS gateway port {R.randrange(1000, 9999)}, queue {R.randrange(10 ** 9, 10 ** 10)} messages",
]
for f in PHONE_BENIGN:
    add("phone-forms-benign", text=f(), expect=[])

# -- Japanese (and other) document numbers: no phone, card or SSN (family "docnum-benign")
DOCNUM = [
    lambda: f"マイナンバー：0{rs(D, 3)} {rs(D, 4)} {rs(D, 4)}",
    lambda: f"個人番号は 0{rs(D, 3)}-{rs(D, 4)}-{rs(D, 4)} です。",
    lambda: f"基礎年金番号は0{rs(D, 3)}-{rs(D, 6)}です。",
    lambda: f"年金番号：0{rs(D, 3)}-{rs(D, 6)}（ねんきん定期便に記載）",
    lambda: f"旅券番号 T{R.choice('KRZ')}{rs(D, 7)} の有効期限を確認してください。",
    lambda: f"法人番号：{luhn_complete('4', 13)}",
    lambda: f"法人番号 {luhn_complete('4', 13)} の登記情報を要約してください。",
    lambda: f"注文番号 0120-{rs(D, 3)}-{rs(D, 3)} の配送状況を教えてください。",
    lambda: f"口座番号 0{rs(D, 3)} {rs(D, 3)} {rs(D, 4)} は普通預金です。",
    lambda: f"Order no. 0{R.randrange(1, 9)}{rs(D, 2)} {rs(D, 4)} {rs(D, 4)} was cancelled.",
    lambda: f"Passport 0{rs(D, 2)} {rs(D, 3)} {rs(D, 4)} expires next year.",
    lambda: f"आधार {R.randrange(2, 10)}{rs(D, 3)} {rs(D, 4)} {rs(D, 4)} अपडेट करना है",
]
for f in DOCNUM:
    add("docnum-benign", text=f(), expect=[])

# -- SSNs without separators, next to their label (family "ssn-context")
def ssn9():
    while True:
        area = R.randrange(1, 900)
        if area != 666:
            return "%03d%02d%04d" % (area, R.randrange(1, 100), R.randrange(1, 10000))


SSN_CTX = ["SSN {v}", "SSN: {v}", "My social security number is {v}.", "SSN#{v} on the W-2",
           "Social Security No. {v}", "soc sec {v} (applicant)",
           "Meine Sozialversicherungsnummer (USA): {v}", "Numéro de sécurité sociale américain : {v}",
           "Mi número de seguro social es {v}.", "社会保障番号：{v}", "मेरा सामाजिक सुरक्षा नंबर {v} है",
           "Employee SSN {v}, start date 2025-04-01"]
for tpl in SSN_CTX:
    v = ssn9()
    add("ssn-context", text=tpl.format(v=v), expect=[lab("us_ssn", v)])
SSN_BENIGN = [
    lambda: f"SSN 000{rs(D, 6)} is a test value.",
    lambda: f"SSN: 666{rs(D, 6)} was rejected by the validator.",
    lambda: f"SSN 9{rs(D, 8)} is an ITIN, not an SSN.",
    lambda: f"The SSN field is optional; ticket {R.randrange(100000000, 999999999)} tracks it.",
    lambda: f"SSN format check: routing {R.randrange(100000000, 999999999)} passed.",
    lambda: f"Order {R.randrange(100000000, 999999999)} ships to the SSA office.",
    lambda: f"The social security office id {R.randrange(100000000, 999999999)} is public.",
    lambda: f"ZIP+4 lookup {R.randrange(10000, 99999)}{R.randrange(1000, 9999)} returned nothing.",
]
for f in SSN_BENIGN:
    add("ssn-context-benign", text=f(), expect=[])


# -- PGP private key blocks, and private-key headers without a key (family "pgp-key")
def pgp_block(crlf=False, headers=True, end=True):
    blob = base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(300, 900)))).decode()
    lines = ["-----BEGIN PGP PRIVATE KEY BLOCK-----"]
    if headers:
        lines += [R.choice(["Version: GnuPG v2", "Version: OpenPGP.js v4.10.10", "Comment: https://gnupg.org"]), ""]
    lines += [blob[i:i + 64] for i in range(0, len(blob), 64)]
    lines.append("=" + rs(ALNUM, 4))
    if end:
        lines.append("-----END PGP PRIVATE KEY BLOCK-----")
    return ("\r\n" if crlf else "\n").join(lines)


PGP = [
    lambda k: f"gpg --import fails with 'no valid OpenPGP data' for this:\n{k}\n",
    lambda k: f"Is this exported key still protected by its passphrase?\n\n```\n{k}\n```",
    lambda k: f"Store this in the CI secret store, please:\n{k}",
    lambda k: f"Der Schlüssel für die Signatur:\n{k}\nWarum erkennt Kleopatra ihn nicht?",
]
for i in range(8):
    k = pgp_block(crlf=i % 4 == 3, headers=i % 3 != 2, end=i != 5)
    add("pgp-key", text=PGP[i % len(PGP)](k), expect=[lab("private_key", k)])
for i in range(2):  # a PEM key inside a JSON file quoted in the prompt: \n escapes
    k = pgp_block()
    esc = k.replace("\n", "\\n")
    add("pgp-key", text='Why is this config rejected?\n{"signing_key": "' + esc + '", "keyid": "' + hexs(16).upper() + '"}',
        expect=[lab("private_key", esc, SECRET_ALSO)])
KEY_MENTION = [
    "The file starts with -----BEGIN OPENSSH PRIVATE KEY----- and then base64, right?",
    "grep -r '-----BEGIN RSA PRIVATE KEY-----' . found nothing; where else can keys hide?",
    "Our scanner looks for -----BEGIN PGP PRIVATE KEY BLOCK----- in commits. Is that enough?",
    "The header is -----BEGIN PRIVATE KEY-----\nthen the key goes here, and the footer closes it.",
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY----- is the shape I expect.",
    "-----BEGIN PRIVATE KEY-----\n<paste your key here>\n-----END PRIVATE KEY-----",
    "Why does ssh say 'invalid format' when the key file begins with -----BEGIN OPENSSH PRIVATE KEY-----?",
    "Pour un export GPG, la première ligne est -----BEGIN PGP PRIVATE KEY BLOCK----- ; la dernière l'inverse.",
]
for t in KEY_MENTION:
    add("pgp-key-benign", text=t, expect=[])
for i in range(3):
    blob = base64.b64encode(bytes(R.randrange(256) for _ in range(R.randrange(300, 600)))).decode()
    pub = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + "\n".join(blob[j:j + 64] for j in range(0, len(blob), 64)) + "\n=" + rs(ALNUM, 4) + "\n-----END PGP PUBLIC KEY BLOCK-----"
    add("pgp-key-benign", text="Import this public key for the release signatures:\n" + pub, expect=[])


# -- passwords in URIs and connection strings (family "cred-uri")
def upw():
    """A password as people choose them: mixed, sometimes weak, never a placeholder; no
    '#', '/', '?' or '@' (in a URI those must be percent-encoded)."""
    k = R.randrange(4)
    if k == 0:
        return gsecret()[:R.randrange(12, 24)]
    if k == 1:
        return R.choice(["Sommer", "Winter", "Blue", "Tiger", "Falcon", "Maple"]) + str(R.randrange(1990, 2026)) + R.choice("!$+*")
    if k == 2:
        return rs(ALNUM, R.randrange(8, 16))
    return rs(ALNUM, 6) + R.choice("!*-_~") + rs(ALNUM, 6)


def host():
    return R.choice(["db.internal", "db-replica-2.internal", "pg-prod.eu-west-1.rds.amazonaws.com", "mysql.acme.local",
                     "cache.internal", "cluster0.ab1cd.mongodb.net", "rabbit.internal"])


CRED_URI = [
    lambda p: (f"DATABASE_URL=postgres://app:{p}@{host()}:5432/app\nWhy does Django say 'password authentication failed'?", "postgres"),
    lambda p: (f"export DATABASE_URL='postgresql://billing:{p}@{host()}/billing?sslmode=require'", "pg"),
    lambda p: (f"engine = create_engine(\"mysql+pymysql://root:{p}@{host()}:3306/shop\")", "mysql"),
    lambda p: (f"REDIS_URL=redis://:{p}@{host()}:6379/0 -- the worker cannot connect.", "redis"),
    lambda p: (f"rediss://default:{p}@{host()}:6380 wird vom Client abgelehnt, warum?", "redis"),
    lambda p: (f"const uri = \"mongodb+srv://appuser:{p}@cluster0.ab1cd.mongodb.net/prod?retryWrites=true&w=majority\";", "mongo"),
    lambda p: (f"amqp://orders:{p}@rabbit.internal:5672/%2F -- consumer timeouts after 30 min", "amqp"),
    lambda p: (f"La URL de conexión es postgres://lector:{p}@{host()}/ventas, ¿qué falta?", "pg"),
    lambda p: (f"接続文字列は mysql://admin:{p}@{host()}/app です。タイムアウトします。", "mysql"),
    lambda p: (f"git clone https://deploy:{p}@git.example.com/acme/infra.git", "https"),
    lambda p: (f"\"ConnectionStrings\": {{ \"Default\": \"Server=tcp:sql-prod.database.windows.net,1433;Database=app;User ID=appadmin;Password={p};Encrypt=True;\" }}", "adonet"),
    lambda p: (f"Data Source=.\\SQLEXPRESS;Initial Catalog=Shop;User Id=sa;Password={p};TrustServerCertificate=True", "adonet"),
    lambda p: (f"Driver={{ODBC Driver 18 for SQL Server}};Server=db01;Uid=report;Pwd={p};", "odbc"),
    lambda p: (f"jdbc:postgresql://{host()}:5432/app?user=app&password={p}&ssl=true", "jdbc"),
    lambda p: (f"Password={p};Server=crm-db.internal;Database=crm;User Id=crm_rw", "adonet-first"),
]
for i in range(22):
    f = CRED_URI[i % len(CRED_URI)]
    pw = upw()
    if "@" in pw or pw in ("password", "pass"):
        pw = rs(ALNUM, 12)
    t, _ = f(pw)
    also = ["generic_secret"]
    add("cred-uri", text=t, expect=[lab("credential_uri", pw, also)])
for i in range(5):  # Azure storage and Service Bus keys
    key = b64blob(64)
    t = R.choice([
        f"DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={key};EndpointSuffix=core.windows.net",
        f"Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key}",
        f"AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={key};\"",
    ])
    add("cred-uri", text="Why does the SDK say the signature does not match?\n" + t,
        expect=[lab("credential_uri", key, ["generic_secret"])])
CRED_BENIGN = [
    "The format is postgresql://user:password@localhost:5432/mydb -- which part is the database?",
    "mysql://root:<password>@db/app is what the docs show; where do I put the port?",
    "REDIS_URL=redis://:${REDIS_PASSWORD}@cache:6379/0",
    "DATABASE_URL=postgres://app:****@db.internal/app (masked in the logs)",
    "mongodb+srv://<username>:<password>@cluster0.mongodb.net/?retryWrites=true",
    "The DSN is driver://user:pass@host/db in every example.",
    "Server=db01;Database=app;User Id=sa;Password=<your-password>;",
    "AccountKey=<storage-account-key>; goes at the end of the connection string.",
    "Server=db01;Password=;Integrated Security=true",
    "Open http://localhost:8080/account?password_reset=true to test the flow.",
    "https://mastodon.social/@Gargron and https://example.com:8443/@team are profile links.",
    "DATABASE_URL=postgres://app@db.internal:5432/app uses peer authentication.",
    "Set Password=%s; in the template and fill it at runtime.",
    "jdbc:mysql://db.internal:3306/app?useSSL=false&passwordCharacterEncoding=utf8",
]
for t in CRED_BENIGN:
    add("cred-uri-benign", text=t, expect=[])

# -- references and placeholders where a secret's value would be (family "secret-ref-benign")
REF_BENIGN = [
    "env:\n  STRIPE_SECRET_KEY: ${{ secrets.STRIPE_SECRET_KEY_2024 }}\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "- name: deploy\n  run: ./deploy.sh\n  env:\n    password: ${{ secrets.PROD_DB_PASSWORD_V2 }}",
    "const secret = process.env.STRIPE_SECRET_KEY;\nconst stripe = require('stripe')(secret);",
    "api_key = process.env.OPENAI_API_KEY_PROD_2024",
    "secret = os.environ[\"DJANGO_SECRET_KEY_2024_V2\"]",
    "password = os.getenv(\"PG_PASSWORD_REPLICA_02\")",
    "token = ENV['SLACK_BOT_TOKEN_2024_Q3']",
    "String secret = System.getenv(\"JWT_SIGNING_SECRET_V3\");",
    "password: {{ .Values.postgresql.auth.password }}",
    "password = var.db_master_password_2024",
    "api_key: <YOUR_API_KEY>\nmodel: gpt-4o",
    "OPENAI_API_KEY=YOUR_OPENAI_API_KEY_HERE_123",
    "client_secret: xxxxxxxxxxxxxxxxxxxxxxxx1",
    "token: ${GITHUB_TOKEN_FOR_RELEASES_2024}",
    "auth_token = config.slackAuthTokenForAlerts",
    "headers = {\"Authorization\": f\"Bearer {settings.API_TOKEN_V2}\"}",
    "export API_KEY=$API_KEY_FROM_VAULT_2024",
    "secret_key: REPLACE_ME_WITH_A_REAL_KEY_1234",
]
for t in REF_BENIGN:
    add("secret-ref-benign", text=t, expect=[])
for i in range(4):  # a literal fallback after a reference is a value
    v = gsecret()
    t = R.choice([f"const secret = process.env.SESSION_SECRET || \"{v}\";",
                  f"password = os.environ.get(\"DB_PASSWORD\", \"{v}\")"])
    add("secret-ref", text=t, expect=[lab("generic_secret", v)])

# -- counters and sizes named like secrets (family "counter-benign")
COUNTER_BENIGN = [
    lambda: f"token_count={R.randrange(100, 9999)} model=gpt-4o-2024-08-06 latency_ms={R.randrange(100, 999)}",
    lambda: f"key_count: {R.randrange(2, 64)}, token_count: {R.randrange(1000, 9999)} (model gpt-4o-mini-2024-07-18)",
    lambda: f"max_tokens: {R.choice([1024, 2048, 4096])} model: claude-3-5-sonnet-20241022 temperature: 0.2",
    lambda: f'{{"usage": {{"prompt_tokens": {R.randrange(100, 9999)}, "completion_tokens": {R.randrange(10, 999)}, "total_tokens": {R.randrange(1000, 9999)}}}, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_{hexs(10)}"}}',
    lambda: f"tokens_used={R.randrange(1000, 99999)} request_id=req_{rs(ALNUM, 24)}",
    lambda: f"secret_ttl: 3600 secret_version: v2-{rs(ALNUM, 12)}-2024",
    lambda: f"password_min_length: 12 password_history: 5 session_timeout: 30m-idle-{R.randrange(10, 99)}x",
    lambda: f"api_key_file: /etc/airlock/keys/prod-{hexs(12)}-2024.pem",
    lambda: f"num_tokens = {R.randrange(100, 999)}  # tokenizer cl100k_base-2023-v{R.randrange(1, 9)}",
    lambda: f"auth_attempts_total{{status=\"fail\"}} {R.randrange(10, 999)}\nauth_latency_seconds_bucket{{le=\"0.5\"}} {R.randrange(100, 9999)}",
    lambda: f"maxTokens: {R.randrange(256, 4096)}, tokenLimit: {R.randrange(8000, 128000)}, modelVersion: gemini-1.5-pro-002",
    lambda: f"The token budget is {R.randrange(1000, 9999)} per request and model claude-3-haiku-20240307 is cheaper.",
]
for f in COUNTER_BENIGN:
    add("counter-benign", text=f(), expect=[])

# -- retina image names and other files with an '@' (family "email-file-benign")
for t in ["Use logo@2x.png and logo@3x.png for retina screens.",
          "The sprite sheet icon@3x.webp is blurry on iPad.",
          "Replace background@2x.jpg with the new hero image.",
          "app-icon@1.5x.svg renders at the wrong size in Safari.",
          "npm pack produced left-pad@1.3.0.tgz; is that the right file?",
          "Rename avatar@2x.jpeg to avatar@2x.jpg before the upload.",
          "The asset list: button@2x.gif, button@3x.gif, spinner@2x.avif",
          "In the Xcode catalog, AppIcon@2x.png is missing for 60pt."]:
    add("email-file-benign", text=t, expect=[])


# -- a Luhn-valid 16-digit window inside a longer IBAN-shaped token (family "iban-card-benign")
def mod97_ok(s_):
    return int("".join(str(int(ch, 36)) for ch in s_[4:] + s_[:4])) % 97 == 1


def iban_shaped_with_card():
    cc = R.choice(["XY", "DE", "FR", "GB", "QZ", "NL"])
    cardd = luhn_complete("4", 16)
    chk = "%02d" % R.randrange(10, 99)
    s_ = cc + chk + cardd + rs(D, R.randrange(2, 6))
    if R.random() < 0.5 and cc != "GB":
        s_ = " ".join(s_[i:i + 4] for i in range(0, len(s_), 4))
    elif cc == "GB":
        s_ = " ".join((cc + chk + "WEST" + cardd + rs(D, 2))[i:i + 4] for i in range(0, 26, 4))
    return s_


for i in range(8):
    v = iban_shaped_with_card()
    while mod97_ok(v.replace(" ", "")):
        v = iban_shaped_with_card()
    add("iban-card-benign", text=R.choice([f"The bank rejected {v} as an invalid IBAN.",
                                           f"Is {v} a real account? Our form says the check digits are wrong.",
                                           f"Kontonummer {v} ist laut Bank ungültig."]), expect=[])


# -- secret-like words in other languages (family "secret-multilingual")
ML_SECRET = ["Passwort: {v}", "Das Kennwort lautet {v}", "Mot de passe : {v}", "mot_de_passe={v}",
             "Contraseña: {v}", "contrasena = \"{v}\"", "La clave API es {v}", "パスワード：{v}",
             "パスワードは {v} です", "密码：{v}", "пароль: {v}", "पासवर्ड: {v}", "mera password {v} hai",
             "暗証番号 {v}"]
for tpl in ML_SECRET:
    v = gsecret()
    add("secret-multilingual", text=tpl.format(v=v), expect=[lab("generic_secret", v)])
for t in ["Das Passwort muss mindestens zwölf Zeichen lang sein und eine Ziffer enthalten.",
          "パスワードを忘れた場合は、ログイン画面の「再設定」を押してください。",
          "¿Cómo cambio la contraseña del router sin perder la configuración?",
          "पासवर्ड कम से कम 12 अक्षरों का होना चाहिए।",
          "La clave del éxito es la constancia, dijo el entrenador en 2024.",
          "Забыл пароль от почты, как восстановить доступ?"]:
    add("secret-multilingual-benign", text=t, expect=[])



# ================================================================= round 4: written after the
# round-3 fixes, from new templates, and run once before any change (a check that the
# context tables and validators generalise; see docs/policy.md)
R4 = [
    lambda v: (f"Bei Rückfragen: Tel 0{R.randrange(2, 9)}{rs(D, 2)}/{R.randrange(2, 9)}{rs(D, 6)}", "phone"),
    lambda v: (f"Pour toute question, contactez le 0{R.randrange(1, 6)}.{rs(D, 2)}.{rs(D, 2)}.{rs(D, 2)}.{rs(D, 2)}.", "phone"),
    lambda v: (f"Customer's cell: {R.randrange(2, 10)}{rs(D, 2)}{R.randrange(2, 10)}{rs(D, 6)}", "phone"),
    lambda v: (f"Aap mujhe {R.choice('6789')}{rs(D, 4)} {rs(D, 5)} pe call karo", "phone"),
    lambda v: (f"お問い合わせは携帯 0{R.choice('789')}0{rs(D, 8)} まで", "phone"),
    lambda v: (f"Numero di telefono del cliente: {R.choice('3')}{rs(D, 9)}", "phone"),
    lambda v: (f"SSN (no dashes): {ssn9()}", "us_ssn"),
    lambda v: (f"Applicant's social security number {ssn9()} was verified by HR.", "us_ssn"),
    lambda v: (f"SQLALCHEMY_DATABASE_URI = 'postgresql+psycopg2://svc_app:{rs(ALNUM, 14)}@pg.internal/app'", "credential_uri"),
    lambda v: (f"amqps://worker:{rs(ALNUM, 10)}@mq.internal:5671/jobs keeps timing out", "credential_uri"),
    lambda v: (f"Persist Security Info=False;User ID=etl;Password={rs(ALNUM, 9)}{R.choice('!%*')};Initial Catalog=dw;Server=dw.internal", "credential_uri"),
    lambda v: (f"BlobEndpoint=https://acme.blob.core.windows.net/;AccountName=acme;AccountKey={b64blob(48)}", "credential_uri"),
    lambda v: ("Ich habe den Schlüssel exportiert:\n" + pgp_block(), "private_key"),
    lambda v: (f"Kennwort für den Testserver: {gsecret()}", "generic_secret"),
    lambda v: (f"Le mot de passe de la base est {gsecret()} (à changer)", "generic_secret"),
]


def r4_value(text, det):
    """The finding's value in a round-4 text, by its detector's shape."""
    import re
    if det == "phone":
        m = re.search(r"(\+?[0-9][0-9 ./]*[0-9])", text.split(":")[-1] if det == "phone" and ":" in text else text)
        return m.group(1).strip()
    if det == "us_ssn":
        return re.search(r"[0-9]{9}", text).group(0)
    if det == "credential_uri":
        m = re.search(r"://[^:/@\s]*:([^@\s/]+)@", text) or re.search(r"(?:Password|AccountKey)=([^;]+)", text)
        return m.group(1)
    if det == "private_key":
        return text[text.index("-----BEGIN"):]
    return text.split()[-1] if not text.endswith(")") else text.split()[-3]


for f in R4:
    t, det = f(None)
    v = r4_value(t, det)
    add("round4", text=t, expect=[lab(det, v, ["generic_secret"] if det in ("credential_uri", "private_key") else None)])

R4_BENIGN = [
    f"Die Faxnummer steht auf Seite {R.randrange(2, 9)} des PDFs, Aktenzeichen {R.randrange(10, 99)}/{R.randrange(100, 999)}/{R.randrange(1000, 9999)}.",
    f"Mobile release {R.randrange(2024010100, 2025123100)} is live on both stores.",
    f"My phone died at {R.randrange(10, 23)}:{R.randrange(10, 59)}; the IMEI is {rs(D, 15)}.",
    f"SSN validation regex ^\\d{{9}}$ rejects {R.randrange(1000, 9999)}-{R.randrange(100, 999)} as expected.",
    "postgres://USER:PASSWORD@HOST:PORT/DB is the template from the README.",
    "jdbc:sqlserver://db:1433;databaseName=app;user=sa;password=<secret>",
    "Use ${{ secrets.NPM_TOKEN_PUBLISH_2025 }} in the publish step and never echo it.",
    "const apiKey = import.meta.env.VITE_STRIPE_PUBLISHABLE_KEY_2025;",
    f"total_tokens: {R.randrange(1000, 99999)}, prompt_tokens_details: {{cached_tokens: {R.randrange(0, 999)}}}, model: o1-mini-2024-09-12",
    "The ssh key header -----BEGIN OPENSSH PRIVATE KEY----- should not be in the wiki.",
    "splash@2x.png and splash@3x.png are 2 MB each; can we shrink them?",
    f"被保険者番号 0{rs(D, 7)} と記号 {rs(D, 4)} を入力してください。",
    f"The account XX{R.randrange(10, 99)} {rs(D, 4)} {rs(D, 4)} {rs(D, 4)} {rs(D, 4)} {rs(D, 2)} failed the IBAN check.",
    "Contraseña olvidada: use el enlace de restablecimiento que enviamos por correo.",
    "パスワードの長さは12文字以上にしてください。",
]
for t in R4_BENIGN:
    add("round4-benign", text=t, expect=[])



# ================================================================= round 5: values glued to
# letters, and card / IBAN digits split by other separators (issue 13, "boundaries").
# Written and run once before the boundaries were relaxed (docs/policy.md has both runs).
# Positives per family: glue-card, sep-card, glue-iban, sep-iban, glue-aws, glue-github,
# glue-ssn, glue-phone, glue-email; their look-alikes are glue-benign.
def aws_key_digit():
    """An access key id whose 16 characters (base32, as AWS issues them) hold a digit."""
    while True:
        k = aws_key()
        if any(c.isdigit() for c in k[4:]):
            return k


def card16():
    """A Luhn-valid card of 15 or 16 digits with a known IIN."""
    return card_digits(True)


def groups4(v):
    return [v[i:i + 4] for i in range(0, len(v), 4)]


def card_groups(d):
    return [d[:4], d[4:10], d[10:]] if len(d) == 15 else groups4(d)


def iban_raw(cc=None):
    return iban(True, cc=cc, grouped=False)


def ssn_dashed():
    return ssn(True)


def card_invalid16():
    """16 digits that are no card: Luhn fails or the IIN is unknown."""
    while True:
        d = rs(D, 16)
        if not (d[0] in "3456" and luhn_ok(d)):
            return d


GLUE = [
    # cards glued to letters or '_'
    ("glue-card", lambda c: (f"CC:{c}exp0927 cvv on the back", "credit_card", c), card16),
    ("glue-card", lambda c: (f"Bitte belasten Sie die Kreditkarte{c} mit 49,90 EUR.", "credit_card", c), card16),
    ("glue-card", lambda c: (f"cardx{c}x", "credit_card", c), card16),
    ("glue-card", lambda c: (f"Mi tarjeta es la VISA{c}, vence en 09/27.", "credit_card", c), card16),
    ("glue-card", lambda c: (f"支払いはcard{c}でお願いします", "credit_card", c), card16),
    ("glue-card", lambda c: (f"payment_method=card_{c}_default", "credit_card", c), card16),
    ("glue-card", lambda c: (f"Numéro de carte{c}merci de vérifier", "credit_card", c), card16),
    ("glue-card", lambda c: (f"mera card number{c}hai, refund isme karo", "credit_card", c), card16),
    # cards with other separators
    ("sep-card", lambda c: (f"Card on file: {','.join(card_groups(c))}", "credit_card", ",".join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"Karte: {'  '.join(card_groups(c))} (Ablauf 08/28)", "credit_card", "  ".join(card_groups(c))), card16),
    ("sep-card", lambda c: ("Card number:\n" + "\n".join(card_groups(c)) + "\nThanks!", "credit_card", "\n".join(card_groups(c))), card16),
    ("sep-card", lambda c: ("Card\t" + "\t".join(card_groups(c)) + "\tVisa", "credit_card", "\t".join(card_groups(c))), card16),
    ("sep-card", lambda c: ("Tarjeta:\r\n" + "\r\n".join(card_groups(c)) + "\r\nGracias", "credit_card", "\r\n".join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"Carte bancaire {'–'.join(card_groups(c))} à débiter", "credit_card", "–".join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"Carta {chr(0xa0).join(card_groups(c))} scade a maggio", "credit_card", chr(0xa0).join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"カード番号 {chr(0x3000).join(card_groups(c))} です", "credit_card", chr(0x3000).join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"Card {(chr(0xa0) + ' ').join(card_groups(c))} please refund", "credit_card", (chr(0xa0) + ' ').join(card_groups(c))), card16),
    ("sep-card", lambda c: (f"Kartennummer {' '.join(card_groups(c)[:2])}\n{' '.join(card_groups(c)[2:])} (Zeilenumbruch im PDF)", "credit_card", f"{' '.join(card_groups(c)[:2])}\n{' '.join(card_groups(c)[2:])}"), card16),
    # IBANs glued to letters
    ("glue-iban", lambda v: (f"ibanx{v}x", "iban", v), lambda: iban_raw()),
    ("glue-iban", lambda v: (f"Bitte überweisen Sie auf IBAN{v}bis Freitag.", "iban", v), lambda: iban_raw("DE")),
    ("glue-iban", lambda v: (f"Virement sur le compte{v}merci", "iban", v), lambda: iban_raw("FR")),
    ("glue-iban", lambda v: (f"IBAN:{v}BIC:COBADEFFXXX", "iban", v), lambda: iban_raw("DE")),
    ("glue-iban", lambda v: (f"Cuenta{v}titular Ana García", "iban", v), lambda: iban_raw("ES")),
    ("glue-iban", lambda v: (f"Conto corrente{v}intestato a Rossi", "iban", v), lambda: iban_raw("IT")),
    # IBANs with other separators
    ("sep-iban", lambda v: (f"IBAN {'-'.join(groups4(v))} please", "iban", "-".join(groups4(v))), lambda: iban_raw("DE")),
    ("sep-iban", lambda v: (f"Konto {'/'.join(groups4(v))}", "iban", "/".join(groups4(v))), lambda: iban_raw("AT")),
    ("sep-iban", lambda v: (f"IBAN {'.'.join(groups4(v))}.", "iban", ".".join(groups4(v))), lambda: iban_raw("NL")),
    ("sep-iban", lambda v: (f"Compte : {'  '.join(groups4(v))}", "iban", "  ".join(groups4(v))), lambda: iban_raw("FR")),
    ("sep-iban", lambda v: (f"IBAN:\n{' '.join(groups4(v)[:3])}\n{' '.join(groups4(v)[3:])}\nDanke", "iban", f"{' '.join(groups4(v)[:3])}\n{' '.join(groups4(v)[3:])}"), lambda: iban_raw("DE")),
    ("sep-iban", lambda v: (f"Cuenta {'–'.join(groups4(v))} (BBVA)", "iban", "–".join(groups4(v))), lambda: iban_raw("ES")),
    ("sep-iban", lambda v: (f"IBAN {','.join(groups4(v))}", "iban", ",".join(groups4(v))), lambda: iban_raw("BE")),
    # AWS access key ids glued
    ("glue-aws", lambda k: (f"AccessKeyId{k}SecretAccessKey is in the vault", "aws_access_key", k), aws_key_digit),
    ("glue-aws", lambda k: (f"x{k}x", "aws_access_key", k), aws_key_digit),
    ("glue-aws", lambda k: (f"Der Schlüssel lautet{k}und ist noch aktiv.", "aws_access_key", k), aws_key_digit),
    ("glue-aws", lambda k: (f"La clave de acceso es{k}ok?", "aws_access_key", k), aws_key_digit),
    ("glue-aws", lambda k: (f"キーはID{k}です", "aws_access_key", k), aws_key_digit),
    ("glue-aws", lambda k: (f"key id: {k}QQ (two letters stuck to the end)", "aws_access_key", k), aws_key_digit),
    # GitHub tokens glued
    ("glue-github", lambda g: (f"token{g}x", "github_token", g), lambda: github_token_classic()),
    ("glue-github", lambda g: (f"GITHUB_TOKEN{g} in the runner env", "github_token", g), lambda: github_token_classic()),
    ("glue-github", lambda g: (f"El token es{g}y caduca mañana", "github_token", g), lambda: github_token_classic()),
    ("glue-github", lambda g: (f"Das Token{g}bitte widerrufen", "github_token", g), lambda: github_token_classic()),
    ("glue-github", lambda g: (f"pat:x{g}", "github_token", g), lambda: "github_pat_11" + with_fake(rs(string.ascii_uppercase + string.digits, 20)) + "_" + rs(ALNUM, 59)),
    # SSNs glued: a dashed number, or a label right before it
    ("glue-ssn", lambda v: (f"Applicant{v}ssn verified by HR", "us_ssn", v), ssn_dashed),
    ("glue-ssn", lambda v: (f"SSN{v}", "us_ssn", v), ssn_dashed),
    ("glue-ssn", lambda v: (f"empleado{v}nómina de marzo", "us_ssn", v), ssn_dashed),
    ("glue-ssn", lambda v: (f"ssn{v} (no dashes)", "us_ssn", v), ssn9),
    ("glue-ssn", lambda v: (f"Social security number:{v}x", "us_ssn", v), ssn9),
    # phone numbers glued to their label
    ("glue-phone", lambda v: (f"tel{v}x", "phone", v), bare_nanp),
    ("glue-phone", lambda v: (f"Phone:{v}ext12", "phone", v), bare_nanp),
    ("glue-phone", lambda v: (f"Handynummer{v}bitte zurückrufen", "phone", v), lambda: f"01{R.choice(['51', '60', '71', '76'])}{rs(D, 8)}"),
    ("glue-phone", lambda v: (f"mobile{v}pe call karo", "phone", v), lambda: f"{R.choice('6789')}{rs(D, 9)}"),
    ("glue-phone", lambda v: (f"Tel.{v} (Büro)", "phone", v), lambda: f"0{R.choice('2345')}{rs(D, 8)}"),
    ("glue-phone", lambda v: (f"teléfono{v}gracias", "phone", v), lambda: f"{R.choice('67')}{rs(D, 8)}"),
    # e-mail addresses after dots, glued runs, or followed by '-1' or digits
    ("glue-email", lambda v: (f"a..{v}", "email", v), email),
    ("glue-email", lambda v: (f"Schreiben Sie an {v}-1 wegen der Rechnung.", "email", v), email),
    ("glue-email", lambda v: (f"contact: {v}2024", "email", v), email),
    ("glue-email", lambda v: ("x" * 70 + v + " is the owner", "email", v), email),
    ("glue-email", lambda v: (f"Contacto..{v} urgente", "email", v), email),
    ("glue-email", lambda v: (f"Reply to {v}-2 by Friday", "email", v), email),
]


def github_token_classic():
    while True:
        g = github_token()
        if not g.startswith("github_pat_"):
            return g


for cat, make, val in GLUE:
    text, det, value = make(val())
    add(cat, text=text, expect=[lab(det, value)])
# a local part with a Latin letter outside ASCII
add("glue-email", text="Bitte an jürgen.müller@example.de weiterleiten.",
    expect=[lab("email", "jürgen.müller@example.de")])


def hex_with_run():
    """A 64-character hex digest that happens to hold a Luhn-valid 16-digit run."""
    return hexs(20) + luhn_complete("4", 16) + hexs(28)


def ean13_luhn():
    while True:
        d = "40" + rs(D, 11)
        if luhn_ok(d):
            return d


GLUE_BENIGN = [
    lambda: f"sha256:{hex_with_run()} matches the release artefact.",
    lambda: f"Order ORD{card_invalid16()}ships Monday.",
    lambda: f"Rechnung RE{R.randrange(2023, 2026)}{R.randrange(1, 13):02d}{R.randrange(1, 29):02d}{rs(D, 5)} ist bezahlt.",
    lambda: f"Build id build{R.randrange(2023, 2026)}0{R.randrange(1, 10)}1{R.randrange(0, 10)}{rs(D, 9)} passed all checks.",
    lambda: f"Event ts{R.randrange(1700000000000, 1799999999999)}Z arrived late.",
    lambda: f"Scanner output: SKU{ean13_luhn()} out of stock.",
    lambda: f"Book ISBN978{rs(D, 10)}x in the catalogue.",
    lambda: f"Device IMEI35{luhn_complete('35' + rs(D, 4), 15)[2:]} registered.",
    lambda: f"Request req-{uuid4()}x failed with 502.",
    lambda: f"Release v{R.randrange(1, 20)}.{R.randrange(0, 30)}.{R.randrange(0, 99)}-build{rs(D, 14)} is out.",
    lambda: "The EURASIAPACIFIC2024REPORTSQ3 deck is ready.",
    lambda: "AKIAIOSFODNN is too short to be a key id.",
    lambda: "Charts: highs_Q3Revenue2024VersusForecastAndBudget and lows_Q3 are attached.",
    lambda: f"The bank returned ibanDE{(int(iban_check('DE', '370400440532013000')) + 1) % 97 + 2:02d}370400440532013000x as invalid.",
    lambda: f"Das Feld ibanXY{R.randrange(10, 99)} {' '.join(groups4(luhn_complete('4', 16)))} {rs(D, 2)} ist ungültig.",
    lambda: f"Ticket ref{bare_nanp()}x was closed.",
    lambda: f"Artikel SKU0{R.choice('2345')}{rs(D, 8)} ist ausverkauft.",
    lambda: f"Test data: x000-{R.randrange(10, 99)}-{R.randrange(1000, 9999)} and ver666-{R.randrange(10, 99)}-{R.randrange(1000, 9999)} are invalid SSNs.",
    lambda: f"Part A1-{R.randrange(100, 600)}-{R.randrange(10, 99)}-{R.randrange(1000, 9999)}-2 is back-ordered.",
    lambda: "npm resolved left-pad@1.3.0-1 and icon@2x.png2 from the cache.",
    lambda: "ssh admin@localhost-1 failed; try a..b@c instead.",
    lambda: "Ports:\n5432\n6379\n8080\n9200\n27017",
    lambda: "Years,2019,2020,2021,2022,2023",
    lambda: f"PINs  {rs(D, 4)}  {rs(D, 4)}  {rs(D, 4)}  {rs(D, 4)}  {rs(D, 4)}  {rs(D, 4)}",
    lambda: f"Umsatz: {R.randrange(1, 9)}.{rs(D, 3)}.{rs(D, 3)},{rs(D, 2)} EUR im Quartal",
    lambda: f"Logged at 2025-0{R.randrange(1, 10)}-1{R.randrange(0, 10)}T12:{R.randrange(10, 59)}:{R.randrange(10, 59)}.{rs(D, 3)}Z by worker-{R.randrange(1, 9)}",
    lambda: f"Blob {b64blob(48)} was truncated.",
    lambda: f"Phone model SM{bare_nanp()}x ships with Android 15.",
    lambda: f"Werte: {';'.join(f'{R.randrange(1, 9)},{R.randrange(0, 9)}' for _ in range(6))}",
    lambda: f"Tabelle:\n{R.randrange(1000, 9999)}\t{R.randrange(1000, 9999)}\t{R.randrange(1000, 9999)}\t{R.randrange(1000, 9999)}\t{R.randrange(1000, 9999)}",
    lambda: f"git describe: v2.{R.randrange(10, 40)}.{R.randrange(0, 9)}-{R.randrange(10, 999)}-g{hexs(12)}",
    lambda: f"Coordinates {R.randrange(10, 60)}.{rs(D, 6)},{R.randrange(10, 60)}.{rs(D, 6)} are the office.",
]
for f in GLUE_BENIGN:
    add("glue-benign", text=f(), expect=[])


def main():
    out = os.path.join(HERE, "corpus.jsonl")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for e in ENTRIES:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    benign = sum(1 for e in ENTRIES if not e["expect"])
    by = {}
    for e in ENTRIES:
        for x in e["expect"]:
            by[x["detector"]] = by.get(x["detector"], 0) + 1
    print(f"{len(ENTRIES)} entries, {benign} benign ({100.0 * benign / len(ENTRIES):.1f}%) -> {out}")
    for k in sorted(by):
        print(f"  {k:16} {by[k]}")


if __name__ == "__main__":
    main()
