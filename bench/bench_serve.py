#!/usr/bin/env python3
"""Load test of `jamba serve` on loopback: N concurrent clients stream completions for a fixed time.

    python3 bench/bench_serve.py [--cli build/cpu/jamba] [--model models/demo] [--clients 32] [--seconds 120]
                                 [--max-tokens 64] [--parallel 0] [--json FILE] [-- extra jamba serve options]

Starts the server itself (--port 0 on 127.0.0.1, bounded start-up wait), runs --clients threads that each send
streaming /v1/completions requests back to back (a different slice of Tiny Shakespeare as the prompt, 64 tokens
generated with ignore_eos, sampled with a per-request seed) until --seconds have passed, waits for the requests
in flight (bounded), then stops the server with SIGTERM and checks that it exits 0. Counts as an error: a status
other than 200, a stream without [DONE], a connection failure, a finish_reason other than "length", or a usage
count that differs from the tokens asked for. Prints requests, errors, generated tokens per second, time to first
token (p50, p99) and request latency (p50, p99), and the server's own counters; the exit status is 1 when there
was any error. Python standard library only.
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def start_server(args, log):
    cmd = [args.cli, "serve", "--model", args.model, "--port", "0", "--parallel", str(args.parallel)] + args.extra
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while True:
        with open(log.name) as f:
            m = re.search(r"listening on http://([0-9.]+):([0-9]+)", f.read())
        if m:
            return proc, m.group(1), int(m.group(2))
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(log.name) as f:
                sys.exit("jamba serve did not start: " + f.read())
        time.sleep(0.05)


def one_request(host, port, body, timeout):
    """(ttft seconds, latency seconds, completion tokens, finish_reason) of one streamed completion."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            raise RuntimeError("status %d: %s" % (r.status, r.read()[:200]))
        ttft, tokens, finish, done, buf = None, None, None, False, b""
        while not done:
            piece = r.read1(65536)
            if not piece:
                break
            buf += piece
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                data = event[len(b"data: "):]
                if data == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError("error event: %s" % chunk["error"])
                for c in chunk.get("choices", []):
                    if c.get("text") and ttft is None:
                        ttft = time.monotonic() - t0
                    finish = c.get("finish_reason") or finish
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        if not done:
            raise RuntimeError("the stream ended without [DONE]")
        return ttft if ttft is not None else time.monotonic() - t0, time.monotonic() - t0, tokens, finish
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=os.environ.get("JAMBA_CLI", os.path.join(ROOT, "build", "cpu", "jamba")))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=0, help="jamba serve --parallel (0: by memory; 1: one at a time)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("extra", nargs="*", help="more jamba serve options (after --)")
    args = ap.parse_args()
    if not (1 <= args.clients <= 1024 and 0 < args.seconds <= 3600 and 1 <= args.max_tokens <= 4096):
        sys.exit("bench_serve: --clients 1..1024, --seconds up to 3600, --max-tokens 1..4096")
    with open(os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()

    log = tempfile.NamedTemporaryFile(mode="w+", prefix="bench-serve-", suffix=".log", delete=False)
    proc, host, port = start_server(args, log)
    lock = threading.Lock()
    results, errors = [], []
    counter = [0]
    t_start = time.monotonic()
    t_end = t_start + args.seconds

    def client(k):
        while time.monotonic() < t_end:
            with lock:
                i = counter[0]
                counter[0] += 1
            at = (i * 7919) % (len(text) - 400)
            body = {"model": "demo", "prompt": text[at:at + 300], "max_tokens": args.max_tokens, "stream": True,
                    "stream_options": {"include_usage": True}, "ignore_eos": True, "seed": i,
                    "temperature": 0.8}
            try:
                ttft, latency, tokens, finish = one_request(host, port, body, timeout=args.seconds + 300)
                if finish != "length" or tokens != args.max_tokens:
                    raise RuntimeError("finish_reason %s, %s tokens" % (finish, tokens))
                with lock:
                    results.append((ttft, latency, tokens))
            except Exception as e:  # counted, reported, and the client goes on
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 600)
    wall = time.monotonic() - t_start
    hung = sum(t.is_alive() for t in threads)

    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics")
    metrics_text = conn.getresponse().read().decode()
    conn.close()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "killed after 60 s"
    log.seek(0)
    server_log = log.read()
    log.close()
    os.unlink(log.name)

    def metric(name):
        m = re.search(r"^%s (\S+)$" % re.escape(name), metrics_text, re.M)
        return float(m.group(1)) if m else None

    tokens = sum(r[2] for r in results)
    out = {
        "clients": args.clients, "seconds": args.seconds, "max_tokens": args.max_tokens, "parallel": args.parallel,
        "sequences": metric("jamba_sequences_max"), "wall_seconds": round(wall, 2), "requests": len(results),
        "errors": len(errors) + hung, "generated_tokens": tokens, "tokens_per_second": round(tokens / wall, 1),
        "ttft_p50_ms": round(1000 * percentile([r[0] for r in results], 50), 1),
        "ttft_p99_ms": round(1000 * percentile([r[0] for r in results], 99), 1),
        "latency_p50_ms": round(1000 * percentile([r[1] for r in results], 50), 1),
        "latency_p99_ms": round(1000 * percentile([r[1] for r in results], 99), 1),
        "server_steps": metric("jamba_steps_total"),
        "generated_tokens_per_step": round(metric("jamba_generated_tokens_total") / metric("jamba_steps_total"), 2)
        if metric("jamba_steps_total") else None,
        "server_exit": rc,
    }
    print(json.dumps(out, indent=2))
    for e in errors[:10]:
        print("error:", e, file=sys.stderr)
    if rc != 0:
        print("server log:\n" + server_log, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 1 if out["errors"] or rc != 0 or not results else 0


if __name__ == "__main__":
    sys.exit(main())
