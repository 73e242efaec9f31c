#!/usr/bin/env python3
"""kernels/bench/torch_anchors.py: its shape lists still mirror the workbenches' (read from the .cu files; needs
no torch), then, where torch imports, a CPU --quick run (seconds): exit 0, every self-check ok, and the three files
in the formats the workbenches' readers take (bench_flash_prefill.cu anchor_tflops(), bench_mla_decode.cu
torch_anchor_ms()). Exits 77 (ctest's skip) after the shape check when torch is not installed.
Usage: test_torch_anchors.py [REPO_ROOT]"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else \
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "kernels", "bench")
sys.path.insert(0, BENCH)
sys.dont_write_bytecode = True  # no __pycache__ beside the workbenches
import torch_anchors as ta  # noqa: E402  (imports no torch at module level)

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def read(name):
    with open(os.path.join(BENCH, name)) as f:
        return f.read()


# ---- 1. the shape lists, against the workbench sources -----------------------------------------------------------
flash_src, mla_src = read("bench_flash_prefill.cu"), read("bench_mla_decode.cu")
m = re.search(r"std::vector<Timed> shapes = \{(.*?)\};", flash_src, re.S)
expect(m is not None, "bench_flash_prefill.cu: the `shapes` list was not found")
if m:
    cu = [(int(b), int(h), int(s), int(d), int(dv), c == "true") for b, h, s, d, dv, c in
          re.findall(r"\{(\d+), (\d+), (\d+), (\d+), (\d+), (true|false)\}", m.group(1))]
    expect(cu == ta.FLASH_SHAPES, f"flash shapes differ: .cu {cu} vs torch_anchors {ta.FLASH_SHAPES}")
q = re.search(r"if \(quick && t\.s > (\d+)\) continue;", flash_src)
expect(q is not None and int(q.group(1)) == ta.FLASH_QUICK_MAX_S, "flash --quick length cut differs")
m = re.search(r"const std::vector<Shape> shapes = \{(.*?)\};", mla_src, re.S)
expect(m is not None, "bench_mla_decode.cu: the `shapes` list was not found")
if m:
    cu = [(n, int(b), int(s), int(h), int(qq), int(bs), v == "true", fmt or "Bf16") for n, b, s, h, qq, bs, v, fmt in
          re.findall(r'\{"(\w+)", (\d+), (\d+), (\d+), (\d+), (\d+), (true|false), "[^"]*"'
                     r'(?:, cuda::MlaKvFormat::(\w+))?\}', m.group(1))]
    expect(cu == ta.MLA_WORKBENCH_SHAPES, f"mla shapes differ: .cu {cu} vs torch_anchors {ta.MLA_WORKBENCH_SHAPES}")
# the keys the readers look up
for key in ("backend", "causal", "tflops"):
    expect(f'json::find(r, "{key}")' in flash_src, f"bench_flash_prefill.cu no longer reads '{key}'")
for key in ("B", "H", "S", "D", "DV"):
    expect(f'num("{key}")' in flash_src, f"bench_flash_prefill.cu no longer reads '{key}'")
for key in ("kind", "B", "H", "T", "ms"):
    expect(f'json::find(r, "{key}")' in mla_src, f"bench_mla_decode.cu no longer reads '{key}'")
expect('"mla_decode_torch_ref"' in mla_src, "bench_mla_decode.cu no longer takes kind mla_decode_torch_ref")
print(f"shape lists: {len(ta.FLASH_SHAPES)} flash, {len(ta.MLA_WORKBENCH_SHAPES)} mla "
      f"({len(ta.mla_anchor_shapes())} with a torch anchor) {'ok' if not failures else 'DIFFER'}")
if failures:
    sys.exit(1)

# ---- 2. a CPU run --------------------------------------------------------------------------------------------------
try:
    import torch  # noqa: F401
except ImportError:
    print("skipped: torch is not installed for", sys.executable)
    sys.exit(77)

with tempfile.TemporaryDirectory() as tmp:
    out = {k: os.path.join(tmp, k + ".json") for k in ("flash", "mla", "step", "all")}
    cmd = [sys.executable, os.path.join(BENCH, "torch_anchors.py"), "--device", "cpu", "--quick", "--flash-out",
           out["flash"], "--mla-out", out["mla"], "--step-out", out["step"], "--all-out", out["all"]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    print(p.stdout[-4000:], p.stderr[-2000:], sep="\n")
    expect(p.returncode == 0, f"torch_anchors.py exited {p.returncode}")
    data = {}
    for k, path in out.items():
        with open(path) as f:
            data[k] = json.load(f)  # json's parser rejects nothing nlohmann would accept except NaN: none written

is_int = lambda x: isinstance(x, int) and not isinstance(x, bool)  # noqa: E731
is_num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
flash, mla, step, everything = data["flash"], data["mla"], data["step"], data["all"]
expect(isinstance(flash, list) and flash, "flash file: not a non-empty array")
for r in flash:
    expect(r.get("backend") in ("flash", "cudnn") and all(is_int(r.get(k)) for k in ("B", "H", "S", "D", "DV"))
           and isinstance(r.get("causal"), bool), f"flash record keys: {r}")
    expect(is_num(r.get("tflops")) and r["tflops"] > 0 or (r.get("tflops") is None and r.get("absent")),
           f"flash record neither measured nor absent with a reason: {r}")
expect(any(r["backend"] == "flash" and is_num(r["tflops"]) for r in flash), "no flash record measured on the CPU")
expect(all(r["tflops"] is None for r in flash if r["backend"] == "flash" and r["D"] != r["DV"]),
       "FA2 with D != DV must be absent, not a number")
expect(all(r["tflops"] is None and "CUDA" in r["absent"] for r in flash if r["backend"] == "cudnn"),
       "cuDNN on the CPU must be absent (needs CUDA)")
expect(len(mla) == len(ta.mla_anchor_shapes()), f"mla: {len(mla)} records")
for r in mla:
    expect(r.get("kind") == "mla_decode_torch_ref" and all(is_int(r.get(k)) for k in ("B", "H", "T"))
           and is_num(r.get("ms")) and r["ms"] > 0, f"mla record: {r}")
expect([r.get("batch") for r in step] == [4, 1], f"decode step batches: {[r.get('batch') for r in step]}")
for r in step:
    expect(r.get("kind") == "decode_step_torch_ref" and r.get("layers") == 2 and is_num(r.get("ms"))
           and isinstance(r.get("note"), str) and "config_236B" in r.get("config", ""), f"step record: {r}")
checks = everything.get("checks", [])
expect(sum(c["ok"] is True for c in checks) >= 6 and not any(c["ok"] is False for c in checks),
       f"self-checks: {[(c['check'], c['ok']) for c in checks]}")
expect(everything.get("skipped") == [], "nothing should be skipped without --budget-s")
expect(re.search(r"^NOTE: torch anchors on cpu: ", p.stdout, re.M) is not None, "no NOTE: line for gpu_check")
print("torch_anchors:", "FAILED " + "; ".join(failures) if failures else "ok")
sys.exit(1 if failures else 0)
