#!/usr/bin/env python3
"""profile_report.py LOG SYSTEM_MAP [TOP]: turn the kernel's /proc/profile, printed by the guest
as base64 of gzip between RPD-PROFILE-BEGIN/END lines of LOG, into hits per kernel function.
Each section (a label after BEGIN) is reported on its own; idle time is left out of the shares."""
import base64, bisect, collections, gzip, re, struct, sys

log, smap = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
syms, stext = [], None
for line in open(smap):
    addr, kind, name = line.split()[:3]
    if name == "_stext":
        stext = int(addr, 16)
    if kind in "tTwW":
        syms.append((int(addr, 16), name))
syms.sort()
addrs = [a for a, _ in syms]
IDLE = {"default_idle", "pv_native_safe_halt", "native_safe_halt", "arch_cpu_idle", "do_idle",
        "default_idle_call", "cpu_idle_poll", "acpi_safe_halt", "acpi_idle_do_entry"}

sections, cur = [], None
for line in open(log, errors="replace"):
    line = re.sub(r"^\[ *[0-9.]+\] ", "", line.rstrip("\r\n"))
    m = re.match(r"RPD-PROFILE-BEGIN (.*)", line)
    if m:
        cur = (m.group(1), [])
    elif line.startswith("RPD-PROFILE-END") and cur:
        sections.append(cur)
        cur = None
    elif cur is not None:
        cur[1].append(line.strip())
for label, lines in sections:
    raw = gzip.decompress(base64.b64decode("".join(lines)))
    step = struct.unpack_from("<I", raw)[0]
    counts = struct.unpack_from("<%dI" % ((len(raw) - 4) // 4), raw, 4)
    per = collections.Counter()
    for i, c in enumerate(counts):
        if c:
            a = stext + i * step
            j = bisect.bisect_right(addrs, a) - 1
            per[syms[j][1] if j >= 0 else hex(a)] += c
    idle = sum(v for k, v in per.items() if k in IDLE)
    busy = sum(per.values()) - idle
    print(f"== {label}: {busy} busy kernel samples ({idle} idle left out)")
    for name, c in [(k, v) for k, v in per.most_common() if k not in IDLE][:top]:
        print(f"{c:7d} {100 * c / max(busy, 1):5.1f}%  {name}")
