#!/usr/bin/env python3
"""pgvigil load benchmark: the pgbench matrix and its report.

    loadbench.py run ENV_JSON      run the matrix described by ENV_JSON (written by
                                   run.sh), write OUT/raw.json as it goes
    loadbench.py report RAW_JSON   medians, ratios, target checks: print the table,
                                   write results.json and chart.svg next to RAW_JSON

Standard library only.
"""

import datetime
import glob
import json
import math
import os
import shutil
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

TARGET_ORDER = ["direct", "pgbouncer", "pgvigil", "pgvigil_off"]
SHORT = {"direct": "direct", "pgbouncer": "pgbouncer", "pgvigil": "pgvigil", "pgvigil_off": "pgv-off"}
COLORS = {"direct": "#4c72b0", "pgbouncer": "#dd8452", "pgvigil": "#55a868", "pgvigil_off": "#8fd19e"}
WORKLOAD_FLAGS = {"select-only": ["-S"], "tpcb-like": []}
# A page of a list, as ORMs fetch it: one SELECT of LIST_ROWS consecutive
# rows. Per-row forwarding costs show here and not in -S's single row.
LIST_WORKLOAD = "list-100"
LIST_ROWS = 100
WORKLOAD_TITLES = {
    "select-only": "-S (select-only)",
    "tpcb-like": "TPC-B-like (default script)",
    LIST_WORKLOAD: f"list page: SELECT of {LIST_ROWS} consecutive pgbench_accounts rows (custom script)",
}
# Many connected, mostly idle clients at a fixed transaction rate: what a client
# costs while it sits there, and whether latency grows with the number connected.
MANY_CLIENTS = "many-clients"
WORKLOAD_TITLES[MANY_CLIENTS] = "many clients at a fixed rate (pgbench -S -R)"
LOG_LINES_TARGET = 200_000  # per run, across both pgbench threads, at most about this many


# --------------------------------------------------------------------------- helpers


def read_status(pid):
    """VmRSS and VmHWM of a process in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for key in ("VmRSS", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        out[key] = int(m.group(1)) if m else None
    return out


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(pidfile):
    """CPU time of a PostgreSQL cluster: the postmaster, its live children (backends,
    walwriter, ...) and the children it has reaped, whose time the kernel adds to its
    cutime/cstime; so a difference over a run counts backends that came and went."""
    try:
        with open(pidfile) as f:
            pm = int(f.readline())
    except (OSError, ValueError):
        return None
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == pm:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == pm:
            total += int(fields[11]) + int(fields[12])
    return total / tck


def machine_ticks():
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """VmRSS of a process, sampled every 0.2 s while a run lasts: the largest, and
    the median of the last third of the run (steady state: every client connected)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stop = pid, 0, threading.Event()
        self.samples = []

    def run(self):
        while not self.stop.is_set():
            st = read_status(self.pid)
            if st and st["VmRSS"]:
                self.peak_kib = max(self.peak_kib, st["VmRSS"])
                self.samples.append(st["VmRSS"])
            self.stop.wait(0.2)

    def steady_kib(self):
        tail = self.samples[len(self.samples) * 2 // 3:]
        return statistics.median(tail) if tail else None


def http_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read().decode())
    except Exception as e:  # noqa: BLE001 - reported, never fatal
        return {"error": str(e)}


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def parse_pgbench(text):
    def num(pattern, cast=float):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else None

    return {
        "tps": num(r"^tps = ([\d.]+)"),
        "latency_avg_ms": num(r"^latency average = ([\d.]+) ms"),
        "latency_stddev_ms": num(r"^latency stddev = ([\d.]+) ms"),
        "connect_ms": num(r"^initial connection time = ([\d.]+) ms"),
        "transactions": num(r"^number of transactions actually processed: (\d+)", int),
        "failed": num(r"^number of failed transactions: (\d+)", int),
    }


def read_latency_logs(prefix):
    """Per-transaction latencies (ms) from pgbench --log files; the files are removed."""
    lat, failed = [], 0
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                if parts[2] in ("failed", "skipped"):
                    failed += 1
                    continue
                try:
                    lat.append(int(parts[2]) / 1000.0)
                except ValueError:
                    pass
        if os.environ.get("KEEP_PGBENCH_LOGS"):
            shutil.move(path, os.environ["KEEP_PGBENCH_LOGS"])
        else:
            os.remove(path)
    lat.sort()
    return lat, failed


# --------------------------------------------------------------------------- run


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M)
            mem = f"{int(m.group(1)) / 1048576:.1f} GiB" if m else mem
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def git_commit(root):
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return "?"


def workloads(env):
    default = "select-only,tpcb-like" if env.get("tpcb", 1) else "select-only"
    return [w for w in env.get("workloads", default).split(",") if w]


def build_cells(env):
    modes = [m for m in env["modes"].split(",") if m]
    clients = [int(c) for c in str(env["clients"]).split(",") if c]
    chosen = workloads(env)
    cells = []
    if "select-only" in chosen:
        cells += [{"workload": "select-only", "mode": m, "clients": c} for m in modes for c in clients]
    for w in ("tpcb-like", LIST_WORKLOAD):
        if w in chosen:
            cells += [{"workload": w, "mode": m, "clients": 32} for m in modes]
    if MANY_CLIENTS in chosen:
        # Repeated like every other cell (--reps): a p99 of a third of a
        # millisecond moves by a third between two runs on a shared machine.
        cells += [{"workload": MANY_CLIENTS, "mode": "simple", "clients": int(n), "rate": env["rate"]}
                  for n in str(env["many_clients"]).split(",") if n]
    return cells


def list_script(env):
    """The list workload's pgbench script, written next to the run's other files."""
    path = os.path.join(env["tmp"], "list.sql")
    if not os.path.exists(path):
        with open(path, "w") as f:
            # pgbench sets :scale for its own scripts only.
            f.write(f"\\set aid random(1, {100000 * env['scale'] - LIST_ROWS})\n"
                    f"SELECT aid, bid, abalance, filler FROM pgbench_accounts "
                    f"WHERE aid BETWEEN :aid AND :aid + {LIST_ROWS - 1};\n")
    return path


def workload_flags(env, workload):
    if workload == LIST_WORKLOAD:
        return ["-f", list_script(env)]
    if workload == MANY_CLIENTS:
        return ["-S"]
    return WORKLOAD_FLAGS[workload]


def run_seconds(env, cell):
    """pgbench -T: the many-clients runs also leave time for every client to log in
    (SCRAM, one after another per pgbench thread), which -T counts."""
    if cell["workload"] == MANY_CLIENTS:
        return env["duration"] + math.ceil(cell["clients"] / 100)
    return env["duration"]


def skip_reason(env, target, cell):
    if cell["workload"] == MANY_CLIENTS and target["name"] == "direct":
        return "not a pooler: many-clients compares the poolers"
    # Leave room for superuser_reserved_connections (3) and a few spare.
    if target["name"] == "direct" and cell["clients"] > env["pg_max_connections"] - 8:
        return f"more clients than max_connections={env['pg_max_connections']}"
    if target["name"] != "direct" and cell["clients"] > env["max_client_conn"]:
        return f"more clients than max_client_conn={env['max_client_conn']}"
    return None


def reset_tpcb(env):
    """Same starting state for every TPC-B-like run (pgbench itself runs with -n)."""
    base = ["psql", "-X", "-q", "-h", env["pg_socket_dir"], "-p", str(env["targets"][0]["port"]),
            "-U", "postgres", "-d", "appdb"]
    subprocess.run(base + ["-c", "VACUUM pgbench_branches", "-c", "VACUUM pgbench_tellers",
                           "-c", "TRUNCATE pgbench_history"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pgbench_env(env):
    """pgbench's environment: with --tls, every target is reached over TLS, direct included."""
    extra = {"PGSSLMODE": "require"} if env.get("tls") else {}
    return dict(os.environ, PGPASSWORD="secret", **extra)


def run_one(env, target, cell, rep, logdir, sampling_rate):
    prefix = os.path.join(logdir, f"{target['name']}-{cell['mode']}-{cell['clients']}-{rep}")
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(target["port"]), "-U", "app", "-n",
           *workload_flags(env, cell["workload"]), "-M", cell["mode"],
           "-c", str(cell["clients"]), "-j", str(env["threads"]), "-T", str(run_seconds(env, cell)),
           "--log", f"--log-prefix={prefix}", f"--sampling-rate={sampling_rate}", "appdb"]
    if cell.get("rate"):
        cmd[-1:-1] = ["-R", str(cell["rate"])]
    if cell["workload"] == "tpcb-like":
        reset_tpcb(env)
    rss_pid = target.get("pid") or target.get("cpu_pid")
    sampler = RssSampler(rss_pid) if rss_pid else None
    if sampler:
        sampler.start()
    cpu_pid = target.get("pid") or target.get("cpu_pid")
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else None
    pg_before = postgres_cpu_seconds(env["pg_pidfile"]) if env.get("pg_pidfile") else None
    machine_before = machine_ticks()
    # pgbench is the only child waited for until the run ends.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    timeout = run_seconds(env, cell) * 3 + 180
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=pgbench_env(env))
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stdout or ""
        if isinstance(partial, bytes):
            partial = partial.decode(errors="replace")
        rc, out, err = "timeout", partial, f"pgbench did not finish within {timeout} s"
    elapsed = time.time() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_after = postgres_cpu_seconds(env["pg_pidfile"]) if pg_before is not None else None
    machine_after = machine_ticks()
    if sampler:
        sampler.stop.set()
        sampler.join()
    res = parse_pgbench(out)
    cpu_after = cpu_seconds(cpu_pid) if cpu_before is not None else None
    if cpu_after is not None and res.get("transactions"):
        # Pooler CPU per transaction: steadier than TPS on a shared machine, and it
        # includes connection setup, which is small against a 5-10 s run.
        res["pooler_cpu_us_per_tx"] = round((cpu_after - cpu_before) * 1e6 / res["transactions"], 2)
    # Where the rest of the machine went: at saturation TPS follows the CPU all three
    # (load generator, database, pooler) spend on a transaction, not the pooler's alone.
    if res.get("transactions"):
        pgbench_s = sum(getattr(children_after, k) - getattr(children_before, k)
                        for k in ("ru_utime", "ru_stime"))
        res["pgbench_cpu_us_per_tx"] = round(pgbench_s * 1e6 / res["transactions"], 2)
        if pg_after is not None:
            res["postgres_cpu_us_per_tx"] = round((pg_after - pg_before) * 1e6 / res["transactions"], 2)
    busy = machine_after[0] - machine_before[0]
    ticks = machine_after[1] - machine_before[1]
    if ticks > 0:
        res["machine_busy"] = round(busy / ticks, 3)
    lat, log_failed = read_latency_logs(prefix)
    res.update({
        "rc": rc,
        "elapsed_s": round(elapsed, 2),
        "log_samples": len(lat),
        "log_failed": log_failed,
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "latency_max_ms": lat[-1] if lat else None,
        "sampling_rate": sampling_rate,
    })
    aborted = rc != 0 or "aborted" in err or "aborted" in out
    res["status"] = "ok" if not aborted and res["tps"] is not None else "aborts"
    errors = [l for l in err.splitlines() if l.strip()]
    if errors:
        res["stderr"] = errors[:5] + ([f"... {len(errors) - 5} more lines"] if len(errors) > 5 else [])
    if sampler:
        res["rss_peak_kib"] = sampler.peak_kib
        res["rss_steady_kib"] = sampler.steady_kib()
        st = read_status(rss_pid)
        res["vmhwm_kib"] = st["VmHWM"] if st else None
        res["process_alive"] = st is not None
    return res


def cmd_run(env_path):
    with open(env_path) as f:
        env = json.load(f)
    out = env["out"]
    os.makedirs(out, exist_ok=True)
    logdir = os.path.join(env["tmp"], "pgbench-logs")
    os.makedirs(logdir, exist_ok=True)
    targets = env["targets"]
    cells = build_cells(env)
    tls = bool(env.get("tls"))
    # What run.sh --tls sets on both poolers (one throwaway certificate for every endpoint).
    tls_server = {"client_tls_sslmode": "require", "server_tls_sslmode": "require"} if tls else {}
    pg_version = subprocess.run(
        ["psql", "-X", "-At", "-h", env["pg_socket_dir"], "-p", str(targets[0]["port"]),
         "-U", "postgres", "-d", "postgres", "-c", "SHOW server_version"],
        capture_output=True, text=True).stdout.strip()
    raw = {
        "meta": {
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": env.get("command", "benches/load/run.sh"),
            "machine": machine_info(),
            "pgvigil_commit": git_commit(env["root"]),
            "postgresql": pg_version,
            "pgbouncer": env["pgbouncer_version"],
            "pgbench": subprocess.run(["pgbench", "--version"], capture_output=True,
                                      text=True).stdout.strip(),
            "duration_s": env["duration"],
            "reps": env["reps"],
            "threads": env["threads"],
            "scale": env["scale"],
            "pool_size": env["pool_size"],
            "upstream": env.get("upstream", "tcp"),
            "tls": tls,
            "max_client_conn": env["max_client_conn"],
            "postgresql_settings": {
                "max_connections": env["pg_max_connections"], "shared_buffers": "128MB",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "auth": "scram-sha-256 over 127.0.0.1",
                **({"ssl": "on (throwaway CA, ECDSA P-256 certificate)"} if tls else {})},
            "pgbouncer_settings": {"pool_mode": "transaction", "default_pool_size": env["pool_size"],
                                   "max_client_conn": env["max_client_conn"],
                                   "auth_type": "scram-sha-256 (plain password in userlist)",
                                   **tls_server},
            "pgvigil_settings": {"pool_mode": "transaction", "pool_size": env["pool_size"],
                                 "max_client_conn": env["max_client_conn"],
                                 "client_auth": "scram-sha-256",
                                 "fingerprints_prefilled": env["fill_fingerprints"],
                                 **tls_server},
            "targets": [{k: t[k] for k in ("name", "label")} for t in targets],
        },
        "cells": [],
    }

    def save():
        with open(os.path.join(out, "raw.json"), "w") as f:
            json.dump(raw, f, indent=1)

    for t in targets:
        if t["name"] == "pgbouncer":
            try:
                with open(env["pgbouncer_pidfile"]) as f:
                    t["cpu_pid"] = int(f.read().strip())
            except (OSError, ValueError):
                pass

    # Warm-up: every target, a few seconds, so caches and pools are in place.
    print("warm-up: 3 s of pgbench -S with 8 clients on every target", flush=True)
    for t in targets:
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(t["port"]), "-U", "app", "-n", "-S",
                        "-c", "8", "-j", "2", "-T", "3", "appdb"], capture_output=True,
                       env=pgbench_env(env))

    total = sum(c.get("reps", env["reps"]) for c in cells) * len(targets)
    n = 0
    for cell in cells:
        entry = dict(cell, runs={t["name"]: [] for t in targets}, skipped={})
        raw["cells"].append(entry)
        # Bounded log volume: about LOG_LINES_TARGET lines for a run at 40k tps.
        rate = min(1.0, LOG_LINES_TARGET / (40_000 * env["duration"]))
        rate = float(f"{rate:.3g}")
        if cell.get("rate"):
            rate = 1.0  # a fixed rate: every transaction's latency is kept
        for rep in range(cell.get("reps", env["reps"])):
            for t in targets:  # interleaved: A B C D A B C D ...
                n += 1
                tag = f"[{n}/{total}] {cell['workload']} -M {cell['mode']} -c {cell['clients']} " \
                      f"rep {rep + 1} {t['name']}"
                why = skip_reason(env, t, cell)
                if why:
                    entry["skipped"][t["name"]] = why
                    print(f"{tag}: skipped ({why})", flush=True)
                    continue
                prev = entry["runs"][t["name"]]
                if prev and prev[-1]["status"] == "aborts":
                    print(f"{tag}: not repeated (aborted in rep {len(prev)})", flush=True)
                    continue
                if t.get("pid") and not alive(t["pid"]):
                    entry["runs"][t["name"]].append({"status": "process gone", "tps": None})
                    print(f"{tag}: the process is gone", flush=True)
                    continue
                r = run_one(env, t, cell, rep, logdir, rate)
                entry["runs"][t["name"]].append(r)
                p99 = r["latency_p99_ms"]
                extra = f", rss {r['rss_peak_kib'] / 1024:.0f} MB" if r.get("rss_peak_kib") else ""
                if r["status"] == "ok":
                    print(f"{tag}: {r['tps']:.0f} tps, avg {r['latency_avg_ms']} ms, "
                          f"p99 {p99 if p99 is None else round(p99, 3)} ms{extra}", flush=True)
                else:
                    print(f"{tag}: ABORTS (rc {r['rc']}) {' | '.join(r.get('stderr', [])[:2])}",
                          flush=True)
                save()

    final = {}
    for t in targets:
        info = {}
        pid = t.get("pid")
        if t["name"] == "pgbouncer":
            try:
                with open(env["pgbouncer_pidfile"]) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pid = None
        if pid:
            st = read_status(pid)
            info["alive"] = st is not None
            if st:
                info["vmhwm_kib"], info["vmrss_kib"] = st["VmHWM"], st["VmRSS"]
        if t.get("admin"):
            ins = http_json(t["admin"], "/api/insight")
            if "fingerprints" in ins:
                info["fingerprints"] = ins["fingerprints"]
                info["fingerprint_evictions"] = ins.get("fingerprint_evictions")
            else:
                info["insight"] = ins
        final[t["name"]] = info
    raw["final"] = final
    raw["meta"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    raw["meta"]["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()


# --------------------------------------------------------------------------- report


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_ratio(runs, a, b):
    """TPS of `a` over `b` run by run, and their median. The targets run interleaved,
    so run i of each saw the same minute of a shared machine; the ratio of two medians
    can pair a good minute with a bad one, which at 1,000 clients moves it by 10%."""
    ra, rb = runs.get(a, []), runs.get(b, [])
    per_run = [round(x["tps"] / y["tps"], 3) for x, y in zip(ra, rb)
               if x.get("status") == "ok" and y.get("status") == "ok" and x.get("tps") and y.get("tps")]
    return {"median": med(per_run), "runs": per_run} if per_run else None


def summarize(raw):
    cells = []
    for c in raw["cells"]:
        s = {k: c[k] for k in ("workload", "mode", "clients", "rate") if k in c}
        s["targets"] = {}
        for name in TARGET_ORDER:
            runs = c["runs"].get(name, [])
            if name in c["skipped"]:
                s["targets"][name] = {"status": "skipped", "reason": c["skipped"][name]}
                continue
            if not runs:
                continue
            ok = [r for r in runs if r["status"] == "ok"]
            t = {"runs": len(runs), "tps_runs": [r.get("tps") for r in runs],
                 "latency_avg_runs": [r.get("latency_avg_ms") for r in runs],
                 "latency_p99_runs": [r.get("latency_p99_ms") for r in runs]}
            if len(ok) < len(runs):
                bad = [r for r in runs if r["status"] != "ok"][0]
                t.update(status="aborts", detail=bad.get("stderr", [bad["status"]])[:3])
            else:
                t["status"] = "ok"
            if ok and t["status"] == "ok":
                t.update(
                    tps=med([r["tps"] for r in ok]),
                    latency_avg_ms=med([r["latency_avg_ms"] for r in ok]),
                    latency_p99_ms=med([r["latency_p99_ms"] for r in ok]),
                    connect_ms=med([r["connect_ms"] for r in ok]),
                    pooler_cpu_us_per_tx=med([r.get("pooler_cpu_us_per_tx") for r in ok]),
                    pgbench_cpu_us_per_tx=med([r.get("pgbench_cpu_us_per_tx") for r in ok]),
                    postgres_cpu_us_per_tx=med([r.get("postgres_cpu_us_per_tx") for r in ok]),
                    machine_busy=med([r.get("machine_busy") for r in ok]),
                    failed_transactions=sum((r.get("failed") or 0) + r.get("log_failed", 0) for r in ok),
                )
                if any("rss_peak_kib" in r for r in ok):
                    t["rss_peak_mb"] = round(max(r.get("rss_peak_kib", 0) for r in ok) / 1024, 1)
                steady = med([r.get("rss_steady_kib") for r in ok])
                if steady:
                    t["rss_steady_kib"] = steady
            s["targets"][name] = t
        tps = {n: v.get("tps") for n, v in s["targets"].items() if v.get("status") == "ok"}

        def ratio(a, b):
            return round(tps[a] / tps[b], 3) if tps.get(a) and tps.get(b) else None

        s["ratios"] = {
            "pgvigil/direct": ratio("pgvigil", "direct"),
            "pgvigil/pgbouncer": ratio("pgvigil", "pgbouncer"),
            "analytics_on/off": ratio("pgvigil", "pgvigil_off"),
        }
        s["paired_ratios"] = {
            "pgvigil/pgbouncer": paired_ratio(c["runs"], "pgvigil", "pgbouncer"),
            "analytics_on/off": paired_ratio(c["runs"], "pgvigil", "pgvigil_off"),
        }
        cells.append(s)
    return cells


def log_problems(out_dir):
    """pgvigil log lines at WARN/ERROR, or sessions ending with an error."""
    res = {}
    for name, fname in (("pgvigil", "pgvigil.log"), ("pgvigil_off", "pgvigil-analytics-off.log")):
        path = os.path.join(out_dir, fname)
        if not os.path.exists(path):
            continue
        lines, slow = [], 0
        with open(path, errors="replace") as f:
            for line in f:
                if "pgvigil::slow_query" in line:  # slow-query events: a feature, not a problem
                    slow += 1
                elif re.search(r"\b(WARN|ERROR)\b|session ended:|login failed", line):
                    lines.append(line.rstrip())
        kinds = {}
        for l in lines:
            key = re.sub(r"^\S+\s+", "", l)  # drop the timestamp
            key = re.sub(r"client=\S+|peer=\S+|\d+", "#", key)[:160]
            kinds[key] = kinds.get(key, 0) + 1
        res[name] = {"count": len(lines), "slow_query_events_logged": slow,
                     "kinds": sorted(({"count": v, "line": k} for k, v in kinds.items()),
                                     key=lambda x: -x["count"])[:10]}
    return res


def checks(cells, final):
    out = []

    def add(name, ok, value):
        out.append({"target": name, "pass": ok, "measured": value})

    pb = [(c, c["ratios"]["pgvigil/pgbouncer"]) for c in cells if c["ratios"]["pgvigil/pgbouncer"]]
    if pb:
        worst = min(pb, key=lambda x: x[1])
        add("pgvigil/PgBouncer >= 1.0 in every cell where PgBouncer runs (aim 1.2)",
            worst[1] >= 1.0, f"min {worst[1]:.2f} ({label(worst[0])})")
    oo = [(c, c["ratios"]["analytics_on/off"]) for c in cells if c["ratios"]["analytics_on/off"]]
    if oo:
        worst = min(oo, key=lambda x: x[1])
        add("analytics on/off >= 0.95", worst[1] >= 0.95, f"min {worst[1]:.2f} ({label(worst[0])})")
    for c in cells:
        if c["workload"] == "select-only" and c["mode"] == "simple" and c["clients"] == 32:
            r = c["ratios"]["pgvigil/direct"]
            add("pgvigil/direct >= 0.75 at 32 clients, simple", r is not None and r >= 0.75,
                f"{r:.2f}" if r else "n/a")
    for c in cells:
        if c["workload"] == "select-only" and c["clients"] == 1000:
            v = c["targets"].get("pgvigil", {})
            b = c["targets"].get("pgbouncer", {})
            errs = v.get("failed_transactions", 0) if v.get("status") == "ok" else "aborts"
            p99v, p99b = v.get("latency_p99_ms"), b.get("latency_p99_ms")
            ok = errs == 0 and (p99b is None or (p99v is not None and p99v <= 1.5 * p99b))
            add(f"1000 clients, -M {c['mode']}: zero errors, p99 <= 1.5x PgBouncer's", ok,
                f"errors {errs}, p99 {fmt(p99v, 2)} ms vs PgBouncer "
                + (f"{fmt(p99b, 2)} ms" if p99b else b.get("status", "n/a")))
    f = final.get("pgvigil", {})
    if f.get("vmhwm_kib"):
        mb = f["vmhwm_kib"] / 1024
        maxc = max((c["clients"] for c in cells), default=0)
        at_1000 = maxc >= 1000
        add("pgvigil peak RSS <= 100 MB with 1000 clients and 5000 fingerprints",
            (mb <= 100) if at_1000 else None,
            f"{mb:.1f} MB (VmHWM; most clients in this run {maxc}, "
            f"fingerprints tracked at the end {f.get('fingerprints', '?')})")
    return out


def label(c):
    return f"{c['workload']} -M {c['mode']} -c {c['clients']}"


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def cell_value(t, key, digits):
    if not t:
        return "-"
    if t.get("status") == "skipped":
        return "skip"
    if t.get("status") != "ok":
        return "aborts"
    return fmt(t.get(key), digits)


def render_cpu_block(cells):
    """Per cell: the CPU pgbench, PostgreSQL and the pooler spent on a transaction and
    how busy the machine was, and pgvigil's TPS ratios paired run by run."""
    def target(t):
        if not t or t.get("status") != "ok":
            return "-"
        cpu = "/".join(fmt(t.get(k), 1) for k in
                       ("pgbench_cpu_us_per_tx", "postgres_cpu_us_per_tx", "pooler_cpu_us_per_tx"))
        busy = t.get("machine_busy")
        return f"{cpu} {busy * 100:.0f}%" if busy is not None else cpu

    def paired(c, key):
        p = (c.get("paired_ratios") or {}).get(key)
        return fmt(p["median"], 2) if p else "-"

    hdr = (f"{'workload':<12} {'mode':<8} {'cl':>4} | " +
           " | ".join(f"{n:>21}" for n in TARGET_ORDER) + f" | {'vig/pgb':>7} {'on/off':>6}")
    out = ["CPU us/tx pgbench/PostgreSQL/pooler and machine busy (medians) | TPS ratios "
           "paired run by run (median)", hdr, "-" * len(hdr)]
    for c in cells:
        t = c["targets"]
        out.append(f"{c['workload']:<12} {c['mode']:<8} {c['clients']:>4} | " +
                   " | ".join(f"{target(t.get(n)):>21}" for n in TARGET_ORDER) +
                   f" | {paired(c, 'pgvigil/pgbouncer'):>7} {paired(c, 'analytics_on/off'):>6}")
    return out


def render_table(meta, cells, final, checks_, problems):
    lines = []
    m = meta
    lines.append(f"pgvigil load benchmark  {m['started']}  commit {m['pgvigil_commit']}")
    mc = m["machine"]
    lines.append(f"machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory']}; load average at start "
                 f"{mc['loadavg_at_start']}, at end {mc.get('loadavg_at_end', '?')}")
    lines.append(f"{m['postgresql'] and 'PostgreSQL ' + m['postgresql']} (fsync=off, synchronous_commit=off, "
                 f"full_page_writes=off, shared_buffers=128MB, max_connections="
                 f"{m['postgresql_settings']['max_connections']}); {m['pgbouncer']}; {m['pgbench']}")
    lines.append(f"pgbench scale {m['scale']}, -j {m['threads']}, {m['duration_s']} s a run, "
                 f"median of {m['reps']} run(s), targets interleaved; poolers in transaction mode, "
                 f"pool {m['pool_size']}; poolers reach PostgreSQL over "
                 + ("its Unix socket" if m.get("upstream") == "unix" else "TCP (127.0.0.1)"))
    if m.get("tls"):
        lines.append("TLS on both legs: pgbench connects with sslmode=require to every target "
                     "(direct is direct over TLS); both poolers require TLS from clients "
                     "(client_tls_sslmode) and use it to PostgreSQL (server_tls_sslmode require)")
    lines.append("")
    hdr = (f"{'workload':<12} {'mode':<8} {'cl':>4} | {'direct':>8} {'pgbouncer':>9} {'pgvigil':>8} "
           f"{'pgv-off':>8} | {'vig/dir':>7} {'vig/pgb':>7} {'on/off':>6} | "
           f"{'avg ms d/b/v/o':>27} | {'p99 ms d/b/v/o':>27} | {'RSS MB v/o':>11} | "
           f"{'CPU us/tx b/v/o':>17}")
    lines.append("TPS (median)".ljust(27) + "| " + " " * 37 + "| ratios of TPS")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for c in cells:
        t = c["targets"]
        tps = " ".join(f"{cell_value(t.get(n), 'tps', 0):>{w}}"
                       for n, w in zip(TARGET_ORDER, (8, 9, 8, 8)))
        r = c["ratios"]
        ratios = (f"{fmt(r['pgvigil/direct'], 2):>7} {fmt(r['pgvigil/pgbouncer'], 2):>7} "
                  f"{fmt(r['analytics_on/off'], 2):>6}")

        def lat(key):
            return "/".join(cell_value(t.get(n), key, 2) for n in TARGET_ORDER)

        rss = "/".join(fmt(t.get(n, {}).get("rss_peak_mb"), 0) for n in ("pgvigil", "pgvigil_off"))
        cpu = "/".join(fmt(t.get(n, {}).get("pooler_cpu_us_per_tx"), 1)
                       for n in ("pgbouncer", "pgvigil", "pgvigil_off"))
        lines.append(f"{c['workload']:<12} {c['mode']:<8} {c['clients']:>4} | {tps} | {ratios} | "
                     f"{lat('latency_avg_ms'):>27} | {lat('latency_p99_ms'):>27} | {rss:>11} | "
                     f"{cpu:>17}")
    lines.append("")
    if cells:
        lines.extend(render_cpu_block(cells))
        lines.append("")
    for name, lbl in (("pgvigil", "pgvigil"), ("pgvigil_off", "pgvigil analytics off"),
                      ("pgbouncer", "PgBouncer")):
        f = final.get(name, {})
        if f.get("vmhwm_kib"):
            extra = f", {f['fingerprints']} fingerprints tracked" if "fingerprints" in f else ""
            lines.append(f"peak RSS (VmHWM at the end) {lbl}: {f['vmhwm_kib'] / 1024:.1f} MB{extra}")
        elif f and not f.get("alive", True):
            lines.append(f"{lbl}: PROCESS GONE at the end of the run")
    for c in cells:
        for n in TARGET_ORDER:
            t = c["targets"].get(n, {})
            if t.get("status") == "aborts":
                lines.append(f"aborts: {label(c)} {n}: {' | '.join(t.get('detail', []))[:200]}")
            elif t.get("failed_transactions"):
                lines.append(f"failed transactions: {label(c)} {n}: {t['failed_transactions']}")
    for name, p in problems.items():
        if p["count"]:
            lines.append(f"{name} log: {p['count']} warning/error lines, e.g.:")
            for k in p["kinds"][:5]:
                lines.append(f"   {k['count']:>6} x {k['line']}")
        else:
            lines.append(f"{name} log: no warnings, errors or failed sessions")
    lines.append("")
    lines.append("targets (issue 5):")
    for ch in checks_:
        mark = "n/a" if ch["pass"] is None else ("pass" if ch["pass"] else "FAIL")
        lines.append(f"  [{mark}] {ch['target']}: {ch['measured']}")
    return "\n".join(lines)


def svg_chart(meta, cells):
    """Grouped bars of median TPS per cell and target; one panel per workload."""
    panels = [(w, [c for c in cells if c["workload"] == w]) for w in WORKLOAD_TITLES]
    panels = [(w, cs) for w, cs in panels if cs]
    bar_w, gap, group_pad = 16, 2, 26
    left, right, top = 80, 20, 70  # title, settings line, legend at y 22, 40, 50-62
    panel_h, panel_gap = 300, 90
    group_w = 4 * (bar_w + gap) + group_pad
    width = left + right + max(len(cs) for _, cs in panels) * group_w
    width = max(width, 900)
    height = top + len(panels) * (panel_h + panel_gap) + 10
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="22" font-size="15" font-weight="bold">pgvigil load benchmark: '
         f'median TPS per cell</text>',
         f'<text x="{left}" y="40" fill="#555">pgbench {meta["duration_s"]} s x {meta["reps"]}, '
         f'-j {meta["threads"]}, scale {meta["scale"]}; transaction pooling, pool {meta["pool_size"]}, '
         f'upstream {meta.get("upstream", "tcp")}{", TLS on both legs" if meta.get("tls") else ""}; '
         f'{esc(meta["machine"]["cpu"])}, '
         f'{meta["machine"]["cores"]} cores; PostgreSQL {esc(meta["postgresql"])} fsync=off; '
         f'{esc(meta["pgbouncer"])}; commit {esc(meta["pgvigil_commit"])}</text>']
    lx = left
    for n in TARGET_ORDER:
        lbl = {t["name"]: t["label"] for t in meta["targets"]}.get(n, n)
        o.append(f'<rect x="{lx}" y="50" width="12" height="12" fill="{COLORS[n]}"/>')
        o.append(f'<text x="{lx + 16}" y="60">{esc(lbl)}</text>')
        lx += 30 + 7 * len(lbl)
    for pi, (workload, cs) in enumerate(panels):
        y0 = top + pi * (panel_h + panel_gap) + 20
        ymax = max((t.get("tps") or 0) for c in cs for t in c["targets"].values()) or 1
        step = nice_step(ymax / 5)
        ymax = math.ceil(ymax / step) * step
        o.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">pgbench '
                 f'{WORKLOAD_TITLES[workload]}'
                 f'</text>')
        v = 0
        while v <= ymax + 1e-9:
            y = y0 + panel_h - v / ymax * panel_h
            o.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#ddd"/>')
            o.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
            v += step
        o.append(f'<text x="16" y="{y0 + panel_h / 2}" transform="rotate(-90 16 {y0 + panel_h / 2})" '
                 f'text-anchor="middle">TPS</text>')
        for gi, c in enumerate(cs):
            gx = left + group_pad / 2 + gi * group_w
            for bi, n in enumerate(TARGET_ORDER):
                t = c["targets"].get(n, {})
                x = gx + bi * (bar_w + gap)
                base = y0 + panel_h
                if t.get("status") == "ok" and t.get("tps"):
                    h = t["tps"] / ymax * panel_h
                    o.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w}" height="{h:.1f}" '
                             f'fill="{COLORS[n]}"><title>{esc(n)} {esc(label(c))}: '
                             f'{t["tps"]:,.0f} tps, avg {fmt(t.get("latency_avg_ms"), 2)} ms, '
                             f'p99 {fmt(t.get("latency_p99_ms"), 2)} ms</title></rect>')
                else:
                    mark = "skip" if t.get("status") == "skipped" else ("aborts" if t else "-")
                    o.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - 4}" font-size="9" fill="#a00" '
                             f'transform="rotate(-90 {x + bar_w / 2:.1f} {base - 4})">{mark}</text>')
            cx = gx + 2 * (bar_w + gap)
            o.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 15}" text-anchor="middle">'
                     f'{c["mode"]}</text>')
            o.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 28}" text-anchor="middle">'
                     f'{c["clients"]} clients</text>')
            r = c["ratios"]["pgvigil/pgbouncer"]
            if r:
                o.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 41}" text-anchor="middle" '
                         f'fill="#555">v/b {r:.2f}</text>')
        o.append(f'<line x1="{left}" x2="{width - right}" y1="{y0 + panel_h}" y2="{y0 + panel_h}" '
                 f'stroke="#333"/>')
    o.append("</svg>")
    return "\n".join(o)


def nice_step(x):
    if x <= 0:
        return 1
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- many clients

MANY_TARGETS = ["pgbouncer", "pgvigil", "pgvigil_off"]


def many_clients_summary(cells):
    """One row per client count: each pooler's steady RSS, latency and connect time,
    and the ratios the targets are stated in; then the RSS slope per client."""
    rows = []
    for c in sorted(cells, key=lambda c: c["clients"]):
        row = {"clients": c["clients"], "rate": c.get("rate"),
               "runs": max((t.get("runs", 0) for t in c["targets"].values()), default=0)}
        for name in MANY_TARGETS:
            t = c["targets"].get(name)
            if not t:
                continue
            row[name] = {k: t.get(k) for k in ("status", "tps", "latency_avg_ms", "latency_p99_ms",
                                                 "connect_ms", "rss_steady_kib", "rss_peak_mb",
                                                 "failed_transactions", "detail")
                         if t.get(k) is not None}
        v, b = row.get("pgvigil", {}), row.get("pgbouncer", {})

        def ratio(key):
            return round(v[key] / b[key], 3) if v.get(key) and b.get(key) else None

        def per_run(key):
            # Run i of pgvigil against run i of PgBouncer: interleaved, so
            # each pair shared the machine's state of that moment.
            tv = c["targets"].get("pgvigil", {}).get(key) or []
            tb = c["targets"].get("pgbouncer", {}).get(key) or []
            return [round(x / y, 3) if x and y else None for x, y in zip(tv, tb)]

        row["ratios"] = {"avg_latency": ratio("latency_avg_ms"), "p99_latency": ratio("latency_p99_ms"),
                         "rss": ratio("rss_steady_kib"), "connect_time": ratio("connect_ms"),
                         "avg_latency_runs": per_run("latency_avg_runs"),
                         "p99_latency_runs": per_run("latency_p99_runs")}
        rows.append(row)
    slope = {}
    by_n = {r["clients"]: r for r in rows}
    lo, hi = (1000, 10000) if 1000 in by_n and 10000 in by_n else (
        (min(by_n), max(by_n)) if len(by_n) >= 2 else (None, None))
    if lo is not None:
        for name in MANY_TARGETS:
            a = by_n[lo].get(name, {}).get("rss_steady_kib")
            z = by_n[hi].get(name, {}).get("rss_steady_kib")
            if a and z:
                slope[name] = round((z - a) / (hi - lo), 2)
    return {"rows": rows, "rss_slope_kib_per_client": slope, "slope_between": [lo, hi]}


def many_clients_checks(many):
    out = []

    def add(name, ok, value):
        out.append({"target": name, "pass": ok, "measured": value})

    lo, hi = many["slope_between"]
    sl = many["rss_slope_kib_per_client"].get("pgvigil")
    if sl is not None:
        add(f"pgvigil RSS per idle client <= 2 KiB (slope {lo} to {hi} clients)", sl <= 2.0,
            f"{sl:.2f} KiB (PgBouncer {many['rss_slope_kib_per_client'].get('pgbouncer', '-')} KiB)")
    for r in many["rows"]:
        n, q = r["clients"], r["ratios"]
        v, b = r.get("pgvigil", {}), r.get("pgbouncer", {})
        if n == max(x["clients"] for x in many["rows"]) and q["rss"] is not None:
            add(f"pgvigil RSS <= 3x PgBouncer's at {n} clients", q["rss"] <= 3.0, f"{q['rss']:.2f}x")
        for key, label_ in (("avg_latency", "average"), ("p99_latency", "p99")):
            if q[key] is not None:
                add(f"{n} clients at {r['rate']} tx/s: {label_} latency <= 1.1x PgBouncer's",
                    q[key] <= 1.1, f"{q[key]:.2f}x")
        if v:
            errs = v.get("failed_transactions", 0) if v.get("status") == "ok" else "aborts"
            add(f"{n} clients log in (SCRAM) and run without errors", errs == 0,
                f"errors {errs}; all connected in {fmt((v.get('connect_ms') or 0) / 1000, 1)} s "
                f"(PgBouncer {fmt((b.get('connect_ms') or 0) / 1000, 1)} s)")
    return out


def render_many_clients(many):
    def mb(t):
        return fmt(t["rss_steady_kib"] / 1024, 1) if t.get("rss_steady_kib") else "-"

    def ms(t, key):
        return fmt(t.get(key), 3) if t.get("status") == "ok" else t.get("status", "-")

    runs = max((r.get("runs", 1) for r in many["rows"]), default=1)
    lines = ["many clients: pgbench -S -n -j 2 -R RATE, N clients, SCRAM, transaction mode; "
             "RSS = median VmRSS over the last third of the run (all clients connected); "
             f"each figure the median of {runs} run(s), targets interleaved",
             f"{'clients':>7} | {'RSS MB pgvigil':>14} {'pgbouncer':>9} {'pgv-off':>7} | "
             f"{'avg ms pgvigil':>14} {'pgbouncer':>9} {'ratio':>5} | {'p99 ms pgvigil':>14} "
             f"{'pgbouncer':>9} {'ratio':>5} | {'connect s pgvigil':>17} {'pgbouncer':>9}"]
    for r in many["rows"]:
        v, b, o, q = r.get("pgvigil", {}), r.get("pgbouncer", {}), r.get("pgvigil_off", {}), r["ratios"]
        lines.append(
            f"{r['clients']:>7} | {mb(v):>14} {mb(b):>9} {mb(o):>7} | {ms(v, 'latency_avg_ms'):>14} "
            f"{ms(b, 'latency_avg_ms'):>9} {fmt(q['avg_latency'], 2):>5} | "
            f"{ms(v, 'latency_p99_ms'):>14} {ms(b, 'latency_p99_ms'):>9} {fmt(q['p99_latency'], 2):>5} | "
            f"{fmt((v.get('connect_ms') or 0) / 1000, 1):>17} {fmt((b.get('connect_ms') or 0) / 1000, 1):>9}")
    if runs > 1:
        def each(xs):
            return " / ".join(fmt(x, 2) for x in xs)
        lines.append("pgvigil / PgBouncer, run by run (average; p99):")
        for r in many["rows"]:
            q = r["ratios"]
            lines.append(f"{r['clients']:>7} | {each(q['avg_latency_runs'])}; {each(q['p99_latency_runs'])}")
    sl = many["rss_slope_kib_per_client"]
    if sl:
        lo, hi = many["slope_between"]
        lines.append(f"RSS per connected client (slope {lo} to {hi}): "
                     + ", ".join(f"{SHORT[n]} {v:.2f} KiB" for n, v in sl.items()))
    return "\n".join(lines)


def svg_many_clients(meta, many):
    """Two panels, RSS and average latency against the number of clients, a line per pooler."""
    rows = many["rows"]
    w, h, left, top, pw, ph, gap = 900, 420, 70, 60, 360, 280, 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12">',
           f'<text x="{left}" y="22" font-size="15">pgvigil vs PgBouncer with many clients at '
           f'{rows[0]["rate"] if rows else "?"} tx/s (pgbench -S, SCRAM, transaction mode, pool '
           f'{meta.get("pool_size")})</text>',
           f'<text x="{left}" y="40" fill="#555">commit {meta.get("pgvigil_commit")} · '
           f'{meta.get("started")}</text>']
    ns = [r["clients"] for r in rows]
    if not ns:
        return "\n".join(out + ["</svg>"])
    lx = [math.log10(n) for n in ns]
    x0, x1 = min(lx), max(lx) if max(lx) > min(lx) else min(lx) + 1
    for pi, (title, key, scale) in enumerate((("RSS (MB)", "rss_steady_kib", 1 / 1024),
                                             ("average latency (ms)", "latency_avg_ms", 1))):
        px = left + pi * (pw + gap)
        vals = [r.get(t, {}).get(key) for r in rows for t in MANY_TARGETS]
        vmax = max([v * scale for v in vals if v] or [1]) * 1.1
        out.append(f'<text x="{px}" y="{top - 6}" font-weight="bold">{title}</text>')
        out.append(f'<rect x="{px}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        for frac in (0, 0.5, 1):
            y = top + ph - frac * ph
            out.append(f'<text x="{px - 6}" y="{y + 4:.0f}" text-anchor="end" fill="#555">'
                       f'{vmax * frac:.3g}</text>')
        for n, l in zip(ns, lx):
            x = px + (l - x0) / (x1 - x0) * pw
            out.append(f'<text x="{x:.0f}" y="{top + ph + 16}" text-anchor="middle" fill="#555">{n}</text>')
        for ti, t in enumerate(MANY_TARGETS):
            pts = [(px + (l - x0) / (x1 - x0) * pw, top + ph - r.get(t, {}).get(key) * scale / vmax * ph)
                   for r, l in zip(rows, lx) if r.get(t, {}).get(key)]
            if pts:
                out.append(f'<polyline fill="none" stroke="{COLORS[t]}" stroke-width="2" points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
                out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[t]}"/>' for x, y in pts]
            out.append(f'<rect x="{left + ti * 160}" y="{h - 22}" width="12" height="12" fill="{COLORS[t]}"/>'
                       f'<text x="{left + ti * 160 + 16}" y="{h - 12}">{SHORT[t]}</text>')
        out.append(f'<text x="{px + pw / 2:.0f}" y="{top + ph + 34}" text-anchor="middle" fill="#555">'
                   f'clients connected (log scale)</text>')
    out.append("</svg>")
    return "\n".join(out)


def cmd_report(raw_path):
    with open(raw_path) as f:
        raw = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(raw_path))
    summarized = summarize(raw)
    cells = [c for c in summarized if c["workload"] != MANY_CLIENTS]
    many = many_clients_summary([c for c in summarized if c["workload"] == MANY_CLIENTS])
    final = raw.get("final", {})
    problems = log_problems(out_dir)
    ch = checks(cells, final) + (many_clients_checks(many) if many else [])
    table = render_table(raw["meta"], cells, final, ch, problems)
    if many:
        table = render_many_clients(many) + "\n\n" + table if not cells else \
            table + "\n\n" + render_many_clients(many)
    print()
    print(table)
    results = {"meta": raw["meta"], "cells": cells, "final": final, "pgvigil_log_problems": problems,
               "targets": ch}
    if many:
        results["many_clients"] = many
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(table + "\n")
    if cells:
        with open(os.path.join(out_dir, "chart.svg"), "w") as f:
            f.write(svg_chart(raw["meta"], cells))
    if many:
        with open(os.path.join(out_dir, "many-clients.svg"), "w") as f:
            f.write(svg_many_clients(raw["meta"], many))
    charts = ", ".join(n for n, on in (("chart.svg", cells), ("many-clients.svg", many)) if on)
    print(f"\nwrote {out_dir}/results.json, {charts}, table.txt, raw.json and the logs")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "report"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    (cmd_run if sys.argv[1] == "run" else cmd_report)(sys.argv[2])


if __name__ == "__main__":
    main()
