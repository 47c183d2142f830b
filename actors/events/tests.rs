use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use ikehub::config::model::KeyBytes;
use ikehub::config::{Mode, ProtectedNetwork};
use ikehub::crypto::{AuthAlgorithm, EncrAlgorithm};
use ikehub::esp::{Direction, EspKeys, LifetimeLimits, SaEncapsulation, SaParams};
use ikehub::ike::ChildSaInfo;

use super::*;

/// Key bytes no SPI, cookie or address of the test contains.
const ENC_KEY: [u8; 16] = [0xa7; 16];
const AUTH_KEY: [u8; 20] = [0x5c; 20];

fn params(direction: Direction, spi: u32) -> SaParams {
    SaParams {
        direction,
        mode: Mode::Tunnel,
        esp: Some(EspKeys {
            spi,
            encryption: EncrAlgorithm::AesCbc128,
            encryption_key: KeyBytes(ENC_KEY.to_vec()),
            authentication: AuthAlgorithm::HmacSha1,
            authentication_key: KeyBytes(AUTH_KEY.to_vec()),
        }),
        ah: None,
        local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        encapsulation: SaEncapsulation::Raw,
        replay_window: 64,
        lifetime: LifetimeLimits::UNLIMITED,
        protected_networks: vec![],
    }
}

fn child() -> ChildSaInfo {
    let pn = ProtectedNetwork {
        local: "198.51.100.0/24".parse().unwrap(),
        remote: "203.0.113.0/24".parse().unwrap(),
    };
    ChildSaInfo {
        inbound: params(Direction::Inbound, 0xc1a2_0003),
        outbound: params(Direction::Outbound, 0x0000_ab01),
        policy: "ToBerne".into(),
        protected_networks: vec![pn],
        suite: "ESP-AES128-SHA1-nopfs tunnel".into(),
        lifetime: Some(Duration::from_secs(3600)),
        confirmed: true,
    }
}

/// Every way an event leaves the daemon (JSON line, log words, Debug) carries the SPIs in
/// hex and the selectors, and none of the key bytes in any spelling (hex, decimal list).
#[test]
fn events_carry_spis_in_hex_and_never_key_bytes() {
    let info = child();
    let ev =
        TunnelEvent::new(Kind::Up, "ToBerne", "192.0.2.2:500", Some("fqdn:b.example")).child(&info);
    let log = EventLog::default();
    let ev = log.publish(ev);
    let json = serde_json::to_string(&*ev).unwrap();
    let words = ev.describe();
    let debug = format!("{ev:?}");
    assert!(json.contains(r#""spi_in":"0xc1a20003""#), "{json}");
    assert!(json.contains(r#""spi_out":"0x0000ab01""#), "{json}");
    assert!(json.contains(r#""kind":"up""#), "{json}");
    assert!(json.contains("198.51.100.0/24<->203.0.113.0/24"), "{json}");
    assert!(
        words.contains("0xc1a20003") && words.contains("0x0000ab01"),
        "{words}"
    );
    for text in [&json, &words, &debug] {
        for key in [&ENC_KEY[..], &AUTH_KEY[..]] {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!text.contains(&hex[..8]), "key bytes in hex: {text}");
            let dec = format!("{}, {}, {}", key[0], key[1], key[2]);
            assert!(!text.contains(&dec), "key bytes as a list: {text}");
        }
        assert!(!text.to_ascii_lowercase().contains("key"), "{text}");
    }
    // The JSON line reads back as the same event (the CLI and tests parse it).
    let back: TunnelEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, *ev);
}

#[test]
fn cookies_are_sixteen_hex_digits() {
    let ev = TunnelEvent::new(Kind::IsakmpUp, "P", "192.0.2.2:500", None)
        .cookies(&[0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff], &[0x10; 8]);
    assert_eq!(ev.initiator_cookie.as_deref(), Some("00010203fcfdfeff"));
    assert_eq!(ev.responder_cookie.as_deref(), Some("1010101010101010"));
}

#[test]
fn ring_keeps_the_last_events_in_order() {
    let log = EventLog::with_bounds(4, 8, 1);
    for i in 0..10u32 {
        log.publish(
            TunnelEvent::new(Kind::Up, "P", "192.0.2.2:500", None).spis(SpiPair {
                inbound: i,
                outbound: i,
            }),
        );
    }
    let seqs: Vec<u64> = log.recent(100).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [7, 8, 9, 10]);
    let last: Vec<u64> = log.recent(2).iter().map(|e| e.seq).collect();
    assert_eq!(last, [9, 10]);
}

/// A subscriber that does not read is overtaken, never waited for: publishing goes on, and the
/// subscriber learns how many events it missed (the server then drops it with a note).
#[test]
fn slow_subscriber_is_dropped_not_waited_for() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = EventLog::with_bounds(64, 2, 1);
    let mut sub = log.subscribe().expect("first subscriber");
    assert!(log.subscribe().is_none(), "only one subscriber allowed");
    for _ in 0..5 {
        log.publish(TunnelEvent::new(Kind::Down, "P", "192.0.2.2:500", None));
    }
    match rt.block_on(sub.next()) {
        Next::Lagged(n) => assert_eq!(n, 3),
        other => panic!("expected a lag, got {other:?}"),
    }
    // After the lag the newest events are still there, in order.
    match rt.block_on(sub.next()) {
        Next::Event(e) => assert_eq!(e.seq, 4),
        other => panic!("expected event 4, got {other:?}"),
    }
    drop(sub);
    assert!(
        log.subscribe().is_some(),
        "a dropped subscriber frees its place"
    );
}

#[test]
fn rfc3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000_500);
    assert_eq!(rfc3339(t), "2001-09-09T01:46:40.500Z");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 86_399);
    assert_eq!(rfc3339(leap), "2024-02-29T23:59:59.000Z");
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
}

/// `io::Write` into a shared buffer: the log lines a test renders.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log line of an event as the daemon's JSON log format writes it.
fn json_log_line(ev: &TunnelEvent) -> serde_json::Value {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || ev.log());
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one log line per event: {text}");
    serde_json::from_str(lines[0]).unwrap()
}

/// A re-key names both pairs, as structured fields of its one log line (hex, as tshark shows
/// them) and in its JSON event; the words say which replaces which.
#[test]
fn rekey_carries_the_old_spis_in_the_log_line_and_the_event() {
    let old = SpiPair {
        inbound: 0xc1a2_0001,
        outbound: 0x0000_aa01,
    };
    let ev = TunnelEvent::new(Kind::Rekey, "ToBerne", "192.0.2.2:500", None)
        .child(&child())
        .old_spis(old);
    let line = json_log_line(&ev);
    let fields = &line["fields"];
    assert_eq!(fields["event"], "rekey", "{line}");
    assert_eq!(fields["spi_in"], "0xc1a20003", "{line}");
    assert_eq!(fields["spi_out"], "0x0000ab01", "{line}");
    assert_eq!(fields["old_spi_in"], "0xc1a20001", "{line}");
    assert_eq!(fields["old_spi_out"], "0x0000aa01", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    let words = fields["message"].as_str().unwrap_or_default();
    assert!(
        words
            .contains("SPIs 0xc1a20003 in / 0x0000ab01 out replace 0xc1a20001 in / 0x0000aa01 out"),
        "{words}"
    );
    let json = serde_json::to_value(&*EventLog::default().publish(ev)).unwrap();
    assert_eq!(json["old_spi_in"], "0xc1a20001", "{json}");
    assert_eq!(json["old_spi_out"], "0x0000aa01", "{json}");
    // An `up` has no old pair: the fields are left out, not empty.
    let up = json_log_line(&TunnelEvent::new(Kind::Up, "P", "192.0.2.2:500", None).child(&child()));
    assert!(up["fields"].get("old_spi_in").is_none(), "{up}");
}
