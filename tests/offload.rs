//! Data integrity through the TUN offload path (issue 12, point 1): two `ikehub run` daemons
//! of the manual ToBerne pair in two namespaces, TCP bulk data from A's protected host to B's
//! through the tunnel, with `[tunnel-device] offload` on (the kernel hands A 64 KB TCP
//! super-packets that A cuts into MTU-sized packets before encryption) and off, over raw ESP
//! and ESP-in-UDP. Each transfer (64 MiB, one stream or four) must arrive with the sender's
//! sha256; a smaller transfer is captured on the WAN and tshark decrypts and verifies every
//! ESP packet of it with the configured keys.
//!
//! The data moves between sockets of this test process: a thread enters a namespace with
//! setns(2) (a network namespace is per thread), so no extra tool is needed. Every socket has
//! read and write timeouts, so a stalled tunnel fails the test instead of hanging it.
//!
//! Needs root and ip, tcpdump, tshark. Outside CI the tests skip (with a message) when those
//! are missing; under `CI=true` they fail.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use common::daemon::shard_counter;
use common::netns::{A_HOST, A_WAN, B_HOST, B_WAN, WAN_DEV, wait_for_route};
use common::tunnel::{AES128_SHA1, Encapsulation, ManualPair, Side};
use common::wireshark::{IpsecPacket, WiresharkConfig, decode_ipsec};
use common::{Capture, Daemon, TwoSites};

const TOOLS: &[&str] = &["ip", "tcpdump", "tshark"];
const TUN: &str = "ikehub0";
/// Bytes per transfer, split evenly over the streams.
const TOTAL: usize = 64 << 20;
/// The transfer that is captured and checked packet by packet with tshark.
const CAPTURED: usize = 1 << 20;
/// A stalled socket fails the transfer after this long without progress.
const STALL: Duration = Duration::from_secs(30);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(20);
const PORT: u16 = 5301;

#[test]
fn esp_offload_on_64mib_1_and_4_streams() {
    transfers("esp-on", Encapsulation::Esp, true);
}

#[test]
fn esp_offload_off_64mib_1_and_4_streams() {
    transfers("esp-off", Encapsulation::Esp, false);
}

#[test]
fn udp_offload_on_64mib_1_and_4_streams() {
    transfers("udp-on", Encapsulation::Udp, true);
}

#[test]
fn udp_offload_off_64mib_1_and_4_streams() {
    transfers("udp-off", Encapsulation::Udp, false);
}

fn transfers(tag: &str, encap: Encapsulation, offload: bool) {
    if !common::require_env_or_skip(TOOLS) {
        return;
    }
    let pair = ManualPair::new(AES128_SHA1, encap);
    let sites = TwoSites::new(tag);
    let profile = |side: Side, dir: &std::path::Path| {
        let text = pair.profile(side, dir);
        let with = text.replace(
            "[tunnel-device]\n",
            &format!("[tunnel-device]\noffload = {offload}\n"),
        );
        assert_ne!(with, text, "the profile has a [tunnel-device] table");
        with
    };
    let mut da = Daemon::start(&sites.a, "A", |dir| profile(Side::A, dir));
    let mut db = Daemon::start(&sites.b, "B", |dir| profile(Side::B, dir));
    wait_for_route(&sites.a, A_HOST, B_HOST, TUN, ROUTE_TIMEOUT);
    wait_for_route(&sites.b, B_HOST, A_HOST, TUN, ROUTE_TIMEOUT);

    // The daemon says which device it made; this kernel has the TCP offloads.
    let said = common::poll_until(Duration::from_secs(5), || {
        let log = da.log();
        log.lines()
            .find(|l| l.contains("tunnel device") && l.contains("offload"))
            .map(str::to_string)
    });
    let said = said.unwrap_or_else(|| panic!("no tunnel device line in A's log:\n{}", da.log()));
    assert_eq!(
        said.contains("offload TSO"),
        offload,
        "offload {offload}: {said}"
    );

    // A captured transfer: every ESP packet decrypts, verifies and carries TCP between the
    // protected hosts. On A's TUN device the kernel's side is seen too: with offload it hands
    // over super-packets (longer than the 1400-byte MTU), which the wire never carries.
    let mut cap = Capture::start(&sites.a, WAN_DEV);
    let mut tun_cap = Capture::start(&sites.a, TUN);
    transfer(&sites, CAPTURED, 1, PORT);
    let pcap = cap.finish().to_path_buf();
    let tun_pcap = tun_cap.finish().to_path_buf();
    let ws = WiresharkConfig::new(&pair.esp_sa_entries());
    let pkts = decode_ipsec(&pcap, &ws);
    check_capture(&pkts, &pair);
    let supers = longer_than(&tun_pcap, 1400);
    if offload {
        assert!(
            supers > 0,
            "offload on: no super-packet crossed the TUN device"
        );
    } else {
        assert_eq!(
            supers, 0,
            "offload off: packets above the MTU on the TUN device"
        );
    }

    // The bulk transfers, one stream and four.
    transfer(&sites, TOTAL, 1, PORT + 1);
    transfer(&sites, TOTAL, 4, PORT + 2);

    // The same switch governs UDP GSO on ESP-in-UDP: bulk traffic leaves A in GSO runs iff on.
    if encap == Encapsulation::Udp {
        let gso = shard_counter(&da, "udp_gso_sends");
        assert_eq!(gso > 0, offload, "offload {offload}: {gso} UDP GSO sends");
    }

    assert!(da.is_running(), "daemon A died; log:\n{}", da.log());
    assert!(db.is_running(), "daemon B died; log:\n{}", db.log());
}

/// How many packets of `pcap` are longer than `len` bytes.
fn longer_than(pcap: &std::path::Path, len: usize) -> usize {
    let out = common::output_ok(
        std::process::Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(pcap)
            .args(["-Y", &format!("frame.len > {len}"), "-T", "fields"])
            .args(["-e", "frame.len"]),
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Every captured packet is ESP of the pair (UDP 4500 iff encapsulated), decrypted by tshark
/// with a good ICV, and holds TCP between the protected hosts.
fn check_capture(pkts: &[IpsecPacket], pair: &ManualPair) {
    // 1 MiB at an MSS of at most 1360 is about 780 data packets plus ACKs; tcpdump may drop
    // some on a loaded machine, so only a floor that proves a real capture.
    assert!(pkts.len() > 200, "{} IPsec packets captured", pkts.len());
    for p in pkts {
        let keys = match (p.src.as_str(), p.dst.as_str()) {
            (A_WAN, B_WAN) => &pair.a_to_b,
            (B_WAN, A_WAN) => &pair.b_to_a,
            _ => panic!("unexpected outer addresses: {p:#?}"),
        };
        match pair.encapsulation {
            Encapsulation::Udp => assert_eq!(p.udp_dport, Some(4500), "{p:#?}"),
            Encapsulation::Esp => assert_eq!(p.udp_dport, None, "{p:#?}"),
        }
        assert_eq!(p.esp_spi, keys.esp_spi, "ESP SPI: {p:#?}");
        assert!(p.decrypted, "tshark could not decrypt: {p:#?}");
        assert_eq!(p.esp_icv_good, Some(true), "ICV: {p:#?}");
        let inner = (p.inner_src.as_deref(), p.inner_dst.as_deref());
        assert!(
            inner == (Some(A_HOST), Some(B_HOST)) || inner == (Some(B_HOST), Some(A_HOST)),
            "inner packet is not between the protected hosts: {p:#?}"
        );
        assert_eq!(p.inner_proto, Some(6), "inner packet is not TCP: {p:#?}");
    }
}

/// What arrived on one stream: its length and sha256.
type Received = (usize, [u8; 32]);

/// Sends `total` bytes from A's host to B's host over `streams` TCP connections (each its own
/// pseudo-random data) and asserts that each arrives complete with the sender's sha256.
fn transfer(sites: &TwoSites, total: usize, streams: usize, port: u16) {
    let host = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let listen = SocketAddr::from((host(B_HOST), port));
    let per_stream = total / streams;

    let b_name = sites.b.name().to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver: JoinHandle<Result<Vec<Received>, String>> = std::thread::spawn(move || {
        enter(&b_name)?;
        let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let _ = ready_tx.send(());
        let mut conns = Vec::new();
        for _ in 0..streams {
            // accept() has no timeout: poll a non-blocking listener, bounded.
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + STALL;
            let s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if std::time::Instant::now() > deadline {
                            return Err("no connection within the deadline".into());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(STALL)).map_err(|e| e.to_string())?;
            conns.push(std::thread::spawn(move || -> Result<_, String> {
                let mut s = s;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0usize;
                // First 8 bytes: the stream's index, so results can be matched.
                let mut idx = [0u8; 8];
                s.read_exact(&mut idx).map_err(|e| format!("index: {e}"))?;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            h.update(&buf[..k]);
                            n += k;
                        }
                        Err(e) => return Err(format!("read after {n} bytes: {e}")),
                    }
                }
                Ok((u64::from_be_bytes(idx) as usize, n, h.finalize().into()))
            }));
        }
        let mut out = vec![(0usize, [0u8; 32]); streams];
        for c in conns {
            let (i, n, d) = c.join().map_err(|_| "receiver panicked".to_string())??;
            *out.get_mut(i).ok_or("bad stream index")? = (n, d);
        }
        Ok(out)
    });
    ready_rx
        .recv_timeout(STALL)
        .expect("the receiver did not start listening");

    let a_name = sites.a.name().to_string();
    let senders: Vec<JoinHandle<Result<[u8; 32], String>>> = (0..streams)
        .map(|i| {
            let a_name = a_name.clone();
            std::thread::spawn(move || {
                enter(&a_name)?;
                let mut s = TcpStream::connect_timeout(&listen, STALL)
                    .map_err(|e| format!("connect {listen}: {e}"))?;
                s.set_write_timeout(Some(STALL))
                    .map_err(|e| e.to_string())?;
                s.write_all(&(i as u64).to_be_bytes())
                    .map_err(|e| e.to_string())?;
                let mut h = Sha256::new();
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                let mut buf = vec![0u8; 1 << 16];
                let mut left = per_stream;
                while left > 0 {
                    let k = left.min(buf.len());
                    rng.fill(&mut buf[..k]);
                    h.update(&buf[..k]);
                    s.write_all(&buf[..k])
                        .map_err(|e| format!("write with {left} bytes left: {e}"))?;
                    left -= k;
                }
                s.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| e.to_string())?;
                Ok(h.finalize().into())
            })
        })
        .collect();
    let sent: Vec<[u8; 32]> = senders
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.join()
                .expect("sender panicked")
                .unwrap_or_else(|e| panic!("stream {i} of {streams}: {e}"))
        })
        .collect();
    let got = receiver
        .join()
        .expect("receiver panicked")
        .unwrap_or_else(|e| panic!("receiving {streams} streams: {e}"));
    for (i, (want, (n, digest))) in sent.iter().zip(&got).enumerate() {
        assert_eq!(*n, per_stream, "stream {i} of {streams}: bytes received");
        assert_eq!(
            common::hex(digest),
            common::hex(want),
            "stream {i} of {streams}: sha256"
        );
    }
    eprintln!(
        "{total} bytes over {streams} stream(s): sha256 {} ...",
        common::hex(&sent[0])
    );
}

/// Moves this thread into the network namespace `name` (`ip netns add` made
/// /run/netns/NAME).
fn enter(name: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{name}")).map_err(|e| format!("netns {name}: {e}"))?;
    // SAFETY: setns(2) on an open namespace fd; it changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// xorshift64: cheap incompressible test data (not for anything secret).
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
    }
}
