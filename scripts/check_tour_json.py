"""check_tour_json.py: asserts what `pfdemo tour --check --json` printed in the VM (read from
stdin): every step on every side present and ok; the device's steps 1 to 8 (step 1 once,
steps 2 to 8 once per touched page, steps 3, 4, 7 and 8 once more with the page-table walk,
step 7 a third time with prefault's neighbours); the anonymous side's steps 1, 4, 5 and 8 and
its walk at 3, 4, 7 and 8; the closing steps 9, 10 and 11. The walk steps carry their walks:
before the store ending at an empty entry, after it at a leaf; step 11 the parent's, a
forked child's (no table in common) and a thread's (the parent's tables). Step 5 of each side
carries the CPU's record of the store's fault from tracefs: exactly one page_fault_user, at
the page the walks before it were of, with the error code of a user-mode write to a page
with no translation (0x6: not-present|write|user). Exits non-zero, with
the offending steps, otherwise. Used by scripts/test.sh, in the build root:
python3 /src/scripts/check_tour_json.py <tour-FLAVOUR.json
"""
import json
import sys

steps = json.load(sys.stdin)
sides = {s["side"] for s in steps}
assert sides == {"device", "anon", "both"}, sides
assert all(s["ok"] for s in steps), [s for s in steps if not s["ok"]]


def steps_of(side):
    return sorted(s["step"] for s in steps if s["side"] == side)


dev, anon = steps_of("device"), steps_of("anon")
assert set(dev) == set(range(1, 9)), dev
pages = dev.count(2)
assert pages >= 1 and dev.count(1) == 1, dev
assert all(dev.count(n) == pages for n in (2, 5, 6)), dev
assert all(dev.count(n) == 2 * pages for n in (3, 4, 8)), dev
assert dev.count(7) in (2 * pages, 3 * pages), dev
assert anon == [1] + sorted([3, 4, 4, 5, 7, 8, 8] * pages), anon
assert steps_of("both") == [9, 10, 11], steps_of("both")

for s in steps:
    for label, walk in s.get("walks", {}).items():
        assert walk["levels"] and not walk["pfns_hidden"], (s["title"], label, walk)
        if label == "before":
            assert walk["end"] == "empty" and walk["frame_pfn"] is None, (s["title"], walk)
        if label == "after":
            assert walk["end"] in ("leaf", "huge-pmd") and walk["frame_pfn"], (s["title"], walk)
for side in ("device", "anon"):
    with_walks = sorted(s["step"] for s in steps if s["side"] == side and s.get("walks"))
    assert with_walks == sorted([3, 4, 7, 8] * pages), (side, "walk steps", with_walks)
own = next(s for s in steps if s["step"] == 11)["walks"]
tables = {k: [l["table_pfn"] for l in w["levels"]] for k, w in own.items()}
assert set(tables) == {"parent", "child", "thread"}, tables
assert all(c != p for c, p in zip(tables["child"], tables["parent"])), tables
assert tables["thread"] == tables["parent"], tables
assert own["child"]["frame_pfn"] == own["parent"]["frame_pfn"] is not None, own

# Step 5: the CPU's own record of each store's fault (tracefs), at the page the step's walks
# before the store were of.
last_walked = None
for s in steps:
    before = s.get("walks", {}).get("before")
    if before:
        last_walked = before["address"]
    if s["step"] != 5:
        continue
    faults = s.get("cpu_faults")
    assert faults is not None, ("step 5 without the CPU's record", s.get("cpu_faults_unavailable"), s)
    assert len(faults) == 1, ("step 5: not one CPU fault record", s)
    f = faults[0]
    assert f["error_code"] & 0x7 == 0x6 and f["error"] == "not-present|write|user", ("step 5", f)
    assert last_walked is not None and f["address"] & ~0xFFF == last_walked, ("step 5 address", f, last_walked)
