#!/usr/bin/env python3
"""plot_bench.py RESULTS.json OUTDIR [--doc BENCHMARKS.md [--part FLAVOUR]]: the figures and tables of a
`pfdemo bench` run, all from its JSON (standard library only):

  OUTDIR/pages-per-second.svg   pages per second per mode and thread count (log scale)
  OUTDIR/prefault-sweep.svg     pages per second and faults per page against prefault K
  OUTDIR/tables.md              the Markdown tables: modes, scaling, targets, ablation,
                                sweep, fault loops

--doc replaces the part of that file between "<!-- tables: begin -->" and
"<!-- tables: end -->" with tables.md, so the document's tables are those of the run.
--part NAME (a kernel flavour's run, e.g. debian, or a run counting instructions, icount or
FLAVOUR-icount) uses "<!-- tables NAME: begin -->" and "<!-- tables NAME: end -->" instead,
and leaves a document without them as it is.

plot_bench.py --self-test [REPO]: checks on a made-up run that every number of the JSON that
the figures and tables show is in them, and, with REPO, that REPO's bench/ files and its
BENCHMARKS.md are exactly what its bench/results.json gives, and the same for each part of
BENCHMARKS.md named after a flavour or an icount run, from bench/NAME/results.json."""
import json
import math
import os
import re
import sys

BEGIN, END = "<!-- tables: begin -->", "<!-- tables: end -->"
# What a "second" of a run under QEMU's -icount shift=0 is.
ICOUNT_SECOND = "10⁹ guest instructions"


def markers(part=None):
    """The lines around the tables of the default kernel's run, or of a flavour's."""
    if part is None:
        return BEGIN, END
    return f"<!-- tables {part}: begin -->", f"<!-- tables {part}: end -->"
COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44"]


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_ratio(i):
    """An interval as "1.02 [0.97, 1.08]"; "-" for none."""
    if i is None:
        return "-"
    return f"{i['median']:.2f} [{i['lo']:.2f}, {i['hi']:.2f}]"


def fmt_faults(x):
    """Faults per page: "1", "1/16", "1/512", "0", else three decimals."""
    if x <= 0:
        return "0"
    k = round(1 / x)
    if k >= 1 and abs(x * k - 1) < 0.02:
        return "1" if k == 1 else f"1/{k}"
    return f"{x:.3f}"


def fmt_pct(v):
    return f"{v:.0f}%"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def tables(r):
    """The Markdown tables of report `r`."""
    mib = r["bytes"] >> 20
    parts = [f"Run: kernel {r['kernel']}, clocksource {r['clocksource']} "
             f"({r['clock_resolution_ns']:.0f} ns steps), {r['vcpus']} vCPUs, {mib} MiB, "
             f"{r['reps']} to {r['max_reps']} repetitions (more where a deciding 95% interval "
             f"was wider than {r['ci_width'] * 100:.0f}%), bootstrap seed {r['seed']}"
             + (f", module parameters {' '.join(r['params'])}" if r["params"] else "") + ". "
             + ("The guest's clock counted instructions (QEMU -icount shift=0): every ns "
                "below is one guest instruction, of all vCPUs together, and pages/s is pages "
                "per 10⁹ instructions. " if r.get("icount") else "")
             + "Ratios: median of per-repetition paired ratios [95% bootstrap interval]; "
             "CPU time: user and system per page, all threads."]
    if r["rows"]:
        parts.append(table(
            ["mode", "threads", "reps", "pages/s", "ns/page", "spread", "sys ns/page",
             "user ns/page", "× anon", "× memset", "faults/page"],
            [[x["mode"], x["threads"], x["reps"], fmt_int(x["pages_per_s"]),
              fmt_int(x["median_ns_per_page"]), fmt_pct(x["spread_pct"]),
              fmt_int(x["sys_ns_per_page"]), fmt_int(x["user_ns_per_page"]),
              fmt_ratio(x["ratio_to_anon"]), fmt_ratio(x["ratio_to_memset"]),
              fmt_faults(x["faults_per_page"])] for x in r["rows"]]))
    if r["scaling"]:
        parts.append(table(
            ["mode", "threads", "speedup over 1 thread", "over anon's own speedup"],
            [[s["mode"], f"1 → {s['threads']}", fmt_ratio(s["speedup"]),
              fmt_ratio(s["against_anon"])] for s in r["scaling"]]))
    if r["targets"]:
        parts.append(table(
            ["target", "goal", "measured", "verdict"],
            [[t["what"], f"≥ {t['goal']:.2f}", fmt_ratio(t["measured"]), t["verdict"]]
             for t in r["targets"]]))
    if r["ablation"]:
        parts.append(table(
            ["switch (against the defaults)", "mode", "threads", "pairs", "ns/page default",
             "ns/page switched", "pages/s switched / default", "verdict",
             "sys ns/page default → switched", "user ns/page default → switched",
             "faults/page"],
            [[a["switch"], a.get("mode", "device"), a["threads"], a["effect"]["n"],
              fmt_int(a["default"]["median_ns_per_page"]),
              fmt_int(a["switched"]["median_ns_per_page"]), fmt_ratio(a["effect"]),
              a["verdict"],
              f"{fmt_int(a['default']['sys_ns_per_page'])} → "
              f"{fmt_int(a['switched']['sys_ns_per_page'])}",
              f"{fmt_int(a['default']['user_ns_per_page'])} → "
              f"{fmt_int(a['switched']['user_ns_per_page'])}",
              fmt_faults(a["switched"]["faults_per_page"])] for a in r["ablation"]]))
    if r["sweep"]:
        parts.append(table(
            ["prefault K", "pages/s", "ns/page", "spread", "faults/page", "sys ns/page",
             "user ns/page", "× anon"],
            [[w["prefault"], fmt_int(w["pages_per_s"]), fmt_int(w["median_ns_per_page"]),
              fmt_pct(w["spread_pct"]), fmt_faults(w["faults_per_page"]),
              fmt_int(w["sys_ns_per_page"]), fmt_int(w["user_ns_per_page"]),
              fmt_ratio(w["ratio_to_anon"])] for w in r["sweep"]]))
    if r["loops"]:
        parts.append(f"Fault loops: {r['loop_ms']} ms per run, {r['loop_mib']} MiB per task "
                     "per iteration.")
        parts.append(table(
            ["loop", "parameters", "tasks", "as", "faults/s per task", "spread",
             "sys ns/page", "user ns/page", "× the kernel's loop"],
            [[x["name"], x["params"] or "-", x["tasks"], x["tasks_are"],
              fmt_int(x["faults_per_s_per_task"]), fmt_pct(x["spread_pct"]),
              fmt_int(x["sys_ns_per_page"]), fmt_int(x["user_ns_per_page"]),
              fmt_ratio(x["against_kernel"])] for x in r["loops"]]))
    return "\n\n".join(parts) + "\n"


def svg_open(width, height, title):
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']


def log_axis(values):
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    return lo, hi


def grid(lo, hi, y, x1, x2, colour):
    """A grey line and a label at the left for every decade from `lo` to `hi`."""
    out, d = [], lo
    while d <= hi:
        out.append(f'<line x1="{x1}" x2="{x2}" y1="{y(d):.1f}" y2="{y(d):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x1 - 6}" y="{y(d) + 4:.1f}" text-anchor="end" fill="{colour}">{d:.0e}</text>')
        d *= 10
    return out


def bars(r):
    """Pages per second per mode and thread count, log scale."""
    rows = r["rows"]
    modes = list(dict.fromkeys(x["mode"] for x in rows))
    threads = sorted({x["threads"] for x in rows})
    value = {(x["mode"], x["threads"]): x["pages_per_s"] for x in rows}
    lo, hi = log_axis(value.values())
    width, height, left, bottom, top = 120 + 110 * len(modes), 420, 80, 90, 40
    plot_h = height - bottom - top

    def y(v):
        return top + plot_h * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = svg_open(width, height, f'Pages per {ICOUNT_SECOND if r.get("icount") else "second"} '
                   f'({r["bytes"] >> 20} MiB, median of '
                   f'{r["reps"]} to {r["max_reps"]}, kernel {r["kernel"]}, {r["clocksource"]})')
    out += grid(lo, hi, y, left, width - 20, "black")
    group = (width - left - 20) / len(modes)
    bar = group * 0.8 / len(threads)
    for i, mode in enumerate(modes):
        x0 = left + i * group + group * 0.1
        for j, t in enumerate(threads):
            v = value.get((mode, t))
            if v is None:
                continue
            x = x0 + j * bar
            out.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar - 2:.1f}" '
                       f'height="{top + plot_h - y(v):.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                       f'<title>{mode}, {t} thread(s): {fmt_int(v)} pages/s</title></rect>')
        out.append(f'<text x="{x0 + group * 0.4:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{mode}</text>')
    for j, t in enumerate(threads):
        out.append(f'<rect x="{left + 110 * j}" y="{height - 30}" width="12" height="12" fill="{COLOURS[j % len(COLOURS)]}"/>')
        out.append(f'<text x="{left + 110 * j + 18}" y="{height - 20}">{t} thread(s)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def sweep_plot(r):
    """Pages per second (left axis) and faults per page (right axis) against prefault K, both
    log scale, with anon's pages per second of the same rounds as a dashed line."""
    rows = r["sweep"]
    ks = [w["prefault"] for w in rows]
    pps = [w["pages_per_s"] for w in rows]
    fpp = [w["faults_per_page"] for w in rows]
    anon = r["sweep_anon"]["pages_per_s"] if r.get("sweep_anon") else None
    plo, phi = log_axis(pps + ([anon] if anon else []))
    flo, fhi = log_axis([f for f in fpp if f > 0] or [1])
    width, height, left, right, top, bottom = 720, 440, 80, 80, 40, 70
    pw, ph = width - left - right, height - top - bottom
    kmax = max(ks)

    def x(k):
        return left + pw * (math.log2(k) / math.log2(kmax) if kmax > 1 else 0.5)

    def ylog(v, lo, hi):
        return top + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = svg_open(width, height, f'device: pages per {ICOUNT_SECOND if r.get("icount") else "second"} '
                   'and faults per page against prefault K '
                   f'({r["bytes"] >> 20} MiB, 1 thread, median of {r["reps"]})')
    out += grid(plo, phi, lambda v: ylog(v, plo, phi), left, left + pw, COLOURS[0])
    d = flo
    while d <= fhi:
        out.append(f'<text x="{left + pw + 6}" y="{ylog(d, flo, fhi) + 4:.1f}" fill="{COLOURS[1]}">{d:g}</text>')
        d *= 10
    for k in ks:
        out.append(f'<text x="{x(k):.1f}" y="{top + ph + 18}" text-anchor="middle">{k}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 40}" text-anchor="middle">pages per fault (prefault K)</text>')
    rate = "pages per 10⁹ instructions" if r.get("icount") else "pages/s"
    out.append(f'<text x="{left}" y="{height - 10}" fill="{COLOURS[0]}">● {rate} (left)</text>')
    out.append(f'<text x="{left + 250}" y="{height - 10}" fill="{COLOURS[1]}">■ faults/page (right, the kernel\'s count)</text>')
    if anon:
        ya = ylog(anon, plo, phi)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{ya:.1f}" y2="{ya:.1f}" stroke="{COLOURS[2]}" stroke-dasharray="6,4">'
                   f'<title>anon, same rounds: {fmt_int(anon)} pages/s</title></line>')
        out.append(f'<text x="{left + pw - 4}" y="{ya - 5:.1f}" text-anchor="end" fill="{COLOURS[2]}">anon {fmt_int(anon)} pages/s</text>')
    pts = " ".join(f"{x(k):.1f},{ylog(v, plo, phi):.1f}" for k, v in zip(ks, pps))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>')
    fpts = " ".join(f"{x(k):.1f},{ylog(f, flo, fhi):.1f}" for k, f in zip(ks, fpp) if f > 0)
    out.append(f'<polyline points="{fpts}" fill="none" stroke="{COLOURS[1]}" stroke-width="1.5" stroke-dasharray="3,3"/>')
    for w in rows:
        k, v, f = w["prefault"], w["pages_per_s"], w["faults_per_page"]
        out.append(f'<circle cx="{x(k):.1f}" cy="{ylog(v, plo, phi):.1f}" r="4" fill="{COLOURS[0]}">'
                   f'<title>K={k}: {fmt_int(v)} pages/s, × anon {fmt_ratio(w["ratio_to_anon"])}</title></circle>')
        out.append(f'<text x="{x(k):.1f}" y="{ylog(v, plo, phi) - 8:.1f}" text-anchor="middle" font-size="10">{fmt_int(v)}</text>')
        if f > 0:
            out.append(f'<rect x="{x(k) - 3:.1f}" y="{ylog(f, flo, fhi) - 3:.1f}" width="6" height="6" fill="{COLOURS[1]}">'
                       f'<title>K={k}: {fmt_faults(f)} faults/page</title></rect>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def outputs(report):
    """{file name: contents} of everything made from `report`."""
    out = {"tables.md": tables(report)}
    if report["rows"]:
        out["pages-per-second.svg"] = bars(report)
    if report["sweep"]:
        out["prefault-sweep.svg"] = sweep_plot(report)
    return out


def with_tables(doc, tables_md, part=None):
    """`doc` with its tables part replaced; an error if it has no such part."""
    begin, end = markers(part)
    if begin not in doc or end not in doc:
        raise SystemExit(f"plot_bench: the document has no '{begin}' ... '{end}' part to "
                         "replace: add the two lines where the tables go")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{tables_md}{end}{tail}"


def main(src, outdir, doc=None, part=None):
    report = json.load(open(src))
    os.makedirs(outdir, exist_ok=True)
    for name, text in outputs(report).items():
        open(os.path.join(outdir, name), "w").write(text)
    if doc:
        text = open(doc).read()
        if part is not None and markers(part)[0] not in text:
            print(f"plot_bench: {doc} has no part for {part}; its tables are in "
                  f"{os.path.join(outdir, 'tables.md')}")
            return
        open(doc, "w").write(with_tables(text, outputs(report)["tables.md"], part))


def made_up():
    """A small report in `pfdemo bench`'s JSON format, with distinct numbers."""
    def iv(m, lo, hi, n=5):
        return {"median": m, "lo": lo, "hi": hi, "n": n}

    def summary(ns, faults=1.0, sys_ns=2222.0, user_ns=33.0):
        return {"reps": 5, "samples_ns_per_page": [ns] * 5, "median_ns_per_page": ns,
                "spread_pct": 4.0, "pages_per_s": 1e9 / ns, "faults_per_page": faults,
                "sys_ns_per_page": sys_ns, "user_ns_per_page": user_ns}
    rows = [dict(mode="anon", threads=1, ratio_to_anon=iv(1, 1, 1), ratio_to_memset=iv(0.18, 0.17, 0.19), **summary(3871.0)),
            dict(mode="device", threads=1, ratio_to_anon=iv(0.87, 0.83, 0.91), ratio_to_memset=iv(0.15, 0.14, 0.16), **summary(4420.0, sys_ns=3456.0)),
            dict(mode="device", threads=2, ratio_to_anon=iv(0.93, 0.88, 0.97), ratio_to_memset=None, **summary(2486.0, user_ns=41.0))]
    return {
        "kernel": "7.3.4", "clocksource": "tsc-early", "clock_resolution_ns": 93.0, "vcpus": 2,
        "bytes": 64 << 20, "reps": 5, "max_reps": 15, "ci_width": 0.06, "seed": 16, "batch": 16,
        "params": [], "thp": "always [madvise] never", "rows": rows,
        "scaling": [{"mode": "device", "threads": 2, "speedup": iv(1.78, 1.70, 1.83), "against_anon": iv(0.98, 0.94, 1.03)}],
        "targets": [{"what": "device / anon, 1 thread", "goal": 1.0, "measured": iv(0.87, 0.83, 0.91), "verdict": "not met"}],
        "handler_mean_ns": 2240.0, "handler_calls": 81920, "metadata_bytes_per_frame": 8.1,
        "ablation": [{"switch": "map_pages=0", "threads": 2, "default": summary(2500.0), "switched": summary(2811.0, sys_ns=2999.0),
                      "effect": iv(0.89, 0.85, 0.93, 7), "verdict": "slower"},
                     {"switch": "alloc_blocks=0", "mode": "device-batch", "threads": 1, "default": summary(1500.0),
                      "switched": summary(1710.0, faults=1 / 16), "effect": iv(0.88, 0.84, 0.90, 5), "verdict": "slower"}],
        "sweep": [{"prefault": k, "ratio_to_anon": iv(0.9 + k / 100, 0.8 + k / 100, 1.0 + k / 100),
                   **summary(4000.0 / (1 + math.log2(k)), faults=1 / k)} for k in (1, 2, 4, 16, 512)],
        "sweep_anon": summary(3900.0),
        "loop_ms": 1000, "loop_mib": 8,
        "loops": [{"name": "pf1-device", "params": "map_pages=0", "tasks": 2, "tasks_are": "threads",
                   "samples_faults_per_s_per_task": [123456.0], "faults_per_s_per_task": 123456.0,
                   "spread_pct": 7.0, "sys_ns_per_page": 5432.0, "user_ns_per_page": 12.0,
                   "against_kernel": iv(0.77, 0.71, 0.82, 3)}],
        "notes": [],
    }


def must(cond, what):
    if not cond:
        raise SystemExit(f"plot_bench self-test: {what}")


def self_test(repo=None):
    r = made_up()
    out = outputs(r)
    md, bars_svg, sweep_svg = out["tables.md"], out["pages-per-second.svg"], out["prefault-sweep.svg"]
    for x in r["rows"]:
        v = fmt_int(x["pages_per_s"])
        must(f"{x['mode']}, {x['threads']} thread(s): {v} pages/s" in bars_svg, f"bar of {x['mode']}/{x['threads']} lacks {v}")
        for cell in (v, fmt_int(x["sys_ns_per_page"]), fmt_int(x["user_ns_per_page"]), fmt_ratio(x["ratio_to_anon"])):
            must(cell in md, f"table lacks {cell} of {x['mode']}")
    for w in r["sweep"]:
        v, f = fmt_int(w["pages_per_s"]), fmt_faults(w["faults_per_page"])
        must(f"K={w['prefault']}: {v} pages/s" in sweep_svg, f"sweep plot lacks K={w['prefault']}'s {v}")
        must(f"K={w['prefault']}: {f} faults/page" in sweep_svg, f"sweep plot lacks K={w['prefault']}'s {f}")
        must(f"| {w['prefault']} | {v} |" in md, f"sweep table lacks K={w['prefault']}")
    must("1/512" in md and "1/16" in md, "faults per page not shown as fractions")
    must(fmt_int(r["sweep_anon"]["pages_per_s"]) in sweep_svg, "sweep plot lacks anon's line")
    a = r["ablation"][0]
    for cell in ("map_pages=0", "0.89 [0.85, 0.93]", "slower", "2,500", "2,811", "2,222 → 2,999"):
        must(cell in md, f"ablation table lacks {cell}")
    for cell in ("pf1-device", "123,456", "0.77 [0.71, 0.82]", "5,432"):
        must(cell in md, f"loop table lacks {cell}")
    must("0.98 [0.94, 1.03]" in md and "not met" in md, "scaling or targets missing")
    must(a["effect"]["n"] == 7 and "| 7 |" in md, "ablation pairs missing")
    must("| map_pages=0 | device | 2 | 7 |" in md and "| alloc_blocks=0 | device-batch | 1 | 5 |" in md,
         "ablation rows lack the mode they were measured on")
    doc = f"intro\n{BEGIN}\nold\n{END}\nrest\n"
    must(with_tables(doc, md) == f"intro\n{BEGIN}\n{md}{END}\nrest\n", "document splice")
    b, e = markers("debian")
    two = f"{doc}{b}\nold\n{e}\n"
    must(with_tables(two, md, "debian") == f"{doc}{b}\n{md}{e}\n", "a flavour's part")
    must("instruction" not in md, "a timed run's tables speak of instructions")
    must("one guest instruction" in tables(dict(r, icount=True)), "an icount run's tables do not say what ns means")
    if repo:
        doc = open(os.path.join(repo, "BENCHMARKS.md")).read()
        parts = [None] + sorted(set(re.findall(r"<!-- tables ([^:\s]+): begin -->", doc)))
        for part in parts:
            where = "bench" if part is None else f"bench/{part}"
            flavour = None if part in (None, "icount") else part.removesuffix("-icount")
            how = (f"run make bench{'' if flavour is None else ' FLAVOUR=' + flavour}"
                   f"{' ICOUNT=1' if part and part.endswith('icount') else ''}, or "
                   f"scripts/plot_bench.py {where}/results.json {where} --doc BENCHMARKS.md"
                   f"{'' if part is None else ' --part ' + part}")
            src = os.path.join(repo, where, "results.json")
            must(os.path.exists(src), f"BENCHMARKS.md has tables of {where}/results.json, which is missing")
            report = json.load(open(src))
            for name, text in outputs(report).items():
                path = os.path.join(repo, where, name)
                must(os.path.exists(path) and open(path).read() == text,
                     f"{where}/{name} is not what {where}/results.json gives: {how}")
            must(with_tables(doc, outputs(report)["tables.md"], part) == doc,
                 f"BENCHMARKS.md's tables{'' if part is None else ' for ' + part} are not those "
                 f"of {where}/results.json: {how}")
    print("plot_bench self-test: ok")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        self_test(args[1] if len(args) > 1 else None)
    elif len(args) == 2:
        main(args[0], args[1])
    elif len(args) == 4 and args[2] == "--doc":
        main(args[0], args[1], args[3])
    elif len(args) == 6 and args[2] == "--doc" and args[4] == "--part":
        main(args[0], args[1], args[3], args[5])
    else:
        raise SystemExit(__doc__)
