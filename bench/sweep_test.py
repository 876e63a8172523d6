#!/usr/bin/env python3
"""ctest check of `stoa-bench --sweep`: runs a tiny sweep and checks what it
prints and the JSON it writes.

    sweep_test.py STOA_BENCH KIND MAX [PLOT_SCRIPT]

Runs `STOA_BENCH --sweep KIND --max MAX --trials 1 --seconds 0.05 --json F`
and checks: exit 0; one `sweep KIND n=<i>: stoa <x> Mops/s lmdb <y> Mops/s
compare: <r>x` line per step i = 1..MAX; the JSON parses and holds those
steps in order, each with positive rates and CPU time per op for both
sides, a ratio equal to stoa/lmdb (and to the printed one), min <= median
<= max; no errors. With PLOT_SCRIPT, also plots the JSON and checks that
the SVG parses as XML and names both sides.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def main(argv):
    bench, kind, n_max = argv[1], argv[2], int(argv[3])
    plot = argv[4] if len(argv) > 4 else None
    with tempfile.TemporaryDirectory(prefix="stoa-sweep-test.") as tmp:
        out_json = os.path.join(tmp, "sweep.json")
        cmd = [bench, "--sweep", kind, "--max", str(n_max), "--trials", "1", "--seconds",
               "0.05", "--json", out_json, "--tmpdir", tmp]
        print("+ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300)
        sys.stdout.write(r.stdout)
        check(r.returncode == 0, f"stoa-bench exited {r.returncode}")
        line_re = re.compile(r"^sweep (\S+) n=(\d+): stoa (\S+) Mops/s lmdb (\S+) Mops/s "
                             r"compare: (\S+)x")
        lines = [m for m in map(line_re.match, r.stdout.splitlines()) if m]
        check([int(m.group(2)) for m in lines] == list(range(1, n_max + 1)),
              f"want one step line for n=1..{n_max}, got {[m.group(0) for m in lines]}")
        check(all(m.group(1) == kind for m in lines), "step lines name another sweep")

        with open(out_json) as f:
            doc = json.load(f)  # raises (test fails) on malformed JSON
        check(doc.get("errors") == [], f"errors reported: {doc.get('errors')}")
        sw = doc.get("sweep")
        check(isinstance(sw, dict), "no sweep object in the JSON")
        check(sw.get("kind") == kind and sw.get("anchor") == "lmdb", f"wrong sweep header {sw}")
        steps = sw.get("steps", [])
        check([s.get("procs") for s in steps] == list(range(1, n_max + 1)),
              f"want steps n=1..{n_max}, got {[s.get('procs') for s in steps]}")
        for s, m in zip(steps, lines):
            for side in ("stoa", "lmdb"):
                d = s[side]
                check(d["median"] > 0 and d["cpu_us_per_op"] > 0,
                      f"n={s['procs']} {side}: rate or CPU per op not positive: {d}")
                check(d["min"] <= d["median"] <= d["max"], f"{side}: min/median/max out of order")
                check(len(d["trials"]) == 1, f"{side}: want 1 trial, got {len(d['trials'])}")
            want = s["stoa"]["median"] / s["lmdb"]["median"]
            check(math.isclose(s["ratio"], want, rel_tol=1e-9), f"ratio {s['ratio']} != {want}")
            check(math.isclose(float(m.group(5)), want, rel_tol=0.01, abs_tol=0.006),
                  f"printed ratio {m.group(5)} != {want}")
            check(math.isclose(float(m.group(3)), s["stoa"]["median"] / 1e6, rel_tol=0.01),
                  f"printed stoa rate {m.group(3)} Mops/s != JSON {s['stoa']['median']}")
            want_cpu = s["lmdb"]["cpu_us_per_op"] / s["stoa"]["cpu_us_per_op"]
            check(math.isclose(s["cpu_ratio"], want_cpu, rel_tol=1e-9), "cpu_ratio wrong")

        if plot:
            svg = os.path.join(tmp, "sweep.svg")
            p = subprocess.run([sys.executable, plot, out_json, svg], timeout=60)
            check(p.returncode == 0, f"plot_sweep exited {p.returncode}")
            root = ET.parse(svg).getroot()
            check(root.tag.endswith("svg"), f"not an SVG: {root.tag}")
            text = "".join(root.itertext())
            check("Stoa" in text and "LMDB" in text, "the SVG does not name both sides")
    print("ok")


if __name__ == "__main__":
    main(sys.argv)
