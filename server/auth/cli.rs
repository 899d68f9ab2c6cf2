//! `orthweb user add|passwd|remove|list|token|revoke-tokens`: managing users from the command
//! line, against the index named by the settings (the server may be running).

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use tokio::task::spawn_blocking;

use super::passwords::{self, sha256_hex};
use super::{Role, now_rfc3339};
use crate::index::Index;

/// A name usable in HTTP Basic (no `:`) and in logs: 1 to 64 printable characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > 64
        || name
            .chars()
            .any(|c| c == ':' || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "invalid user name {name:?}: 1 to 64 characters, no spaces, no ':'"
        ));
    }
    Ok(())
}

/// The password: the first line of `file`, or of standard input (so that scripts can pipe it).
pub fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let mut line = String::new();
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            line = text.lines().next().unwrap_or_default().to_string();
        }
        None => {
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
        }
    }
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    passwords::check_rules(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

async fn hash(password: String) -> anyhow::Result<String> {
    Ok(spawn_blocking(move || passwords::hash(&password)).await?)
}

pub async fn add(index: &Index, name: &str, role: &str, password: String) -> anyhow::Result<()> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let Some(role) = Role::parse(role) else {
        bail!("unknown role {role:?}: admin or viewer");
    };
    let hash = hash(password).await?;
    index
        .add_user(name, role.name(), &hash, &now_rfc3339())
        .await?;
    println!("orthweb: added user {name} ({})", role.name());
    Ok(())
}

pub async fn passwd(index: &Index, name: &str, password: String) -> anyhow::Result<()> {
    let hash = hash(password).await?;
    index.set_password(name, &hash).await?;
    println!("orthweb: changed the password of {name}; their sessions are closed");
    Ok(())
}

pub async fn remove(index: &Index, name: &str) -> anyhow::Result<()> {
    index.remove_user(name).await?;
    println!("orthweb: removed user {name} with their tokens and sessions");
    Ok(())
}

pub async fn list(index: &Index) -> anyhow::Result<()> {
    let users = index.users().await?;
    println!("{:<32} {:<8} CREATED", "NAME", "ROLE");
    for user in users {
        println!("{:<32} {:<8} {}", user.name, user.role, user.created_at);
    }
    Ok(())
}

/// Prints a new API token for the user; only its hash is kept.
pub async fn token(index: &Index, name: &str, label: &str) -> anyhow::Result<()> {
    let token = passwords::new_token();
    index
        .add_token(name, &sha256_hex(&token), label, &now_rfc3339())
        .await?;
    println!("{token}");
    eprintln!("orthweb: a new API token for {name}; it is shown only now");
    Ok(())
}

pub async fn revoke_tokens(index: &Index, name: &str) -> anyhow::Result<()> {
    let count = index.revoke_tokens(name).await?;
    println!("orthweb: revoked {count} API tokens of {name}");
    Ok(())
}
