"""check_tour_json.py: asserts what `pfdemo tour --check --json` printed in the VM (read from
stdin): every step on every side present and ok, the device's steps 1 to 8 (step 1 once,
steps 2 to 8 once per touched page), the anonymous side's steps 1, 4, 5 and 8, and the closing
steps 9 and 10. Exits non-zero, with the offending steps, otherwise. Used by scripts/test.sh,
in the build root: python3 /src/scripts/check_tour_json.py <tour-FLAVOUR.json
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
assert pages >= 1 and all(dev.count(n) == pages for n in range(2, 9)) and dev.count(1) == 1, dev
assert anon == [1] + sorted([4, 5, 8] * pages), anon
assert steps_of("both") == [9, 10], steps_of("both")
