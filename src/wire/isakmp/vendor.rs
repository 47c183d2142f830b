//! Vendor IDs that change what we speak: NAT traversal (RFC 3947 and its drafts) and dead
//! peer detection (RFC 3706). The bytes are MD5 hashes of the names, as listed by strongSwan
//! (`src/libcharon/sa/ikev1/tasks/isakmp_vendor.c`) and the RFCs.

/// RFC 3947 NAT-T: MD5("RFC 3947").
pub const NAT_T_RFC3947: [u8; 16] = [
    0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f,
];
/// draft-ietf-ipsec-nat-t-ike-02.
pub const NAT_T_DRAFT_02: [u8; 16] = [
    0xcd, 0x60, 0x46, 0x43, 0x35, 0xdf, 0x21, 0xf8, 0x7c, 0xfd, 0xb2, 0xfc, 0x68, 0xb6, 0xa4, 0x48,
];
/// draft-ietf-ipsec-nat-t-ike-02 with a trailing newline in the hashed name ("-02\n"), the
/// one old peers actually send.
pub const NAT_T_DRAFT_02_N: [u8; 16] = [
    0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e, 0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f,
];
/// draft-ietf-ipsec-nat-t-ike-03.
pub const NAT_T_DRAFT_03: [u8; 16] = [
    0x7d, 0x94, 0x19, 0xa6, 0x53, 0x10, 0xca, 0x6f, 0x2c, 0x17, 0x9d, 0x92, 0x15, 0x52, 0x9d, 0x56,
];
/// RFC 3706 dead peer detection, version 1.0 (the last two bytes are the version).
pub const DPD: [u8; 16] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00,
];

/// A vendor ID that we act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KnownVendorId {
    /// RFC 3947: NAT-D type 20, NAT-OA type 21, encapsulation modes 3/4.
    NatTRfc3947,
    /// draft-ietf-ipsec-nat-t-ike-03: NAT-D 130, NAT-OA 131, modes 61443/61444.
    NatTDraft03,
    /// draft-ietf-ipsec-nat-t-ike-02 (either hash): as -03 on the wire.
    NatTDraft02,
    Dpd,
}

impl KnownVendorId {
    pub const ALL: [(KnownVendorId, &'static [u8]); 5] = [
        (KnownVendorId::NatTRfc3947, &NAT_T_RFC3947),
        (KnownVendorId::NatTDraft03, &NAT_T_DRAFT_03),
        (KnownVendorId::NatTDraft02, &NAT_T_DRAFT_02),
        (KnownVendorId::NatTDraft02, &NAT_T_DRAFT_02_N),
        (KnownVendorId::Dpd, &DPD),
    ];

    /// Recognises the exact bytes of a Vendor ID payload.
    pub fn recognise(vid: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, bytes)| *bytes == vid)
            .map(|(k, _)| *k)
    }

    /// Whether this is one of the NAT-T vendor IDs.
    pub fn is_nat_t(self) -> bool {
        !matches!(self, KnownVendorId::Dpd)
    }

    /// Whether the NAT-T variant uses the draft payload types and encapsulation modes.
    pub fn is_nat_t_draft(self) -> bool {
        matches!(
            self,
            KnownVendorId::NatTDraft02 | KnownVendorId::NatTDraft03
        )
    }
}
