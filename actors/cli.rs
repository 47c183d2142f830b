//! The command line (docs/cli.md): every subcommand and its options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ikehub",
    version,
    about = "IPsec VPN concentrator for hub sites: manually keyed and IKEv1-keyed ESP/AH tunnels",
    long_about = "ikehub terminates IPsec tunnels from branch routers. Profiles are TOML files \
                  (see profiles/, docs/profiles.md and ikehub.toml(5)); `ikehub run` is the \
                  daemon, the other commands inspect or steer it through its control socket."
)]
pub struct Cli {
    /// Log format on stderr (`RUST_LOG` filters, e.g. RUST_LOG=ikehub=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// A TOML profile file, or a directory whose *.toml files are merged.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    pub config: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// The profiles of the running daemon; its `system.control-socket` is used.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "PATH",
        required_unless_present = "control"
    )]
    pub config: Option<PathBuf>,
    /// Talk to the daemon on this control socket instead of the one named in the profiles.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the concentrator in the foreground. SIGHUP reloads, SIGTERM/SIGINT stop gracefully.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Append the keys of every ESP SA installed (manual and IKE, both directions, re-keys)
        /// to FILE as a Wireshark `esp_sa` table, for decrypting captures. WARNING: anyone who
        /// reads FILE can decrypt the tunnels; for debugging only. Created 0600; not a profile
        /// key, so shared profiles never switch it on.
        #[arg(long, value_name = "FILE")]
        esp_key_log: Option<PathBuf>,
    },
    /// Validate the profiles without touching the system: exit 0 and a summary when valid,
    /// otherwise exit 1 and one `FILE:LINE:COL: message` line per problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the state of the running daemon.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// Reload the profiles of the running daemon (same as SIGHUP) and print what changed.
    Reload {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Bring a tunnel up now.
    Initiate {
        /// The policy name.
        policy: String,
        /// For a template policy: the spoke address.
        #[arg(long)]
        peer: Option<String>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Tear a tunnel down, sending delete notifications.
    Terminate {
        /// The policy name.
        policy: String,
        /// For a template policy: the spoke address.
        #[arg(long)]
        peer: Option<String>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Test hook: make the peer actor of ADDR panic (the daemon must run with
    /// IKEHUB_TEST_FAULTS=1). Proves supervision; never needed in operation.
    #[command(hide = true)]
    InjectFault {
        /// The peer's address.
        peer: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Run a hub and N spokes in this process over loopback (no root needed) and report.
    Demo {
        /// Number of spokes.
        #[arg(long, default_value_t = 20)]
        spokes: usize,
        /// Seconds of traffic once the tunnels are up.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// The hub's IKE worker threads (`[system] ike-workers`); 0 = one per core.
        #[arg(long, default_value_t = 0)]
        ike_workers: usize,
        /// IPv6 outside and inside: the hub and the spokes on ::1 (the spokes told apart by
        /// UDP port and key ID), hosts in 2001:db8::/32.
        #[arg(long)]
        ipv6: bool,
    },
    /// Measure this machine: ESP encap/decap MB/s per suite and size, SA lookup, DH operations
    /// and handshakes per second per group.
    Bench {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Seconds spent on each measurement.
        #[arg(long, default_value_t = 0.3)]
        seconds: f64,
    },
    /// Drive N real IKEv1 initiators (main mode + quick mode, PSK), each from its own source
    /// address, against a hub; report tunnels up, setup rate, latency, failures and
    /// retransmissions.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell) on
    /// stdout, generated from this command line (for packaging).
    #[command(hide = true)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages ikehub(8), ikehub-COMMAND(8) and ikehub.toml(5) into DIR (for
    /// packaging; generated from this command line and docs/profiles.md).
    #[command(hide = true)]
    Man {
        /// The directory to write into (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ShowWhat {
    /// The IPsec SA table (SmartWare column order).
    Sa {
        #[command(flatten)]
        control: ControlArgs,
        /// Machine-readable output with packet, byte and drop counters.
        #[arg(long)]
        json: bool,
    },
    /// Phase-1 (ISAKMP) SAs.
    Isakmp {
        #[command(flatten)]
        control: ControlArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Per-shard counters of packets dropped before they reached an SA (no policy, unknown
    /// SPI, send errors...) and of IKE datagrams and NAT keepalives seen on the ESP path.
    Counters {
        #[command(flatten)]
        control: ControlArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Tunnel events (ISAKMP SA up/down, child SA up/rekey/down, refused, failed, peer dead) as
    /// JSON lines, oldest first: the last ones the daemon kept, or with --follow the new ones
    /// as they happen.
    Events {
        #[command(flatten)]
        control: ControlArgs,
        /// Keep the connection open and print each new event as it happens (until interrupted).
        #[arg(long)]
        follow: bool,
        /// Only the last N events (the daemon keeps the last 1024).
        #[arg(long, value_name = "N", conflicts_with = "follow")]
        last: Option<usize>,
    },
    /// One line per peer: policy, address, state, child SAs, last error.
    Peers {
        #[command(flatten)]
        control: ControlArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
}
