#!/usr/bin/env python3
"""launch/gpu_check_notes.py, the summary lines of launch/gpu_check.sh: `decode` and `prefill` on JSON that
`mlarun bench decode` / `bench prefill` write on the CPU (the tiny fixture's config, seconds), the GPU-only
workbenches' verdicts on JSON of the shape their writers give (bench_mla_decode.cu, bench_flash_prefill.cu), Nsight
Compute's raw CSV, and the rules: a note that cannot be read says why and exits 0; a wrong call exits 2.
Usage: test_gpu_check_notes.py REPO_ROOT MLARUN"""
import json
import os
import subprocess
import sys
import tempfile

ROOT, MLARUN = os.path.abspath(sys.argv[1]), sys.argv[2]
NOTES = os.path.join(ROOT, "launch", "gpu_check_notes.py")
CONFIG = os.path.join(ROOT, "tests", "data", "deepseek-v2-tiny", "config.json")
failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def note(*args):
    p = subprocess.run([sys.executable, NOTES] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout


def write(folder, name, obj):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


with tempfile.TemporaryDirectory() as tmp:
    # `bench decode` on the CPU: no floor and no CUDA graph there, which the note says.
    dj = os.path.join(tmp, "decode.json")
    subprocess.run([MLARUN, "bench", "decode", "--config", CONFIG, "--layers", "1", "--batch", "2", "--seq-len", "32",
                    "--iters", "2", "--warmup", "0", "--attention", "mla", "--json", dj], check=True,
                   stdout=subprocess.DEVNULL)
    rec = json.load(open(dj))["records"][0]
    rc, out = note("decode", dj, "tiny, batch 2")
    expect(rc == 0 and out.startswith("NOTE: tiny, batch 2: %.2f ms/step" % (1e3 * rec["median_latency"])),
           "decode note: " + out)
    expect("; split attention " in out and "; no CUDA graph: " in out, "decode note parts: " + out)

    # `bench prefill` on the CPU: one chunk over one prefix.
    pj = os.path.join(tmp, "prefill.json")
    subprocess.run([MLARUN, "bench", "prefill", "--config", CONFIG, "--layers", "1", "--prefix-lens", "64",
                    "--chunk-lens", "8", "--batch", "1", "--iters", "1", "--warmup", "0", "--json", pj], check=True,
                   stdout=subprocess.DEVNULL)
    r = json.load(open(pj))["records"][0]
    rc, out = note("prefill", pj, "wgmma")
    expect(rc == 0 and out.startswith("NOTE: chunk 8 over prefix 64, flash wgmma: naive attention %.3f ms"
                                      % r["naive"]["attention_median_ms"]), "prefill note: " + out)

    # bench_mla_decode's JSON (its fields as bench_mla_decode.cu writes them).
    mj = write(tmp, "mla.json", {"shapes": [
        {"name": "tp8_fit", "call_ms": 0.358, "speedup_vs_32_row_kernel": 1.99, "schedule_ms": 0.0078},
        {"name": "tp8_fp8_fit", "call_ms": 0.5, "speedup_vs_bf16": 0.72, "attend": "tensor_cores_fitted"},
        {"name": "tp8_fit_pf2", "call_ms": 0.402, "speedup_vs_no_prefetch": 0.89},
        {"name": "tp8_fp8_fit_reg", "call_ms": 0.25, "speedup_vs_bf16": 1.43, "attend": "tensor_cores_fitted",
         "codes_in_registers": True, "speedup_vs_codes_widened": 2.0},
        {"name": "h128_wgws", "call_ms": 0.16, "speedup_vs_wgmma_split": 1.5, "attend": "wgmma_warp_specialized"}]})
    rc, out = note("mla-verdict", mj)
    expect(out.strip() == "NOTE: against the 32-row kernel: tp8_fit 0.358 ms 1.99x; tp8_fp8_fit 0.72x the bf16 "
                          "tokens/s; tp8_fp8_fit_reg 1.43x the bf16 tokens/s; tp8_fit_pf2 0.402 ms 0.89x without L2 "
                          "prefetch; tp8_fp8_fit_reg 0.250 ms 2.00x the codes widened; h128_wgws 0.160 ms 1.50x the "
                          "split wgmma kernel; schedule tp8_fit 7.8 us",
           "mla verdict: " + out)

    # Two builds' bench_mla_decode runs in turn: medians per row and build; a row that failed validation, a row in
    # one build only and a file of another name are left out.
    ab = os.path.join(tmp, "ab")
    os.mkdir(ab)
    for i, (label, ms) in enumerate([("base", 0.40), ("new", 0.31), ("new", 0.29), ("base", 0.42)]):
        write(ab, "%s_%d.json" % (label, i), {"shapes": [
            {"name": "tp8_fp8", "call_ms": ms, "validation_ok": True},
            {"name": "bad", "call_ms": ms, "validation_ok": label == "base"},
            {"name": "only_" + label, "call_ms": ms, "validation_ok": True}]})
    write(ab, "other.json", {"shapes": [{"name": "tp8_fp8", "call_ms": 9.0}]})
    rc, out = note("mla-ab", ab)
    expect(rc == 0 and out.strip() == "NOTE: new build against base, whole call: tp8_fp8 0.410 -> 0.300 ms 1.37x "
           "(2+2 runs)", "mla a/b: " + out)

    # bench_flash_prefill's JSON: the wgmma row against stage A's row of the same shape; a row alone is left out.
    shape = {"kind": "prefill", "B": 1, "H": 16, "S": 8192, "D": 128, "DV": 128, "causal": True}
    fj = write(tmp, "flash.json", [dict(shape, kernel="mma", tflops=200.0), dict(shape, kernel="wgmma", tflops=400.0),
                                   dict(shape, S=4096, kernel="wgmma", tflops=300.0)])
    rc, out = note("flash-verdict", fj)
    expect(out.strip() == "NOTE: wgmma against stage A: b1 h16 s8192 d128/128 400.0 TFLOP/s 2.00x",
           "flash verdict: " + out)
    # ... and the warp-specialized rows against the wgmma ones.
    fj = write(tmp, "flash_ws.json", [dict(shape, kernel="mma", tflops=200.0),
                                      dict(shape, kernel="wgmma", tflops=400.0),
                                      dict(shape, kernel="wgmma_ws", tflops=500.0)])
    rc, out = note("flash-verdict", fj)
    expect(out.strip() == "NOTE: wgmma against stage A: b1 h16 s8192 d128/128 400.0 TFLOP/s 2.00x; warp-specialized "
                          "against wgmma: b1 h16 s8192 d128/128 500.0 TFLOP/s 1.25x", "flash verdict, ws: " + out)
    # ... and the pipelined variants' rows, each named, against the wgmma ones.
    fj = write(tmp, "flash_pipe.json", [dict(shape, kernel="wgmma", tflops=400.0),
                                        dict(shape, kernel="wgmma_pingpong", tflops=440.0),
                                        dict(shape, kernel="wgmma_persistent", tflops=420.0)])
    rc, out = note("flash-verdict", fj)
    expect(out.strip() == "NOTE: wgmma against stage A: no rows; pipelined with turns against wgmma: b1 h16 s8192 "
                          "d128/128 440.0 TFLOP/s 1.10x; persistent pipelined against wgmma: b1 h16 s8192 d128/128 "
                          "420.0 TFLOP/s 1.05x", "flash verdict, pipelined: " + out)

    # The MoE layouts: one file missing is named in the line, the others still read.
    for b, cap, layout, ms in ((8, "0", "compact", 2.5), (8, "-1", "capacity", 1.5), (64, "0", "compact", 4.0)):
        write(tmp, "bench_moe_b%d_c%s.json" % (b, cap), {"moe_layout": layout, "records": [
            {"median_latency": ms / 1e3, "time_split_ms": {"moe": ms / 2}}]})
    rc, out = note("moe-layouts", tmp)
    expect(rc == 0 and "batch 8: compact 2.500 ms (MoE 1.250 ms) vs capacity 1.500 ms (MoE 0.750 ms)" in out
           and "batch 64: compact 4.000 ms (MoE 2.000 ms) vs cap -1 failed" in out, "moe layouts: " + out)

    # The torch step beside mlarun's batch-64 step, and without it.
    tj = write(tmp, "ta.json", [{"batch": 64, "ms": 28.0, "layers": 2, "cached": 4096},
                                {"batch": 1, "ms": None, "absent": "no GPU", "layers": 2, "cached": 4096}])
    d64 = write(tmp, "d64.json", {"records": [{"median_latency": 0.007}]})
    rc, out = note("torch-step", tj, d64)
    expect(out.strip() == "NOTE: torch model.py-style step, same GPU (236B/2 layers, 4096 cached): batch 64 28.00 "
                          "ms, batch 1 absent (no GPU); mlarun batch 64 4.0x faster", "torch step: " + out)
    rc, out = note("torch-step", tj, "")
    expect(rc == 0 and out.strip().endswith("batch 1 absent (no GPU)"), "torch step without bench decode: " + out)

    # Nsight Compute's raw CSV: a units row, thousands separators, launches summed per name, largest first.
    cj = os.path.join(tmp, "ncu.csv")
    with open(cj, "w") as f:
        f.write('"ID","Kernel Name","Grid Size","gpu__time_duration.sum"\n"","","","usecond"\n'
                '"0","void flash<192, 128>(Args)","(16, 16, 1)","1,200.5"\n"1","gemm_bf16","(8, 1, 1)","50"\n'
                '"2","void flash<192, 128>(Args)","(16, 16, 1)","799.5"\n')
    rc, out = note("ncu-kernels", cj)
    lines = out.splitlines()
    expect(rc == 0 and lines[0] == "NOTE: 3 launches, 2.050 ms of kernels in all; the largest by name below",
           "ncu first line: " + out)
    expect(len(lines) == 3 and lines[1].split() == ["2.000", "ms", "2", "void", "flash<192,", "128>"]
           and lines[2].split() == ["0.050", "ms", "1", "gemm_bf16"], "ncu rows: " + out)

    # Nsight Compute's source page (the layout ncu 2025 writes): a kernel-name line first, thousands separators, the
    # Not Issued columns left out of the reasons; shares of all samples by reason, opcode (predicate dropped), line
    # (with its offset from the kernel's first address).
    sj = os.path.join(tmp, "source.csv")
    with open(sj, "w") as f:
        f.write('"Kernel Name","void flash<192, 128>(Args)",\n'
                '"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)",'
                '"stall_wait","stall_selected","stall_long_sb","stall_wait (Not Issued)"\n'
                '"0x10","HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], RZ","1,000","10","0","1,000","0","0"\n'
                '"0x20","@!P1 IMAD.HI.U32 R7, R4, R197, RZ","600","500","500","0","100","400"\n'
                '"0x30","IMAD R1, R2, R3, R4","400","300","300","100","0","300"\n'
                '"0x40","NOP","0","0","0","0","0","0"\n')
    rc, out = note("ncu-stalls", sj)
    lines = out.splitlines()
    expect(rc == 0 and lines[0] == "NOTE: 2000 samples; by reason: selected 55.0%, wait 40.0%, long_sb 5.0%; by "
           "opcode: HGMMA 50.0%, IMAD 50.0%", "ncu stalls first line: " + out)
    expect(len(lines) >= 5 and lines[2].split()[:3] == ["50.0%", "00000", "HGMMA.64x128x16.F32.BF16"]
           and lines[3].split()[:4] == ["30.0%", "00010", "@!P1", "IMAD.HI.U32"]
           and lines[3].endswith("wait 500, long_sb 100"), "ncu stalls lines (offsets from the first address): " + out)
    rc, out = note("ncu-stalls", cj)  # a CSV of another page: says so, exit 0
    expect(rc == 0 and out.startswith("NOTE: no ncu-stalls note: StopIteration"), "ncu stalls, wrong page: " + out)

    # Unreadable input: a NOTE that says so, exit 0 (a note never fails its step); a wrong call: exit 2.
    rc, out = note("mla-verdict", os.path.join(tmp, "absent.json"))
    expect(rc == 0 and out.startswith("NOTE: no mla-verdict note: FileNotFoundError"), "absent file: " + out)
    bad = write(tmp, "bad.json", {"records": []})
    rc, out = note("decode", bad, "x")
    expect(rc == 0 and out.startswith("NOTE: no decode note: IndexError"), "empty records: " + out)
    expect(note("frobnicate")[0] == 2, "an unknown kind was accepted")
    expect(note("decode", dj)[0] == 2, "decode with one argument was accepted")

print("gpu_check notes: %d failures" % len(failures))
sys.exit(1 if failures else 0)
