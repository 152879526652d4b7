#!/usr/bin/env python3
"""kunit_first_load.py PREFIX < LOG: the KTAP of the first module load whose suites are named
PREFIX*, from a guest console log (printk timestamps already stripped), as a document that
the kernel's kunit.py can parse.

A module's load prints one KTAP document: 'KTAP version 1', a plan '1..N', then its N
suites, each an indented subtest ending in a top-level 'ok K name' or 'not ok K name'.
Only the part of the log after RPD-DMESG-BEGIN (the kernel log) is read. Prints nothing
when no such load is found.
"""
import sys


def first_load(lines, prefix):
    for i in range(len(lines) - 3):
        if (lines[i] == "KTAP version 1" and lines[i + 1].startswith("1..")
                and lines[i + 2] == "    KTAP version 1"
                and lines[i + 3].startswith("    # Subtest: " + prefix)):
            suites = int(lines[i + 1][3:])
            out, done = [], 0
            for line in lines[i:]:
                out.append(line)
                words = line.split()
                if (line.startswith(("ok ", "not ok ")) and words[-1].startswith(prefix)):
                    done += 1
                    if done == suites:
                        return out
            return out
    return []


def main():
    prefix = sys.argv[1]
    lines = [line.rstrip("\n") for line in sys.stdin]
    if "RPD-DMESG-BEGIN" in lines:
        lines = lines[lines.index("RPD-DMESG-BEGIN") + 1:]
    print("\n".join(first_load(lines, prefix)))


if __name__ == "__main__":
    main()
