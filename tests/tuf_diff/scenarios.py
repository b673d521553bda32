"""The differential scenarios: each one a rule of the TUF 1.0 client workflow (specification
section 5), named after that rule.

A scenario is `fn(r, c)`: `r` is the repository (repo.Repo) it builds state by state, `c` the
two clients (run.Clients) whose steps it calls: `c.init(root)`, `c.refresh()`,
`c.download(path)` (the first refresh or download initialises both clients from 1.root.json).
Every step runs in both clients and must agree; the scenario never says what the outcome
should be: python-tuf's ngclient decides that.

`@scenario` registers a function (ed25519 keys, consistent snapshots);
`@scenario(kind=..., consistent=...)` picks the keys of the four roles and the layout.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta

from tuf.api.metadata import DelegatedRole, Delegations, SuccinctRoles

from repo import Repo, in_days, now

SCENARIOS: dict = {}


def scenario(fn=None, *, kind: str = "ed25519", consistent: bool = True, step_timeout=None):
    def register(f):
        assert f.__name__ not in SCENARIOS, f.__name__
        f.repo_args = (kind, consistent)
        if step_timeout is not None:
            f.step_timeout = step_timeout
        SCENARIOS[f.__name__] = f
        return f

    return register(fn) if fn is not None else register


def start(r: Repo, c) -> None:
    """The usual first state: one target, every role at version 1, and a first refresh."""
    r.add_target("file.txt", b"hello, world\n")
    r.publish_all()
    c.refresh()


def past():
    return now() - timedelta(days=1)


# --- the basic workflow and key types ----------------------------------------------------


@scenario
def fresh_client_refreshes_and_downloads_a_target(r, c):
    start(r, c)
    c.download("file.txt")


@scenario(consistent=False)
def consistent_snapshot_false_fetches_plain_file_names(r, c):
    start(r, c)
    c.download("file.txt")
    r.add_target("second.txt", b"two")
    r.new_targets()
    c.download("second.txt")


@scenario
def consistent_snapshot_fetches_versioned_metadata_and_hash_prefixed_targets(r, c):
    start(r, c)
    r.add_target("dir/sub/nested.bin", b"\x00\x01\x02")
    r.new_targets()
    c.download("dir/sub/nested.bin")


@scenario
def new_versions_of_every_role_are_followed(r, c):
    start(r, c)
    for _ in range(3):
        r.new_targets()
        c.refresh()


def every_role_signed_with(kind: str, name: str) -> None:
    """Registers `name`: all four roles' keys are of `kind`; refresh and download."""

    def fn(r, c):
        start(r, c)
        c.download("file.txt")

    fn.__name__ = name
    scenario(fn, kind=kind)


every_role_signed_with("ecdsa-p256", "ecdsa_nistp256_keys_verify_every_role")
every_role_signed_with("ecdsa-p384", "ecdsa_nistp384_keys_verify_every_role")
every_role_signed_with("rsa-pss", "rsassa_pss_sha256_keys_verify_every_role")
every_role_signed_with("rsa-pkcs1", "rsa_pkcs1v15_sha256_keys_verify_every_role")


@scenario
def ecdsa_timestamp_key_under_an_ed25519_root(r, c):
    r.rotate_keys("timestamp", "ecdsa-p256")
    start(r, c)


@scenario
def rsa_targets_key_under_an_ed25519_root(r, c):
    r.rotate_keys("targets", "rsa-pss")
    start(r, c)
    c.download("file.txt")


@scenario
def root_listing_an_unknown_key_type_is_refused(r, c):
    # python-tuf refuses to load a root listing a key type it does not know.
    r.add_target("file.txt", b"x")
    r.publish_all()

    def add_unknown(signed):
        signed["keys"]["f" * 64] = {
            "keytype": "frobnicate",
            "scheme": "frobnicate-sha256",
            "keyval": {"public": "abcd"},
        }
        signed["roles"]["timestamp"]["keyids"].append("f" * 64)

    c.init(r.tampered("root", add_unknown))
    c.refresh()


@scenario
def root_listing_an_unknown_scheme_is_refused(r, c):
    r.publish_all()

    def odd_scheme(signed):
        keyid = signed["roles"]["timestamp"]["keyids"][0]
        signed["keys"][keyid]["scheme"] = "ed25519-but-not-quite"

    c.init(r.tampered("root", odd_scheme))
    c.refresh()


@scenario
def ecdsa_key_with_the_legacy_keytype_string_verifies(r, c):
    # Old repositories write keytype "ecdsa-sha2-nistp256" (keytype == scheme).
    r.rotate_keys("timestamp", "ecdsa-p256")
    for s in r.signers["timestamp"]:
        r.root.keys[s.public_key.keyid].keytype = "ecdsa-sha2-nistp256"
    start(r, c)


@scenario
def keyid_hash_algorithms_field_is_ignored(r, c):
    for role in ("root", "timestamp", "snapshot", "targets"):
        for s in r.signers[role]:
            r.root.keys[s.public_key.keyid].unrecognized_fields["keyid_hash_algorithms"] = [
                "sha256",
                "sha512",
            ]
    start(r, c)
    c.download("file.txt")


@scenario
def keyids_are_names_not_hashes_of_the_key(r, c):
    # TUF 1.0 leaves key id computation to the repository: a client must not recompute it.
    signer = r.signers["timestamp"][0]
    r.remove_key("timestamp", signer)
    r.add_key("timestamp", r.renamed(signer, "1" * 64))
    start(r, c)


@scenario
def signatures_repeating_one_keyid_are_refused_under_threshold_two(r, c):
    second = r.new_signer()
    r.add_key("timestamp", second)
    r.set_threshold("timestamp", 2)
    start(r, c)
    r.timestamp.version += 1
    r.write_raw("timestamp", r.with_repeated_signature("timestamp", second, 2))
    c.refresh()


@scenario
def signatures_repeating_one_keyid_make_the_file_malformed(r, c):
    # Threshold 1, met by the first signature; the repeat alone is what is wrong.
    start(r, c)
    r.timestamp.version += 1
    r.write_raw("timestamp", r.with_repeated_signature("timestamp", r.signers["timestamp"][0], 2))
    c.refresh()


@scenario
def root_signed_twice_by_one_key_does_not_meet_threshold_two(r, c):
    r.add_key("root", r.new_signer())
    r.set_threshold("root", 2)
    r.publish_all()
    c.init(r.with_repeated_signature("root", r.signers["root"][0], 2))


@scenario
def signature_by_a_key_of_another_role_does_not_count(r, c):
    start(r, c)
    r.timestamp.version += 1
    r.write("timestamp", signers=r.signers["snapshot"])
    c.refresh()


@scenario
def metadata_without_signatures_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    r.write("timestamp", signers=[])
    c.refresh()


# --- thresholds ------------------------------------------------------------------------


@scenario
def root_threshold_two_of_three_is_met(r, c):
    for _ in range(2):
        r.add_key("root", r.new_signer())
    r.set_threshold("root", 2)
    r.write("root", signers=r.signers["root"][:2])
    r.publish_all()
    c.refresh()


@scenario
def root_threshold_not_met_refuses_the_initial_root(r, c):
    r.add_key("root", r.new_signer())
    r.set_threshold("root", 2)
    r.write("root", signers=r.signers["root"][:1])
    r.publish_all()
    c.init()


@scenario
def timestamp_threshold_two_is_met(r, c):
    r.add_key("timestamp", r.new_signer())
    r.set_threshold("timestamp", 2)
    start(r, c)


def threshold_not_met(role):
    def fn(r, c):
        r.add_key(role, r.new_signer())
        r.set_threshold(role, 2)
        r.add_target("file.txt", b"x")
        r.publish_all()
        r.write(role, signers=r.signers[role][:1])
        c.refresh()

    fn.__name__ = f"{role}_threshold_not_met_is_refused"
    return scenario(fn)


for _role in ("timestamp", "snapshot", "targets"):
    threshold_not_met(_role)


@scenario
def new_root_raises_timestamp_threshold_above_its_signatures(r, c):
    start(r, c)
    r.add_key("timestamp", r.new_signer())
    r.set_threshold("timestamp", 2)
    r.new_root()
    r.write("timestamp", signers=r.signers["timestamp"][:1])
    c.refresh()


@scenario
def new_root_lowers_snapshot_threshold(r, c):
    r.add_key("snapshot", r.new_signer())
    r.set_threshold("snapshot", 2)
    start(r, c)
    r.set_threshold("snapshot", 1)
    r.new_root()
    r.snapshot.version += 1
    r.write("snapshot", signers=r.signers["snapshot"][1:])
    r.publish("timestamp")
    c.refresh()


@scenario
def new_root_must_meet_its_own_threshold(r, c):
    start(r, c)
    old = r.signers["root"][0]
    new = r.rotate_keys("root", count=2)
    r.set_threshold("root", 2)
    r.new_root(signers=[old, new[0]])
    c.refresh()


@scenario
def root_role_threshold_two_of_three_across_a_rotation(r, c):
    start(r, c)
    old = r.signers["root"][0]
    new = r.rotate_keys("root", count=3)
    r.set_threshold("root", 2)
    r.new_root(signers=[old] + new[:2])
    c.refresh()


# --- root rotation -----------------------------------------------------------------------


@scenario
def root_rotation_signed_by_old_and_new_keys_is_trusted(r, c):
    start(r, c)
    r.rotate_keys("root")
    r.new_root()
    c.refresh()


@scenario
def root_rotation_signed_only_by_new_keys_is_refused(r, c):
    start(r, c)
    new = r.rotate_keys("root")
    r.new_root(signers=new)
    c.refresh()


@scenario
def root_rotation_signed_only_by_old_keys_is_refused(r, c):
    start(r, c)
    old = list(r.signers["root"])
    r.rotate_keys("root")
    r.new_root(signers=old)
    c.refresh()


@scenario
def root_chain_of_several_rotations_in_one_refresh(r, c):
    start(r, c)
    for _ in range(4):
        r.rotate_keys("root")
        r.new_root()
    c.refresh()


@scenario
def root_rotation_of_every_role_key(r, c):
    start(r, c)
    for role in ("root", "timestamp", "snapshot", "targets"):
        r.rotate_keys(role)
    r.new_root()
    r.new_targets()
    c.download("file.txt")


@scenario
def root_chain_breaks_at_a_version_not_signed_by_its_predecessor(r, c):
    start(r, c)
    r.rotate_keys("root")
    r.new_root()  # 2: fine
    r.rotate_keys("root")
    third = list(r.signers["root"])
    r.new_root(signers=third)  # 3: not signed by 2's keys
    r.rotate_keys("root")
    r.new_root()  # 4: signed by 3's and 4's keys
    c.refresh()


@scenario
def root_file_with_the_wrong_version_is_refused(r, c):
    start(r, c)
    r.root.version = 3
    r.write_raw("root", r.signed_bytes("root"), file_name="2.root.json")
    c.refresh()


@scenario
def root_version_gap_ends_the_chain(r, c):
    start(r, c)
    r.root.version = 3
    r.write("root")
    c.refresh()


@scenario
def root_replay_of_the_trusted_version_as_next_is_refused(r, c):
    start(r, c)
    first = r.written["root"]
    r.write_raw("root", first, file_name="2.root.json")
    c.refresh()


@scenario
def expired_intermediate_root_is_fine(r, c):
    start(r, c)
    r.root.expires = past()
    r.new_root()
    r.root.expires = in_days(365)
    r.new_root()
    c.refresh()


@scenario
def expired_final_root_is_refused(r, c):
    start(r, c)
    r.root.expires = past()
    r.new_root()
    c.refresh()


@scenario
def expired_initial_root_without_successor_is_refused(r, c):
    r.root.expires = past()
    r.add_target("file.txt", b"x")
    r.publish_all()
    c.refresh()


@scenario
def fast_forward_recovery_new_timestamp_keys_discard_the_trusted_timestamp(r, c):
    start(r, c)
    for _ in range(5):
        r.publish("timestamp")
    c.refresh()
    r.rotate_keys("timestamp")
    r.new_root()
    r.timestamp.version = 1
    r.write("timestamp")
    c.refresh()


@scenario
def snapshot_key_rotation_alone_keeps_the_timestamps_snapshot_version(r, c):
    # The trusted timestamp still verifies (its keys did not change) and lists snapshot 4.
    start(r, c)
    for _ in range(3):
        r.publish("snapshot", "timestamp")
    c.refresh()
    r.rotate_keys("snapshot")
    r.new_root()
    r.snapshot.version = 1
    r.write("snapshot")
    r.publish("timestamp")
    c.refresh()


@scenario
def fast_forward_recovery_new_timestamp_and_snapshot_keys_allow_older_versions(r, c):
    start(r, c)
    for _ in range(3):
        r.publish("snapshot", "timestamp")
    c.refresh()
    r.rotate_keys("snapshot")
    r.rotate_keys("timestamp")
    r.new_root()
    r.snapshot.version = 1
    r.timestamp.version = 1
    r.write("snapshot")
    r.write("timestamp")
    c.refresh()


@scenario
def targets_key_rotation_alone_keeps_the_snapshots_targets_version(r, c):
    start(r, c)
    for _ in range(3):
        r.new_targets()
    c.refresh()
    r.rotate_keys("targets")
    r.new_root()
    r.targets.version = 1
    r.write("targets")
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def fast_forward_recovery_of_targets_with_new_snapshot_and_timestamp_keys(r, c):
    start(r, c)
    for _ in range(3):
        r.new_targets()
    c.refresh()
    for role in ("targets", "snapshot", "timestamp"):
        r.rotate_keys(role)
    r.new_root()
    for role in ("targets", "snapshot", "timestamp"):
        r.md[role].signed.version = 1
        r.write(role)
    c.download("file.txt")


@scenario
def expired_final_root_is_fixed_by_a_newer_root(r, c):
    start(r, c)
    r.root.expires = past()
    r.new_root()
    c.refresh()
    r.root.expires = in_days(365)
    r.new_root()
    c.refresh()


@scenario
def refresh_without_changes_keeps_the_trusted_files(r, c):
    start(r, c)
    c.refresh()
    c.download("file.txt")
    c.refresh()


@scenario
def root_with_ed25519_and_ecdsa_keys_threshold_one_is_met_by_ed25519(r, c):
    r.add_key("root", r.new_signer("ecdsa-p256"))
    start(r, c)


@scenario
def root_with_ed25519_and_ecdsa_keys_threshold_two_needs_both(r, c):
    r.add_key("root", r.new_signer("ecdsa-p256"))
    r.set_threshold("root", 2)
    start(r, c)


@scenario
def timestamp_rollback_after_root_rotation_without_new_timestamp_keys_is_refused(r, c):
    start(r, c)
    r.publish("timestamp")
    c.refresh()
    r.rotate_keys("snapshot")
    r.new_root()
    r.timestamp.version = 1
    r.write("timestamp")
    c.refresh()


# 256 root versions cost the unoptimised (debug) arca binary the tests run 12 s of CPU, more
# than the usual 10 s a step (and several times that on a machine busy with the whole suite);
# this scenario is about the cap, not speed, so its steps get 180 s.
@scenario(step_timeout=180)
def root_rotations_stop_after_256_versions(r, c):
    r.add_target("file.txt", b"x")
    r.publish_all()
    c.init()
    for _ in range(258):
        r.new_root()
    c.refresh()


@scenario
def new_root_switches_consistent_snapshot_on(r, c):
    r.root.consistent_snapshot = False
    r.add_target("file.txt", b"x")
    r.publish_all()
    c.refresh()
    r.root.consistent_snapshot = True
    r.new_root()
    r.add_target("file.txt", b"x")
    r.publish("targets", "snapshot", "timestamp")
    c.download("file.txt")


@scenario
def new_root_with_the_wrong_type_is_refused(r, c):
    start(r, c)
    r.root.version += 1
    r.write_raw("root", r.tampered("root", lambda s: s.update(_type="targets"), r.signers["root"]))
    c.refresh()


@scenario
def new_root_with_spec_version_2_is_refused(r, c):
    start(r, c)
    r.root.version += 1
    r.write_raw("root", r.tampered("root", lambda s: s.update(spec_version="2.0.0")))
    c.refresh()


@scenario
def spec_version_of_a_newer_minor_release_is_accepted(r, c):
    start(r, c)
    r.publish("timestamp")
    r.write_raw("timestamp", r.tampered("timestamp", lambda s: s.update(spec_version="1.99.0")))
    c.refresh()


@scenario
def unrecognised_fields_in_signed_metadata_are_kept_and_ignored(r, c):
    start(r, c)
    r.timestamp.unrecognized_fields["x-custom"] = {"nested": [1, 2, 3]}
    r.publish("timestamp")
    c.refresh()


@scenario
def root_larger_than_512000_bytes_is_refused(r, c):
    start(r, c)
    r.new_root()
    with open(f"{r.metadata_dir}/2.root.json", "ab") as f:
        f.write(b" " * 515_000)
    c.refresh()


@scenario
def root_with_a_threshold_of_zero_is_refused(r, c):
    r.publish_all()

    def zero(signed):
        signed["roles"]["targets"]["threshold"] = 0

    c.init(r.tampered("root", zero))


@scenario
def root_without_a_snapshot_role_is_refused(r, c):
    r.add_target("file.txt", b"x")
    r.publish_all()
    c.init(r.tampered("root", lambda s: s["roles"].pop("snapshot")))
    c.refresh()


@scenario
def expiry_not_written_as_utc_with_z_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    stamp = in_days(1).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    r.write_raw("timestamp", r.tampered("timestamp", lambda s: s.update(expires=stamp)))
    c.refresh()


@scenario
def initial_root_with_the_wrong_type_is_refused(r, c):
    r.publish_all()
    c.init(r.tampered("root", lambda s: s.update(_type="timestamp")))


@scenario
def initial_root_with_a_bad_signature_is_refused(r, c):
    r.publish_all()
    c.init(r.with_bad_signature("root"))


# --- timestamp -----------------------------------------------------------------------------


@scenario
def timestamp_rollback_is_refused(r, c):
    start(r, c)
    r.publish("timestamp")
    c.refresh()
    r.timestamp.version = 1
    r.write("timestamp")
    c.refresh()


@scenario
def timestamp_equal_version_with_other_content_keeps_the_trusted_one(r, c):
    start(r, c)
    r.publish("snapshot")
    r.write("timestamp")
    c.refresh()


@scenario
def timestamp_snapshot_version_rollback_is_refused(r, c):
    start(r, c)
    r.publish("snapshot", "timestamp")
    c.refresh()
    r.timestamp.snapshot_meta.version = 1
    r.publish("timestamp")
    c.refresh()


@scenario
def timestamp_expired_is_refused(r, c):
    start(r, c)
    r.timestamp.expires = past()
    r.publish("timestamp")
    c.refresh()


@scenario
def expired_trusted_timestamp_is_replaced_by_a_new_one(r, c):
    start(r, c)
    r.timestamp.expires = past()
    r.publish("timestamp")
    c.refresh()
    r.timestamp.expires = in_days(1)
    r.publish("timestamp")
    c.refresh()


@scenario
def timestamp_larger_than_16384_bytes_is_refused(r, c):
    start(r, c)
    r.publish("timestamp")
    with open(f"{r.metadata_dir}/timestamp.json", "ab") as f:
        f.write(b" " * 16384)
    c.refresh()


@scenario
def timestamp_just_under_16384_bytes_is_accepted(r, c):
    start(r, c)
    r.publish("timestamp")
    path = f"{r.metadata_dir}/timestamp.json"
    size = len(open(path, "rb").read())
    with open(path, "ab") as f:
        f.write(b" " * (16384 - size))
    c.refresh()


@scenario
def timestamp_with_a_tampered_signature_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    r.write_raw("timestamp", r.with_bad_signature("timestamp"))
    c.refresh()


@scenario
def timestamp_with_the_wrong_type_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    r.write_raw("timestamp", r.tampered("timestamp", lambda s: s.update(_type="snapshot")))
    c.refresh()


@scenario
def timestamp_missing_is_refused(r, c):
    r.add_target("file.txt", b"x")
    r.publish_all()
    os.remove(f"{r.metadata_dir}/timestamp.json")
    c.refresh()


@scenario
def timestamp_signed_content_changed_after_signing_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    data = json.loads(r.signed_bytes("timestamp"))
    data["signed"]["version"] += 1
    r.write_raw("timestamp", json.dumps(data).encode())
    c.refresh()


@scenario
def timestamp_without_snapshot_meta_is_refused(r, c):
    start(r, c)
    r.timestamp.version += 1
    r.write_raw("timestamp", r.tampered("timestamp", lambda s: s.update(meta={})))
    c.refresh()


@scenario
def timestamp_unparseable_json_is_refused(r, c):
    start(r, c)
    with open(f"{r.metadata_dir}/timestamp.json", "wb") as f:
        f.write(b'{"signed": ')
    c.refresh()


@scenario
def timestamp_snapshot_hash_mismatch_is_refused(r, c):
    r.timestamp_lists_hashes = True
    start(r, c)
    r.publish("snapshot", "timestamp")
    r.timestamp.snapshot_meta.hashes = {"sha256": "0" * 64}
    r.publish("timestamp")
    c.refresh()


@scenario
def timestamp_snapshot_length_mismatch_is_refused(r, c):
    r.timestamp_lists_hashes = True
    start(r, c)
    r.publish("snapshot", "timestamp")
    r.timestamp.snapshot_meta.length -= 1
    r.publish("timestamp")
    c.refresh()


@scenario
def timestamp_snapshot_hashes_that_match_are_accepted(r, c):
    r.timestamp_lists_hashes = True
    start(r, c)
    r.new_targets()
    c.download("file.txt")


# --- snapshot -----------------------------------------------------------------------------


@scenario
def snapshot_version_other_than_the_timestamps_is_refused(r, c):
    start(r, c)
    r.publish("snapshot")
    # 3.snapshot.json holds snapshot version 2.
    r.write_raw("snapshot", r.written["snapshot"], file_name=r.file_name("snapshot", 3))
    r.timestamp.snapshot_meta.version = 3
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_targets_version_rollback_is_refused(r, c):
    start(r, c)
    r.new_targets()
    c.refresh()
    r.snapshot.meta["targets.json"].version = 1
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_role_removed_is_refused(r, c):
    start(r, c)
    r.snapshot.meta["extra.json"] = r.snapshot.meta["targets.json"]
    r.publish("snapshot", "timestamp")
    c.refresh()
    del r.snapshot.meta["extra.json"]
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_without_targets_is_refused(r, c):
    start(r, c)
    del r.snapshot.meta["targets.json"]
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_expired_is_refused(r, c):
    start(r, c)
    r.snapshot.expires = past()
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_larger_than_2000000_bytes_without_length_is_refused(r, c):
    start(r, c)
    r.publish("snapshot", "timestamp")
    with open(f"{r.metadata_dir}/{r.file_name('snapshot')}", "ab") as f:
        f.write(b" " * 2_050_000)
    c.refresh()


@scenario
def snapshot_larger_than_its_listed_length_is_refused(r, c):
    r.timestamp_lists_hashes = True
    start(r, c)
    r.publish("snapshot")
    r.timestamp.snapshot_meta.length = 100
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_with_a_tampered_signature_is_refused(r, c):
    start(r, c)
    r.snapshot.version += 1
    r.write_raw("snapshot", r.with_bad_signature("snapshot"))
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_with_the_wrong_type_is_refused(r, c):
    start(r, c)
    r.snapshot.version += 1
    r.write_raw("snapshot", r.tampered("snapshot", lambda s: s.update(_type="timestamp")))
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_file_missing_is_refused(r, c):
    start(r, c)
    r.timestamp.snapshot_meta.version = 5
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_equal_version_with_other_content_keeps_the_trusted_one(r, c):
    # N.snapshot.json rewritten under the trusted version, listing a newer targets.
    start(r, c)
    r.publish("targets")
    r.write("snapshot")
    r.publish("timestamp")
    c.refresh()


@scenario
def targets_equal_version_with_other_content_keeps_the_trusted_one(r, c):
    # N.targets.json rewritten under the trusted version with another target; snapshot
    # and timestamp move on but list the same targets version.
    start(r, c)
    r.add_target("second.txt", b"two")
    r.write("targets")
    r.publish("snapshot", "timestamp")
    c.download("second.txt")


@scenario(consistent=False)
def snapshot_of_the_trusted_version_is_not_fetched_again(r, c):
    # Non-consistent snapshot: snapshot.json changes under an unchanged version.
    start(r, c)
    r.new_targets()
    r.snapshot.version -= 1
    r.write("snapshot")
    r.publish("timestamp")
    c.refresh()


@scenario
def snapshot_targets_hash_mismatch_is_refused(r, c):
    r.snapshot_lists_hashes = True
    start(r, c)
    r.publish("targets")
    r.snapshot.meta["targets.json"].hashes = {"sha256": "0" * 64}
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_targets_length_mismatch_is_refused(r, c):
    r.snapshot_lists_hashes = True
    start(r, c)
    r.publish("targets")
    r.snapshot.meta["targets.json"].length += 7
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def snapshot_targets_hashes_that_match_are_accepted(r, c):
    r.snapshot_lists_hashes = True
    start(r, c)
    r.new_targets()
    c.download("file.txt")


# --- targets ------------------------------------------------------------------------------


@scenario
def targets_version_other_than_the_snapshots_is_refused(r, c):
    start(r, c)
    r.targets.version = 3
    r.write_raw("targets", r.signed_bytes("targets"), file_name=r.file_name("targets", 2))
    r.snapshot.meta["targets.json"].version = 2
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def targets_expired_is_refused(r, c):
    start(r, c)
    r.targets.expires = past()
    r.new_targets()
    c.refresh()


@scenario
def targets_larger_than_5000000_bytes_without_length_is_refused(r, c):
    start(r, c)
    r.new_targets()
    with open(f"{r.metadata_dir}/{r.file_name('targets')}", "ab") as f:
        f.write(b" " * 5_100_000)
    c.refresh()


@scenario
def targets_with_a_tampered_signature_is_refused(r, c):
    start(r, c)
    r.targets.version += 1
    r.write_raw("targets", r.with_bad_signature("targets"))
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def targets_with_the_wrong_type_is_refused(r, c):
    start(r, c)
    r.targets.version += 1
    r.write_raw("targets", r.tampered("targets", lambda s: s.update(_type="root")))
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def targets_file_missing_is_refused(r, c):
    start(r, c)
    r.snapshot.meta["targets.json"].version = 9
    r.publish("snapshot", "timestamp")
    c.refresh()


@scenario
def targets_with_a_malformed_target_entry_is_refused(r, c):
    start(r, c)
    r.targets.version += 1

    def no_length(signed):
        del signed["targets"]["file.txt"]["length"]

    r.write_raw("targets", r.tampered("targets", no_length))
    r.publish("snapshot", "timestamp")
    c.refresh()


# --- target downloads ---------------------------------------------------------------------


@scenario
def target_with_the_wrong_hash_is_refused(r, c):
    start(r, c)
    r.put_target("file.txt", b"HELLO, WORLD\n")
    c.download("file.txt")


@scenario
def target_longer_than_its_length_is_refused(r, c):
    start(r, c)
    r.put_target("file.txt", b"hello, world\n and more")
    c.download("file.txt")


@scenario
def target_shorter_than_its_length_is_refused(r, c):
    start(r, c)
    r.put_target("file.txt", b"hello")
    c.download("file.txt")


@scenario
def target_file_missing_is_refused(r, c):
    start(r, c)
    r.remove_target_files("file.txt")
    c.download("file.txt")


@scenario
def target_not_listed_is_refused(r, c):
    start(r, c)
    c.download("not-there.txt")


@scenario
def target_already_in_the_target_dir_that_verifies_is_not_fetched(r, c):
    start(r, c)
    c.put_local_target("file.txt", b"hello, world\n")
    r.remove_target_files("file.txt")
    c.download("file.txt")


@scenario
def target_in_the_target_dir_that_does_not_verify_is_replaced(r, c):
    start(r, c)
    c.put_local_target("file.txt", b"stale bytes")
    c.download("file.txt")


@scenario
def target_path_with_directories_is_stored_url_encoded(r, c):
    r.add_target("a/b/c d+e.txt", b"nested")
    r.publish_all()
    c.download("a/b/c d+e.txt")


@scenario
def target_listing_sha256_and_sha512_is_checked_by_both(r, c):
    r.add_target("file.txt", b"two hashes", hashes=("sha256", "sha512"))
    r.publish_all()
    c.download("file.txt")


@scenario
def target_with_a_wrong_sha512_is_refused(r, c):
    info = r.add_target("file.txt", b"two hashes", hashes=("sha256", "sha512"))
    info.hashes["sha512"] = "0" * 128
    r.publish_all()
    c.download("file.txt")


@scenario
def target_url_uses_the_sha256_hash_listed_first(r, c):
    # Served under the sha256 name only (metadata lists hashes sorted: sha256 first).
    info = r.add_target("file.txt", b"two hashes", hashes=("sha512", "sha256"))
    r.publish_all()
    r.remove_target_files("file.txt")
    with open(os.path.join(r.targets_dir, f"{info.hashes['sha256']}.file.txt"), "wb") as f:
        f.write(b"two hashes")
    c.download("file.txt")


@scenario
def target_custom_metadata_is_ignored(r, c):
    info = r.add_target("file.txt", b"custom")
    info.unrecognized_fields["custom"] = {"release": "1.2.3", "tags": ["a", "b"]}
    r.publish_all()
    c.download("file.txt")


@scenario
def target_of_zero_bytes_is_downloaded(r, c):
    r.add_target("empty", b"")
    r.publish_all()
    c.download("empty")


@scenario
def target_replaced_in_a_new_targets_version_is_downloaded_anew(r, c):
    start(r, c)
    c.download("file.txt")
    r.add_target("file.txt", b"version two\n")
    r.new_targets()
    c.download("file.txt")


@scenario
def target_download_with_expired_timestamp_is_refused(r, c):
    start(r, c)
    r.timestamp.expires = past()
    r.publish("timestamp")
    c.download("file.txt")


# --- delegations ----------------------------------------------------------------------------


def delegated_start(r, c, role: str, path: str = "deleg/file.txt"):
    """Target `path` listed by delegated `role`, everything published, then a download."""
    r.add_target(path, b"delegated\n", role=role)
    r.publish_all()
    c.download(path)


@scenario
def delegated_target_is_found(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*"])
    delegated_start(r, c, "role-a")


@scenario
def multi_level_delegation_is_followed(r, c):
    r.delegate("targets", "level-1", paths=["deleg/*"])
    r.delegate("level-1", "level-2", paths=["deleg/*"])
    r.delegate("level-2", "level-3", paths=["deleg/*"])
    delegated_start(r, c, "level-3")


@scenario
def terminating_delegation_stops_the_search(r, c):
    r.delegate("targets", "first", paths=["deleg/*"], terminating=True)
    r.delegate("targets", "second", paths=["deleg/*"])
    r.add_target("deleg/file.txt", b"from second", role="second")
    r.publish_all()
    c.download("deleg/file.txt")


@scenario
def non_terminating_delegation_lets_the_search_continue(r, c):
    r.delegate("targets", "first", paths=["deleg/*"])
    r.delegate("targets", "second", paths=["deleg/*"])
    delegated_start(r, c, "second")


@scenario
def delegation_order_decides_which_role_wins(r, c):
    r.delegate("targets", "first", paths=["deleg/*"])
    r.delegate("targets", "second", paths=["deleg/*"])
    r.add_target("deleg/file.txt", b"from first", role="first")
    r.add_target("deleg/file.txt", b"from second", role="second")
    r.put_target("deleg/file.txt", b"from first", r.role("first").targets["deleg/file.txt"])
    r.publish_all()
    c.download("deleg/file.txt")


@scenario
def top_level_target_wins_over_a_delegated_one(r, c):
    r.add_target("deleg/file.txt", b"top level")
    r.delegate("targets", "role-a", paths=["deleg/*"])
    r.add_target("deleg/file.txt", b"delegated", role="role-a")
    r.put_target("deleg/file.txt", b"top level", r.targets.targets["deleg/file.txt"])
    r.publish_all()
    c.download("deleg/file.txt")


@scenario
def delegation_cycle_ends_without_the_target(r, c):
    a = r.delegate("targets", "role-a", paths=["*"])
    r.delegate("role-a", "role-b", paths=["*"])
    # role-b delegates back to role-a (same keys).
    r.role("role-b").delegations = Delegations(keys={}, roles={})
    r.role("role-b").delegations.roles["role-a"] = DelegatedRole("role-a", [], 1, False, ["*"])
    r.role("role-b").add_key(a[0].public_key, "role-a")
    r.publish_all()
    c.download("nowhere.txt")


@scenario
def delegation_star_does_not_cross_a_slash(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*"])
    r.add_target("deleg/sub/file.txt", b"deep", role="role-a")
    r.publish_all()
    c.download("deleg/sub/file.txt")


@scenario
def delegation_star_matches_within_one_segment(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*.txt"])
    delegated_start(r, c, "role-a")


@scenario
def delegation_question_mark_matches_one_character(r, c):
    r.delegate("targets", "role-a", paths=["deleg/fil?.txt"])
    delegated_start(r, c, "role-a")


@scenario
def delegation_question_mark_does_not_match_a_slash(r, c):
    r.delegate("targets", "role-a", paths=["deleg?file.txt"])
    delegated_start(r, c, "role-a")


@scenario
def delegation_path_not_matching_is_not_searched(r, c):
    r.delegate("targets", "role-a", paths=["other/*"])
    delegated_start(r, c, "role-a")


@scenario
def delegation_path_hash_prefixes_select_the_role(r, c):
    prefix = hashlib.sha256(b"deleg/file.txt").hexdigest()[:2]
    r.delegate("targets", "role-a", path_hash_prefixes=[prefix])
    delegated_start(r, c, "role-a")


@scenario
def delegation_path_hash_prefix_not_matching_is_not_searched(r, c):
    first = hashlib.sha256(b"deleg/file.txt").hexdigest()[0]
    other = "0" if first != "0" else "1"
    r.delegate("targets", "role-a", path_hash_prefixes=[other])
    delegated_start(r, c, "role-a")


@scenario
def succinct_hash_bins_find_the_target_in_its_bin(r, c):
    r.delegate_succinct(3, "bin")
    succinct: SuccinctRoles = r.targets.delegations.succinct_roles
    bin_name = succinct.get_role_for_target("deleg/file.txt")
    delegated_start(r, c, bin_name)


@scenario
def role_name_needing_percent_encoding_is_fetched_encoded(r, c):
    r.delegate("targets", "team a/b?c", paths=["deleg/*"])
    delegated_start(r, c, "team a/b?c")


@scenario
def delegated_role_expired_is_refused(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*"])
    r.role("role-a").expires = past()
    delegated_start(r, c, "role-a")


@scenario
def delegated_role_threshold_not_met_is_refused(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*"], signers=[r.new_signer(), r.new_signer()])
    r.targets.delegations.roles["role-a"].threshold = 2
    r.add_target("deleg/file.txt", b"x", role="role-a")
    r.publish_all()
    r.write("role-a", signers=r.signers["role-a"][:1])
    r.publish("snapshot", "timestamp")
    c.download("deleg/file.txt")


@scenario
def delegated_role_version_rollback_is_refused(r, c):
    r.delegate("targets", "role-a", paths=["deleg/*"])
    r.add_target("deleg/file.txt", b"x", role="role-a")
    r.publish_all()
    r.new_targets("role-a")
    c.download("deleg/file.txt")
    r.snapshot.meta["role-a.json"].version = 1
    r.publish("snapshot", "timestamp")
    c.download("deleg/file.txt")
