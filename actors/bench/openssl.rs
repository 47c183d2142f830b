//! The reference figures of issue 12 beside ours, in the same run: `openssl speed -evp` for
//! the stitched AES-128-CBC-HMAC-SHA1, AES-128-GCM and 3DES-CBC at 1408 bytes, and the goal
//! ratios (per-core ESP encap >= 1.0x OpenSSL's stitched figure, decap >= 1.3x, AES-GCM >=
//! 1.0x, 3DES at OpenSSL's level) marked met or not. Skipped when `openssl` is not on PATH.

use std::process::Command;

use serde::Serialize;

use super::EspResult;

/// The block size OpenSSL measures at (an ESP payload of a 1400-byte packet, padded).
pub const BYTES: usize = 1408;

/// One `openssl speed` figure.
#[derive(Serialize)]
pub struct Reference {
    pub cipher: &'static str,
    pub mb_s: f64,
}

/// One goal of the issue: our figure against the reference.
#[derive(Serialize)]
pub struct Goal {
    pub goal: &'static str,
    pub ours_mb_s: Option<f64>,
    pub reference_mb_s: f64,
    pub ratio: Option<f64>,
    pub target: f64,
    pub met: bool,
}

/// Runs `openssl speed -elapsed -seconds S ARGS...` (wall clock, as our own figures are) and
/// returns its standard output; None when `openssl` is missing or fails.
fn run_speed(seconds: u64, args: &[&str]) -> Option<String> {
    let out = Command::new("openssl")
        .args(["speed", "-elapsed", "-seconds"])
        .arg(seconds.max(1).to_string())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openssl speed -evp <cipher> -bytes 1408` in MB/s (10^6 bytes).
fn speed(cipher: &str, seconds: u64) -> Option<f64> {
    parse(&run_speed(
        seconds,
        &["-bytes", &BYTES.to_string(), "-evp", cipher],
    )?)
}

/// The last line of `openssl speed` is `<NAME> <rate>k` with the rate in 1000s of bytes per
/// second.
fn parse(stdout: &str) -> Option<f64> {
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let rate = last.split_whitespace().last()?;
    let k: f64 = rate.strip_suffix('k')?.parse().ok()?;
    Some(k / 1000.0)
}

/// The references and goals; empty when `openssl` cannot be run.
pub fn compare(esp: &[EspResult], seconds: u64) -> (Vec<Reference>, Vec<Goal>) {
    let mut refs = Vec::new();
    for cipher in ["aes-128-cbc-hmac-sha1", "aes-128-gcm", "des-ede3-cbc"] {
        if let Some(mb_s) = speed(cipher, seconds.max(1)) {
            refs.push(Reference { cipher, mb_s });
        }
    }
    let reference = |c: &str| refs.iter().find(|r| r.cipher == c).map(|r| r.mb_s);
    let ours = |suite: &dyn Fn(&str) -> bool, pick: fn(&EspResult) -> f64| {
        esp.iter()
            .filter(|r| suite(r.suite) && r.size == 1400)
            .map(pick)
            .next()
    };
    let mut goals = Vec::new();
    let mut goal = |goal, ours: Option<f64>, reference: Option<f64>, target| {
        if let Some(reference) = reference {
            let ratio = ours.map(|o| o / reference);
            goals.push(Goal {
                goal,
                ours_mb_s: ours,
                reference_mb_s: reference,
                ratio,
                target,
                met: ratio.is_some_and(|r| r >= target),
            });
        }
    };
    let cbc_sha1 = |s: &str| s == "esp-aes128-sha1";
    let stitched = reference("aes-128-cbc-hmac-sha1");
    goal(
        "encap aes128-sha1 vs openssl aes-128-cbc-hmac-sha1",
        ours(&cbc_sha1, |r| r.encap_batch_mb_s),
        stitched,
        1.0,
    );
    goal(
        "decap aes128-sha1 vs openssl aes-128-cbc-hmac-sha1",
        ours(&cbc_sha1, |r| r.decap_batch_mb_s),
        stitched,
        1.3,
    );
    goal(
        "encap aes-gcm-128 vs openssl aes-128-gcm",
        ours(&|s| s.contains("gcm") && s.contains("128"), |r| {
            r.encap_batch_mb_s
        }),
        reference("aes-128-gcm"),
        1.0,
    );
    goal(
        "encap 3des vs openssl des-ede3-cbc",
        ours(&|s| s.contains("3des"), |r| r.encap_batch_mb_s),
        reference("des-ede3-cbc"),
        1.0,
    );
    (refs, goals)
}

/// `openssl speed -seconds S ffdh<bits>` (OpenSSL 3 names the RFC 7919 ffdhe groups so):
/// shared-secret derivations per second, the reference for our y^x. None when `openssl` is
/// missing or does not know the size.
pub fn ffdh_per_sec(bits: u32, seconds: u64) -> Option<f64> {
    parse_ffdh(&run_speed(seconds, &[&format!("ffdh{bits}")])?, bits)
}

/// The result line of `openssl speed ffdhN` is `<bits> bits ffdh <seconds>s <op/s>`.
fn parse_ffdh(stdout: &str, bits: u32) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{bits} bits ffdh")))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_ffdh};

    #[test]
    fn parses_openssl_speed_ffdh() {
        let out = "version: 3.0.19\n                       op     op/s\n 2048 bits ffdh   \
                   0.0003s   3359.0\n";
        assert_eq!(parse_ffdh(out, 2048), Some(3359.0));
        assert_eq!(parse_ffdh(out, 3072), None);
        assert_eq!(
            parse_ffdh("speed: Unknown algorithm ffdh1024\n", 1024),
            None
        );
    }

    #[test]
    fn parses_the_last_line_of_openssl_speed() {
        let out = "version: 3.0.17\nbuilt on: ...\nThe 'numbers' are in 1000s of bytes per \
                   second processed.\ntype           1408 bytes\nAES-128-CBC-HMAC-SHA1  \
                   961552.06k\n";
        let mb_s = parse(out).expect("parsed");
        assert!((mb_s - 961.55206).abs() < 1e-6, "{mb_s}");
        assert_eq!(parse("garbage\n"), None);
        assert_eq!(parse(""), None);
    }
}
