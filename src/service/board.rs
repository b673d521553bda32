//! Read models for people: what is current in every channel (`arca ls`), and one release
//! everywhere (`arca show`). Reads only; each answer comes from one database call, so it is
//! one consistent picture.

use super::{App, Error};
use crate::db;
use crate::model::api::ErrorCode;
use crate::model::api::{
    ChannelBoard, CurrentRelease, ReleaseInChannel, ReleaseView, Signer, StatementSummary,
};
use crate::model::{ArtifactName, ChannelName, Version};

/// Every channel of the pipeline in order, with the current release of each name.
pub async fn channels(app: &App) -> Result<Vec<ChannelBoard>, Error> {
    let pipeline = app.cfg.pipeline.clone();
    let rows = app
        .db
        .call(move |c| {
            pipeline
                .iter()
                .map(|ch| Ok((ch.clone(), db::channels::board(c, ch.as_str())?)))
                .collect::<Result<Vec<_>, db::DbError>>()
        })
        .await?;
    rows.into_iter()
        .enumerate()
        .map(|(position, (channel, rows))| {
            let releases = rows
                .into_iter()
                .map(|(h, name)| {
                    let actor = h.who();
                    Ok(CurrentRelease {
                        name: parse::<ArtifactName>(&name)?,
                        version: parse::<Version>(&h.version)?,
                        since: h.at,
                        action: h.action,
                        actor,
                    })
                })
                .collect::<Result<_, Error>>()?;
            Ok(ChannelBoard {
                channel,
                position,
                releases,
            })
        })
        .collect()
}

/// `name@version`: the artifact, where it stands in each channel, and its statements with the
/// signers' labels and standing in the current trust document.
pub async fn release(
    app: &App,
    name: ArtifactName,
    version: Version,
) -> Result<ReleaseView, Error> {
    let trust = app.trust().await?;
    let pipeline: Vec<ChannelName> = app.cfg.pipeline.clone();
    let (n, v) = (name.to_string(), version.to_string());
    let found = app
        .db
        .call(move |c| {
            let Some(a) = db::artifacts::find(c, &n, &v)? else {
                return Ok(None);
            };
            let statements = db::artifacts::statement_summaries(c, a.id)?;
            let mut channels = Vec::new();
            for ch in &pipeline {
                let current = db::channels::current(c, ch.as_str(), &n)?.map(|(row, _)| row);
                let history: Vec<_> = db::channels::history(c, ch.as_str(), &n)?
                    .into_iter()
                    .filter(|h| h.version == v)
                    .collect();
                channels.push((ch.clone(), current.map(|r| r.version), history));
            }
            let digests = statements.iter().map(|s| s.sha256.clone()).collect();
            Ok(Some((a.info(digests)?, channels, statements)))
        })
        .await?;
    let Some((artifact, channels, statements)) = found else {
        return Err(Error::not_found(
            ErrorCode::NoArtifact,
            format!("no artifact {name}@{version}"),
        ));
    };
    let channels = channels
        .into_iter()
        .map(|(channel, current_version, history)| {
            let current_version = current_version
                .map(|cv| parse::<Version>(&cv))
                .transpose()?;
            Ok(ReleaseInChannel {
                channel,
                current: current_version.as_ref() == Some(&version),
                current_version,
                history,
            })
        })
        .collect::<Result<_, Error>>()?;
    let statements = statements
        .into_iter()
        .map(|st| StatementSummary {
            sha256: st.sha256,
            predicate_type: st.predicate_type,
            signers: st
                .signers
                .into_iter()
                .map(|id| {
                    let entry = id
                        .parse::<arca_keys::KeyId>()
                        .ok()
                        .and_then(|k| trust.keys.get(&k).cloned());
                    Signer {
                        label: entry.as_ref().and_then(|e| e.label.clone()),
                        status: entry
                            .map(|e| format!("{:?}", e.status).to_lowercase())
                            .unwrap_or_else(|| "unknown".to_owned()),
                        key_id: id,
                    }
                })
                .collect(),
            created_at: st.created_at,
        })
        .collect();
    Ok(ReleaseView {
        artifact,
        channels,
        statements,
    })
}

/// A stored name or version read back through its validating constructor.
fn parse<T: std::str::FromStr>(s: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| Error::Internal(format!("stored value {s:?}: {e}")))
}
