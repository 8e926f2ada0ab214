//! Receipts in the C2SP `tlog-proof@v1` text format, and their offline verification.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::checkpoint::{Checkpoint, LogVerifier};
use crate::entry::check_entry;
use crate::error::LedgerError;
use crate::hash::{leaf_hash, Hash};
use crate::proof::{verify_inclusion, MAX_PROOF_HASHES};
use crate::types::LeafIndex;

/// The first line of every receipt.
pub const RECEIPT_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The largest receipt we parse: a 64-hash proof plus a note with many cosignatures.
const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// Proof that an entry is in the log: index, inclusion proof, signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub index: LeafIndex,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
    /// Opaque, unauthenticated extra data (never trusted).
    pub extra: Option<Vec<u8>>,
}

impl Receipt {
    /// The `tlog-proof@v1` text.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(64 + 46 * self.proof.len() + self.checkpoint.len());
        out.push_str(RECEIPT_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&BASE64.encode(extra));
            out.push('\n');
        }
        out.push_str("index ");
        out.push_str(&self.index.0.to_string());
        out.push('\n');
        for hash in &self.proof {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the `tlog-proof@v1` text strictly.
    pub fn parse(text: &[u8]) -> Result<Self, LedgerError> {
        let bad = |line, reason| LedgerError::MalformedReceipt { line, reason };
        if text.len() > MAX_RECEIPT_BYTES {
            return Err(bad(1, "receipt is larger than 64 KiB"));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad(1, "not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(bad(1, "no empty line before the checkpoint"))?;
        let mut lines = head.split('\n').enumerate().map(|(n, line)| (n + 1, line));
        match lines.next() {
            Some((_, RECEIPT_HEADER)) => {}
            _ => return Err(bad(1, "first line is not `c2sp.org/tlog-proof@v1`")),
        }
        let (mut number, mut line) = lines.next().ok_or(bad(2, "missing `index` line"))?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64
                    .decode(encoded)
                    .map_err(|_| bad(number, "extra data is not base64"))?,
            );
            (number, line) = lines
                .next()
                .ok_or(bad(number + 1, "missing `index` line"))?;
        }
        let digits = line
            .strip_prefix("index ")
            .ok_or(bad(number, "expected `index N`"))?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return Err(bad(number, "index is not a decimal without leading zeroes"));
        }
        let index = digits
            .parse::<u64>()
            .map_err(|_| bad(number, "index does not fit 64 bits"))?;
        let mut proof = Vec::new();
        for (number, line) in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(bad(number, "more than 64 proof hashes"));
            }
            let hash = Hash::from_base64(line)
                .map_err(|_| bad(number, "proof line is not base64 of 32 bytes"))?;
            proof.push(hash);
        }
        Ok(Self {
            index: LeafIndex(index),
            proof,
            checkpoint: checkpoint.to_owned(),
            extra,
        })
    }
}

/// Verifies a receipt for `entry` against the log key: the checkpoint signature, the
/// entry's own `index` field, and the inclusion proof. Returns the checkpoint.
pub fn verify_receipt(
    receipt: &Receipt,
    entry: &[u8],
    key: &LogVerifier,
) -> Result<Checkpoint, LedgerError> {
    let checkpoint = key.verify_checkpoint(receipt.checkpoint.as_bytes())?;
    check_entry(entry, receipt.index)?;
    verify_inclusion(
        receipt.index,
        checkpoint.size,
        &leaf_hash(entry),
        &receipt.proof,
        &checkpoint.root,
    )?;
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Receipt {
        Receipt {
            index: LeafIndex(5),
            proof: vec![Hash([1u8; 32]), Hash([2u8; 32])],
            checkpoint: "log\n8\nAAAA\n\n\u{2014} log abc\n".into(),
            extra: None,
        }
    }

    #[test]
    fn text_round_trips() {
        let receipt = sample();
        assert_eq!(
            Receipt::parse(receipt.to_text().as_bytes()).unwrap(),
            receipt
        );
        let mut with_extra = sample();
        with_extra.extra = Some(b"hi".to_vec());
        assert_eq!(
            Receipt::parse(with_extra.to_text().as_bytes()).unwrap(),
            with_extra
        );
    }

    #[test]
    fn malformed_receipts_name_the_line() {
        let text = sample().to_text();
        for (broken, line) in [
            (text.replace("tlog-proof@v1", "tlog-proof@v2"), 1),
            (text.replace("index 5", "index 05"), 2),
            (text.replace("index 5", "index -5"), 2),
            (text.replace("index 5", "index 99999999999999999999"), 2),
            (text.replace("index 5\n", "index 5\nnot-base64\n"), 3),
        ] {
            match Receipt::parse(broken.as_bytes()) {
                Err(LedgerError::MalformedReceipt { line: got, .. }) => assert_eq!(got, line),
                other => panic!("expected malformed receipt, got {other:?}"),
            }
        }
        assert!(Receipt::parse(b"").is_err());
        assert!(Receipt::parse(RECEIPT_HEADER.as_bytes()).is_err());
    }
}
