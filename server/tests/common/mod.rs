//! What the router tests share: a kernel opened on a fresh data dir with the shipped
//! policies, and its bootstrap operator key.

use writ_server::config::{FileConfig, Overrides, ServeConfig};
use writ_server::serve::{open, Opened};

/// A kernel on a fresh data dir (removed when dropped).
pub(crate) struct Fixture {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) opened: Opened,
    pub(crate) operator: String,
}

/// Initialises a data dir and opens a kernel on it, as `writ serve` would.
pub(crate) async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let made = tokio::task::spawn_blocking({
        let data = data.clone();
        move || writ_server::kernel::init(&data)
    })
    .await
    .unwrap()
    .unwrap();
    let config = ServeConfig::resolve(
        FileConfig::default(),
        Overrides {
            data_dir: Some(data),
            ..Overrides::default()
        },
    )
    .unwrap();
    let opened = open(&config).await.unwrap();
    Fixture {
        _tmp: tmp,
        opened,
        operator: made.admin_key.expose().to_owned(),
    }
}
