//! docs/profiles.md is the profile reference: this test fails when the profile reader accepts a
//! key the reference does not document, or the reference documents a key the reader refuses.
//!
//! The reader's key set is taken from the reader itself, not from a list kept beside it: a
//! profile with an unknown key `zz-probe` in each table makes `config::load_sources` answer
//! "unknown key ...; expected one of: a, b, c", which names every key that table accepts (the
//! hand-written reader in src/config/raw.rs records each key it asks for). Sub-tables
//! (`inbound = { ... }`, `dpd`, `protected-network`) are found by giving each key an inline
//! table with the probe in it. The reference's key set is every `` | `key` | `` table row under a
//! `## [table]` or `## [table.NAME]` heading of docs/profiles.md.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ikehub::config;

const PROBE: &str = "zz-probe";

/// The messages `ikehub check` would print for `text`.
fn messages(text: &str) -> Vec<String> {
    match config::load_sources(vec![(PathBuf::from("probe.toml"), text.to_string())]) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|d| d.message).collect(),
    }
}

/// From "PATH: unknown key `PREFIXzz-probe`; expected one of: a, b": the keys of the table
/// at `prefix` (`""` for the table itself, `"inbound."` for a sub-table).
fn expected_keys(messages: &[String], prefix: &str) -> Option<Vec<String>> {
    let needle = format!("unknown key `{prefix}{PROBE}`");
    messages.iter().find(|m| m.contains(&needle)).map(|m| {
        let list = m.split("expected one of: ").nth(1).unwrap_or("");
        list.split(", ")
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// `k = { j = { zz-probe = 1 } }` for the key path `[k, j]`.
fn nested_probe(path: &[String]) -> String {
    let mut v = format!("{{ {PROBE} = 1 }}");
    for k in path.iter().skip(1).rev() {
        v = format!("{{ {k} = {v} }}");
    }
    format!("{} = {v}", path[0])
}

/// Every key of one table (with `sub.key` for sub-tables), read from the reader's answers.
fn table_keys(header: &str, out: &mut BTreeSet<String>, path: &[String]) {
    let text = if path.is_empty() {
        format!("{header}\n{PROBE} = 1\n")
    } else {
        format!("{header}\n{}\n", nested_probe(path))
    };
    let prefix: String = path.iter().map(|k| format!("{k}.")).collect();
    let Some(keys) = expected_keys(&messages(&text), &prefix) else {
        return; // not a table
    };
    for k in keys {
        let mut sub = path.to_vec();
        sub.push(k.clone());
        out.insert(format!("{prefix}{k}"));
        if sub.len() < 3 {
            table_keys(header, out, &sub);
        }
    }
}

/// `table/key` for every key the profile reader accepts.
fn reader_keys() -> BTreeSet<String> {
    let top = messages(&format!("[{PROBE}]\nx = 1\n"));
    let tables: Vec<String> = top
        .iter()
        .find_map(|m| m.split("the tables are: ").nth(1))
        .expect("the reader names its tables for an unknown one")
        .split(", ")
        .map(str::to_string)
        .collect();
    assert!(tables.len() >= 7, "tables: {tables:?}");
    let mut all = BTreeSet::new();
    for t in &tables {
        // `[system]` takes keys directly; `[interface.NAME]` and the like need a name.
        let single = format!("[{t}]");
        let named = format!("[{t}.PROBE]");
        let header = if expected_keys(&messages(&format!("{single}\n{PROBE} = 1\n")), "").is_some()
        {
            single
        } else {
            named
        };
        let mut keys = BTreeSet::new();
        table_keys(&header, &mut keys, &[]);
        assert!(!keys.is_empty(), "no keys found for [{t}]");
        all.extend(keys.into_iter().map(|k| format!("{t}/{k}")));
    }
    all
}

/// `table/key` for every `` | `key` | `` row under a `## [table]` / `## [table.NAME]` heading.
fn doc_keys(md: &str) -> BTreeSet<String> {
    let mut table: Option<String> = None;
    let mut out = BTreeSet::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            table = h
                .trim()
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .map(|h| h.strip_suffix(".NAME").unwrap_or(h).to_string());
        } else if let (Some(t), Some(row)) = (&table, line.strip_prefix("| `"))
            && let Some(key) = row.split('`').next()
        {
            out.insert(format!("{t}/{key}"));
        }
    }
    out
}

/// Every disagreement between the reader and the reference, one line each.
fn compare(reader: &BTreeSet<String>, doc: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for k in reader.difference(doc) {
        problems.push(format!(
            "{k}: accepted by the reader, not documented in docs/profiles.md"
        ));
    }
    for k in doc.difference(reader) {
        problems.push(format!(
            "{k}: documented in docs/profiles.md, refused by the reader"
        ));
    }
    problems
}

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/profiles.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn reference_documents_exactly_the_keys_the_reader_accepts() {
    let reader = reader_keys();
    // The probe itself must see the keys every profile uses, or it proves nothing.
    for k in [
        "system/control-socket",
        "interface/address",
        "ipsec-policy-manual/inbound.esp-spi",
        "ipsec-policy-isakmp/dpd.timeout-seconds",
        "ipsec-policy-isakmp/protected-network.remote",
    ] {
        assert!(reader.contains(k), "probe missed {k}: {reader:#?}");
    }
    let problems = compare(&reader, &doc_keys(&reference()));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn a_key_missing_from_the_reference_is_found() {
    let reader = reader_keys();
    let doctored = reference().replace("| `shards` |", "| shards |");
    let problems = compare(&reader, &doc_keys(&doctored));
    assert_eq!(
        problems,
        ["system/shards: accepted by the reader, not documented in docs/profiles.md"]
    );
}

#[test]
fn a_key_the_reader_refuses_is_found() {
    let reader = reader_keys();
    let doctored = reference().replace(
        "## [system]\n",
        "## [system]\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n\
         | `workers` | integer | `0` | invented |\n",
    );
    let problems = compare(&reader, &doc_keys(&doctored));
    assert_eq!(
        problems,
        ["system/workers: documented in docs/profiles.md, refused by the reader"]
    );
    // A sub-table key is checked the same way.
    let doctored = reference().replace(
        "| `dpd.interval-seconds` |",
        "| `dpd.retries` | integer | `3` | invented |\n| `dpd.interval-seconds` |",
    );
    let problems = compare(&reader, &doc_keys(&doctored));
    assert_eq!(
        problems,
        ["ipsec-policy-isakmp/dpd.retries: documented in docs/profiles.md, refused by the reader"]
    );
}

#[test]
fn keys_not_yet_implemented_are_outside_the_tables() {
    // The "Not yet implemented" list is prose under its own heading, so the parser ignores it.
    let doc = doc_keys(&reference());
    // `ike-workers` moved from that list into the [system] table when the reader took it.
    assert!(doc.contains("system/ike-workers"), "{doc:#?}");
    // `metrics` moved from that list into the [system] table when the reader took it.
    assert!(doc.contains("system/metrics"), "{doc:#?}");
}
