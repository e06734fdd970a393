//! API tokens: created with a scope and shown once, kept only as a hash,
//! checked on every request against the set in memory (reloaded with the
//! catalog, so a token revoked on one runtime is refused by every one).

use sha2::Digest as _;

use super::*;
use crate::store::{Scope, TokenRecord};

/// Where `journeyd serve` writes the first admin token it creates, in
/// its data directory (readable by its user only).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The tokens in force, by the hash of their secret.
#[derive(Default)]
pub struct TokenSet(std::sync::RwLock<HashMap<String, TokenRecord>>);

impl TokenSet {
    pub(super) fn replace_with(&self, records: Vec<TokenRecord>) {
        let by_hash = records
            .into_iter()
            .map(|record| (record.hash.clone(), record))
            .collect();
        *self.0.write().expect("the tokens lock is never poisoned") = by_hash;
    }

    fn get(&self, hash: &str) -> Option<TokenRecord> {
        self.0
            .read()
            .expect("the tokens lock is never poisoned")
            .get(hash)
            .cloned()
    }
}

/// The stored form of a token's secret.
fn hash_of(secret: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(secret.as_bytes()))
}

impl Runtime {
    /// The token whose secret this is, if any (expired or not: see
    /// [`Runtime::token_expired_at`]).
    pub fn authenticate(&self, secret: &str) -> Option<TokenRecord> {
        self.tokens.get(&hash_of(secret))
    }

    /// When `token` expired under the tokens policy (`token_max_age`),
    /// if it has by now.
    pub fn token_expired_at(&self, token: &TokenRecord) -> Option<u64> {
        let expires_at = self.token_expires_at(token)?;
        (self.clock.now_ms() >= expires_at).then_some(expires_at)
    }

    /// When `token` expires under the tokens policy, if it does.
    pub fn token_expires_at(&self, token: &TokenRecord) -> Option<u64> {
        match self.token_max_age {
            crate::journey::Retention::For(ms) => Some(token.created_at_ms.saturating_add(ms)),
            crate::journey::Retention::Forever => None,
        }
    }

    /// The tokens policy: how long a token is accepted after it was
    /// created.
    pub fn token_max_age(&self) -> crate::journey::Retention {
        self.token_max_age
    }

    /// Create a token: returns its record and its secret, which is shown
    /// this once and never stored.
    pub fn create_token(&self, name: &str, scope: Scope) -> Result<(TokenRecord, String)> {
        check_name("token name", name)?;
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        if self.store.tokens()?.iter().any(|token| token.name == name) {
            return Err(Error::TokenExists(name.to_owned()));
        }
        let secret = format!(
            "jdt_{}_{:032x}{:08x}",
            scope.as_str(),
            rand::random::<u128>(),
            rand::random::<u32>()
        );
        let record = TokenRecord {
            name: name.to_owned(),
            scope,
            hash: hash_of(&secret),
            created_at_ms: self.clock.now_ms(),
        };
        self.store.put_token(&record)?;
        self.tokens.replace_with(self.store.tokens()?);
        tracing::info!(token = name, scope = scope.as_str(), "API token created");
        Ok((record, secret))
    }

    /// Every token (names and scopes; never secrets).
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.store.tokens()?)
    }

    /// Revoke token `name`: refused from now on.
    pub fn revoke_token(&self, name: &str) -> Result<()> {
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        if !self.store.remove_token(name)? {
            return Err(Error::UnknownToken(name.to_owned()));
        }
        self.tokens.replace_with(self.store.tokens()?);
        tracing::info!(token = name, "API token revoked");
        Ok(())
    }

    /// On a store with no tokens, create the admin token `admin` and
    /// return its secret (for `serve` to hand to its operator). When
    /// every admin token has expired under the tokens policy, `admin` is
    /// made anew the same way, so the operator of the machine is never
    /// locked out. `None` otherwise (revoked admin tokens are not made
    /// anew).
    pub fn first_admin_token(&self) -> Result<Option<String>> {
        let tokens = self.store.tokens()?;
        let mut admins = tokens.iter().filter(|token| token.scope == Scope::Admin);
        // Admin tokens an operator revoked stay revoked: only a store
        // with no tokens, or whose admin tokens all expired, gets one.
        let all_expired = admins.clone().next().is_some()
            && admins.all(|token| self.token_expired_at(token).is_some());
        if !tokens.is_empty() && !all_expired {
            return Ok(None);
        }
        if tokens.iter().any(|token| token.name == "admin") {
            tracing::warn!(
                max_age = %self.token_max_age,
                "every admin token has expired (token_max_age); making a new `admin` token"
            );
            self.revoke_token("admin")?;
        }
        let (_, secret) = self.create_token("admin", Scope::Admin)?;
        Ok(Some(secret))
    }
}
