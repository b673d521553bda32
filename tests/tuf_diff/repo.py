"""A TUF repository that the differential scenarios build, state by state.

Built on python-tuf's repository API (`tuf.api.metadata`) and securesystemslib's
`CryptoSigner`. It keeps the roles' metadata, their signers and versions, and writes what a
static TUF repository serves into a directory:

    metadata/N.root.json, metadata/root.json        every root version
    metadata/N.ROLE.json (consistent snapshot)       or metadata/ROLE.json
    metadata/timestamp.json
    targets/DIR/HASH.NAME (consistent snapshot)      or targets/PATH

Nothing is written until a scenario asks: `publish_all()` writes every role at its current
version, `publish(role, ...)` bumps the named roles' versions and writes just those, and the
`write_*` and `put_*` methods write one file exactly as given (a replay, a tampered copy).
Snapshot and timestamp list the versions (and, when asked, lengths and hashes) of what was
last written.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime, timedelta, timezone
from urllib import parse

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Signature, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")

# Key kinds a scenario may ask for, and how to make one. RSA keys are 2048 bits: the size
# changes nothing the clients check, and 3072-bit keys take a second each to generate.
KINDS = {
    "ed25519": lambda: CryptoSigner.generate_ed25519(),
    "ecdsa-p256": lambda: CryptoSigner.generate_ecdsa(scheme="ecdsa-sha2-nistp256"),
    "ecdsa-p384": lambda: CryptoSigner.generate_ecdsa(scheme="ecdsa-sha2-nistp384"),
    "rsa-pss": lambda: CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256", size=2048),
    "rsa-pkcs1": lambda: CryptoSigner.generate_rsa(scheme="rsa-pkcs1v15-sha256", size=2048),
}

# Keys are generated once per process and handed out in order: each repository gets
# distinct keys, and a run of every scenario does not spend its time generating RSA keys.
_POOL: dict[str, list[Signer]] = {}


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def in_days(days: float) -> datetime:
    return now() + timedelta(days=days)


class Repo:
    """One TUF repository served from `base` (see the module's documentation)."""

    def __init__(self, base: str, kind: str = "ed25519", consistent_snapshot: bool = True):
        self.base = base
        self.metadata_dir = os.path.join(base, "metadata")
        self.targets_dir = os.path.join(base, "targets")
        os.makedirs(self.metadata_dir)
        os.makedirs(self.targets_dir)
        self._handed_out: dict[str, int] = {}
        self.md: dict[str, Metadata] = {
            "root": Metadata(Root(expires=in_days(365), consistent_snapshot=consistent_snapshot)),
            "timestamp": Metadata(Timestamp(expires=in_days(1))),
            "snapshot": Metadata(Snapshot(expires=in_days(7))),
            "targets": Metadata(Targets(expires=in_days(30))),
        }
        self.signers: dict[str, list[Signer]] = {}
        for role in TOP_LEVEL:
            self.signers[role] = []
            self.add_key(role, self.new_signer(kind))
        # The root signers of the last root written: a new root is signed by them too.
        self.previous_root_signers: list[Signer] = []
        # Which meta entries list lengths and hashes besides the version.
        self.snapshot_lists_hashes = False
        self.timestamp_lists_hashes = False
        self.written: dict[str, bytes] = {}

    # --- keys -----------------------------------------------------------------------------

    def new_signer(self, kind: str = "ed25519") -> Signer:
        """A key of `kind` this repository has not used yet."""
        n = self._handed_out.get(kind, 0)
        self._handed_out[kind] = n + 1
        pool = _POOL.setdefault(kind, [])
        while len(pool) <= n:
            pool.append(KINDS[kind]())
        return pool[n]

    @staticmethod
    def renamed(signer: Signer, keyid: str) -> Signer:
        """`signer` under another key id (what TUF 1.0 allows a repository to choose)."""
        return Renamed(signer, keyid)

    @property
    def root(self) -> Root:
        return self.md["root"].signed

    @property
    def timestamp(self) -> Timestamp:
        return self.md["timestamp"].signed

    @property
    def snapshot(self) -> Snapshot:
        return self.md["snapshot"].signed

    @property
    def targets(self) -> Targets:
        return self.md["targets"].signed

    def add_key(self, role: str, signer: Signer) -> None:
        """Lists `signer`'s key for top-level `role` in root and signs that role with it."""
        # A copy: the pool's keys are shared, and a scenario may edit the listed one.
        self.root.add_key(copy.deepcopy(signer.public_key), role)
        self.signers[role].append(signer)

    def remove_key(self, role: str, signer: Signer) -> None:
        self.root.revoke_key(signer.public_key.keyid, role)
        self.signers[role] = [s for s in self.signers[role] if s is not signer]

    def rotate_keys(self, role: str, kind: str = "ed25519", count: int = 1) -> list[Signer]:
        """Replaces every key of top-level `role` with `count` new ones."""
        for s in list(self.signers[role]):
            self.remove_key(role, s)
        new = [self.new_signer(kind) for _ in range(count)]
        for s in new:
            self.add_key(role, s)
        return new

    def set_threshold(self, role: str, threshold: int) -> None:
        self.root.roles[role].threshold = threshold

    # --- targets and delegations ----------------------------------------------------------

    def role(self, name: str) -> Targets:
        return self.md[name].signed

    def add_target(
        self, path: str, data: bytes, role: str = "targets", hashes: tuple[str, ...] = ("sha256",)
    ) -> TargetFile:
        """Lists `path` in `role` and stores its bytes where clients look for them."""
        info = TargetFile.from_data(path, data, list(hashes))
        self.role(role).targets[path] = info
        self.put_target(path, data, info)
        return info

    def target_file_names(self, path: str, info: TargetFile) -> list[str]:
        """Where a target is served: under every hash with consistent snapshots."""
        if not self.root.consistent_snapshot:
            return [path]
        directory, sep, name = path.rpartition("/")
        return [f"{directory}{sep}{h}.{name}" for h in info.hashes.values()]

    def put_target(self, path: str, data: bytes, info: TargetFile | None = None) -> None:
        """Serves `data` as target `path` (as listed in `info`, default the listing)."""
        info = info or self.find_target(path)
        for name in self.target_file_names(path, info):
            full = os.path.join(self.targets_dir, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)

    def remove_target_files(self, path: str) -> None:
        for name in self.target_file_names(path, self.find_target(path)):
            os.remove(os.path.join(self.targets_dir, name))

    def find_target(self, path: str) -> TargetFile:
        for name, md in self.md.items():
            if isinstance(md.signed, Targets) and path in md.signed.targets:
                return md.signed.targets[path]
        raise KeyError(path)

    def delegate(
        self,
        parent: str,
        name: str,
        paths: list[str] | None = None,
        path_hash_prefixes: list[str] | None = None,
        terminating: bool = False,
        signers: list[Signer] | None = None,
        threshold: int = 1,
    ) -> list[Signer]:
        """Delegates from targets role `parent` to a new role `name` (default paths `*`)."""
        if paths is None and path_hash_prefixes is None:
            paths = ["*"]
        signers = signers or [self.new_signer()]
        p = self.role(parent)
        if p.delegations is None:
            p.delegations = Delegations(keys={}, roles={})
        p.delegations.roles[name] = DelegatedRole(
            name, [], threshold, terminating, paths, path_hash_prefixes
        )
        for s in signers:
            p.add_key(copy.deepcopy(s.public_key), name)
        self.md[name] = Metadata(Targets(expires=in_days(30)))
        self.signers[name] = signers
        self.snapshot.meta[f"{name}.json"] = MetaFile(1)
        return signers

    def delegate_succinct(self, bit_length: int, prefix: str) -> list[str]:
        """Hash bins below top-level targets, one key for all; returns the bins' names."""
        signer = self.new_signer()
        succinct = SuccinctRoles([], 1, bit_length, prefix)
        self.targets.delegations = Delegations(keys={}, succinct_roles=succinct)
        self.targets.add_key(copy.deepcopy(signer.public_key))
        names = list(succinct.get_roles())
        for name in names:
            self.md[name] = Metadata(Targets(expires=in_days(30)))
            self.signers[name] = [signer]
            self.snapshot.meta[f"{name}.json"] = MetaFile(1)
        return names

    # --- writing --------------------------------------------------------------------------

    def file_name(self, role: str, version: int | None = None) -> str:
        """The served file name of `role` at `version` (default its current one)."""
        version = self.md[role].signed.version if version is None else version
        encoded = parse.quote(role, "")
        if role == "timestamp":
            return "timestamp.json"
        if role == "root" or self.root.consistent_snapshot:
            return f"{version}.{encoded}.json"
        return f"{encoded}.json"

    def signed_bytes(self, role: str, signers: list[Signer] | None = None) -> bytes:
        """`role`'s metadata signed by `signers` (default its keys; root: old and new ones)."""
        md = self.md[role]
        if signers is None:
            signers = self.signers[role]
            if role == "root":
                ids = {s.public_key.keyid for s in signers}
                signers = signers + [
                    s for s in self.previous_root_signers if s.public_key.keyid not in ids
                ]
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        return md.to_bytes()

    def write(self, role: str, signers: list[Signer] | None = None) -> bytes:
        """Signs `role` at its current version and writes it, updating the meta that lists it."""
        data = self.signed_bytes(role, signers)
        self.write_raw(role, data)
        if role == "root":
            self.previous_root_signers = list(self.signers["root"])
        return data

    def write_raw(self, role: str, data: bytes, file_name: str | None = None) -> None:
        """Serves `data` as `role`'s file and lists it (version, length, hashes) in the meta."""
        name = file_name or self.file_name(role)
        with open(os.path.join(self.metadata_dir, name), "wb") as f:
            f.write(data)
        if role == "root" and file_name is None:
            with open(os.path.join(self.metadata_dir, "root.json"), "wb") as f:
                f.write(data)
        self.written[role] = data
        version = json.loads(data)["signed"].get("version", 0)
        if role == "snapshot":
            self.timestamp.snapshot_meta = self.meta_file(version, data, self.timestamp_lists_hashes)
        elif role not in ("root", "timestamp"):
            self.snapshot.meta[f"{role}.json"] = self.meta_file(
                version, data, self.snapshot_lists_hashes
            )

    @staticmethod
    def meta_file(version: int, data: bytes, with_hashes: bool) -> MetaFile:
        if with_hashes:
            return MetaFile.from_data(version, data, ["sha256"])
        return MetaFile(version)

    def publish_all(self) -> None:
        """Writes every role at its current version: delegated roles, targets, snapshot,
        timestamp, and root when none is written yet."""
        if "root" not in self.written:
            self.write("root")
        for role in self.md:
            if role not in TOP_LEVEL:
                self.write(role)
        for role in ("targets", "snapshot", "timestamp"):
            self.write(role)

    def publish(self, *roles: str) -> None:
        """Bumps the versions of `roles` and writes them, in the order files depend on one
        another (delegated roles, targets, snapshot, timestamp; root first)."""
        order = ["root"] + [r for r in self.md if r not in TOP_LEVEL]
        order += ["targets", "snapshot", "timestamp"]
        for role in order:
            if role in roles:
                self.md[role].signed.version += 1
                self.write(role)

    def new_targets(self, role: str = "targets") -> None:
        """A new version of `role`, and the snapshot and timestamp that list it."""
        self.publish(role, "snapshot", "timestamp")

    def new_root(self, signers: list[Signer] | None = None) -> bytes:
        """The next root version, signed by the previous and the new root keys (or `signers`)."""
        self.root.version += 1
        return self.write("root", signers)

    # --- hand-made files ------------------------------------------------------------------

    def tampered(self, role: str, change, signers: list[Signer] | None = None) -> bytes:
        """`role` signed as usual, then `change(signed_dict)` applied and signed again over
        the changed dictionary (so the signature is valid: for _type, spec_version, ...)."""
        data = json.loads(self.signed_bytes(role, signers))
        change(data["signed"])
        msg = encode_canonical(data["signed"]).encode()
        signers = signers if signers is not None else self.signers[role]
        data["signatures"] = [s.sign(msg).to_dict() for s in signers]
        return json.dumps(data, indent=1).encode()

    def with_bad_signature(self, role: str) -> bytes:
        """`role`'s file with one byte of each signature flipped."""
        data = json.loads(self.signed_bytes(role))
        for sig in data["signatures"]:
            s = sig["sig"]
            sig["sig"] = ("1" if s[0] == "0" else "0") + s[1:]
        return json.dumps(data, indent=1).encode()

    def with_repeated_signature(self, role: str, signer: Signer, times: int) -> bytes:
        """`role` signed `times` times by one key: the same key id repeated."""
        md = copy.deepcopy(self.md[role])
        msg = encode_canonical(md.signed.to_dict()).encode()
        sig: Signature = signer.sign(msg)
        data = json.loads(md.to_bytes())
        data["signatures"] = [sig.to_dict()] * times
        return json.dumps(data, indent=1).encode()


class Renamed(Signer):
    """A signer whose key (and signatures) carry a key id of the repository's choosing."""

    def __init__(self, inner: Signer, keyid: str):
        self.inner = inner
        self._key = copy.deepcopy(inner.public_key)
        self._key.keyid = keyid

    @property
    def public_key(self):
        return self._key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._key.keyid, self.inner.sign(payload).signature)

    @classmethod
    def from_priv_key_uri(cls, *args, **kwargs):
        raise NotImplementedError
