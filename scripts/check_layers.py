#!/usr/bin/env python3
"""Layer check for Stoa's include graph.

Reads the layer order from scripts/layers.txt (bottom first, one layer a
line: `name: path-prefix [path-prefix...]`) and checks every C/C++ file under
src/, include/ and tools/: a file may include headers of its own layer and of
layers below it, never of a layer above. Further rules:

  - a header (or a checked file) that matches no layer is a violation
    ("unclassified");
  - public headers (include/stoa/*) may include only include/stoa/ headers;
  - tools/ may include only include/stoa/ and tools/ headers (no src/ header);
  - unit tests (src/**/*_test.cc) are checked like the code of their folder;
  - tests/, bench/ and fuzz/ are not checked; angle-bracket includes are
    system headers and ignored.

A quoted include resolves as the compiler resolves it here: the including
file's own directory first, then src/, then include/. One that resolves
nowhere is reported as unresolved.

Usage: check_layers.py [REPO_ROOT] [--layers FILE]   (REPO_ROOT defaults to
       the parent of scripts/; FILE to REPO_ROOT/scripts/layers.txt)
       check_layers.py --self-test
Exit: 0 clean, 1 violations (one line each, then a summary), 2 bad usage or
a bad layers file.
"""

import os
import re
import subprocess
import sys
import tempfile

CHECKED_ROOTS = ("src", "include", "tools")
UNCHECKED_ROOTS = ("tests", "bench", "fuzz")
SOURCE_EXTS = (".h", ".hh", ".hpp", ".hxx", ".inc", ".inl", ".c", ".cc", ".cpp", ".cxx")
SEARCH_DIRS = ("src", "include")  # after the including file's own directory
PUBLIC_PREFIX = "include/stoa/"
TOOLS_PREFIX = "tools/"

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


class LayersError(Exception):
    pass


def read_layers(path):
    """Returns [(name, [prefix, ...])] in file order, bottom first."""
    layers = []
    seen = set()
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise LayersError(f"{path}: cannot read: {e.strerror}")
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        name = name.strip()
        prefixes = rest.split()
        if not sep or not name or not prefixes or " " in name:
            raise LayersError(f"{path}:{n}: expected `name: path-prefix [path-prefix...]`")
        if name in seen:
            raise LayersError(f"{path}:{n}: layer {name} listed twice")
        seen.add(name)
        layers.append((name, prefixes))
    if not layers:
        raise LayersError(f"{path}: no layers")
    return layers


class Layering:
    def __init__(self, layers):
        self.rank = {name: i for i, (name, _) in enumerate(layers)}
        # Most specific prefix first: longest wins, wherever its layer is listed.
        self.prefixes = sorted(
            ((p, name) for name, ps in layers for p in ps), key=lambda e: -len(e[0]))

    def layer_of(self, relpath):
        for prefix, name in self.prefixes:
            if prefix.endswith("/"):
                if relpath.startswith(prefix):
                    return name
            elif relpath == prefix:
                return name
        return None


def strip_block_comments(text):
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def source_files(root):
    for top in CHECKED_ROOTS:
        base = os.path.join(root, top)
        if not os.path.isdir(base):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if fn.endswith(SOURCE_EXTS):
                    yield os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")


def resolve(root, including, spelled):
    """Repo-relative path of a quoted include, or None when it is nowhere."""
    candidates = [os.path.join(os.path.dirname(including), spelled)]
    candidates += [os.path.join(d, spelled) for d in SEARCH_DIRS]
    for c in candidates:
        c = os.path.normpath(c).replace(os.sep, "/")
        if not c.startswith("../") and os.path.isfile(os.path.join(root, c)):
            return c
    return None


def check(root, layers_path):
    layering = Layering(read_layers(layers_path))
    violations = []
    nfiles = nincludes = 0
    for rel in source_files(root):
        if rel.split("/", 1)[0] in UNCHECKED_ROOTS:
            continue
        nfiles += 1
        own = layering.layer_of(rel)
        if own is None:
            violations.append(f"{rel}:1: unclassified file: its path matches no layer "
                              f"in {os.path.relpath(layers_path, root)}")
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = strip_block_comments(f.read())
        for n, line in enumerate(text.split("\n"), 1):
            m = INCLUDE_RE.match(line)
            if not m or m.group(1) == "<":
                continue
            nincludes += 1
            spelled = m.group(2)
            if own is None:
                continue  # already reported once for the file
            hdr = resolve(root, rel, spelled)
            if hdr is None:
                violations.append(f"{rel}:{n}: {own} includes \"{spelled}\", which resolves "
                                  f"to no file under {', '.join(SEARCH_DIRS)} or beside it")
                continue
            theirs = layering.layer_of(hdr)
            if theirs is None:
                violations.append(f"{rel}:{n}: {own} includes {hdr} of unclassified layer "
                                  f"(no prefix in layers.txt matches it)")
                continue
            if rel.startswith(PUBLIC_PREFIX) and not hdr.startswith(PUBLIC_PREFIX):
                violations.append(f"{rel}:{n}: {own} includes {hdr} of layer {theirs}: a public "
                                  f"header may include only {PUBLIC_PREFIX} headers")
                continue
            if (rel.startswith(TOOLS_PREFIX)
                    and not hdr.startswith((PUBLIC_PREFIX, TOOLS_PREFIX))):
                violations.append(f"{rel}:{n}: {own} includes {hdr} of layer {theirs}: tools may "
                                  f"include only {PUBLIC_PREFIX} and {TOOLS_PREFIX} headers")
                continue
            if layering.rank[theirs] > layering.rank[own]:
                violations.append(f"{rel}:{n}: {own} includes {hdr} of higher layer {theirs}")
    return nfiles, nincludes, violations


def run(root, layers_path):
    try:
        nfiles, nincludes, violations = check(root, layers_path)
    except LayersError as e:
        print(f"layer check: {e}", file=sys.stderr)
        return 2
    for v in violations:
        print(v)
    print(f"layer check: {nfiles} files, {nincludes} includes, {len(violations)} violations")
    return 1 if violations else 0


def self_test():
    """Runs this script on a small fake tree with one upward include and one
    clean one (and the real layers.txt); it must report exactly the upward
    one and exit 1, and exit 0 once that include is gone."""
    me = os.path.abspath(__file__)
    real_layers = os.path.join(os.path.dirname(me), "layers.txt")
    failures = []
    with tempfile.TemporaryDirectory(prefix="stoa-layers-") as tmp:
        def write(rel, text):
            p = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)

        with open(real_layers, encoding="utf-8") as f:
            write("scripts/layers.txt", f.read())
        write("src/util/low.h", '#pragma once\n#include <vector>\n#include "index/high.h"\n')
        write("src/index/high.h", '#pragma once\n#include "util/low.h"\n')
        write("tests/anything_test.cc", '#include "index/high.h"\n#include "nowhere.h"\n')

        def invoke():
            p = subprocess.run([sys.executable, me, tmp], capture_output=True, text=True)
            return p.returncode, p.stdout.splitlines(), p.stderr

        rc, out, err = invoke()
        want = ["src/util/low.h:3: util includes src/index/high.h of higher layer index",
                "layer check: 2 files, 2 includes, 1 violations"]
        if rc != 1 or out != want:
            failures.append(f"upward include: rc {rc} (want 1), output {out} (want {want}) {err}")

        write("src/util/low.h", '#pragma once\n#include <vector>\n')
        rc, out, err = invoke()
        want = ["layer check: 2 files, 1 includes, 0 violations"]
        if rc != 0 or out != want:
            failures.append(f"clean tree: rc {rc} (want 0), output {out} (want {want}) {err}")

    for f in failures:
        print(f"layer check self-test: FAIL: {f}")
    if failures:
        return 1
    print("layer check self-test: ok (the upward include is reported, exactly; the clean tree "
          "passes)")
    return 0


def main(argv):
    args = argv[1:]
    if args == ["--self-test"]:
        return self_test()
    layers = None
    if "--layers" in args:
        i = args.index("--layers")
        if i + 1 >= len(args):
            print(__doc__, file=sys.stderr)
            return 2
        layers = args[i + 1]
        del args[i:i + 2]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    root = os.path.abspath(args[0] if args else
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if not os.path.isdir(root):
        print(f"layer check: {root}: not a directory", file=sys.stderr)
        return 2
    return run(root, layers or os.path.join(root, "scripts", "layers.txt"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
