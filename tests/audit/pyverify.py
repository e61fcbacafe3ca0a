#!/usr/bin/env python3
"""pyverify.py -- an independent audit verifier written from docs/audit.md alone.

It shares no code with airlock: BLAKE2b from Python's hashlib, Ed25519 through the
`openssl` command line. If the format document were imprecise, this and `airlock audit
verify` would disagree; tests/audit/test_cli.c runs both on the same logs.

    pyverify.py DIR PUBKEY_FILE
prints `ok RECORDS CHECKPOINTS LAST_SIGNED_SEQ` (exit 0) or
`BAD SEGMENT OFFSET SEQ: reason` / `TRUNCATED SEGMENT OFFSET SEQ: reason` (exit 1).
"""
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile

CONTEXT = b"airlock-audit-checkpoint-1"
MAX_BODY = 1 << 30


class Bad(Exception):
    def __init__(self, kind, seg, off, seq, why):
        super().__init__(why)
        self.kind, self.seg, self.off, self.seq, self.why = kind, seg, off, seq, why


def ed25519_verify(pub, msg, sig):
    der = bytes.fromhex("302a300506032b6570032100") + pub
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n) for n in ("pub.der", "msg", "sig")}
        for name, data in (("pub.der", der), ("msg", msg), ("sig", sig)):
            with open(paths[name], "wb") as f:
                f.write(data)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["pub.der"],
                            "-keyform", "DER", "-rawin", "-in", paths["msg"], "-sigfile",
                            paths["sig"]], capture_output=True)
        return r.returncode == 0


def read_key(path, label, n):
    text = open(path, encoding="ascii").read().strip()
    lab, hexkey = text.split(" ")
    assert lab == label and len(hexkey) == 2 * n
    return bytes.fromhex(hexkey)


def parse_payloads(body, sealed):
    (meta_len,) = struct.unpack_from("<I", body, 0)
    off = 4 + meta_len
    if off + 4 > len(body):
        raise ValueError("metadata length")
    (n,) = struct.unpack_from("<I", body, off)
    off += 4
    if n > 64:
        raise ValueError("too many payloads")
    for _ in range(n):
        if off + 2 > len(body):
            raise ValueError("name length")
        (nl,) = struct.unpack_from("<H", body, off)
        off += 2 + nl
        if off + 8 > len(body):
            raise ValueError("name")
        (dl,) = struct.unpack_from("<Q", body, off)
        off += 8
        if dl > len(body) - off or (sealed and dl < 40):
            raise ValueError("payload length")
        off += dl
    if off != len(body):
        raise ValueError("trailing bytes")


def verify(d, pub):
    names = sorted(f for f in os.listdir(d) if re.fullmatch(r"\d{8}\.alog", f))
    if not names:
        raise Bad("TRUNCATED", "", 0, 1, "no segments")
    seq, prev = 1, bytes(32)
    records = checkpoints = last_signed = 0
    last_type = last_reason = None
    for i, name in enumerate(names):
        number = int(name[:8])
        if number != i + 1:
            raise Bad("BAD", "%08d.alog" % (i + 1), 0, seq, "segment missing")
        data = open(os.path.join(d, name), "rb").read()
        is_last = i == len(names) - 1
        off = 0
        seg_sealed = False
        if not data:
            raise Bad("TRUNCATED" if is_last else "BAD", name, 0, seq, "empty segment")
        while off < len(data):
            rest = len(data) - off
            if off > 0 and data.count(0, off) == rest:
                # zeros the writer wrote ahead: the end of this segment's records, but
                # never after a closing (rotation or shutdown) checkpoint
                if last_type == 4 and last_reason in (2, 3):
                    raise Bad("BAD", name, off, seq, "bytes after the closing checkpoint")
                break
            if data[off:off + min(4, rest)] != b"ALOG"[:min(4, rest)]:
                raise Bad("BAD", name, off, seq, "magic")
            if rest < 60:
                raise Bad("TRUNCATED" if is_last else "BAD", name, off, seq, "short header")
            magic, ver, typ, flags, blen, rseq, _t, rprev = struct.unpack_from("<4sBBHIQQ32s", data, off)
            if ver != 1 or typ not in (1, 2, 3, 4, 5) or blen > MAX_BODY:
                raise Bad("BAD", name, off, seq, "header fields")
            total = 60 + blen + 32
            if rest < total:
                # a torn tail only if no complete valid record follows; keep it simple:
                # the writer never leaves one, so anything after is damage
                raise Bad("TRUNCATED" if is_last else "BAD", name, off, seq, "record cut short")
            hdr_body = data[off:off + 60 + blen]
            h = hashlib.blake2b(hdr_body, digest_size=32).digest()
            if h != data[off + 60 + blen:off + total]:
                raise Bad("BAD", name, off, seq, "hash")
            if rseq != seq or rprev != prev:
                raise Bad("BAD", name, off, seq, "chain")
            body = hdr_body[60:]
            if off == 0:
                if typ != 1 or flags != 0 or len(body) not in (80, 192):
                    raise Bad("BAD", name, off, seq, "segment-start")
                snum, sflags, pseq, phash = struct.unpack_from("<IIQ32s", body, 0)
                if snum != number or pseq != seq - 1 or phash != prev or sflags & ~1 or \
                        (len(body) == 192) != bool(sflags & 1):
                    raise Bad("BAD", name, off, seq, "segment-start fields")
                seg_sealed = bool(sflags & 1)
            elif typ == 1:
                raise Bad("BAD", name, off, seq, "segment-start inside segment")
            elif typ == 4:
                if flags != 0 or len(body) != 113:
                    raise Bad("BAD", name, off, seq, "checkpoint")
                cseq, chash, ctime, reason = struct.unpack_from("<Q32sQB", body, 0)
                sig = body[49:113]
                if cseq != seq - 1 or chash != prev or reason not in (1, 2, 3, 4):
                    raise Bad("BAD", name, off, seq, "checkpoint fields")
                msg = CONTEXT + struct.pack("<Q", cseq) + chash + struct.pack("<Q", ctime) + bytes([reason])
                if not ed25519_verify(pub, msg, sig):
                    raise Bad("BAD", name, off, seq, "signature")
                checkpoints += 1
                last_signed = cseq
                last_reason = reason
            else:
                if flags & ~1 or (flags & 1 and not seg_sealed):
                    raise Bad("BAD", name, off, seq, "flags")
                try:
                    parse_payloads(body, bool(flags & 1))
                except (ValueError, struct.error) as e:
                    raise Bad("BAD", name, off, seq, "body: %s" % e)
            records += 1
            last_type = typ
            prev = h
            seq += 1
            off += total
    if last_type != 4:
        raise Bad("TRUNCATED", names[-1], off, seq, "unsigned tail")
    if last_reason == 2:
        raise Bad("TRUNCATED", "%08d.alog" % (len(names) + 1), 0, seq, "next segment missing")
    return records, checkpoints, last_signed


def main():
    if len(sys.argv) != 3:
        print("usage: pyverify.py DIR PUBKEY_FILE", file=sys.stderr)
        return 2
    pub = read_key(sys.argv[2], "airlock-sign-pub", 32)
    try:
        r, c, s = verify(sys.argv[1], pub)
    except Bad as b:
        print("%s %s %d %d: %s" % (b.kind, b.seg, b.off, b.seq, b.why))
        return 1
    print("ok %d %d %d" % (r, c, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
