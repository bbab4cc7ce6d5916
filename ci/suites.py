#!/usr/bin/env python3
"""Third-party suites, natively and under vkernel, compared (issue 20).

Two suites run twice each, once on the host and once as a vproc of the
release `vkernel` example, in the same job and with the same environment:

* CPython's regression tests (Debian's /usr/bin/python3 with
  libpython3.11-testsuite): `python3 -m test --junit-xml FILE MODULE`, one
  module per run; every test id gets an outcome (pass, fail, error, skip,
  missing). A test is *lost* when it passes natively and does anything else
  under vkernel (a skip counts: the vproc made a feature probe fail).
* stress-ng stressors with `--verify`, one stressor, one instance, a few
  seconds each: exit status and bogo ops, natively and under vkernel.

Every run has a timeout (the process group is killed; the run is recorded
as "timeout"), so a hang ends with a message, never a stuck CI job.

Budgets (VKERNEL_SUITES or --budget): `short` (twelve modules and ten
stressors, 2.5 to 6 minutes on our 2-core machine; what .ci/run runs),
`long` (every module and stressor of issue 20, about 18 minutes), `off`.

CI decides against a checked-in baseline (ci/suites-baseline.txt) of what is
known to be lost today: it fails only on a NEW loss (a test or stressor not
in the baseline), after re-running the new losses once under vkernel to
tell a flake from a regression; entries of the baseline that now pass are
printed loudly as improvements (refresh the baseline to lock them in).
Entries for modules or stressors that this budget did not run are left
alone. Refresh the baseline with `ci/suites.py --budget long
--update-baseline` (see docs/SUITES.md).

Written in Python rather than shell or Rust: the CPython suite needs
python3 anyway, its per-test results come as JUnit XML (xml.etree, in the
standard library), and CI does not have to build another binary first.

Exit status: 0 when nothing new is lost, 1 on a regression, 2 on a usage
or setup error.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = REPO / "ci" / "suites-baseline.txt"
DEFAULT_VKERNEL = REPO / "target" / "release" / "examples" / "vkernel"
PYTHON = "/usr/bin/python3"
STRESS_NG = "/usr/bin/stress-ng"

# The vproc's environment (what `vkernel run` gives it); native runs get the
# same one so that the two runs differ only in the kernel underneath.
ENV = {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin", "HOME": "/", "TERM": "xterm"}
# Added to both (`-e` for the vproc): a run killed at its timeout still has
# in its log every line the test runner printed.
EXTRA_ENV = {"PYTHONUNBUFFERED": "1"}

# issue 20's modules. The short budget leaves out the four slow under
# vkernel (test_signal ~80 s, test_eintr ~140 s, test_subprocess ~290 s,
# test_io ~125 s, on our quiet 2-core machine) and test_pathlib (10 s, but
# 50 s under load; its losses, mkfifo and AF_UNIX, show in test_os,
# test_posix and test_shutil too); the other eight take ~95 s together.
MODULES_LONG = [
    "test_os",
    "test_posix",
    "test_signal",
    "test_subprocess",
    "test_mmap",
    "test_fcntl",
    "test_fileio",
    "test_shutil",
    "test_pathlib",
    "test_time",
    "test_resource",
    "test_eintr",
    "test_io",
    "test_epoll",
    "test_selectors",
    "test_asyncio",
    "test_pty",
    "test_openpty",
]
# Modules whose one test runs a script of many in a child python and shows
# their outcomes only when one fails: the script runs directly instead (as
# the module runs it, `python3 -u SCRIPT -v`), so each of its tests counts.
SCRIPT_MODULES = {"test_eintr": "/usr/lib/python3.11/test/_test_eintr.py"}

MODULES_SHORT = [
    m
    for m in MODULES_LONG
    if m not in ("test_signal", "test_subprocess", "test_eintr", "test_io", "test_pathlib", "test_asyncio")
]

STRESSORS_LONG = [
    "fork",
    "vfork",
    "pipe",
    "mmap",
    "futex",
    "yield",
    "mutex",
    "sem",
    "sem-sysv",
    "msg",
    "shm",
    "shm-sysv",
    "fcntl",
    "flock",
    "lockf",
    "signal",
    "sigq",
    "clock",
    "timer",
    "dir",
    "dentry",
    "open",
    "msync",
    "iomix",
    "mq",
    "pty",
]
# Per-stressor options: the memory stressors default to 256 MiB an instance,
# which makes a few-seconds run a couple of bogo ops; 16 MiB gives counts
# worth comparing (and keeps the vproc's overlay small for iomix).
STRESSOR_OPTS = {
    "mmap": ["--mmap-bytes", "16m"],
    "msync": ["--msync-bytes", "16m"],
    "iomix": ["--iomix-bytes", "16m"],
}
STRESSORS_SHORT = ["fork", "pipe", "mmap", "futex", "signal", "open", "flock", "sem-sysv", "msg", "mq"]

BUDGETS = {
    # modules, stressors, seconds per stressor, timeout per module run
    "short": dict(modules=MODULES_SHORT, stressors=STRESSORS_SHORT, stress_secs=2, module_timeout=240),
    "long": dict(modules=MODULES_LONG, stressors=STRESSORS_LONG, stress_secs=5, module_timeout=600),
}


def log(msg):
    print(msg, flush=True)


# ---- running one command with a timeout ----------------------------------


class Run:
    """What one command did: its status (exit code, 128+signal, or None on
    timeout), its combined output and the seconds it took."""

    def __init__(self, status, output, secs):
        self.status = status
        self.output = output
        self.secs = secs

    @property
    def timed_out(self):
        return self.status is None

    def status_text(self):
        return "timeout" if self.timed_out else str(self.status)


def run_cmd(argv, timeout, cwd, log_path):
    """Run argv (stdin /dev/null, stdout+stderr into log_path) in its own
    process group; kill that group when it outlives `timeout` seconds."""
    start = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**ENV, **EXTRA_ENV},
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
            status = rc if rc >= 0 else 128 - rc
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = None
    # A grandchild that kept the group alive (a native test's daemon) is
    # ended with the group we created.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    secs = time.monotonic() - start
    if status is None:
        log(f"TIMEOUT: killed after {timeout}s: {' '.join(argv)[:200]} (log: {log_path})")
    return Run(status, Path(log_path).read_text(errors="replace"), secs)


def vkernel_argv(vk, cpus, mem, binds, argv):
    a = [str(vk), "run", "--cpus", str(cpus), "--mem", str(mem)]
    for b in binds:
        a += ["--bind", b]
    for k, v in EXTRA_ENV.items():
        a += ["-e", f"{k}={v}"]
    return a + argv


# ---- CPython --------------------------------------------------------------

FRAME = re.compile(r'File "[^"]*/(test/[^"]+)", line (\d+), in \w+\n\s*(.*)')


def why(elem):
    """One line saying why a test failed or was skipped: the last frame in
    CPython's test package (file:line and its code) and the exception."""
    text = elem.text or ""
    if elem.tag == "skipped":
        return "skipped: " + " ".join(text.split())[:150]
    msg = (elem.get("message") or "").strip().splitlines()
    msg = msg[-1] if msg else ""
    frames = FRAME.findall(text)
    where = f"{frames[-1][0]}:{frames[-1][1]} `{frames[-1][2].strip()[:80]}`: " if frames else ""
    return (where + msg)[:240]


def parse_junit(path, reasons=None):
    """test id -> outcome (pass, fail, error, skip) from `--junit-xml`;
    `reasons` (a dict) gets test id -> why() of the tests that did not pass."""
    out = {}
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:
            continue
        outcome, elem = "pass", None
        for tag, o in (("failure", "fail"), ("error", "error"), ("skipped", "skip")):
            elem = case.find(tag)
            if elem is not None:
                outcome = o
                break
        if outcome == "pass" and case.get("status") == "skipped":
            outcome = "skip"
        # unittest reports subtests and a class's setUpClass under odd
        # names; a repeated id keeps its worst outcome.
        prev = out.get(name)
        if prev is None or prev == "pass":
            out[name] = outcome
            if reasons is not None and elem is not None:
                reasons[name] = why(elem)
    return out


TEST_START = re.compile(r"\b(test\w*) \(([\w.]+)\)")
OUTCOME = re.compile(
    r"(?:\.\.\. ?|^)(ok|skipped|expected failure|unexpected success|FAIL|ERROR)\b", re.M
)
OUTCOMES = {
    "ok": "pass",
    "expected failure": "pass",
    "skipped": "skip",
    "FAIL": "fail",
    "unexpected success": "fail",
    "ERROR": "error",
}


def parse_verbose(text, prefix_from=None, prefix_to=None):
    """Fallback when the runner died before writing its XML: the `-v`
    lines `test_x (test.mod.Class.test_x) ... ok`. Output a test (or the
    vkernel) printed may come between the name and the outcome: the outcome
    is the first one before the next test's name. A test id starting with
    `prefix_from` gets `prefix_to` instead (`__main__.` of a script)."""
    out = {}
    # The summary's `FAIL: test_x (id)` / `ERROR: test_x (id)` headers
    # name a test again; they are not where it ran.
    starts = [
        m
        for m in TEST_START.finditer(text)
        if m.group(2).endswith("." + m.group(1)) and text[max(0, m.start() - 7) : m.start()] not in ("ERROR: ",)
        and text[max(0, m.start() - 6) : m.start()] != "FAIL: "
    ]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        o = OUTCOME.search(text, m.end(), end)
        if not o:
            continue  # never finished: stays "missing"
        tid = m.group(2)
        if prefix_from and tid.startswith(prefix_from):
            tid = prefix_to + tid[len(prefix_from) :]
        out.setdefault(tid, OUTCOMES[o.group(1)])
    return out


def run_module(module, where, ctx, match=None):
    """Run one CPython test module natively or under vkernel; return
    (Run, {test id: outcome})."""
    d = ctx.out / "cpython" / where
    d.mkdir(parents=True, exist_ok=True)
    suffix = "-rerun" if match else ""
    xml = d / f"{module}{suffix}.xml"
    if xml.exists():
        xml.unlink()
    script = SCRIPT_MODULES.get(module)
    if script:
        # The script's own tests, each with an outcome (a re-run runs them
        # all again: `-m` is the test runner's).
        argv = [PYTHON, "-u", script, "-v"]
    else:
        # -v: the fallback parser needs it (a runner killed at the timeout
        # or crashed writes no XML; its log still tells what ran).
        argv = [PYTHON, "-m", "test", "-v", "--junit-xml", str(xml)]
        for m in match or []:
            argv += ["-m", m]
        argv.append(module)
    logf = d / f"{module}{suffix}.log"
    if where == "native":
        r = run_cmd(argv, ctx.module_timeout, ctx.work, logf)
    else:
        # The output directory is bound read-write so the XML reaches the
        # host; everything else the runner writes (its temp dirs under
        # /tmp) stays in the vproc's in-memory overlay.
        argv = vkernel_argv(ctx.vkernel, ctx.cpus, ctx.mem, [f"{d}:rw"], argv)
        r = run_cmd(argv, ctx.module_timeout, ctx.work, logf)
    results = {}
    reasons = ctx.reasons.setdefault((module, where), {})
    if xml.exists():
        try:
            results = parse_junit(xml, reasons)
        except ET.ParseError:
            results = {}
    if results:
        # The runner leaves a test out of its XML when only its subtests
        # failed; the log's `  test_x (id) (params) ... FAIL` lines say so.
        for t, o in parse_verbose(r.output).items():
            if t not in results and o != "pass":
                results[t] = o
                reasons[t] = "a subtest: see the log"
    else:
        if script:
            results = parse_verbose(r.output, "__main__.", "test." + Path(script).stem + ".")
        else:
            results = parse_verbose(r.output)
    return r, results


def cpython_suite(ctx):
    rows = []
    lost = {}
    for module in ctx.modules:
        nr, nres = run_module(module, "native", ctx)
        log(f"   {module}: native {nr.status_text()} in {nr.secs:.1f}s, {count(nres, 'pass')}/{len(nres)} pass")
        vr, vres = run_module(module, "vkernel", ctx)
        ids = sorted(set(nres) | set(vres))
        mod_lost = [t for t in ids if nres.get(t) == "pass" and vres.get(t) != "pass"]
        log(
            f"   {module}: vkernel {vr.status_text()} in {vr.secs:.1f}s, "
            f"{count(vres, 'pass')}/{len(vres)} pass, {len(mod_lost)} lost"
        )
        reasons = ctx.reasons.get((module, "vkernel"), {})
        lost[module] = {t: (vres.get(t, "missing"), reasons.get(t, "")) for t in mod_lost}
        rows.append(
            dict(
                module=module,
                tests=len(ids),
                pass_native=count(nres, "pass"),
                pass_vkernel=count(vres, "pass"),
                lost=len(mod_lost),
                gained=sum(1 for t in ids if vres.get(t) == "pass" and nres.get(t) != "pass"),
                status_native=nr.status_text(),
                status_vkernel=vr.status_text(),
                secs_native=round(nr.secs, 1),
                secs_vkernel=round(vr.secs, 1),
            )
        )
    return rows, lost


def count(res, outcome):
    return sum(1 for v in res.values() if v == outcome)


# ---- stress-ng --------------------------------------------------------------

METRIC = re.compile(r"metrc: \[\d+\]\s+(\S+)\s+(\d+)\s+([\d.]+)\s")


def stress_argv(stressor, secs):
    return [
        STRESS_NG,
        f"--{stressor}",
        "1",
        "--timeout",
        f"{secs}s",
        "--verify",
        "--metrics-brief",
        # iomix, hdd and friends write files in the current directory;
        # keep them small.
        "--temp-path",
        "/tmp",
    ] + STRESSOR_OPTS.get(stressor, [])


def run_stressor(stressor, where, ctx, rerun=False):
    d = ctx.out / "stress-ng" / (where + ("-rerun" if rerun else ""))
    d.mkdir(parents=True, exist_ok=True)
    argv = stress_argv(stressor, ctx.stress_secs)
    # stress-ng ends its stressors itself at --timeout; 30 s more is for
    # start-up, reaping and a slow vproc; beyond that it hangs.
    timeout = ctx.stress_secs + 30
    if where == "vkernel":
        argv = vkernel_argv(ctx.vkernel, ctx.cpus, ctx.mem, [], argv)
    r = run_cmd(argv, timeout, ctx.work, d / f"{stressor}.log")
    ops = None
    for m in METRIC.finditer(r.output):
        if m.group(1) == stressor:
            ops = int(m.group(2))
    return r, ops


def first_failure(text):
    """stress-ng's first `fail:`/`error:` line, without its prefix, for the
    table's notes."""
    for line in text.splitlines():
        m = re.match(r"stress-ng: (?:fail|error):\s+\[\d+\]\s*(.*)", line)
        if m:
            return m.group(1)[:160]
    return ""


def stress_suite(ctx):
    rows = []
    for s in ctx.stressors:
        nr, nops = run_stressor(s, "native", ctx)
        vr, vops = run_stressor(s, "vkernel", ctx)
        ratio = None
        if nops and vops is not None:
            ratio = vops / nops
        rows.append(
            dict(
                stressor=s,
                status_native=nr.status_text(),
                status_vkernel=vr.status_text(),
                ops_native=nops,
                ops_vkernel=vops,
                ratio=ratio,
                secs_vkernel=round(vr.secs, 1),
                note=first_failure(vr.output) if vr.status != nr.status else "",
            )
        )
        log(
            f"   {s}: native {nr.status_text()} ({fmt_ops(nops)} ops), "
            f"vkernel {vr.status_text()} ({fmt_ops(vops)} ops) in {vr.secs:.1f}s"
        )
    return rows


def fmt_ops(n):
    return "-" if n is None else str(n)


def stressor_failed(row):
    """A stressor fails under vkernel when its status differs from the
    native one (stress-ng exits 0 on success, 2 on a failed --verify, 3
    when a stressor could not run, 4 when not implemented)."""
    return row["status_vkernel"] != row["status_native"]


# ---- tables -------------------------------------------------------------------


def cpython_table(rows):
    lines = [
        "| module | tests | pass native | pass vkernel | lost | status native/vkernel | secs native/vkernel |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['module']} | {r['tests']} | {r['pass_native']} | {r['pass_vkernel']} | {r['lost']} "
            f"| {r['status_native']}/{r['status_vkernel']} | {r['secs_native']}/{r['secs_vkernel']} |"
        )
    t = [sum(r[k] for r in rows) for k in ("tests", "pass_native", "pass_vkernel", "lost")]
    lines.append(f"| **total** | {t[0]} | {t[1]} | {t[2]} | {t[3]} | | |")
    return "\n".join(lines)


def stress_table(rows):
    lines = [
        "| stressor | status native | status vkernel | bogo-ops native | bogo-ops vkernel | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['stressor']} | {r['status_native']} | {r['status_vkernel']} "
            f"| {fmt_ops(r['ops_native'])} | {fmt_ops(r['ops_vkernel'])} | {ratio} |"
        )
    notes = [f"- {r['stressor']}: {r['note'] or 'status ' + r['status_vkernel']}" for r in rows if stressor_failed(r)]
    if notes:
        lines += ["", "Under vkernel, first failure of each failing stressor:", ""] + notes
    blind = [r["stressor"] for r in rows if r["ops_native"] is not None and r["ops_vkernel"] is None]
    if blind:
        lines += [
            "",
            f"No metrics line under vkernel for {len(blind)} of {len(rows)} stressors: stress-ng's parent reads "
            "the counters its stressor child writes in shared anonymous memory (docs/SUITES.md, known gaps).",
        ]
    return "\n".join(lines)


# ---- the baseline -------------------------------------------------------------
#
# One entry a line:  `cpython MODULE TEST_ID`  or  `stress-ng STRESSOR`.
# `#` starts a comment.


def read_baseline(path, comments=None):
    """The baseline's entries (tuples of words); `comments` (a dict) gets
    each entry's trailing comment."""
    entries = set()
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        body, _, comment = line.partition("#")
        body = body.strip()
        if body:
            e = tuple(body.split())
            entries.add(e)
            if comments is not None and comment.strip():
                comments[e] = comment.strip()
    return entries


def current_entries(lost, srows):
    e = set()
    for module, tests in lost.items():
        for t in tests:
            e.add(("cpython", module, t))
    for r in srows:
        if stressor_failed(r):
            e.add(("stress-ng", r["stressor"]))
    return e


def write_baseline(path, entries, lost, srows, ctx):
    old_comments = {}
    old = read_baseline(path, old_comments)
    # Keep the entries of modules and stressors this run did not cover.
    ran = {("cpython", m) for m in ctx.modules} | {("stress-ng", s) for s in ctx.stressors}
    keep = {e for e in old if e[:2] not in ran}
    entries = sorted(entries | keep)
    outcome = {
        ("cpython", m, t): o + (f": {reason}" if reason else "") for m, ts in lost.items() for t, (o, reason) in ts.items()
    }
    status = {
        ("stress-ng", r["stressor"]): f"status native {r['status_native']}, vkernel {r['status_vkernel']}"
        + (f": {r['note']}" if r.get("note") else "")
        for r in srows
    }
    lines = [
        "# Known losses under vkernel: CPython tests that pass natively but not as a",
        "# vproc, stress-ng stressors whose exit status differs from native.",
        "# ci/suites.py fails CI only on a loss NOT listed here. Refresh with",
        "#   ci/suites.py --budget long --update-baseline",
        "# (see docs/SUITES.md). Format: `cpython MODULE TEST_ID` | `stress-ng STRESSOR`.",
        f"# Last refreshed with budget {ctx.budget} on {time.strftime('%Y-%m-%d', time.gmtime())}.",
    ]
    for e in entries:
        why = outcome.get(e) or status.get(e) or old_comments.get(e, "")
        lines.append(" ".join(e) + (f"  # {why}" if why else ""))
    path.write_text("\n".join(lines) + "\n")


def compare(now, base, modules, stressors):
    """(new losses, improvements): this run's entries not in the baseline,
    and the baseline's entries for what this run covered that it no longer
    has."""
    ran = {("cpython", m) for m in modules} | {("stress-ng", s) for s in stressors}
    base_here = {e for e in base if e[:2] in ran}
    return now - base_here, base_here - now


def rerun_new(new, ctx):
    """Re-run each new loss once under vkernel; return those still lost."""
    still = set()
    by_module = {}
    for e in new:
        if e[0] == "cpython":
            by_module.setdefault(e[1], []).append(e[2])
        else:
            r, _ = run_stressor(e[1], "vkernel", ctx, rerun=True)
            native = next(x for x in ctx.srows if x["stressor"] == e[1])
            if r.status_text() != native["status_native"]:
                still.add(e)
            else:
                log(f"   flaky: stress-ng {e[1]} passed its re-run")
    for module, tests in by_module.items():
        _, res = run_module(module, "vkernel", ctx, match=tests)
        for t in tests:
            if res.get(t) == "pass":
                log(f"   flaky: {module} {t} passed its re-run")
            else:
                still.add(("cpython", module, t))
    return still


# ---- main -------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default=os.environ.get("VKERNEL_SUITES", "short"), choices=["short", "long", "off"])
    ap.add_argument("--vkernel", type=Path, default=Path(os.environ.get("VKERNEL_BIN", DEFAULT_VKERNEL)))
    ap.add_argument("--out", type=Path, default=None, help="results directory (default: a new one under /tmp)")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--update-baseline", action="store_true", help="write the losses of this run as the new baseline")
    ap.add_argument("--modules", help="comma-separated CPython modules instead of the budget's ('' for none)")
    ap.add_argument("--stressors", help="comma-separated stress-ng stressors instead of the budget's ('' for none)")
    ap.add_argument("--cpus", type=int, default=2, help="vCPUs of the vkernel (default 2)")
    ap.add_argument("--mem", type=int, default=2048, help="vkernel RAM in MiB (default 2048)")
    ap.add_argument("--module-timeout", type=int, help="seconds per module run (default by budget)")
    ap.add_argument("--stress-secs", type=int, help="seconds per stressor (default by budget)")
    ctx = ap.parse_args()
    # (module, native|vkernel) -> test id -> why it did not pass
    ctx.reasons = {}
    if ctx.budget == "off":
        log("suites: VKERNEL_SUITES=off, nothing run")
        return 0
    b = BUDGETS[ctx.budget]
    ctx.modules = b["modules"] if ctx.modules is None else [m for m in ctx.modules.split(",") if m]
    ctx.stressors = b["stressors"] if ctx.stressors is None else [s for s in ctx.stressors.split(",") if s]
    ctx.module_timeout = ctx.module_timeout or b["module_timeout"]
    ctx.stress_secs = ctx.stress_secs or b["stress_secs"]
    if not ctx.vkernel.exists():
        log(f"suites: {ctx.vkernel} missing (cargo build --release --example vkernel)")
        return 2
    missing = []
    if ctx.modules and not Path("/usr/lib/python3.11/test/regrtest.py").exists():
        missing.append("libpython3.11-testsuite (CPython's test package for /usr/bin/python3)")
    if ctx.stressors and not Path(STRESS_NG).exists():
        missing.append("stress-ng")
    if missing:
        log("suites: missing " + " and ".join(missing) + "; apt-get install them")
        return 2
    ctx.out = ctx.out or Path(tempfile.mkdtemp(prefix="vkernel-suites-"))
    ctx.out.mkdir(parents=True, exist_ok=True)
    # The runs' working directory: stress-ng and the test runner may leave
    # files in it natively.
    ctx.work = ctx.out / "work"
    ctx.work.mkdir(exist_ok=True)
    t0 = time.monotonic()
    log(f"== suites ({ctx.budget}): {len(ctx.modules)} CPython modules, {len(ctx.stressors)} stressors; results in {ctx.out}")

    crows, lost = cpython_suite(ctx) if ctx.modules else ([], {})
    ctx.srows = stress_suite(ctx) if ctx.stressors else []

    report = []
    if crows:
        report += ["### CPython regression tests (passing natively / under vkernel)", "", cpython_table(crows), ""]
    if ctx.srows:
        report += [
            f"### stress-ng stressors (`--verify`, 1 instance, {ctx.stress_secs} s each)",
            "",
            stress_table(ctx.srows),
            "",
        ]
    (ctx.out / "tables.md").write_text("\n".join(report))
    with open(ctx.out / "lost.txt", "w") as f:
        for module, tests in lost.items():
            for t, (o, reason) in sorted(tests.items()):
                f.write(f"{module} {t} {o}" + (f"  # {reason}" if reason else "") + "\n")
    (ctx.out / "results.json").write_text(json.dumps(dict(cpython=crows, lost=lost, stress=ctx.srows), indent=1))
    log("")
    log("\n".join(report))
    log(f"lost test ids: {ctx.out / 'lost.txt'}")

    now = current_entries(lost, ctx.srows)
    if ctx.update_baseline:
        write_baseline(ctx.baseline, now, lost, ctx.srows, ctx)
        log(f"== baseline written: {ctx.baseline} ({len(now)} entries from this run)")
        log(f"== suites took {time.monotonic() - t0:.0f}s")
        return 0

    new, improved = compare(now, read_baseline(ctx.baseline), ctx.modules, ctx.stressors)
    if improved:
        log("")
        log(f"!! IMPROVED: {len(improved)} baseline entries now pass under vkernel (refresh the baseline):")
        for e in sorted(improved):
            log("!!   " + " ".join(e))
    status = 0
    if new:
        log("")
        log(f"== {len(new)} new losses; re-running them once under vkernel")
        still = rerun_new(new, ctx)
        if still:
            log("")
            log(f"FAIL: {len(still)} NEW losses under vkernel (not in {ctx.baseline.name}):")
            for e in sorted(still):
                log("FAIL:   " + " ".join(e))
            status = 1
    log(f"== suites ({ctx.budget}) took {time.monotonic() - t0:.0f}s: " + ("FAIL" if status else "no new losses"))
    return status


if __name__ == "__main__":
    sys.exit(main())
