//! `tidewater token create|list|revoke`: API tokens (`auth.mode = "token"`).
//!
//! Through a running pipeline's API (`/v1/tokens`, with an admin token),
//! or, with `--config`, straight on the store that config names: how the
//! first admin token is made, before the pipeline starts (an embedded
//! store is locked while a pipeline has it open; a MongoDB store is not).
//! A new token is printed once, as `{"token": ..., "id": ...}`; only its
//! hash is kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use reqwest::Method;

use tidewater::api::tokens::TokenView;
use tidewater::auth::{Role, TokenBook};
use tidewater::Config;
use tidewater_operators::model::now_micros;

use super::api_client::{ApiArgs, ApiClient};

/// Arguments of `tidewater token`.
#[derive(Args)]
pub struct TokenArgs {
    /// Work on the store of this config directly, not through the API.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where the API is, and the (admin) credentials to call it with.
    #[command(flatten)]
    api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    command: TokenCommand,
}

/// A token command.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it (the only time its secret is shown).
    Create {
        /// The tenant it acts for.
        #[arg(long)]
        tenant: String,
        /// submitter, agent, operator or admin.
        #[arg(long)]
        role: Role,
        /// A label: who or what holds it.
        #[arg(long, default_value = "")]
        name: String,
        /// Valid for this many days (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    /// List every token (ids, tenants, roles, times; never secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id (the part after `tw_`, before the secret).
        id: String,
    },
}

/// Runs the token command.
pub fn execute(args: TokenArgs) -> anyhow::Result<()> {
    match &args.config {
        Some(path) => on_store(path, args.command),
        None => through_api(&args.api, args.command),
    }
}

fn on_store(path: &std::path::Path, command: TokenCommand) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let store = tidewater::pipeline::open_store(&config).with_context(|| {
        format!(
            "opening the store of {} (is a pipeline running on it? then use the API)",
            path.display()
        )
    })?;
    let book = TokenBook::new(Arc::clone(&store), Duration::ZERO);
    match command {
        TokenCommand::Create {
            tenant,
            role,
            name,
            expires_in_days,
        } => {
            let expires = expires_in_days.map(|d| now_micros() + d * 86_400 * 1_000_000);
            let minted = book.mint(&tenant, role, &name, expires)?;
            let mut body = serde_json::to_value(TokenView::from(minted.record))?;
            body["token"] = serde_json::Value::String(minted.token);
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        TokenCommand::List => {
            let views: Vec<TokenView> = book.list()?.into_iter().map(TokenView::from).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "tokens": views }))?
            );
        }
        TokenCommand::Revoke { id } => match book.revoke(&id)? {
            Some(record) => println!(
                "{}",
                serde_json::to_string_pretty(&TokenView::from(record))?
            ),
            None => bail!("no token with id {id:?}"),
        },
    }
    Ok(())
}

fn through_api(api: &ApiArgs, command: TokenCommand) -> anyhow::Result<()> {
    let client = ApiClient::new(api)?;
    let (method, url, body) = match command {
        TokenCommand::Create {
            tenant,
            role,
            name,
            expires_in_days,
        } => (
            Method::POST,
            client.url("/v1/tokens"),
            Some(
                serde_json::json!({
                    "tenant": tenant,
                    "role": role.as_str(),
                    "name": name,
                    "expires_in_s": expires_in_days.map(|d| d * 86_400),
                })
                .to_string(),
            ),
        ),
        TokenCommand::List => (Method::GET, client.url("/v1/tokens"), None),
        TokenCommand::Revoke { id } => (
            Method::DELETE,
            client.url(&format!(
                "/v1/tokens/{}",
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
            )),
            None,
        ),
    };
    client.send_and_print(method, &url, body)
}
