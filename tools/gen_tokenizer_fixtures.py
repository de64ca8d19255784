#!/usr/bin/env python3
"""Generate the tokenizer parity fixtures with the reference libraries.

Writes tests/fixtures/tokenizers/:
  <name>/tokenizer.json or tokenizer.model   small tokenizers covering every supported component
  expected.json   for each tokenizer and corpus string: the ids the reference library produces (Hugging Face
                  `tokenizers` for tokenizer.json, `sentencepiece` for tokenizer.model), with and without
                  special-token parsing, and the decoded text; plus, for Tiny Shakespeare, the id count and an
                  FNV-1a hash of the ids (the text itself is read from tests/data at test time).

The tokenizers:
  demo-json, demo-model    models/demo's tokenizer.json and tokenizer.model (SentencePiece style: Metaspace
                           without split, byte fallback, Replace/ByteFallback/Fuse decoder)
  sp-legacy-json/-model    a SentencePiece BPE with the dummy prefix, converted the legacy way (normalizer
                           Prepend + Replace, decoder Replace/ByteFallback/Fuse/Strip)
  sp-digits-json           pre_tokenizer Sequence[Digits(individual), Metaspace(split, prepend "first")]
  sp-chat-model            a SentencePiece BPE with Jamba's chat tokens as user-defined symbols
  bytelevel-gpt2           GPT-2 style: ByteLevel pre-tokenizer with its regex, ByteLevel decoder
  bytelevel-split          Llama-3 style: Split(regex) then ByteLevel without regex, ignore_merges
  jamba-model              ../shared/data/jamba-tokenizer.model (expected ids only; the file is never copied)

  pip install -r tools/requirements-fixtures.txt && python3 tools/gen_tokenizer_fixtures.py
"""
import json
import os
import shutil
import struct
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import Regex
from transformers import LlamaTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
SHAKESPEARE = os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt")
JAMBA_MODEL = os.path.join(ROOT, "..", "shared", "data", "jamba-tokenizer.model")  # AI21's: never copied

CORPUS = [
    "Hello world",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "  leading spaces",
    "trailing spaces   ",
    "multiple   internal    spaces",
    " ",
    "",
    "tabs\tand\ttabs\t\t",
    "CR\r\nLF\nmixed\r end",
    "\n\n\nnewlines\n",
    "digits 0123456789 and 3.14159, 1,000,000",
    "commas, commas,, ,comma,",
    "code: def f(x):\n    return x**2  # comment\n",
    '{"json": [1, 2, 3], "k": null}',
    "日本語のテキスト、中文文本。한국어 텍스트",
    "שלום עולם مرحبا بالعالم",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽 thumbs",
    "e\u0301 a\u0308 n\u0303 combining marks",
    "Ünïcödé façade naïve café",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "zero\u200bwidth\u200djoiner",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "!!!???...---___***",
    "<|startoftext|>Hi there<|endoftext|>",
    "<|bom|><|user|> Hello<|eom|><|bom|><|assistant|>",
    "<|pad|><|unk|> <s> </s> <unk>",
    "ROMEO:\nBut soft, what light through yonder window breaks?",
    "numerals ٣٤ ²³ Ⅻ ½ １２",
    "▁leading mark and a▁b inside",
    "<|startoftext|>",
]


def fnv1a_ids(ids):
    h = 0xCBF29CE484222325
    for b in struct.pack(f"<{len(ids)}i", *ids):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def training_text(chars=300_000):
    with open(SHAKESPEARE, encoding="utf-8") as f:
        return f.read()[:chars]


def train_spm(out_dir, text, vocab, **extra):
    # a fixed scratch path: the trainer records it in the model, so a random one would change the file each run
    tmp = os.path.join(tempfile.gettempdir(), "jamba-spm-fixture")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if True:
        corpus = os.path.join(tmp, "c.txt")
        with open(corpus, "w") as f:
            f.write(text)
        opts = dict(model_type="bpe", vocab_size=vocab, character_coverage=1.0, byte_fallback=True, split_digits=True,
                    normalization_rule_name="identity", remove_extra_whitespaces=False,
                    allow_whitespace_only_pieces=True, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                    pad_piece="<|pad|>", bos_piece="<|startoftext|>", eos_piece="<|endoftext|>", unk_piece="<|unk|>",
                    minloglevel=2, num_threads=2)
        opts.update(extra)
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, "m"), **opts)
        shutil.copy(os.path.join(tmp, "m.model"), os.path.join(out_dir, "tokenizer.model"))
    return os.path.join(out_dir, "tokenizer.model")


def random_id_lists(vocab_size, byte_ids, special_ids, seed, count=40):
    """Id sequences for decode parity: random pieces, runs of byte tokens (valid and invalid UTF-8), specials."""
    import random
    rnd = random.Random(seed)
    lists = []
    for _ in range(count):
        ids = []
        for _ in range(rnd.randint(1, 12)):
            r = rnd.random()
            if r < 0.3 and byte_ids:
                ids.extend(rnd.sample(byte_ids, rnd.randint(1, 4)))
            elif r < 0.4 and special_ids:
                ids.append(rnd.choice(special_ids))
            else:
                ids.append(rnd.randrange(vocab_size))
        lists.append(ids)
    return lists


def hf_decode_cases(path, seed):
    tok = Tokenizer.from_file(path)
    vocab = tok.get_vocab()
    byte_ids = [vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab]
    special = list(tok.get_added_tokens_decoder().keys())
    cases = []
    for ids in random_id_lists(tok.get_vocab_size(), byte_ids, special, seed):
        cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    return cases


def spm_decode_cases(path, seed):
    sp = spm.SentencePieceProcessor(model_file=path)
    byte_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
    special = [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)][:50]
    return [{"ids": ids, "decoded": sp.decode(ids)} for ids in random_id_lists(sp.get_piece_size(), byte_ids, special, seed)]


def hf_cases(path):
    tok = Tokenizer.from_file(path)
    cases = []
    for i, text in enumerate(CORPUS):
        for parse_special in (False, True):
            tok.encode_special_tokens = not parse_special
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": i, "parse_special": parse_special, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=True)})
    return cases


def spm_cases(path):
    sp = spm.SentencePieceProcessor(model_file=path)
    cases = []
    for i, text in enumerate(CORPUS):
        ids = sp.encode(text)
        cases.append({"text": i, "parse_special": False, "ids": ids, "decoded": sp.decode(ids)})
    return cases


def bytelevel_gpt2(out_dir, text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    return path


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytelevel_split(out_dir, text):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    return path


def bad_models(base_model):
    """SentencePiece models that must be rejected, each with the phrase the error must contain."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    base = pb.ModelProto()
    base.ParseFromString(open(base_model, "rb").read())
    byte_index = next(i for i, p in enumerate(base.pieces) if p.type == pb.ModelProto.SentencePiece.BYTE)
    normal_index = next(i for i, p in enumerate(base.pieces) if p.type == pb.ModelProto.SentencePiece.NORMAL)

    def variant(edit):
        m = pb.ModelProto()
        m.CopyFrom(base)
        edit(m)
        return m.SerializeToString()

    def set_piece(i, text):
        return lambda m: setattr(m.pieces[i], "piece", text)

    cases = {
        "unigram.model": (variant(lambda m: setattr(m.trainer_spec, "model_type", pb.TrainerSpec.UNIGRAM)), "UNIGRAM"),
        "bad-byte-piece.model": (variant(set_piece(byte_index, "<0xZZ>")), "not <0xNN>"),
        "negative-byte-piece.model": (variant(set_piece(byte_index, "<0x-1>")), "not <0xNN>"),
        "duplicate-piece.model": (variant(set_piece(normal_index + 1, base.pieces[normal_index].piece)), "appears twice"),
        "nan-score.model": (variant(lambda m: setattr(m.pieces[normal_index], "score", float("nan"))), "non-finite score"),
        "unk-wrong-type.model": (variant(lambda m: setattr(m.trainer_spec, "unk_id", normal_index)), "unk_id"),
        "bos-out-of-range.model": (variant(lambda m: setattr(m.trainer_spec, "bos_id", 100000)), "bos_id"),
        "nfkc.model": (variant(lambda m: setattr(m.normalizer_spec, "name", "nmt_nfkc")), "nmt_nfkc"),
        "extra-whitespace.model": (variant(lambda m: setattr(m.normalizer_spec, "remove_extra_whitespaces", True)),
                                   "remove_extra_whitespaces"),
        "empty-piece.model": (variant(set_piece(normal_index, "")), "empty"),
        "missing-byte.model": (variant(lambda m: setattr(m.pieces[byte_index], "type",
                                                          pb.ModelProto.SentencePiece.NORMAL)), "<0x00>"),
        "no-unk.model": (variant(lambda m: setattr(m.trainer_spec, "unk_id", -1)), "unknown piece"),
        "unused-piece.model": (variant(lambda m: setattr(m.pieces[normal_index], "type",
                                                         pb.ModelProto.SentencePiece.UNUSED)), "UNUSED"),
        "not-protobuf.model": (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "malformed"),
    }
    d = fresh(os.path.join(OUT, "bad"))
    out = {}
    for name, (data, phrase) in cases.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        out[name] = phrase
    return out


def tiny_chat_model(folder):
    """A tiny random Jamba next to the chat tokenizer, so the chat commands can run end to end in tests."""
    import torch
    from transformers import JambaConfig, JambaForCausalLM
    torch.manual_seed(11)
    cfg = JambaConfig(vocab_size=600, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, num_experts=2, num_experts_per_tok=1, expert_layer_period=2,
                      expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1, mamba_d_state=4,
                      mamba_d_conv=4, mamba_expand=2, use_mamba_kernels=False, max_position_embeddings=4096,
                      pad_token_id=0, bos_token_id=1, eos_token_id=[2, 4])
    model = JambaForCausalLM(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    gen_cfg = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)


def main():
    text = training_text()
    fresh(OUT)
    expected = {"versions": {"tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__,
                             "transformers": transformers.__version__},
                "corpus": CORPUS, "tokenizers": {}, "shakespeare": {}}
    demo = os.path.join(ROOT, "models", "demo")
    entries = {"demo-json": ("../../../models/demo/tokenizer.json", hf_cases(os.path.join(demo, "tokenizer.json"))),
               "demo-model": ("../../../models/demo/tokenizer.model", spm_cases(os.path.join(demo, "tokenizer.model")))}

    # SentencePiece with the dummy prefix, and the legacy tokenizer.json conversion of it.
    d = fresh(os.path.join(OUT, "sp-legacy"))
    model = train_spm(d, text, 600, add_dummy_prefix=True, user_defined_symbols=[","])
    LlamaTokenizerFast(vocab_file=model, legacy=True, from_slow=True, bos_token="<|startoftext|>",
                       eos_token="<|endoftext|>", unk_token="<|unk|>").backend_tokenizer.save(
        os.path.join(d, "tokenizer.json"))
    entries["sp-legacy-json"] = ("sp-legacy/tokenizer.json", hf_cases(os.path.join(d, "tokenizer.json")))
    entries["sp-legacy-model"] = ("sp-legacy/tokenizer.model", spm_cases(model))
    expected["bad_models"] = bad_models(model)

    # Digits + Metaspace(split, prepend first) on the demo vocabulary.
    d = fresh(os.path.join(OUT, "sp-digits"))
    tok = Tokenizer.from_file(os.path.join(demo, "tokenizer.json"))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)])
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    tok.save(os.path.join(d, "tokenizer.json"))
    entries["sp-digits-json"] = ("sp-digits/tokenizer.json", hf_cases(os.path.join(d, "tokenizer.json")))

    # SentencePiece with Jamba's chat tokens as user-defined symbols (the chat format's tests use it).
    d = fresh(os.path.join(OUT, "sp-chat"))
    chat = ["<|eom|>", "<|bom|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", ","]
    model = train_spm(d, text, 600, add_dummy_prefix=False, user_defined_symbols=chat)
    entries["sp-chat-model"] = ("sp-chat/tokenizer.model", spm_cases(model))
    tiny_chat_model(d)

    d = fresh(os.path.join(OUT, "bytelevel-gpt2"))
    entries["bytelevel-gpt2"] = ("bytelevel-gpt2/tokenizer.json", hf_cases(bytelevel_gpt2(d, text)))
    d = fresh(os.path.join(OUT, "bytelevel-split"))
    entries["bytelevel-split"] = ("bytelevel-split/tokenizer.json", hf_cases(bytelevel_split(d, text)))

    if os.path.exists(JAMBA_MODEL):
        entries["jamba-model"] = ("../../../../shared/data/jamba-tokenizer.model", spm_cases(JAMBA_MODEL))

    for k, (name, (path, cases)) in enumerate(entries.items()):
        real = os.path.normpath(os.path.join(OUT, path))
        decode = hf_decode_cases(real, 100 + k) if path.endswith(".json") else spm_decode_cases(real, 100 + k)
        expected["tokenizers"][name] = {"path": path, "cases": cases, "decode_cases": decode}

    with open(SHAKESPEARE, encoding="utf-8") as f:
        full = f.read()
    hf_demo = Tokenizer.from_file(os.path.join(demo, "tokenizer.json"))
    sp_demo = spm.SentencePieceProcessor(model_file=os.path.join(demo, "tokenizer.model"))
    runs = {"demo-json": hf_demo.encode(full, add_special_tokens=False).ids, "demo-model": sp_demo.encode(full)}
    for name in ("bytelevel-gpt2", "bytelevel-split"):
        runs[name] = Tokenizer.from_file(os.path.join(OUT, name, "tokenizer.json")).encode(
            full, add_special_tokens=False).ids
    if os.path.exists(JAMBA_MODEL):
        runs["jamba-model"] = spm.SentencePieceProcessor(model_file=JAMBA_MODEL).encode(full)
    for name, ids in runs.items():
        expected["shakespeare"][name] = {"count": len(ids), "fnv1a64": fnv1a_ids(ids)}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(a, x)) for a, _, xs in os.walk(OUT) for x in xs)
    print(f"tokenizer fixtures: {total / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
