//! A local OpenTelemetry collector for traces: `POST /v1/traces` takes
//! OTLP over HTTP (protobuf, as the specification defines it, decoded with
//! the OpenTelemetry protocol crate) and keeps the spans, which
//! `GET /_sink/spans` lists as JSON. Point journeyd's
//! `OTEL_EXPORTER_OTLP_ENDPOINT` at the sink to see its traces.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message as _;
use serde_json::{Map, Value, json};

/// Spans kept at most; later ones are counted, not kept.
const MAX_SPANS: usize = 200_000;

/// The spans received.
#[derive(Default)]
pub struct Spans {
    kept: Mutex<Vec<Value>>,
    received: Mutex<(u64, u64)>,
}

impl Spans {
    /// Take one OTLP export request.
    pub fn export(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("application/x-protobuf") {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the sink takes OTLP/HTTP in protobuf (application/x-protobuf)",
            )
                .into_response();
        }
        let request = match ExportTraceServiceRequest::decode(body.as_ref()) {
            Ok(request) => request,
            Err(error) => {
                return (StatusCode::BAD_REQUEST, format!("not OTLP traces: {error}"))
                    .into_response();
            }
        };
        let mut spans = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|resource| attributes(&resource.attributes))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    let status = span.status.unwrap_or_default();
                    spans.push(json!({
                        "trace_id": hex(&span.trace_id),
                        "span_id": hex(&span.span_id),
                        "parent_span_id": hex(&span.parent_span_id),
                        "name": span.name,
                        "kind": span.kind,
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "attributes": attributes(&span.attributes),
                        "status": {"code": status.code, "message": status.message},
                        "resource": resource,
                    }));
                }
            }
        }
        {
            let mut received = super::lock(&self.received);
            received.0 += 1;
            received.1 += spans.len() as u64;
        }
        let mut kept = super::lock(&self.kept);
        let room = MAX_SPANS.saturating_sub(kept.len());
        kept.extend(spans.into_iter().take(room));
        drop(kept);
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response()
    }

    /// What arrived, as JSON.
    pub fn list(&self) -> Value {
        let (requests, spans) = *super::lock(&self.received);
        json!({
            "requests": requests,
            "received": spans,
            "spans": *super::lock(&self.kept),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attributes(pairs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Value {
    let mut map = Map::new();
    for pair in pairs {
        map.insert(
            pair.key.clone(),
            pair.value.as_ref().map_or(Value::Null, any_value),
        );
    }
    Value::Object(map)
}

fn any_value(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => json!(text),
        Some(any_value::Value::BoolValue(flag)) => json!(flag),
        Some(any_value::Value::IntValue(number)) => json!(number),
        Some(any_value::Value::DoubleValue(number)) => json!(number),
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(any_value).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => attributes(&list.values),
        Some(any_value::Value::BytesValue(bytes)) => json!(hex(bytes)),
        _ => Value::Null,
    }
}
