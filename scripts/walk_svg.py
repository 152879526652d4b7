#!/usr/bin/env python3
"""walk_svg.py JSON OUT.svg: the page-table walk of one address drawn as the textbook diagram,
before and after its first touch, from a real run: the address's bit fields, one box per table
(its PFN, the entry used highlighted, with its raw value and bits), arrows down to the frame.

JSON is what `pfdemo tour --json` (or `--json-out`) printed, whose first device touch carries
the walks right before and right after the store, or what `pfdemo walk --touch --json` printed.

walk_svg.py --check JSON SVG: asserts that SVG carries that run's numbers (the address, every
index, table PFN, entry and the frame of both walks), read from JSON on their own, not through
the drawing code; exits non-zero naming what is missing. Standard library only; run in the
build root like scripts/plot_bench.py (scripts/test.sh, scripts/run.sh).
"""
import html
import json
import sys

# The x86-64 address fields with 4-level paging, high bits first: (label, high bit, low bit).
FIELDS = [("sign", 63, 48), ("PGD", 47, 39), ("PUD", 38, 30), ("PMD", 29, 21), ("PTE", 20, 12),
          ("offset", 11, 0)]
FIELDS_5 = [("sign", 63, 57), ("PGD", 56, 48), ("P4D", 47, 39)] + FIELDS[2:]


def walks_of(doc):
    """The (label, walk) pairs to draw: before and after the first touch."""
    if isinstance(doc, dict) and "walks" in doc:
        return [(w["label"], w["walk"]) for w in doc["walks"]]
    steps = [s for s in doc if s.get("side") == "device" and s.get("walks")]
    before = next(s["walks"]["before"] for s in steps if "before" in s["walks"])
    after = next(s["walks"]["after"] for s in steps if "after" in s["walks"])
    return [("before the first touch", before), ("after the first touch", after)]


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222", family="sans-serif"):
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}" font-family="{family}">{html.escape(s)}</text>')


def arrow(x1, y1, x2, y2, colour="#444", dash=""):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
            f'stroke-width="1.5" marker-end="url(#head)"{d}/>')


def ending(walk):
    last = walk["levels"][-1]
    return {
        "empty": f'{last["name"]}[{last["index"]}] is empty'
                 + (" (no table below it yet)" if last["name"] != "PTE" else "")
                 + ": no translation, the MMU raises a page fault",
        "not-present": f'{last["name"]}[{last["index"]}] is not present: the MMU raises a page fault',
        "leaf": "a PTE leaf: a 4 KiB frame",
        "huge-pmd": "a PMD leaf (page-size bit): a 2 MiB frame",
        "huge-pud": "a PUD leaf (page-size bit): a 1 GiB frame",
    }.get(walk["end"] if isinstance(walk["end"], str) else "", f'ends: {walk["end"]}')


def panel(label, walk, y0):
    """One walk: the address bar, the tables, the frame; returns (svg parts, height)."""
    out = []
    addr = walk["address"]
    five = walk["paging_levels"] == 5
    fields = FIELDS_5 if five else FIELDS
    out.append(text(20, y0 + 18, f"{label}: walk of {addr:#x}, {ending(walk)}", 15, weight="bold"))
    # The address bar: one box per field, as wide as its bits.
    bar_x, bar_y, bit_w = 20, y0 + 34, 17
    centres = {}
    x = bar_x
    for name, hi, lo in fields:
        w = (hi - lo + 1) * bit_w if name != "sign" else 6 * bit_w
        value = (addr >> lo) & ((1 << (hi - lo + 1)) - 1)
        fill = "#eef3fb" if name not in ("sign", "offset") else "#f4f4f4"
        out.append(f'<rect x="{x}" y="{bar_y}" width="{w}" height="40" fill="{fill}" stroke="#556"/>')
        out.append(text(x + w / 2, bar_y + 15, f"{name} ({hi}..{lo})", 11, "middle", fill="#556"))
        shown = f"{value:#x}" if name in ("sign", "offset") else str(value)
        out.append(text(x + w / 2, bar_y + 33, shown, 14, "middle", "bold"))
        centres[name] = x + w / 2
        x += w
    # The tables, left to right, each with its used entry highlighted.
    box_w, box_h, gap = 200, 128, 36
    ty = bar_y + 90
    levels = walk["levels"]
    out.append(text(20, ty - 8, "CR3 (mm->pgd)", 11, fill="#556"))
    for i, lvl in enumerate(levels):
        bx = 20 + i * (box_w + gap)
        last = i == len(levels) - 1
        stop = last and walk["end"] in ("empty", "not-present")
        out.append(f'<rect x="{bx}" y="{ty}" width="{box_w}" height="{box_h}" fill="white" stroke="#334" stroke-width="1.5"/>')
        out.append(text(bx + 6, ty + 16, f'{lvl["name"]} table, pfn {lvl["table_pfn"]:#x}', 12, weight="bold"))
        rows = ["0", "\u22ee", None, "\u22ee", "511"]
        for r, row in enumerate(rows):
            ry = ty + 24 + r * 20
            if row is None:
                colour = "#fde0dc" if stop else "#fff2b3"
                out.append(f'<rect x="{bx + 2}" y="{ry}" width="{box_w - 4}" height="20" fill="{colour}" stroke="#c90"/>')
                out.append(text(bx + 6, ry + 14, f'[{lvl["index"]}] {lvl["entry"]:#x}', 12, family="monospace"))
            else:
                out.append(text(bx + 6, ry + 14, row, 11, fill="#889", family="monospace"))
        bits = " ".join(lvl["bits"]) or "empty"
        out.append(text(bx + 4, ty + box_h + 14, bits, 10, fill="#556"))
        # The index field of the address selects the entry.
        if lvl["name"] in centres:
            out.append(arrow(centres[lvl["name"]], bar_y + 40, bx + box_w / 2, ty + 24 + 2 * 20, "#99a", "3,3"))
        if not last:
            out.append(arrow(bx + box_w - 2, ty + 24 + 2 * 20 + 10, bx + box_w + gap - 2, ty + 10))
            out.append(text(bx + box_w + 2, ty - 4, f'{lvl["pfn"]:#x}', 10, fill="#444"))
    fx = 20 + len(levels) * (box_w + gap)
    last = levels[-1]
    if walk["end"] in ("leaf", "huge-pmd", "huge-pud"):
        size = {"leaf": "4 KiB", "huge-pmd": "2 MiB", "huge-pud": "1 GiB"}[walk["end"]]
        out.append(arrow(fx - gap - 2, ty + 24 + 2 * 20 + 10, fx - 2, ty + 30))
        out.append(f'<rect x="{fx}" y="{ty}" width="170" height="{box_h}" fill="#e3f4e1" stroke="#2a7" stroke-width="1.5"/>')
        out.append(text(fx + 85, ty + 30, f"{size} frame", 13, "middle", "bold"))
        out.append(text(fx + 85, ty + 52, f'pfn {last["pfn"]:#x}', 13, "middle", family="monospace"))
        if walk.get("frame_pfn") is not None and walk["frame_pfn"] != last["pfn"]:
            out.append(text(fx + 85, ty + 72, f'page {walk["frame_pfn"]:#x}', 12, "middle", family="monospace"))
        out.append(text(fx + 85, ty + 92, f"+ offset {addr & 4095:#x}", 12, "middle"))
    else:
        out.append(f'<rect x="{fx}" y="{ty}" width="170" height="{box_h}" fill="#fbeaea" stroke="#c44" stroke-dasharray="5,4"/>')
        out.append(text(fx + 85, ty + 40, "no translation", 13, "middle", "bold", "#a22"))
        out.append(text(fx + 85, ty + 62, "page fault", 13, "middle", fill="#a22"))
    return out, ty + box_h + 40 - y0


def draw(doc):
    parts, y = [], 10
    for label, walk in walks_of(doc):
        p, h = panel(label, walk, y)
        parts += p
        y += h
    width = 20 + 5 * 236 + 10
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0f}" font-family="sans-serif">',
            '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#444"/></marker></defs>',
            f'<rect width="{width}" height="{y:.0f}" fill="white"/>']
    return "\n".join(head + parts + ["</svg>"]) + "\n"


def check(doc, svg):
    """The numbers of the run that the picture must show, each found in its text."""
    missing = []
    for label, walk in walks_of(doc):
        want = [f'{walk["address"]:#x}']
        for lvl in walk["levels"]:
            want += [f'[{lvl["index"]}] {lvl["entry"]:#x}', f'pfn {lvl["table_pfn"]:#x}']
        if walk.get("frame_pfn") is not None:
            want.append(f'{walk["levels"][-1]["pfn"]:#x}')
        missing += [f"{label}: {w}" for w in want if html.escape(w) not in svg]
    if missing:
        sys.exit("walk_svg.py --check: the picture lacks these numbers of the run:\n  " + "\n  ".join(missing))
    print(f"walk_svg.py --check: the picture carries the run's numbers ({len(walks_of(doc))} walks)")


def main(argv):
    if len(argv) == 3 and argv[0] == "--check":
        check(json.load(open(argv[1])), open(argv[2]).read())
    elif len(argv) == 2:
        open(argv[1], "w").write(draw(json.load(open(argv[0]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
