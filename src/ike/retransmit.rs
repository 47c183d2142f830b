//! Reliability of an exchange over UDP (RFC 2408 §5: the sender of a request retransmits; the
//! receiver of a retransmitted request answers with the reply it already sent, without computing
//! it again, which for main mode would mean a second Diffie-Hellman and a different answer).

use std::time::{Duration, Instant};

use crate::config::HashAlgorithm;

use super::config::RetransmitConfig;
use super::prf::hash;

/// A request we wait an answer for.
#[derive(Clone, Debug)]
pub(crate) struct Retransmit {
    /// The ISAKMP message as first sent (without the non-ESP marker).
    pub message: Vec<u8>,
    /// Transmissions so far.
    pub sent: u32,
    /// When the current wait ends.
    pub deadline: Instant,
}

/// What the timer says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RetransmitAction {
    /// Not yet.
    Wait,
    /// Send `message` again.
    Resend,
    /// `max_tries` transmissions went unanswered.
    GiveUp,
}

impl Retransmit {
    /// Starts the timer after the first transmission at `now`.
    pub fn new(message: Vec<u8>, now: Instant, cfg: &RetransmitConfig) -> Self {
        Self {
            message,
            sent: 1,
            deadline: now + cfg.wait(0),
        }
    }

    /// Called when the timer may have fired. The new deadline counts from the old one, so the
    /// schedule does not drift with late timer callbacks.
    pub fn on_timeout(&mut self, now: Instant, cfg: &RetransmitConfig) -> RetransmitAction {
        if now < self.deadline {
            return RetransmitAction::Wait;
        }
        if self.sent >= cfg.max_tries.max(1) {
            return RetransmitAction::GiveUp;
        }
        self.deadline += cfg.wait(self.sent);
        self.sent += 1;
        RetransmitAction::Resend
    }
}

/// The exchange a cached request belongs to: the initiator cookie names the phase-1 exchange
/// (message ID 0), the message ID a quick mode or informational under it (RFC 2408 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExchangeTag {
    pub cky_i: [u8; 8],
    pub msg_id: u32,
}

impl ExchangeTag {
    /// The tag of an ISAKMP message (the header is read only; an unreadable one gets zeros).
    pub fn of(message: &[u8]) -> Self {
        match crate::wire::isakmp::peek_header(message) {
            Ok(h) => Self {
                cky_i: h.initiator_cookie(),
                msg_id: h.message_id(),
            },
            Err(_) => Self {
                cky_i: [0; 8],
                msg_id: 0,
            },
        }
    }

    /// The phase-1 exchange of ISAKMP SA `cky_i`.
    pub fn phase1(cky_i: [u8; 8]) -> Self {
        Self { cky_i, msg_id: 0 }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    digest: [u8; 32],
    tag: ExchangeTag,
    reply: Option<Box<[u8]>>,
    /// Forgotten at this time even if nothing shows the exchange is over.
    until: Option<Instant>,
}

/// How long an answer nothing acknowledges stays answerable (the initiator's quick-mode
/// message 3): as long as a peer may go on retransmitting the request. Ours gives up after 31
/// s; strongSwan's default schedule (5 retransmissions, 4 s growing by 1.8x) after 165 s.
pub(crate) const UNACKNOWLEDGED_REPLY_KEPT: Duration = Duration::from_secs(180);

/// The last requests the session answered and the answers: a byte-identical request gets the
/// same answer again (RFC 2408 §5 retransmission), before any decryption, so that a duplicate
/// never advances the IV chain or runs the key exchange twice.
///
/// A request is remembered by its SHA-256 digest, not its bytes: a main-mode message 1 comes
/// from an unauthenticated peer and may be 64 KB, and the cache holds [`Self::KEEP`] of them
/// per session. The answers are ours (a few hundred bytes each).
///
/// Only the last message of an exchange can still be asked for: once the peer sends the next
/// request of an exchange, or a message that shows the exchange is over, the session
/// [`forgets`](Self::forget) the exchange's earlier entries, so a responder's established
/// tunnel keeps nothing here (docs/design.md "Per-tunnel memory budget"). The exception is
/// the quick-mode message 3 we send as initiator: nothing tells us the peer got it, so each
/// stays for [`UNACKNOWLEDGED_REPLY_KEPT`] ([`Self::store_until`]), or until [`Self::KEEP`]
/// newer entries push it out if that comes first.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplyCache {
    entries: Vec<Entry>,
}

fn digest(request: &[u8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    d.copy_from_slice(hash(HashAlgorithm::Sha256, &[request]).as_bytes());
    d
}

impl ReplyCache {
    const KEEP: usize = 16;

    /// Remembers that `request` was answered with `reply` (`None`: handled, no answer).
    pub fn store(&mut self, request: &[u8], reply: Option<Vec<u8>>) {
        self.push(request, reply, None);
    }

    /// Like [`Self::store`], for an answer whose receipt nothing will show: it is forgotten at
    /// `until` ([`Self::expire`]) at the latest.
    pub fn store_until(&mut self, request: &[u8], reply: Vec<u8>, until: Instant) {
        self.push(request, Some(reply), Some(until));
    }

    fn push(&mut self, request: &[u8], reply: Option<Vec<u8>>, until: Option<Instant>) {
        if self.entries.len() >= Self::KEEP {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            digest: digest(request),
            tag: ExchangeTag::of(request),
            reply: reply.map(Vec::into_boxed_slice),
            until,
        });
    }

    /// When the next entry stored with a time limit is due (for the session's timer).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.until).min()
    }

    /// Forgets the entries whose time limit has passed.
    pub fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| e.until.is_none_or(|u| now < u));
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }

    /// `Some(answer)` when `request` was seen before (the answer may be "none").
    pub fn lookup(&self, request: &[u8]) -> Option<Option<&[u8]>> {
        let d = digest(request);
        self.entries
            .iter()
            .rev()
            .find(|e| e.digest == d)
            .map(|e| e.reply.as_deref())
    }

    /// The exchange `tag` is over, or moved past the requests stored for it: they cannot be
    /// retransmitted any more (the peer has our answer), so their entries go.
    pub fn forget(&mut self, tag: ExchangeTag) {
        self.entries.retain(|e| e.tag != tag);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held (digests and answers): what the cache costs, whatever the peer sent.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.digest.len() + e.reply.as_ref().map_or(0, |r| r.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn schedule_is_exact() {
        let cfg = RetransmitConfig::default();
        let t0 = Instant::now();
        let mut r = Retransmit::new(vec![1], t0, &cfg);
        let mut resends = Vec::new();
        let mut t;
        loop {
            t = r.deadline;
            match r.on_timeout(t, &cfg) {
                RetransmitAction::Resend => resends.push((t - t0).as_secs()),
                RetransmitAction::GiveUp => break,
                RetransmitAction::Wait => unreachable!(),
            }
        }
        assert_eq!(resends, [1, 3, 7, 15]);
        assert_eq!(t - t0, Duration::from_secs(31));
    }

    #[test]
    fn an_unacknowledged_reply_is_forgotten_at_its_time_limit() {
        let t0 = Instant::now();
        let mut c = ReplyCache::default();
        c.store(b"req1", Some(b"rep1".to_vec()));
        c.store_until(b"req2", b"rep2".to_vec(), t0 + Duration::from_secs(5));
        c.store_until(b"req3", b"rep3".to_vec(), t0 + Duration::from_secs(3));
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(3)));
        c.expire(t0 + Duration::from_secs(3));
        assert_eq!(c.lookup(b"req3"), None);
        assert_eq!(c.lookup(b"req2"), Some(Some(&b"rep2"[..])));
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(5)));
        c.expire(t0 + Duration::from_secs(60));
        assert_eq!(c.lookup(b"req2"), None);
        assert_eq!(
            c.lookup(b"req1"),
            Some(Some(&b"rep1"[..])),
            "no limit, kept"
        );
        assert_eq!(c.next_expiry(), None);
    }

    #[test]
    fn reply_cache_answers_duplicates() {
        let mut c = ReplyCache::default();
        c.store(b"req1", Some(b"rep1".to_vec()));
        c.store(b"req2", None);
        assert_eq!(c.lookup(b"req1"), Some(Some(&b"rep1"[..])));
        assert_eq!(c.lookup(b"req2"), Some(None));
        assert_eq!(c.lookup(b"req3"), None);
    }

    /// Bounded reply cache: sixteen 64 KB requests cost their digests and our answers, not 1 MB.
    #[test]
    fn reply_cache_holds_digests_not_requests() {
        let mut c = ReplyCache::default();
        let big = |i: u8| vec![i; 65_000];
        for i in 0..40u8 {
            c.store(&big(i), Some(vec![i; 100]));
        }
        assert!(
            c.held_bytes() <= ReplyCache::KEEP * (32 + 100),
            "{}",
            c.held_bytes()
        );
        assert_eq!(c.lookup(&big(39)), Some(Some(&[39u8; 100][..])));
        assert_eq!(c.lookup(&big(24)), Some(Some(&[24u8; 100][..])));
        assert_eq!(c.lookup(&big(23)), None, "oldest evicted");
        let mut near = big(39);
        near[64_999] ^= 1;
        assert_eq!(c.lookup(&near), None);
    }
}
