//! The body of an authorize call and how it becomes a PDP request.
//!
//! The principal and the workspace come from the verified identity only: a body that
//! names either is refused. For egress the kernel parses the URL and builds the `Host`
//! resource itself; for file actions it normalises the path and builds the `File`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::identity::Principal;

/// Fields a caller may never send: who it is and where it acts come from its token.
const IDENTITY_FIELDS: [&str; 4] = ["principal", "workspace", "actor", "user"];

/// The longest resource type or id accepted (it is recorded in the ledger).
const MAX_NAME_LEN: usize = 1024;

/// The longest URL or path the kernel parses.
const MAX_TARGET_LEN: usize = 4096;

/// The most entities one request may carry. Each is schema-checked and added to a
/// copy of the entity store before Cedar decides, so a body of thousands costs
/// seconds of CPU; the cap keeps that to a bounded, small amount.
pub const MAX_REQUEST_ENTITIES: usize = 100;

/// The most bytes (compact JSON) of all of one request's entities: what one ledger
/// entry can hold (`writ_ledger::MAX_ENTRY_BYTES`), since a decision records the
/// request it decided.
pub const MAX_REQUEST_ENTITY_BYTES: usize = writ_ledger::MAX_ENTRY_BYTES;

/// One authorize request as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    pub action: String,
    #[serde(default)]
    pub resource: Option<ResourceRef>,
    /// For `egress`: the URL the caller is about to fetch.
    #[serde(default)]
    pub url: Option<String>,
    /// For `file.*`: the path, relative to the workspace root.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub context: Option<Value>,
    /// Resource entities for this request only, in Cedar's JSON entity format.
    #[serde(default)]
    pub entities: Vec<Value>,
}

/// An entity reference `{"type": "...", "id": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    #[serde(rename = "type")]
    pub entity_type: String,
    pub id: String,
}

/// Refuses a body that names a principal or workspace, with a precise 400.
pub fn refuse_identity_fields(body: &Value) -> Result<(), ApiError> {
    if let Some(object) = body.as_object() {
        for field in IDENTITY_FIELDS {
            if object.contains_key(field) {
                return Err(ApiError::bad_request(
                    "identity_in_body",
                    format!("the body names `{field}`; the principal and workspace come from the token only"),
                ));
            }
        }
    }
    Ok(())
}

/// The resource as the kernel determined it: a UID and, for kernel-built resources,
/// the entity to add to this one request.
#[derive(Debug)]
pub struct Target {
    pub resource_type: String,
    pub resource_id: String,
    pub kernel_entity: Option<Value>,
}

/// Works out the resource of a request: a URL for egress, a path for files, else the
/// named resource. Types the kernel builds itself cannot be named by the caller.
///
/// This is the first thing asked of a parsed body, so it first checks the request
/// entities' caps ([`check_entity_caps`]): nothing of them reaches Cedar before.
pub fn target(body: &AuthorizeBody, principal: &Principal) -> Result<Target, ApiError> {
    check_entity_caps(&body.entities)?;
    let kernel_built = |what: &str| {
        ApiError::bad_request(
            "kernel_built_resource",
            format!("`{what}` resources are built by the kernel; send `url` for egress or `path` for files"),
        )
    };
    match body.action.as_str() {
        "egress" => {
            if body.resource.is_some() || body.path.is_some() {
                return Err(kernel_built("Host"));
            }
            let url = body
                .url
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("missing_url", "egress needs `url`"))?;
            host_target(url)
        }
        action if action.starts_with("file.") => {
            if body.resource.is_some() || body.url.is_some() {
                return Err(kernel_built("File"));
            }
            let path = body
                .path
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("missing_path", "file actions need `path`"))?;
            file_target(path, principal)
        }
        _ => {
            if body.url.is_some() || body.path.is_some() {
                return Err(ApiError::bad_request(
                    "unexpected_field",
                    "`url` is for egress and `path` for file actions only",
                ));
            }
            let resource = body.resource.as_ref().ok_or_else(|| {
                ApiError::bad_request("missing_resource", "the request needs `resource`")
            })?;
            if resource.entity_type.len() > MAX_NAME_LEN || resource.id.len() > MAX_NAME_LEN {
                return Err(ApiError::unprocessable(
                    "resource_too_long",
                    format!("a resource type or id is at most {MAX_NAME_LEN} bytes"),
                ));
            }
            if resource.entity_type == "Host" || resource.entity_type == "File" {
                return Err(kernel_built(&resource.entity_type));
            }
            Ok(Target {
                resource_type: resource.entity_type.clone(),
                resource_id: resource.id.clone(),
                kernel_entity: None,
            })
        }
    }
}

/// Refuses request entities beyond [`MAX_REQUEST_ENTITIES`] in number (413
/// `too_many_entities`) or [`MAX_REQUEST_ENTITY_BYTES`] in compact JSON (413
/// `entities_too_large`), before anything parses them as entities. The size is
/// counted as they are written out, and the count stops at the cap: the work is
/// bounded by the cap, not by the body.
pub fn check_entity_caps(entities: &[Value]) -> Result<(), ApiError> {
    if entities.len() > MAX_REQUEST_ENTITIES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_entities",
            format!(
                "a request carries at most {MAX_REQUEST_ENTITIES} entities, not {}",
                entities.len()
            ),
        ));
    }
    let mut counter = ByteBudget {
        left: MAX_REQUEST_ENTITY_BYTES,
    };
    // `[` and `]`, and a `,` between two entities: the compact array's bytes.
    let framing = entities.len().saturating_add(1);
    let fits = counter.spend(framing)
        && entities
            .iter()
            .all(|entity| serde_json::to_writer(&mut counter, entity).is_ok());
    if fits {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "entities_too_large",
            format!(
                "a request's entities are at most {MAX_REQUEST_ENTITY_BYTES} bytes of compact JSON together"
            ),
        ))
    }
}

/// A writer that only counts, and fails once more than `left` bytes are written.
#[derive(Debug)]
struct ByteBudget {
    left: usize,
}

impl ByteBudget {
    fn spend(&mut self, bytes: usize) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

impl std::io::Write for ByteBudget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.spend(buf.len()) {
            Ok(buf.len())
        } else {
            Err(std::io::Error::other("over the byte budget"))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Parses an http(s) URL into a `Host` entity: host, port, scheme and the suffix
/// patterns an allowlist may name (`api.github.com`, `*.github.com`, `*.com`).
pub fn host_target(url: &str) -> Result<Target, ApiError> {
    let bad = |reason: &str| {
        ApiError::unprocessable("invalid_url", format!("cannot use the url: {reason}"))
    };
    if url.len() > MAX_TARGET_LEN {
        return Err(bad("longer than 4096 bytes"));
    }
    let parsed = url::Url::parse(url).map_err(|error| bad(&error.to_string()))?;
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(bad("only http and https urls are decided"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials in a url are refused"));
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("no port"))?;
    let (host, domains) = match parsed.host() {
        Some(url::Host::Domain(domain)) => {
            let host = domain.trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            let mut domains = vec![host.clone()];
            let labels: Vec<&str> = host.split('.').collect();
            for start in 1..labels.len() {
                if let Some(rest) = labels.get(start..) {
                    domains.push(format!("*.{}", rest.join(".")));
                }
            }
            (host, domains)
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![ip.to_string()]),
        Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), vec![format!("[{ip}]")]),
        None => return Err(bad("no host")),
    };
    let id = format!("{scheme}://{host}:{port}");
    let entity = json!({
        "uid": {"type": "Host", "id": id},
        "attrs": {"host": host, "port": port, "scheme": scheme, "domains": domains},
        "parents": [],
    });
    Ok(Target {
        resource_type: "Host".to_owned(),
        resource_id: id,
        kernel_entity: Some(entity),
    })
}

/// Normalises a workspace-relative path (no `..` above the root, no absolute path,
/// no empty or `.` segments, no NUL or backslash) and builds the `File` entity.
pub fn file_target(path: &str, principal: &Principal) -> Result<Target, ApiError> {
    let bad = |reason: &str| {
        ApiError::unprocessable("invalid_path", format!("cannot use the path: {reason}"))
    };
    if path.len() > MAX_TARGET_LEN {
        return Err(bad("longer than 4096 bytes"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(bad("NUL and backslash are refused"));
    }
    if path.starts_with('/') {
        return Err(bad("it must be relative to the workspace root"));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(bad("it leaves the workspace root"));
                }
            }
            other => segments.push(other),
        }
    }
    if segments.is_empty() {
        return Err(bad("it names no file"));
    }
    let normalised = segments.join("/");
    let workspace = principal
        .workspace()
        .ok_or_else(|| ApiError::forbidden("file actions need a principal in a workspace"))?;
    let id = format!("{}/{normalised}", workspace.as_str());
    let entity = json!({
        "uid": {"type": "File", "id": id},
        "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": workspace.as_str()}}, "path": normalised},
        "parents": [],
    });
    Ok(Target {
        resource_type: "File".to_owned(),
        resource_id: id,
        kernel_entity: Some(entity),
    })
}

/// The context object, `{}` when absent; anything but an object is refused.
pub fn context_of(body: &AuthorizeBody) -> Result<Value, ApiError> {
    match &body.context {
        None => Ok(Value::Object(Map::new())),
        Some(Value::Object(map)) if map.contains_key("consent") => Err(ApiError::bad_request(
            "kernel_fact_in_context",
            "`context.consent` is the kernel's to say: it gives a live consent that covers the request",
        )),
        Some(Value::Object(map)) if map.contains_key("made_by") => Err(ApiError::bad_request(
            "kernel_fact_in_context",
            "`context.made_by` is the kernel's to say: who recently made the principal a member",
        )),
        Some(Value::Object(map)) => Ok(Value::Object(map.clone())),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_context",
            "`context` must be a JSON object",
        )),
    }
}
