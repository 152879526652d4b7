#!/usr/bin/env python3
"""profile_report.py LOG SYSTEM_MAP [TOP]: turn the kernel's profiles, printed by the guest as
base64 of gzip between "RPD-PROFILE-BEGIN <label>" and "RPD-PROFILE-END" lines of LOG (each in
/proc/profile's format: the sampling step in bytes, then one 32-bit hit count per step of the
kernel's text from _stext), into hits per kernel function, per label. Idle time is left out of
the shares. profile_report.py --self-test checks all of this on a made-up profile."""
import base64
import bisect
import collections
import gzip
import re
import struct
import sys

IDLE = {"default_idle", "pv_native_safe_halt", "native_safe_halt", "arch_cpu_idle", "do_idle",
        "default_idle_call", "cpu_idle_poll", "acpi_safe_halt", "acpi_idle_do_entry"}


def read_map(lines):
    """The text symbols of a System.map, sorted, and the address of _stext."""
    syms, stext = [], None
    for line in lines:
        addr, kind, name = line.split()[:3]
        if name == "_stext":
            stext = int(addr, 16)
        if kind in "tTwW":
            syms.append((int(addr, 16), name))
    if stext is None:
        raise SystemExit("profile_report: no _stext in the System.map")
    return sorted(syms), stext


def sections(lines):
    """(label, raw profile bytes) for each section of the console log."""
    out, cur = [], None
    for line in lines:
        line = re.sub(r"^\[ *[0-9.]+\] ", "", line.rstrip("\r\n"))
        m = re.match(r"RPD-PROFILE-BEGIN (.*)", line)
        if m:
            cur = (m.group(1), [])
        elif line.startswith("RPD-PROFILE-END") and cur:
            out.append((cur[0], gzip.decompress(base64.b64decode("".join(cur[1])))))
            cur = None
        elif cur is not None:
            cur[1].append(line.strip())
    return out


def hits_per_function(raw, syms, stext):
    """A Counter of samples per function name."""
    step = struct.unpack_from("<I", raw)[0]
    counts = struct.unpack_from("<%dI" % ((len(raw) - 4) // 4), raw, 4)
    addrs = [a for a, _ in syms]
    per = collections.Counter()
    for i, c in enumerate(counts):
        if c:
            a = stext + i * step
            j = bisect.bisect_right(addrs, a) - 1
            per[syms[j][1] if j >= 0 else hex(a)] += c
    return per


def report(label, per, top):
    idle = sum(v for k, v in per.items() if k in IDLE)
    busy = sum(per.values()) - idle
    lines = [f"== {label}: {busy} busy kernel samples ({idle} idle left out)"]
    for name, c in [(k, v) for k, v in per.most_common() if k not in IDLE][:top]:
        lines.append(f"{c:7d} {100 * c / max(busy, 1):5.1f}%  {name}")
    return lines


def self_test():
    stext = 0xFFFFFFFF81000000
    smap = [f"{stext:x} T _stext", f"{stext:x} T first", f"{stext + 0x40:x} t second",
            f"{stext + 0x80:x} T default_idle", f"{stext + 0x100:x} D data"]
    # Step 16: buckets 0-3 are `first`, 4-7 `second`, 8 and on `default_idle`.
    counts = [1, 0, 2, 0, 5, 0, 0, 1, 9, 0]
    raw = struct.pack("<%dI" % (len(counts) + 1), 16, *counts)
    log = ["[    1.000000] RPD-PROFILE-BEGIN device"]
    b64 = base64.b64encode(gzip.compress(raw)).decode()
    log += [b64[i:i + 76] for i in range(0, len(b64), 76)] + ["RPD-PROFILE-END"]
    syms, st = read_map(smap)
    (label, got), = sections(log)
    per = hits_per_function(got, syms, st)
    assert label == "device" and got == raw, (label, got)
    assert per == {"first": 3, "second": 6, "default_idle": 9}, per
    out = report(label, per, 10)
    assert out == ["== device: 9 busy kernel samples (9 idle left out)",
                   "      6  66.7%  second", "      3  33.3%  first"], out
    print("profile_report: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    log, smap = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    with open(smap) as f:
        syms, stext = read_map(f)
    with open(log, errors="replace") as f:
        found = sections(f)
    if not found:
        raise SystemExit(f"profile_report: no RPD-PROFILE section in {log}")
    for label, raw in found:
        print("\n".join(report(label, hits_per_function(raw, syms, stext), top)))


if __name__ == "__main__":
    main()
