//! `writ break-glass`, `writ approval`, `writ consent` and `writ signing-key`: the
//! client of a running server's grants endpoints (`docs/API.md`, "Grants").
//!
//! Requests and approvals can be signed with the caller's own Ed25519 key
//! (`--sign-key FILE`, a `writ-statement-v1` statement), so that the server's operator
//! cannot forge them. The statement names the signer's principal and workspace as
//! the server records them; they are asked from the server (`GET /v1/whoami`, what the
//! token says), so the statement matches the entry it will be recorded in.
//!
//! A key file's contents are never printed, neither on success nor in an error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use rand::rngs::OsRng;
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use writ_server::grants::statement;
use zeroize::Zeroizing;

use crate::client::{print_json, Connection};

#[derive(Debug, Subcommand)]
pub(crate) enum BreakGlassCommand {
    /// Ask for a role for a while; it is active once approved (or at once with
    /// `--emergency`, where the policies allow it).
    Request {
        /// The role, e.g. `oncall` (the id of a `Role` entity).
        #[arg(long)]
        role: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: String,
        /// How long the role is held once active: `30m`, `4h`.
        #[arg(long, value_parser = parse_duration)]
        duration: Duration,
        /// Activate at once without approval (reviewed afterwards).
        #[arg(long)]
        emergency: bool,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the workspace's elevations, one per line.
    List {
        #[arg(long, value_enum)]
        state: Option<ElevationState>,
        /// Only emergency elevations nobody has reviewed yet.
        #[arg(long)]
        unreviewed: bool,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one elevation.
    Show {
        id: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Approve someone else's request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Deny someone else's request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// End an elevation early (pending or active); its leases are revoked.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Mark an emergency elevation as reviewed.
    Review {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalCommand {
    /// Ask for approval of a recorded decision held by the `approval` obligation.
    Request {
        /// The decision's ledger index.
        decision_id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the workspace's approval gates, one per line.
    List {
        #[arg(long, value_enum)]
        state: Option<ApprovalState>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one approval gate.
    Show {
        id: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Approve someone else's request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Deny someone else's request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        signer: Signer,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Let a principal do some actions on some resources for a while.
    Grant {
        /// Who may act, e.g. `Agent::"bot"`.
        #[arg(long)]
        grantee: String,
        /// An action it may do, e.g. `integration.read` (repeat for more).
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// A resource it may do them on, e.g. `Integration::"gh"` (repeat for more).
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// How long the consent lasts: `2h`, `1day`.
        #[arg(long, value_parser = parse_duration)]
        duration: Duration,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the workspace's consents, one per line.
    List {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// End a consent early.
    Revoke {
        id: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SigningKeyCommand {
    /// Register your public key with the server (the latest registration counts).
    #[command(group(ArgGroup::new("source").required(true).args(["public_key_file", "sign_key"])))]
    Register {
        /// A file holding the public key (standard base64 of its 32 bytes).
        #[arg(long)]
        public_key_file: Option<PathBuf>,
        /// Derive the public key from this signing key file instead.
        #[arg(long)]
        sign_key: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show the public key you registered.
    Show {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        connection: Connection,
    },
    /// Make a new signing key in FILE (mode 0600, never overwritten); prints only
    /// its public key and key id. Needs no server.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

/// The states `GET /v1/break-glass?state=` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ElevationState {
    Pending,
    Active,
    Expired,
    Revoked,
    Denied,
}

impl ElevationState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
        }
    }
}

/// The states `GET /v1/approvals?state=` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ApprovalState {
    Pending,
    Approved,
    Used,
    Denied,
    Expired,
}

impl ApprovalState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Used => "used",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// `--json`: print the server's answer as it is.
#[derive(Debug, Args)]
pub(crate) struct Output {
    /// Print the server's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
}

/// Signing with your own key.
#[derive(Debug, Args)]
pub(crate) struct Signer {
    /// Sign with the Ed25519 key in FILE (see `writ signing-key generate`), as the
    /// principal and workspace your token is (asked from the server).
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
}

/// Who signs a statement, as the server records it in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    actor: String,
    workspace: String,
}

/// The kinds of approve and deny statements (`writ-statement-v1`) this command signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatementKind {
    BreakGlassApprove,
    BreakGlassDeny,
    ApprovalApprove,
    ApprovalDeny,
}

impl StatementKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::BreakGlassApprove => "break_glass.approve",
            Self::BreakGlassDeny => "break_glass.deny",
            Self::ApprovalApprove => "approval.approve",
            Self::ApprovalDeny => "approval.deny",
        }
    }
}

impl Signer {
    /// The key file and who signs, or `None` when not signing. Asks the server who the
    /// token is only when signing.
    fn resolve(&self, connection: &Connection) -> anyhow::Result<Option<(&Path, Identity)>> {
        let Some(key) = self.sign_key.as_deref() else {
            return Ok(None);
        };
        let answer = connection
            .call("GET", "/v1/whoami", None)
            .context("cannot ask the server who the token is, which a signed statement names")?;
        Ok(Some((key, identity_from_whoami(&answer)?)))
    }
}

/// The principal and workspace of a `GET /v1/whoami` answer, exactly as the server
/// writes them in entries. Only a principal of a workspace signs.
fn identity_from_whoami(answer: &Value) -> anyhow::Result<Identity> {
    let actor = answer
        .get("principal")
        .and_then(Value::as_str)
        .filter(|actor| !actor.is_empty())
        .context("the server's whoami answer has no principal")?;
    let workspace = answer
        .get("workspace")
        .and_then(Value::as_str)
        .context("the server's whoami answer has no workspace")?;
    if workspace.is_empty() || workspace == "-" {
        bail!("`{actor}` has no workspace: only Users of a workspace sign statements");
    }
    Ok(Identity {
        actor: actor.to_owned(),
        workspace: workspace.to_owned(),
    })
}

/// A humantime duration (`30m`, `4h`): more than zero and whole milliseconds, since
/// the signed statement carries `duration_ms` and must match the server's own reading.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as `30m` or `4h`: {error}"))?;
    if duration.is_zero() {
        return Err(format!("`{text}` is zero"));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("`{text}` is not a whole number of milliseconds"));
    }
    Ok(duration)
}

/// The duration as the integer `duration_ms` of a statement.
fn duration_ms(duration: Duration) -> anyhow::Result<u64> {
    u64::try_from(duration.as_millis()).context("the duration is too long")
}

/// The statement of an approve or deny: `subject` is the id, `comment` is `""` when none.
fn decision_statement(
    kind: StatementKind,
    who: &Identity,
    subject: &str,
    comment: Option<&str>,
) -> Map<String, Value> {
    statement::decision_statement(
        kind.as_str(),
        &who.actor,
        &who.workspace,
        subject,
        comment.unwrap_or(""),
    )
}

/// The statement of a break-glass request.
fn request_statement(
    who: &Identity,
    role: &str,
    reason: &str,
    duration_ms: u64,
    nonce: &str,
) -> Map<String, Value> {
    statement::request_statement(&who.actor, &who.workspace, role, reason, duration_ms, nonce)
}

/// 16 random bytes as 32 lowercase hex digits: makes each signed request unique.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Signs a statement with the key in `path`: the `signature` object of a request body.
/// (A key file error names the file and what is wrong, never what it holds.)
fn sign_with(path: &Path, statement: Map<String, Value>) -> anyhow::Result<Value> {
    let key = statement::read_signing_key(path)?;
    let signed = statement::SignedStatement::sign(&key, statement);
    serde_json::to_value(&signed).context("cannot encode the signature")
}

/// A public key as registered: (standard base64 of its 32 bytes, its key id).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicKey {
    base64: String,
    key_id: String,
}

/// The public key of the signing key in `path`.
fn public_key_of_signing_key(path: &Path) -> anyhow::Result<PublicKey> {
    let public = statement::read_signing_key(path)?.verifying_key();
    Ok(PublicKey {
        base64: statement::public_key_base64(&public),
        key_id: statement::key_id(&public),
    })
}

/// Reads a public key file: standard base64 of 32 bytes, surrounding whitespace allowed.
fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let public = statement::parse_public_key(text.trim())
        .with_context(|| format!("`{}` does not hold a public key", path.display()))?;
    Ok(PublicKey {
        base64: statement::public_key_base64(&public),
        key_id: statement::key_id(&public),
    })
}

/// The body of an approve or deny, signed when a key is given.
fn decision_body(
    kind: StatementKind,
    id: &str,
    comment: Option<&str>,
    signing: Option<(&Path, Identity)>,
) -> anyhow::Result<Value> {
    let mut body = Map::new();
    if let Some(comment) = comment {
        body.insert("comment".into(), comment.into());
    }
    if let Some((key, who)) = signing {
        let statement = decision_statement(kind, &who, id, comment);
        body.insert("signature".into(), sign_with(key, statement)?);
    }
    Ok(Value::Object(body))
}

/// One path segment, percent-encoded.
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The query of `GET /v1/break-glass`.
fn elevation_list_path(state: Option<ElevationState>, unreviewed: bool) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(state) = state {
        query.append_pair("state", state.as_str());
    }
    if unreviewed {
        query.append_pair("unreviewed", "true");
    }
    with_query("/v1/break-glass", &query.finish())
}

/// The query of `GET /v1/approvals`.
fn approval_list_path(state: Option<ApprovalState>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(state) = state {
        query.append_pair("state", state.as_str());
    }
    with_query("/v1/approvals", &query.finish())
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// A `*_unix_ms` value as RFC 3339 UTC (milliseconds), or `-`.
fn time_text(value: Option<&Value>) -> String {
    match value.and_then(Value::as_u64) {
        Some(ms) => SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .map_or_else(
                || ms.to_string(),
                |at| humantime::format_rfc3339_millis(at).to_string(),
            ),
        None => "-".to_owned(),
    }
}

fn text<'a>(item: &'a Value, field: &str) -> &'a str {
    item.get(field).and_then(Value::as_str).unwrap_or("-")
}

fn joined(item: &Value, field: &str) -> String {
    let parts: Vec<&str> = item
        .get(field)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

/// One elevation: id, state, role, requester, when it ends (the pending deadline,
/// the end of the active window, or when it ended), then its flags.
fn elevation_line(item: &Value) -> String {
    let state = text(item, "state");
    let until = match state {
        "pending" => time_text(item.get("pending_expires_unix_ms")),
        "active" => time_text(item.get("expires_unix_ms")),
        _ => time_text(
            item.get("ended_unix_ms")
                .or_else(|| item.get("expires_unix_ms")),
        ),
    };
    let mut line = format!(
        "{}  {state}  {}  {}  {until}",
        text(item, "id"),
        text(item, "role"),
        text(item, "requester"),
    );
    if item.get("emergency").and_then(Value::as_bool) == Some(true) {
        line.push_str("  emergency");
        if item.get("reviewed").and_then(Value::as_bool) == Some(false) {
            line.push_str(" unreviewed");
        }
    }
    line
}

/// One approval gate: id, state, action on resource, requester, when it ends (the
/// pending deadline while pending, else the end of the approved window).
fn approval_line(item: &Value) -> String {
    let state = text(item, "state");
    let until = if state == "pending" {
        time_text(item.get("pending_expires_unix_ms"))
    } else {
        time_text(item.get("window_ends_unix_ms"))
    };
    format!(
        "{}  {state}  {} {}  {}  {until}",
        text(item, "id"),
        text(item, "action"),
        text(item, "resource"),
        text(item, "requester"),
    )
}

/// One consent: id, state, actions, grantee (and grantor), its expiry (or when it
/// ended).
fn consent_line(item: &Value) -> String {
    let until = item
        .get("ended_unix_ms")
        .or_else(|| item.get("expires_unix_ms"));
    format!(
        "{}  {}  {} on {}  {} (by {})  {}",
        text(item, "id"),
        text(item, "state"),
        joined(item, "actions"),
        joined(item, "resources"),
        text(item, "grantee"),
        text(item, "grantor"),
        time_text(until),
    )
}

/// Every field of one item, `*_unix_ms` as RFC 3339, for `show`.
fn detail_lines(item: &Value) -> Vec<String> {
    let Some(fields) = item.as_object() else {
        return vec![item.to_string()];
    };
    fields
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                Value::String(text) => text.clone(),
                _ if key.ends_with("_unix_ms") => time_text(Some(value)),
                other => other.to_string(),
            };
            format!("{key}: {shown}")
        })
        .collect()
}

/// Prints one item: the server's JSON, or its line.
fn print_item(answer: &Value, output: &Output, line: fn(&Value) -> String) -> anyhow::Result<()> {
    if output.json {
        print_json(answer)
    } else {
        println!("{}", line(answer));
        Ok(())
    }
}

/// Prints one item in full: the server's JSON, or its line and then every field.
fn print_detail(answer: &Value, output: &Output, line: fn(&Value) -> String) -> anyhow::Result<()> {
    if output.json {
        return print_json(answer);
    }
    println!("{}", line(answer));
    for detail in detail_lines(answer) {
        println!("  {detail}");
    }
    Ok(())
}

/// Prints a list held under `field`: the server's JSON, or one line per item.
fn print_list(
    answer: &Value,
    field: &str,
    output: &Output,
    line: fn(&Value) -> String,
) -> anyhow::Result<()> {
    if output.json {
        return print_json(answer);
    }
    let items = answer
        .get(field)
        .and_then(Value::as_array)
        .with_context(|| format!("the answer has no `{field}` list"))?;
    let mut out = std::io::stdout().lock();
    for item in items {
        writeln!(out, "{}", line(item))?;
    }
    if items.is_empty() {
        eprintln!("none");
    }
    Ok(())
}

pub(crate) fn break_glass(command: BreakGlassCommand) -> anyhow::Result<ExitCode> {
    match command {
        BreakGlassCommand::Request {
            role,
            reason,
            duration,
            emergency,
            signer,
            output,
            connection,
        } => {
            let mut body = Map::new();
            body.insert("role".into(), role.as_str().into());
            body.insert("reason".into(), reason.as_str().into());
            body.insert(
                "duration".into(),
                humantime::format_duration(duration).to_string().into(),
            );
            if emergency {
                body.insert("emergency".into(), true.into());
            }
            if let Some((key, who)) = signer.resolve(&connection)? {
                let statement =
                    request_statement(&who, &role, &reason, duration_ms(duration)?, &nonce());
                body.insert("signature".into(), sign_with(key, statement)?);
            }
            let answer = connection.call("POST", "/v1/break-glass", Some(&Value::Object(body)))?;
            print_item(&answer, &output, elevation_line)?;
        }
        BreakGlassCommand::List {
            state,
            unreviewed,
            output,
            connection,
        } => {
            let answer = connection.call("GET", &elevation_list_path(state, unreviewed), None)?;
            print_list(&answer, "elevations", &output, elevation_line)?;
        }
        BreakGlassCommand::Show {
            id,
            output,
            connection,
        } => {
            let answer =
                connection.call("GET", &format!("/v1/break-glass/{}", segment(&id)), None)?;
            print_detail(&answer, &output, elevation_line)?;
        }
        BreakGlassCommand::Approve {
            id,
            comment,
            signer,
            output,
            connection,
        } => {
            let body = decision_body(
                StatementKind::BreakGlassApprove,
                &id,
                comment.as_deref(),
                signer.resolve(&connection)?,
            )?;
            let path = format!("/v1/break-glass/{}/approve", segment(&id));
            print_item(
                &connection.call("POST", &path, Some(&body))?,
                &output,
                elevation_line,
            )?;
        }
        BreakGlassCommand::Deny {
            id,
            comment,
            signer,
            output,
            connection,
        } => {
            let body = decision_body(
                StatementKind::BreakGlassDeny,
                &id,
                comment.as_deref(),
                signer.resolve(&connection)?,
            )?;
            let path = format!("/v1/break-glass/{}/deny", segment(&id));
            print_item(
                &connection.call("POST", &path, Some(&body))?,
                &output,
                elevation_line,
            )?;
        }
        BreakGlassCommand::Revoke {
            id,
            reason,
            output,
            connection,
        } => {
            let path = format!("/v1/break-glass/{}/revoke", segment(&id));
            let answer = connection.call("POST", &path, Some(&json!({"reason": reason})))?;
            print_item(&answer, &output, elevation_line)?;
        }
        BreakGlassCommand::Review {
            id,
            comment,
            output,
            connection,
        } => {
            let body = match comment {
                Some(comment) => json!({"comment": comment}),
                None => json!({}),
            };
            let path = format!("/v1/break-glass/{}/review", segment(&id));
            print_item(
                &connection.call("POST", &path, Some(&body))?,
                &output,
                elevation_line,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn approval(command: ApprovalCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApprovalCommand::Request {
            decision_id,
            reason,
            output,
            connection,
        } => {
            let mut body = Map::new();
            body.insert("decision_id".into(), decision_id.into());
            if let Some(reason) = reason {
                body.insert("reason".into(), reason.into());
            }
            let answer = connection.call("POST", "/v1/approvals", Some(&Value::Object(body)))?;
            print_item(&answer, &output, approval_line)?;
        }
        ApprovalCommand::List {
            state,
            output,
            connection,
        } => {
            let answer = connection.call("GET", &approval_list_path(state), None)?;
            print_list(&answer, "approvals", &output, approval_line)?;
        }
        ApprovalCommand::Show {
            id,
            output,
            connection,
        } => {
            let answer =
                connection.call("GET", &format!("/v1/approvals/{}", segment(&id)), None)?;
            print_detail(&answer, &output, approval_line)?;
        }
        ApprovalCommand::Approve {
            id,
            comment,
            signer,
            output,
            connection,
        } => {
            let body = decision_body(
                StatementKind::ApprovalApprove,
                &id,
                comment.as_deref(),
                signer.resolve(&connection)?,
            )?;
            let path = format!("/v1/approvals/{}/approve", segment(&id));
            print_item(
                &connection.call("POST", &path, Some(&body))?,
                &output,
                approval_line,
            )?;
        }
        ApprovalCommand::Deny {
            id,
            comment,
            signer,
            output,
            connection,
        } => {
            let body = decision_body(
                StatementKind::ApprovalDeny,
                &id,
                comment.as_deref(),
                signer.resolve(&connection)?,
            )?;
            let path = format!("/v1/approvals/{}/deny", segment(&id));
            print_item(
                &connection.call("POST", &path, Some(&body))?,
                &output,
                approval_line,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn consent(command: ConsentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsentCommand::Grant {
            grantee,
            actions,
            resources,
            duration,
            reason,
            output,
            connection,
        } => {
            let mut body = Map::new();
            body.insert("grantee".into(), grantee.into());
            body.insert("actions".into(), actions.into());
            body.insert("resources".into(), resources.into());
            body.insert(
                "duration".into(),
                humantime::format_duration(duration).to_string().into(),
            );
            if let Some(reason) = reason {
                body.insert("reason".into(), reason.into());
            }
            let answer = connection.call("POST", "/v1/consents", Some(&Value::Object(body)))?;
            print_item(&answer, &output, consent_line)?;
        }
        ConsentCommand::List { output, connection } => {
            let answer = connection.call("GET", "/v1/consents", None)?;
            print_list(&answer, "consents", &output, consent_line)?;
        }
        ConsentCommand::Revoke {
            id,
            output,
            connection,
        } => {
            let answer =
                connection.call("DELETE", &format!("/v1/consents/{}", segment(&id)), None)?;
            if output.json || !answer.is_object() {
                print_json(&answer)?;
            } else {
                println!("{}", consent_line(&answer));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn signing_key(command: SigningKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        SigningKeyCommand::Register {
            public_key_file,
            sign_key,
            output,
            connection,
        } => {
            let public_key = match (public_key_file, sign_key) {
                (Some(file), None) => read_public_key(&file)?,
                (None, Some(file)) => public_key_of_signing_key(&file)?,
                _ => bail!("give --public-key-file FILE or --sign-key FILE"),
            };
            let answer = connection.call(
                "PUT",
                "/v1/signing-key",
                Some(&json!({"public_key": public_key.base64})),
            )?;
            let server_id = answer.get("key_id").and_then(Value::as_str);
            if server_id != Some(public_key.key_id.as_str()) {
                bail!(
                    "the server answered key id `{}`, but the key's id is `{}`",
                    server_id.unwrap_or("-"),
                    public_key.key_id
                );
            }
            if output.json {
                print_json(&answer)?;
            } else {
                println!("{}", public_key.key_id);
            }
        }
        SigningKeyCommand::Show { output, connection } => {
            let answer = connection.call("GET", "/v1/signing-key", None)?;
            if output.json {
                print_json(&answer)?;
            } else {
                println!(
                    "{}  {}",
                    text(&answer, "key_id"),
                    text(&answer, "public_key")
                );
            }
        }
        SigningKeyCommand::Generate { out } => {
            write_new_seed(&out)?;
            let public_key = public_key_of_signing_key(&out)?;
            println!("public key: {}", public_key.base64);
            println!("key id: {}", public_key.key_id);
            eprintln!(
                "register it with: writ signing-key register --sign-key {}",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a new random 32-byte seed, standard base64 and a newline, to a file that
/// must not exist yet, readable by its owner only. A half-written file is removed.
fn write_new_seed(path: &Path) -> anyhow::Result<()> {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut());
    let encoded = Zeroizing::new(STANDARD.encode(seed.as_ref()));
    writ_server::kernel::write_secret_file(path, &encoded).with_context(|| {
        format!(
            "a signing key file is never overwritten: `{}`",
            path.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, Subcommand)]
    enum TestCommand {
        #[command(subcommand)]
        BreakGlass(BreakGlassCommand),
        #[command(subcommand)]
        Approval(ApprovalCommand),
        #[command(subcommand)]
        Consent(ConsentCommand),
        #[command(subcommand)]
        SigningKey(SigningKeyCommand),
    }

    fn parse(args: &[&str]) -> Result<TestCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("writ").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    fn alice() -> Identity {
        Identity {
            actor: "User::\"alice\"".into(),
            workspace: "acme".into(),
        }
    }

    /// A connection to nowhere: a test that needs no server must not reach one.
    fn nowhere() -> Connection {
        Connection {
            url: "http://127.0.0.1:9".into(),
            token: None,
        }
    }

    #[test]
    fn a_request_parses_its_duration_and_signer() {
        let command = parse(&[
            "break-glass",
            "request",
            "--role",
            "oncall",
            "--reason",
            "pager",
            "--duration",
            "30m",
            "--emergency",
            "--sign-key",
            "k",
        ])
        .unwrap();
        let TestCommand::BreakGlass(BreakGlassCommand::Request {
            role,
            duration,
            emergency,
            signer,
            ..
        }) = command
        else {
            panic!("parsed as {command:?}");
        };
        assert_eq!(role, "oncall");
        assert_eq!(duration, Duration::from_secs(30 * 60));
        assert!(emergency);
        assert_eq!(signer.sign_key.as_deref(), Some(Path::new("k")));
    }

    #[test]
    fn the_signer_is_never_named_on_the_command_line() {
        assert!(parse(&["break-glass", "approve", "bg_1", "--sign-key", "k"]).is_ok());
        let named = [
            "break-glass",
            "approve",
            "bg_1",
            "--sign-key",
            "k",
            "--as",
            "User::\"a\"",
        ];
        assert!(parse(&named).is_err(), "who signs comes from the server");
    }

    #[test]
    fn whoami_gives_the_signer() {
        let who =
            identity_from_whoami(&json!({"principal": "User::\"alice\"", "workspace": "acme"}));
        assert_eq!(who.unwrap(), alice());
        let operator =
            identity_from_whoami(&json!({"principal": "Operator::\"ops\"", "workspace": "-"}));
        assert!(format!("{:#}", operator.unwrap_err()).contains("no workspace"));
        assert!(identity_from_whoami(&json!({"workspace": "acme"})).is_err());
        assert!(identity_from_whoami(&json!({"principal": "User::\"alice\""})).is_err());
        assert!(identity_from_whoami(&json!({"principal": "", "workspace": "acme"})).is_err());
    }

    #[test]
    fn unsigned_commands_have_no_signer() {
        let command = parse(&["approval", "deny", "ap_1", "--comment", "no"]).unwrap();
        let TestCommand::Approval(ApprovalCommand::Deny {
            signer, comment, ..
        }) = command
        else {
            panic!("parsed as {command:?}");
        };
        assert_eq!(comment.as_deref(), Some("no"));
        // Not signing: the server is not asked who the token is (there is none here).
        assert!(signer.resolve(&nowhere()).unwrap().is_none());
        assert!(
            parse(&["break-glass", "revoke", "bg_1"]).is_err(),
            "--reason is required"
        );
    }

    #[test]
    fn list_states_are_a_closed_set() {
        assert!(parse(&["break-glass", "list", "--state", "active", "--unreviewed"]).is_ok());
        assert!(parse(&["break-glass", "list", "--state", "used"]).is_err());
        assert!(parse(&["approval", "list", "--state", "used"]).is_ok());
        assert!(parse(&["approval", "list", "--state", "active"]).is_err());
    }

    #[test]
    fn list_paths_carry_the_filters() {
        assert_eq!(elevation_list_path(None, false), "/v1/break-glass");
        assert_eq!(
            elevation_list_path(Some(ElevationState::Pending), true),
            "/v1/break-glass?state=pending&unreviewed=true"
        );
        assert_eq!(
            elevation_list_path(None, true),
            "/v1/break-glass?unreviewed=true"
        );
        assert_eq!(approval_list_path(None), "/v1/approvals");
        // The names sent are the names the flag takes.
        for state in ApprovalState::value_variants() {
            let name = state.to_possible_value().unwrap();
            assert_eq!(name.get_name(), state.as_str());
        }
        for state in ElevationState::value_variants() {
            let name = state.to_possible_value().unwrap();
            assert_eq!(name.get_name(), state.as_str());
        }
        assert_eq!(
            approval_list_path(Some(ApprovalState::Used)),
            "/v1/approvals?state=used"
        );
    }

    #[test]
    fn consent_grant_takes_repeated_actions_and_resources() {
        let command = parse(&[
            "consent",
            "grant",
            "--grantee",
            "Agent::\"bot\"",
            "--action",
            "integration.read",
            "--action",
            "integration.write",
            "--resource",
            "Integration::\"gh\"",
            "--duration",
            "2h",
        ])
        .unwrap();
        let TestCommand::Consent(ConsentCommand::Grant {
            actions,
            resources,
            duration,
            reason,
            ..
        }) = command
        else {
            panic!("parsed as {command:?}");
        };
        assert_eq!(actions, ["integration.read", "integration.write"]);
        assert_eq!(resources, ["Integration::\"gh\""]);
        assert_eq!(duration, Duration::from_secs(7200));
        assert_eq!(reason, None);
        let missing_action = parse(&[
            "consent",
            "grant",
            "--grantee",
            "Agent::\"bot\"",
            "--resource",
            "Integration::\"gh\"",
            "--duration",
            "2h",
        ]);
        assert!(missing_action.is_err());
    }

    #[test]
    fn register_takes_exactly_one_key_source() {
        assert!(parse(&["signing-key", "register"]).is_err());
        assert!(parse(&["signing-key", "register", "--public-key-file", "p"]).is_ok());
        assert!(parse(&["signing-key", "register", "--sign-key", "k"]).is_ok());
        assert!(parse(&[
            "signing-key",
            "register",
            "--sign-key",
            "k",
            "--public-key-file",
            "p"
        ])
        .is_err());
        assert!(
            parse(&["signing-key", "generate"]).is_err(),
            "--out is required"
        );
    }

    #[test]
    fn durations_are_humantime_whole_milliseconds() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("4h 30m"), Ok(Duration::from_secs(16200)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10us").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(duration_ms(Duration::from_secs(1800)).unwrap(), 1_800_000);
        // What is sent is what the server parses back to the same milliseconds.
        for text in ["30m", "4h 30m", "1500ms", "2days 1h"] {
            let duration = parse_duration(text).unwrap();
            let sent = humantime::format_duration(duration).to_string();
            assert_eq!(
                humantime::parse_duration(&sent).unwrap(),
                duration,
                "{text}"
            );
        }
    }

    #[test]
    fn decision_statements_have_the_spec_fields() {
        let statement = decision_statement(
            StatementKind::BreakGlassApprove,
            &alice(),
            "bg_0123",
            Some("ok"),
        );
        assert_eq!(
            Value::Object(statement),
            json!({
                "kind": "break_glass.approve",
                "actor": "User::\"alice\"",
                "workspace": "acme",
                "subject": "bg_0123",
                "comment": "ok",
            })
        );
        let statement = decision_statement(StatementKind::ApprovalDeny, &alice(), "ap_9", None);
        assert_eq!(statement["kind"], "approval.deny");
        assert_eq!(statement["comment"], "", "no comment is the empty string");
        assert_eq!(StatementKind::BreakGlassDeny.as_str(), "break_glass.deny");
        assert_eq!(StatementKind::ApprovalApprove.as_str(), "approval.approve");
    }

    #[test]
    fn request_statements_have_the_spec_fields() {
        let statement = request_statement(
            &alice(),
            "oncall",
            "pager",
            1_800_000,
            "ab".repeat(16).as_str(),
        );
        assert_eq!(
            Value::Object(statement),
            json!({
                "kind": "break_glass.request",
                "actor": "User::\"alice\"",
                "workspace": "acme",
                "role": "oncall",
                "reason": "pager",
                "duration_ms": 1_800_000,
                "nonce": "ab".repeat(16),
            })
        );
    }

    #[test]
    fn nonces_are_32_lowercase_hex_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn unsigned_bodies_carry_only_the_comment() {
        let body = decision_body(StatementKind::BreakGlassApprove, "bg_1", Some("ok"), None);
        assert_eq!(body.unwrap(), json!({"comment": "ok"}));
        let body = decision_body(StatementKind::BreakGlassDeny, "bg_1", None, None);
        assert_eq!(body.unwrap(), json!({}));
    }

    #[test]
    fn lines_show_id_state_what_who_and_until() {
        let elevation = json!({
            "id": "bg_1", "state": "active", "role": "oncall", "requester": "User::\"bob\"",
            "emergency": true, "reviewed": false,
            "pending_expires_unix_ms": 0, "expires_unix_ms": 1_764_672_000_000_u64,
        });
        assert_eq!(
            elevation_line(&elevation),
            "bg_1  active  oncall  User::\"bob\"  2025-12-02T10:40:00.000Z  emergency unreviewed"
        );
        let pending = json!({
            "id": "bg_2", "state": "pending", "role": "admin", "requester": "User::\"bob\"",
            "emergency": false, "pending_expires_unix_ms": 1_764_672_000_000_u64,
        });
        assert_eq!(
            elevation_line(&pending),
            "bg_2  pending  admin  User::\"bob\"  2025-12-02T10:40:00.000Z"
        );
        let approval = json!({
            "id": "ap_1", "state": "approved", "action": "deploy", "resource": "Environment::\"prod\"",
            "requester": "Agent::\"bot\"", "window_ends_unix_ms": 1_764_672_000_000_u64,
        });
        assert_eq!(
            approval_line(&approval),
            "ap_1  approved  deploy Environment::\"prod\"  Agent::\"bot\"  2025-12-02T10:40:00.000Z"
        );
        let consent = json!({
            "id": "cs_1", "state": "active", "grantor": "User::\"alice\"", "grantee": "Agent::\"bot\"",
            "actions": ["integration.read", "integration.write"], "resources": ["Integration::\"gh\""],
            "expires_unix_ms": 1_764_672_000_000_u64,
        });
        assert_eq!(
            consent_line(&consent),
            "cs_1  active  integration.read,integration.write on Integration::\"gh\"  \
             Agent::\"bot\" (by User::\"alice\")  2025-12-02T10:40:00.000Z"
        );
        let revoked = json!({
            "id": "bg_3", "state": "revoked", "role": "oncall", "requester": "User::\"bob\"",
            "expires_unix_ms": 1_764_672_000_000_u64, "ended_unix_ms": 1_764_671_000_000_u64,
        });
        assert_eq!(
            elevation_line(&revoked),
            "bg_3  revoked  oncall  User::\"bob\"  2025-12-02T10:23:20.000Z",
            "an ended elevation shows when it ended"
        );
        assert_eq!(elevation_line(&json!({})), "-  -  -  -  -");
    }

    #[test]
    fn details_show_times_as_rfc3339() {
        let lines = detail_lines(&json!({
            "id": "bg_1", "approvals_required": 1, "expires_unix_ms": 1_764_672_000_000_u64,
            "end_reason": null,
        }));
        // In the server's order (or sorted, if serde_json's map sorts): compare as sets.
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            [
                "approvals_required: 1",
                "end_reason: null",
                "expires_unix_ms: 2025-12-02T10:40:00.000Z",
                "id: bg_1",
            ]
        );
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(segment("bg_0123"), "bg_0123");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn a_new_seed_is_private_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("me.key");
        write_new_seed(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let seed = STANDARD.decode(text.trim()).unwrap();
        assert_eq!(seed.len(), 32);

        let error = write_new_seed(&path).unwrap_err();
        assert!(
            format!("{error:#}").contains("never overwritten"),
            "{error:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "unchanged");
    }

    #[test]
    fn signed_bodies_verify_against_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("me.key");
        write_new_seed(&key).unwrap();
        let signing = Some((key.as_path(), alice()));
        let body = decision_body(StatementKind::ApprovalApprove, "ap_7", None, signing).unwrap();
        assert!(body.get("comment").is_none(), "no comment is sent as none");
        let signed: statement::SignedStatement =
            serde_json::from_value(body["signature"].clone()).unwrap();
        assert_eq!(
            Value::Object(signed.statement.clone()),
            json!({
                "kind": "approval.approve",
                "actor": "User::\"alice\"",
                "workspace": "acme",
                "subject": "ap_7",
                "comment": "",
            })
        );
        let public = public_key_of_signing_key(&key).unwrap();
        assert_eq!(signed.key_id, public.key_id);
        let verifying = statement::parse_public_key(&public.base64).unwrap();
        signed.verify(&verifying).unwrap();

        // The same statement under another key does not verify.
        let other = dir.path().join("other.key");
        write_new_seed(&other).unwrap();
        let other = public_key_of_signing_key(&other).unwrap();
        let other = statement::parse_public_key(&other.base64).unwrap();
        assert!(signed.verify(&other).is_err());
    }

    #[test]
    fn a_bad_key_file_is_named_but_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "hunter2-not-a-key-at-all\n").unwrap();
        let signing = Some((path.as_path(), alice()));
        let error =
            decision_body(StatementKind::BreakGlassDeny, "bg_1", None, signing).unwrap_err();
        let message = format!("{error:#} {error:?}");
        assert!(message.contains("bad.key"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let missing = dir.path().join("missing.key");
        let error = public_key_of_signing_key(&missing).unwrap_err();
        assert!(format!("{error:#}").contains("missing.key"), "{error:#}");
    }

    #[test]
    fn a_public_key_file_gives_the_same_id_as_its_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("me.key");
        write_new_seed(&key).unwrap();
        let public = public_key_of_signing_key(&key).unwrap();
        let file = dir.path().join("me.pub");
        std::fs::write(&file, format!("  {}\n", public.base64)).unwrap();
        assert_eq!(read_public_key(&file).unwrap(), public);
        assert_eq!(public.key_id.len(), 32);

        std::fs::write(&file, "AAAA\n").unwrap();
        assert!(read_public_key(&file).is_err());
    }

    /// The statements built here pass the kernel's and the verifier's matching rule
    /// for the entries the server writes from the same request.
    #[test]
    fn statements_match_the_entries_they_vouch_for() {
        let request = request_statement(&alice(), "oncall", "pager", 1_800_000, &nonce());
        let entry = json!({
            "kind": "break_glass.requested", "actor": "User::\"alice\"", "workspace": "acme",
            "id": "bg_1", "role": "oncall", "reason": "pager", "duration_ms": 1_800_000,
        });
        statement::check_matches(&entry, &request).unwrap();

        let approve = decision_statement(StatementKind::BreakGlassApprove, &alice(), "bg_1", None);
        let entry = json!({
            "kind": "break_glass.approved", "actor": "User::\"alice\"", "workspace": "acme",
            "id": "bg_1", "approvals": 1,
        });
        statement::check_matches(&entry, &approve).unwrap();

        let deny = decision_statement(StatementKind::ApprovalDeny, &alice(), "ap_1", Some("no"));
        let entry = json!({
            "kind": "approval.denied", "actor": "User::\"alice\"", "workspace": "acme",
            "id": "ap_1", "comment": "no",
        });
        statement::check_matches(&entry, &deny).unwrap();
        let other = json!({
            "kind": "approval.denied", "actor": "User::\"alice\"", "workspace": "acme",
            "id": "ap_2", "comment": "no",
        });
        assert!(statement::check_matches(&other, &deny).is_err());
    }
}
