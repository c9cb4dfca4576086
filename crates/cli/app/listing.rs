//! Listings that go on past a bad object, and the `cleanup` command.
//!
//! A stray file in a repository (a note someone saved there, a truncated object) has a size no
//! sealed object can have, so the encrypting store's listing yields an error for it. `ls`,
//! `verify` and `backup` must not stop there: the object is named and skipped, the rest is
//! listed, and the command ends with exit 6.

use std::time::SystemTime;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore as _};
use serde_json::{Value, json};

use crate::app::args;
use crate::app::exit::{Usage, render};
use crate::app::open::{self, Store};
use crate::app::output::{Output, human_bytes};
use crate::app::staging;

/// An object the listing could not describe, and why.
#[derive(Debug, Clone)]
pub(crate) struct BadEntry {
    pub(crate) object: String,
    pub(crate) error: String,
}

/// What a tolerant listing found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The objects, sorted by name.
    pub(crate) objects: Vec<ObjectMeta>,
    /// The objects that could not be described.
    pub(crate) bad: Vec<BadEntry>,
}

/// Lists `prefix`, setting aside each object the store refuses to describe. A listing error
/// that names no object (the backend is unreachable, access denied) still ends the command.
pub(crate) async fn list(store: &Store, prefix: Option<&ObjectPath>) -> Result<Listing> {
    let mut stream = store.list(prefix);
    let mut out = Listing::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(m) => out.objects.push(m),
            Err(e) => match failed_object(&e) {
                Some(object) => out.bad.push(BadEntry {
                    object,
                    error: render(&anyhow::Error::new(e)),
                }),
                None => return Err(e).context("listing the repository"),
            },
        }
    }
    out.objects.sort_by(|x, y| x.location.cmp(&y.location));
    out.bad.sort_by(|x, y| x.object.cmp(&y.object));
    Ok(out)
}

/// The object an error is about, if it is about one object (the store's `Object` error).
fn failed_object(e: &object_store::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(encrypt_repo::store::Error::Object { path, .. }) =
            c.downcast_ref::<encrypt_repo::store::Error>()
        {
            return Some(path.clone());
        }
        cur = c.source();
    }
    None
}

/// `cleanup`: removes the leftovers of interrupted writes in a local repository directory.
pub(crate) async fn cleanup(
    a: &args::Cleanup,
    g: &args::Global,
    out: &Output,
) -> Result<(String, Value)> {
    let location = open::locate(&a.repo.repo, &g.store_options, false)?;
    let Some(dir) = location.local_dir else {
        anyhow::bail!(Usage(
            "cleanup works on local repository directories; an object store keeps an \
             interrupted multipart upload as an incomplete upload, removed by the bucket's \
             lifecycle rule (S3 AbortIncompleteMultipartUpload, Azure and GCS expire \
             uncommitted blocks themselves)"
                .into()
        ));
    };
    let now = SystemTime::now();
    let found = tokio::task::spawn_blocking(move || staging::find(&dir)).await?;
    let mut human = String::new();
    let mut removed = Vec::new();
    let mut kept = 0usize;
    for f in found {
        if f.age(now) < a.older_than {
            kept += 1;
            continue;
        }
        if !a.dry_run {
            match std::fs::remove_file(&f.path) {
                Ok(()) => {}
                // Another cleanup, or the write completing, got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.warn(&format!("cannot remove {}: {e}", f.path.display()));
                    continue;
                }
            }
        }
        human += &format!(
            "{} {} ({})\n",
            if a.dry_run { "would remove" } else { "removed" },
            f.relative,
            human_bytes(f.bytes)
        );
        removed.push(json!({"file": f.relative, "bytes": f.bytes}));
    }
    human += &format!(
        "{} {} leftover file(s); {kept} younger than {}s kept",
        if a.dry_run { "would remove" } else { "removed" },
        removed.len(),
        a.older_than.as_secs()
    );
    Ok((
        human,
        json!({"removed": removed, "kept": kept, "dry_run": a.dry_run}),
    ))
}

/// The leftovers of a local repository, as `verify` reports them (an empty list elsewhere).
pub(crate) async fn leftovers(
    local_dir: Option<std::path::PathBuf>,
) -> Result<Vec<staging::Leftover>> {
    match local_dir {
        Some(dir) => Ok(tokio::task::spawn_blocking(move || staging::find(&dir)).await?),
        None => Ok(Vec::new()),
    }
}
