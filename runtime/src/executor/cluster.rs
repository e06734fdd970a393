//! Sharing the work with other nodes on one store: acting on what the
//! store says changed about the shards this node holds ([`ShardNews`]).

use super::*;
use crate::store::ShardNews;

impl Runtime {
    /// Act on the store's shard news for as long as the runtime lives (a
    /// store several nodes share; nothing to do on one it has to itself).
    /// Start it after [`Runtime::resume`]: the shards held at start were
    /// resumed by it, and news is about what changed since.
    pub fn start_cluster(self: &Arc<Self>) {
        let Some(mut news) = self.store.take_news() else {
            return;
        };
        let runtime = self.clone();
        self.tokio.spawn(async move {
            while let Some(news) = news.recv().await {
                // Each on a task of its own: one that fails spoils no other.
                tokio::spawn(runtime.clone().act_on(news));
            }
        });
    }

    async fn act_on(self: Arc<Self>, news: ShardNews) {
        match news {
            ShardNews::Resume { shards, running } => {
                metrics::counter!("journeyd_shards_taken_total").increment(shards.len() as u64);
                match self.resume_instances(running).await {
                    Ok(resumed) => {
                        tracing::info!(
                            ?shards,
                            resumed,
                            "took shards; their unfinished steps run here now"
                        )
                    }
                    Err(error) => {
                        tracing::error!(?shards, error = %crate::error_chain(&error), "resuming the instances of shards taken failed; they are resumed at the next start")
                    }
                }
                // Their timers are this node's to fire now.
                self.timers_changed.notify_one();
            }
            ShardNews::Run(ids) => {
                let runtime = self.clone();
                let ran = tokio::task::spawn_blocking(move || {
                    for id in ids {
                        runtime.run_again(id, 1);
                    }
                })
                .await;
                if let Err(error) = ran {
                    tracing::error!(%error, "running instances another node moved failed");
                }
            }
            ShardNews::Lost(shards) => {
                metrics::counter!("journeyd_shards_lost_total").increment(shards.len() as u64);
                tracing::warn!(
                    ?shards,
                    "lost shards to another node; their steps in progress here are discarded at commit and run there"
                );
            }
            ShardNews::CatalogChanged => {
                let runtime = self.clone();
                match tokio::task::spawn_blocking(move || runtime.refresh_catalog()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "reloading the changed catalog failed; the version check tries again")
                    }
                    Err(error) => tracing::warn!(%error, "reloading the changed catalog failed"),
                }
            }
        }
    }
}
