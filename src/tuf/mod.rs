//! Each channel as a TUF repository: metadata types, publishing, and the client workflow.

pub mod client;
pub mod clock;
pub mod keys;
pub mod metadata;
pub mod repo;
