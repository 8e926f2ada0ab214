//! C2SP tlog-tiles paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.

use std::num::NonZeroU8;

use crate::tiles::TILE_WIDTH;

/// Which kind of tile a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileKind {
    /// A hash tile of tile level `L`.
    Hashes(u8),
    /// An entry bundle.
    Entries,
}

/// The path of tile `index` of `kind` with `width` entries (256 for a full tile).
///
/// `N` is written in groups of three digits, every group but the last prefixed
/// with `x`: 1234067 is `x001/x234/067`.
pub fn tile_path(kind: TileKind, index: u64, width: usize) -> String {
    let mut groups = Vec::new();
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut path = match kind {
        TileKind::Hashes(level) => format!("tile/{level}"),
        TileKind::Entries => "tile/entries".to_owned(),
    };
    let last = groups.len() - 1;
    for (position, group) in groups.iter().rev().enumerate() {
        if position == last {
            path.push_str(&format!("/{group:03}"));
        } else {
            path.push_str(&format!("/x{group:03}"));
        }
    }
    if width != TILE_WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

/// A tile named by a tlog-tiles path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRef {
    pub kind: TileKind,
    pub index: u64,
    /// `None` for a full tile; `W` of a partial tile's `.p/<W>`.
    pub partial: Option<NonZeroU8>,
}

impl TileRef {
    /// The number of hashes or entries in the tile (256 for a full tile).
    pub fn width(&self) -> usize {
        self.partial
            .map_or(TILE_WIDTH, |width| usize::from(width.get()))
    }

    /// The tile's path, as [`tile_path`] writes it.
    pub fn path(&self) -> String {
        tile_path(self.kind, self.index, self.width())
    }
}

/// A path that is not a canonical tlog-tiles tile path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed tile path: {reason}")]
pub struct MalformedTilePath {
    pub reason: &'static str,
}

/// The most groups of three digits a `u64` index needs (20 digits).
const MAX_INDEX_GROUPS: usize = 7;

/// Parses a tile path strictly: it must be exactly what [`tile_path`] writes, so
/// every tile has one path (no leading zero groups, no `.p/256`, no `.p/007`).
pub fn parse_tile_path(path: &str) -> Result<TileRef, MalformedTilePath> {
    let bad = |reason| MalformedTilePath { reason };
    let rest = path
        .strip_prefix("tile/")
        .ok_or(bad("it does not start with `tile/`"))?;
    let (kind, rest) = rest.split_once('/').ok_or(bad("it has no tile index"))?;
    let kind = if kind == "entries" {
        TileKind::Entries
    } else {
        TileKind::Hashes(
            canonical_decimal(kind)
                .and_then(|level| level.parse::<u8>().ok())
                .ok_or(bad("the level is not a decimal from 0 to 255"))?,
        )
    };
    let (index, partial) = match rest.split_once(".p/") {
        None => (rest, None),
        Some((index, width)) => {
            let width = canonical_decimal(width)
                .and_then(|width| width.parse::<u8>().ok())
                .and_then(NonZeroU8::new)
                .ok_or(bad("the partial width is not a decimal from 1 to 255"))?;
            (index, Some(width))
        }
    };
    Ok(TileRef {
        kind,
        index: parse_index(index)?,
        partial,
    })
}

/// `digits` if it is a decimal without sign or leading zeroes.
fn canonical_decimal(digits: &str) -> Option<&str> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then_some(digits)
}

/// Parses `x001/x234/067`: groups of exactly three digits, all but the last
/// prefixed with `x`, the first non-zero when there are several.
fn parse_index(text: &str) -> Result<u64, MalformedTilePath> {
    let bad = |reason| MalformedTilePath { reason };
    let groups: Vec<&str> = text.split('/').collect();
    if groups.len() > MAX_INDEX_GROUPS {
        return Err(bad("the index has too many groups"));
    }
    let last = groups.len() - 1;
    let mut index = 0u64;
    for (position, group) in groups.iter().enumerate() {
        let digits = if position == last {
            Some(*group)
        } else {
            group.strip_prefix('x')
        }
        .filter(|digits| digits.len() == 3 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .ok_or(bad(
            "the index is not groups of three digits, `x` before all but the last",
        ))?;
        let value = digits
            .parse::<u64>()
            .map_err(|_| bad("the index is not a decimal"))?;
        if position == 0 && last > 0 && value == 0 {
            return Err(bad("the index has a leading group of zeroes"));
        }
        index = index
            .checked_mul(1000)
            .and_then(|index| index.checked_add(value))
            .ok_or(bad("the index does not fit 64 bits"))?;
    }
    Ok(index)
}

/// Splits an entry bundle into exactly `width` entries (big-endian uint16 length,
/// then the bytes); the first is entry `first`. The error names the entry.
pub fn split_bundle(bundle: &[u8], first: u64, width: usize) -> Result<Vec<&[u8]>, String> {
    let mut entries = Vec::with_capacity(width);
    let mut rest = bundle;
    for index in (first..).take(width) {
        let (length, tail) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| format!("ends before entry {index}"))?;
        let (entry, tail) = tail
            .split_at_checked(usize::from(u16::from_be_bytes(*length)))
            .ok_or_else(|| format!("entry {index} is truncated"))?;
        entries.push(entry);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last entry", rest.len()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_examples() {
        assert_eq!(tile_path(TileKind::Hashes(0), 0, 256), "tile/0/000");
        assert_eq!(
            tile_path(TileKind::Hashes(4), 1_234_067, 1),
            "tile/4/x001/x234/067.p/1"
        );
        assert_eq!(
            tile_path(TileKind::Hashes(4), 1_234_067, 256),
            "tile/4/x001/x234/067"
        );
        assert_eq!(
            tile_path(TileKind::Entries, 1000, 17),
            "tile/entries/x001/000.p/17"
        );
    }

    #[test]
    fn parsing_inverts_tile_path() {
        for index in [0u64, 1, 999, 1000, 1_234_067, 999_999, 1_000_000, u64::MAX] {
            for kind in [TileKind::Hashes(0), TileKind::Hashes(7), TileKind::Entries] {
                for partial in [None, NonZeroU8::new(1), NonZeroU8::new(255)] {
                    let tile = TileRef {
                        kind,
                        index,
                        partial,
                    };
                    assert_eq!(parse_tile_path(&tile.path()), Ok(tile), "{}", tile.path());
                }
            }
        }
        assert_eq!(
            parse_tile_path("tile/4/x001/x234/067.p/1"),
            Ok(TileRef {
                kind: TileKind::Hashes(4),
                index: 1_234_067,
                partial: NonZeroU8::new(1),
            })
        );
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for path in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "tile/0/1",
            "tile/0/01",
            "tile/0/0000",
            "tile/0/x001",
            "tile/0/001/002",
            "tile/0/x000/001",
            "tile/0/x001/x002",
            "tile/0/X001/002",
            "tile/0/x01/002",
            "tile/0//000",
            "tile/0/000/",
            "tile/00/000",
            "tile/256/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/0/+00",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/0/000.p/",
            "tile/0/000.p/1/",
            "tile/0/000.p/1.p/1",
            "tile/0/000.p",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x001/x001/x001/x001/x001/x001/000",
            "tile/entry/000",
            "tile/entries/1",
            "tile/../000",
            "tile/0/../000",
            "/tile/0/000",
            "tiles/0/000",
        ] {
            assert!(parse_tile_path(path).is_err(), "accepted `{path}`");
        }
        assert_eq!(
            parse_tile_path("tile/0/x018/x446/x744/x073/x709/x551/615").map(|tile| tile.index),
            Ok(u64::MAX)
        );
    }
}
