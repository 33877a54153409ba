//! The OpenAPI 3.1 description of the API, generated from the handlers' annotations
//! (utoipa), with each registered message type's JSON Schema added as a component at start:
//! a client generator gets typed payloads for exactly the types this bus carries.
//!
//! Served at `GET /v1/openapi.json`, and read by Swagger UI at `/docs` (its assets are
//! vendored into the binary at build time; nothing is downloaded, then or at run time).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::openapi::security::SecurityScheme;
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::error::ApiError;
use crate::registry::{Kind, Registry};

/// An RFC 9457 problem, as every error answer carries it (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes `error::Problem`, which borrows and so cannot derive ToSchema
pub struct Problem {
    /// `urn:simpul:problem:<class>`; the classes are listed in this API's description.
    #[serde(rename = "type")]
    type_: String,
    title: String,
    status: u16,
    /// What went wrong, with personal identifiers masked.
    detail: String,
    /// Every failing field, by JSON pointer (body), `ce-<attr>` (binary-mode header),
    /// `/query/<name>` or `/path/<name>`.
    #[schema(nullable = false)]
    errors: Option<Vec<FieldErrorDoc>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    pointer: String,
    detail: String,
}

/// Any error: client errors (4XX) and the bus's own trouble (5XX, e.g. 503 with
/// `Retry-After` while the store cannot take writes), always as problem+json.
#[derive(ToResponse)]
#[response(
    description = "A problem (RFC 9457)",
    content_type = "application/problem+json"
)]
#[allow(dead_code)]
pub struct ProblemResponse(Problem);

/// The answer to one accepted event or message (202), or to each of a batch.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AcceptedDoc {
    id: uuid::Uuid,
    /// `accepted`, or `duplicate` for a retry of the same id and content.
    status: String,
    warnings: Vec<FieldErrorDoc>,
    /// The sender, from its certificate.
    source: String,
    time: String,
    /// The bus's signed receipt (compact JWS) over the stored envelope.
    receipt: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchAcceptedDoc {
    results: Vec<AcceptedDoc>,
}

/// A query's answer (200): the provider's reply, minimised to the requester's grants.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct QueryAnswerDoc {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    type_: String,
    data: Map<String, Value>,
    receipt: String,
}

/// The answer to an ack or nack of one message.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SettledDoc {
    id: uuid::Uuid,
    /// `acked` or `dead_lettered`.
    state: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AckResultsDoc {
    /// Per id: `{"id", "state"}`, or `{"id", "problem"}` (`not-found`, `conflict`).
    results: Vec<Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RepliedDoc {
    id: uuid::Uuid,
    /// `replied`.
    status: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AckRequestDoc {
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<AckIdDoc>,
}

/// A message id, or `{"id", "lease"}` with the lease a pull gave.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AckIdDoc {
    Id(uuid::Uuid),
    Lease {
        id: uuid::Uuid,
        #[schema(nullable = false)]
        lease: Option<uuid::Uuid>,
    },
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct NackRequestDoc {
    /// Why (1 to 2000 bytes); shown to the sender, with personal identifiers masked.
    reason: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RedriveRequestDoc {
    /// The dead letter to redrive (not with `all`).
    id: Option<uuid::Uuid>,
    /// Whose message, when two senders used the id (only with `id`).
    sender: Option<String>,
    /// Redrive the oldest `limit` dead letters (not with `id`).
    all: Option<bool>,
    /// 1 to 1000 (default 1000), only with `all`.
    limit: Option<u32>,
}

/// Members authenticate with their certificate (mTLS); identity comes from it alone.
struct MutualTls;

impl Modify for MutualTls {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "member-certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "A member certificate issued by a CA the registry trusts; the member id is \
                     its SAN URI (urn:simpul:member:…)"
                        .into(),
                ),
                extensions: None,
                deprecated: None,
            },
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "member-certificate",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "simpul",
        description = "The interoperability bus of a local government: CloudEvents in, \
                       schema-checked, delivered at least once, every action audited."
    ),
    paths(
        super::messages::post,
        super::messages::status,
        super::queries::reply,
        super::inbox::pull,
        super::inbox::ack_many,
        super::inbox::ack,
        super::inbox::nack,
        super::feeds::read,
        super::schemas::list,
        super::schemas::one,
        super::receipt_keys,
        super::subjects::report,
        super::admin::dead_letters,
        super::admin::redrive,
        super::admin::trace,
        super::console::overview,
        super::console::page,
        super::console::file,
        super::healthz,
        super::ready,
        super::metrics,
        openapi_json,
    ),
    components(
        responses(ProblemResponse),
        schemas(AcceptedDoc, BatchAcceptedDoc, Problem, FieldErrorDoc)
    ),
    modifiers(&MutualTls)
)]
struct ApiDoc;

/// The whole description for this registry, and this bus's longest long poll.
pub fn document(registry: &Registry, max_wait: std::time::Duration) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let classes: Vec<String> = ApiError::examples()
        .iter()
        .map(|e| format!("`{}` ({})", e.slug(), e.status().as_u16()))
        .collect();
    doc["info"]["description"] = json!(format!(
        "{} Problem classes (`urn:simpul:problem:<class>`): {}.",
        doc["info"]["description"].as_str().unwrap_or_default(),
        classes.join(", ")
    ));
    let schemas = &mut doc["components"]["schemas"];
    let mut events = Vec::new();
    let mut types: Vec<_> = registry.types().collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    for t in types {
        for s in t.schemas().chain(t.response_schema.as_ref()) {
            let mut raw = s.raw.clone();
            if let Some(o) = raw.as_object_mut() {
                o.remove("$schema");
            }
            schemas[s.id.as_str()] = raw;
        }
        let name = format!("CloudEvent.{}", t.name);
        schemas[name.as_str()] = json!({
            "description": format!("A {} event of type {}", kind_word(t.kind), t.name),
            "allOf": [
                { "$ref": "#/components/schemas/CloudEvent" },
                {
                    "type": "object",
                    "properties": {
                        "type": { "const": t.name },
                        "data": data_of(t)
                    }
                }
            ]
        });
        events.push(json!({ "$ref": format!("#/components/schemas/{name}") }));
    }
    schemas["CloudEvent"] = cloud_event();
    schemas["AnyCloudEvent"] = json!({ "oneOf": events });
    describe_post(&mut doc["paths"]["/v1/messages"]["post"]);
    for p in doc["paths"]["/v1/inbox"]["get"]["parameters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if p["name"] == "wait" {
            p["schema"]["maximum"] = json!(max_wait.as_secs());
        }
    }
    doc
}

/// `POST /v1/messages` takes three shapes and answers in two, which the annotations cannot
/// say with schemas made at start: the registry's types in structured mode, a batch of them,
/// and binary mode (`ce-*` headers, the data as the body).
fn describe_post(post: &mut Value) {
    let event = json!({ "$ref": "#/components/schemas/AnyCloudEvent" });
    post["requestBody"] = json!({
        "required": true,
        "content": {
            "application/cloudevents+json": { "schema": event },
            "application/cloudevents-batch+json": {
                "schema": { "type": "array", "items": event, "minItems": 1 }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "Binary mode: the event's data, its attributes in ce-* headers"
                }
            }
        }
    });
    let mut params = vec![];
    for (attr, what) in [
        ("specversion", "1.0; binary mode"),
        ("id", "The event id (binary mode)"),
        ("type", "The message type (binary mode)"),
        ("source", "Your member id (binary mode)"),
        ("to", "The recipient of a message (binary mode)"),
    ] {
        params.push(json!({
            "name": format!("ce-{attr}"), "in": "header", "required": false,
            "description": what, "schema": { "type": "string", "minLength": 1 }
        }));
    }
    params.push(json!({
        "name": "traceparent", "in": "header", "required": false,
        "description": "W3C Trace Context, kept with each event", "schema": { "type": "string" }
    }));
    post["parameters"] = Value::Array(params);
    post["responses"]["202"]["content"] = json!({
        "application/json": { "schema": { "oneOf": [
            { "$ref": "#/components/schemas/AcceptedDoc" },
            { "$ref": "#/components/schemas/BatchAcceptedDoc" }
        ]}}
    });
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Event => "broadcast",
        Kind::Message => "addressed",
        Kind::Query => "query",
    }
}

/// The CloudEvents 1.0 envelope as the bus takes it (README, "The envelope").
fn cloud_event() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "type": "object",
        "required": ["specversion", "id", "type", "data"],
        "properties": {
            "specversion": { "const": "1.0" },
            "id": { "type": "string", "format": "uuid", "description": "Idempotency key, per sender" },
            "type": string,
            "source": { "type": "string", "description": "Your own member id; filled in from the certificate" },
            "time": { "type": "string", "format": "date-time" },
            "subject": string,
            "datacontenttype": { "const": "application/json" },
            "dataschema": string,
            "to": { "type": "string", "description": "The recipient of a message" },
            "correlationid": string,
            "traceparent": { "type": "string", "description": "W3C Trace Context" },
            "data": { "type": "object" }
        },
        "additionalProperties": { "type": ["string", "number", "boolean", "null"] }
    })
}

/// `GET /v1/openapi.json` and `/docs` (Swagger UI), for any member.
///
/// The description is written on its first request, off the async workers, and kept as
/// bytes: for a registry of 10,000 types it takes about a tenth of a second, which a cold
/// start need not wait for and no later request should repeat.
pub fn routes<S: Clone + Send + Sync + 'static>(
    registry: Arc<Registry>,
    max_wait: std::time::Duration,
) -> Router<S> {
    let doc = Arc::new(Description {
        registry,
        max_wait,
        bytes: tokio::sync::OnceCell::new(),
    });
    let config = utoipa_swagger_ui::Config::new(["/v1/openapi.json"]);
    Router::new()
        .route(
            "/v1/openapi.json",
            axum::routing::get(move |peer: crate::identity::Peer| {
                let doc = doc.clone();
                async move { openapi_json(peer, doc).await }
            }),
        )
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").config(config))
}

/// The registry's description, written once when first asked for.
struct Description {
    registry: Arc<Registry>,
    max_wait: std::time::Duration,
    bytes: tokio::sync::OnceCell<Bytes>,
}

/// This description.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object),
              (status = "4XX", response = ProblemResponse)))]
async fn openapi_json(
    _peer: crate::identity::Peer,
    doc: Arc<Description>,
) -> Result<Response, ApiError> {
    let bytes = doc
        .bytes
        .get_or_try_init(|| {
            let doc = doc.clone();
            tokio::task::spawn_blocking(move || {
                Bytes::from(document(&doc.registry, doc.max_wait).to_string())
            })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("writing the OpenAPI description: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response())
}

/// A type's `data`: its schema, or any of its versions when it has several.
fn data_of(t: &crate::registry::TypeDef) -> Value {
    let refs: Vec<Value> = t
        .schemas()
        .map(|s| json!({ "$ref": format!("#/components/schemas/{}", s.id) }))
        .collect();
    match <[Value; 1]>::try_from(refs) {
        Ok([one]) => one,
        Err(refs) => json!({ "anyOf": refs }),
    }
}
