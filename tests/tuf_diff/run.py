#!/usr/bin/env python3
"""The TUF differential harness: python-tuf's ngclient and `arca tuf-client`, side by side.

For every scenario of scenarios.py: a fresh repository (repo.Repo) in a temporary directory,
served by one threaded http.server on 127.0.0.1 (port 0), and two fresh client states. Each
client step runs in python-tuf's `tuf.ngclient.Updater` in this process and as
`arca tuf-client` in a subprocess (10 s timeout each); after every step the two must agree on
success or failure and on the files written: the trusted metadata files in the metadata
directory (root_history/ aside, which only ngclient keeps) and the bytes of the target
directory. ngclient's outcome is the expected one; nothing is hard-coded.

Prints one line per scenario, `AGREE name` or `DIFFER name: step k (what): ngclient=... arca=...`,
then compares the differing ones with known_gaps.txt. Exit status 0 only if exactly the listed
scenarios differ: an unlisted one is a regression, a listed one that agrees must be deleted
from the list (it only shrinks).

    run.py --arca target/debug/arca [--only NAME]... [--steps] [--json] [--known-gaps FILE]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from urllib import parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tuf.ngclient import Updater  # noqa: E402
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher  # noqa: E402

import scenarios  # noqa: E402
from repo import Repo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN_GAPS = os.path.join(HERE, "known_gaps.txt")
# Each client step, either client, gets this long.
STEP_TIMEOUT_SECS = 10


class Differ(Exception):
    """The two clients disagreed at a step; the message says how."""


class Quiet(http.server.SimpleHTTPRequestHandler):
    """Serves the repository directory, quietly. A file whose name is the requested segment
    exactly as sent (still percent-encoded, as ngclient encodes role names that hold `/`)
    wins over the decoded name, so such roles can be stored at all."""

    def translate_path(self, path: str) -> str:
        raw = path.split("?", 1)[0].split("#", 1)[0]
        segments = [s for s in raw.split("/") if s and s not in (".", "..")]
        literal = os.path.join(self.directory, *segments)
        if os.path.isfile(literal):
            return literal
        return super().translate_path(path)

    def log_message(self, *args) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """A client that stops reading (an oversized file refused mid-way) is expected here."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(directory: str) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(Quiet, directory=directory)
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def trusted_files(metadata_dir: str) -> dict[str, bytes]:
    """The trusted metadata files a client keeps: `*.json` at the top of its directory."""
    out = {}
    for name in sorted(os.listdir(metadata_dir)):
        path = os.path.join(metadata_dir, name)
        if name.endswith(".json") and not name.startswith(".") and os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def target_files(target_dir: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(target_dir)):
        with open(os.path.join(target_dir, name), "rb") as f:
            out[name] = f.read()
    return out


def describe(data: bytes) -> str:
    """A file as a reader wants it in a difference: its version if it is metadata, and a
    short hash of its bytes."""
    short = hashlib.sha256(data).hexdigest()[:8]
    try:
        return f"v{json.loads(data)['signed']['version']}#{short}"
    except (ValueError, KeyError, TypeError):
        return f"{len(data)}B#{short}"


def files_difference(ng: dict[str, bytes], arca: dict[str, bytes]) -> list[str]:
    diffs = []
    for name in sorted(set(ng) | set(arca)):
        a, b = ng.get(name), arca.get(name)
        if a != b:
            da = describe(a) if a is not None else "absent"
            db = describe(b) if b is not None else "absent"
            diffs.append(f"{name} ngclient={da} arca={db}")
    return diffs


class Clients:
    """The two clients of one scenario; each method is one step, run by both and compared."""

    def __init__(self, repo: Repo, arca: str, url: str, work: str, timeout: float):
        self.repo = repo
        self.timeout = timeout
        self.arca = arca
        self.metadata_url = f"{url}/metadata/"
        self.targets_url = f"{url}/targets/"
        self.dirs = {}
        for who in ("ngclient", "arca"):
            meta, tgt = os.path.join(work, who, "metadata"), os.path.join(work, who, "targets")
            os.makedirs(meta)
            os.makedirs(tgt)
            self.dirs[who] = (meta, tgt)
        self.steps = 0
        self.initialised = False
        self.log: list[str] = []

    # --- the steps ------------------------------------------------------------------------

    def init(self, root: bytes | None = None) -> bool:
        """Both clients trust `root` (default the repository's first root, 1.root.json)."""
        if root is None:
            with open(os.path.join(self.repo.metadata_dir, "1.root.json"), "rb") as f:
                root = f.read()
        self.initialised = True
        root_file = os.path.join(os.path.dirname(self.dirs["arca"][0]), "trusted-root.json")
        with open(root_file, "wb") as f:
            f.write(root)

        def ngclient() -> None:
            meta, tgt = self.dirs["ngclient"]
            Updater(meta, self.metadata_url, tgt, self.targets_url, self.fetcher(), bootstrap=root)

        return self.step("init", ngclient, ["init", root_file])

    def refresh(self) -> bool:
        self.init_if_needed()

        def ngclient() -> None:
            self.updater().refresh()

        return self.step("refresh", ngclient, ["refresh"])

    def download(self, path: str) -> bool:
        self.init_if_needed()

        def ngclient() -> None:
            updater = self.updater()
            info = updater.get_targetinfo(path)
            if info is None:
                raise LookupError(f"no target {path!r}")
            if updater.find_cached_target(info) is None:
                updater.download_target(info)

        args = ["--target-name", path, "--target-base-url", self.targets_url]
        args += ["--target-dir", self.dirs["arca"][1], "download"]
        return self.step(f"download {path}", ngclient, args)

    def put_local_target(self, path: str, data: bytes) -> None:
        """Both clients already hold `data` as target `path` in their target directory."""
        for _, tgt in self.dirs.values():
            with open(os.path.join(tgt, parse.quote(path, "")), "wb") as f:
                f.write(data)

    # --- running and comparing ------------------------------------------------------------

    def init_if_needed(self) -> None:
        if not self.initialised:
            self.init()

    def fetcher(self) -> Urllib3Fetcher:
        return Urllib3Fetcher(socket_timeout=self.timeout)

    def updater(self) -> Updater:
        meta, tgt = self.dirs["ngclient"]
        return Updater(meta, self.metadata_url, tgt, self.targets_url, self.fetcher(), bootstrap=None)

    def run_arca(self, args: list[str]) -> tuple[bool, str]:
        meta, _ = self.dirs["arca"]
        cmd = [self.arca, "tuf-client", "--metadata-dir", meta, "--metadata-url", self.metadata_url]
        env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", RUST_LOG="warn")
        try:
            p = subprocess.run(
                cmd + args, capture_output=True, text=True, timeout=self.timeout, env=env
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {self.timeout} s"
        lines = [ln for ln in (p.stderr + p.stdout).strip().splitlines() if ln.strip()]
        return p.returncode == 0, lines[-1].strip() if lines else f"exit {p.returncode}"

    @staticmethod
    def run_ngclient(fn) -> tuple[bool, str]:
        try:
            fn()
            return True, ""
        except Exception as e:  # every refusal is an outcome to compare
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            return False, f"{type(e).__name__}: {e}{cause}"

    def step(self, label: str, ngclient, arca_args: list[str]) -> bool:
        self.steps += 1
        ng_ok, ng_why = self.run_ngclient(ngclient)
        ar_ok, ar_why = self.run_arca(arca_args)

        def outcome(ok: bool, why: str) -> str:
            return "ok" if ok else f"fail ({why[:200]})"

        self.log.append(f"step {self.steps} ({label}): ngclient={outcome(ng_ok, ng_why)}")
        where = f"step {self.steps} ({label})"
        if ng_ok != ar_ok:
            raise Differ(f"{where}: ngclient={outcome(ng_ok, ng_why)} arca={outcome(ar_ok, ar_why)}")
        diffs = files_difference(
            trusted_files(self.dirs["ngclient"][0]), trusted_files(self.dirs["arca"][0])
        ) + files_difference(
            target_files(self.dirs["ngclient"][1]), target_files(self.dirs["arca"][1])
        )
        if diffs:
            both = "ok" if ng_ok else "fail"
            raise Differ(f"{where}: both {both}, files differ: {'; '.join(diffs)}")
        return ng_ok


def run_one(name: str, fn, arca: str) -> dict:
    """Runs scenario `fn`; returns {name, result: agree|differ|error, detail, steps}."""
    with tempfile.TemporaryDirectory(prefix=f"tuf-diff-{name}-") as work:
        kind, consistent = getattr(fn, "repo_args", ("ed25519", True))
        repo = Repo(os.path.join(work, "repo"), kind=kind, consistent_snapshot=consistent)
        server = serve(repo.base)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            timeout = getattr(fn, "step_timeout", STEP_TIMEOUT_SECS)
            clients = Clients(repo, arca, url, os.path.join(work, "clients"), timeout)
            try:
                fn(repo, clients)
            except Differ as d:
                return {"name": name, "result": "differ", "detail": str(d), "steps": clients.log}
            except Exception:
                return {
                    "name": name,
                    "result": "error",
                    "detail": traceback.format_exc(),
                    "steps": clients.log,
                }
            if clients.steps == 0:
                return {"name": name, "result": "error", "detail": "no client step", "steps": []}
            return {"name": name, "result": "agree", "detail": "", "steps": clients.log}
        finally:
            server.shutdown()
            server.server_close()


def read_known_gaps(path: str) -> dict[str, str]:
    gaps = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, why = line.partition("#")
            gaps[name.strip()] = why.strip()
    return gaps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arca", required=True, help="the arca binary")
    ap.add_argument("--only", action="append", help="run just this scenario (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--steps", action="store_true", help="print every step's outcome")
    ap.add_argument("--known-gaps", default=KNOWN_GAPS, help="the list (default known_gaps.txt)")
    a = ap.parse_args()

    every = scenarios.SCENARIOS
    gaps = read_known_gaps(a.known_gaps)
    problems = [f"known_gaps.txt: {n} is not a scenario" for n in gaps if n not in every]
    names = a.only or list(every)
    for n in names:
        if n not in every:
            print(f"no scenario {n!r}", file=sys.stderr)
            return 2

    results = []
    for n in names:
        started = time.monotonic()
        r = run_one(n, every[n], os.path.abspath(a.arca))
        r["secs"] = round(time.monotonic() - started, 2)
        results.append(r)
        if a.json:
            continue
        if r["result"] == "agree":
            print(f"AGREE {n}")
        elif r["result"] == "differ":
            print(f"DIFFER {n}: {r['detail']}")
        else:
            print(f"ERROR {n}: the scenario itself failed:\n{r['detail']}")
        if a.steps:
            for s in r["steps"]:
                print(f"    {s}")
        sys.stdout.flush()

    for r in results:
        n = r["name"]
        if r["result"] == "error":
            problems.append(f"{n}: the scenario itself failed (see above)")
        elif r["result"] == "differ" and n not in gaps:
            problems.append(f"REGRESSION {n}: differs and is not in known_gaps.txt")
        elif r["result"] == "agree" and n in gaps:
            problems.append(f"FIXED {n}: agrees now; delete its line from known_gaps.txt")

    agree = sum(r["result"] == "agree" for r in results)
    differ = sum(r["result"] == "differ" for r in results)
    if a.json:
        print(json.dumps({"results": results, "problems": problems}, indent=1))
    else:
        print(f"{len(results)} scenarios: {agree} agree, {differ} differ ({len(gaps)} known gaps)")
        for p in problems:
            print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
