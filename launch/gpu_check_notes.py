#!/usr/bin/env python3
"""The one-line NOTEs launch/gpu_check.sh puts in its summary, each read from a benchmark's JSON (or Nsight
Compute's CSV). Kept out of the shell script so each can be read and tested on its own
(tests/tools/test_gpu_check_notes.py); a note that cannot be made says why in its line and exits 0, as a note
never decides whether a step passed.

Usage: gpu_check_notes.py KIND ARGS...
  decode FILE LABEL          a `bench decode` JSON: step time, tokens/s, floor, time split, CUDA graph
  moe-layouts DIR            DIR/bench_moe_b{8,64}_c{0,-1}.json: the compact against the capacity MoE layout
  mla-verdict FILE           bench_mla_decode's JSON: each newer kernel against the 32-row one, fp8, L2 prefetch,
                             quantized codes read into registers against widened, the warp-specialized wgmma
                             kernel against the split one
  mla-ab DIR                 DIR/<label>_<n>.json from bench_mla_decode runs of two builds in turn (label `base` and
                             `new`): each row's median whole-call time per build, and new against base
  flash-verdict FILE         bench_flash_prefill's JSON: the wgmma kernel against stage A, its warp-specialized
                             and pipelined variants (turns, persistent) against it, shape by shape
  prefill FILE KERNEL        a `bench prefill` JSON of one chunk over one prefix: the naive path's rate
  torch-step ANCHORS [FILE]  torch_anchors.py's decode-step records, beside `bench decode`'s batch-64 JSON
  ncu-kernels CSV            Nsight Compute's raw CSV (gpu__time_duration.sum): time per kernel name, largest first
  ncu-stalls CSV             Nsight Compute's source page as CSV (--page source --print-source sass, a report with
                             SourceCounters): warp-stall samples by reason, by opcode and by SASS line
"""
import collections
import csv
import glob
import json
import os
import re
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def decode(path, label):
    r = load(path)["records"][0]
    s = "%s: %.2f ms/step, %.0f tok/s" % (label, 1e3 * r["median_latency"], r["tokens_per_second"])
    if "floor_ms" in r:
        s += ", floor %.2f ms (%.1fx it)" % (r["floor_ms"], r["median_over_floor"])
    if "time_split_share" in r:
        s += "; split " + ", ".join("%s %.1f%%" % (k, 100 * v) for k, v in r["time_split_share"].items())
    if "graph_median_latency" in r:
        s += "; CUDA graph %.2f ms/step (%.0f tok/s, logits within %.3g of eager)" % (
            1e3 * r["graph_median_latency"], r["graph_tokens_per_second"], r["graph_vs_eager_max_abs_logit_diff"])
    else:
        s += "; no CUDA graph: %s" % r.get("graph_absent")
    return s


def moe_layouts(folder):
    out = []
    for b in (8, 64):
        row = []
        for cap in ("0", "-1"):
            try:
                d = load("%s/bench_moe_b%d_c%s.json" % (folder, b, cap))
                r = d["records"][0]
                row.append("%s %.3f ms (MoE %.3f ms)" % (d["moe_layout"], 1e3 * r["median_latency"],
                                                         r["time_split_ms"]["moe"]))
            except (OSError, ValueError, KeyError, IndexError) as e:
                row.append("cap %s failed (%s)" % (cap, e))
        out.append("batch %d: %s" % (b, " vs ".join(row)))
    return "16B/2 layers, 1024 cached, MoE layouts: " + "; ".join(out)


def mla_verdict(path):
    shapes = load(path).get("shapes", [])
    parts = ["%s %.3f ms %.2fx" % (s["name"], s["call_ms"], s["speedup_vs_32_row_kernel"])
             for s in shapes if "speedup_vs_32_row_kernel" in s]
    parts += ["%s %.2fx the bf16 tokens/s" % (s["name"], s["speedup_vs_bf16"])
              for s in shapes if "speedup_vs_bf16" in s and s.get("attend") == "tensor_cores_fitted"]
    parts += ["%s %.3f ms %.2fx without L2 prefetch" % (s["name"], s["call_ms"], s["speedup_vs_no_prefetch"])
              for s in shapes if "speedup_vs_no_prefetch" in s]
    parts += ["%s %.3f ms %.2fx the codes widened" % (s["name"], s["call_ms"], s["speedup_vs_codes_widened"])
              for s in shapes if "speedup_vs_codes_widened" in s]
    parts += ["%s %.3f ms %.2fx the split wgmma kernel" % (s["name"], s["call_ms"], s["speedup_vs_wgmma_split"])
              for s in shapes if "speedup_vs_wgmma_split" in s]
    parts += ["schedule %s %.1f us" % (s["name"], 1e3 * s["schedule_ms"]) for s in shapes[:1] if "schedule_ms" in s]
    return "against the 32-row kernel: " + ("; ".join(parts) or "no rows")


def mla_ab(folder):
    runs = collections.defaultdict(lambda: collections.defaultdict(list))  # row -> label -> call ms per run
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        m = re.match(r"(base|new)_\d+\.json$", os.path.basename(path))
        if not m:
            continue
        for s in load(path).get("shapes", []):
            if s.get("validation_ok", True):
                runs[s["name"]][m.group(1)].append(s["call_ms"])

    parts = []
    for name, by in runs.items():
        if by["base"] and by["new"]:
            b, n = statistics.median(by["base"]), statistics.median(by["new"])
            parts.append("%s %.3f -> %.3f ms %.2fx (%d+%d runs)" % (name, b, n, b / n, len(by["base"]), len(by["new"])))
    return "new build against base, whole call: " + ("; ".join(parts) or "no row ran in both")


def flash_verdict(path):
    recs = [r for r in load(path) if r.get("kind") == "prefill"]

    def key(r):
        return (r["B"], r["H"], r["S"], r["D"], r["DV"], r["causal"])

    def against(kernel, base_kernel):
        base = {key(r): r for r in recs if r.get("kernel") == base_kernel}
        return ["b%d h%d s%d d%d/%d %.1f TFLOP/s %.2fx"
                % (key(r)[:5] + (r["tflops"], r["tflops"] / base[key(r)]["tflops"]))
                for r in recs if r.get("kernel") == kernel and key(r) in base]

    out = "wgmma against stage A: " + ("; ".join(against("wgmma", "mma")) or "no rows")
    for kernel, what in (("wgmma_ws", "warp-specialized"), ("wgmma_pipelined", "pipelined"),
                         ("wgmma_pingpong", "pipelined with turns"), ("wgmma_persistent", "persistent pipelined"),
                         ("wgmma_persistent_pingpong", "persistent pipelined with turns")):
        rows = against(kernel, "wgmma")
        out += "; %s against wgmma: %s" % (what, "; ".join(rows)) if rows else ""
    return out


def prefill(path, kernel):
    """The naive path's attention time and its rate by FlashAttention's FLOP count (causal within the chunk, MLA's
    192/128 head dims; the up-projection's time included)."""
    d = load(path)
    r, h = d["records"][0], d["num_heads"]
    p, c, ms = r["prefix_len"], r["chunk_len"], r["naive"]["attention_median_ms"]
    flops = 2.0 * h * c * (p + (c + 1) / 2.0) * (192 + 128)
    return ("chunk %d over prefix %d, flash %s: naive attention %.3f ms, %.1f TFLOP/s (FA count, up-projection "
            "included); absorbed %.3f ms" % (c, p, kernel, ms, flops / ms / 1e9,
                                            r["absorbed"]["attention_median_ms"]))


def torch_step(anchors, decode_json=""):
    recs = load(anchors)
    parts = ["batch %d %s" % (r["batch"], "%.2f ms" % r["ms"] if r.get("ms") is not None
                              else "absent (%s)" % r.get("absent")) for r in recs]
    s = "torch model.py-style step, same GPU (236B/%s layers, %s cached): " % (
        recs[0]["layers"] if recs else "?", recs[0]["cached"] if recs else "?") + (", ".join(parts) or "not measured")
    try:
        ms = 1e3 * load(decode_json)["records"][0]["median_latency"]
        t = [r["ms"] for r in recs if r["batch"] == 64 and r.get("ms")]
        s += "; mlarun batch 64 %.1fx faster" % (t[0] / ms) if t else ""
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return s


def ncu_kernels(path, top=30):
    with open(path) as f:
        rows = list(csv.reader(f))
    h = next(i for i, r in enumerate(rows) if "Kernel Name" in r and "gpu__time_duration.sum" in r)
    kn, tm = rows[h].index("Kernel Name"), rows[h].index("gpu__time_duration.sum")
    unit = rows[h + 1][tm].strip() if len(rows) > h + 1 and len(rows[h + 1]) > tm else ""
    to_ms = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0}.get(unit, 1e-6)
    total, launches = collections.defaultdict(float), collections.Counter()
    for r in rows[h + 1:]:
        try:
            t = float(r[tm].replace(",", ""))
        except (IndexError, ValueError):  # the units row
            continue
        name = (r[kn].split("(")[0].strip() or r[kn])[:110]
        total[name] += t * to_ms
        launches[name] += 1
    lines = ["%d launches, %.3f ms of kernels in all; the largest by name below" % (
        sum(launches.values()), sum(total.values()))]
    lines += ["%10.3f ms %6d  %s" % (ms, launches[name], name)
              for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def ncu_stalls(path, top=25):
    with open(path) as f:
        rows = list(csv.reader(f))
    h = next(i for i, r in enumerate(rows) if "Source" in r and "Warp Stall Sampling (All Samples)" in r)
    hdr = rows[h]
    src, alls = hdr.index("Source"), hdr.index("Warp Stall Sampling (All Samples)")
    reasons = [i for i, name in enumerate(hdr) if name.startswith("stall_") and "(Not Issued)" not in name]

    def num(r, i):
        try:
            return float(r[i].replace(",", ""))
        except (IndexError, ValueError):
            return 0.0
    lines = [r for r in rows[h + 1:] if len(r) == len(hdr)]
    total = sum(num(r, alls) for r in lines)
    if total <= 0:
        return "no warp-stall samples in %s" % path
    by_reason, by_op = collections.Counter(), collections.Counter()
    for r in lines:
        for i in reasons:
            by_reason[hdr[i][len("stall_"):]] += num(r, i)
        words = [w for w in r[src].split() if not w.startswith("@")]
        by_op[words[0].split(".")[0] if words else "?"] += num(r, alls)

    def share(counter, n):
        return ", ".join("%s %.1f%%" % (k, 100 * v / total) for k, v in counter.most_common(n) if v > 0)
    out = ["%d samples; by reason: %s; by opcode: %s" % (total, share(by_reason, 8), share(by_op, 8))]
    # Each line's offset in the kernel (its address less the first line's), as cuobjdump -sass prints it, so that a
    # line that occurs several times (a wait, a barrier) can be told apart.
    addr = hdr.index("Address") if "Address" in hdr else None

    def address(r):
        if addr is None:
            return None
        try:
            return int(r[addr], 16)
        except ValueError:
            return None
    start = min((a for a in map(address, lines) if a is not None), default=None)
    out.append("the %d SASS lines with the most samples (share, offset, the line, its top reasons):" % top)
    for r in sorted(lines, key=lambda r: -num(r, alls))[:top]:
        top3 = sorted(((num(r, i), hdr[i][len("stall_"):]) for i in reasons), reverse=True)[:3]
        why = ", ".join("%s %d" % (name, v) for v, name in top3 if v > 0)
        a = address(r)
        where = "%05x" % (a - start) if a is not None and start is not None else "?"
        out.append("%5.1f%%  %s  %-60s  %s" % (100 * num(r, alls) / total, where, r[src].strip()[:60], why))
    return "\n".join(out)


KINDS = {"decode": (decode, 2, 2), "moe-layouts": (moe_layouts, 1, 1), "mla-verdict": (mla_verdict, 1, 1),
         "mla-ab": (mla_ab, 1, 1), "flash-verdict": (flash_verdict, 1, 1), "prefill": (prefill, 2, 2),
         "torch-step": (torch_step, 1, 2),
         "ncu-kernels": (ncu_kernels, 1, 1), "ncu-stalls": (ncu_stalls, 1, 1)}


def main(argv):
    if len(argv) < 2 or argv[1] not in KINDS:
        sys.stderr.write(__doc__)
        return 2
    fn, least, most = KINDS[argv[1]]
    args = argv[2:]
    if not least <= len(args) <= most:
        sys.stderr.write("gpu_check_notes.py %s: takes %d to %d arguments, got %d\n" % (argv[1], least, most,
                                                                                      len(args)))
        return 2
    try:
        text = fn(*args)
    except Exception as e:  # a note never fails its step: it says what it could not read
        text = "no %s note: %s: %s" % (argv[1], type(e).__name__, e)
    lines = text.split("\n")
    print("NOTE: " + lines[0])
    for line in lines[1:]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
