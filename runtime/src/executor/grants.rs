//! What operators grant step plugins beyond the sandbox: the hosts their
//! `wasi:http` requests may reach and the secrets those requests may name
//! (kept as references). Stored with the catalog's settings, so every
//! runtime on the store sees a change.

use std::collections::BTreeMap;

use super::*;
use crate::delivery::{Grants, SecretRef};
use crate::host::StepGrant;

/// Where the grants are kept among the catalog's settings.
pub const GRANTS_META: &str = "plugin_grants";
/// Request timeout unless granted otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Largest response body unless granted otherwise.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A step plugin's grant, as operators set and see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    /// Hosts its requests may go to (`api.example.com`, `*.example.com`,
    /// `10.0.0.5:8080`); empty revokes the grant.
    pub hosts: Vec<String>,
    /// Secret name → `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Timeout of one request, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Largest response body, bytes; a longer one fails the request.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

/// The grants in force, by plugin name.
#[derive(Default)]
pub(super) struct GrantSet(std::sync::RwLock<HashMap<String, Arc<StepGrant>>>);

impl GrantSet {
    pub(super) fn reload(&self, store: &dyn Store) -> Result<()> {
        let mut next = HashMap::new();
        for (plugin, grant) in stored_grants(store)? {
            match step_grant(&plugin, &grant) {
                Ok(step) => {
                    next.insert(plugin, Arc::new(step));
                }
                Err(error) => {
                    tracing::error!(%plugin, %error, "a stored plugin grant is unusable; skipped")
                }
            }
        }
        *self.0.write().expect("the grants lock is never poisoned") = next;
        Ok(())
    }

    fn get(&self, plugin: &str) -> Option<Arc<StepGrant>> {
        self.0
            .read()
            .expect("the grants lock is never poisoned")
            .get(plugin)
            .cloned()
    }
}

fn stored_grants(store: &dyn Store) -> Result<BTreeMap<String, PluginGrant>> {
    Ok(match store.meta(GRANTS_META)? {
        Some(value) => serde_json::from_value(value).unwrap_or_else(|error| {
            tracing::error!(%error, "saved plugin grants are unreadable; steps are granted nothing");
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    })
}

/// The grant checked: hosts well formed, secrets readable now.
fn step_grant(plugin: &str, grant: &PluginGrant) -> Result<StepGrant> {
    let invalid = |reason: String| Error::InvalidGrant {
        plugin: plugin.to_owned(),
        reason,
    };
    let grants = Grants::parse(&grant.hosts).map_err(|error| invalid(error.to_string()))?;
    for (name, reference) in &grant.secrets {
        SecretRef::parse(name, reference)
            .and_then(|secret| secret.read(name))
            .map_err(|error| invalid(error.to_string()))?;
    }
    Ok(StepGrant {
        grants,
        secrets: grant.secrets.clone(),
        timeout: Duration::from_millis(
            grant
                .timeout_ms
                .unwrap_or(DEFAULT_TIMEOUT_MS)
                .clamp(100, 60_000),
        ),
        max_response_bytes: grant
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
            .clamp(1024, 16 * 1024 * 1024),
    })
}

impl Runtime {
    /// What step plugin `plugin` was granted, if anything.
    pub(super) fn step_grant(&self, plugin: &str) -> Option<Arc<StepGrant>> {
        self.grants.get(plugin)
    }

    /// Grant step plugin `plugin` outbound requests to `grant.hosts` with
    /// `grant.secrets` (no hosts: revoke). Checked before it is stored.
    pub fn grant_plugin(&self, plugin: &str, grant: PluginGrant) -> Result<Option<PluginGrant>> {
        check_name("plugin name", plugin)?;
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        if !self
            .registry
            .plugins()
            .iter()
            .any(|record| record.name == plugin)
        {
            return Err(Error::UnknownPlugin(plugin.to_owned()));
        }
        let mut grants = stored_grants(&*self.store)?;
        let granted = if grant.hosts.is_empty() {
            grants.remove(plugin);
            None
        } else {
            step_grant(plugin, &grant)?;
            grants.insert(plugin.to_owned(), grant.clone());
            Some(grant)
        };
        self.store.put_meta(
            GRANTS_META,
            &serde_json::to_value(&grants).expect("grants are plain data"),
        )?;
        self.grants.reload(&*self.store)?;
        tracing::info!(plugin, hosts = ?granted.as_ref().map(|grant| &grant.hosts), "plugin grant set");
        Ok(granted)
    }

    /// Every plugin's grant.
    pub fn plugin_grants(&self) -> Result<BTreeMap<String, PluginGrant>> {
        stored_grants(&*self.store)
    }
}
