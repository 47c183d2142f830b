//! The expected shape of `ikehub show sa --json` (docs/cli.md, `show sa`): the one place
//! to adjust when the contract changes.
//!
//! An array of objects, one per SA. Unknown extra fields are allowed; missing ones or a wrong
//! type fail the parse with serde's message naming the field.

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SaRow {
    /// "IN" or "OUT"
    pub direction: String,
    /// "MANUAL" or "ISAKMP"
    #[serde(rename = "type")]
    pub sa_type: String,
    pub policy: String,
    pub mode: String,
    /// Whether anti-replay is checked.
    pub replay: bool,
    pub peer: String,
    pub ah_spi: Option<u32>,
    pub esp_spi: Option<u32>,
    pub ah_auth: Option<String>,
    pub esp_auth: Option<String>,
    pub esp_enc: Option<String>,
    pub kbytes: u64,
    /// `None` = unlimited
    pub kbytes_limit: Option<u64>,
    pub seconds: u64,
    pub seconds_limit: Option<u64>,
    // Counters.
    pub packets: u64,
    pub bytes: u64,
    pub replay_drops: u64,
    pub icv_failures: u64,
    pub padding_errors: u64,
    pub selector_mismatches: u64,
    pub other_drops: u64,
}

/// Parses the whole `show sa --json` output; panics with the JSON on a shape mismatch.
pub fn parse_rows(json: &Value) -> Vec<SaRow> {
    serde_json::from_value(json.clone()).unwrap_or_else(|e| {
        panic!(
            "`show sa --json` does not have the expected shape ({e}):\n{}",
            serde_json::to_string_pretty(json).unwrap_or_default()
        )
    })
}

/// The single row with this policy and direction ("IN" / "OUT"). For an AH+ESP bundle the
/// daemon shows one row per direction carrying both SPIs (as SmartWare does).
pub fn row<'a>(rows: &'a [SaRow], policy: &str, direction: &str) -> &'a SaRow {
    let found: Vec<&SaRow> = rows
        .iter()
        .filter(|r| r.policy == policy && r.direction == direction)
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!("expected exactly one {direction} SA of policy {policy}, got {rows:#?}"),
    }
}
