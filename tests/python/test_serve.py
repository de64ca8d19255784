"""Tests of `jamba serve` (docs/serve.md) with real clients on loopback: the official `openai` package and raw
HTTP (urllib, sockets). Each server is started by a fixture on a free port (--port 0: the server says which)
with a bounded wait, and always stopped (SIGTERM, then SIGKILL if it hangs), so no process is left behind.

Run by tools/test.sh with JAMBA_CLI pointing at the CPU build's jamba; skipped when that binary was built
without libmicrohttpd (CI requires it: JAMBA_REQUIRE_SERVE).
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

openai = pytest.importorskip("openai")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = os.path.join(ROOT, "models", "demo")
PROMPT = "ROMEO:\nBut soft, what light"
KEY = "test-key"
CTX = 512
START_TIMEOUT = 60
STOP_TIMEOUT = 30


def _cli():
    env = os.environ.get("JAMBA_CLI")
    if env:
        return env
    cli = os.path.join(ROOT, "build", "cpu", "jamba")
    return cli if os.path.isfile(cli) and os.access(cli, os.X_OK) else None


def _has_serve():
    cli = _cli()
    if cli is None:
        return False
    out = subprocess.run([cli, "serve", "--help"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0


pytestmark = pytest.mark.skipif(not _has_serve(), reason="no jamba CLI with `serve` (build/cpu/jamba or $JAMBA_CLI)")


class Server:
    """A `jamba serve` process on a free loopback port; its stderr goes to a file."""

    def __init__(self, *args):
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="jamba-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([_cli(), "serve", "--model", DEMO, "--port", "0", "--threads", "2"] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT
        self.url = None
        while self.url is None:
            m = re.search(r"listening on (http://[0-9.]+:[0-9]+)", self.stderr())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None:
                raise RuntimeError("jamba serve exited with %d: %s" % (self.proc.returncode, self.stderr()))
            elif time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("jamba serve did not start within %d s: %s" % (START_TIMEOUT, self.stderr()))
            else:
                time.sleep(0.05)

    def stderr(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        """SIGTERM and wait; the exit status (SIGKILL and a failure if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("jamba serve did not stop within %d s after SIGTERM" % STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Stop, clean up; the exit status and the log."""
        try:
            rc = self.stop()
            return rc, self.stderr()
        finally:
            self.kill()
            self.log.close()
            os.unlink(self.log.name)


@pytest.fixture(scope="module")
def server():
    s = Server("--api-key", KEY, "--ctx", str(CTX), "--max-body", "64k")
    try:
        yield s
    finally:
        rc, log = s.close()
    # after every test of the module: a clean exit (a sanitizer build exits non-zero on a leak)
    assert rc == 0, log


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def request(server, method, path, body=None, headers=None, key=KEY, timeout=120):
    """(status, parsed JSON or text) of one raw HTTP request."""
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def metric(server, name):
    status, text = request(server, "GET", "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric %s in:\n%s" % (name, text))


def generate_cli(prompt, max_tokens):
    out = subprocess.run([_cli(), "generate", "--model", DEMO, "--prompt", prompt, "--max-tokens", str(max_tokens),
                          "--temperature", "0", "--json", "--threads", "2"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ---- endpoints ---------------------------------------------------------------------------------------


def test_models_health_metrics(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["demo"]
    assert request(server, "GET", "/health", key=None) == (200, {"status": "ok"})
    for name in ("jamba_requests_waiting", "jamba_requests_running", "jamba_batch_tokens",
                 "jamba_prefix_cache_hits_total", "jamba_prefix_cache_tokens_restored_total",
                 "jamba_time_to_first_token_seconds_count", "jamba_generated_tokens_total"):
        assert metric(server, name) >= 0


def test_completion_greedy_equals_generate(client):
    want = generate_cli(PROMPT, 40)
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0)
    assert r.choices[0].text == want["text"]
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(want["prompt_ids"])
    assert r.usage.completion_tokens == 40
    assert r.usage.total_tokens == r.usage.prompt_tokens + 40
    # streamed: the same text in pieces, and the usage at the end when asked for
    chunks = list(client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 40 and chunks[-1].usage.prompt_tokens == len(want["prompt_ids"])


def test_chat_plain_transcript(client):
    messages = [{"role": "system", "content": "A scene in Verona."}, {"role": "user", "content": "Who art thou?"}]
    r = client.chat.completions.create(model="demo", messages=messages, max_tokens=48, temperature=0)
    text = r.choices[0].message.content
    assert r.choices[0].message.role == "assistant"
    assert isinstance(text, str) and text.strip()
    assert "\n\n" not in text  # the transcript's turn ends at a blank line
    assert r.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model="demo", messages=messages, max_tokens=48, temperature=0,
                                            stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream]
    assert "".join(pieces) == text


def test_stop_strings(client):
    full = client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0).choices[0].text
    stop = full[12:16]
    cut = full[:full.index(stop)]
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0, stop=[stop, "zzzz"])
    assert r.choices[0].text == cut
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 40
    chunks = client.completions.create(model="demo", prompt=PROMPT, max_tokens=40, temperature=0, stop=stop,
                                       stream=True)
    assert "".join(c.choices[0].text for c in chunks) == cut


def test_echo_and_token_id_prompts(client):
    plain = client.completions.create(model="demo", prompt=PROMPT, max_tokens=6, temperature=0).choices[0].text
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=6, temperature=0, echo=True)
    assert r.choices[0].text == PROMPT + plain
    ids = generate_cli(PROMPT, 1)["prompt_ids"]
    both = client.completions.create(model="demo", prompt=[ids, PROMPT], max_tokens=6, temperature=0, echo=True)
    assert [c.text for c in both.choices] == [PROMPT + plain] * 2  # token ids and text give the same


def test_completion_logprobs(client):
    r = client.completions.create(model="demo", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert "".join(lp.tokens) == r.choices[0].text
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert value <= 0 and 1 <= len(top) <= 3
        assert max(top.values()) == pytest.approx(value)  # greedy: the chosen token is the most likely
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Speak."}], max_tokens=6,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert 1 <= len(content) <= 6
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token  # greedy
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token or len(entry.bytes) == 1


def test_n_choices_and_seeds(client):
    kw = dict(model="demo", prompt=PROMPT, max_tokens=12, temperature=1.0, top_p=1.0,
              extra_body={"top_k": 0, "min_p": 0.0})  # plain sampling: the extension fields through extra_body
    a = client.completions.create(n=3, seed=11, **kw)
    b = client.completions.create(n=3, seed=11, **kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # seeded: reproducible
    assert len({c.text for c in a.choices}) > 1  # seeds seed, seed+1, seed+2 differ
    assert a.usage.completion_tokens == 36 and a.usage.prompt_tokens == len(generate_cli(PROMPT, 1)["prompt_ids"])
    single = client.completions.create(seed=12, **kw)  # choice k of n is the single request with seed + k
    assert single.choices[0].text == a.choices[1].text
    chat = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hail!"}], n=2,
                                          max_tokens=5, temperature=0)
    assert len(chat.choices) == 2 and chat.choices[0].message.content == chat.choices[1].message.content


def test_prefix_cache_serves_a_shared_system_prompt(server, client):
    system = "Thou art a herald of the court, and speakest in verse. " * 6
    hits = metric(server, "jamba_prefix_cache_hits_total")
    first = client.chat.completions.create(model="demo", max_tokens=4, temperature=0, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": "What news?"}])
    second = client.chat.completions.create(model="demo", max_tokens=4, temperature=0, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": "Who comes here?"}])
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert second.usage.prompt_tokens_details.cached_tokens <= second.usage.prompt_tokens
    assert first.usage.prompt_tokens > 40
    assert metric(server, "jamba_prefix_cache_hits_total") > hits


# ---- errors ------------------------------------------------------------------------------------------

LONG_PROMPT = "word " * (2 * CTX)

BAD = [
    # (path, body, headers, key, status, code, param)
    ("/v1/completions", b'{"prompt": "x",', None, KEY, 400, "invalid_json", None),
    ("/v1/completions", b"[1, 2]", None, KEY, 400, "invalid_json", None),
    ("/v1/completions", {"max_tokens": 4}, None, KEY, 400, "missing_required_parameter", "prompt"),
    ("/v1/completions", {"prompt": 5}, None, KEY, 400, "invalid_type", "prompt"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "4"}, None, KEY, 400, "invalid_type", "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -1}, None, KEY, 400, "invalid_value", "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 10 ** 15}, None, KEY, 400, "invalid_value", "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 10 ** 30}, None, KEY, 400, "invalid_json", None),
    ("/v1/completions", {"prompt": "x", "max_tokens": CTX}, None, KEY, 400, "context_length_exceeded", "max_tokens"),
    ("/v1/completions", {"prompt": LONG_PROMPT}, None, KEY, 400, "context_length_exceeded", "prompt"),
    ("/v1/completions", {"prompt": "x", "temperature": -0.5}, None, KEY, 400, "invalid_value", "temperature"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, None, KEY, 400, "invalid_type", "temperature"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, None, KEY, 400, "invalid_value", "top_p"),
    ("/v1/completions", {"prompt": "x", "n": 0}, None, KEY, 400, "invalid_value", "n"),
    ("/v1/completions", {"prompt": "x", "n": 10 ** 6}, None, KEY, 400, "invalid_value", "n"),
    ("/v1/completions", {"prompt": "x", "stop": [""]}, None, KEY, 400, "invalid_value", "stop"),
    ("/v1/completions", {"prompt": "x", "stop": 3}, None, KEY, 400, "invalid_type", "stop"),
    ("/v1/completions", {"prompt": "x", "logprobs": 99}, None, KEY, 400, "invalid_value", "logprobs"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, None, KEY, 400, "invalid_type", "stream"),
    ("/v1/completions", {"prompt": "x", "frequency_penalty": 0.5}, None, KEY, 400, "unsupported_value",
     "frequency_penalty"),
    ("/v1/completions", {"prompt": [5000]}, None, KEY, 400, "invalid_value", "prompt"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, None, KEY, 404, "model_not_found", "model"),
    ("/v1/chat/completions", {"messages": []}, None, KEY, 400, "invalid_value", "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, None, KEY, 400, "invalid_value",
     "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 7}]}, None, KEY, 400, "invalid_type",
     "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, None, KEY, 400,
     "invalid_value", "top_logprobs"),
    ("/v1/completions", {"prompt": "x"}, None, "wrong-key", 401, "invalid_api_key", None),
    ("/v1/completions", {"prompt": "x"}, None, None, 401, "invalid_api_key", None),
    ("/v1/completions", {"prompt": "a" * 100000}, None, KEY, 413, "request_too_large", None),
    ("/v1/nowhere", {"prompt": "x"}, None, KEY, 404, "not_found", None),
]


@pytest.mark.parametrize("path,body,headers,key,status,code,param", BAD,
                         ids=["%d-%s-%s" % (b[4], b[5], i) for i, b in enumerate(BAD)])
def test_bad_requests(server, path, body, headers, key, status, code, param):
    got, reply = request(server, "POST", path, body, headers, key)
    assert got == status, reply
    err = reply["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["code"] == code and err["param"] == param
    assert err["type"] == ("authentication_error" if status == 401 else "invalid_request_error")


def test_wrong_method_and_client_errors(server, client):
    status, reply = request(server, "GET", "/v1/completions")
    assert status == 405 and reply["error"]["code"] == "method_not_allowed"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="demo", prompt=PROMPT, max_tokens=4, temperature=9)
    assert e.value.status_code == 400
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
    assert request(server, "GET", "/health", key=None)[0] == 200  # still serving


# ---- disconnects and shutdown ------------------------------------------------------------------------


def _open_stream(url, body, key=KEY):
    host, port = url[len("http://"):].split(":")
    data = json.dumps(body).encode()
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (key.encode(), len(data), data))
    got = b""
    while b"data: " not in got:
        piece = s.recv(4096)
        assert piece, got
        got += piece
    assert got.startswith(b"HTTP/1.1 200")
    return s


def test_client_disconnect_frees_its_sequence(server):
    cancelled = metric(server, "jamba_requests_cancelled_total")
    s = _open_stream(server.url, {"prompt": PROMPT, "max_tokens": 400, "stream": True, "ignore_eos": True})
    assert metric(server, "jamba_requests_running") == 1
    s.close()
    deadline = time.monotonic() + 20
    while metric(server, "jamba_requests_running") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "jamba_requests_running") == 0
    assert metric(server, "jamba_requests_cancelled_total") == cancelled + 1
    assert metric(server, "jamba_requests_waiting") == 0


def test_sigterm_finishes_in_flight_requests_and_exits_0():
    s = Server("--shutdown-timeout", "20")
    try:
        result = {}

        def run():
            result["reply"] = request(s, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 400,
                                                                     "temperature": 0, "ignore_eos": True}, key=None)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 20
        while metric(s, "jamba_requests_running") < 1 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        assert s.stop() == 0, s.stderr()
        t.join(30)
        status, reply = result["reply"]
        assert status == 200 and reply["choices"][0]["finish_reason"] == "length"  # finished, not cut
        assert "stopped" in s.stderr()
    finally:
        s.close()


def test_sigterm_cancels_what_outlasts_the_grace_period():
    s = Server("--shutdown-timeout", "0")
    try:
        stream = _open_stream(s.url, {"prompt": PROMPT, "max_tokens": 3000, "stream": True, "ignore_eos": True},
                              key="")
        t0 = time.monotonic()
        assert s.stop() == 0, s.stderr()
        assert time.monotonic() - t0 < 15
        rest = b""
        while True:
            piece = stream.recv(65536)
            if not piece:
                break
            rest += piece
        stream.close()
        assert b'"finish_reason":"abort"' in rest and b"data: [DONE]" in rest
    finally:
        s.close()
