#!/usr/bin/env python3
"""Helpers of bench/llamacpp_compare.sh (not part of CI; run in an environment with torch, transformers,
safetensors and sentencepiece, e.g. build/fixenv):

  widen SRC DST                 copy a Hugging Face folder with its model.safetensors widened to float32
  convert LLAMA_CPP_SRC ARGS... llama.cpp's convert_hf_to_gguf.py ARGS (its bundled gguf-py first on the path),
                                writing tokenizer.ggml.add_space_prefix from the SentencePiece model's own
                                add_dummy_prefix (the converter's SentencePiece path leaves the key out, and
                                llama.cpp then adds a space the model's tokenizer does not)
  transformers DIR [--prompt T] [--decode N] [--threads N] [--reps R]
                                transformers' prefill (one forward of T tokens) and decode (N cached greedy
                                steps after it) of the float32 model in DIR, medians of R runs; one JSON line
  agree OURS_JSON THEIRS_TXT TOKENIZER_MODEL
                                how much of `jamba generate --json`'s greedy continuation llama.cpp's text
                                reproduces: the longest prefix of our generated ids whose decoded text
                                starts llama.cpp's; one JSON line
  record RESULTS_JSONL --runtime jamba|llama.cpp --model M --precision P --rep I --time FILE [--time FILE]
         OUTPUT...
                                append one result line: from bench_cpu's JSON line or llama-bench's -o jsonl
                                lines (a pp and a tg test) in the OUTPUT files, and the largest "Maximum
                                resident set size" of the /usr/bin/time -v reports in the --time files
  table RESULTS_JSONL           the markdown table of the paired runs (medians per model, precision and
                                runtime, and the ratios this / llama.cpp)
"""
import json
import os
import shutil
import statistics
import sys
import time

TAGS = {}  # --append FILE --model M --precision P: the JSON line also goes to FILE with these fields


def emit(rec):
    print(json.dumps(rec))
    if TAGS.get("append"):
        with open(TAGS["append"], "a") as f:
            f.write(json.dumps(dict(rec, model=TAGS["model"], precision=TAGS["precision"])) + "\n")


def widen(src, dst):
    import torch
    from safetensors.torch import load_file, save_file
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model*.safetensors", "model.safetensors.index.json"))
    names = sorted(f for f in os.listdir(src) if f.startswith("model") and f.endswith(".safetensors"))
    if len(names) != 1:
        sys.exit(f"widen: {src}: expected one model*.safetensors, found {names}")
    tensors = load_file(os.path.join(src, names[0]))
    save_file({k: v.to(torch.float32).contiguous() for k, v in tensors.items()},
              os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    cfg_path = os.path.join(dst, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["dtype"] = "float32"
    cfg.pop("torch_dtype", None)
    json.dump(cfg, open(cfg_path, "w"), indent=2)


def convert(llama_src, argv):
    import runpy
    sys.path[:0] = [os.path.join(llama_src, "gguf-py"), llama_src]
    from conversion.jamba import JambaModel
    from sentencepiece import sentencepiece_model_pb2

    sentencepiece_vocab = JambaModel.set_vocab

    def set_vocab(self):
        sentencepiece_vocab(self)
        path = self.dir_model / "tokenizer.model"
        if path.is_file():
            proto = sentencepiece_model_pb2.ModelProto()
            proto.ParseFromString(path.read_bytes())
            self.gguf_writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)

    JambaModel.set_vocab = set_vocab
    sys.argv = ["convert_hf_to_gguf.py"] + argv
    runpy.run_path(os.path.join(llama_src, "convert_hf_to_gguf.py"), run_name="__main__")


def transformers_speed(model_dir, prompt, decode, threads, reps):
    import torch
    from transformers import JambaForCausalLM
    from transformers.models.jamba.modeling_jamba import HybridMambaAttentionDynamicCache
    torch.set_num_threads(threads)
    model = JambaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    model.config.use_mamba_kernels = False
    vocab = model.config.vocab_size
    ids = torch.tensor([[3 + (i * 7919) % (vocab - 3) for i in range(prompt)]])
    pre, dec = [], []
    with torch.no_grad():
        for rep in range(reps + 1):  # the first run warms up and is not counted
            cache = HybridMambaAttentionDynamicCache(model.config, 1, dtype=torch.float32)
            t = time.perf_counter()
            out = model(ids, past_key_values=cache, use_cache=True, cache_position=torch.arange(prompt))
            p = time.perf_counter() - t
            cache, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            t = time.perf_counter()
            for step in range(decode):
                pos = torch.tensor([prompt + step])
                out = model(tok, past_key_values=cache, use_cache=True, cache_position=pos)
                cache, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            d = time.perf_counter() - t
            if rep > 0:
                pre.append(p)
                dec.append(d)
    emit({"runtime": "transformers", "torch": torch.__version__, "threads": threads, "prefill_tokens": prompt,
          "prefill_tok_s": round(prompt / statistics.median(pre), 1), "decode_tokens": decode,
          "decode_tok_s": round(decode / statistics.median(dec), 2) if decode else None})


def agree(ours_json, theirs_txt, tokenizer_model):
    import sentencepiece as spm
    ours = json.load(open(ours_json))
    theirs = open(theirs_txt, encoding="utf-8", errors="replace").read()
    sp = spm.SentencePieceProcessor(model_file=tokenizer_model)
    ids = ours["generated_ids"]
    matched = 0
    for k in range(1, len(ids) + 1):
        if not theirs.startswith(sp.decode(ids[:k])):
            break
        matched = k
    emit({"runtime": "agreement", "generated": len(ids), "matching_tokens": matched, "ours": ours["text"],
          "theirs": theirs})


def peak_rss_kb(time_files):
    peak = 0
    for path in time_files:
        for line in open(path):
            if "Maximum resident set size" in line:
                peak = max(peak, int(line.rsplit(":", 1)[1]))
    return peak or None


def record(results_path, runtime, model, precision, rep, time_files, outputs, load):
    rec = {"runtime": runtime, "model": model, "precision": precision, "rep": rep,
           "peak_rss_kb": peak_rss_kb(time_files), "load_1min": load}
    for path in outputs:
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if runtime == "jamba":
                rec.update(prefill_tok_s=r["prefill_tok_s"], decode_tok_s=r["decode_tok_s"], kernels=r["kernels"],
                           threads=r["threads"])
            elif r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
                rec.update(prefill_tok_s=r["avg_ts"], threads=r["n_threads"], build=r.get("build_commit"))
            elif r.get("n_gen", 0) > 0:
                rec.update(decode_tok_s=r["avg_ts"], decode_depth=r.get("n_depth"))
    with open(results_path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def table(results_path):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["precision"]), {}).setdefault(r["runtime"], []).append(r)

    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def fmt(v, digits=1):
        return "—" if v is None else f"{v:,.{digits}f}"

    print("| model | precision (this / llama.cpp) | pairs (median load) | prefill tok/s: this / llama.cpp | ratio "
          "| decode tok/s: this / llama.cpp | ratio | peak RSS MB: this / llama.cpp | greedy agreement |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (model, precision), by in groups.items():
        ours, theirs = by.get("jamba", []), by.get("llama.cpp", [])
        if not ours:
            continue
        p_o, p_t = med(ours, "prefill_tok_s"), med(theirs, "prefill_tok_s")
        d_o, d_t = med(ours, "decode_tok_s"), med(theirs, "decode_tok_s")
        m_o, m_t = med(ours, "peak_rss_kb"), med(theirs, "peak_rss_kb")
        ag = by.get("agreement", [{}])[0]
        agreement = f"{ag['matching_tokens']}/{ag['generated']} tokens" if "generated" in ag else "—"
        ratio = lambda a, b: "—" if a is None or not b else f"{a / b:.2f}x"  # noqa: E731
        load = med(ours + theirs, "load_1min")
        print(f"| {model} | {precision} | {min(len(ours), len(theirs))} ({fmt(load)}) | {fmt(p_o)} / {fmt(p_t)} | {ratio(p_o, p_t)} "
              f"| {fmt(d_o)} / {fmt(d_t)} | {ratio(d_o, d_t)} "
              f"| {fmt(m_o and m_o / 1024, 0)} / {fmt(m_t and m_t / 1024, 0)} | {agreement} |")
    for (model, precision), by in groups.items():
        for r in by.get("transformers", []):
            print(f"\ntransformers {r.get('torch', '')} on {model} ({precision}, {r['threads']} threads): prefill "
                  f"{fmt(r['prefill_tok_s'])} tok/s, decode {fmt(r['decode_tok_s'], 2)} tok/s")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("widen")
    w.add_argument("src")
    w.add_argument("dst")
    c = sub.add_parser("convert")
    c.add_argument("llama_src")
    c.add_argument("args", nargs=argparse.REMAINDER)
    t = sub.add_parser("transformers")
    t.add_argument("model_dir")
    t.add_argument("--prompt", type=int, default=512)
    t.add_argument("--decode", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--reps", type=int, default=3)
    a = sub.add_parser("agree")
    a.add_argument("ours_json")
    a.add_argument("theirs_txt")
    a.add_argument("tokenizer_model")
    for p in (t, a):
        p.add_argument("--append")
        p.add_argument("--model")
        p.add_argument("--precision")
    rc = sub.add_parser("record")
    rc.add_argument("results")
    rc.add_argument("--runtime", required=True, choices=["jamba", "llama.cpp"])
    rc.add_argument("--model", required=True)
    rc.add_argument("--precision", required=True)
    rc.add_argument("--rep", type=int, required=True)
    rc.add_argument("--time", action="append", required=True)
    rc.add_argument("--load", type=float, help="the 1-minute load average before the run")
    rc.add_argument("outputs", nargs="+")
    tb = sub.add_parser("table")
    tb.add_argument("results")
    args = ap.parse_args()
    if getattr(args, "append", None):
        TAGS.update(append=args.append, model=args.model, precision=args.precision)
    if args.cmd == "widen":
        widen(args.src, args.dst)
    elif args.cmd == "convert":
        convert(args.llama_src, args.args)
    elif args.cmd == "transformers":
        transformers_speed(args.model_dir, args.prompt, args.decode, args.threads, args.reps)
    elif args.cmd == "record":
        record(args.results, args.runtime, args.model, args.precision, args.rep, args.time, args.outputs, args.load)
    elif args.cmd == "agree":
        agree(args.ours_json, args.theirs_txt, args.tokenizer_model)
    else:
        table(args.results)


if __name__ == "__main__":
    main()
