"""check_chapters_json.py: asserts what `pfdemo tour all --check --json` printed in the VM (read
from stdin): every chapter present, each with its steps in order and all ok (malloc 1-10,
zero-page 1-5, cow 1-6, origin 1-4, uffd 1 then 2-8 per touched page then 9). Exits non-zero,
with the offending steps, otherwise. Used by scripts/test.sh, in the build root:
python3 /src/scripts/check_chapters_json.py <chapters-FLAVOUR.json
"""
import json
import sys

steps = json.load(sys.stdin)
bad = [s for s in steps if not s["ok"]]
assert not bad, bad


def steps_of(side):
    return [s["step"] for s in steps if s["side"] == side]


expected = {
    "malloc": list(range(1, 11)),
    "zero-page": list(range(1, 6)),
    "cow": list(range(1, 7)),
    "origin": list(range(1, 5)),
}
sides = {s["side"] for s in steps}
assert sides == set(expected) | {"uffd"}, sides
for side, want in expected.items():
    assert steps_of(side) == want, (side, steps_of(side))
uffd = steps_of("uffd")
touches = uffd.count(2)
assert touches >= 1 and uffd == [1] + list(range(2, 9)) * touches + [9], uffd
print(f"chapters JSON: {len(steps)} steps, all ok")
