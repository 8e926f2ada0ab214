//! Reading files an attacker may have placed (exports, receipts): regular files
//! only, and never more than a bound, however the file changes while it is read.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

/// Reads the regular file at `path`, refusing anything else (a FIFO, a device
/// such as `/dev/zero` behind a link) and anything longer than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, more than such a file can be"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_long_files_are_refused() {
        assert!(read_bounded(Path::new("/dev/zero"), 10).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"0123456789");
        assert!(read_bounded(&path, 9).is_err());
        assert!(read_bounded(dir.path(), 100).is_err());
    }
}
