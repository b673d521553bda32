//! The integration tests, one binary (`cargo test --test it`): each former `tests/X.rs` is
//! the module `X`, so `cargo test --test it X::` runs one file's tests. One binary links the
//! arca library once instead of once a file. `common` is the harness they share.

// `params![...]` (common::db) in every module.
#[macro_use]
mod common;

mod agent;
mod agent_exit;
mod audit;
mod backup;
mod board;
mod cli_conventions;
mod cli_docs;
mod client_attacks;
mod clock;
mod crash;
mod db_copy;
mod encrypted_keys;
mod errors;
mod fleet;
mod intoto_interop;
mod key_rotation;
mod limits;
mod meta_lease;
mod metadata_cache;
mod monitoring;
mod pg_concurrency;
mod pg_outage;
mod pkcs11;
mod policy_change;
mod promotion;
mod promotion_guarantees;
mod push_pull;
mod readme;
mod refusals;
mod reporter_tokens;
mod rolling_upgrade;
mod rollout;
mod s3;
mod scale_out;
mod server_keys;
mod several_servers;
mod slow_mirror;
mod staged_uploads;
mod store_health;
mod sweeps;
mod tls;
mod token_scopes;
mod tuf_diff;
mod tuf_repo;
