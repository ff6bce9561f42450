"""What a contender is, and the helpers contenders share."""

import contextlib
import queue
import re
import threading
import time
import traceback


class Contender:
    """One way of copying the six databases, timed from a clean target (see measure.measured)."""

    name = ""
    title = ""
    description = ""

    @classmethod
    def from_args(cls, args):
        """The contender as the command line configures it."""
        return cls()

    def exclusive(self):
        """Held around a timed run (acquired before the clock starts)."""
        return contextlib.nullcontext()

    def available(self, ctx):
        return True, ""

    def version(self, ctx):
        return ""

    def disk_paths(self, ctx, run_dir):
        return []

    def run(self, ctx, run_dir, timeout):
        """Run once into the (prepared) target; return a dict with at least `rc` and `log`."""
        raise NotImplementedError


def error_lines(text):
    return [line for line in text.splitlines() if re.match(r"^\S+: error: ", line) or line.startswith("ERROR")]


def run_queue(items, concurrency, work, timeout):
    """Run work(item, remaining_seconds) for items, `concurrency` at a time, in order. Returns {item: result}."""
    todo = queue.Queue()
    for item in items:
        todo.put(item)
    results = {}
    deadline = time.monotonic() + timeout

    def worker():
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[item] = work(item, max(1, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 (reported as that item's failure)
                results[item] = {"rc": -1, "log": "harness error: %s\n%s" % (exc, traceback.format_exc())}

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def merge(results, order):
    rc = 0
    for db in order:
        code = results.get(db, {}).get("rc", -1)
        if code != 0 and rc == 0:
            rc = code
    text = "\n".join("== %s (exit %s)\n%s" % (db, results.get(db, {}).get("rc"), results.get(db, {}).get("log", ""))
                     for db in order)
    return {"rc": rc, "log": text, "error_lines": len(error_lines(text))}
