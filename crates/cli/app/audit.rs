//! `encrypt-repo audit <REPO>`: the audit events a service (`encrypt-repo serve`) stored in its
//! system repository, in time order, filtered by time and category. The object format is read
//! by `encrypt_repo_server::audit::read_events`, so it is defined in one place.

use anyhow::{Result, bail};
use encrypt_repo_server::audit::{Category, Event, Timestamp, parse_time_bound, read_events};
use serde_json::Value;

use crate::app::args;
use crate::app::exit::Usage;
use crate::app::open;
use crate::app::output::Output;

/// The events, printed as a table or (with `--json`) as JSON lines.
pub(crate) async fn audit(
    a: &args::Audit,
    g: &args::Global,
    out: &Output,
) -> Result<(String, Value)> {
    let from = bound(a.from.as_deref(), false, "--from")?;
    let to = bound(a.to.as_deref(), true, "--to")?;
    let mut categories = Vec::new();
    for c in &a.categories {
        match Category::parse(c) {
            Some(c) => categories.push(c),
            None => bail!(Usage(format!(
                "--category {c}: not an audit category (AUTHENTICATED, FAILED_LOGIN, MISSING_PRIVILEGES, GRANTED_PRIVILEGES, BAD_HEADERS, SSL_EXCEPTION, OBJECT_READ, OBJECT_WRITE, OBJECT_DELETE, REPOSITORY_REGISTER, REPOSITORY_DELETE, KEY_ROTATE, KEY_REWRAP, KEY_SHRED, KEY_LOCK, KEY_UNLOCK, SECURITY_CONFIG_CHANGE)"
            ))),
        }
    }
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    let events: Vec<Event> = read_events(&store, from, to)
        .await?
        .into_iter()
        .filter(|e| categories.is_empty() || categories.contains(&e.category))
        .collect();
    if out.json {
        // JSON lines, one event each (the summary object would hold every event in memory
        // twice for nothing).
        let mut text = String::new();
        for e in &events {
            text += &serde_json::to_string(e)?;
            text.push('\n');
        }
        print!("{text}");
        return Ok((String::new(), Value::Null));
    }
    let mut human = String::new();
    for e in &events {
        human += &format!(
            "{} {:<22} {:<16} {:<15} {:>3} {} {}{}\n",
            e.timestamp,
            e.category.name(),
            e.user.as_deref().unwrap_or("-"),
            e.remote_address.as_deref().unwrap_or("-"),
            e.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            e.method.as_deref().unwrap_or("-"),
            e.path.as_deref().unwrap_or("-"),
            detail(e),
        );
    }
    if events.is_empty() {
        human = "no audit events\n".into();
    }
    Ok((human, Value::Null))
}

fn detail(e: &Event) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &e.privilege {
        parts.push(format!("privilege={p}"));
    }
    if let Some(o) = &e.object {
        parts.push(format!("object={o}"));
    }
    if let Some(d) = &e.document {
        parts.push(format!("document={d}"));
    }
    if let Some(r) = &e.reason {
        parts.push(format!("reason={r:?}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn bound(s: Option<&str>, end: bool, flag: &str) -> Result<Option<Timestamp>> {
    match s {
        None => Ok(None),
        Some(s) => match parse_time_bound(s, end) {
            Some(t) => Ok(Some(t)),
            None => bail!(Usage(format!(
                "{flag} {s}: expected an RFC 3339 time (2026-01-31T12:00:00Z) or a date (2026-01-31)"
            ))),
        },
    }
}
