//! Verifying a live log over HTTP: fetch its C2SP tlog-tiles (the checkpoint, every
//! entry bundle and hash tile the checkpoint's size needs) into a temporary
//! directory laid out as `writ ledger export` writes, then verify that directory
//! offline with `verify_export_with`, exactly as an export is verified (the
//! caller's entry check included).
//!
//! Nothing fetched is trusted: the checkpoint's signature is checked before any tile
//! is fetched (the size it claims decides how much is fetched), every response is
//! bounded by what its file can hold, and the directory is verified as a whole.
//!
//! Entry bundles hold every workspace's entries, so a writ server serves them only
//! to an Operator's or an Auditor's bearer token. The token is sent with the
//! entry-bundle fetches and nothing else: the checkpoint and hash tiles are public,
//! and a request without `Authorization` can be answered by any cache on the way.
//! A 401 or 403 stops the fetch with an error saying which token is needed.
//!
//! A server serves a partial tile only with the width it has at its latest
//! checkpoint, so a log that grows while it is fetched answers 404 for a partial
//! tile of the checkpoint fetched first. Such a tile is then cut from the same tile
//! at its width in the server's newer checkpoint (its first `W` hashes or entries
//! are the same), as C2SP tlog-tiles clients do; the newer checkpoint only says
//! which width to ask for, and the verification is still against the first one.

use std::fs;
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use writ_ledger::entry::MAX_ENTRY_BYTES;
use writ_ledger::hash::HASH_LEN;
use writ_ledger::tile_reader::{tiles_of, width_at};
use writ_ledger::tilepath::{TileKind, TileRef};
use writ_ledger::verify::{verify_export_with, EntryCheck, VerifyReport};
use writ_ledger::{LogVerifier, TreeSize};
use zeroize::Zeroizing;

/// Every request is abandoned after this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest checkpoint accepted (a note with many cosignatures fits).
const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024;
/// How many newer checkpoints are tried for a partial tile that went away.
const ATTEMPTS: usize = 10;

/// Fetches the log at `base` (such as `http://127.0.0.1:7700/ledger`) and verifies
/// it with the verifier key string `key`, showing `on_entry` every entry in index
/// order; `token` goes with the entry-bundle fetches; `progress` draws progress
/// bars on stderr.
pub(crate) fn verify_url(
    base: &str,
    key: &str,
    token: Option<Zeroizing<String>>,
    progress: bool,
    on_entry: EntryCheck<'_>,
) -> anyhow::Result<VerifyReport> {
    let key = LogVerifier::from_verifier_key(key.trim()).context("--key is not a verifier key")?;
    let parsed = url::Url::parse(base).with_context(|| format!("`{base}` is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("`{base}` is not an http or https URL");
    }
    let dir = tempfile::Builder::new()
        .prefix("writ-verify-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let fetcher = Fetcher::new(base, dir.path(), token);
    fetcher.write("keys", format!("{}\n", key.to_verifier_key()).as_bytes())?;
    let size = fetcher.checkpoint(&key)?;
    fetcher.tiles(&key, size, progress)?;
    let bar = progress_bar(
        progress,
        "{bar:40} {pos}/{len} entries verified {per_sec} eta {eta}",
    );
    let report = verify_export_with(
        dir.path(),
        &key,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
        on_entry,
    );
    bar.finish_and_clear();
    Ok(report?)
}

/// An HTTP agent, the base URL, the directory fetched into, and the bearer token of
/// the entry-bundle fetches.
struct Fetcher {
    agent: ureq::Agent,
    base: String,
    root: PathBuf,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("base", &self.base)
            .field("root", &self.root)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    fn new(base: &str, root: &Path, token: Option<Zeroizing<String>>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            agent,
            base: base.to_owned(),
            root: root.to_path_buf(),
            token,
        }
    }

    /// Fetches and verifies the checkpoint and writes it as `checkpoint` and
    /// `checkpoints/<size>`; returns its size.
    fn checkpoint(&self, key: &LogVerifier) -> anyhow::Result<TreeSize> {
        let (note, size) = self.fetch_checkpoint(key)?;
        self.write("checkpoint", &note)?;
        self.write(&format!("checkpoints/{size}"), &note)?;
        Ok(size)
    }

    /// The server's latest checkpoint, verified, and its size.
    fn fetch_checkpoint(&self, key: &LogVerifier) -> anyhow::Result<(Vec<u8>, TreeSize)> {
        let url = url_for(&self.base, "checkpoint");
        let note = self
            .get(&url, MAX_CHECKPOINT_BYTES)?
            .with_context(|| format!("{url}: not found (404)"))?;
        let checkpoint = key
            .verify_checkpoint(&note)
            .with_context(|| format!("{url}: the checkpoint does not verify with the key"))?;
        if checkpoint.size.0 == 0 {
            bail!("{url}: the log is empty; there is nothing to verify");
        }
        Ok((note, checkpoint.size))
    }

    /// Fetches every tile of the tree of `size`: the partial tiles first (they go
    /// away as the log grows), then the full ones.
    fn tiles(&self, key: &LogVerifier, size: TreeSize, progress: bool) -> anyhow::Result<()> {
        let bar = progress_bar(
            progress,
            "{bar:40} {pos}/{len} tiles fetched {per_sec} eta {eta}",
        );
        bar.set_length(tiles_of(size).count() as u64);
        let partial = tiles_of(size).filter(|tile| tile.partial.is_some());
        let full = tiles_of(size).filter(|tile| tile.partial.is_none());
        for tile in partial.chain(full) {
            let relative = tile.path();
            let url = url_for(&self.base, &relative);
            let bytes = match self.get_tile(&url, tile)? {
                Some(bytes) => bytes,
                None if tile.partial.is_some() => self.cut_from_newer(key, tile, &url)?,
                None => bail!("{url}: not found (404)"),
            };
            self.write(&relative, &bytes)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// A partial tile the server no longer serves (at `gone`), cut from the same
    /// tile at its width in the server's newer checkpoint.
    fn cut_from_newer(
        &self,
        key: &LogVerifier,
        tile: TileRef,
        gone: &str,
    ) -> anyhow::Result<Vec<u8>> {
        for _ in 0..ATTEMPTS {
            let (_, newer) = self.fetch_checkpoint(key)?;
            let width = width_at(newer, tile.kind, tile.index)
                .filter(|width| *width >= tile.width())
                .with_context(|| {
                    format!("{gone}: not found (404), and the server's checkpoint went back to size {newer}")
                })?;
            let wider = TileRef {
                partial: u8::try_from(width).ok().and_then(NonZeroU8::new),
                ..tile
            };
            let url = url_for(&self.base, &wider.path());
            if let Some(bytes) = self.get_tile(&url, wider)? {
                return prefix(tile, &bytes)
                    .with_context(|| format!("{url}: cut to {}", tile.path()));
            }
        }
        bail!("{gone}: not found (404): the log grew faster than it could be fetched, {ATTEMPTS} times; try again")
    }

    /// Tile `tile` at `url`, with the token when it is an entry bundle.
    fn get_tile(&self, url: &str, tile: TileRef) -> anyhow::Result<Option<Vec<u8>>> {
        let token = match tile.kind {
            TileKind::Entries => Some(self.token.as_deref()),
            TileKind::Hashes(_) => None,
        };
        self.fetch(url, max_tile_bytes(tile), token)
    }

    /// The body of `url`, at most `limit` bytes; `None` for a 404. Public: no token.
    fn get(&self, url: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        self.fetch(url, limit, None)
    }

    /// The body of `url`, at most `limit` bytes; `None` for a 404. `token` is
    /// `Some` for a fetch that needs one (`Some(None)`: needed, but none given).
    fn fetch(
        &self,
        url: &str,
        limit: u64,
        token: Option<Option<&String>>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let mut request = self.agent.get(url);
        if let Some(Some(token)) = token {
            request = request.header("Authorization", &format!("Bearer {}", token.as_str()));
        }
        let response = request
            .call()
            .with_context(|| format!("cannot fetch {url}"))?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if matches!(status.as_u16(), 401 | 403) {
            let code = error_code(response);
            bail!(
                "{}",
                refused(url, status.as_u16(), &code, token.flatten().is_some())
            );
        }
        if !status.is_success() {
            bail!("{url}: the server answered {}", status.as_u16());
        }
        // ureq refuses a body that reaches its limit (it reads once more to see the
        // end), so the limit given is one more than the largest body accepted.
        let bytes = response
            .into_body()
            .with_config()
            .limit(limit.saturating_add(1))
            .read_to_vec()
            .with_context(|| format!("cannot read {url} (at most {limit} bytes are accepted)"))?;
        if bytes.len() as u64 > limit {
            bail!("{url}: the answer is larger than {limit} bytes");
        }
        Ok(Some(bytes))
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = file_for(&self.root, relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The stable error code of an error answer (`{"error": {"code": ...}}`), read from
/// at most 4 KiB of it; empty when there is none.
fn error_code(response: ureq::http::Response<ureq::Body>) -> String {
    let body = response
        .into_body()
        .with_config()
        .limit(4096)
        .read_to_vec()
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/code")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .filter(|code| {
            code.len() <= 64
                && code
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
        })
        .unwrap_or_default()
}

/// What to tell the user when the server refused a fetch with `status` (401 or
/// 403) and error `code`; `sent` says whether a token went with it.
fn refused(url: &str, status: u16, code: &str, sent: bool) -> String {
    let answered = if code.is_empty() {
        format!("{url}: the server answered {status}")
    } else {
        format!("{url}: the server answered {status} `{code}`")
    };
    let need = "entry bundles are served to an Operator's or an Auditor's token only";
    match (status, sent) {
        (401, false) => format!("{answered}: {need}; pass --token or set WRIT_TOKEN"),
        (401, true) => format!("{answered}: the token was not accepted; {need}"),
        (_, true) => format!("{answered}: the token's principal may not read them; {need}"),
        (_, false) => format!("{answered}: {need}"),
    }
}

/// The most bytes a tile can hold: its hashes, or its entries at their largest.
fn max_tile_bytes(tile: TileRef) -> u64 {
    let per_item = match tile.kind {
        TileKind::Hashes(_) => HASH_LEN,
        TileKind::Entries => 2 + MAX_ENTRY_BYTES,
    };
    (tile.width() * per_item) as u64
}

/// The first `tile.width()` hashes or entries of the same tile at a larger width.
fn prefix(tile: TileRef, wider: &[u8]) -> anyhow::Result<Vec<u8>> {
    let length = match tile.kind {
        TileKind::Hashes(_) => tile.width() * HASH_LEN,
        TileKind::Entries => {
            let mut length = 0usize;
            for _ in 0..tile.width() {
                let entry = wider
                    .get(length..length + 2)
                    .and_then(|prefix| <[u8; 2]>::try_from(prefix).ok())
                    .context("the bundle ends before its entries do")?;
                length += 2 + usize::from(u16::from_be_bytes(entry));
            }
            length
        }
    };
    wider
        .get(..length)
        .map(<[u8]>::to_vec)
        .context("the tile is shorter than the part needed")
}

/// The URL of `relative` (an export path such as `tile/0/x001/234`) under `base`.
fn url_for(base: &str, relative: &str) -> String {
    format!("{}/{relative}", base.trim_end_matches('/'))
}

/// The file of `relative` (an export path, `/`-separated) under `root`.
fn file_for(root: &Path, relative: &str) -> PathBuf {
    relative
        .split('/')
        .fold(root.to_path_buf(), |path, part| path.join(part))
}

fn progress_bar(shown: bool, template: &str) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_map_to_urls_and_export_files() {
        let root = Path::new("/tmp/fetched");
        let cases = [
            (
                TileRef {
                    kind: TileKind::Hashes(0),
                    index: 0,
                    partial: None,
                },
                "tile/0/000",
            ),
            (
                TileRef {
                    kind: TileKind::Hashes(4),
                    index: 1_234_067,
                    partial: NonZeroU8::new(1),
                },
                "tile/4/x001/x234/067.p/1",
            ),
            (
                TileRef {
                    kind: TileKind::Entries,
                    index: 1000,
                    partial: NonZeroU8::new(17),
                },
                "tile/entries/x001/000.p/17",
            ),
        ];
        for (tile, relative) in cases {
            assert_eq!(tile.path(), relative);
            for base in [
                "http://127.0.0.1:7700/ledger",
                "http://127.0.0.1:7700/ledger/",
            ] {
                assert_eq!(
                    url_for(base, &tile.path()),
                    format!("http://127.0.0.1:7700/ledger/{relative}")
                );
            }
            // The file is where `writ ledger export` writes it: root/<relative>.
            let file = file_for(root, &tile.path());
            assert_eq!(file, root.join(relative));
            let components: Vec<_> = file
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|part| part.as_os_str().to_str().unwrap().to_owned())
                .collect();
            assert_eq!(components.join("/"), relative);
        }
        assert_eq!(
            file_for(root, "checkpoints/600"),
            root.join("checkpoints").join("600")
        );
        assert_eq!(
            url_for("https://log.example/ledger", "checkpoint"),
            "https://log.example/ledger/checkpoint"
        );
    }

    #[test]
    fn response_bounds_follow_the_tile() {
        let tile = |kind, partial| TileRef {
            kind,
            index: 0,
            partial: NonZeroU8::new(partial),
        };
        assert_eq!(max_tile_bytes(tile(TileKind::Hashes(0), 0)), 256 * 32);
        assert_eq!(max_tile_bytes(tile(TileKind::Hashes(3), 5)), 5 * 32);
        assert_eq!(
            max_tile_bytes(tile(TileKind::Entries, 0)),
            256 * (2 + 65_535)
        );
        assert_eq!(max_tile_bytes(tile(TileKind::Entries, 1)), 2 + 65_535);
    }

    #[test]
    fn a_refused_fetch_says_which_token_is_needed() {
        let url = "http://127.0.0.1:7700/ledger/tile/entries/000";
        let none = refused(url, 401, "missing_token", false);
        assert_eq!(
            none,
            "http://127.0.0.1:7700/ledger/tile/entries/000: the server answered 401 `missing_token`: entry bundles are served to an Operator's or an Auditor's token only; pass --token or set WRIT_TOKEN"
        );
        assert!(refused(url, 401, "unknown_key", true).contains("the token was not accepted"));
        let user = refused(url, 403, "ledger_entries_forbidden", true);
        assert!(user.contains("403 `ledger_entries_forbidden`"), "{user}");
        assert!(user.contains("Operator's or an Auditor's token"), "{user}");
        assert!(refused(url, 403, "", false).ends_with(
            "answered 403: entry bundles are served to an Operator's or an Auditor's token only"
        ));
    }

    #[test]
    fn a_partial_tile_is_cut_from_a_wider_one() {
        let tile = |kind, width| TileRef {
            kind,
            index: 0,
            partial: NonZeroU8::new(width),
        };
        let hashes: Vec<u8> = (0..10u8).flat_map(|n| [n; 32]).collect();
        assert_eq!(
            prefix(tile(TileKind::Hashes(0), 3), &hashes).unwrap(),
            hashes[..96]
        );
        assert!(prefix(tile(TileKind::Hashes(0), 11), &hashes).is_err());
        // Entries `a`, `bc`, `` and `def`.
        let bundle = b"\x00\x01a\x00\x02bc\x00\x00\x00\x03def";
        assert_eq!(
            prefix(tile(TileKind::Entries, 1), bundle).unwrap(),
            b"\x00\x01a"
        );
        assert_eq!(
            prefix(tile(TileKind::Entries, 3), bundle).unwrap(),
            b"\x00\x01a\x00\x02bc\x00\x00"
        );
        assert_eq!(prefix(tile(TileKind::Entries, 4), bundle).unwrap(), bundle);
        assert!(prefix(tile(TileKind::Entries, 5), bundle).is_err());
        assert!(prefix(tile(TileKind::Entries, 1), b"\x00\x05ab").is_err());
    }
}
