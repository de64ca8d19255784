#!/usr/bin/env python3
"""gen_reliability.py — the reliability suite: crafted adversarial inputs run against the `jamba` CLI.

    tools/gen_reliability.py --cli build/asan/jamba [--jobs 2] [--timeout 30] [--keep DIR] [--only PREFIX]

Crafts every case at run time in a temporary folder (nothing is committed as a binary blob): malformed,
truncated and bit-flipped safetensors headers; bad shard indexes (one with 100,000 shard names); bad
config.json files; bad tokenizer.json / tokenizer.model files (long merge chains, growing pipelines, regexes
that fail); FIFOs named as model, index, config and tokenizer files; absurd command-line values; and
interrupted, disk-full and refused writes of `jamba quantize`. Each case runs under a time limit and must end
exactly as expected:

    refused  exit status 1 (or 2 for a usage error) with a "jamba: error:" / "jamba <command>:" line on stderr
             that names the file (or option) at fault, nothing on stdout
    loaded   exit status 0
    same     exit status 0 with the same output as the unmodified input (a change that must not matter),
             or refused naming the file (random bit flips: either is right, a different answer is not)
    any      refused naming the file, or exit status 0 (bit flips in a tokenizer.model, where a flipped
             score is a different but valid tokenizer)

and a write must leave its destination either as it was or complete, with no temporary folder beside it.
Prints one line per case that went wrong and the counts: tried / refused cleanly / loaded / crashed / hung /
data lost / wrong outcome. Exits 1 when any case crashed (a signal, a sanitizer report, an unexpected exit
status), hung, lost data or ended otherwise than expected. Python standard library only.
"""
import argparse
import concurrent.futures
import json
import os
import random
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY = os.path.join(ROOT, "tests/fixtures/models/tiny-hf")
SHARDED = os.path.join(ROOT, "tests/fixtures/models/tiny-hf-sharded")
DEMO = os.path.join(ROOT, "models/demo")
BYTELEVEL = os.path.join(ROOT, "tests/fixtures/tokenizers/bytelevel-gpt2/tokenizer.json")
SPM_MODEL = os.path.join(ROOT, "tests/fixtures/tokenizers/sp-chat/tokenizer.model")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "ThreadSanitizer")


class Case:
    """One crafted input and the outcome it must have."""

    def __init__(self, name, argv, expect, needle=None, baseline=None, write=None, signal_after=None,
                 fsize_limit=None, stdin=None):
        self.name = name
        self.argv = argv              # the command, after the CLI path
        self.expect = expect          # "refused", "loaded", "same" or "any"
        self.needle = needle          # what a refusal must name (a file or an option)
        self.baseline = baseline      # for "same": the normalized output of the unmodified input
        self.write = write            # for writes: (destination, snapshot() of it before, or None)
        self.signal_after = signal_after  # (seconds, signal) to send while it runs
        self.fsize_limit = fsize_limit    # RLIMIT_FSIZE for the run (a disk that fills up)
        self.stdin = stdin


# ---- file helpers ------------------------------------------------------------------------------------

def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def read_st(path):
    """(header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_bytes(header_text, data, length=None):
    """A safetensors image from header text (padded with spaces to 8 bytes) and data; `length` overrides the
    8-byte header length field."""
    h = header_text.encode() if isinstance(header_text, str) else header_text
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


# ---- running ---------------------------------------------------------------------------------------

def normalize(text, folder):
    """inspect --json output without what legitimately differs between two spellings of one checkpoint: the
    folder's path and each tensor's byte offset in its file (a longer header moves the data)."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "offset"}
        return [strip(v) for v in node] if isinstance(node, list) else node
    text = text.replace(folder, "<DIR>")
    try:
        return json.dumps(strip(json.loads(text)), sort_keys=True)
    except ValueError:
        return text


def run(cli, case, timeout):
    """Run one case: (outcome, detail) with outcome one of refused, loaded, crashed, hung, lost, wrong."""
    def limits():
        if case.fsize_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize_limit, case.fsize_limit))

    start = time.monotonic()
    proc = subprocess.Popen([cli] + case.argv, stdin=subprocess.PIPE if case.stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limits,
                            env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                                     UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"))
    if case.signal_after:
        delay, sig = case.signal_after
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
    try:
        out, err = proc.communicate(input=case.stdin.encode() if case.stdin else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hung", "no answer after %.0f s" % timeout
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    rc = proc.returncode
    seconds = time.monotonic() - start
    if any(mark in err for mark in SANITIZER_MARKS):
        return "crashed", "sanitizer report: " + err[-600:]
    interrupted = case.signal_after is not None
    allowed = {0, 1, 2} | ({128 + case.signal_after[1], -case.signal_after[1]} if interrupted else set())
    if rc not in allowed:
        return "crashed", "exit status %d after %.1f s: %s" % (rc, seconds, err[-600:])
    if case.write is not None:
        lost = check_write(cli, case, rc, timeout)
        if lost:
            return "lost", lost
    if rc in (1, 2):
        lines = [l for l in err.splitlines() if l.startswith("jamba")]
        named = case.needle is None or case.needle in err
        if case.expect == "loaded" and not interrupted:
            return "wrong", "expected to load, got exit %d: %s" % (rc, err.strip()[-400:])
        if not lines or not named or out:
            return "wrong", "exit %d without a message naming %s (stdout %d bytes): %s" % (
                rc, case.needle, len(out), err.strip()[-400:])
        return "refused", ""
    if rc != 0:  # ended by the signal it was sent: at once before the write began, 128 + signal during it
        return "refused", "exit %d (signal %d)" % (rc, case.signal_after[1])
    if case.expect == "refused":
        return "wrong", "expected a refusal naming %s, but it exited 0" % case.needle
    if interrupted:
        return "loaded", "written whole before signal %d arrived (%.2f s)" % (case.signal_after[1], seconds)
    if case.expect == "same" and case.baseline is not None and normalize(out, case.argv_folder) != case.baseline:
        return "wrong", "loaded with a different result"
    return "loaded", ""


def snapshot(folder):
    """{file name: bytes} of a folder's files, or None when it does not exist."""
    if not os.path.isdir(folder):
        return None
    return {e: open(os.path.join(folder, e), "rb").read() for e in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, e))}


def check_write(cli, case, rc, timeout):
    """'' when the destination is as it was, or (the write succeeded or ended after its commit) a complete
    folder that loads, and nothing is left beside it; else what was lost or left."""
    dest, before = case.write
    parent, base = os.path.split(dest)
    left = [e for e in os.listdir(parent) if e.startswith(base + ".tmp.") or e.startswith(base + ".old.")]
    if left:
        return "left behind: " + ", ".join(left)
    now = snapshot(dest)
    if now == before or (rc != 0 and before is None and not now):
        return "" if rc != 0 or before is None else "exit 0 but nothing was written"
    if rc not in (0,) and case.signal_after is None:
        return "a failed write changed the destination"
    chk = subprocess.run([cli, "inspect", "-m", dest], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         timeout=timeout)
    if chk.returncode != 0:
        return "the destination is neither the old folder nor a whole new one: " + \
            chk.stderr.decode(errors="replace")[-300:]
    return ""


# ---- the cases --------------------------------------------------------------------------------------

def inspect_case(name, folder, expect, needle, baseline=None):
    c = Case(name, ["inspect", "-m", folder, "--json", "--tensors"], expect, needle, baseline)
    c.argv_folder = folder
    return c


def baseline_of(cli, folder, timeout):
    r = subprocess.run([cli, "inspect", "-m", folder, "--json", "--tensors"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        sys.exit("gen_reliability: the unmodified fixture %s does not load: %s" % (folder, r.stderr.decode()))
    return normalize(r.stdout.decode(), folder)


def safetensors_cases(work, cli, timeout, rng):
    """Truncations, header length fields, malformed and mutated headers, and random bit flips of the
    tiny-hf checkpoint; `inspect` must refuse naming model.safetensors (or load it unchanged)."""
    cases = []
    header, data = read_st(os.path.join(TINY, "model.safetensors"))
    raw = open(os.path.join(TINY, "model.safetensors"), "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    base = copy_model(TINY, os.path.join(work, "st-base"))
    same = baseline_of(cli, base, timeout)
    n = [0]

    def variant(label, image, expect="refused"):
        n[0] += 1
        d = copy_model(TINY, os.path.join(work, "st-%03d" % n[0]))
        write_bytes(os.path.join(d, "model.safetensors"), image)
        # a flipped tensor name is refused as a missing and an unexpected tensor of the folder
        needle = d if label.startswith("bit flips") else "model.safetensors"
        cases.append(inspect_case("safetensors/" + label, d, expect, needle, same if expect == "same" else None))

    for cut in [0, 1, 7, 8, 9, 8 + hlen // 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1, 8 + hlen + len(data) // 2,
                len(raw) - 1]:
        variant("truncated at byte %d" % cut, raw[:cut])
    for length in [0, 1, 2, 7, hlen - 8, hlen + 8, len(raw), 1 << 27, (1 << 63) - 1, (1 << 64) - 1]:
        variant("header length field %d" % length, struct.pack("<Q", length) + raw[8:])
    variant("data one byte longer", raw + b"\0")
    first = next(k for k in header if k != "__metadata__")

    def mutated(label, fn, expect="refused"):
        h = json.loads(json.dumps(header))
        fn(h)
        variant(label, st_bytes(json.dumps(h), data), expect)

    mutations = {
        "dtype F64": lambda h: h[first].update(dtype="F64"),
        "dtype unknown": lambda h: h[first].update(dtype="Q4"),
        "dtype a number": lambda h: h[first].update(dtype=3),
        "dtype missing": lambda h: h[first].pop("dtype"),
        "shape negative": lambda h: h[first].update(shape=[-64, 16]),
        "shape overflows": lambda h: h[first].update(shape=[1 << 40, 1 << 40, 1 << 40]),
        "shape one element more": lambda h: h[first].update(shape=[65, 16]),
        "shape scalar": lambda h: h[first].update(shape=[]),
        "shape a string": lambda h: h[first].update(shape="64,16"),
        "shape missing": lambda h: h[first].pop("shape"),
        "shape of floats": lambda h: h[first].update(shape=[64.0, 16.0]),
        "offsets reversed": lambda h: h[first].update(data_offsets=h[first]["data_offsets"][::-1]),
        "offsets past the data": lambda h: h[first].update(data_offsets=[0, 1 << 40]),
        "offsets one element": lambda h: h[first].update(data_offsets=[0]),
        "offsets strings": lambda h: h[first].update(data_offsets=["0", "4096"]),
        "offsets missing": lambda h: h[first].pop("data_offsets"),
        "offsets negative": lambda h: h[first].update(data_offsets=[-4096, 0]),
        "tensor not an object": lambda h: h.update({first: [1, 2, 3]}),
        "extra key in a tensor": lambda h: h[first].update(extra=1),
        "metadata not an object": lambda h: h.update(__metadata__=[1]),
        "metadata value not a string": lambda h: h.update(__metadata__={"format": 1}),
        "a tensor removed": lambda h: h.pop(first),
        "a 1 MB tensor name": lambda h: h.update({"x" * (1 << 20): h.pop(first)}),
        "a tensor name with NUL": lambda h: h.update({first + "\0": h.pop(first)}),
        "overlapping offsets": lambda h: [h[k].update(data_offsets=[0, 4096]) for k in list(h)[1:3]],
    }
    for label, fn in mutations.items():
        mutated(label, fn)
    for label, fn in {"metadata added": lambda h: h["__metadata__"].update(note="x" * 1000),
                      "keys reordered": lambda h: [h.update({k: h.pop(k)}) for k in sorted(h, reverse=True)]}.items():
        mutated(label, fn, "same")
    text = json.dumps(header)
    variant("header padded with spaces", st_bytes(text + " " * 4096, data), "same")
    variant("header not JSON", st_bytes("{not json" + text, data))
    variant("header a JSON array", st_bytes("[" + text + "]", data))
    variant("header a string", st_bytes(json.dumps(text), data))
    variant("header nested 100000 deep", st_bytes('{"__metadata__":' + "[" * 100000 + "]" * 100000 + "}", data))
    variant("duplicate tensor name", st_bytes(text[:-1] + ", " + json.dumps(first) + ": " +
                                              json.dumps(header[first]) + "}", data))
    variant("header with trailing bytes", st_bytes(text + "garbage", data))
    variant("header not UTF-8", st_bytes(text.encode()[:-1] + b'\xff"x":{}}', data))
    # random bit flips anywhere in the header (including the length field): either refused naming the file,
    # or loaded with exactly the unmodified result
    for i in range(400):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(0, 8 + hlen)
            b[pos] ^= 1 << rng.randrange(8)
        variant("bit flips #%d" % i, bytes(b), "same")
    return cases


def index_cases(work, cli, timeout, rng):
    """Shard indexes: `inspect` must refuse naming the index or the shard at fault (or load unchanged)."""
    cases = []
    idx_name = "model.safetensors.index.json"
    index = json.load(open(os.path.join(SHARDED, idx_name)))
    base = copy_model(SHARDED, os.path.join(work, "ix-base"))
    same = baseline_of(cli, base, timeout)
    n = [0]

    def variant(label, content, expect="refused", needle=idx_name, extra=None):
        n[0] += 1
        d = copy_model(SHARDED, os.path.join(work, "ix-%03d" % n[0]))
        path = os.path.join(d, idx_name)
        if isinstance(content, (bytes, str)):
            write_bytes(path, content if isinstance(content, bytes) else content.encode())
        else:
            write_json(path, content)
        if extra:
            extra(d)
        cases.append(inspect_case("index/" + label, d, expect, needle, same if expect == "same" else None))

    wm = index["weight_map"]
    first = next(iter(wm))
    many = {"model.layers.%d.fake.weight" % i: "shard-%06d.safetensors" % i for i in range(100000)}
    variant("100,000 shard names", {"weight_map": dict(wm, **many)}, needle="shard-")
    variant("100,000 tensors in one missing shard",
            {"weight_map": dict(wm, **{k: "missing.safetensors" for k in many})}, needle="missing.safetensors")

    def wm_with(**changes):
        d = dict(wm)
        d.update(changes)
        return {"metadata": index.get("metadata", {}), "weight_map": d}

    variant("weight_map missing", {"metadata": {}})
    variant("weight_map an array", {"weight_map": list(wm)})
    variant("weight_map empty", {"weight_map": {}}, needle="tensors missing")
    variant("a shard name a number", wm_with(**{first: 7}))
    variant("a shard name with ../", wm_with(**{first: "../x.safetensors"}))
    variant("an absolute shard name", wm_with(**{first: "/etc/passwd"}))
    variant("a shard name in a subfolder", wm_with(**{first: "sub/x.safetensors"}))
    variant("an empty shard name", wm_with(**{first: ""}))
    variant("a missing shard", wm_with(**{first: "model-99999-of-00017.safetensors"}),
            needle="model-99999-of-00017.safetensors")
    other = next(v for v in wm.values() if v != wm[first])
    variant("a tensor mapped to the wrong shard", wm_with(**{first: other}))
    variant("a tensor left out of the map", {"weight_map": {k: v for k, v in wm.items() if k != first}})
    variant("index not JSON", "{\"weight_map\": ")
    variant("index empty", b"")
    variant("index a JSON string", json.dumps("weight_map"))
    variant("index nested 100000 deep", '{"weight_map":' + "[" * 100000 + "]" * 100000 + "}")
    variant("index of 70 MB (over the 64 MiB cap)",
            '{"weight_map": ' + json.dumps(wm) + ', "pad": "' + "x" * (70 << 20) + '"}')
    variant("metadata total_size wrong", dict(index, metadata={"total_size": 1}), "same")
    variant("a shard truncated", index, needle=wm[first],
            extra=lambda d: write_bytes(os.path.join(d, wm[first]),
                                        open(os.path.join(d, wm[first]), "rb").read()[:100]))
    return cases


def config_cases(work, cli, timeout, rng):
    """config.json: `inspect` must refuse naming config.json."""
    cases = []
    cfg = json.load(open(os.path.join(TINY, "config.json")))
    n = [0]

    def variant(label, content, expect="refused"):
        n[0] += 1
        d = copy_model(TINY, os.path.join(work, "cf-%03d" % n[0]))
        path = os.path.join(d, "config.json")
        if isinstance(content, str):
            write_bytes(path, content.encode())
        else:
            write_json(path, content)
        cases.append(inspect_case("config/" + label, d, expect, "config.json"))

    def changed(**kv):
        c = dict(cfg)
        for k, v in kv.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    for key in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
                "intermediate_size", "num_experts", "num_experts_per_tok", "mamba_d_state", "mamba_d_conv",
                "mamba_expand", "attn_layer_period", "expert_layer_period", "max_position_embeddings"]:
        variant("%s zero" % key, changed(**{key: 0}))
        variant("%s negative" % key, changed(**{key: -4}))
        # 2^40 positions is only a number (nothing is sized by it until a context is made)
        variant("%s 2^40" % key, changed(**{key: 1 << 40}),
                "loaded" if key == "max_position_embeddings" else "refused")
        variant("%s a string" % key, changed(**{key: "16"}))
    variant("hidden_size missing", changed(hidden_size=None))
    variant("heads do not divide hidden_size", changed(num_attention_heads=3))
    variant("experts per token above experts", changed(num_experts_per_tok=5))
    variant("attn offset at its period", changed(attn_layer_offset=4))
    variant("expert offset past its period", changed(expert_layer_offset=7))
    variant("rms_norm_eps negative", changed(rms_norm_eps=-1.0))
    variant("rms_norm_eps a string", changed(rms_norm_eps="1e-6"))
    variant("mamba_dt_rank 2^40", changed(mamba_dt_rank=1 << 40))
    variant("model_type llama", changed(model_type="llama"))
    variant("not JSON", "{\"hidden_size\": 16,")
    variant("empty", "")
    variant("a JSON array", json.dumps([cfg]))
    variant("NaN literal", json.dumps(cfg)[:-1] + ', "rope_theta": NaN}')
    variant("nested 100000 deep", '{"x":' + "[" * 100000 + "]" * 100000 + "}")
    variant("a 10 MB string (over the 4 MiB cap)", dict(cfg, note="x" * (10 << 20)))
    variant("eos_token_id a list", changed(eos_token_id=[2, 3]), "loaded")
    variant("unknown keys", dict(cfg, some_future_key={"a": [1, 2]}), "loaded")
    return cases


def tokenizer_cases(work, cli, timeout, rng):
    """tokenizer.json / tokenizer.model: `tokenize --tokenizer FILE` must refuse naming the file, or
    tokenize within the time limit."""
    cases = []
    tok = json.load(open(BYTELEVEL))
    n = [0]

    def variant(label, content, expect="refused", text="Hello, world! 123", file_name="tokenizer.json"):
        n[0] += 1
        d = os.path.join(work, "tk-%03d" % n[0])
        os.makedirs(d)
        path = os.path.join(d, file_name)
        if isinstance(content, (bytes, str)):
            write_bytes(path, content if isinstance(content, bytes) else content.encode())
        else:
            write_json(path, content)
        cases.append(Case("tokenizer/" + label, ["tokenize", "--tokenizer", path, "--text", text], expect,
                          file_name))

    def changed(fn):
        t = json.loads(json.dumps(tok))
        fn(t)
        return t

    variant("not JSON", "{\"model\": ")
    variant("empty", "")
    variant("model missing", changed(lambda t: t.pop("model")))
    variant("model WordPiece", changed(lambda t: t["model"].update(type="WordPiece")))
    variant("vocab not an object", changed(lambda t: t["model"].update(vocab=[1, 2])))
    variant("vocab id negative", changed(lambda t: t["model"]["vocab"].update(x=-5)))
    variant("vocab id 2^40", changed(lambda t: t["model"]["vocab"].update(x=1 << 40)))
    variant("vocab ids duplicated", changed(lambda t: t["model"]["vocab"].update(zzz=1)))
    variant("merge of an unknown token", changed(lambda t: t["model"]["merges"].insert(0, "qqqq zzzz")))
    variant("merge without a space", changed(lambda t: t["model"]["merges"].insert(0, "ab")))
    variant("merge a number", changed(lambda t: t["model"]["merges"].insert(0, 5)))
    variant("added token id past the vocabulary",
            changed(lambda t: t["added_tokens"].append({"id": 1 << 30, "content": "<x>", "special": True})))
    variant("added token without content",
            changed(lambda t: t["added_tokens"].append({"id": 3, "special": True})))
    variant("pre_tokenizer unknown", changed(lambda t: t.update(pre_tokenizer={"type": "Whitespace2"})))
    variant("Split regex that does not compile",
            changed(lambda t: t.update(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(a"},
                                                      "behavior": "Isolated", "invert": False})))
    variant("16 ByteLevel steps (unbounded growth)",
            changed(lambda t: t.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}] * 16})))
    variant("catastrophic regex (PCRE2's match limit)",
            changed(lambda t: t.update(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(a+)+b"},
                                                      "behavior": "Isolated", "invert": False})),
            text="a" * 40 + "c b")
    variant("nested 100000 deep", '{"model":' + "[" * 100000 + "]" * 100000 + "}")
    # long merge chains: "a"+"a" -> "aa", "aa"+"a" -> "aaa", ... up to 2,000 characters
    chain = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
             "post_processor": None, "decoder": None, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}
    for k in range(2, 2001):
        chain["model"]["vocab"]["a" * k] = k - 1
        chain["model"]["merges"].append("a" * (k - 1) + " a")
    variant("merge chain of 2,000", chain, "loaded", text="a" * 20000)
    big = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
           "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "vocab": {"t%d" % i: i for i in range(200000)}, "merges": [],
                     "unk_token": "t0"}}
    variant("200,000-piece vocabulary", big, "loaded")
    spm = open(SPM_MODEL, "rb").read()
    variant("tokenizer.model truncated", spm[:len(spm) // 2], file_name="tokenizer.model")
    variant("tokenizer.model garbage", bytes(rng.randrange(256) for _ in range(4096)), file_name="tokenizer.model")
    for i in range(20):
        b = bytearray(spm)
        for _ in range(3):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        variant("tokenizer.model bit flips #%d" % i, bytes(b), "any", file_name="tokenizer.model")
    return cases


def fifo_cases(work, cli, timeout, rng):
    """FIFOs named as the files a command opens: refused by name, never a blocked open()."""
    cases = []
    for i, (src, name) in enumerate([(TINY, "config.json"), (TINY, "model.safetensors"),
                                     (SHARDED, "model.safetensors.index.json"),
                                     (SHARDED, "model-00001-of-00017.safetensors")]):
        d = copy_model(src, os.path.join(work, "ff-%d" % i))
        os.remove(os.path.join(d, name))
        os.mkfifo(os.path.join(d, name))
        cases.append(inspect_case("fifo/" + name, d, "refused", name))
    d = os.path.join(work, "ff-tok")
    os.makedirs(d)
    os.mkfifo(os.path.join(d, "tokenizer.json"))
    cases.append(Case("fifo/tokenizer.json", ["tokenize", "--model", d, "--text", "x"], "refused", "tokenizer.json"))
    d = copy_model(DEMO, os.path.join(work, "ff-gen"))
    os.mkfifo(os.path.join(d, "generation_config.json"))
    cases.append(Case("fifo/generation_config.json", ["generate", "-m", d, "-p", "x", "-n", "1"], "refused",
                      "generation_config.json"))
    d = os.path.join(work, "ff-dir")
    os.makedirs(os.path.join(d, "config.json"))
    cases.append(inspect_case("a folder named config.json", d, "refused", "config.json"))
    return cases


def cli_value_cases(work, cli, timeout, rng):
    """Absurd option values: refused with the option named (usage errors exit 2)."""
    gen = ["generate", "-m", DEMO, "-p", "x", "-t", "1"]
    values = [
        (gen + ["--ctx", "0"], "--ctx"), (gen + ["--ctx", "99999999999999999999"], "--ctx"),
        (gen + ["--ctx", "-5"], "--ctx"), (gen + ["-n", "0"], "--max-tokens"),
        (gen + ["-n", "99999999999"], "--max-tokens"), (gen + ["--threads", "100000"], "--threads"),
        (gen + ["--batch", "1e9"], "--batch"), (gen + ["--temperature", "nan"], "--temperature"),
        (gen + ["--temperature", "inf"], "--temperature"), (gen + ["--top-p", "2"], "--top-p"),
        (gen + ["--top-k", "-1"], "--top-k"), (gen + ["--seed", "-1"], "--seed"),
        (gen + ["--min-p", "0x1p99"], "--min-p"), (gen + ["--repeat-penalty", "1e300"], "--repeat-penalty"),
        (gen + ["--device", "tpu"], "--device"), (gen + ["--gpu", "3"], "--gpu"),
        (gen + ["--experts", "int4"], "--experts"), (gen + ["--mlp", "fp8"], "--mlp"),
        (gen + ["--kv-dtype", "fp4"], "--kv-dtype"), (gen + ["--stop", ""], "--stop"),
        (gen + ["--stop=",], "--stop"), (gen[:4] + ["--prompt-file", "/no/such/file"], "/no/such/file"),
        (gen + ["--no-such-option"], "--no-such-option"), (gen + ["--ctx"], "--ctx"),
        (gen + ["--check-finite=1"], "--check-finite"),
        (["chat", "-m", DEMO, "--ctx", "0"], "--ctx"),
        (["inspect", "-m", TINY, "--ctx", "1T"], "--ctx"), (["inspect", "-m", TINY, "--seqs", "0"], "--seqs"),
        (["inspect", "-m", TINY, "--kv-dtype", "f64"], "--kv-dtype"), (["inspect", "-m", TINY, "--gpus", "2"], "--gpus"),
        (["inspect", "-m", TINY, "--gpu-memory", "-1"], "--gpu-memory"),
        (["inspect"], "--model"), (["inspect", "-m", "/no/such/model"], "/no/such/model"),
        (["tokenize", "-m", DEMO], "--text"), (["tokenize", "-m", DEMO, "--text", "x", "--file", "y"], "--text"),
        (["detokenize", "-m", DEMO, "--text", "1,x,3"], "token ids"),
        (["detokenize", "-m", DEMO, "--text", "99999999999"], "token ids"),
        (["detokenize", "-m", DEMO, "--text", "5000"], "5000"),
        (["quantize", "-m", TINY], "--out"), (["quantize", "-m", TINY, "--out", TINY], TINY),
        (["quantize", "-m", TINY, "--out", os.path.join(TINY, "config.json")], "config.json"),
        (["quantize", "-m", TINY, "--out", "/proc/version/x"], "/proc/version/x"),
        (["score", "-m", TINY, "--tokens", "1,2,999999"], "999999"),
        (["score", "-m", TINY, "--tokens", ""], "--tokens"),
        (["nosuchcommand"], "nosuchcommand"),
    ]
    return [Case("cli/" + " ".join(a[1:] if a[0] != "generate" else a[6:])[:60] or a[0], a, "refused", needle)
            for a, needle in values]


def write_cases(work, cli, timeout, rng):
    """`jamba quantize` interrupted by SIGINT/SIGTERM at random moments, on a full disk (RLIMIT_FSIZE), and
    onto a folder it must not change: the destination stays as it was or is complete, nothing is left."""
    cases = []
    for i in range(20):  # from while loading (the default action: nothing is written) to after the rename
        parent = os.path.join(work, "wr-sig-%d" % i)
        os.makedirs(parent)
        dest = os.path.join(parent, "out")
        old = None
        argv = ["quantize", "-m", DEMO, "--out", dest, "-t", "1"]
        if i % 2:  # replacing an existing folder
            shutil.copytree(TINY, dest)
            old = snapshot(dest)
            argv.append("--force")
        sig = signal.SIGINT if i % 3 else signal.SIGTERM
        delay = 0.015 * (i + 1)
        c = Case("write/signal %d after %.3f s%s" % (sig, delay, " (replacing)" if old else ""), argv,
                 "loaded", None, write=(dest, old), signal_after=(delay, sig))
        cases.append(c)
    for i, limit in enumerate([0, 4096, 1 << 20, 8 << 20]):
        parent = os.path.join(work, "wr-full-%d" % i)
        os.makedirs(parent)
        dest = os.path.join(parent, "out")
        cases.append(Case("write/full disk at %d bytes" % limit, ["quantize", "-m", DEMO, "--out", dest, "-t", "1"],
                          "refused", dest, write=(dest, None), fsize_limit=limit))
    parent = os.path.join(work, "wr-full-replace")
    os.makedirs(parent)
    dest = os.path.join(parent, "out")
    shutil.copytree(TINY, dest)
    cases.append(Case("write/full disk replacing a folder", ["quantize", "-m", DEMO, "--out", dest, "--force"],
                      "refused", dest, write=(dest, snapshot(dest)), fsize_limit=1 << 20))
    parent = os.path.join(work, "wr-nonempty")
    os.makedirs(parent)
    dest = os.path.join(parent, "out")
    shutil.copytree(SHARDED, dest)
    cases.append(Case("write/onto a non-empty folder without --force", ["quantize", "-m", TINY, "--out", dest],
                      "refused", dest, write=(dest, snapshot(dest))))
    return cases


GROUPS = [safetensors_cases, index_cases, config_cases, tokenizer_cases, fifo_cases, cli_value_cases, write_cases]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True, help="the jamba program (the ASan build's)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds a case may take")
    ap.add_argument("--keep", help="craft the cases in this folder and keep them")
    ap.add_argument("--only", default="", help="run only the cases whose name starts with this")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--verbose", action="store_true", help="one line per case")
    args = ap.parse_args()
    cli = os.path.abspath(args.cli)
    work = args.keep or tempfile.mkdtemp(prefix="jamba-reliability-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    try:
        cases = [c for g in GROUPS for c in g(work, cli, args.timeout, rng) if c.name.startswith(args.only)]
        counts = dict.fromkeys(["refused", "loaded", "crashed", "hung", "lost", "wrong"], 0)
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for case, (outcome, detail) in zip(cases, pool.map(lambda c: run(cli, c, args.timeout), cases)):
                counts[outcome] += 1
                if outcome not in ("refused", "loaded") or args.verbose:
                    print("%s: %s: %s" % (outcome.upper(), case.name, detail))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("reliability: tried %d / refused cleanly %d / loaded %d / crashed %d / hung %d / data lost %d / "
          "wrong outcome %d (%.0f s)" % (len(cases), counts["refused"], counts["loaded"], counts["crashed"],
                                         counts["hung"], counts["lost"], counts["wrong"],
                                         time.monotonic() - started))
    return 1 if counts["crashed"] or counts["hung"] or counts["lost"] or counts["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
