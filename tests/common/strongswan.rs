//! A strongSwan (charon + swanctl) peer inside a network namespace, for the IKE interop tests.
//!
//! [`Charon::start`] runs one `charon` per namespace with its own configuration, loads an
//! [`SwanConfig`] (an IKEv1 PSK connection by default) through swanctl/vici, and kills it on drop.
//! Several charons run side by side (one per namespace) and next to the host's own, if any.
//!
//! # What had to be found out (strongSwan 5.9.8, Debian 12, kernel without ESP/XFRM)
//!
//! * **Userspace ESP**: the kernel has no XFRM, so charon loads `kernel-libipsec` (strongSwan's
//!   own ESP in userspace, through a TUN device it creates at start-up, `ipsec0`) *before*
//!   `kernel-netlink` (which still handles addresses and routes). `kernel-libipsec` in 5.9.8
//!   sends ESP only in UDP, so every connection sets `encap = yes`: strongSwan then fakes a NAT
//!   in its NAT-D payloads, phase 1 floats from port 500 to 4500 after message 4 of main mode,
//!   and ESP is RFC 3948 ESP-in-UDP on 4500 (`swanctl --list-sas` says `TUNNEL-in-UDP`,
//!   `nat-remote = yes`, `nat-any = yes`; the peer logs "remote host is behind NAT").
//!   Verified: the plugin forces this even with `encap = no` (it declares that it requires UDP
//!   encapsulation, and charon then fakes NAT-D regardless), so a strongSwan peer here *always*
//!   looks NATed to ikehub: ikehub must float to 4500 and use ESP-in-UDP with it.
//! * **No on-demand (trap) with kernel-libipsec**: `start_action = trap` installs the route
//!   into `ipsec0`, but libipsec 5.9.8 drops the first packet ("could not find an outbound
//!   IPsec SA for reqid {1}, dropping packet") and never sends an acquire to charon, so nothing
//!   is negotiated. strongSwan-initiated tests use [`Charon::initiate`] or `start_action =
//!   start`; with `start` charon initiates while loading, so start the responder first or the
//!   first main-mode message is lost and retransmitted after `retransmit_timeout` (4 s).
//! * **The plugin list** (`charon.load`, which replaces `load_modular`, so the host's
//!   `/etc/strongswan.d` plugin snippets do not matter): [`CHARON_PLUGINS`]. `openssl` provides
//!   3DES/DES and the MODP groups beside `gmp`; this build has no `des` or `curve25519` plugin;
//!   no certificate plugins (`pem`, `x509`, `pkcs1`...) are needed for PSK. `kdf` is required by
//!   5.9.8 for its PRF+ (charon warns without it). `updown` is loaded but no script is configured.
//!   Verified strongSwan↔strongSwan with this list: IKE `3des-md5-modp1024`,
//!   `aes128-sha1-modp1024`, `aes192-sha1-modp1536`, `aes256-sha256-modp2048`,
//!   `des-sha1-modp768` (group 1); ESP `3des-md5`, `des-md5`, `aes128-sha1`, `aes192-sha1`,
//!   `aes128-sha256`, `aes256-sha256`, with and without a PFS group. ESP `sha256` is
//!   HMAC-SHA2-256-128 (RFC 4868, 16-byte ICV; `--list-sas` says `HMAC_SHA2_256_128`), not the
//!   pre-RFC 96-bit truncation (that would need `sha256_96 = yes` on the child).
//! * **Private /run**: charon's pid file path is compiled in (`/run/charon.pid`), and a second
//!   charon refuses to start if it finds a live one. Each charon therefore gets a private mount
//!   namespace with its own directory bound over `/run`:
//!   `ip netns exec NS unshare -m --propagation private sh -c 'mount --bind DIR/run /run && exec
//!   /usr/lib/ipsec/charon'`. (`ip netns exec` itself already makes a mount namespace with `/`
//!   as rslave, so the bind would not reach the host even without `unshare -m`; `unshare -m`
//!   makes it explicit.) Every program `exec`s the next, so the spawned child's pid *is*
//!   charon's; killing it ends the mount namespace and its bind mount with it.
//! * **Own configuration**: the `STRONGSWAN_CONF` environment variable points both charon and
//!   swanctl at a private `strongswan.conf`. It sets the vici socket
//!   (`charon.plugins.vici.socket = unix://DIR/charon.vici`; swanctl is given `--uri` to match),
//!   `charon.filelog` to `DIR/charon.log` (`flush_line = yes`, per-subsystem levels, syslog off),
//!   and `swanctl.load = random` so swanctl does not try to load the host's default plugin list
//!   (it printed a dozen "plugin 'x': failed to load" lines otherwise). swanctl still prints
//!   "opening directory 'DIR/x509' failed" for each credential directory next to the
//!   swanctl.conf; that is harmless and ignored.
//! * **Log levels**: `net = 2` logs a line per ESP packet ("sending packet" for every
//!   UDP-encapsulated datagram; 80 000 lines in a 3 s iperf3 run, which costs throughput), so
//!   the defaults are `ike/cfg/knl/chd = 2`, `net/esp/enc = 1`, `default = 1`; set
//!   [`SwanConfig::log_level`] to change one.
//! * **Routes**: with `charon.install_routes = yes` (the default, set explicitly) libipsec
//!   installs one route per CHILD_SA into table 220 (`ip rule` priority 220), e.g.
//!   `203.0.113.0/24 dev ipsec0 proto static src 198.51.100.1`; the `src` is a local address
//!   inside `local_ts` (an address on `lo`, as in [`super::TwoSites`]), so `ping -I
//!   198.51.100.1 203.0.113.1` and plain `ping 203.0.113.1` both enter the tunnel. This works
//!   for a host (`/32`) and for a subnet `local_ts`. `install_virtual_ip = no` (no virtual IPs).
//! * **IKEv1 specifics**: `version = 1`, `aggressive = no` (as responder strongSwan then answers
//!   an aggressive-mode PSK request with an `AUTHENTICATION-FAILED` notify and logs
//!   "Aggressive Mode PSK disabled for security reasons"); `mobike` is IKEv2-only but set to
//!   `no` anyway. IKEv1 has no IKE rekeying: strongSwan renews phase 1 by *reauthentication*
//!   (a new main mode) whether `rekey_time` or `reauth_time` is set. `dpd_timeout` is used by
//!   IKEv1 only. The `unique` policy decides what INITIAL-CONTACT does: the default `no`
//!   replaces the old SAs when a peer sends INITIAL-CONTACT, `never` ignores it.
//! * **swanctl.conf**: one connection with one child; the PSK is in
//!   `secrets { ike-NAME { id-1 = LOCAL_ID  id-2 = REMOTE_ID  secret = "..." } }`; ids are the
//!   IKE addresses unless set ([`SwanConfig::local_id`]).
//! * **Rekeying** (verified with ~10-20 s lifetimes, `strongswan_to_strongswan_short_lifetimes_rekey`):
//!   child `rekey_time`/`life_time`/`rand_time` renew phase 2 by a new quick mode (with the PFS
//!   group of `esp_proposals`; `--list-sas` then shows `.../MODP_1024` on the CHILD_SA and the
//!   old one as `REKEYED` until deleted); connection `rekey_time` (+ `over_time`, `rand_time`)
//!   renews phase 1 by a full new main mode, after which the responder logs "detected reauth
//!   of existing IKE_SA, adopting N children" and the old ISAKMP SA is deleted. Zero pings
//!   were lost strongSwan↔strongSwan. Both ends rekey on their own timers, so give them
//!   different lifetimes to have both initiate renewals.
//! * **Wrong PSK** (initiator right, responder wrong): the responder cannot decrypt main mode
//!   message 5 ("invalid HASH_V1 payload length, decryption failed?", "message parsing
//!   failed") and stays silent; the initiator retransmits and gives up ("giving up after N
//!   retransmits", "establishing IKE_SA failed, peer not responding"). With the default
//!   retransmit settings that takes ~165 s; [`SwanConfig::retransmit`]`(2, 1.0, 1.5)` makes
//!   it ~5 s. [`Charon::reload`] with the corrected PSK then lets the next initiate succeed.
//! * `swanctl --initiate --child NAME --timeout N` blocks until the CHILD_SA is up (exit 0) or
//!   fails (exit non-zero, log on stdout); with MODP1024 on this machine that takes ~20 ms.
//!   `swanctl --list-sas --pretty` is parsed into [`IkeSa`] / [`ChildSa`] ([`parse_list_sas`]).
//! * The host's `/etc/strongswan.d` and `/etc/swanctl` are never read or written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Netns, TempDir, poll_until, skip, stop_child};

/// How long charon may take until its vici socket answers.
pub const CHARON_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long charon may take to stop after SIGTERM before it is killed.
pub const CHARON_STOP_GRACE: Duration = Duration::from_secs(5);
/// Bound on any single swanctl command that has no `--timeout` of its own.
pub const SWANCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// `charon.load`: the plugins a PSK IKEv1/IKEv2 peer with userspace ESP needs here.
/// `kernel-libipsec` must come before `kernel-netlink` (the first IPsec backend loaded wins).
pub const CHARON_PLUGINS: &str = "random nonce aes sha1 sha2 md5 hmac gmp openssl kdf \
                                  kernel-libipsec kernel-netlink socket-default vici updown";

/// Where charon lives: `$CHARON_BIN`, else the first of the usual paths that exists.
pub fn charon_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHARON_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/lib/ipsec/charon",
        "/usr/libexec/ipsec/charon",
        "/usr/lib/strongswan/charon",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Root, `swanctl`, `charon`, `unshare` and `mount`, plus every tool in `extra`
/// (`if !require_strongswan_or_skip(&["ping"]) { return; }`).
pub fn require_strongswan_or_skip(extra: &[&str]) -> bool {
    let mut tools = vec!["swanctl", "unshare", "mount"];
    tools.extend_from_slice(extra);
    if !super::require_env_or_skip(&tools) {
        return false;
    }
    charon_path().is_some()
        || skip(
            "strongSwan's charon not found (/usr/lib/ipsec/charon; set CHARON_BIN): \
             install strongswan-charon (sudo bash .ci/run)",
        )
}

/// `start_action` of a CHILD_SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Load only; the test (or the peer) initiates.
    None,
    /// Initiate as soon as the configuration is loaded.
    Start,
    /// Install a trap policy: the first matching packet initiates (on-demand). Does NOT work
    /// with kernel-libipsec 5.9.8 (no acquire; see the module doc).
    Trap,
}

impl StartAction {
    fn as_str(self) -> &'static str {
        match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        }
    }
}

/// One strongSwan connection (IKE_SA config with one CHILD_SA config) plus daemon-wide options.
/// Built with [`SwanConfig::ikev1_psk`] and the chained setters; rendered by
/// [`SwanConfig::swanctl_conf`] / [`SwanConfig::strongswan_conf`].
#[derive(Clone, Debug)]
pub struct SwanConfig {
    /// Connection (IKE_SA) name, `tun` by default.
    pub conn: String,
    /// CHILD_SA name, `net` by default.
    pub child: String,
    /// IKE version: 1 (default) or 2.
    pub version: u8,
    pub local_addr: String,
    pub remote_addr: String,
    /// IKE identities; the addresses when `None`.
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub psk: String,
    /// IKE proposals, e.g. `aes128-sha1-modp1024`.
    pub proposals: Vec<String>,
    /// ESP proposals, e.g. `aes128-sha1` or with PFS `aes128-sha1-modp1024`.
    pub esp_proposals: Vec<String>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// `tunnel` (default) or `transport`.
    pub mode: String,
    /// Force UDP encapsulation (`encap`); kernel-libipsec 5.9.8 forces it anyway.
    pub encap: bool,
    pub aggressive: bool,
    /// `unique`: no (default), never, replace, keep.
    pub unique: Option<String>,
    /// Seconds between DPD probes when idle (`dpd_delay`); 0 disables.
    pub dpd_delay: u32,
    /// IKEv1 only: declare the peer dead after this many seconds (`dpd_timeout`).
    pub dpd_timeout: Option<u32>,
    /// Child `dpd_action`: clear, trap, restart.
    pub dpd_action: Option<String>,
    /// Child `close_action`: none, clear, trap, start.
    pub close_action: Option<String>,
    /// IKE_SA `rekey_time` (for IKEv1 strongSwan reauthenticates instead), seconds.
    pub ike_rekey_time: Option<u32>,
    /// IKE_SA `reauth_time`, seconds.
    pub ike_reauth_time: Option<u32>,
    /// IKE_SA `over_time` (hard lifetime = rekey/reauth time + over_time), seconds.
    pub ike_over_time: Option<u32>,
    /// IKE_SA `rand_time` (jitter subtracted from the rekey time), seconds.
    pub ike_rand_time: Option<u32>,
    /// CHILD_SA `rekey_time`, `life_time` (hard), `rand_time`, seconds.
    pub child_rekey_time: Option<u32>,
    pub child_life_time: Option<u32>,
    pub child_rand_time: Option<u32>,
    pub start_action: StartAction,
    /// `charon.retransmit_tries` / `retransmit_timeout` / `retransmit_base`; strongSwan's
    /// defaults (5, 4.0 s, 1.8: about 165 s before giving up) when `None`.
    pub retransmit_tries: Option<u32>,
    pub retransmit_timeout: Option<f64>,
    pub retransmit_base: Option<f64>,
    /// `charon.filelog` levels per subsystem (-1..4), on top of [`DEFAULT_LOG_LEVELS`].
    pub log_levels: BTreeMap<String, i32>,
    /// Raw lines added to the connection section (escape hatch).
    pub extra_conn: Vec<String>,
    /// Raw lines added to the child section.
    pub extra_child: Vec<String>,
    /// Raw lines added to the `charon { }` section of strongswan.conf.
    pub extra_charon: Vec<String>,
}

/// `charon.filelog` levels unless overridden: IKE, config, kernel and child decisions at 2,
/// per-packet subsystems (net, esp, enc) at 1.
pub const DEFAULT_LOG_LEVELS: &[(&str, i32)] = &[
    ("default", 1),
    ("ike", 2),
    ("cfg", 2),
    ("knl", 2),
    ("chd", 2),
    ("net", 1),
    ("esp", 1),
    ("enc", 1),
];

impl SwanConfig {
    /// An IKEv1 main-mode PSK connection `tun` with child `net` between two IKE addresses:
    /// `aes128-sha1-modp1024`, ESP `aes128-sha1` (no PFS), tunnel mode, `encap = yes`,
    /// `aggressive = no`, no DPD, `start_action = none`, strongSwan's default lifetimes.
    /// Set the traffic selectors with [`SwanConfig::ts`].
    pub fn ikev1_psk(local_addr: &str, remote_addr: &str, psk: &str) -> SwanConfig {
        SwanConfig {
            conn: "tun".into(),
            child: "net".into(),
            version: 1,
            local_addr: local_addr.into(),
            remote_addr: remote_addr.into(),
            local_id: None,
            remote_id: None,
            psk: psk.into(),
            proposals: vec!["aes128-sha1-modp1024".into()],
            esp_proposals: vec!["aes128-sha1".into()],
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            mode: "tunnel".into(),
            encap: true,
            aggressive: false,
            unique: None,
            dpd_delay: 0,
            dpd_timeout: None,
            dpd_action: None,
            close_action: None,
            ike_rekey_time: None,
            ike_reauth_time: None,
            ike_over_time: None,
            ike_rand_time: None,
            child_rekey_time: None,
            child_life_time: None,
            child_rand_time: None,
            start_action: StartAction::None,
            retransmit_tries: None,
            retransmit_timeout: None,
            retransmit_base: None,
            log_levels: BTreeMap::new(),
            extra_conn: Vec::new(),
            extra_child: Vec::new(),
            extra_charon: Vec::new(),
        }
    }

    /// The same connection seen from the other end: addresses, identities and traffic
    /// selectors swapped, `start_action = none` (everything else kept).
    pub fn mirrored(&self) -> SwanConfig {
        let mut m = self.clone();
        std::mem::swap(&mut m.local_addr, &mut m.remote_addr);
        std::mem::swap(&mut m.local_id, &mut m.remote_id);
        std::mem::swap(&mut m.local_ts, &mut m.remote_ts);
        m.start_action = StartAction::None;
        m
    }

    pub fn names(mut self, conn: &str, child: &str) -> Self {
        self.conn = conn.into();
        self.child = child.into();
        self
    }

    pub fn version(mut self, v: u8) -> Self {
        self.version = v;
        self
    }

    /// Local and remote traffic selectors (one each; use the fields for several).
    pub fn ts(mut self, local: &str, remote: &str) -> Self {
        self.local_ts = vec![local.into()];
        self.remote_ts = vec![remote.into()];
        self
    }

    pub fn local_id(mut self, id: &str) -> Self {
        self.local_id = Some(id.into());
        self
    }

    pub fn remote_id(mut self, id: &str) -> Self {
        self.remote_id = Some(id.into());
        self
    }

    pub fn psk(mut self, psk: &str) -> Self {
        self.psk = psk.into();
        self
    }

    /// IKE proposals, most preferred first (`aes256-sha256-modp2048`, `3des-md5-modp1024`...).
    pub fn proposals(mut self, p: &[&str]) -> Self {
        self.proposals = p.iter().map(|s| s.to_string()).collect();
        self
    }

    /// ESP proposals (`aes128-sha1`; a trailing DH group means PFS: `aes128-sha1-modp1024`).
    pub fn esp_proposals(mut self, p: &[&str]) -> Self {
        self.esp_proposals = p.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.into();
        self
    }

    pub fn encap(mut self, on: bool) -> Self {
        self.encap = on;
        self
    }

    pub fn aggressive(mut self, on: bool) -> Self {
        self.aggressive = on;
        self
    }

    pub fn unique(mut self, policy: &str) -> Self {
        self.unique = Some(policy.into());
        self
    }

    /// DPD every `delay` s when idle; IKEv1 declares the peer dead after `timeout` s;
    /// `action` = clear | trap | restart.
    pub fn dpd(mut self, delay: u32, timeout: u32, action: &str) -> Self {
        self.dpd_delay = delay;
        self.dpd_timeout = Some(timeout);
        self.dpd_action = Some(action.into());
        self
    }

    pub fn close_action(mut self, action: &str) -> Self {
        self.close_action = Some(action.into());
        self
    }

    /// Phase 1 renewal (reauthentication for IKEv1) after `rekey` s, hard end `over` s later,
    /// `rand` s of jitter subtracted.
    pub fn ike_lifetime(mut self, rekey: u32, over: u32, rand: u32) -> Self {
        self.ike_rekey_time = Some(rekey);
        self.ike_over_time = Some(over);
        self.ike_rand_time = Some(rand);
        self
    }

    /// Phase 2 rekey after `rekey` s, hard lifetime `life` s (> rekey), `rand` s of jitter.
    pub fn child_lifetime(mut self, rekey: u32, life: u32, rand: u32) -> Self {
        self.child_rekey_time = Some(rekey);
        self.child_life_time = Some(life);
        self.child_rand_time = Some(rand);
        self
    }

    pub fn start_action(mut self, a: StartAction) -> Self {
        self.start_action = a;
        self
    }

    /// Give up on an unanswered exchange after `tries` retransmissions (first after
    /// `timeout` s, then times `base`), instead of strongSwan's ~165 s default.
    pub fn retransmit(mut self, tries: u32, timeout: f64, base: f64) -> Self {
        self.retransmit_tries = Some(tries);
        self.retransmit_timeout = Some(timeout);
        self.retransmit_base = Some(base);
        self
    }

    pub fn log_level(mut self, subsystem: &str, level: i32) -> Self {
        self.log_levels.insert(subsystem.into(), level);
        self
    }

    pub fn extra_conn(mut self, line: &str) -> Self {
        self.extra_conn.push(line.into());
        self
    }

    pub fn extra_child(mut self, line: &str) -> Self {
        self.extra_child.push(line.into());
        self
    }

    pub fn extra_charon(mut self, line: &str) -> Self {
        self.extra_charon.push(line.into());
        self
    }

    fn local_id_or_addr(&self) -> &str {
        self.local_id.as_deref().unwrap_or(&self.local_addr)
    }

    fn remote_id_or_addr(&self) -> &str {
        self.remote_id.as_deref().unwrap_or(&self.remote_addr)
    }

    /// strongswan.conf for a charon whose files live in `dir`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let mut levels: BTreeMap<String, i32> = DEFAULT_LOG_LEVELS
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        levels.extend(self.log_levels.iter().map(|(k, v)| (k.clone(), *v)));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# written by the ikehub test harness (tests/common/strongswan.rs)"
        );
        let _ = writeln!(s, "charon {{");
        let _ = writeln!(s, "  load = {CHARON_PLUGINS}");
        let _ = writeln!(s, "  install_routes = yes");
        let _ = writeln!(s, "  install_virtual_ip = no");
        if let Some(t) = self.retransmit_tries {
            let _ = writeln!(s, "  retransmit_tries = {t}");
        }
        if let Some(t) = self.retransmit_timeout {
            let _ = writeln!(s, "  retransmit_timeout = {t}");
        }
        if let Some(b) = self.retransmit_base {
            let _ = writeln!(s, "  retransmit_base = {b}");
        }
        for line in &self.extra_charon {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, "  plugins {{");
        let _ = writeln!(
            s,
            "    vici {{\n      socket = unix://{}\n    }}",
            dir.join("charon.vici").display()
        );
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  filelog {{");
        let _ = writeln!(s, "    testlog {{");
        let _ = writeln!(s, "      path = {}", dir.join("charon.log").display());
        let _ = writeln!(s, "      time_format = %T");
        let _ = writeln!(s, "      append = no");
        let _ = writeln!(s, "      flush_line = yes");
        for (k, v) in &levels {
            let _ = writeln!(s, "      {k} = {v}");
        }
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(
            s,
            "  syslog {{\n    daemon {{\n      default = -1\n    }}\n  }}"
        );
        let _ = writeln!(s, "}}");
        let _ = writeln!(s, "swanctl {{\n  load = random\n}}");
        s
    }

    /// swanctl.conf: the connection and its PSK.
    pub fn swanctl_conf(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let list = |v: &[String]| v.join(",");
        let mut s = String::new();
        let _ = writeln!(s, "connections {{");
        let _ = writeln!(s, "  {} {{", self.conn);
        let _ = writeln!(s, "    version = {}", self.version);
        let _ = writeln!(s, "    local_addrs = {}", self.local_addr);
        let _ = writeln!(s, "    remote_addrs = {}", self.remote_addr);
        let _ = writeln!(s, "    proposals = {}", list(&self.proposals));
        let _ = writeln!(s, "    encap = {}", yn(self.encap));
        let _ = writeln!(s, "    aggressive = {}", yn(self.aggressive));
        let _ = writeln!(s, "    mobike = no");
        let _ = writeln!(s, "    dpd_delay = {}s", self.dpd_delay);
        let opt = |s: &mut String, key: &str, v: Option<u32>| {
            if let Some(v) = v {
                let _ = writeln!(s, "    {key} = {v}s");
            }
        };
        opt(&mut s, "dpd_timeout", self.dpd_timeout);
        opt(&mut s, "rekey_time", self.ike_rekey_time);
        opt(&mut s, "reauth_time", self.ike_reauth_time);
        opt(&mut s, "over_time", self.ike_over_time);
        opt(&mut s, "rand_time", self.ike_rand_time);
        if let Some(u) = &self.unique {
            let _ = writeln!(s, "    unique = {u}");
        }
        for line in &self.extra_conn {
            let _ = writeln!(s, "    {line}");
        }
        let _ = writeln!(
            s,
            "    local {{\n      auth = psk\n      id = {}\n    }}",
            self.local_id_or_addr()
        );
        let _ = writeln!(
            s,
            "    remote {{\n      auth = psk\n      id = {}\n    }}",
            self.remote_id_or_addr()
        );
        let _ = writeln!(s, "    children {{");
        let _ = writeln!(s, "      {} {{", self.child);
        let _ = writeln!(s, "        local_ts = {}", list(&self.local_ts));
        let _ = writeln!(s, "        remote_ts = {}", list(&self.remote_ts));
        let _ = writeln!(s, "        esp_proposals = {}", list(&self.esp_proposals));
        let _ = writeln!(s, "        mode = {}", self.mode);
        let _ = writeln!(s, "        start_action = {}", self.start_action.as_str());
        let copt = |s: &mut String, key: &str, v: Option<u32>| {
            if let Some(v) = v {
                let _ = writeln!(s, "        {key} = {v}s");
            }
        };
        copt(&mut s, "rekey_time", self.child_rekey_time);
        copt(&mut s, "life_time", self.child_life_time);
        copt(&mut s, "rand_time", self.child_rand_time);
        if let Some(a) = &self.dpd_action {
            let _ = writeln!(s, "        dpd_action = {a}");
        }
        if let Some(a) = &self.close_action {
            let _ = writeln!(s, "        close_action = {a}");
        }
        for line in &self.extra_child {
            let _ = writeln!(s, "        {line}");
        }
        let _ = writeln!(s, "      }}");
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        let _ = writeln!(s, "secrets {{");
        let _ = writeln!(s, "  ike-{} {{", self.conn);
        let _ = writeln!(s, "    id-1 = {}", self.local_id_or_addr());
        let _ = writeln!(s, "    id-2 = {}", self.remote_id_or_addr());
        let _ = writeln!(s, "    secret = {}", quote_secret(&self.psk));
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }
}

/// A PSK as swanctl wants it: hex (`0x..`) and base64 (`0s..`) forms as they are, anything
/// else in double quotes.
fn quote_secret(psk: &str) -> String {
    if psk.starts_with("0x") || psk.starts_with("0s") {
        return psk.to_string();
    }
    assert!(
        !psk.contains('"') && !psk.contains('\\') && !psk.contains('\n'),
        "the harness does not escape PSKs with quotes, backslashes or newlines: {psk:?}"
    );
    format!("\"{psk}\"")
}

/// One charon in a namespace, with its private directory (config, vici socket, log, /run).
/// Drop stops it (SIGTERM, then SIGKILL) and, if the test is panicking, prints its
/// configuration and log.
pub struct Charon {
    label: String,
    netns: String,
    child: Option<Child>,
    config: SwanConfig,
    // Last field: removed after charon is gone.
    dir: TempDir,
}

impl Charon {
    /// Writes strongswan.conf and swanctl.conf into a private temp dir, starts charon in `ns`
    /// (private mount namespace, private /run), waits until its vici socket answers and loads
    /// the configuration. Panics with the log if any of that fails.
    pub fn start(ns: &Netns, label: &str, config: &SwanConfig) -> Charon {
        let charon_bin = charon_path().expect("charon not found (require_strongswan_or_skip)");
        let dir = TempDir::new(&format!("swan-{label}"));
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap_or_else(|e| panic!("mkdir {}: {e}", run.display()));
        let conf = dir.join("strongswan.conf");
        std::fs::write(&conf, config.strongswan_conf(dir.path()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        std::fs::write(dir.join("swanctl.conf"), config.swanctl_conf())
            .unwrap_or_else(|e| panic!("writing swanctl.conf: {e}"));
        let out_path = dir.join("charon.stdout");
        let out = File::create(&out_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", out_path.display()));
        let err = out.try_clone().expect("dup charon stdout file");
        // ip netns exec -> unshare -> sh -> charon: each execs the next, so the child's pid is
        // charon's own.
        let child = ns
            .command("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$1\" /run && exec \"$2\"")
            .arg("sh")
            .arg(&run)
            .arg(&charon_bin)
            .env("STRONGSWAN_CONF", &conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start charon in {}: {e}", ns.name()));
        let mut charon = Charon {
            label: label.into(),
            netns: ns.name().into(),
            child: Some(child),
            config: config.clone(),
            dir,
        };
        charon.wait_ready();
        charon.load_all();
        charon
    }

    fn wait_ready(&mut self) {
        let ready = poll_until(CHARON_READY_TIMEOUT, || {
            if !self.is_running() {
                return Some(false);
            }
            let out = self.swanctl(&["--stats"]).ok()?;
            out.status.success().then_some(true)
        });
        match ready {
            Some(true) => {}
            Some(false) => panic!(
                "charon {} exited during start-up ({:?}); its log follows",
                self.label,
                self.child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
            ),
            None => panic!(
                "charon {} did not answer on {} within {CHARON_READY_TIMEOUT:?}",
                self.label,
                self.vici_uri()
            ),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn config(&self) -> &SwanConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix://DIR/charon.vici`, for `swanctl --uri`.
    pub fn vici_uri(&self) -> String {
        format!("unix://{}", self.dir.join("charon.vici").display())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Runs `swanctl ARGS --uri VICI` (with this charon's `STRONGSWAN_CONF`), bounded by
    /// [`SWANCTL_TIMEOUT`]. swanctl talks to the vici socket by path, so it runs on the host.
    pub fn swanctl(&self, args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new("swanctl");
        cmd.args(args)
            .arg("--uri")
            .arg(self.vici_uri())
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run swanctl: {e}"))?;
        output_with_timeout(child, SWANCTL_TIMEOUT)
            .map_err(|e| format!("swanctl {}: {e}", args.join(" ")))
    }

    /// Like [`Charon::swanctl`], but panics (with the charon log) unless swanctl exits 0.
    pub fn swanctl_ok(&self, args: &[&str]) -> String {
        match self.swanctl(args) {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => panic!(
                "charon {}: swanctl {} failed ({}):\n{}{}",
                self.label,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("charon {}: {e}", self.label),
        }
    }

    /// `swanctl --load-all --file DIR/swanctl.conf` (connections and secrets).
    pub fn load_all(&self) {
        let file = self.dir.join("swanctl.conf");
        let file = file.to_string_lossy();
        self.swanctl_ok(&["--load-all", "--noprompt", "--file", &file]);
    }

    /// Replaces the configuration (e.g. to correct a PSK) and loads it; connections that are
    /// gone are unloaded, established SAs are kept.
    pub fn reload(&mut self, config: &SwanConfig) {
        std::fs::write(self.dir.join("swanctl.conf"), config.swanctl_conf())
            .unwrap_or_else(|e| panic!("writing swanctl.conf: {e}"));
        self.config = config.clone();
        self.load_all();
    }

    /// `swanctl --initiate --child CHILD --timeout SECS`: Ok(swanctl's log) once the CHILD_SA
    /// is installed, Err(log) if the negotiation failed or timed out.
    pub fn initiate(&self, child: &str, timeout_secs: u32) -> Result<String, String> {
        self.initiate_args(&["--child", child], timeout_secs)
    }

    /// `swanctl --initiate --ike CONN`: phase 1 only (IKEv1 main mode without quick mode).
    pub fn initiate_ike(&self, conn: &str, timeout_secs: u32) -> Result<String, String> {
        self.initiate_args(&["--ike", conn], timeout_secs)
    }

    fn initiate_args(&self, what: &[&str], timeout_secs: u32) -> Result<String, String> {
        let t = timeout_secs.to_string();
        let mut args = vec!["--initiate"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["--timeout", &t]);
        let out = self.swanctl(&args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "swanctl --initiate failed ({}):\n{text}",
                out.status
            ))
        }
    }

    /// `swanctl --terminate --ike CONN --timeout 10`: deletes the IKE_SA and its CHILD_SAs
    /// (delete notifications sent); Err if swanctl failed (e.g. no such SA).
    pub fn terminate_ike(&self, conn: &str) -> Result<String, String> {
        self.terminate_args(&["--ike", conn])
    }

    /// `swanctl --terminate --child CHILD`.
    pub fn terminate_child(&self, child: &str) -> Result<String, String> {
        self.terminate_args(&["--child", child])
    }

    fn terminate_args(&self, what: &[&str]) -> Result<String, String> {
        let mut args = vec!["--terminate"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["--timeout", "10"]);
        let out = self.swanctl(&args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "swanctl --terminate failed ({}):\n{text}",
                out.status
            ))
        }
    }

    /// `swanctl --list-sas` as a human reads it.
    pub fn list_sas(&self) -> String {
        self.swanctl_ok(&["--list-sas"])
    }

    /// `swanctl --list-sas --pretty`, parsed.
    pub fn sas(&self) -> Vec<IkeSa> {
        parse_list_sas(&self.swanctl_ok(&["--list-sas", "--pretty"]))
    }

    /// The first INSTALLED CHILD_SA named `child`, if any.
    pub fn installed_child(&self, child: &str) -> Option<ChildSa> {
        self.sas()
            .into_iter()
            .flat_map(|ike| ike.children)
            .find(|c| c.name == child && c.state == "INSTALLED")
    }

    /// Waits until a CHILD_SA named `child` is INSTALLED; panics (log printed) after `timeout`.
    pub fn wait_child_installed(&self, child: &str, timeout: Duration) -> ChildSa {
        poll_until(timeout, || self.installed_child(child)).unwrap_or_else(|| {
            panic!(
                "charon {}: no INSTALLED CHILD_SA {child} after {timeout:?}:\n{}",
                self.label,
                self.list_sas()
            )
        })
    }

    /// Waits until charon has no IKE_SA at all; panics after `timeout`.
    pub fn wait_no_sas(&self, timeout: Duration) {
        if poll_until(timeout, || self.sas().is_empty().then_some(())).is_none() {
            panic!(
                "charon {}: SAs still present after {timeout:?}:\n{}",
                self.label,
                self.list_sas()
            );
        }
    }

    /// The routes libipsec installed (`ip route show table 220` in the namespace).
    pub fn routes(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "route", "show", "table", "220"])
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        out.unwrap_or_else(|e| format!("<ip route: {e}>"))
    }

    /// charon's log file (and anything it wrote to stdout/stderr).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("charon.log"))
            .unwrap_or_else(|e| format!("<no charon.log: {e}>"));
        let out = std::fs::read_to_string(self.dir.join("charon.stdout")).unwrap_or_default();
        if out.trim().is_empty() {
            log
        } else {
            format!("{log}\n--- charon stdout/stderr ---\n{out}")
        }
    }

    /// Stops charon (SIGTERM, SIGKILL after [`CHARON_STOP_GRACE`]); `None` if it was killed.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        stop_child(&mut child, libc::SIGTERM, CHARON_STOP_GRACE)
    }

    /// Kills charon with SIGKILL (a crash: no delete notifications); the guard stays usable
    /// for [`Charon::log`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGKILL, CHARON_STOP_GRACE);
        }
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && stop_child(&mut child, libc::SIGTERM, CHARON_STOP_GRACE).is_none()
        {
            eprintln!(
                "charon {} ignored SIGTERM for {CHARON_STOP_GRACE:?}, killed",
                self.label
            );
        }
        if std::thread::panicking() {
            let conf = std::fs::read_to_string(self.dir.join("swanctl.conf")).unwrap_or_default();
            eprintln!(
                "----- swanctl.conf of charon {label} (netns {netns}) -----\n{conf}\n\
                 ----- log of charon {label} -----\n{log}\n----- end of charon log -----",
                label = self.label,
                netns = self.netns,
                log = self.log()
            );
        }
    }
}

/// Collects a child's stdout and stderr, killing it after `timeout`.
pub fn output_with_timeout(mut child: Child, timeout: Duration) -> Result<Output, String> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read = |s: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            s.map(|s| {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut { s }, &mut buf);
                buf
            })
            .unwrap_or_default()
        })
    };
    let out_t = read(stdout);
    let err_t = std::thread::spawn(move || {
        stderr
            .map(|s| {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut { s }, &mut buf);
                buf
            })
            .unwrap_or_default()
    });
    let status = super::wait_timeout(&mut child, timeout);
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "timed out after {timeout:?}; output so far:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// One IKE_SA of `swanctl --list-sas --pretty`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IkeSa {
    /// Connection name.
    pub name: String,
    pub uniqueid: u32,
    pub version: u8,
    /// ESTABLISHED, CONNECTING, DELETING, ...
    pub state: String,
    pub local_host: String,
    pub local_port: u16,
    pub remote_host: String,
    pub remote_port: u16,
    pub initiator: bool,
    /// ISAKMP cookies, hex.
    pub initiator_spi: String,
    pub responder_spi: String,
    /// e.g. AES_CBC / 128 / HMAC_SHA1_96 / PRF_HMAC_SHA1 / MODP_1024.
    pub encr_alg: String,
    pub encr_keysize: Option<u32>,
    pub integ_alg: String,
    pub prf_alg: String,
    pub dh_group: String,
    pub nat_any: bool,
    pub children: Vec<ChildSa>,
    /// Every key = value of the IKE_SA section as printed.
    pub raw: BTreeMap<String, String>,
}

/// One CHILD_SA of `swanctl --list-sas --pretty`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildSa {
    pub name: String,
    pub uniqueid: u32,
    pub reqid: u32,
    /// INSTALLED, REKEYING, REKEYED, DELETING, ...
    pub state: String,
    /// TUNNEL / TRANSPORT.
    pub mode: String,
    /// ESP / AH.
    pub protocol: String,
    /// UDP-encapsulated.
    pub encap: bool,
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr_alg: String,
    pub encr_keysize: Option<u32>,
    pub integ_alg: String,
    /// PFS group, when quick mode used one.
    pub dh_group: Option<String>,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub raw: BTreeMap<String, String>,
}

/// A vici message as `swanctl --pretty` prints it: sections, key = value, lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Section {
    values: BTreeMap<String, String>,
    lists: BTreeMap<String, Vec<String>>,
    sections: Vec<(String, Section)>,
}

/// Parses the lines of one section body up to its closing `}`.
fn parse_section<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Section {
    let mut sec = Section::default();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            break;
        }
        if let Some(name) = line.strip_suffix('{') {
            let name = name.trim().to_string();
            let child = parse_section(lines);
            sec.sections.push((name, child));
        } else if let Some((k, v)) = line.split_once(" = ") {
            let (k, v) = (k.trim().to_string(), v.trim());
            if v == "[" {
                let mut items = Vec::new();
                for item in lines.by_ref() {
                    let item = item.trim();
                    if item == "]" {
                        break;
                    }
                    items.push(item.to_string());
                }
                sec.lists.insert(k, items);
            } else {
                sec.values.insert(k, v.to_string());
            }
        }
    }
    sec
}

/// Parses `swanctl --list-sas --pretty` output (a `list-sa event { NAME { ... } }` per IKE_SA
/// and a final `list-sas reply { }`).
pub fn parse_list_sas(text: &str) -> Vec<IkeSa> {
    let mut lines = text.lines();
    let mut sas = Vec::new();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(head) = line.strip_suffix('{') else {
            continue;
        };
        let msg = parse_section(&mut lines);
        if head.trim() != "list-sa event" {
            continue;
        }
        for (name, ike) in msg.sections {
            sas.push(ike_from_section(name, &ike));
        }
    }
    sas
}

fn ike_from_section(name: String, s: &Section) -> IkeSa {
    let v = |k: &str| s.values.get(k).cloned().unwrap_or_default();
    let n = |k: &str| s.values.get(k).and_then(|x| x.parse::<u64>().ok());
    let children = s
        .sections
        .iter()
        .filter(|(n, _)| n == "child-sas")
        .flat_map(|(_, cs)| cs.sections.iter())
        .map(|(_, c)| child_from_section(c))
        .collect();
    IkeSa {
        name,
        uniqueid: n("uniqueid").unwrap_or(0) as u32,
        version: n("version").unwrap_or(0) as u8,
        state: v("state"),
        local_host: v("local-host"),
        local_port: n("local-port").unwrap_or(0) as u16,
        remote_host: v("remote-host"),
        remote_port: n("remote-port").unwrap_or(0) as u16,
        initiator: v("initiator") == "yes",
        initiator_spi: v("initiator-spi"),
        responder_spi: v("responder-spi"),
        encr_alg: v("encr-alg"),
        encr_keysize: n("encr-keysize").map(|x| x as u32),
        integ_alg: v("integ-alg"),
        prf_alg: v("prf-alg"),
        dh_group: v("dh-group"),
        nat_any: v("nat-any") == "yes",
        children,
        raw: s.values.clone(),
    }
}

fn child_from_section(s: &Section) -> ChildSa {
    let v = |k: &str| s.values.get(k).cloned().unwrap_or_default();
    let n = |k: &str| s.values.get(k).and_then(|x| x.parse::<u64>().ok());
    let spi = |k: &str| {
        s.values
            .get(k)
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .unwrap_or(0)
    };
    ChildSa {
        name: v("name"),
        uniqueid: n("uniqueid").unwrap_or(0) as u32,
        reqid: n("reqid").unwrap_or(0) as u32,
        state: v("state"),
        mode: v("mode"),
        protocol: v("protocol"),
        encap: v("encap") == "yes",
        spi_in: spi("spi-in"),
        spi_out: spi("spi-out"),
        encr_alg: v("encr-alg"),
        encr_keysize: n("encr-keysize").map(|x| x as u32),
        integ_alg: v("integ-alg"),
        dh_group: s.values.get("dh-group").cloned(),
        bytes_in: n("bytes-in").unwrap_or(0),
        packets_in: n("packets-in").unwrap_or(0),
        bytes_out: n("bytes-out").unwrap_or(0),
        packets_out: n("packets-out").unwrap_or(0),
        local_ts: s.lists.get("local-ts").cloned().unwrap_or_default(),
        remote_ts: s.lists.get("remote-ts").cloned().unwrap_or_default(),
        raw: s.values.clone(),
    }
}

// ----- capture analysis: IKE and ESP-in-UDP on the wire -------------------------------------

/// What tshark made of one captured IKE or (UDP-encapsulated or raw) ESP packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IkeWirePacket {
    pub frame: u64,
    pub src: String,
    pub dst: String,
    /// UDP ports; `None` for raw ESP (protocol 50).
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ISAKMP exchange type (2 main mode / identity protection, 4 aggressive, 5 informational,
    /// 32 quick mode; 34.. IKEv2), when the packet is ISAKMP.
    pub isakmp_exchange: Option<u8>,
    /// ISAKMP version byte (0x10 for IKEv1).
    pub isakmp_version: Option<u8>,
    /// Notify message types of unencrypted notify payloads.
    pub notify_types: Vec<u16>,
    /// ESP SPI, when the packet is ESP (raw or in UDP).
    pub esp_spi: Option<u32>,
    /// Raw ESP (IP protocol 50) rather than ESP-in-UDP.
    pub raw_esp: bool,
    /// A NAT-keepalive (one 0xFF byte on port 4500).
    pub nat_keepalive: bool,
    /// tshark flagged the packet as malformed.
    pub malformed: bool,
    /// tshark's expert-info messages for the packet (warnings, errors), if any.
    pub expert: Vec<String>,
}

impl IkeWirePacket {
    pub fn is_isakmp(&self) -> bool {
        self.isakmp_exchange.is_some()
    }
}

/// Decodes every ISAKMP, ESP and NAT-keepalive packet of `pcap` with tshark (no keys needed).
pub fn decode_ike_wire(pcap: &Path) -> Vec<IkeWirePacket> {
    const FIELDS: &[&str] = &[
        "frame.number",
        "ip.src",
        "ip.dst",
        "ip.proto",
        "udp.srcport",
        "udp.dstport",
        "isakmp.exchangetype",
        "isakmp.version",
        "isakmp.notify.msgtype",
        "esp.spi",
        "udp.length",
        "frame.protocols",
        "_ws.expert.message",
        "_ws.malformed",
    ];
    let mut cmd = Command::new("tshark");
    // An empty personal config dir: the user's Wireshark preferences do not matter.
    let cfg = TempDir::new("tshark-ike");
    cmd.env("WIRESHARK_CONFIG_DIR", cfg.path())
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "isakmp || esp || udpencap || _ws.malformed",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
        ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = super::output_ok(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().map(parse_wire_line).collect()
}

fn parse_wire_line(line: &str) -> IkeWirePacket {
    let cols: Vec<&str> = line.split('\t').collect();
    let col = |i: usize| cols.get(i).copied().unwrap_or("");
    let all = |i: usize| -> Vec<&str> { col(i).split(';').filter(|s| !s.is_empty()).collect() };
    let num = |s: &str| -> Option<u64> {
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let first_num = |i: usize| all(i).first().and_then(|s| num(s));
    let protos: Vec<u64> = all(3).iter().filter_map(|s| num(s)).collect();
    let esp_spi = first_num(9).map(|v| v as u32);
    IkeWirePacket {
        frame: first_num(0).unwrap_or(0),
        src: all(1).first().map(|s| s.to_string()).unwrap_or_default(),
        dst: all(2).first().map(|s| s.to_string()).unwrap_or_default(),
        sport: first_num(4).map(|v| v as u16),
        dport: first_num(5).map(|v| v as u16),
        isakmp_exchange: first_num(6).map(|v| v as u8),
        isakmp_version: first_num(7).map(|v| v as u8),
        notify_types: all(8)
            .iter()
            .filter_map(|s| num(s))
            .map(|v| v as u16)
            .collect(),
        esp_spi,
        raw_esp: esp_spi.is_some() && protos.first() == Some(&50),
        // One 0xFF byte after the UDP header (RFC 3948 section 2.3).
        nat_keepalive: first_num(10) == Some(9)
            && first_num(6).is_none()
            && esp_spi.is_none()
            && col(11).contains("udpencap"),
        // tshark 4.0 does not list "malformed" in frame.protocols; the _ws.malformed field is
        // what is set on a malformed packet.
        malformed: !col(13).is_empty() || col(11).contains("malformed"),
        expert: all(12).iter().map(|s| s.to_string()).collect(),
    }
}
