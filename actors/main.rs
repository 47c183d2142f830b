//! The ikehub daemon and command line. The protocol core is the `ikehub` library (`src/`); this
//! binary adds actors, sockets, the TUN device, routes, signals and the control socket.

mod bench;
mod cli;
mod control;
mod crypto_probe;
mod daemon;
mod demo;
mod events;
mod ike;
mod io;
mod keylog;
mod loadgen;
mod man;
mod messages;
mod metrics;
mod registry;
mod rlimit;
mod routes;
mod shard;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, ControlArgs, LogFormat, ShowWhat};
use control::protocol::{Request, SaStatus};

/// `default` applies when `RUST_LOG` is not set.
fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Finds the control socket: `--control`, else `system.control-socket` of the profiles.
fn control_socket(args: &ControlArgs) -> Result<PathBuf, String> {
    if let Some(s) = &args.control {
        return Ok(s.clone());
    }
    let Some(path) = &args.config else {
        return Err("give -c PATH or --control SOCKET".into());
    };
    // Reading the one key is enough (and cheap for a hub with thousands of policies); the full
    // validation only runs to explain why the socket cannot be found.
    if let Some(socket) = lenient_control_socket(path) {
        return Ok(socket);
    }
    match ikehub::config::load(path) {
        Ok(loaded) => Ok(loaded.profiles.system.control_socket.clone()),
        // The profiles on disk may be broken (an operator about to `reload` them): the socket
        // is still found when `system.control-socket` itself can be read.
        Err(problems) => lenient_control_socket(path).ok_or_else(|| {
            let mut msg = format!(
                "cannot find the control socket: the profiles in {} do not load:",
                path.display()
            );
            for p in problems {
                msg.push_str(&format!("\n{p}"));
            }
            msg.push_str("\n(use --control SOCKET to name the socket directly)");
            msg
        }),
    }
}

/// `system.control-socket` read from files that do not validate, or from the key's own line of
/// a file that is not even TOML; the default when no file sets it.
fn lenient_control_socket(path: &std::path::Path) -> Option<PathBuf> {
    let files = ikehub::config::profile_files(path).ok()?;
    for f in files {
        let text = std::fs::read_to_string(&f).ok()?;
        let found = match text.parse::<toml::Table>() {
            Ok(table) => table
                .get("system")
                .and_then(|s| s.get("control-socket"))
                .and_then(|s| s.as_str())
                .map(str::to_string),
            // Not even TOML (an operator mid-edit): the key's own line may still be readable.
            Err(_) => text.lines().find_map(|l| {
                let v = l.trim().strip_prefix("control-socket")?.trim_start();
                let v = v.strip_prefix('=')?.trim();
                Some(v.strip_prefix('"')?.split('"').next()?.to_string())
            }),
        };
        if let Some(s) = found {
            let p = PathBuf::from(s);
            let dir = f.parent().unwrap_or(std::path::Path::new("."));
            return Some(if p.is_relative() { dir.join(p) } else { p });
        }
    }
    Some(PathBuf::from(ikehub::config::defaults::CONTROL_SOCKET))
}

fn call(args: &ControlArgs, req: &Request) -> Result<serde_json::Value, String> {
    let socket = control_socket(args)?;
    control::client::call(&socket, req, Duration::from_secs(30))
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn show(what: ShowWhat) -> Result<(), String> {
    match what {
        ShowWhat::Sa { control, json } => {
            let body = call(&control, &Request::ShowSa)?;
            if json {
                print_json(&body);
            } else {
                let rows: Vec<SaStatus> = serde_json::from_value(body)
                    .map_err(|e| format!("unreadable SA table: {e}"))?;
                print!("{}", control::show::sa_table(&rows));
            }
        }
        ShowWhat::Isakmp { control, json } => {
            let body = call(&control, &Request::ShowIsakmp)?;
            if json {
                print_json(&body);
            } else {
                print!("{}", control::show::isakmp_table(&body));
            }
        }
        ShowWhat::Counters { control, json } => {
            let body = call(&control, &Request::ShowCounters)?;
            if json {
                print_json(&body);
            } else {
                print!("{}", control::show::counters_table(&body));
            }
        }
        ShowWhat::Events {
            control,
            follow,
            last,
        } => {
            let req = Request::ShowEvents { last, follow };
            if follow {
                let socket = control_socket(&control)?;
                control::client::follow(&socket, &req, Duration::from_secs(30), |line| {
                    println!("{line}");
                })?;
            } else {
                let body = call(&control, &req)?;
                for ev in body.as_array().into_iter().flatten() {
                    println!("{}", serde_json::to_string(ev).unwrap_or_default());
                }
            }
        }
        ShowWhat::Peers { control, json } => {
            let body = call(&control, &Request::ShowPeers)?;
            if json {
                print_json(&body);
            } else {
                print!("{}", control::show::peers_table(&body));
            }
        }
    }
    Ok(())
}

fn check(path: &std::path::Path) -> ExitCode {
    match ikehub::config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", ikehub::config::summary(&loaded));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("{} problem(s) found; nothing was changed", problems.len());
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => return check(&config.config),
        Command::Run {
            config,
            esp_key_log,
        } => {
            init_logging(cli.log_format, "info");
            crypto_probe::tune();
            return daemon::run(&config.config, esp_key_log.as_deref());
        }
        Command::Show { what } => show(what),
        Command::Reload { control } => call(&control, &Request::Reload).map(|body| {
            print!("{}", control::show::text_body(&body));
        }),
        Command::Initiate {
            policy,
            peer,
            control,
        } => call(&control, &Request::Initiate { policy, peer }).map(|body| {
            print!("{}", control::show::text_body(&body));
        }),
        Command::Terminate {
            policy,
            peer,
            control,
        } => call(&control, &Request::Terminate { policy, peer }).map(|body| {
            print!("{}", control::show::text_body(&body));
        }),
        Command::InjectFault { peer, control } => call(&control, &Request::InjectFault { peer })
            .map(|body| {
                print!("{}", control::show::text_body(&body));
            }),
        Command::Demo {
            spokes,
            seconds,
            ike_workers,
            ipv6,
        } => {
            // Thousands of IKE sessions log every event at info: the demo shows warnings only,
            // its progress lines and summary say the rest.
            init_logging(cli.log_format, "warn");
            crypto_probe::tune();
            return demo::run(spokes, seconds, ike_workers, ipv6);
        }
        Command::Bench { json, seconds } => {
            crypto_probe::tune();
            return bench::run(json, seconds);
        }
        Command::Loadgen(args) => {
            // Thousands of sessions: warnings only; progress and the report say the rest.
            init_logging(cli.log_format, "warn");
            return loadgen::run(&args);
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ikehub", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out } => man::write(&out)
            .map(|pages| {
                for p in pages {
                    println!("{}", p.display());
                }
            })
            .map_err(|e| format!("cannot write the manual pages into {}: {e}", out.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ikehub: {msg}");
            ExitCode::from(1)
        }
    }
}
