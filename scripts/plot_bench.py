#!/usr/bin/env python3
"""plot_bench.py RESULTS.json OUT.svg: pages per second per mode and thread count, as an SVG
bar chart (log scale), from the JSON that `pfdemo bench` writes. Standard library only."""
import json
import math
import sys


def main(src, dst):
    report = json.load(open(src))
    rows = report["rows"]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    threads = sorted({r["threads"] for r in rows})
    value = {(r["mode"], r["threads"]): r["pages_per_s"] for r in rows}
    lo = 10 ** math.floor(math.log10(min(value.values())))
    hi = 10 ** math.ceil(math.log10(max(value.values())))
    width, height, left, bottom, top = 120 + 110 * len(modes), 420, 80, 90, 40
    plot_h = height - bottom - top
    colours = ["#4477aa", "#ee6677", "#228833", "#ccbb44"]

    def y(v):
        return top + plot_h * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Pages per second '
           f'({report["bytes"] >> 20} MiB, median of {report["reps"]}, kernel {report["kernel"]}, '
           f'{report["clocksource"]})</text>']
    decade = lo
    while decade <= hi:
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(decade):.1f}" y2="{y(decade):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">{decade:.0e}</text>')
        decade *= 10
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
                       f'height="{top + plot_h - y(v):.1f}" fill="{colours[j % len(colours)]}">'
                       f'<title>{mode}, {t} thread(s): {v:,.0f} pages/s</title></rect>')
        out.append(f'<text x="{x0 + group * 0.4:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{mode}</text>')
    for j, t in enumerate(threads):
        out.append(f'<rect x="{left + 110 * j}" y="{height - 30}" width="12" height="12" fill="{colours[j % len(colours)]}"/>')
        out.append(f'<text x="{left + 110 * j + 18}" y="{height - 20}">{t} thread(s)</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
