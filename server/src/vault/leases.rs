//! Leases: every released secret comes with one (ID, expiry). A lease is the
//! record of who holds which secret version until when; `writ vault revoke` ends
//! one early. Stored in the `leases` tree of the state database.

use serde::{Deserialize, Serialize};

/// How long a lease lasts by default.
pub const DEFAULT_LEASE_MS: u64 = 15 * 60 * 1000;

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub workspace: String,
    pub secret: String,
    pub version: u32,
    /// The principal the secret was released to.
    pub holder: String,
    pub issued_unix_ms: u64,
    pub expires_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_unix_ms: Option<u64>,
    /// The break-glass elevation the reveal was decided under: the lease ends
    /// when the elevation does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation: Option<String>,
}

impl Lease {
    pub fn is_live(&self, now_unix_ms: u64) -> bool {
        self.revoked_unix_ms.is_none() && now_unix_ms < self.expires_unix_ms
    }

    /// The reference a component keeps instead of the value.
    pub fn reference(&self) -> String {
        format!("writ://{}/{}#{}", self.workspace, self.secret, self.version)
    }
}

/// A new random lease ID.
pub fn new_lease_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("lease_{}", hex::encode(bytes))
}

/// The lease records.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    tree: sled::Tree,
}

impl LeaseStore {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn insert(&self, lease: &Lease) -> anyhow::Result<()> {
        self.tree
            .insert(lease.id.as_bytes(), serde_json::to_vec(lease)?)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> anyhow::Result<Option<Lease>> {
        Ok(match self.tree.get(id.as_bytes())? {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        })
    }

    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.tree.remove(id.as_bytes())?;
        Ok(())
    }

    /// Leases still live at `now`, optionally of one workspace.
    pub fn live(&self, now_unix_ms: u64, workspace: Option<&str>) -> anyhow::Result<Vec<Lease>> {
        let mut out = Vec::new();
        for item in &self.tree {
            let (_, bytes) = item?;
            let lease: Lease = serde_json::from_slice(&bytes)?;
            if lease.is_live(now_unix_ms) && workspace.is_none_or(|w| w == lease.workspace) {
                out.push(lease);
            }
        }
        Ok(out)
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.tree.flush()?;
        Ok(())
    }

    /// The live leases issued under an elevation.
    pub fn live_under(&self, elevation: &str, now_unix_ms: u64) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for item in &self.tree {
            let (_, bytes) = item?;
            let lease: Lease = serde_json::from_slice(&bytes)?;
            if lease.is_live(now_unix_ms) && lease.elevation.as_deref() == Some(elevation) {
                out.push(lease.id);
            }
        }
        Ok(out)
    }

    /// Marks a lease revoked; `false` when it was not live.
    pub fn revoke(&self, id: &str, now_unix_ms: u64) -> anyhow::Result<bool> {
        let Some(mut lease) = self.get(id)? else {
            return Ok(false);
        };
        if !lease.is_live(now_unix_ms) {
            return Ok(false);
        }
        lease.revoked_unix_ms = Some(now_unix_ms);
        self.insert(&lease)?;
        Ok(true)
    }
}
