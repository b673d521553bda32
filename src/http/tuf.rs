//! Each channel's TUF repository: `/tuf/{channel}/metadata/{file}` and
//! `/tuf/{channel}/targets/{name}/{sha256}.{file}` (consistent snapshots, streamed from the store;
//! also as `{sha256}.{name}/{file}`, the form awslabs' `tough` asks for).

use crate::model::api::ErrorCode;
use crate::tuf::metadata::TufRole;
use actix_web::{HttpRequest, HttpResponse, body::SizedStream, get, web};
use futures::StreamExt as _;

use crate::model::{ArtifactName, FileName};
use crate::service::{App, Error, reads};

const IMMUTABLE: (&str, &str) = ("cache-control", "public, max-age=31536000, immutable");

/// Which metadata file a request names.
#[derive(Debug, PartialEq)]
enum MetaRequest {
    Latest(TufRole),
    Version(TufRole, u64),
}

fn parse_meta_file(file: &str) -> Option<MetaRequest> {
    let stem = file.strip_suffix(".json")?;
    let role = TufRole::parse;
    match stem.split_once('.') {
        None => role(stem).map(MetaRequest::Latest),
        Some((v, r)) => {
            let role = role(r).filter(|r| *r != TufRole::Timestamp)?;
            let v: u64 = v.parse().ok().filter(|v| *v > 0)?;
            Some(MetaRequest::Version(role, v))
        }
    }
}

/// Whether an `If-None-Match` header matches `etag` (a list, `*`, or weak forms).
fn etag_matches(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

#[get("/tuf/{channel}/metadata/{file}")]
async fn metadata(
    app: web::Data<App>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (channel, file) = path.into_inner();
    let (channel, _) = app.channel_key(&channel)?;
    let not_found = || {
        Error::not_found(
            ErrorCode::NoMetadata,
            format!("no metadata file {file} in channel {channel}"),
        )
    };
    let req_file = parse_meta_file(&file).ok_or_else(not_found)?;
    let ch = channel.to_string();
    match req_file {
        // The newest file of a role is what agents poll: served from memory while it is the
        // newest (reads::latest_cached), with an ETag so that an unchanged poll costs a 304.
        MetaRequest::Latest(role) => {
            let cached = if app.cfg.tuf.memory_cache {
                reads::latest_cached(&app, ch.clone(), role)
                    .await?
                    .ok_or_else(not_found)?
            } else {
                let body = reads::latest_metadata(&app, ch.clone(), role)
                    .await?
                    .ok_or_else(not_found)?;
                // Not kept: generation and version are never compared.
                crate::service::CachedMeta::new(0, 0, body.into())
            };
            let inm = req
                .headers()
                .get(actix_web::http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            let unchanged = etag_matches(inm, &cached.etag);
            let mut resp = if unchanged {
                HttpResponse::NotModified()
            } else {
                HttpResponse::Ok()
            };
            resp.insert_header(("cache-control", "no-cache"))
                .insert_header(("etag", cached.etag.clone()));
            if unchanged {
                return Ok(resp.finish());
            }
            Ok(resp.content_type("application/json").body(cached.body))
        }
        MetaRequest::Version(role, v) => {
            let body = reads::metadata_version(&app, ch, role, v)
                .await?
                .ok_or_else(not_found)?;
            Ok(HttpResponse::Ok()
                .content_type("application/json")
                .insert_header(IMMUTABLE)
                .body(body))
        }
    }
}

/// The readings of a consistent-snapshot target path, each as (name, sha256, file), in the
/// order they are looked up:
///
/// - `{name}/{sha256}.{file}`, the hash before the file name (the specification's form, and
///   python-tuf's);
/// - `{sha256}.{name}/{file}`, the hash before the whole target path (awslabs' `tough`).
///
/// A rollout's previous release has `-/previous/` before the file in both. A path that reads
/// both ways names at most one target: the hash must be the target's.
fn parse_target_path(path: &str) -> Vec<(ArtifactName, String, FileName)> {
    fn is_sha256(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    /// `{name}/{file}` or `{name}/-/previous/{file}`.
    fn split(path: &str) -> Option<(ArtifactName, &str)> {
        let (dir, last) = path.rsplit_once('/')?;
        let dir = dir
            .strip_suffix(crate::tuf::repo::PREVIOUS_SEGMENT)
            .and_then(|d| d.strip_suffix('/'))
            .unwrap_or(dir);
        Some((dir.parse().ok()?, last))
    }
    let hash_before_file = split(path).and_then(|(name, last)| {
        let (sha, file) = last.split_once('.')?;
        is_sha256(sha).then_some(())?;
        Some((name, sha.to_owned(), file.parse().ok()?))
    });
    let hash_before_path = path.split_once('.').and_then(|(sha, rest)| {
        is_sha256(sha).then_some(())?;
        let (name, file) = split(rest)?;
        Some((name, sha.to_owned(), file.parse().ok()?))
    });
    hash_before_file
        .into_iter()
        .chain(hash_before_path)
        .collect()
}

/// What a `Range` header asks of a target of `size` bytes (RFC 9110 §14).
#[derive(Debug, PartialEq)]
enum RangeAsk {
    /// No range, or one the server may ignore: another unit, several ranges (which arca
    /// does not serve as multipart), or a value that is not valid syntax. Answer 200.
    Whole,
    /// A valid single byte range, as `[start, end)`: 206.
    Part(std::ops::Range<u64>),
    /// A valid byte range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b | a- | -n` against `size`.
fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a, b) {
        ("", n) => match num(n) {
            Some(0) => return RangeAsk::Unsatisfiable,
            Some(n) => size.saturating_sub(n)..size,
            None => return RangeAsk::Whole,
        },
        (s, "") => match num(s) {
            Some(s) => s..size,
            None => return RangeAsk::Whole,
        },
        (s, e) => match (num(s), num(e)) {
            (Some(s), Some(e)) if s <= e => s..e.saturating_add(1).min(size),
            _ => return RangeAsk::Whole,
        },
    };
    if range.start < range.end {
        RangeAsk::Part(range)
    } else {
        RangeAsk::Unsatisfiable
    }
}

#[get("/tuf/{channel}/targets/{path:.*}")]
async fn target(
    app: web::Data<App>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (channel, target) = path.into_inner();
    let (channel, _) = app.channel_key(&channel)?;
    let not_found = || {
        Error::not_found(
            ErrorCode::NoTarget,
            format!("no target {target} in channel {channel}"),
        )
    };
    let mut found = None;
    for (name, sha, file) in parse_target_path(&target) {
        let ch = channel.to_string();
        found = reads::target_blob(&app, ch, name.to_string(), sha, file.to_string()).await?;
        if found.is_some() {
            break;
        }
    }
    let (blake3, size) = found.ok_or_else(not_found)?;
    let digest: arca_store::Blake3Digest = blake3
        .parse()
        .map_err(|e: arca_store::StoreError| Error::Internal(e.to_string()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = parse_range(header, size);
    if range == RangeAsk::Unsatisfiable {
        return Err(Error::RangeNotSatisfiable { size });
    }
    // A slot per streaming download, held by the body until it is sent or dropped.
    let permit = app.transfers.download()?;
    let hold = move |chunk| {
        let _ = &permit;
        chunk
    };
    match range {
        RangeAsk::Unsatisfiable => Err(Error::RangeNotSatisfiable { size }),
        RangeAsk::Part(r) => {
            let len = r.end - r.start;
            crate::service::metrics::Counters::add(&app.counters.download_bytes, len);
            let header = format!("bytes {}-{}/{size}", r.start, r.end - 1);
            let stream = app.store.get(&digest, Some(r)).await?.map(hold);
            Ok(HttpResponse::PartialContent()
                .content_type("application/octet-stream")
                .insert_header(("content-range", header))
                .insert_header(IMMUTABLE)
                .body(SizedStream::new(len, stream)))
        }
        RangeAsk::Whole => {
            crate::service::metrics::Counters::add(&app.counters.download_bytes, size);
            let stream = app.store.get(&digest, None).await?.map(hold);
            Ok(HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header(("accept-ranges", "bytes"))
                .insert_header(IMMUTABLE)
                .body(SizedStream::new(size, stream)))
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metadata).service(target);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_file_names() {
        assert_eq!(
            parse_meta_file("timestamp.json"),
            Some(MetaRequest::Latest(TufRole::Timestamp))
        );
        assert_eq!(
            parse_meta_file("3.root.json"),
            Some(MetaRequest::Version(TufRole::Root, 3))
        );
        assert_eq!(parse_meta_file("0.root.json"), None);
        assert_eq!(parse_meta_file("2.timestamp.json"), None);
        assert_eq!(parse_meta_file("x.root.json"), None);
        assert_eq!(parse_meta_file("../root.json"), None);
    }

    #[test]
    fn etags() {
        assert!(etag_matches(Some("\"ab\""), "\"ab\""));
        assert!(etag_matches(Some("W/\"x\", \"ab\""), "\"ab\""));
        assert!(etag_matches(Some("*"), "\"ab\""));
        assert!(!etag_matches(Some("\"abc\""), "\"ab\""));
        assert!(!etag_matches(None, "\"ab\""));
    }

    #[test]
    fn target_paths_and_ranges() {
        let sha = "a".repeat(64);
        let one = |p: &str| {
            let found = parse_target_path(p);
            assert_eq!(found.len(), 1, "{p}");
            let (n, s, f) = found.into_iter().next().unwrap();
            (n.as_str().to_owned(), s, f.as_str().to_owned())
        };
        let want = ("app/web".to_owned(), sha.clone(), "web-1.0.tgz".to_owned());
        assert_eq!(one(&format!("app/web/{sha}.web-1.0.tgz")), want);
        assert_eq!(
            one(&format!("{sha}.app/web/web-1.0.tgz")),
            want,
            "tough's form"
        );
        assert_eq!(
            one(&format!("app/web/-/previous/{sha}.web.tgz")).0,
            "app/web"
        );
        assert_eq!(
            one(&format!("{sha}.app/web/-/previous/web.tgz")).0,
            "app/web"
        );
        // A path both forms read: both are looked up (only the target's own hash will match).
        let both = format!("{sha}.x/{sha}.y");
        assert_eq!(parse_target_path(&both).len(), 2, "{both}");
        for bad in [
            format!("-/previous/{sha}.x"),
            format!("../{sha}.x"),
            format!("{sha}.../x"),
            format!("{sha}.x"),
            "app/short.x".to_owned(),
            format!("{}.app/x", "A".repeat(64)),
        ] {
            assert!(parse_target_path(&bad).is_empty(), "{bad}");
        }
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(r("bytes=0-9"), RangeAsk::Part(0..10));
        assert_eq!(r("bytes=90-"), RangeAsk::Part(90..100));
        assert_eq!(r("bytes=-10"), RangeAsk::Part(90..100));
        assert_eq!(r("bytes=50-500"), RangeAsk::Part(50..100));
        assert_eq!(r("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeAsk::Unsatisfiable);
        // What RFC 9110 lets a server ignore is ignored: the whole target is served.
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(r("bytes=0-1,3-4"), RangeAsk::Whole);
        assert_eq!(r("items=0-9"), RangeAsk::Whole);
        assert_eq!(r("bytes=abc"), RangeAsk::Whole);
        assert_eq!(r("bytes=9-0"), RangeAsk::Whole);
        assert_eq!(r("bytes=+1-2"), RangeAsk::Whole);
    }
}
