//! The control-socket protocol: one JSON request line, one JSON response line, over a Unix
//! stream socket (mode 0600). Shared by the daemon (server) and the CLI (client). The one
//! exception is `show-events` with `follow`: after the response line, one JSON line per event.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    ShowSa,
    ShowIsakmp,
    ShowPeers,
    ShowCounters,
    /// The last `last` tunnel events (all the ring holds when absent); with `follow`, an `Ok`
    /// line and then one JSON line per new event until either side closes (docs/cli.md).
    ShowEvents {
        #[serde(default)]
        last: Option<usize>,
        #[serde(default)]
        follow: bool,
    },
    Reload,
    Initiate {
        policy: String,
        peer: Option<String>,
    },
    Terminate {
        policy: String,
        peer: Option<String>,
    },
    /// Test hook (`IKEHUB_TEST_FAULTS=1` on the daemon): make a peer actor panic.
    InjectFault {
        peer: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    Ok { body: serde_json::Value },
    Error { message: String },
}

/// One row of `show sa` (docs/cli.md column order); the JSON form adds the counters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SaStatus {
    pub direction: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub policy: String,
    pub mode: String,
    pub replay: bool,
    pub peer: String,
    pub ah_spi: Option<u32>,
    pub esp_spi: Option<u32>,
    pub ah_auth: Option<String>,
    pub esp_auth: Option<String>,
    pub esp_enc: Option<String>,
    pub kbytes: u64,
    pub kbytes_limit: Option<u64>,
    pub seconds: u64,
    pub seconds_limit: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub replay_drops: u64,
    pub icv_failures: u64,
    pub padding_errors: u64,
    pub selector_mismatches: u64,
    pub other_drops: u64,
}
