//! The ledger's read API: the C2SP tlog-tiles read paths (`/ledger/checkpoint`,
//! `/ledger/tile/...`), RFC 9162 proofs as JSON (`/v1/ledger/proof/...`), and a
//! workspace's own entries with their proofs (`/v1/ledger/entries`).
//!
//! Everything is read from the store the commit thread writes, at its latest signed
//! checkpoint, through `writ_ledger::tile_reader`; reads run on the blocking pool.
//! Full tiles never change and are cached for a year; partial tiles and the
//! checkpoint change with every commit and are not cached. A partial tile is served
//! only with the width it has at the latest checkpoint (as C2SP tlog-tiles allows):
//! a client that sees a 404 for one fetches the checkpoint again.
//!
//! A proof for a size other than the latest comes with the signed checkpoint of that
//! size when the store still retains one (see `log::Retention`); when it does not,
//! the proof is in the tree of the latest checkpoint instead, and the answer's
//! `size` (inclusion) or `new` (consistency) says which size it is for.
//!
//! Who reads what. The checkpoint, the hash tiles and the proofs are public: they
//! hold hashes only, and they are what lets anyone check that the log is consistent.
//! The entry bundles (`/ledger/tile/entries/...`) hold every workspace's entries
//! (actors, resources, paths, hosts, secret names, stored entities), so they are
//! served only to a bearer token whose principal reads the whole ledger: an
//! Operator or an Auditor. That rule is the principal's kind, checked per request,
//! and a bundle read is not recorded: an auditor who verifies the log over HTTP
//! fetches every bundle, and a ledger entry per bundle would grow the very log it
//! reads, without bound. (The Cedar policies say the same thing: `admin.ledger.read`
//! is permitted to every Auditor and Operator on `Kernel::"writ"`.) A workspace
//! owner reads its own workspace's entries through `/v1/ledger/entries`, a Cedar
//! decision recorded once per call.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use writ_ledger::store::{LedgerStore as _, SledStore};
use writ_ledger::tile_reader::{ReadError, TileReader};
use writ_ledger::tilepath::{parse_tile_path, TileKind};
use writ_ledger::{LeafIndex, TreeSize};

use crate::error::ApiError;
use crate::identity::PrincipalKind;
use crate::state::Shared;

/// `Cache-Control` of a full hash tile: its bytes never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a full entry bundle: its bytes never change either, but it was
/// served to one token, so no shared cache may keep it and hand it to someone else.
const PRIVATE_IMMUTABLE: &str = "private, max-age=31536000, immutable";
/// `Cache-Control` of the checkpoint, partial tiles and proofs: they change with
/// every commit.
const NO_STORE: &str = "no-store";

/// The most characters of a caller's input echoed back in an error.
const ECHO_CHARS: usize = 64;

/// The Cedar action of reading ledger entries.
pub const LEDGER_READ: &str = "admin.ledger.read";

/// The error code of an entry-bundle read by a principal that may not read the
/// whole ledger.
pub const ENTRIES_FORBIDDEN: &str = "ledger_entries_forbidden";

/// The most indexes one `GET /v1/ledger/entries` covers.
pub const MAX_ENTRIES_RANGE: u64 = 1000;

/// The most entry bytes one `GET /v1/ledger/entries` answer carries: an answer stops
/// before the entry that would pass it, and its `to` says where (1000 entries of the
/// largest size would otherwise be 64 MiB).
pub const MAX_ENTRIES_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// What the ledger routes read, and the kernel that checks tokens and decides
/// (`None` for the public routes over a store alone).
#[derive(Clone, Debug)]
struct Ledger {
    store: Arc<SledStore>,
    kernel: Option<Shared>,
}

/// The public ledger reads over a store alone (a server without identity, such as
/// a mirror or a test): the checkpoint, hash tiles and proofs. Entry bundles are
/// refused (`403 ledger_entries_forbidden`): no token can be checked here.
pub fn ledger_routes(store: Arc<SledStore>) -> Router {
    routes(Ledger {
        store,
        kernel: None,
    })
}

/// Every ledger read of the running kernel: the public ones, entry bundles for
/// Operator and Auditor tokens, and `/v1/ledger/entries` for workspace owners.
pub fn kernel_ledger_routes(state: Shared) -> Router {
    routes(Ledger {
        store: Arc::clone(&state.ledger_store),
        kernel: Some(state),
    })
}

fn routes(ledger: Ledger) -> Router {
    Router::new()
        .route("/ledger/checkpoint", get(checkpoint))
        .route("/ledger/tile/{*path}", get(tile))
        .route("/v1/ledger/proof/inclusion", get(inclusion))
        .route("/v1/ledger/proof/consistency", get(consistency))
        .route("/v1/ledger/entries", get(entries))
        .with_state(ledger)
}

/// Whether a principal of `kind` reads the whole ledger (every workspace's entries).
pub fn reads_whole_ledger(kind: PrincipalKind) -> bool {
    matches!(kind, PrincipalKind::Operator | PrincipalKind::Auditor)
}

/// Lets an entry-bundle read through when the request's bearer token verifies and
/// its principal reads the whole ledger: 401 without a token or with a bad one, 403
/// for any other principal. Not recorded (see the module's documentation).
fn check_entry_reader(ledger: &Ledger, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(state) = &ledger.kernel else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ENTRIES_FORBIDDEN,
            "entry bundles are not served here: this server checks no tokens",
        ));
    };
    let principal = state.principal(headers)?;
    if reads_whole_ledger(principal.kind()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ENTRIES_FORBIDDEN,
            format!(
                "entry bundles hold every workspace's entries and are served to Operator and Auditor tokens only, not to a {}; a workspace owner reads its own entries with `GET /v1/ledger/entries`",
                principal.kind()
            ),
        ))
    }
}

/// Runs `read` on the blocking pool with a reader over `store`.
async fn read<T: Send + 'static>(
    store: Arc<SledStore>,
    read: impl FnOnce(&TileReader<'_, SledStore>) -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || read(&TileReader::new(store.as_ref())))
        .await
        .map_err(|error| ApiError::internal("reading the ledger", &error))?
        .map_err(read_error)
}

/// The HTTP answer to a refused or failed read.
fn read_error(error: ReadError) -> ApiError {
    let (status, code) = match &error {
        ReadError::NoCheckpoint => (StatusCode::NOT_FOUND, "no_checkpoint"),
        ReadError::NoSuchTile { .. } => (StatusCode::NOT_FOUND, "tile_not_found"),
        ReadError::IndexOutOfRange { .. } => (StatusCode::NOT_FOUND, "index_out_of_range"),
        ReadError::BeyondLatest { .. } => (StatusCode::NOT_FOUND, "size_out_of_range"),
        ReadError::EmptyOldTree | ReadError::SizeOrder { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_sizes")
        }
        ReadError::SelfCheckFailed { .. } => {
            return ApiError::internal("building a ledger proof", &error)
        }
        _ => {
            tracing::error!(%error, "the ledger store could not be read");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "the ledger could not be read",
            );
        }
    };
    ApiError::new(status, code, error.to_string())
}

fn echo(text: &str) -> String {
    text.chars().take(ECHO_CHARS).collect()
}

/// `GET /ledger/checkpoint`: the latest signed checkpoint note.
async fn checkpoint(State(ledger): State<Ledger>) -> Result<Response, ApiError> {
    let (note, _) = read(ledger.store, |reader| reader.latest_checkpoint_note()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, NO_STORE),
        ],
        note,
    )
        .into_response())
}

/// `GET /ledger/tile/<L>/<N>[.p/<W>]` (public) and
/// `GET /ledger/tile/entries/<N>[.p/<W>]` (Operator and Auditor tokens only).
async fn tile(
    State(ledger): State<Ledger>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(rest) = path.map_err(|_| {
        ApiError::bad_request("malformed_tile_path", "the tile path is not valid UTF-8")
    })?;
    let full = format!("tile/{rest}");
    let tile = parse_tile_path(&full).map_err(|error| {
        ApiError::bad_request("malformed_tile_path", format!("`{}`: {error}", echo(&full)))
    })?;
    // INVARIANT: an entry bundle's bytes are read only after its reader passed.
    if tile.kind == TileKind::Entries {
        check_entry_reader(&ledger, &headers)?;
    }
    let bytes = read(ledger.store, move |reader| match tile.kind {
        TileKind::Hashes(level) => reader.hash_tile(level, tile.index, tile.partial),
        TileKind::Entries => reader.entry_bundle(tile.index, tile.partial),
    })
    .await?;
    let cache = match (tile.partial, tile.kind) {
        (Some(_), _) => NO_STORE,
        (None, TileKind::Hashes(_)) => IMMUTABLE,
        (None, TileKind::Entries) => PRIVATE_IMMUTABLE,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /v1/ledger/proof/inclusion?index=I[&size=S]`.
async fn inclusion(
    State(ledger): State<Ledger>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let [index, size] = parse_query(query.as_deref(), ["index", "size"])?;
    let index = LeafIndex(index.ok_or_else(|| missing("index"))?);
    let size = size.map(TreeSize);
    let proof = read(ledger.store, move |reader| {
        reader.inclusion_proof(index, size)
    })
    .await?;
    Ok(no_store(json!({
        "index": proof.index.0,
        "size": proof.size.0,
        "leaf_hash": proof.leaf_hash.to_base64(),
        "inclusion_proof": proof.proof.iter().map(|hash| hash.to_base64()).collect::<Vec<_>>(),
        "checkpoint": proof.checkpoint,
        "receipt": proof.receipt().to_text(),
    })))
}

/// `GET /v1/ledger/proof/consistency?old=O[&new=N]`.
async fn consistency(
    State(ledger): State<Ledger>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let [old, new] = parse_query(query.as_deref(), ["old", "new"])?;
    let old = TreeSize(old.ok_or_else(|| missing("old"))?);
    let new = new.map(TreeSize);
    let proof = read(ledger.store, move |reader| {
        reader.consistency_proof(old, new)
    })
    .await?;
    Ok(no_store(json!({
        "old": proof.old.0,
        "new": proof.new.0,
        "consistency_proof": proof.proof.iter().map(|hash| hash.to_base64()).collect::<Vec<_>>(),
        "checkpoint": proof.checkpoint,
    })))
}

/// `GET /v1/ledger/entries?from=F&to=T`: the entries of indexes `F` (inclusive) to
/// `T` (exclusive) that belong to the caller's workspace, each with its inclusion
/// proof against the one signed checkpoint in the answer.
///
/// Decided as `admin.ledger.read` on the caller's `Workspace` (owners only, by
/// policy) and recorded once per call. An Operator or an Auditor has no workspace:
/// it is decided on `Kernel::"writ"` and gets every entry of the range, as it may
/// read the entry bundles anyway. An entry belongs to a workspace when its
/// `workspace` field is exactly that workspace's id; no other entry is ever in the
/// answer.
async fn entries(
    State(ledger): State<Ledger>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Some(state) = &ledger.kernel else {
        return Err(ApiError::not_found("no such endpoint"));
    };
    let principal = state.principal(&headers)?;
    let range = entry_range(query.as_deref())?;
    let workspace = principal
        .workspace()
        .map(|workspace| workspace.as_str().to_owned());
    let admitted =
        crate::admin::authorize_admin(state, &principal, LEDGER_READ, workspace.as_deref()).await?;
    let store = Arc::clone(&ledger.store);
    let only = workspace.clone();
    let read = tokio::task::spawn_blocking(move || read_entries(&store, range, only.as_deref()))
        .await
        .map_err(|error| ApiError::internal("reading the ledger", &error))?
        .map_err(read_error)?;
    drop(admitted);
    let answer = match read {
        EntriesRead::Beyond { latest } => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "size_out_of_range",
                format!(
                    "`to` {} is beyond the latest checkpoint (size {latest}); fetch `/ledger/checkpoint` for the size",
                    range.to
                ),
            ))
        }
        EntriesRead::Moved => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "the ledger's checkpoint changed while the entries were read; try again",
            ))
        }
        EntriesRead::Read(answer) => answer,
    };
    Ok(no_store(json!({
        "workspace": workspace,
        "from": range.from,
        "to": answer.to,
        "size": answer.size.0,
        "checkpoint": answer.checkpoint,
        "entries": answer.entries.iter().map(|entry| json!({
            "index": entry.index.0,
            "entry": entry.text,
            "leaf_hash": entry.leaf_hash.to_base64(),
            "inclusion_proof": entry.proof.iter().map(|hash| hash.to_base64()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}

/// A range of entry indexes, `from` inclusive, `to` exclusive, at most
/// [`MAX_ENTRIES_RANGE`] long.
#[derive(Clone, Copy, Debug)]
struct EntryRange {
    from: u64,
    to: u64,
}

/// Parses and checks the query of `/v1/ledger/entries`: 400 when malformed, 422
/// when the range is empty or too long.
fn entry_range(query: Option<&str>) -> Result<EntryRange, ApiError> {
    let [from, to] = parse_query(query, ["from", "to"])?;
    let from = from.ok_or_else(|| missing("from"))?;
    let to = to.ok_or_else(|| missing("to"))?;
    if to <= from {
        return Err(ApiError::unprocessable(
            "invalid_range",
            format!("`to` ({to}) must be greater than `from` ({from}): `from` is inclusive and `to` exclusive"),
        ));
    }
    if to - from > MAX_ENTRIES_RANGE {
        return Err(ApiError::unprocessable(
            "range_too_large",
            format!(
                "a call covers at most {MAX_ENTRIES_RANGE} indexes, not {} (`from` {from}, `to` {to})",
                to - from
            ),
        ));
    }
    Ok(EntryRange { from, to })
}

/// One entry of a workspace's answer.
#[derive(Debug)]
struct ProvenEntry {
    index: LeafIndex,
    text: String,
    leaf_hash: writ_ledger::Hash,
    proof: Vec<writ_ledger::Hash>,
}

/// The entries read, and the checkpoint their proofs are against.
#[derive(Debug)]
struct EntriesAnswer {
    /// Where the answer stops (exclusive): the range's end, or less when the
    /// answer reached [`MAX_ENTRIES_ANSWER_BYTES`].
    to: u64,
    size: TreeSize,
    checkpoint: String,
    entries: Vec<ProvenEntry>,
}

#[derive(Debug)]
enum EntriesRead {
    Read(EntriesAnswer),
    /// The range ends beyond the latest checkpoint (of this size).
    Beyond {
        latest: TreeSize,
    },
    /// The checkpoint of the first proof was gone by a later one (the store keeps
    /// every checkpoint of the last hour, so only a read that long sees this).
    Moved,
}

/// The entries of `range` whose `workspace` is `only` (all of them when `None`),
/// each proven against the latest checkpoint, which must cover the range.
fn read_entries(
    store: &SledStore,
    range: EntryRange,
    only: Option<&str>,
) -> Result<EntriesRead, ReadError> {
    let reader = TileReader::new(store);
    let (checkpoint, size) = reader.latest_checkpoint_note()?;
    if range.to > size.0 {
        return Ok(EntriesRead::Beyond { latest: size });
    }
    let mut answer = EntriesAnswer {
        to: range.to,
        size,
        checkpoint,
        entries: Vec::new(),
    };
    let mut bytes = 0usize;
    let wanted = usize::try_from(range.to - range.from).unwrap_or(usize::MAX);
    for item in store.entries_from(LeafIndex(range.from)).take(wanted) {
        let (index, entry) = item?;
        if index.0 >= range.to {
            break;
        }
        if only.is_some_and(|workspace| !in_workspace(&entry, workspace)) {
            continue;
        }
        if bytes.saturating_add(entry.len()) > MAX_ENTRIES_ANSWER_BYTES {
            answer.to = index.0;
            break;
        }
        bytes += entry.len();
        let proof = reader.inclusion_proof(index, Some(size))?;
        if proof.size != size || proof.checkpoint != answer.checkpoint {
            return Ok(EntriesRead::Moved);
        }
        let text = String::from_utf8(entry).map_err(|_| writ_ledger::LedgerError::Corrupt {
            what: format!("entry {index} is not UTF-8"),
        })?;
        answer.entries.push(ProvenEntry {
            index,
            text,
            leaf_hash: proof.leaf_hash,
            proof: proof.proof,
        });
    }
    Ok(EntriesRead::Read(answer))
}

/// Whether an entry's `workspace` field is exactly `workspace`. An entry that does
/// not parse, or names its workspace twice, belongs to no workspace.
fn in_workspace(entry: &[u8], workspace: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Scope<'a> {
        #[serde(borrow)]
        workspace: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Scope<'_>>(entry).is_ok_and(|scope| scope.workspace == workspace)
}

fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, NO_STORE)], Json(body)).into_response()
}

fn missing(name: &str) -> ApiError {
    ApiError::bad_request(
        "malformed_query",
        format!("the query parameter `{name}` is required"),
    )
}

/// Parses a query of at most the parameters `names`, each at most once, each a
/// decimal without sign or leading zeroes.
fn parse_query<const N: usize>(
    query: Option<&str>,
    names: [&'static str; N],
) -> Result<[Option<u64>; N], ApiError> {
    let malformed = |message: String| ApiError::bad_request("malformed_query", message);
    let mut values = [None; N];
    let pairs = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    for (name, value) in pairs {
        let slot = names
            .iter()
            .position(|known| *known == name)
            .and_then(|position| values.get_mut(position))
            .ok_or_else(|| {
                malformed(format!(
                    "unknown query parameter `{}` (expected {})",
                    echo(&name),
                    names.join(", ")
                ))
            })?;
        if slot.is_some() {
            return Err(malformed(format!("`{name}` is given more than once")));
        }
        let canonical = !value.is_empty()
            && value.bytes().all(|byte| byte.is_ascii_digit())
            && (value == "0" || !value.starts_with('0'));
        let number = value
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| {
                malformed(format!(
                    "`{name}` must be a decimal from 0 to 2^64-1 without leading zeroes, not `{}`",
                    echo(&value)
                ))
            })?;
        *slot = Some(number);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::Request;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use tower::ServiceExt as _;
    use writ_ledger::log::{Log, Retention, SystemClock};
    use writ_ledger::proof::{verify_consistency, verify_inclusion_bytes};
    use writ_ledger::receipt::{verify_receipt, Receipt};
    use writ_ledger::store::LedgerStore as _;
    use writ_ledger::{EntryDraft, LogSigner, LogVerifier};

    use super::*;

    const ORIGIN: &str = "api.example/log";

    fn signer() -> LogSigner {
        LogSigner::from_seed(ORIGIN, &[3u8; 32]).unwrap()
    }

    fn key() -> LogVerifier {
        signer().verifier()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        log: Log<SledStore>,
        router: Router,
    }

    /// A log of `size` entries appended in batches of 37, and its routes.
    fn fixture(size: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let mut log = Log::create(
            Arc::clone(&store),
            signer(),
            Arc::new(SystemClock),
            Retention::default(),
        )
        .unwrap();
        let drafts: Vec<_> = (0..size)
            .map(|n| {
                EntryDraft {
                    kind: "test.entry".into(),
                    actor: "writ".into(),
                    workspace: "-".into(),
                    fields: json!({ "n": n }).as_object().cloned().unwrap(),
                }
                .prepare()
                .unwrap()
            })
            .collect();
        for chunk in drafts.chunks(37) {
            log.append_batch(chunk).unwrap();
        }
        Fixture {
            dir,
            log,
            router: ledger_routes(store),
        }
    }

    struct Answer {
        status: StatusCode,
        content_type: Option<String>,
        cache_control: Option<String>,
        body: Vec<u8>,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }

        fn error_code(&self) -> String {
            self.json()["error"]["code"].as_str().unwrap().to_owned()
        }
    }

    async fn get(router: &Router, uri: &str) -> Answer {
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|value: &axum::http::HeaderValue| value.to_str().unwrap().to_owned())
        };
        let content_type = header(header::CONTENT_TYPE);
        let cache_control = header(header::CACHE_CONTROL);
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            content_type,
            cache_control,
            body,
        }
    }

    /// Every file below `dir`, as paths relative to it.
    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            for item in std::fs::read_dir(dir.join(&relative)).unwrap() {
                let item = item.unwrap();
                let path = relative.join(item.file_name());
                if item.file_type().unwrap().is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.to_str().unwrap().to_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn checkpoint_and_tiles_are_the_export() {
        let fixture = fixture(600);
        let out = fixture.dir.path().join("export");
        writ_ledger::export::export(&fixture.log, &out).unwrap();

        let answer = get(&fixture.router, "/ledger/checkpoint").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(answer.cache_control.as_deref(), Some(NO_STORE));
        assert_eq!(answer.body, std::fs::read(out.join("checkpoint")).unwrap());
        let checkpoint = key().verify_checkpoint(&answer.body).unwrap();
        assert_eq!(checkpoint.size, TreeSize(600));

        let tiles: Vec<String> = files(&out)
            .into_iter()
            .filter(|path| path.starts_with("tile/"))
            .collect();
        // 3 bundles, 3 level-0 tiles, 1 level-1 tile.
        assert_eq!(tiles.len(), 7, "{tiles:?}");
        for path in tiles {
            let answer = get(&fixture.router, &format!("/ledger/{path}")).await;
            if path.starts_with("tile/entries/") {
                // Entry bundles need an Operator or Auditor token, which a store
                // alone cannot check (`tests/ledger_reads.rs` reads them with one).
                assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
                assert_eq!(answer.error_code(), ENTRIES_FORBIDDEN, "{path}");
                continue;
            }
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert_eq!(
                answer.body,
                std::fs::read(out.join(&path)).unwrap(),
                "{path}"
            );
            assert_eq!(
                answer.content_type.as_deref(),
                Some("application/octet-stream")
            );
            let expected = if path.contains(".p/") {
                NO_STORE
            } else {
                IMMUTABLE
            };
            assert_eq!(answer.cache_control.as_deref(), Some(expected), "{path}");
        }
    }

    #[tokio::test]
    async fn malformed_or_unknown_tiles_are_refused() {
        let fixture = fixture(600);
        for (path, status) in [
            ("tile/0/1", StatusCode::BAD_REQUEST),
            ("tile/0/x001", StatusCode::BAD_REQUEST),
            ("tile/0/000.p/0", StatusCode::BAD_REQUEST),
            ("tile/0/000.p/256", StatusCode::BAD_REQUEST),
            ("tile/0/002.p/088", StatusCode::BAD_REQUEST),
            ("tile/00/000", StatusCode::BAD_REQUEST),
            ("tile/entries/1", StatusCode::BAD_REQUEST),
            ("tile/../checkpoint", StatusCode::BAD_REQUEST),
            ("tile/0/../0/000", StatusCode::BAD_REQUEST),
            ("tile/../", StatusCode::BAD_REQUEST),
            ("tile/%2e%2e/000", StatusCode::BAD_REQUEST),
            ("tile/0/%30%30%30", StatusCode::OK),
            ("tile/%ff/000", StatusCode::BAD_REQUEST),
            ("tile/9/000", StatusCode::NOT_FOUND),
            ("tile/8/000.p/1", StatusCode::NOT_FOUND),
            ("tile/entries/999", StatusCode::FORBIDDEN),
            ("tile/0/003", StatusCode::NOT_FOUND),
            // The partial tiles of 600 are 0/002.p/88, entries/002.p/88, 1/000.p/2.
            ("tile/0/002", StatusCode::NOT_FOUND),
            ("tile/0/002.p/87", StatusCode::NOT_FOUND),
            ("tile/0/001.p/255", StatusCode::NOT_FOUND),
            ("tile/1/000", StatusCode::NOT_FOUND),
            ("tile/1/000.p/1", StatusCode::NOT_FOUND),
            // Refused before anything is read: no token can be checked here.
            ("tile/entries/002", StatusCode::FORBIDDEN),
            ("tile/entries/002.p/89", StatusCode::FORBIDDEN),
            (
                "tile/0/x018/x446/x744/x073/x709/x551/615",
                StatusCode::NOT_FOUND,
            ),
        ] {
            let answer = get(&fixture.router, &format!("/ledger/{path}")).await;
            assert_eq!(answer.status, status, "{path}");
            if status != StatusCode::OK {
                let expected = match status {
                    StatusCode::BAD_REQUEST => "malformed_tile_path",
                    StatusCode::FORBIDDEN => ENTRIES_FORBIDDEN,
                    _ => "tile_not_found",
                };
                assert_eq!(answer.error_code(), expected, "{path}");
            }
        }
        for uri in [
            "/ledger/../ledger/checkpoint",
            "/ledger/tile/",
            "/ledger/tile",
        ] {
            let answer = get(&fixture.router, uri).await;
            assert!(
                answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::BAD_REQUEST,
                "{uri}: {}",
                answer.status
            );
        }
    }

    #[tokio::test]
    async fn inclusion_proofs_verify() {
        let fixture = fixture(600);
        for (query, size) in [
            ("index=0", 600),
            ("index=599", 600),
            ("index=256&size=600", 600),
            ("index=10&size=37", 37),
            ("index=36&size=74", 74),
            // No checkpoint of 40 is retained: answered at the latest.
            ("index=39&size=40", 600),
        ] {
            let answer = get(
                &fixture.router,
                &format!("/v1/ledger/proof/inclusion?{query}"),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{query}");
            assert_eq!(answer.cache_control.as_deref(), Some(NO_STORE));
            let body = answer.json();
            let index = body["index"].as_u64().unwrap();
            assert_eq!(body["size"].as_u64(), Some(size), "{query}");
            let note = body["checkpoint"].as_str().unwrap();
            let checkpoint = key().verify_checkpoint(note.as_bytes()).unwrap();
            assert_eq!(checkpoint.size, TreeSize(size));
            let leaf = BASE64.decode(body["leaf_hash"].as_str().unwrap()).unwrap();
            let proof: Vec<Vec<u8>> = body["inclusion_proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hash| BASE64.decode(hash.as_str().unwrap()).unwrap())
                .collect();
            verify_inclusion_bytes(index, size, &leaf, &proof, &checkpoint.root.0).unwrap();
            let entry = fixture
                .log
                .store()
                .entry(LeafIndex(index))
                .unwrap()
                .unwrap();
            assert_eq!(leaf, writ_ledger::leaf_hash(&entry).0);
            let receipt = Receipt::parse(body["receipt"].as_str().unwrap().as_bytes()).unwrap();
            assert_eq!(receipt.checkpoint, note);
            verify_receipt(&receipt, &entry, &key()).unwrap();
        }
    }

    #[tokio::test]
    async fn consistency_proofs_verify() {
        let fixture = fixture(600);
        for (query, old, new) in [
            ("old=1", 1, 600),
            ("old=37", 37, 600),
            ("old=40&new=74", 40, 74),
            ("old=74&new=74", 74, 74),
            ("old=600", 600, 600),
            // No checkpoint of 75 is retained: answered at the latest.
            ("old=3&new=75", 3, 600),
        ] {
            let answer = get(
                &fixture.router,
                &format!("/v1/ledger/proof/consistency?{query}"),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{query}");
            let body = answer.json();
            assert_eq!(body["old"].as_u64(), Some(old), "{query}");
            assert_eq!(body["new"].as_u64(), Some(new), "{query}");
            let checkpoint = key()
                .verify_checkpoint(body["checkpoint"].as_str().unwrap().as_bytes())
                .unwrap();
            assert_eq!(checkpoint.size, TreeSize(new));
            let proof: Vec<writ_ledger::Hash> = body["consistency_proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hash| writ_ledger::Hash::from_base64(hash.as_str().unwrap()).unwrap())
                .collect();
            let old_root = fixture.log.root_at(TreeSize(old)).unwrap();
            verify_consistency(
                TreeSize(old),
                TreeSize(new),
                &old_root,
                &checkpoint.root,
                &proof,
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn malformed_and_out_of_range_queries_are_refused() {
        let fixture = fixture(100);
        for (uri, status, code) in [
            ("/v1/ledger/proof/inclusion", 400, "malformed_query"),
            ("/v1/ledger/proof/inclusion?size=5", 400, "malformed_query"),
            ("/v1/ledger/proof/inclusion?index=", 400, "malformed_query"),
            ("/v1/ledger/proof/inclusion?index=x", 400, "malformed_query"),
            (
                "/v1/ledger/proof/inclusion?index=-1",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=+1",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=01",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=1.0",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=18446744073709551616",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=1&index=2",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=1&old=2",
                400,
                "malformed_query",
            ),
            (
                "/v1/ledger/proof/inclusion?index=100",
                404,
                "index_out_of_range",
            ),
            (
                "/v1/ledger/proof/inclusion?index=18446744073709551615",
                404,
                "index_out_of_range",
            ),
            (
                "/v1/ledger/proof/inclusion?index=5&size=5",
                404,
                "index_out_of_range",
            ),
            (
                "/v1/ledger/proof/inclusion?index=0&size=0",
                404,
                "index_out_of_range",
            ),
            (
                "/v1/ledger/proof/inclusion?index=1&size=101",
                404,
                "size_out_of_range",
            ),
            ("/v1/ledger/proof/consistency", 400, "malformed_query"),
            ("/v1/ledger/proof/consistency?new=5", 400, "malformed_query"),
            ("/v1/ledger/proof/consistency?old=0", 400, "invalid_sizes"),
            (
                "/v1/ledger/proof/consistency?old=5&new=4",
                400,
                "invalid_sizes",
            ),
            (
                "/v1/ledger/proof/consistency?old=101",
                404,
                "size_out_of_range",
            ),
            (
                "/v1/ledger/proof/consistency?old=1&new=101",
                404,
                "size_out_of_range",
            ),
        ] {
            let answer = get(&fixture.router, uri).await;
            assert_eq!(answer.status.as_u16(), status, "{uri}");
            assert_eq!(answer.error_code(), code, "{uri}");
            let message = answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{uri}: {message}"
            );
        }
    }

    #[tokio::test]
    async fn a_log_without_a_checkpoint_answers_404() {
        let fixture = fixture(0);
        for uri in [
            "/ledger/checkpoint",
            "/ledger/tile/0/000.p/1",
            "/v1/ledger/proof/inclusion?index=0",
            "/v1/ledger/proof/consistency?old=1",
        ] {
            let answer = get(&fixture.router, uri).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(answer.error_code(), "no_checkpoint", "{uri}");
        }
    }
}
