//! Turning a store URL into an `object_store` backend.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::StoreError;

/// A backend plus, when it is the local disk, its root directory (for sweeping the staging
/// files that `LocalFileSystem` hides from listings).
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) local_root: Option<PathBuf>,
}

pub(crate) fn open_backend(
    url: &str,
    local_root: &FsPath,
    options: &[(String, String)],
) -> Result<Backend, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if url.is_empty() || url == "file" {
        return open_local(local_root, options).map_err(invalid);
    }
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let root = parsed
                .to_file_path()
                .map_err(|()| invalid("not an absolute local path".into()))?;
            open_local(&root, options).map_err(invalid)
        }
        "s3" | "gs" | "az" => open_cloud(url, &parsed, options).map_err(invalid),
        other => Err(invalid(format!(
            "unsupported scheme {other:?} (expected file, s3, gs or az)"
        ))),
    }
}

fn open_local(root: &FsPath, options: &[(String, String)]) -> Result<Backend, String> {
    if let Some((key, _)) = options.first() {
        return Err(format!("option {key:?} does not apply to a local store"));
    }
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| e.to_string())?
        // A blob the server has acknowledged must survive a power cut (guarantee 8 in docs/security.md), as it
        // would on S3; the cost is one fsync per upload.
        .with_fsync(true);
    Ok(Backend {
        store: Arc::new(store),
        local_root: Some(root.to_path_buf()),
    })
}

/// Applies `with_url`, then every option, to a cloud builder and builds it.
macro_rules! build_cloud {
    ($builder:ty, $url:expr, $options:expr) => {{
        let mut builder = <$builder>::from_env().with_url($url);
        for (key, value) in $options {
            let key = key.parse().map_err(|e| format!("option {key:?}: {e}"))?;
            builder = builder.with_config(key, value);
        }
        Arc::new(builder.build().map_err(|e| e.to_string())?) as Arc<dyn ObjectStore>
    }};
}

fn open_cloud(url: &str, parsed: &Url, options: &[(String, String)]) -> Result<Backend, String> {
    // The cloud clients use rustls; several crates in the process may race to pick a crypto
    // provider, and whoever is first wins, so an error here only means one is already set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = match parsed.scheme() {
        "s3" => build_cloud!(AmazonS3Builder, url, options),
        "gs" => build_cloud!(GoogleCloudStorageBuilder, url, options),
        _ => build_cloud!(MicrosoftAzureBuilder, url, options),
    };
    let prefix = Path::from_url_path(parsed.path()).map_err(|e| format!("bad prefix: {e}"))?;
    let store = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok(Backend {
        store,
        local_root: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn reason(result: Result<Backend, StoreError>) -> String {
        match result {
            Err(StoreError::InvalidUrl { reason, .. }) => reason,
            Err(other) => panic!("expected InvalidUrl, got {other:?}"),
            Ok(_) => panic!("expected InvalidUrl, got a store"),
        }
    }

    #[test]
    fn empty_url_creates_the_local_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/home/blobstore");
        let backend = open_backend("", &root, &[]).unwrap();
        assert!(root.is_dir());
        assert_eq!(backend.local_root.as_deref(), Some(root.as_path()));
        assert!(
            open_backend("file", &root, &[])
                .unwrap()
                .local_root
                .is_some()
        );
    }

    #[test]
    fn file_url_ignores_local_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("elsewhere");
        let url = Url::from_directory_path(&root).unwrap();
        let backend = open_backend(url.as_str(), &dir.path().join("unused"), &[]).unwrap();
        assert_eq!(backend.local_root.as_deref(), Some(root.as_path()));
        assert!(!dir.path().join("unused").exists());
    }

    #[test]
    fn cloud_urls_build_with_options() {
        let s3 = opts(&[
            ("aws_endpoint", "http://127.0.0.1:9000"),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
        ]);
        let backend = open_backend("s3://bucket/some/prefix", FsPath::new("/nonexistent"), &s3);
        let backend = backend.unwrap();
        assert!(backend.local_root.is_none());
        assert!(
            backend.store.to_string().contains("some/prefix"),
            "{}",
            backend.store
        );
    }

    #[test]
    fn bad_urls_and_options_are_refused() {
        let nowhere = FsPath::new("/nonexistent");
        assert!(reason(open_backend("ftp://host/x", nowhere, &[])).contains("unsupported scheme"));
        assert!(!reason(open_backend("not a url", nowhere, &[])).is_empty());
        let bad = opts(&[("aws_no_such_option", "1")]);
        assert!(
            reason(open_backend("s3://bucket/p", nowhere, &bad)).contains("aws_no_such_option")
        );
        let dir = tempfile::tempdir().unwrap();
        let local = opts(&[("aws_endpoint", "http://x")]);
        assert!(reason(open_backend("", dir.path(), &local)).contains("local store"));
    }
}
