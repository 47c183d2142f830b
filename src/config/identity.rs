//! Phase-1 identities of an `ipsec-policy-isakmp` (docs/profiles.md, `local-id` / `remote-id`):
//! `local-id`, the ID payload we send in main mode message 5/6, and `remote-id`, the IDs a peer
//! may claim (RFC 2407 §4.6.2: ID_IPV4_ADDR / ID_IPV6_ADDR, ID_FQDN, ID_USER_FQDN, ID_KEY_ID).

use std::fmt;

/// Longest name accepted in a profile (a DNS name is at most 253 characters, RFC 1035 §2.3.4).
pub const MAX_ID_LEN: usize = 255;

/// The identity we send (`local-id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum LocalId {
    /// The interface address (ID_IPV4_ADDR / ID_IPV6_ADDR).
    #[default]
    Address,
    Fqdn(String),
    UserFqdn(String),
    KeyId(String),
}

/// A name with at most one `*`, which stands for one or more characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdPattern {
    pub text: String,
}

impl IdPattern {
    /// Whether `value` matches. `fold_case`: compare ASCII case-insensitively (DNS names,
    /// RFC 4343).
    pub fn matches(&self, value: &[u8], fold_case: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self.text.split_once('*') {
            None => eq(self.text.as_bytes(), value),
            Some((head, tail)) => {
                let (h, t) = (head.as_bytes(), tail.as_bytes());
                value.len() > h.len() + t.len()
                    && eq(&value[..h.len()], h)
                    && eq(&value[value.len() - t.len()..], t)
            }
        }
    }
}

/// The identities a peer may claim (`remote-id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum RemoteId {
    /// ID_IPV4_ADDR / ID_IPV6_ADDR equal to the peer's address; any address when NAT-T found a
    /// NAT in front of the peer (it then sends its private address).
    #[default]
    Address,
    /// Whatever the peer sends (the pre-shared key still authenticates it).
    Any,
    Fqdn(IdPattern),
    UserFqdn(IdPattern),
    KeyId(IdPattern),
}

const FORMS: &str = "\"address\", \"fqdn:NAME\", \"user-fqdn:NAME\" or \"keyid:NAME\"";

/// `(kind, name)` of `kind:name`; the name checked for what every kind needs.
fn split(text: &str, wildcard: bool) -> Result<(&str, &str), String> {
    let Some((kind, name)) = text.split_once(':') else {
        return Err(format!("`{text}` is not {FORMS}"));
    };
    if name.is_empty() {
        return Err(format!("`{text}` names nothing after `{kind}:`"));
    }
    if name.len() > MAX_ID_LEN {
        return Err(format!(
            "`{kind}:` name is {} bytes long; at most {MAX_ID_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "`{text}`: {c:?} is not allowed (printable ASCII without spaces only)"
        ));
    }
    let stars = name.matches('*').count();
    if !wildcard && stars > 0 {
        return Err(format!(
            "`{text}`: local-id is the identity we send, it cannot hold a `*`"
        ));
    }
    if stars > 1 {
        return Err(format!("`{text}` has {stars} `*`; at most one wildcard"));
    }
    Ok((kind, name))
}

fn user_fqdn_ok(text: &str, name: &str, wildcard: bool) -> Result<(), String> {
    if name.contains('@') || (wildcard && name.contains('*')) {
        Ok(())
    } else {
        Err(format!("`{text}`: a user-fqdn is user@domain"))
    }
}

impl std::str::FromStr for LocalId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "address" {
            return Ok(Self::Address);
        }
        let (kind, name) = split(text, false)?;
        match kind {
            "fqdn" => Ok(Self::Fqdn(name.into())),
            "user-fqdn" => user_fqdn_ok(text, name, false).map(|()| Self::UserFqdn(name.into())),
            "keyid" => Ok(Self::KeyId(name.into())),
            _ => Err(format!("`{text}` is not {FORMS}")),
        }
    }
}

impl std::str::FromStr for RemoteId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "address" => return Ok(Self::Address),
            "any" => return Ok(Self::Any),
            _ => {}
        }
        let (kind, name) = split(text, true).map_err(|e| e.replace(FORMS, &remote_forms()))?;
        let p = IdPattern { text: name.into() };
        match kind {
            "fqdn" => Ok(Self::Fqdn(p)),
            "user-fqdn" => user_fqdn_ok(text, name, true).map(|()| Self::UserFqdn(p)),
            "keyid" => Ok(Self::KeyId(p)),
            _ => Err(format!("`{text}` is not {}", remote_forms())),
        }
    }
}

fn remote_forms() -> String {
    "\"address\", \"any\", \"fqdn:NAME\", \"user-fqdn:NAME\" or \"keyid:NAME\" (NAME may hold one \
     `*`)"
        .into()
}

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address => write!(f, "address"),
            Self::Fqdn(n) => write!(f, "fqdn:{n}"),
            Self::UserFqdn(n) => write!(f, "user-fqdn:{n}"),
            Self::KeyId(n) => write!(f, "keyid:{n}"),
        }
    }
}

impl fmt::Display for RemoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address => write!(f, "address"),
            Self::Any => write!(f, "any"),
            Self::Fqdn(p) => write!(f, "fqdn:{}", p.text),
            Self::UserFqdn(p) => write!(f, "user-fqdn:{}", p.text),
            Self::KeyId(p) => write!(f, "keyid:{}", p.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("address".parse::<LocalId>(), Ok(LocalId::Address));
        assert_eq!(
            "fqdn:hub.example.net".parse::<LocalId>(),
            Ok(LocalId::Fqdn("hub.example.net".into()))
        );
        assert_eq!(
            "user-fqdn:vpn@example.net".parse::<LocalId>(),
            Ok(LocalId::UserFqdn("vpn@example.net".into()))
        );
        assert_eq!(
            "keyid:hub-1".parse::<LocalId>(),
            Ok(LocalId::KeyId("hub-1".into()))
        );
        assert_eq!("any".parse::<RemoteId>(), Ok(RemoteId::Any));
        for t in [
            "address",
            "any",
            "fqdn:*.branches.example.net",
            "user-fqdn:*@example.net",
            "keyid:branch-*",
        ] {
            assert_eq!(t.parse::<RemoteId>().map(|r| r.to_string()), Ok(t.into()));
        }
    }

    #[test]
    fn refuses_what_cannot_be_an_identity() {
        for bad in [
            "any",
            "fqdn:",
            "fqdn:*.example.net",
            "dns:x",
            "hub.example.net",
            "user-fqdn:nobody",
            "fqdn:a b",
        ] {
            assert!(bad.parse::<LocalId>().is_err(), "local-id {bad}");
        }
        for bad in ["fqdn:*.*.example.net", "ip:1.2.3.4", "fqdn:"] {
            assert!(bad.parse::<RemoteId>().is_err(), "remote-id {bad}");
        }
        let long = format!("fqdn:{}", "a".repeat(MAX_ID_LEN + 1));
        assert!(long.parse::<RemoteId>().is_err());
    }

    #[test]
    fn one_wildcard_matches_one_or_more_characters() {
        let p = IdPattern {
            text: "*.branches.example.net".into(),
        };
        assert!(p.matches(b"spoke1.branches.example.net", true));
        assert!(p.matches(b"Spoke1.Branches.EXAMPLE.net", true));
        assert!(!p.matches(b"Spoke1.Branches.EXAMPLE.net", false));
        assert!(!p.matches(b".branches.example.net", true), "empty wildcard");
        assert!(!p.matches(b"spoke1.branches.example.net.evil", true));
        assert!(!p.matches(b"spoke1.example.net", true));
        let k = IdPattern {
            text: "branch-*".into(),
        };
        assert!(k.matches(b"branch-7", false));
        assert!(!k.matches(b"branch-", false));
        assert!(!k.matches(b"xbranch-7", false));
        let exact = IdPattern {
            text: "hub.example.net".into(),
        };
        assert!(exact.matches(b"hub.example.net", true));
        assert!(!exact.matches(b"hub.example.net.", true));
    }
}
