"""Every symlink git tracks works on a fresh clone anywhere: relative, inside the checkout, not dangling.

An absolute link (or one that leaves the checkout, or points at an untracked path such as build/)
works only on the machine it was made on and dangles on every other clone.
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYMLINK_MODE = "120000"


def git(*args, stdin=None):
    return subprocess.run(["git", "-C", ROOT, *args], input=stdin, capture_output=True, check=True).stdout


def tracked():
    """{path: (mode, object)} of every file in git's index, paths relative to ROOT."""
    entries = {}
    for entry in git("ls-files", "-s", "-z").split(b"\0"):
        if entry:
            meta, path = entry.split(b"\t", 1)
            mode, obj, _stage = meta.split()
            entries[path.decode()] = (mode.decode(), obj.decode())
    return entries


def link_targets(entries):
    """{path: target} of the tracked symlinks; the index holds a link's target as its blob's content."""
    links = {path: obj for path, (mode, obj) in entries.items() if mode == SYMLINK_MODE}
    out = git("cat-file", "--batch", stdin="".join(obj + "\n" for obj in links.values()).encode())
    targets = {}
    for path in links:
        header, out = out.split(b"\n", 1)
        size = int(header.split()[2])
        targets[path], out = out[:size].decode(), out[size + 1:]
    return targets


def link_problems(targets, paths):
    """A message for each link that is absolute, leaves the checkout or points at nothing among paths."""
    dirs = {parent for path in paths for parent in parents(path)}
    problems = []
    for path, target in sorted(targets.items()):
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if os.path.isabs(target):
            problems.append("%s -> %s: absolute (make it relative, or remove it)" % (path, target))
        elif resolved == ".." or resolved.startswith("../"):
            problems.append("%s -> %s: leaves the checkout" % (path, target))
        elif resolved not in paths and resolved not in dirs:
            problems.append("%s -> %s: dangles (nothing tracked at %s)" % (path, target, resolved))
    return problems


def parents(path):
    """Every directory above a path relative to the checkout, down to '.' (the checkout itself)."""
    while path not in ("", "."):
        path = os.path.dirname(path) or "."
        yield path


def test_tracked_symlinks_are_relative_and_resolve():
    entries = tracked()
    problems = link_problems(link_targets(entries), set(entries))
    assert not problems, "tracked symlinks that break on another clone:\n" + "\n".join(problems)


def test_the_check_names_each_kind_of_broken_link():
    paths = {"README.md", "plugins/modules/x.py", "a/absolute", "a/outside", "a/dangling", "a/to_file", "a/to_dir",
             "a/to_root"}
    targets = {"a/absolute": "/work/main/plugins", "a/outside": "../../elsewhere", "a/dangling": "../build/collections",
               "a/to_file": "../README.md", "a/to_dir": "../plugins", "a/to_root": ".."}
    problems = link_problems(targets, paths)
    assert [p.split(" ->")[0] for p in problems] == ["a/absolute", "a/dangling", "a/outside"], problems
    assert "a/absolute -> /work/main/plugins: absolute" in problems[0]
    assert "nothing tracked at build/collections" in problems[1]
