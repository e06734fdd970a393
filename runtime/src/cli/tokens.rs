//! `journeyd token ...`: API tokens with scopes.

use clap::Subcommand;
use serde_json::json;

use super::client::Client;

/// `journeyd token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (this once: journeyd keeps only a hash).
    Create {
        /// What may use it: `ingest` (events, profiles), `read` (every
        /// read, metrics), `admin` (everything).
        #[arg(long)]
        scope: String,
        /// Its name (`crm`, `grafana`), to list and revoke it by.
        #[arg(long)]
        name: String,
    },
    /// List tokens: names, scopes, when created (never the tokens).
    List,
    /// Revoke a token: refused from now on.
    Revoke {
        /// Its name.
        name: String,
    },
}

pub async fn token_command(client: &Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { scope, name } => {
            let answer = client
                .post_json(&["v1", "tokens"], &json!({ "name": name, "scope": scope }))
                .await?;
            eprintln!(
                "created token `{name}` with scope `{scope}`; it is shown once, keep it safe:"
            );
            println!("{}", answer["token"].as_str().unwrap_or("?"));
            Ok(())
        }
        TokenCommand::List => {
            let answer = client.get(&["v1", "tokens"]).await?;
            let time = |value: &serde_json::Value| {
                value
                    .as_u64()
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms as i64).ok())
                    .map(|at| at.to_string())
            };
            for token in answer["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<7} created {}{}",
                    token["name"].as_str().unwrap_or("?"),
                    token["scope"].as_str().unwrap_or("?"),
                    time(&token["created_at_ms"]).unwrap_or_else(|| "?".to_owned()),
                    time(&token["expires_at_ms"])
                        .map(|at| format!(", expires {at}"))
                        .unwrap_or_default(),
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            client.delete(&["v1", "tokens", &name]).await?;
            println!("revoked token `{name}`");
            Ok(())
        }
    }
}
