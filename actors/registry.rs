//! The Registry: owns the current validated profile snapshot, installs the SAs and policies of
//! manual policies into the shards, answers the control socket, and applies reloads as a diff
//! (untouched policies keep their SAs and lose no packet).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use ikehub::config::{self, IsakmpPolicy, ManualPolicy, PeerSpec, Profiles};
use ikehub::esp::{Direction, SecurityAssociation, manual};
use tracing::{error, info, warn};

use crate::control::protocol::{Request, Response, SaStatus};
use crate::control::server::Control;
use crate::ike::router::{self, IkeRouter, ListPeers, TerminateAll, UpdateProfiles};
use crate::routes::Routes;
use crate::shard::{self, EspShard, InstallPolicy, RemovePolicy, Report, SaKind, SaPair};

pub struct Registry {
    profiles: Arc<Profiles>,
    config_path: PathBuf,
    shards: Vec<Addr<EspShard>>,
    /// The SAs of each installed manual policy, by the handles they were installed under.
    installed: BTreeMap<String, SaPair>,
    routes: Routes,
    ike: Option<Addr<IkeRouter>>,
    /// Reloads applied and refused since start (`show counters`, docs/metrics.md).
    reloads: ReloadCounters,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ReloadCounters {
    pub ok: u64,
    pub refused: u64,
}

/// SIGTERM/SIGINT: IKE peers send their deletes; answered once they were asked to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// SIGHUP.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadSignal;

impl Registry {
    pub fn new(
        profiles: Arc<Profiles>,
        config_path: PathBuf,
        shards: Vec<Addr<EspShard>>,
        routes: Routes,
        ike: Option<Addr<IkeRouter>>,
    ) -> Self {
        Registry {
            profiles,
            config_path,
            shards,
            installed: BTreeMap::new(),
            routes,
            ike,
            reloads: ReloadCounters::default(),
        }
    }

    fn install_manual(&mut self, policy: &ManualPolicy) -> Result<(), String> {
        let Some(iface) = self.profiles.interfaces.get(&policy.interface) else {
            return Err(format!("interface {} is not defined", policy.interface));
        };
        let now = Instant::now();
        let build = |dir| {
            SecurityAssociation::new(manual::sa_params(policy, iface, dir), now)
                .map_err(|e| format!("ipsec-policy-manual.{}: {e}", policy.name))
        };
        let inbound = build(Direction::Inbound)?;
        let outbound = build(Direction::Outbound)?;
        crate::keylog::record_pair(
            &manual::sa_params(policy, iface, Direction::Inbound),
            &manual::sa_params(policy, iface, Direction::Outbound),
        );
        // Two manual policies may name the same outbound SPI (each peer chose its own): the
        // SAs are told apart by their handles, and each policy's SPD entries point at its own.
        let pair = SaPair::issue(
            ikehub::ike::SpiPair {
                inbound: inbound.outer_spi(),
                outbound: outbound.outer_spi(),
            },
            self.shards.len(),
        );
        let name: Arc<str> = Arc::from(policy.name.as_str());
        shard::install_pair(
            &self.shards,
            &pair,
            &name,
            SaKind::Manual,
            inbound,
            outbound,
        );
        for s in &self.shards {
            s.do_send(InstallPolicy {
                policy: name.clone(),
                protected_networks: policy.protected_networks.clone(),
                outbound: Some(pair.outbound),
            });
        }
        for pn in &policy.protected_networks {
            if let Err(e) = self.routes.add(&policy.name, &pn.remote) {
                warn!(policy = %policy.name, "route to {}: {e}", pn.remote);
            }
        }
        self.installed.insert(policy.name.clone(), pair);
        info!(
            policy = %policy.name,
            peer = %policy.peer,
            "manual SAs installed: inbound SPI {}, outbound SPI {}",
            pair.spis.inbound,
            pair.spis.outbound
        );
        Ok(())
    }

    /// An IKE policy's place in the SPD before any SA exists (its cleartext then triggers an
    /// Acquire), and routes to its remote networks. Template policies get their SPD entries
    /// per spoke, when each spoke's SAs come up.
    fn install_isakmp(&mut self, policy: &IsakmpPolicy) {
        if matches!(policy.peer, PeerSpec::Address(_)) {
            let name: Arc<str> = Arc::from(policy.name.as_str());
            for s in &self.shards {
                s.do_send(InstallPolicy {
                    policy: name.clone(),
                    protected_networks: policy.protected_networks.clone(),
                    outbound: None,
                });
            }
        }
        for pn in &policy.protected_networks {
            if let Err(e) = self.routes.add(&policy.name, &pn.remote) {
                warn!(policy = %policy.name, "route to {}: {e}", pn.remote);
            }
        }
    }

    /// Takes a removed or changed IKE policy out of the SPD and its routes out of the kernel
    /// (its peers are told to delete their SAs by the router).
    fn remove_isakmp(&mut self, name: &str) {
        let policy: Arc<str> = Arc::from(name);
        for s in &self.shards {
            s.do_send(RemovePolicy {
                policy: policy.clone(),
            });
        }
        self.routes.remove_policy(name);
    }

    fn remove_manual(&mut self, name: &str) {
        let Some(pair) = self.installed.remove(name) else {
            return;
        };
        let policy: Arc<str> = Arc::from(name);
        for s in &self.shards {
            s.do_send(RemovePolicy {
                policy: policy.clone(),
            });
        }
        shard::remove_pair(&self.shards, &pair, &policy);
        self.routes.remove_policy(name);
        info!(policy = %name, "manual SAs removed");
    }

    /// Installs every manual policy of the current snapshot; notes IKE policies.
    pub fn install_all(&mut self) {
        let policies: Vec<Arc<ManualPolicy>> =
            self.profiles.manual_policies.values().cloned().collect();
        for p in policies {
            if let Err(e) = self.install_manual(&p) {
                error!(policy = %p.name, "cannot install: {e}");
            }
        }
        let ike: Vec<Arc<IsakmpPolicy>> = self.profiles.isakmp_policies.values().cloned().collect();
        for p in ike {
            self.install_isakmp(&p);
        }
    }

    fn reload(&mut self) -> Result<String, String> {
        // The hub's part of a reload (issue 10: "<= 100 ms of hub work"): read, validate and
        // diff the profiles, apply the diff here; the IKE router applies its share after.
        let started = std::time::Instant::now();
        let r = self.apply_reload();
        match r {
            Ok(mut out) => {
                self.reloads.ok += 1;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                info!("reload took {ms:.1} ms");
                out.push_str(&format!("reload took {ms:.1} ms\n"));
                Ok(out)
            }
            Err(e) => {
                self.reloads.refused += 1;
                Err(e)
            }
        }
    }

    fn apply_reload(&mut self) -> Result<String, String> {
        let loaded = config::load(&self.config_path).map_err(|problems| {
            let mut msg = String::from("the new profiles were refused; the running ones stay:\n");
            for p in problems {
                msg.push_str(&format!("{p}\n"));
            }
            msg
        })?;
        for w in &loaded.warnings {
            warn!("{w}");
        }
        let new = Arc::new(loaded.profiles);
        let diff = config::diff(&self.profiles, &new);
        self.profiles = new.clone();
        for name in diff.manual.removed.iter().chain(&diff.manual.changed) {
            self.remove_manual(name);
        }
        let mut problems = Vec::new();
        for name in diff.manual.added.iter().chain(&diff.manual.changed) {
            if let Some(p) = new.manual_policies.get(name).cloned()
                && let Err(e) = self.install_manual(&p)
            {
                problems.push(e);
            }
        }
        let ike_stop: Vec<String> = diff
            .isakmp
            .removed
            .iter()
            .chain(&diff.isakmp.changed)
            .cloned()
            .collect();
        for name in &ike_stop {
            self.remove_isakmp(name);
        }
        let ike_start: Vec<String> = diff
            .isakmp
            .added
            .iter()
            .chain(&diff.isakmp.changed)
            .cloned()
            .collect();
        match &self.ike {
            Some(router) => router.do_send(UpdateProfiles {
                profiles: new.clone(),
                stop: ike_stop,
            }),
            None if !ike_start.is_empty() => problems.push(
                "IKE policies were added to a daemon started without any: restart ikehub to \
                 open the IKE sockets"
                    .to_string(),
            ),
            None => {}
        }
        for name in &ike_start {
            if let Some(p) = new.isakmp_policies.get(name).cloned() {
                self.install_isakmp(&p);
            }
        }
        info!("reload applied:\n{diff}");
        let mut out = diff.to_string();
        for p in problems {
            out.push_str(&format!("error: {p}\n"));
        }
        Ok(out)
    }

    fn show_peers(&self) -> serde_json::Value {
        let mut rows = Vec::new();
        for p in self.profiles.manual_policies.values() {
            let up = self.installed.contains_key(&p.name);
            rows.push(serde_json::json!({
                "policy": p.name,
                "type": "MANUAL",
                "peer": p.peer.to_string(),
                "state": if up { "installed" } else { "failed" },
                "child_sas": if up { 2 } else { 0 },
                "last_error": null,
            }));
        }
        serde_json::Value::Array(rows)
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.install_all();
    }
}

enum Kind {
    Initiate,
    Other,
}

impl Handler<Shutdown> for Registry {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let ike = self.ike.clone();
        Box::pin(async move {
            if let Some(r) = ike {
                let _ = r.send(TerminateAll).await;
                // Give the peer actors a moment to put their deletes on the wire.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        })
    }
}

impl Handler<ReloadSignal> for Registry {
    type Result = ();
    fn handle(&mut self, _: ReloadSignal, _: &mut Context<Self>) {
        match self.reload() {
            Ok(_) => {}
            Err(e) => error!("SIGHUP reload refused: {e}"),
        }
    }
}

impl Handler<Control> for Registry {
    type Result = ResponseFuture<Response>;

    fn handle(&mut self, msg: Control, _: &mut Context<Self>) -> Self::Result {
        let msg_kind = match &msg.0 {
            Request::Initiate { .. } => Kind::Initiate,
            _ => Kind::Other,
        };
        let immediate = |r: Response| -> ResponseFuture<Response> { Box::pin(async move { r }) };
        match msg.0 {
            Request::ShowSa => {
                let shards = self.shards.clone();
                Box::pin(async move {
                    let mut rows: Vec<SaStatus> = Vec::new();
                    for s in shards {
                        if let Ok(report) = s.send(Report).await {
                            rows.extend(report.sas);
                        }
                    }
                    rows.sort_by(|a, b| {
                        (&a.policy, &a.direction, a.esp_spi, a.ah_spi).cmp(&(
                            &b.policy,
                            &b.direction,
                            b.esp_spi,
                            b.ah_spi,
                        ))
                    });
                    match serde_json::to_value(rows) {
                        Ok(body) => Response::Ok { body },
                        Err(e) => Response::Error {
                            message: e.to_string(),
                        },
                    }
                })
            }
            Request::ShowCounters => {
                let shards = self.shards.clone();
                let ike = self.ike.clone();
                let reloads = self.reloads;
                Box::pin(async move {
                    let mut per_shard = Vec::new();
                    for (i, s) in shards.iter().enumerate() {
                        if let Ok(report) = s.send(Report).await {
                            per_shard.push(serde_json::json!({
                                "shard": i,
                                "counters": report.counters,
                            }));
                        }
                    }
                    // The IKE router's refusals and evictions, as one more element.
                    if let Some(ike) = ike
                        && let Ok(c) = ike.send(router::GetCounters).await
                    {
                        per_shard.push(serde_json::json!({ "ike": c }));
                    }
                    per_shard.push(serde_json::json!({ "reloads": reloads }));
                    Response::Ok {
                        body: serde_json::Value::Array(per_shard),
                    }
                })
            }
            Request::InjectFault { peer } => {
                let (Some(ike), Ok(peer)) = (self.ike.clone(), peer.parse()) else {
                    return immediate(Response::Error {
                        message: "no IKE, or not an address".into(),
                    });
                };
                Box::pin(async move {
                    match ike.send(router::InjectFault { peer }).await {
                        Ok(Ok(text)) => Response::Ok {
                            body: serde_json::Value::String(text),
                        },
                        Ok(Err(message)) => Response::Error { message },
                        Err(e) => Response::Error {
                            message: e.to_string(),
                        },
                    }
                })
            }
            Request::ShowIsakmp => {
                let ike = self.ike.clone();
                Box::pin(async move {
                    let rows = match ike {
                        Some(r) => r.send(ListPeers).await.unwrap_or_default(),
                        None => Vec::new(),
                    };
                    let rows: Vec<_> = rows.into_iter().filter(|r| r.transform.is_some()).collect();
                    Response::Ok {
                        body: serde_json::to_value(rows).unwrap_or_default(),
                    }
                })
            }
            Request::ShowPeers => {
                let ike = self.ike.clone();
                let mut manual = self.show_peers();
                Box::pin(async move {
                    if let Some(r) = ike
                        && let Ok(rows) = r.send(ListPeers).await
                        && let serde_json::Value::Array(list) = &mut manual
                    {
                        for row in rows {
                            list.push(serde_json::json!({
                                "policy": row.policy,
                                "type": "ISAKMP",
                                "peer": row.peer,
                                "state": row.state,
                                "child_sas": row.child_sas,
                                "last_error": row.last_error,
                                "identity": row.identity,
                            }));
                        }
                    }
                    Response::Ok { body: manual }
                })
            }
            Request::Reload => immediate(match self.reload() {
                Ok(text) => Response::Ok {
                    body: serde_json::Value::String(text),
                },
                Err(message) => Response::Error { message },
            }),
            Request::Initiate { policy, peer } | Request::Terminate { policy, peer }
                if self.profiles.isakmp_policies.contains_key(&policy) =>
            {
                let up = matches!(msg_kind, Kind::Initiate);
                let Some(ike) = self.ike.clone() else {
                    return immediate(Response::Error {
                        message: "IKE is not running".into(),
                    });
                };
                let peer = match peer.map(|p| p.parse::<std::net::IpAddr>()) {
                    Some(Ok(p)) => Some(p),
                    Some(Err(e)) => {
                        return immediate(Response::Error {
                            message: format!("--peer: {e}"),
                        });
                    }
                    None => None,
                };
                Box::pin(async move {
                    match ike.send(router::Command { policy, peer, up }).await {
                        Ok(Ok(text)) => Response::Ok {
                            body: serde_json::Value::String(text),
                        },
                        Ok(Err(message)) => Response::Error { message },
                        Err(e) => Response::Error {
                            message: e.to_string(),
                        },
                    }
                })
            }
            // The control socket answers these itself from the event ring (actors/events.rs).
            Request::ShowEvents { .. } => immediate(Response::Error {
                message: "show events is served by the control socket".into(),
            }),
            Request::Initiate { policy, .. } | Request::Terminate { policy, .. } => {
                let message = if self.profiles.manual_policies.contains_key(&policy) {
                    format!(
                        "{policy} is manually keyed: its SAs are installed for as long as the \
                         profile names them"
                    )
                } else {
                    format!("no policy named {policy}")
                };
                immediate(Response::Error { message })
            }
        }
    }
}
