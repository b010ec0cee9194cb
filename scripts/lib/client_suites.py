"""Helpers of scripts/client-suites.sh (not run by hand).

Two roles:

* a pytest plugin (``-p client_suites``, with this folder on PYTHONPATH) that
  appends one JSON line per test to $CLIENT_SUITES_RESULTS as soon as the test
  ends. A line per test rather than pytest's junit XML at the end: a suite cut
  off by the script's timeout still leaves every result it got so far, and the
  tests it never reached show up as "not run" instead of the whole run being
  lost.
* ``python3 client_suites.py compare OUT``: reads OUT/<suite>/<target>.jsonl
  and writes OUT/comparison.json and OUT/summary.md, the tests that pass
  directly but not through pgvigil, per mode.
"""

import json
import os
import sys

# --- pytest plugin ----------------------------------------------------------

_results = None


def pytest_configure(config):
    global _results
    path = os.environ.get("CLIENT_SUITES_RESULTS")
    if path:
        _results = open(path, "a", buffering=1, encoding="utf-8")


def pytest_unconfigure(config):
    global _results
    if _results is not None:
        _results.close()
        _results = None


def _crash_message(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300] if crash.message else ""
    text = getattr(report, "longreprtext", "") or ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def pytest_runtest_logreport(report):
    if _results is None:
        return
    # One line for the call phase; setup and teardown only when they did not
    # pass (a skip in setup, a failing fixture), so a test's worst phase wins
    # in compare().
    if report.when != "call" and report.passed:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed and report.when != "call":
        outcome = "error"
    else:
        outcome = report.outcome
    line = {"id": report.nodeid, "outcome": outcome, "when": report.when}
    line["duration"] = round(report.duration, 3)
    if report.failed:
        line["message"] = _crash_message(report)
    _results.write(json.dumps(line) + "\n")


# --- comparison -------------------------------------------------------------

# Worst first: a test's outcome is its worst phase's.
RANK = {"error": 0, "failed": 1, "xpassed": 2, "skipped": 3, "xfailed": 4, "passed": 5}
BAD = {"error", "failed"}
TARGETS = ("direct", "session", "transaction")


def load(path):
    tests = {}
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            raw = raw.strip()
            if not raw:
                continue
            line = json.loads(raw)
            old = tests.get(line["id"])
            if old is None or RANK[line["outcome"]] < RANK[old["outcome"]]:
                tests[line["id"]] = line
    return tests


def compare(out):
    meta_path = os.path.join(out, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    suites = {}
    for suite in sorted(os.listdir(out)):
        folder = os.path.join(out, suite)
        if not os.path.isdir(folder) or suite.startswith("venv") or suite in ("logs", "downloads", "pytest-cache"):
            continue
        runs = {t: load(os.path.join(folder, f"{t}.jsonl")) for t in TARGETS}
        direct = runs["direct"]
        if direct is None:
            continue
        passed = sorted(t for t, r in direct.items() if r["outcome"] == "passed")
        entry = {
            "direct": {
                "tests": len(direct),
                "passed": len(passed),
                "failed": sum(1 for r in direct.values() if r["outcome"] in BAD),
                "skipped": sum(1 for r in direct.values() if r["outcome"] == "skipped"),
            },
            "modes": {},
        }
        for mode in ("session", "transaction"):
            run = runs[mode]
            if run is None:
                entry["modes"][mode] = None
                continue
            fails, not_run = [], []
            for test in passed:
                r = run.get(test)
                if r is None:
                    not_run.append(test)
                elif r["outcome"] in BAD or r["outcome"] == "skipped":
                    fails.append(
                        {
                            "id": test,
                            "outcome": r["outcome"],
                            "message": r.get("message", ""),
                        }
                    )
            fixed = sorted(
                t
                for t, r in direct.items()
                if r["outcome"] in BAD and run.get(t, {}).get("outcome") == "passed"
            )
            entry["modes"][mode] = {
                "tests": len(run),
                "passed": sum(1 for r in run.values() if r["outcome"] == "passed"),
                "fail_only_here": fails,
                "not_run_here": not_run,
                "pass_only_here": fixed,
            }
        suites[suite] = entry
    result = {"meta": meta, "suites": suites}
    with open(os.path.join(out, "comparison.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary(result))
    sys.stdout.write(summary(result, details=False))


def summary(result, details=True):
    def count(entry, mode, key):
        m = entry["modes"].get(mode)
        return "not run" if m is None else str(len(m[key]))

    lines = ["# Client suites through pgvigil", ""]
    for key, value in result["meta"].items():
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        "A test counts against a mode when it passed directly and failed, errored,",
        "was skipped or was not reached through pgvigil in that mode.",
        "",
        "| suite | direct passed | fail only via session | fail only via transaction "
        "| not reached via session | not reached via transaction |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["suites"].items():
        lines.append(
            f"| {name} | {entry['direct']['passed']} of {entry['direct']['tests']} "
            f"| {count(entry, 'session', 'fail_only_here')} "
            f"| {count(entry, 'transaction', 'fail_only_here')} "
            f"| {count(entry, 'session', 'not_run_here')} "
            f"| {count(entry, 'transaction', 'not_run_here')} |"
        )
    lines.append("")
    if details:
        for name, entry in result["suites"].items():
            for mode, m in entry["modes"].items():
                if not m or not (m["fail_only_here"] or m["not_run_here"]):
                    continue
                lines += [f"## {name}: only via {mode} mode", ""]
                for fail in m["fail_only_here"]:
                    msg = fail["message"].replace("|", "\\|")
                    lines.append(f"- `{fail['id']}` {fail['outcome']}: {msg}")
                for test in m["not_run_here"]:
                    lines.append(f"- `{test}` not reached (timeout or crash)")
                lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "compare":
        compare(sys.argv[2])
    else:
        sys.exit("usage: client_suites.py compare OUT")
