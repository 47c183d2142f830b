//! What one `IkeSession` holds, part by part, for the per-tunnel memory measurement
//! (`benches/tunnel_memory.rs`, docs/design.md "Per-tunnel memory budget"). The bench runs
//! under a counting allocator, takes the session apart with [`IkeSession::into_parts`] and
//! drops the parts one at a time: every figure of the budget is a measured allocator delta, not
//! an estimate from field types.

use std::any::Any;
use std::mem::size_of;

use super::events::ChildSaInfo;
use super::isakmp_sa::IsakmpSa;
use super::main_mode::MainMode;
use super::quick_mode::QuickMode;
use super::session::{Child, IkeSession};

/// One part of a session, owned.
pub struct Part {
    pub name: &'static str,
    pub value: Box<dyn Any>,
    /// The blocks the split itself allocated (requested sizes, 0 = none): the box, and the
    /// vector that regroups one field of several records. The bench subtracts them from what
    /// dropping `value` frees.
    pub scaffold: [usize; 2],
}

fn part<T: 'static>(name: &'static str, v: T) -> Part {
    Part {
        name,
        scaffold: [size_of::<T>(), 0],
        value: Box::new(v),
    }
}

/// One field of each record of a vector, regrouped (`collect` allocates exactly `len` slots).
fn regrouped<T: 'static>(name: &'static str, v: Vec<T>) -> Part {
    Part {
        name,
        scaffold: [size_of::<Vec<T>>(), v.capacity() * size_of::<T>()],
        value: Box::new(v),
    }
}

/// The records' own slots: an emptied vector that keeps its capacity.
fn slots<T: 'static>(name: &'static str, v: Vec<T>) -> Part {
    debug_assert!(v.is_empty());
    part(name, v)
}

/// The records of `v` in a vector of their own (exactly `len` slots); `v` keeps its buffer,
/// empty, so that its slots are measured apart.
fn moved_out<T>(v: &mut Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    out.append(v);
    out
}

/// The inline sizes of the session's records (bytes each, heap excluded).
pub fn inline_sizes() -> Vec<(&'static str, usize)> {
    vec![
        ("IkeSession", size_of::<IkeSession>()),
        ("MainMode", size_of::<MainMode>()),
        ("IsakmpSa", size_of::<IsakmpSa>()),
        ("QuickMode", size_of::<QuickMode>()),
        ("Child", size_of::<Child>()),
        ("ChildSaInfo", size_of::<ChildSaInfo>()),
        (
            "esp::SecurityAssociation",
            size_of::<crate::esp::SecurityAssociation>(),
        ),
        ("  crypto::EspCipher", size_of::<crate::crypto::EspCipher>()),
        ("  crypto::Integrity", size_of::<crate::crypto::Integrity>()),
        ("  crypto::EspAead", size_of::<crate::crypto::EspAead>()),
    ]
}

impl IkeSession {
    /// The session taken apart (see the module documentation). Only the memory bench calls it.
    #[doc(hidden)]
    pub fn into_parts(self) -> Vec<Part> {
        let IkeSession {
            env,
            path: _,
            lifecycle: _,
            origin: _,
            mut main_modes,
            mut isakmp,
            mut quick_modes,
            mut children,
            pending,
            replies,
            dpd,
            keepalive_at: _,
            transmits,
            events,
        } = self;
        let mm = moved_out(&mut main_modes);
        let qm = moved_out(&mut quick_modes);
        let sas = moved_out(&mut isakmp);
        let (mut keys, mut ivs, mut ids, mut peer_ids) = (vec![], vec![], vec![], vec![]);
        for sa in sas {
            keys.push(sa.keys);
            ivs.push(sa.iv);
            ids.push(sa.used_ids);
            peer_ids.push(sa.peer_id);
        }
        let nis: Vec<Box<[u8]>> = children.drain(..).map(|c| c.ni).collect();
        vec![
            part("policy (PeerConfig)", env.config),
            part("session RNG", env.rng),
            part("SPI allocator (shared)", env.spis),
            regrouped("main modes in progress", mm),
            slots("main-mode slots", main_modes),
            regrouped("ISAKMP SA: key schedule", keys),
            regrouped("ISAKMP SA: IV chain and cipher", ivs),
            regrouped("ISAKMP SA: message IDs", ids),
            regrouped("ISAKMP SA: peer ID", peer_ids),
            slots("ISAKMP SA slots", isakmp),
            regrouped("quick modes in progress", qm),
            slots("quick-mode slots", quick_modes),
            regrouped("child: Ni", nis),
            slots("child slots", children),
            part("pending child requests", pending),
            part("reply cache", replies),
            part("DPD state", dpd),
            part("transmit queue", transmits),
            part("event queue", events),
        ]
    }
}
