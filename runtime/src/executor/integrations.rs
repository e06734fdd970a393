//! Integrations and deliveries as operators see them: setting and listing
//! integrations (checked against the plugins), disabling one a provider
//! said is gone, listing undelivered messages and replaying them.

use super::*;
use crate::delivery::{IntegrationError, IntegrationSpec};
use crate::host::channel::{ChannelCall, OutgoingMessage};

impl Runtime {
    /// Set the integrations a config file declares (at start): each as
    /// [`Runtime::set_integration`] would. One whose plugin is not pushed
    /// yet waits, and is set when that plugin is pushed; returns those
    /// channels. Any other fault in a declaration is an error.
    pub async fn declare_integrations(
        self: &Arc<Self>,
        declared: Vec<(String, IntegrationSpec)>,
    ) -> Result<Vec<String>> {
        let mut waiting = Vec::new();
        for (channel, spec) in declared {
            let pushed = PluginRef::parse(&spec.plugin)
                .is_some_and(|plugin| self.registry.resolve(&plugin, InstanceId(0)).is_some());
            if pushed {
                self.set_integration(&channel, spec).await?;
            } else {
                check_name("channel", &channel)?;
                tracing::warn!(channel, plugin = %spec.plugin, "the config file's integration waits for its plugin to be pushed");
                waiting.push(channel.clone());
                self.declared_integrations
                    .lock()
                    .expect("the declared integrations lock is never poisoned")
                    .push((channel, spec));
            }
        }
        Ok(waiting)
    }

    /// Set the declared integrations that were waiting for `plugin`.
    pub(super) async fn set_waiting_integrations(self: &Arc<Self>, plugin: &str) {
        let ready: Vec<(String, IntegrationSpec)> = {
            let mut declared = self
                .declared_integrations
                .lock()
                .expect("the declared integrations lock is never poisoned");
            let (ready, waiting) =
                std::mem::take(&mut *declared)
                    .into_iter()
                    .partition(|(_, spec)| {
                        PluginRef::parse(&spec.plugin).is_some_and(|wanted| wanted.name == plugin)
                    });
            *declared = waiting;
            ready
        };
        for (channel, spec) in ready {
            if let Err(error) = self.set_integration(&channel, spec).await {
                tracing::error!(channel, error = %crate::error_chain(&error), "the config file's integration could not be set");
            }
        }
    }

    /// The integrations in force, by channel.
    pub fn integrations(&self) -> Vec<IntegrationRecord> {
        self.integrations.records()
    }

    /// Set the integration of `channel`: checked (fields, grants, secrets
    /// readable now, the plugin pushed and a channel plugin, and a sample
    /// message rendered to a granted host), stored, and in force at once.
    pub async fn set_integration(
        self: &Arc<Self>,
        channel: &str,
        spec: IntegrationSpec,
    ) -> Result<IntegrationRecord> {
        check_name("channel", channel)?;
        let runtime = self.clone();
        let channel = channel.to_owned();
        tokio::task::spawn_blocking(move || {
            let _catalog = runtime.catalog_lock();
            runtime.reload_if_changed()?;
            let previous = runtime.integrations.get(&channel).map(|active| active.record.clone());
            let (record, plugin) =
                spec.into_record(&channel, previous.as_ref(), runtime.clock.now_ms())?;
            runtime.check_channel_plugin(&record, &plugin)?;
            runtime.store.put_integration(&record)?;
            runtime.integrations.put(record.clone());
            tracing::info!(channel = %record.channel, plugin = %record.plugin, hosts = ?record.hosts, "integration set");
            runtime.outbox_changed.notify_one();
            Ok(record)
        })
        .await?
    }

    /// The plugin must resolve to a channel plugin whose request for a
    /// sample message goes to a granted host and names only granted
    /// secrets.
    fn check_channel_plugin(&self, record: &IntegrationRecord, plugin: &PluginRef) -> Result<()> {
        let invalid = |reason: String| {
            Error::Integration(IntegrationError::Invalid {
                channel: record.channel.clone(),
                field: "plugin",
                reason,
            })
        };
        let (_, loaded) = self
            .resolve_plugin(plugin, InstanceId(0))
            .map_err(|failure| invalid(failure.to_string()))?;
        if !loaded.is_channel() {
            return Err(invalid(format!(
                "`{plugin}` is a step plugin; an integration needs a channel plugin (one that exports `{}`)",
                host::CHANNEL_EXPORT
            )));
        }
        let sample = OutgoingMessage {
            id: "i-0/0/m0".into(),
            channel: record.channel.clone(),
            to: "someone@example.com".into(),
            subject: "A sample".into(),
            body: "A sample message, rendered to check the integration.".into(),
            metadata: "{}".into(),
            customer_id: "c-sample".into(),
            journey: "sample".into(),
            instance_id: "i-0".into(),
            step: "sample".into(),
            attempt: 1,
        };
        let call = ChannelCall {
            subject: "integration check",
            integration: &record.channel,
            key: "integration check",
        };
        let request = self
            .host
            .render_message(&loaded, &call, &sample, &record.config.to_string())
            .map_err(|failure| {
                invalid(format!(
                    "`{plugin}` cannot render a message with this config: {failure}"
                ))
            })?;
        let active = crate::delivery::ActiveIntegration::new(record.clone())?;
        let secrets = crate::delivery::SecretValues::read(&record.secrets).map_err(|source| {
            IntegrationError::Secret {
                channel: record.channel.clone(),
                source,
            }
        })?;
        let url = secrets
            .fill(&request.url)
            .map_err(|error| invalid(format!("`{plugin}` renders {error}")))?;
        active.grants.check(&url).map_err(|error| {
            invalid(format!(
                "`{plugin}` sends this config's requests to a host that is not granted: {}",
                secrets.redact(&error.to_string())
            ))
        })?;
        for text in request
            .headers
            .iter()
            .map(|header| &header.value)
            .chain([&request.body])
        {
            secrets
                .fill(text)
                .map_err(|error| invalid(format!("`{plugin}` renders {error}")))?;
        }
        Ok(())
    }

    /// Disable the integration of `channel` (its messages wait), e.g.
    /// because its provider answered 410 Gone.
    pub(super) fn disable_integration(&self, channel: &str, reason: String) -> Result<()> {
        let _catalog = self.catalog_lock();
        self.reload_if_changed()?;
        let Some(active) = self.integrations.get(channel) else {
            return Ok(());
        };
        let mut record = active.record.clone();
        record.disabled = Some(reason.clone());
        record.updated_at_ms = self.clock.now_ms();
        self.store.put_integration(&record)?;
        self.integrations.put(record);
        tracing::warn!(channel, %reason, "integration disabled");
        Ok(())
    }

    /// Messages that pass `filter`, in queue order.
    pub async fn deliveries(&self, filter: DeliveryFilter) -> Result<DeliveryPage> {
        self.with_store(move |store| store.deliveries(&filter))
            .await
    }

    /// Queue an undelivered message again under the same id (so a provider
    /// that saw it drops it), due now.
    pub async fn replay_message(&self, id: &str) -> Result<Delivery> {
        let now = self.clock.now_ms();
        let owned = id.to_owned();
        let delivery = self
            .with_store(move |store| store.replay_message(&owned, now))
            .await?
            .ok_or_else(|| Error::UnknownMessage(id.to_owned()))?;
        if delivery.status != DeliveryStatus::Queued {
            return Err(Error::NotReplayable {
                message: id.to_owned(),
                status: delivery.status,
            });
        }
        tracing::info!(message = id, "message replayed");
        self.outbox_changed.notify_one();
        Ok(delivery)
    }

    /// A message and its delivery.
    pub async fn message(&self, id: &str) -> Result<(OutboxMessage, Delivery)> {
        let owned = id.to_owned();
        self.with_store(move |store| store.message(&owned))
            .await?
            .ok_or_else(|| Error::UnknownMessage(id.to_owned()))
    }
}
