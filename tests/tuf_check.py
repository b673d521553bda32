#!/usr/bin/env python3
"""Fetch and verify one target of an arca channel with python-tuf's ngclient.

The integration tests run this as a third-party TUF client would: it starts from a pinned
root.json, refreshes timestamp, snapshot and targets, and downloads one target into --out.

Exit status 0 when the expectation holds: by default that the target verified; with
--expect-fail, that python-tuf refused with a security error; with --expect-error CLASS, that
it refused with that tuf.api.exceptions class (or a subclass of it).

The last line printed is the verdict: "VERIFIED target=... root=N timestamp=N snapshot=N
targets=N consistent_snapshot=True|False", "REFUSED as expected: CLASS: message", or
"ERROR: CLASS: message".
"""

import argparse
import json
import os
import sys
import tempfile
import traceback

try:
    import tuf
    from tuf.api import exceptions
    from tuf.ngclient import Updater
except ImportError as e:  # pragma: no cover - the test venv has it
    print(f"ERROR: ImportError: python-tuf is not importable ({e}); run scripts/test-env.sh",
          file=sys.stderr)
    sys.exit(1)

# What "refused for a security reason" means for --expect-fail: a problem with the
# repository's metadata, or a download whose length is not the signed one.
SECURITY_ERRORS = (exceptions.RepositoryError, exceptions.DownloadLengthMismatchError)


def fetch(args: argparse.Namespace, metadata_dir: str) -> dict:
    """Runs the client workflow; raises what python-tuf raises."""
    with open(args.root, "rb") as f:
        anchor = f.read()
    os.makedirs(args.out, exist_ok=True)
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=args.metadata_url,
        target_dir=args.out,
        target_base_url=args.targets_url,
        bootstrap=anchor,
    )
    updater.refresh()
    info = updater.get_targetinfo(args.target)
    if info is None:
        raise LookupError(f"no target {args.target!r} in the channel's metadata")
    path = updater.download_target(info)
    # The versions the client now trusts, read back from what it stored.
    versions = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        with open(os.path.join(metadata_dir, f"{role}.json"), "rb") as f:
            versions[role] = json.load(f)["signed"]["version"]
    with open(os.path.join(metadata_dir, "root.json"), "rb") as f:
        consistent = json.load(f)["signed"].get("consistent_snapshot", False)
    return {
        "path": path,
        "length": info.length,
        "hashes": info.hashes,
        "custom": info.custom,
        "versions": versions,
        "consistent_snapshot": consistent,
    }


def expected_class(name: str):
    cls = getattr(exceptions, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    raise SystemExit(f"ERROR: {name!r} is not a class of tuf.api.exceptions")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--metadata-url", required=True, help="base URL of the metadata (.../metadata/)")
    p.add_argument("--targets-url", required=True, help="base URL of the targets (.../targets/)")
    p.add_argument("--root", required=True, help="the pinned root.json")
    p.add_argument("--target", required=True, help="target path, e.g. app/hello/hello.txt")
    p.add_argument("--out", required=True, help="directory the verified target is written to")
    p.add_argument("--metadata-dir", help="client state kept between runs (default: a temp dir)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--expect-fail", action="store_true", help="succeed only on a security refusal")
    g.add_argument("--expect-error", metavar="CLASS", help="succeed only on this exception class")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an error")
    args = p.parse_args()

    want = expected_class(args.expect_error) if args.expect_error else None

    tmp = None
    if args.metadata_dir:
        os.makedirs(args.metadata_dir, exist_ok=True)
        metadata_dir = args.metadata_dir
    else:
        tmp = tempfile.TemporaryDirectory(prefix="arca-tuf-check-")
        metadata_dir = tmp.name

    result = {"tuf_version": tuf.__version__, "target": args.target}
    error = None
    try:
        result.update(fetch(args, metadata_dir))
    except Exception as e:  # noqa: BLE001 - classified below
        error = e
        if args.verbose:
            traceback.print_exc()
    finally:
        if tmp is not None:
            tmp.cleanup()

    if error is None:
        v = result["versions"]
        result["outcome"] = "verified"
        line = (f"VERIFIED target={args.target} root={v['root']} timestamp={v['timestamp']} "
                f"snapshot={v['snapshot']} targets={v['targets']} "
                f"consistent_snapshot={result['consistent_snapshot']}")
        ok = not (args.expect_fail or want)
    else:
        kind = type(error).__name__
        result["outcome"] = "error"
        result["error"] = {"class": kind, "message": str(error)}
        if want is not None:
            ok = isinstance(error, want)
        elif args.expect_fail:
            ok = isinstance(error, SECURITY_ERRORS)
        else:
            ok = False
        line = (f"REFUSED as expected: {kind}: {error}" if ok else f"ERROR: {kind}: {error}")

    if args.json:
        print(json.dumps(result, sort_keys=True, default=str))
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
