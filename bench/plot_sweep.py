#!/usr/bin/env python3
"""Plots a `stoa-bench --sweep ... --json FILE` result as an SVG with gnuplot.

    bench/plot_sweep.py sweep-readers.json [out.svg]

The figure is throughput (the median over the trials, with min..max bars)
against the number of processes, Stoa beside its anchor, and the ratio
Stoa / anchor on the right axis. The output defaults to the input with .svg.
Needs gnuplot (Debian: gnuplot-nox, an optional dependency in
scripts/install-deps.sh); exits 2 when it is missing or the JSON holds no
sweep, 1 when gnuplot fails.
"""
import json
import os
import shutil
import subprocess
import sys


def fail(code, msg):
    print(f"plot_sweep: {msg}", file=sys.stderr)
    sys.exit(code)


def gp_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        fail(2, "usage: plot_sweep.py SWEEP.json [OUT.svg]")
    src = argv[1]
    out = argv[2] if len(argv) == 3 else os.path.splitext(src)[0] + ".svg"
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        fail(2, "gnuplot not found (Debian: apt-get install gnuplot-nox)")
    try:
        with open(src) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(2, f"cannot read {src}: {e}")
    sweep = doc.get("sweep")
    if not sweep or not sweep.get("steps"):
        fail(2, f"{src} holds no sweep (run stoa-bench --sweep readers|writers --json FILE)")
    anchor = sweep["anchor"]
    steps = sweep["steps"]
    top = max(max(s["stoa"]["max"], s[anchor]["max"]) for s in steps)
    scale, prefix = (1e6, "M") if top >= 1e6 else (1e3, "k") if top >= 1e3 else (1, "")

    rows = []
    for s in steps:
        st, an = s["stoa"], s[anchor]
        rows.append(
            "%d %.6g %.6g %.6g %.6g %.6g %.6g %.6g"
            % (s["procs"], st["median"] / scale, st["min"] / scale, st["max"] / scale,
               an["median"] / scale, an["min"] / scale, an["max"] / scale, s["ratio"]))
    n_max = max(s["procs"] for s in steps)
    trials = len(steps[0]["stoa"]["trials"])
    title = "stoa-bench --sweep %s: %s\\n%d CPUs, %d trials of %.2g s per step" % (
        sweep["kind"], sweep["workload"], doc.get("cpus", 0), trials,
        doc.get("trial_seconds", 0))
    script = "\n".join([
        "set terminal svg size 720,440 dynamic enhanced font 'sans,12' background rgb 'white'",
        "set output " + gp_quote(out),
        "set encoding utf8",
        "$data << EOD",
        *rows,
        "EOD",
        "set title " + gp_quote(title),
        "set xlabel 'processes'",
        "set ylabel " + gp_quote("%s%s (summed over the processes)" % (prefix, sweep["unit"])),
        "set y2label " + gp_quote("Stoa / %s" % anchor),
        "set xrange [0.5:%g]" % (n_max + 0.5),
        "set xtics 1",
        "set yrange [0:*]",
        "set y2range [0:*]",
        "set ytics nomirror",
        "set y2tics",
        "set grid",
        "set key top left",
        "plot $data using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb '#1f77b4' title 'Stoa', "
        "$data using 1:5:6:7 with yerrorlines lw 2 pt 5 lc rgb '#d62728' title " +
        gp_quote(anchor.upper()) + ", "
        "$data using 1:8 axes x1y2 with linespoints dt 2 pt 1 lc rgb '#555555' "
        "title 'ratio (right axis)'",
        "",
    ])
    r = subprocess.run([gnuplot], input=script, text=True)
    if r.returncode != 0:
        fail(1, f"gnuplot failed (exit {r.returncode})")
    print(out)


if __name__ == "__main__":
    main(sys.argv)
