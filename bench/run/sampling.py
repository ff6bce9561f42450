"""/proc sampling: what the client processes, both servers and the machine use during a run, and what
the machine is."""

import os
import platform
import re
import resource
import shutil
import threading
import time

from bench.run.common import MB, read
from bench.run.processes import descendants, reap_orphans, read_procs

INTERVAL = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def server_ticks(procs, postmaster):
    """CPU ticks of a PostgreSQL server: postmaster, its reaped children, and its live children."""
    if postmaster not in procs:
        return 0
    total = procs[postmaster][2] + procs[postmaster][3]
    total += sum(info[2] for info in procs.values() if info[0] == postmaster)
    return total


def machine_counters(device):
    with open("/proc/stat") as handle:
        cpu = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + (cpu[7] if len(cpu) > 7 else 0)
    read = written = 0
    if device:
        with open("/proc/diskstats") as handle:
            for line in handle:
                parts = line.split()
                if parts[2] == device:
                    read, written = int(parts[5]) * 512, int(parts[9]) * 512
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"busy": busy / CLK_TCK, "iowait": cpu[4] / CLK_TCK, "idle": cpu[3] / CLK_TCK, "read": read,
            "written": written, "children_cpu": usage.ru_utime + usage.ru_stime,
            "harness_cpu": own.ru_utime + own.ru_stime}


def path_bytes(path):
    try:
        if os.path.isdir(path):
            total = 0
            for root, _, files in os.walk(path):
                for name in files:
                    try:
                        total += os.path.getsize(os.path.join(root, name))
                    except OSError:
                        pass
            return total
        return os.path.getsize(path)
    except OSError:
        return 0


def program_name(pid, comm):
    """What a client process is, for CPU by program: ansible-playbook (and its forked workers), the
    Python processes by the Ansible module they run (`python: codacy_db_migrate`, `python:
    async_wrapper`), other programs by their name."""
    if comm.startswith("ansible-playbo"):
        return "ansible-playbook"
    if not comm.startswith("python"):
        return comm
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        argv = []
    for arg in argv[1:3]:
        found = re.search(r"(?:AnsiballZ_)?([A-Za-z0-9_]+)\.py$", arg.decode("utf-8", "replace"))
        if found:
            return "python: %s" % found.group(1)
    return "python: other"


class Sampler(threading.Thread):
    """Every INTERVAL seconds: dump disk, RSS and CPU of the client processes (our descendants other
    than PostgreSQL servers), CPU of both servers; keeps peaks, per-program activity and a 1 s timeline."""

    def __init__(self, disk_paths, postmasters, device):
        super().__init__(daemon=True)
        self.disk_paths = disk_paths
        self.postmasters = postmasters
        self.device = device
        self.me = os.getpid()
        self._stop_event = threading.Event()
        self.peak_disk = 0
        self.peak_rss = 0
        self.cpu_by_pid = {}
        self.active = {}
        self.overlap = 0.0
        self.timeline = []
        self._count = 0

    def _sample(self):
        now = time.monotonic()
        procs = read_procs()
        reap_orphans(procs)
        clients = [pid for pid in descendants(procs, self.me) if procs[pid][1] != "postgres"]
        rss = sum(procs[pid][4] for pid in clients) * PAGE
        comms = set()
        for pid in clients:
            comm, ticks = procs[pid][1], procs[pid][2]
            comms.add(comm)
            known = self.cpu_by_pid.get(pid)
            name = known[0] if known else program_name(pid, comm)
            self.cpu_by_pid[pid] = (name, max(ticks, known[1] if known else 0))
        disk = sum(path_bytes(p) for p in self.disk_paths)
        self.peak_disk = max(self.peak_disk, disk)
        self.peak_rss = max(self.peak_rss, rss)
        servers = {role: server_ticks(procs, pid) / CLK_TCK for role, pid in self.postmasters.items()}
        client_cpu = sum(t for _, t in self.cpu_by_pid.values()) / CLK_TCK
        if self._last is not None:
            elapsed = now - self._last["now"]
            for comm in comms:
                self.active[comm] = self.active.get(comm, 0.0) + elapsed
            if "pg_dump" in comms and "pg_restore" in comms:
                self.overlap += elapsed
        self._count += 1
        if self._last is None or self._count % int(round(1 / INTERVAL)) == 0 or self._stop_event.is_set():
            previous = self._tick or {"now": self.started, "servers": self.start_servers, "client_cpu": 0.0}
            span = max(now - previous["now"], 1e-6)
            self.timeline.append({
                "t": round(now - self.started, 1), "dump_mb": round(disk / MB, 1), "rss_mb": round(rss / MB, 1),
                "client_cores": round((client_cpu - previous["client_cpu"]) / span, 2),
                "source_cores": round((servers.get("source", 0) - previous["servers"].get("source", 0)) / span, 2),
                "target_cores": round((servers.get("target", 0) - previous["servers"].get("target", 0)) / span, 2),
                "programs": sorted(comms)})
            self._tick = {"now": now, "servers": servers, "client_cpu": client_cpu}
        self._last = {"now": now, "servers": servers}

    def begin(self):
        self.started = time.monotonic()
        procs = read_procs()
        self.start_servers = {role: server_ticks(procs, pid) / CLK_TCK for role, pid in self.postmasters.items()}
        self.start_machine = machine_counters(self.device)
        self._last = None
        self._tick = None
        self.start()

    def run(self):
        while not self._stop_event.wait(INTERVAL):
            self._sample()

    def end(self):
        self._stop_event.set()
        self.join()
        self._sample()
        machine = machine_counters(self.device)
        servers = self._last["servers"]
        start = self.start_machine
        by_program = {}
        for name, ticks in self.cpu_by_pid.values():
            by_program[name] = by_program.get(name, 0.0) + ticks / CLK_TCK
        client_cpu = machine["children_cpu"] - start["children_cpu"]
        source_cpu = servers.get("source", 0) - self.start_servers.get("source", 0)
        target_cpu = servers.get("target", 0) - self.start_servers.get("target", 0)
        busy = machine["busy"] - start["busy"]
        harness = machine["harness_cpu"] - start["harness_cpu"]
        return {
            "peak_dump_bytes": self.peak_disk, "peak_rss_bytes": self.peak_rss,
            "client_cpu_s": round(client_cpu, 2), "source_cpu_s": round(source_cpu, 2),
            "target_cpu_s": round(target_cpu, 2), "harness_cpu_s": round(harness, 2),
            "machine_busy_s": round(busy, 2), "iowait_s": round(machine["iowait"] - start["iowait"], 2),
            "other_cpu_s": round(max(0.0, busy - client_cpu - source_cpu - target_cpu - harness), 2),
            "disk_read_bytes": machine["read"] - start["read"], "disk_written_bytes": machine["written"] - start["written"],
            "cpu_by_program_s": {k: round(v, 2) for k, v in sorted(by_program.items())},
            "active_s": {k: round(v, 1) for k, v in sorted(self.active.items())},
            "dump_restore_overlap_s": round(self.overlap, 1),
            "timeline": self.timeline,
        }


def block_device(path):
    """The /proc/diskstats name of the block device holding path (a partition's disk), or None."""
    try:
        dev = os.stat(path).st_dev
        link = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(dev), os.minor(dev)))
        name = os.path.basename(link)
        return name if os.path.exists("/sys/block/%s" % name) or os.path.exists(link) else None
    except OSError:
        return None


def machine_description(path):
    info = {"kernel": platform.release(), "python": platform.python_version()}
    cpuinfo = read("/proc/cpuinfo")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    info["cpu_model"] = match.group(1).strip() if match else platform.processor() or "?"
    info["cpus"] = os.cpu_count()
    info["cpus_usable"] = len(os.sched_getaffinity(0))
    match = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
    info["ram_gb"] = round(int(match.group(1)) / 1024 / 1024, 1) if match else None
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)', read("/etc/os-release"), re.M)
    info["os"] = match.group(1) if match else "?"
    device = block_device(path)
    disk = {"device": device}
    if device:
        base = "/sys/block/%s" % device
        size = read(base + "/size").strip()
        disk["size_gb"] = round(int(size) * 512 / 1e9) if size.isdigit() else None
        disk["rotational"] = read(base + "/queue/rotational").strip() == "1"
        disk["model"] = (read(base + "/device/model").strip() or read(base + "/device/vendor").strip() or None)
    best = ""
    for line in read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) > 2 and os.path.abspath(path).startswith(parts[1]) and len(parts[1]) >= len(best):
            best, disk["filesystem"], disk["mount"] = parts[1], parts[2], parts[1]
    usage = shutil.disk_usage(path)
    disk["free_gb"] = round(usage.free / 1e9)
    info["disk"] = disk
    return info
