#!/usr/bin/env python3
"""Checks meshnode's known-answer test vectors (docs/test-vectors/*.json) from outside Swift.

An independent implementation written from docs/PROTOCOL.md: every encoding, hash, signature,
key and sealed frame in the files is recomputed here from the inputs the files give, and compared.

    scripts/check-test-vectors.py [DIR]        # DIR defaults to docs/test-vectors

Needs Python 3.8+ (hashlib's BLAKE2b). Ed25519, X25519 and the AEADs come from the
`cryptography` package (Debian: python3-cryptography); without it only the hash-based and
encoding checks run, and the output says which were skipped. Exit status 0 when every check
passes, 1 otherwise (each failure is printed with where it is and what differs).
"""
import base64
import hashlib
import json
import os
import re
import struct
import sys

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover - depends on the host
    HAVE_CRYPTO = False

MASK64 = (1 << 64) - 1


class Checker:
    def __init__(self):
        self.checks = 0
        self.failures = []
        self.skipped = set()

    def eq(self, where, computed, in_file):
        self.checks += 1
        if isinstance(computed, (bytes, bytearray)):
            computed = computed.hex()
        if computed != in_file:
            self.failures.append(f"{where}: computed {computed!r}, the file has {in_file!r}")

    def true(self, where, cond, what):
        self.checks += 1
        if not cond:
            self.failures.append(f"{where}: {what}")

    def skip(self, what):
        self.skipped.add(what)


C = Checker()


# --- primitives (PROTOCOL.md §1) -------------------------------------------------------------

def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def i64(v): return struct.pack(">q", v)
def blob16(b): return u16(len(b)) + b
def str16(s): return blob16(s.encode("utf-8"))
def h(s): return bytes.fromhex(s)
def b2b(data, size=32, key=b""): return hashlib.blake2b(data, digest_size=size, key=key).digest()


def node_id_text(pk):
    return base64.b32encode(pk).decode("ascii").lower().rstrip("=")


def ed25519_public(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


KEYS = {}  # name -> (seed, public key)


def check_signature(where, signer, message, signature_hex):
    """Ed25519 is deterministic: the signature must be exactly what the signer's seed gives."""
    if not HAVE_CRYPTO:
        C.skip("Ed25519 signatures")
        return
    seed, pk = KEYS[signer]
    C.eq(where + ".signature", Ed25519PrivateKey.from_private_bytes(seed).sign(message), signature_hex)
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(h(signature_hex), message)
        C.true(where, True, "")
    except Exception:
        C.true(where, False, "the signature does not verify under the signer's public key")


# --- §2 identities ---------------------------------------------------------------------------

def check_identities(doc):
    for k in doc["identities"]:
        w = f"identities[{k['name']}]"
        seed, pk = h(k["seed"]), h(k["public_key"])
        if HAVE_CRYPTO:
            C.eq(w + ".public_key", ed25519_public(seed), k["public_key"])
        else:
            C.skip("Ed25519 public keys from seeds")
        C.eq(w + ".secret_key", seed + pk, k["secret_key"])
        C.eq(w + ".node_id", node_id_text(pk), k["node_id"])
        C.eq(w + ".node_id length", len(k["node_id"]), 52)
        C.eq(w + ".node_id_short", k["node_id"][:10], k["node_id_short"])
        upper = k["node_id"].upper() + "===="  # parsers accept either case
        C.eq(w + " base32 decode", base64.b32decode(upper), k["public_key"])
        KEYS[k["name"]] = (seed, pk)
    e = doc["ed25519_check"]
    check_signature("ed25519_check", e["signer"], h(e["message"]), e["signature"])


# --- §3 content ids --------------------------------------------------------------------------

CONTENT_IDS = {}  # content id hex -> (size, chunk size, [hash bytes])


def sample_data(d):
    if d["kind"] == "hex":
        return h(d["hex"])
    if d["kind"] == "zeros":
        return bytes(d["length"])
    if d["kind"] == "pattern":
        m = re.fullmatch(r"byte i = i mod (\d+)", d["rule"])
        assert m, f"unknown generator rule {d['rule']!r}"
        mod = int(m.group(1))
        return bytes(i % mod for i in range(d["length"]))
    raise ValueError(f"unknown data kind {d['kind']!r}")


def content_id(size, chunk_size, hashes):
    return b2b(b"meshnode/content/v1\0" + u64(size) + u32(chunk_size) + b"".join(hashes))


def check_content_ids(doc):
    for c in doc["cases"]:
        w = f"content-ids[{c['name']}]"
        data = sample_data(c["data"])
        C.eq(w + ".data_blake2b_256", b2b(data), c["data_blake2b_256"])
        C.eq(w + ".size", len(data), c["size"])
        cs = c["chunk_size"]
        C.true(w, 4096 <= cs <= 67108864, "chunk size out of range")
        n = (len(data) + cs - 1) // cs
        C.eq(w + " chunk count", n, len(c["chunks"]))
        hashes = []
        for i in range(n):
            piece = data[i * cs:(i + 1) * cs]
            ch = c["chunks"][i] if i < len(c["chunks"]) else {}
            C.eq(f"{w}.chunks[{i}].offset", i * cs, ch.get("offset"))
            C.eq(f"{w}.chunks[{i}].length", len(piece), ch.get("length"))
            C.eq(f"{w}.chunks[{i}].hash", b2b(piece), ch.get("hash"))
            hashes.append(b2b(piece))
        inp = b"meshnode/content/v1\0" + u64(len(data)) + u32(cs) + b"".join(hashes)
        C.eq(w + ".content_id_input", inp, c["content_id_input"])
        cid = content_id(len(data), cs, hashes)
        C.eq(w + ".content_id", cid, c["content_id"])
        C.eq(w + ".content_id_short", cid.hex()[:12], c["content_id_short"])
        CONTENT_IDS[cid.hex()] = (len(data), cs, hashes)


# --- §4 manifest entries ---------------------------------------------------------------------

ENTRY_ENCODINGS = set()


def entry_body(f):
    """Every field but the signature, in wire order (PROTOCOL.md §4.1 for version 2, §4.2 for 1)."""
    head = u8(f["version"]) + u8(f["kind"]) + h(f["origin"]) + u64(f["sequence"])
    if f["version"] == 1:
        return (head + h(f["content_id"]) + u64(f["size"]) + u32(f["chunk_size"]) + u8(f["type"])
                + i64(f["created_ms"]) + str16(f["name"]))
    if f["kind"] == 1:
        kind = (h(f["content_id"]) + u64(f["size"]) + u32(f["chunk_size"]) + u8(f["type"]) + u8(f["flags"])
                + i64(f["created_ms"]) + i64(f["expires_ms"]) + str16(f["name"]))
    elif f["kind"] == 2:
        kind = u8(f["scope"])
        if f["scope"] == 2:
            kind += h(f["target_origin"]) + u64(f["target_sequence"])
        kind += i64(f["created_ms"]) + str16(f["name"])
    elif f["kind"] == 3:
        # §4.5: ranges (first, last) then dependencies (origin, sequence).
        kind = u16(len(f["ranges"])) + b"".join(u64(a) + u64(b) for a, b in f["ranges"])
        kind += u16(len(f["dependencies"])) + b"".join(h(d["origin"]) + u64(d["sequence"]) for d in f["dependencies"])
    elif f["kind"] == 4:
        # §4.6: held ids then dropped ids, each strictly ascending.
        kind = u16(len(f["held"])) + b"".join(h(x) for x in f["held"])
        kind += u16(len(f["dropped"])) + b"".join(h(x) for x in f["dropped"])
    elif f["kind"] == 5:
        # §4.7: flags, disk total/used/free, roles, NFS group.
        flags = (1 if f["ephemeral"] else 0) | (2 if f["excluded"] else 0) | (4 if f["full"] else 0)
        kind = (u8(flags) + u64(f["disk_total_bytes"]) + u64(f["disk_used_bytes"]) + u64(f["disk_free_bytes"])
                + u8(len(f["roles"])) + b"".join(str16(r) for r in f["roles"]) + str16(f["nfs_group"]))
        if "policy_hash" in f:
            # §4.7: the optional policy hash, BLAKE2b-256 of the canonical rules, first 16 bytes.
            canon = b"meshnode/placement/v1\x00" + u8(len(f["policy_rules"]))
            for r in sorted(f["policy_rules"], key=lambda r: r["type"]):
                roles = sorted(set(x.encode("utf-8") for x in r["roles"]))
                canon += u8(r["type"]) + u8(len(roles)) + b"".join(blob16(x) for x in roles)
                canon += u16(r["min_copies"]) + u16(r["max_copies"])
            C.eq("node_facts.policy_canonical", canon, f["policy_canonical"])
            digest = b2b(canon)[:16]
            C.eq("node_facts.policy_hash", digest, f["policy_hash"])
            kind += digest
    else:
        kind = h(f["body"])
    return head + u64(f["hlc"]) + u16(len(kind)) + kind


def check_manifest_entries(doc):
    types = {0: "other", 1: "game", 2: "model", 3: "npz", 4: "checkpoint"}
    highest_hlc = 0
    for n, e in enumerate(doc["entries"]):
        w, f = f"manifest-entries[{n}]", e["fields"]
        C.eq(w + ".origin", KEYS[e["signer"]][1], f["origin"])
        C.eq(w + ".origin_node_id", node_id_text(h(f["origin"])), e["origin_node_id"])
        if f["kind"] in (1, 2):
            C.eq(w + ".name_utf8", f["name"].encode("utf-8"), f["name_utf8"])
        elif f["kind"] == 4:
            for lst in ("held", "dropped"):
                C.true(w, f[lst] == sorted(f[lst]) and len(set(f[lst])) == len(f[lst]), lst + " not strictly ascending")
            C.true(w, not set(f["held"]) & set(f["dropped"]) and 1 <= len(f["held"]) + len(f["dropped"]) <= 120,
                   "holding lists break §4.6")
        elif f["kind"] == 3:
            last = 0
            for a, b in f["ranges"]:
                C.true(w, last < a <= b < f["sequence"], "compaction ranges break §4.5")
                last = b
        C.true(w, f["version"] in (1, 2) and f["kind"] in (1, 2, 3, 4, 5) and f["sequence"] == n + 1,
               "version, kind or sequence invalid")
        if f["kind"] == 1:
            C.eq(w + ".type_name", types.get(f["type"]), f["type_name"])
            C.true(w, (f["size"], f["chunk_size"]) == CONTENT_IDS.get(f["content_id"], (None, None, None))[:2],
                   "content_id is not one of content-ids.json with this size and chunk size")
        if f["version"] == 2:
            # §4.4: a node stamps each new entry above the highest clock it holds.
            C.true(w, f["hlc"] > highest_hlc and f["hlc"] >> 16 >= f.get("created_ms", 0) - 1, "hlc does not follow §4.4")
            highest_hlc = f["hlc"]
        body = entry_body(f)
        C.eq(w + ".body", body, e["body"])
        domain = b"meshnode/entry/v1\0" if f["version"] == 1 else b"meshnode/entry/v2\0"
        signed = domain + body
        C.eq(w + ".signed_bytes", signed, e["signed_bytes"])
        check_signature(w, e["signer"], signed, e["signature"])
        enc = body + h(e["signature"])
        C.eq(w + ".encoded", enc, e["encoded"])
        C.eq(w + ".encoded_bytes", len(enc), e["encoded_bytes"])
        C.true(w, len(enc) <= (416 if f["version"] == 1 else 4212), "longer than the largest entry of its version")
        ENTRY_ENCODINGS.add(enc.hex())


# --- §10 certificates ------------------------------------------------------------------------

CERTIFICATE = {}


def check_certificates(doc):
    f, w = doc["fields"], "certificates"
    C.eq(w + ".authority", KEYS[doc["signer"]][1], f["authority"])
    C.eq(w + ".authority_node_id", node_id_text(h(f["authority"])), f["authority_node_id"])
    body = (u8(f["version"]) + h(f["authority"]) + h(f["subject"]) + u64(f["serial"]) + i64(f["issued_ms"])
            + i64(f["expires_ms"]) + str16(f["name"]) + str16(f["role"]))
    C.eq(w + ".body", body, doc["body"])
    signed = b"meshnode/cert/v1\0" + body
    C.eq(w + ".signed_bytes", signed, doc["signed_bytes"])
    check_signature(w, doc["signer"], signed, doc["signature"])
    enc = body + h(doc["signature"])
    C.eq(w + ".encoded", enc, doc["encoded"])
    C.eq(w + ".encoded_bytes", len(enc), doc["encoded_bytes"])
    for d in doc["decisions"]:
        now = d["now_ms"]
        if f["serial"] in d["revoked_serials"]:
            verdict = "revoked"
        elif d["presented_by"] != f["subject"]:
            verdict = "certificate_wrong_subject"
        elif now + 60000 < f["issued_ms"]:
            verdict = "certificate_not_yet_valid"
        elif now - 60000 >= f["expires_ms"]:
            verdict = "certificate_expired"
        else:
            verdict = "admitted"
        C.eq(f"{w}.decisions[{d['case']}]", verdict, d["decision"])
    CERTIFICATE["encoded"] = enc.hex()


# --- §5 gossip envelopes ---------------------------------------------------------------------

STATES = {"alive": 1, "suspect": 2, "dead": 3, "left": 4}
TYPES = {"ping": 1, "ack": 2, "ping-req": 3, "nack": 4, "join": 5, "member-sync": 6, "entries": 7,
         "digest": 8, "vector": 9, "pull": 10}
ENVELOPES = set()


def record(r):
    out = u8(STATES[r["state"]]) + h(r["node"]) + u64(r["incarnation"])
    if r["state"] == "alive":
        out += str16(r["address"]) + u8(r["flags"]) + str16(r["name"]) + str16(r["role"]) + blob16(h(r["credential"]))
    elif r["state"] in ("suspect", "dead"):
        out += h(r["accuser"])
    return out


def updates(rs): return u16(len(rs)) + b"".join(record(r) for r in rs)
def adverts(a): return u8(len(a)) + b"".join(h(x["origin"]) + u64(x["sequence"]) for x in a)


def payload(type_name, p):
    if type_name == "ping":
        return u32(p["seq"]) + h(p["target"]) + updates(p["updates"]) + adverts(p["adverts"])
    if type_name == "ack":
        return u32(p["seq"]) + updates(p["updates"]) + adverts(p["adverts"])
    if type_name == "ping-req":
        return u32(p["seq"]) + h(p["target"]) + str16(p["address"]) + updates(p["updates"])
    if type_name == "nack":
        return u32(p["seq"])
    if type_name == "join":
        return updates(p["updates"])
    if type_name == "member-sync":
        return u8(p["flags"]) + updates(p["updates"])
    if type_name == "entries":
        return u8(p["flags"]) + u16(len(p["entries"])) + b"".join(h(e) for e in p["entries"])
    if type_name == "digest":
        return (u8(p["buckets_log2"]) + b"".join(u64(int(x, 16)) for x in p["bucket_hashes"]) + u32(p["origin_count"])
                + u64(int(p["member_hash"], 16)) + u32(p["member_count"]))
    if type_name == "vector":
        return (u8(p["flags"]) + u8(p["buckets_log2"]) + u16(len(p["buckets"])) + b"".join(u16(b) for b in p["buckets"])
                + u32(len(p["pairs"])) + b"".join(h(x["origin"]) + u64(x["sequence"]) for x in p["pairs"]))
    if type_name == "pull":
        return u16(len(p["ranges"])) + b"".join(h(r["origin"]) + u64(r["from"]) + u64(r["to"]) for r in p["ranges"])
    raise ValueError(type_name)


def check_envelope(w, e):
    C.eq(w + ".type", TYPES[e["type_name"]], e["type"])
    C.eq(w + ".sender", KEYS[e["signer"]][1], e["sender"])
    for n, r in enumerate(e["payload"].get("updates", [])):
        C.eq(f"{w}.payload.updates[{n}].state_code", STATES[r["state"]], r["state_code"])
        if r["state"] == "alive" and r["credential"]:
            C.eq(f"{w}.payload.updates[{n}].credential (certificates.json)", CERTIFICATE.get("encoded"), r["credential"])
    for n, x in enumerate(e["payload"].get("entries", [])):
        C.true(f"{w}.payload.entries[{n}]", x in ENTRY_ENCODINGS, "not an entry of manifest-entries.json")
    body = payload(e["type_name"], e["payload"])
    C.eq(w + ".payload_bytes", body, e["payload_bytes"])
    header = b"MN" + u8(1) + u8(e["type"]) + h(e["sender"]) + u64(e["incarnation"]) + u64(e["counter"])
    C.eq(w + " header length", len(header), 52)
    signed = b"meshnode/gossip/v1\0" + header + body
    C.eq(w + ".signed_bytes", signed, e["signed_bytes"])
    check_signature(w, e["signer"], signed, e["signature"])
    enc = header + body + h(e["signature"])
    C.eq(w + ".encoded", enc, e["encoded"])
    C.eq(w + ".encoded_bytes", len(enc), e["encoded_bytes"])
    C.true(w, len(enc) <= 1200, "does not fit a datagram")
    ENVELOPES.add(enc.hex())


def check_gossip_envelopes(doc):
    for e in doc["envelopes"]:
        check_envelope(f"gossip-envelopes[{e['name']}]", e)


# --- §7.4 anti-entropy, §6.6 member_hash -----------------------------------------------------

def mix(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def pair_hash(origin, s):
    w0, w1, w2, w3 = struct.unpack(">QQQQ", origin)
    return mix(w0 ^ mix(w1 ^ mix(w2 ^ mix(w3 ^ s))))


def max_contiguous(held):
    s = 0
    while s + 1 in held:
        s += 1
    return s


def bucket(origin, log2):
    return 0 if log2 == 0 else struct.unpack(">Q", origin[:8])[0] >> (64 - log2)


def check_side(w, side, b):
    """Returns {origin: (max contiguous, held)} and the folded hashes at resolution b."""
    buckets = [0] * 128
    view = {}
    for o in side["origins"]:
        origin, held = h(o["origin"]), set(o["holds"])
        mc = max_contiguous(held)
        C.eq(f"{w}.{o['origin'][:8]}.max_contiguous", mc, o["max_contiguous"])
        C.eq(f"{w}.{o['origin'][:8]}.bucket_of_128", bucket(origin, 7), o["bucket_of_128"])
        ph = pair_hash(origin, mc)
        C.eq(f"{w}.{o['origin'][:8]}.pair_hash", f"{ph:016x}", o["pair_hash"])
        buckets[bucket(origin, 7)] ^= ph
        view[origin] = (mc, held)
    nz = [{"bucket": i, "hash": f"{x:016x}"} for i, x in enumerate(buckets) if x]
    C.eq(w + ".bucket_hashes_128_non_zero", nz, side["bucket_hashes_128_non_zero"])
    C.eq(w + ".folded_buckets_log2", b, side["folded_buckets_log2"])
    folded = [0] * (1 << b)
    for j, x in enumerate(buckets):
        folded[j >> (7 - b)] ^= x
    C.eq(w + ".folded_bucket_hashes", [f"{x:016x}" for x in folded], side["folded_bucket_hashes"])
    return view, folded


def pairs_in(view, b, wanted):
    return [{"origin": o.hex(), "sequence": view[o][0]} for o in sorted(view) if bucket(o, b) in wanted]


def missing(view, theirs, b, wanted):
    their = {h(p["origin"]): p["sequence"] for p in theirs}
    out = []
    for o in sorted(view):
        if bucket(o, b) in wanted:
            out += [{"origin": o.hex(), "sequence": s} for s in sorted(view[o][1]) if s > their.get(o, 0)]
    return out


def check_anti_entropy(doc):
    w = "anti-entropy"
    for m in doc["mix"]:
        C.eq(f"{w}.mix({m['x']})", f"{mix(int(m['x'], 16)):016x}", m["mix"])
    n_origins = len(doc["a"]["origins"])
    b = 0
    while b < 7 and (1 << b) * 4 < n_origins:  # the smallest b with 2^b * 4 >= origin count
        b += 1
    a, a_folded = check_side(w + ".a", doc["a"], b)
    bv, b_folded = check_side(w + ".b", doc["b"], b)
    mh = 0
    for m in doc["a_members"]["members"]:
        c = {"alive": 1, "suspect": 1, "dead": 3, "left": 4}[m["state"].split(" ")[0]]
        C.eq(f"{w}.a_members.{m['node'][:8]}.c", c, m["c"])
        t = pair_hash(h(m["node"]), c)
        C.eq(f"{w}.a_members.{m['node'][:8]}.term", f"{t:016x}", m["term"])
        mh ^= t
    C.eq(w + ".a_members.member_hash", f"{mh:016x}", doc["a_members"]["member_hash"])
    C.eq(w + ".a_members.member_count", len(doc["a_members"]["members"]), doc["a_members"]["member_count"])
    diff = [i for i in range(1 << b) if a_folded[i] != b_folded[i]]
    C.eq(w + ".mismatching_buckets", diff, doc["mismatching_buckets"])

    d = doc["digest"]
    check_envelope(w + ".digest", d)
    p = d["payload"]
    C.eq(w + ".digest.buckets_log2", b, p["buckets_log2"])
    C.eq(w + ".digest.bucket_hashes", [f"{x:016x}" for x in a_folded], p["bucket_hashes"])
    C.eq(w + ".digest.origin_count", n_origins, p["origin_count"])
    C.eq(w + ".digest.member_hash", f"{mh:016x}", p["member_hash"])
    C.eq(w + ".digest.member_count", len(doc["a_members"]["members"]), p["member_count"])
    C.true(w + ".digest", d["encoded_bytes"] <= 1157, "a digest always fits one datagram (1157 bytes)")

    vb = doc["vector_from_b"]
    check_envelope(w + ".vector_from_b", vb)
    C.eq(w + ".vector_from_b.flags", 1, vb["payload"]["flags"])
    C.eq(w + ".vector_from_b.buckets", diff, vb["payload"]["buckets"])
    C.eq(w + ".vector_from_b.pairs", pairs_in(bv, b, set(diff)), vb["payload"]["pairs"])
    C.eq(w + ".entries_a_sends_b", missing(a, vb["payload"]["pairs"], b, set(diff)), doc["entries_a_sends_b"])
    va = doc["vector_from_a"]
    check_envelope(w + ".vector_from_a", va)
    C.eq(w + ".vector_from_a.flags", 0, va["payload"]["flags"])
    C.eq(w + ".vector_from_a.buckets", diff, va["payload"]["buckets"])
    C.eq(w + ".vector_from_a.pairs", pairs_in(a, b, set(diff)), va["payload"]["pairs"])
    C.eq(w + ".entries_b_sends_a", missing(bv, va["payload"]["pairs"], b, set(diff)), doc["entries_b_sends_a"])


# --- §9 chunk exchange -----------------------------------------------------------------------

BLOB_TYPES = {0x10: "want_recipe", 0x11: "recipe", 0x12: "want_have", 0x13: "have", 0x14: "get", 0x15: "chunk",
              0x16: "error", 0x17: "cancel", 0x18: "chunk_piece"}
PIECE_BYTES = 8388608  # P, PROTOCOL.md §9.1
BLOB_ENCODINGS = set()


def blob_message(t, f):
    out = u8(t) + u32(f["request_id"])
    name = BLOB_TYPES[t]
    if name in ("want_recipe", "want_have"):
        return out + h(f["content_id"])
    if name == "recipe":
        return (out + h(f["content_id"]) + u64(f["size"]) + u32(f["chunk_size"]) + u32(f["count"])
                + b"".join(h(x) for x in f["hashes"]))
    if name == "have":
        return out + h(f["content_id"]) + u32(f["count"]) + h(f["bitmap"])
    if name == "get":
        out += h(f["content_id"]) + u16(len(f["indices"])) + b"".join(u32(i) for i in f["indices"])
        # §9.1: an optional trailing priority byte (0 low, 1 normal, 2 high, 3 critical); absent = normal.
        return out + (bytes([f["priority"]]) if "priority" in f else b"")
    if name == "chunk":
        return out + u32(f["index"]) + h(f["data"])
    if name == "error":
        return out + u16(f["code"]) + str16(f["message"])
    if name == "chunk_piece":
        return out + u32(f["index"]) + u32(f["chunk_bytes"]) + u32(f["offset"]) + h(f["data"])
    return out  # cancel


def check_chunk_exchange(doc):
    recipe = None
    for m in doc["messages"]:
        w, f, t = f"chunk-exchange[{m['name']}]", m["fields"], m["type"]
        C.true(w, t in BLOB_TYPES, f"unknown type {t}")
        enc = blob_message(t, f)
        C.eq(w + ".encoded", enc, m["encoded"])
        BLOB_ENCODINGS.add(enc.hex())
        name = BLOB_TYPES[t]
        if "content_id" in f:
            C.true(w, f["content_id"] in CONTENT_IDS, "content_id is not one of content-ids.json")
        if name == "recipe":
            hashes = [h(x) for x in f["hashes"]]
            C.eq(w + ".count", len(hashes), f["count"])
            # What a receiver checks before it uses a recipe (§3).
            C.eq(w + " recomputed content id", content_id(f["size"], f["chunk_size"], hashes), f["content_id"])
            C.eq(w + " chunk count", (f["size"] + f["chunk_size"] - 1) // f["chunk_size"], len(hashes))
            recipe = hashes
        if name == "have":
            C.eq(w + " bitmap length", (f["count"] + 7) // 8, len(h(f["bitmap"])))
        if name == "chunk_piece":
            total, off = f["chunk_bytes"], f["offset"]
            C.true(w, PIECE_BYTES < total <= 67108864 and off % PIECE_BYTES == 0 and off < total,
                   "chunk_bytes or offset out of range (§9.1)")
            C.eq(w + " piece length", min(PIECE_BYTES, total - off), len(h(f["data"])))
        if name == "chunk" and recipe is not None:
            C.eq(w + " hash of data (recipe hash at index)", b2b(h(f["data"])), recipe[f["index"]].hex())


# --- §9.5 push-to-2 --------------------------------------------------------------------------

TAKE_STATUSES = {0: "accepted", 1: "complete", 2: "full", 3: "excluded", 4: "invalid", 5: "stopping"}  # §9.5 table
MAX_TAKE_ENTRY = 8192  # the take's entry blob16, §9.5


def put_fields(entry):
    """(origin, sequence, content_id) of an encoded put, read as §4.1 (version 2) or §4.2 (version 1) lay it out."""
    version, kind, origin, sequence = entry[0], entry[1], entry[2:34], struct.unpack(">Q", entry[34:42])[0]
    if version == 1:
        content = entry[42:74]  # the put's fields follow the sequence directly
    else:
        body_len = struct.unpack(">H", entry[50:52])[0]  # after the u64 hlc
        body = entry[52:52 + body_len]
        C.eq("custody put body length", len(entry), 52 + body_len + 64)
        content = body[:32]  # a put body starts with its content_id
    C.true("custody entry", version in (1, 2) and kind == 1, "the take's entry is not a put (§9.5)")
    return origin, sequence, content


def take_signed_bytes(target, origin, sequence, content, issued_ms):
    return b"meshnode/take/v1\0" + target + origin + u64(sequence) + content + i64(issued_ms)


def check_custody(doc):
    t = doc["take"]
    w, f = "custody.take", t["fields"]
    C.eq(w + ".type", 0x20, t["type"])
    C.eq(w + ".fields.target", KEYS[t["target_is"]][1], f["target"])
    entry = h(f["entry"])
    C.true(w + ".fields.entry", f["entry"] in ENTRY_ENCODINGS, "not an entry of manifest-entries.json")
    C.true(w + ".fields.entry", len(entry) <= MAX_TAKE_ENTRY, "over the 8 192-byte entry limit")
    origin, sequence, content = put_fields(entry)
    sf = t["signed_fields"]
    C.eq(w + ".signed_fields.entry_origin", origin, sf["entry_origin"])
    C.eq(w + ".signed_fields.entry_sequence", sequence, sf["entry_sequence"])
    C.eq(w + ".signed_fields.entry_content_id", content, sf["entry_content_id"])
    C.true(w, content.hex() in CONTENT_IDS, "the put's content_id is not one of content-ids.json")
    target = h(f["target"])
    signed = take_signed_bytes(target, origin, sequence, content, f["issued_ms"])
    C.eq(w + ".signed_bytes", signed, t["signed_bytes"])
    C.eq(w + " signed length", len(signed), 17 + 32 + 32 + 8 + 32 + 8)
    # The requester signs with its node key: the session's authenticated peer.
    check_signature(w, t["signer"], signed, t["signature"])
    if HAVE_CRYPTO:
        # The target is covered: the same signature must not verify for any other node.
        for name, (_, pk) in KEYS.items():
            if pk == target:
                continue
            try:
                Ed25519PublicKey.from_public_bytes(KEYS[t["signer"]][1]).verify(
                    h(t["signature"]), take_signed_bytes(pk, origin, sequence, content, f["issued_ms"]))
                C.true(w, False, f"the signature also verifies for target {name}")
            except Exception:
                C.true(w, True, "")
    enc = u8(0x20) + u32(f["request_id"]) + target + i64(f["issued_ms"]) + blob16(entry) + h(t["signature"])
    C.eq(w + ".encoded", enc, t["encoded"])
    C.eq(w + ".encoded_bytes", len(enc), t["encoded_bytes"])
    seen = []
    for r in doc["take_replies"]:
        wr, rf = f"custody.take_replies[{r['name']}]", r["fields"]
        C.eq(wr + ".type", 0x21, r["type"])
        C.true(wr, rf["status"] in TAKE_STATUSES, f"status {rf['status']} above 5")
        C.eq(wr + ".status_name", TAKE_STATUSES.get(rf["status"]), r["status_name"])
        # A reply echoes the take's request id and names the put's content id.
        C.eq(wr + ".request_id", f["request_id"], rf["request_id"])
        C.eq(wr + ".content_id", content, rf["content_id"])
        enc = u8(0x21) + u32(rf["request_id"]) + h(rf["content_id"]) + u8(rf["status"])
        C.eq(wr + ".encoded", enc, r["encoded"])
        seen.append(rf["status"])
    C.eq("custody.take_replies statuses", sorted(TAKE_STATUSES), seen)


# --- §8 sessions -----------------------------------------------------------------------------

def x25519_public(sk):
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wire(frame): return u32(len(frame)) + frame


def aead(suite_code, key):
    return AESGCM(key) if suite_code == 0x02 else ChaCha20Poly1305(key)


def check_session(doc):
    w = "session"
    ini, res, kx = doc["initiator"], doc["responder"], doc["key_exchange"]
    C.eq(w + ".initiator.id", KEYS[ini["identity"]][1], ini["id"])
    C.eq(w + ".responder.id", KEYS[res["identity"]][1], res["id"])
    if HAVE_CRYPTO:
        C.eq(w + ".initiator.ephemeral_public", x25519_public(h(ini["ephemeral_secret"])), ini["ephemeral_public"])
        C.eq(w + ".responder.ephemeral_public", x25519_public(h(res["ephemeral_secret"])), res["ephemeral_public"])
        shared = X25519PrivateKey.from_private_bytes(h(ini["ephemeral_secret"])).exchange(
            X25519PublicKey.from_public_bytes(h(res["ephemeral_public"])))
        C.eq(w + ".key_exchange.x25519_shared", shared, kx["x25519_shared"])
    else:
        C.skip("X25519")
    # crypto_kx: BLAKE2b-512(q || client_pk || server_pk) = client rx || client tx.
    inp = h(kx["x25519_shared"]) + h(ini["ephemeral_public"]) + h(res["ephemeral_public"])
    C.eq(w + ".key_exchange.blake2b_512_input", inp, kx["blake2b_512_input"])
    k = b2b(inp, 64)
    C.eq(w + ".key_exchange.blake2b_512", k, kx["blake2b_512"])
    C.eq(w + ".key_exchange.initiator_rx", k[:32], kx["initiator_rx"])
    C.eq(w + ".key_exchange.initiator_tx", k[32:], kx["initiator_tx"])
    C.eq(w + ".key_exchange.responder_rx", k[32:], kx["responder_rx"])
    C.eq(w + ".key_exchange.responder_tx", k[:32], kx["responder_tx"])
    base = {"initiator to responder": k[32:], "responder to initiator": k[:32]}
    rk = doc["rekey"]
    C.eq(w + ".rekey.message", b"meshnode/session/v1/rekey", rk["message"])

    def key_for(direction, counter):
        key = base[direction]
        for _ in range(counter // 16384):
            key = b2b(b"meshnode/session/v1/rekey", 32, key=key)
        return key

    C.eq(w + ".rekey.initiator_tx_key_1", key_for("initiator to responder", 16384), rk["initiator_tx_key_1"])
    C.eq(w + ".rekey.responder_tx_key_1", key_for("responder to initiator", 16384), rk["responder_tx_key_1"])

    for s in doc["sessions"]:
        ws = f"{w}[{s['suite']}]"
        hs = s["handshake"]
        hf = hs["hello"]["fields"]
        hello = (h(hf["magic"]) + u8(hf["version"]) + h(hf["initiator_id"]) + h(hf["initiator_eph"]) + u8(hf["ciphers"])
                 + blob16(h(hf["credential"])) + h(hf["expected_id"]))
        C.eq(ws + ".hello.fields.magic", b"MNS1", hf["magic"])
        C.eq(ws + ".hello.fields.initiator_id", ini["id"], hf["initiator_id"])
        C.eq(ws + ".hello.fields.initiator_eph", ini["ephemeral_public"], hf["initiator_eph"])
        C.eq(ws + ".hello.fields.expected_id", res["id"], hf["expected_id"])
        C.eq(ws + ".hello.fields.credential (certificates.json)", CERTIFICATE.get("encoded"), hf["credential"])
        C.eq(ws + ".hello.bytes", hello, hs["hello"]["bytes"])
        C.eq(ws + ".hello.wire", wire(hello), hs["hello"]["wire"])
        C.true(ws + ".hello", len(hello) <= 512, "over the 512-byte handshake frame limit")
        af = hs["accept"]["fields"]
        # The responder supports both AEADs and is not on a loopback tunnel: AES-GCM if offered.
        chosen = 0x02 if hf["ciphers"] & 0x02 else 0x01
        C.eq(ws + ".accept.fields.cipher", chosen, af["cipher"])
        C.eq(ws + ".suite_code", chosen, s["suite_code"])
        C.eq(ws + ".accept.fields.responder_id", res["id"], af["responder_id"])
        C.eq(ws + ".accept.fields.responder_eph", res["ephemeral_public"], af["responder_eph"])
        signed_part = (h(af["magic"]) + u8(af["version"]) + h(af["responder_id"]) + h(af["responder_eph"])
                       + u8(af["cipher"]) + blob16(h(af["credential"])))
        C.eq(ws + ".accept.signed_part", signed_part, hs["accept"]["signed_part"])
        th = b2b(hello + signed_part)
        C.eq(ws + ".accept.responder_transcript_hash", th, hs["accept"]["responder_transcript_hash"])
        rsigned = b"meshnode/session/v1/responder\0" + th
        C.eq(ws + ".accept.responder_signed_bytes", rsigned, hs["accept"]["responder_signed_bytes"])
        check_signature(ws + ".accept", res["identity"], rsigned, hs["accept"]["signature"])
        accept = signed_part + h(hs["accept"]["signature"])
        C.eq(ws + ".accept.bytes", accept, hs["accept"]["bytes"])
        C.eq(ws + ".accept.wire", wire(accept), hs["accept"]["wire"])
        ih = b2b(hello + accept)
        C.eq(ws + ".confirm.initiator_transcript_hash", ih, hs["confirm"]["initiator_transcript_hash"])
        isigned = b"meshnode/session/v1/initiator\0" + ih
        C.eq(ws + ".confirm.initiator_signed_bytes", isigned, hs["confirm"]["initiator_signed_bytes"])
        check_signature(ws + ".confirm", ini["identity"], isigned, hs["confirm"]["bytes"])
        C.eq(ws + ".confirm.wire", wire(h(hs["confirm"]["bytes"])), hs["confirm"]["wire"])

        for n, f in enumerate(s["frames"] + [s["rekeyed_frame"]]):
            wf = f"{ws}.frames[{n}]"
            key = key_for(f["direction"], f["counter"])
            C.eq(wf + ".key_bytes", key, f["key_bytes"])
            nonce = bytes(4) + u64(f["counter"])
            C.eq(wf + ".nonce", nonce, f["nonce"])
            pt = h(f["plaintext"])
            if pt[0] == 0x01:
                C.true(wf + ".plaintext", pt[1:].hex() in ENVELOPES, "not 0x01 then an envelope of gossip-envelopes.json")
            else:
                C.true(wf + ".plaintext", pt.hex() in BLOB_ENCODINGS, "not a message of chunk-exchange.json")
            if HAVE_CRYPTO:
                sealed = aead(s["suite_code"], key).encrypt(nonce, pt, None)
                C.eq(wf + ".sealed", sealed, f["sealed"])
                try:
                    opened = aead(s["suite_code"], key).decrypt(nonce, h(f["sealed"]), None)
                except Exception:
                    opened = "(does not open: wrong key, nonce or tag)"
                C.eq(wf + " opened", opened, f["plaintext"])
            else:
                C.skip("AES-256-GCM and ChaCha20-Poly1305")
            C.eq(wf + ".wire", wire(h(f["sealed"])), f["wire"])
            C.eq(wf + " tag length", len(h(f["sealed"])) - len(pt), 16)


# --- main ------------------------------------------------------------------------------------

FILES = [  # in dependency order: later files refer to values checked in earlier ones
    ("identities.json", check_identities),
    ("content-ids.json", check_content_ids),
    ("manifest-entries.json", check_manifest_entries),
    ("certificates.json", check_certificates),
    ("gossip-envelopes.json", check_gossip_envelopes),
    ("anti-entropy.json", check_anti_entropy),
    ("chunk-exchange.json", check_chunk_exchange),
    ("custody.json", check_custody),
    ("session.json", check_session),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "docs", "test-vectors")
    for name, check in FILES:
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        C.true(name, "description" in doc and "spec" in doc, "no description or spec field")
        before_checks, before_failures = C.checks, len(C.failures)
        try:
            check(doc)
        except Exception as e:  # a missing field or a malformed value: report it, check the rest
            C.failures.append(f"{name}: cannot check the file ({type(e).__name__}: {e})")
        print(f"{name}: {C.checks - before_checks} checks, {len(C.failures) - before_failures} failed")
    if not HAVE_CRYPTO:
        print("python3 'cryptography' is not installed; skipped: " + ", ".join(sorted(C.skipped))
              + " (install python3-cryptography for the full check)")
    if C.failures:
        print(f"{len(C.failures)} of {C.checks} checks FAILED:")
        for f in C.failures:
            print("  " + f)
        return 1
    print(f"all checks passed ({C.checks} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
