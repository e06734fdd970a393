//! `wasi:http/outgoing-handler` for steps: a step may call another system,
//! but only a host the operator granted its plugin (deny by default).
//!
//! Every request goes through [`crate::delivery::Outbound`]: the URL's host
//! must match the plugin's grants, a name must resolve to public addresses
//! (private, loopback and link-local ones need granting by address), no
//! redirects, no proxy, a total timeout and a response size limit. The host
//! adds the step's idempotency key as `Idempotency-Key` and fills
//! `{{secret:NAME}}` in header values with the plugin's granted secrets, so
//! the plugin never holds them. A refused request fails the step, naming
//! the host, whatever the plugin does with the error it sees.
//!
//! A step may run more than once (at least once): a call from a step must
//! be an idempotent read, or carry the idempotency key to a service that
//! honours it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks,
};

use crate::delivery::{Grants, Outbound, OutboundError, OutboundRequest, SecretValues};

/// Largest request body a step may send.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// What an operator granted a step plugin.
#[derive(Debug, Clone)]
pub struct StepGrant {
    /// Hosts its requests may go to.
    pub grants: Grants,
    /// Secret name → `env:NAME` or `file:PATH`.
    pub secrets: BTreeMap<String, String>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Largest response body; a longer one fails the request.
    pub max_response_bytes: usize,
}

/// The outbound HTTP of one step.
pub struct HttpCapability {
    pub(super) ctx: WasiHttpCtx,
    pub(super) hooks: OutboundHooks,
}

impl HttpCapability {
    /// For a step of `plugin` with `grant` (none: every request refused).
    pub fn new(
        plugin: &str,
        grant: Option<Arc<StepGrant>>,
        idempotency_key: &str,
        outbound: Outbound,
    ) -> Self {
        HttpCapability {
            ctx: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                plugin: plugin.to_owned(),
                grant,
                idempotency_key: idempotency_key.to_owned(),
                outbound,
                refused: Arc::new(Mutex::new(None)),
            },
        }
    }

    /// The first request this step was refused, in words.
    pub fn refused(&self) -> Option<String> {
        self.hooks
            .refused
            .lock()
            .expect("the refusal lock is never poisoned")
            .clone()
    }
}

/// The hooks that send a step's requests.
pub struct OutboundHooks {
    plugin: String,
    grant: Option<Arc<StepGrant>>,
    idempotency_key: String,
    outbound: Outbound,
    refused: Arc<Mutex<Option<String>>>,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

fn refuse(refused: &Mutex<Option<String>>, reason: String) {
    let mut refused = refused.lock().expect("the refusal lock is never poisoned");
    if refused.is_none() {
        *refused = Some(reason);
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let url = request.uri().to_string();
        let denied = |refused: &Arc<Mutex<Option<String>>>, reason: String| -> ResponseFuture {
            refuse(refused, reason);
            Box::new(async { Err(HttpError::HttpRequestDenied) })
        };
        let Some(grant) = self.grant.clone() else {
            let host = request.uri().host().unwrap_or("?").to_owned();
            return denied(
                &self.refused,
                format!(
                    "outbound request to `{host}` refused: plugin `{}` is granted no hosts",
                    self.plugin
                ),
            );
        };
        let checked = match grant.grants.check(&url) {
            Ok(url) => url,
            Err(error) => {
                let reason = match error {
                    OutboundError::NotGranted(host) => format!(
                        "outbound request to `{host}` refused: not granted to plugin `{}`",
                        self.plugin
                    ),
                    other => format!("outbound request refused: {other}"),
                };
                return denied(&self.refused, reason);
            }
        };
        let secrets = match SecretValues::read(&grant.secrets) {
            Ok(secrets) => secrets,
            Err(error) => return denied(&self.refused, error.to_string()),
        };
        let (parts, body) = request.into_parts();
        let mut headers = Vec::with_capacity(parts.headers.len() + 1);
        for (name, value) in &parts.headers {
            if name.as_str().eq_ignore_ascii_case("idempotency-key") {
                continue;
            }
            let Ok(value) = value.to_str() else {
                headers.push((
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ));
                continue;
            };
            match secrets.fill(value) {
                Ok(value) => headers.push((name.to_string(), value)),
                Err(error) => {
                    return denied(
                        &self.refused,
                        format!(
                            "outbound request refused: {error} (plugin `{}`)",
                            self.plugin
                        ),
                    );
                }
            }
        }
        headers.push(("Idempotency-Key".into(), self.idempotency_key.clone()));
        let method = parts.method.to_string();
        let outbound = self.outbound.clone();
        let refused = self.refused.clone();
        Box::new(async move {
            let mut collected = Vec::new();
            let mut body = body;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    collected.extend_from_slice(&data);
                    if collected.len() > MAX_REQUEST_BYTES {
                        return Err(HttpError::HttpRequestBodySize(Some(collected.len() as u64)));
                    }
                }
            }
            let sent = outbound
                .send(
                    OutboundRequest {
                        method,
                        url: checked,
                        headers,
                        body: collected,
                    },
                    grant.timeout,
                    grant.max_response_bytes,
                )
                .await;
            let response = match sent {
                Ok(response) if response.truncated => {
                    return Err(HttpError::HttpResponseBodySize(Some(
                        grant.max_response_bytes as u64,
                    )));
                }
                Ok(response) => response,
                Err(OutboundError::Timeout { .. }) => return Err(HttpError::ConnectionTimeout),
                Err(error) => {
                    let reason = secrets.redact(&error.to_string());
                    if reason.contains("resolves only to private") {
                        refuse(&refused, format!("outbound request refused: {reason}"));
                        return Err(HttpError::DestinationIpProhibited);
                    }
                    return Err(HttpError::InternalError(Some(reason)));
                }
            };
            let mut builder = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name, value);
            }
            let body = http_body_util::Full::new(Bytes::from(response.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|error| HttpError::InternalError(Some(error.to_string())))?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}
