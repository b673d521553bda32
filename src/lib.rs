//! arca: a secure artifact repository and promotion service.
//!
//! Layers, top to bottom: `startup` (the composition root) -> `cli` / `http` (thin: parse,
//! call, print) -> `service` (use cases, one transaction each, and the read models) -> pure
//! domain rules (`policy::signers`, `tuf::repo`'s metadata building, `arca_keys`' trust chain) ->
//! storage (`db`, `arca_store`); `model` holds the wire types every layer shares. See
//! `docs/architecture.md`.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod devcert;
pub mod home;
pub mod http;
pub mod keyring;
pub mod model;
pub mod policy;
pub mod rollout;
pub mod service;
pub mod startup;
pub mod tuf;
