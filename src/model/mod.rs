//! Types shared across the layers: validated names and the API's wire types.

pub mod api;
pub mod limits;
mod names;

pub use names::{ArtifactName, ChannelName, FileName, MAX_NAME_LEN, NameError, Version};
