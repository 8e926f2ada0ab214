//! C2SP tlog-tiles paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`.

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
}
