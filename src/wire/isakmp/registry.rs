//! The IANA registries of ISAKMP (RFC 2408), the IPsec DOI (RFC 2407), IKE (RFC 2409) and their
//! extensions, as open newtypes: unknown values round-trip.

use super::macros::registry;

registry! {
    /// Exchange type (RFC 2408 §3.1, RFC 2409 §5.5 / §6.2).
    pub struct ExchangeType(u8) {
        NONE = 0 => "NONE",
        BASE = 1 => "Base",
        /// Main mode (RFC 2409 §5).
        IDENTITY_PROTECTION = 2 => "Identity Protection (Main Mode)",
        AUTHENTICATION_ONLY = 3 => "Authentication Only",
        AGGRESSIVE = 4 => "Aggressive",
        INFORMATIONAL = 5 => "Informational",
        /// ISAKMP configuration method (draft-ietf-ipsec-isakmp-mode-cfg), used by XAUTH peers.
        TRANSACTION = 6 => "Transaction (Mode Config)",
        QUICK_MODE = 32 => "Quick Mode",
        NEW_GROUP_MODE = 33 => "New Group Mode",
    }
}

impl ExchangeType {
    /// Main mode under its RFC 2409 name.
    pub const MAIN_MODE: Self = Self::IDENTITY_PROTECTION;
}

registry! {
    /// Payload type, the "next payload" of the header and of every generic payload header
    /// (RFC 2408 §3.1, RFC 3947 §3.2 and §5.2; the draft NAT-T numbers from the private range).
    pub struct PayloadType(u8) {
        NONE = 0 => "NONE",
        SA = 1 => "SA",
        PROPOSAL = 2 => "P",
        TRANSFORM = 3 => "T",
        KEY_EXCHANGE = 4 => "KE",
        IDENTIFICATION = 5 => "ID",
        CERTIFICATE = 6 => "CERT",
        CERTIFICATE_REQUEST = 7 => "CR",
        HASH = 8 => "HASH",
        SIGNATURE = 9 => "SIG",
        NONCE = 10 => "NONCE",
        NOTIFICATION = 11 => "N",
        DELETE = 12 => "D",
        VENDOR_ID = 13 => "VID",
        /// Mode-config attribute payload (draft-ietf-ipsec-isakmp-mode-cfg).
        ATTRIBUTE = 14 => "ATTR",
        NAT_D = 20 => "NAT-D",
        NAT_OA = 21 => "NAT-OA",
        /// NAT-D of draft-ietf-ipsec-nat-t-ike-02/03.
        NAT_D_DRAFT = 130 => "NAT-D (draft)",
        /// NAT-OA of draft-ietf-ipsec-nat-t-ike-02/03.
        NAT_OA_DRAFT = 131 => "NAT-OA (draft)",
    }
}

registry! {
    /// Notify message type (RFC 2408 §3.14.1 errors, RFC 2407 §4.6.3 status, RFC 3706 DPD).
    pub struct NotifyType(u16) {
        INVALID_PAYLOAD_TYPE = 1 => "INVALID-PAYLOAD-TYPE",
        DOI_NOT_SUPPORTED = 2 => "DOI-NOT-SUPPORTED",
        SITUATION_NOT_SUPPORTED = 3 => "SITUATION-NOT-SUPPORTED",
        INVALID_COOKIE = 4 => "INVALID-COOKIE",
        INVALID_MAJOR_VERSION = 5 => "INVALID-MAJOR-VERSION",
        INVALID_MINOR_VERSION = 6 => "INVALID-MINOR-VERSION",
        INVALID_EXCHANGE_TYPE = 7 => "INVALID-EXCHANGE-TYPE",
        INVALID_FLAGS = 8 => "INVALID-FLAGS",
        INVALID_MESSAGE_ID = 9 => "INVALID-MESSAGE-ID",
        INVALID_PROTOCOL_ID = 10 => "INVALID-PROTOCOL-ID",
        INVALID_SPI = 11 => "INVALID-SPI",
        INVALID_TRANSFORM_ID = 12 => "INVALID-TRANSFORM-ID",
        ATTRIBUTES_NOT_SUPPORTED = 13 => "ATTRIBUTES-NOT-SUPPORTED",
        NO_PROPOSAL_CHOSEN = 14 => "NO-PROPOSAL-CHOSEN",
        BAD_PROPOSAL_SYNTAX = 15 => "BAD-PROPOSAL-SYNTAX",
        PAYLOAD_MALFORMED = 16 => "PAYLOAD-MALFORMED",
        INVALID_KEY_INFORMATION = 17 => "INVALID-KEY-INFORMATION",
        INVALID_ID_INFORMATION = 18 => "INVALID-ID-INFORMATION",
        INVALID_CERT_ENCODING = 19 => "INVALID-CERT-ENCODING",
        INVALID_CERTIFICATE = 20 => "INVALID-CERTIFICATE",
        CERT_TYPE_UNSUPPORTED = 21 => "CERT-TYPE-UNSUPPORTED",
        INVALID_CERT_AUTHORITY = 22 => "INVALID-CERT-AUTHORITY",
        INVALID_HASH_INFORMATION = 23 => "INVALID-HASH-INFORMATION",
        AUTHENTICATION_FAILED = 24 => "AUTHENTICATION-FAILED",
        INVALID_SIGNATURE = 25 => "INVALID-SIGNATURE",
        ADDRESS_NOTIFICATION = 26 => "ADDRESS-NOTIFICATION",
        NOTIFY_SA_LIFETIME = 27 => "NOTIFY-SA-LIFETIME",
        CERTIFICATE_UNAVAILABLE = 28 => "CERTIFICATE-UNAVAILABLE",
        UNSUPPORTED_EXCHANGE_TYPE = 29 => "UNSUPPORTED-EXCHANGE-TYPE",
        UNEQUAL_PAYLOAD_LENGTHS = 30 => "UNEQUAL-PAYLOAD-LENGTHS",
        CONNECTED = 16384 => "CONNECTED",
        RESPONDER_LIFETIME = 24576 => "RESPONDER-LIFETIME",
        REPLAY_STATUS = 24577 => "REPLAY-STATUS",
        INITIAL_CONTACT = 24578 => "INITIAL-CONTACT",
        R_U_THERE = 36136 => "R-U-THERE",
        R_U_THERE_ACK = 36137 => "R-U-THERE-ACK",
    }
}

impl NotifyType {
    /// Error types are 1..=16383 (RFC 2408 §3.14.1); status types start at 16384.
    pub fn is_error(self) -> bool {
        (1..16384).contains(&self.0)
    }
}

registry! {
    /// Domain of interpretation (RFC 2408 §3.4, RFC 2407 §6).
    pub struct Doi(u32) {
        ISAKMP = 0 => "ISAKMP",
        IPSEC = 1 => "IPSEC",
    }
}

registry! {
    /// Security protocol identifier (RFC 2407 §4.4.1).
    pub struct ProtocolId(u8) {
        RESERVED = 0 => "RESERVED",
        ISAKMP = 1 => "PROTO_ISAKMP",
        IPSEC_AH = 2 => "PROTO_IPSEC_AH",
        IPSEC_ESP = 3 => "PROTO_IPSEC_ESP",
        IPCOMP = 4 => "PROTO_IPCOMP",
    }
}

registry! {
    /// Transform ID of a PROTO_ISAKMP proposal (RFC 2407 §4.4.2).
    pub struct IsakmpTransformId(u8) {
        KEY_IKE = 1 => "KEY_IKE",
    }
}

registry! {
    /// Transform ID of a PROTO_IPSEC_AH proposal (RFC 2407 §4.4.3, RFC 4868 §4).
    pub struct AhTransformId(u8) {
        MD5 = 2 => "AH_MD5",
        SHA = 3 => "AH_SHA",
        DES = 4 => "AH_DES",
        SHA2_256 = 5 => "AH_SHA2-256",
        SHA2_384 = 6 => "AH_SHA2-384",
        SHA2_512 = 7 => "AH_SHA2-512",
    }
}

registry! {
    /// Transform ID of a PROTO_IPSEC_ESP proposal (RFC 2407 §4.4.4, RFC 3602 for AES).
    pub struct EspTransformId(u8) {
        DES_IV64 = 1 => "ESP_DES_IV64",
        DES = 2 => "ESP_DES",
        TRIPLE_DES = 3 => "ESP_3DES",
        RC5 = 4 => "ESP_RC5",
        IDEA = 5 => "ESP_IDEA",
        CAST = 6 => "ESP_CAST",
        BLOWFISH = 7 => "ESP_BLOWFISH",
        TRIPLE_IDEA = 8 => "ESP_3IDEA",
        DES_IV32 = 9 => "ESP_DES_IV32",
        RC4 = 10 => "ESP_RC4",
        NULL = 11 => "ESP_NULL",
        AES = 12 => "ESP_AES",
        AES_GCM_8 = 18 => "ESP_AES_GCM_8",
        AES_GCM_12 = 19 => "ESP_AES_GCM_12",
        // RFC 4106 §8.1: AES-GCM with a 16-octet ICV; the Key Length attribute is required.
        AES_GCM_16 = 20 => "ESP_AES_GCM_16",
    }
}

registry! {
    /// Phase-1 (ISAKMP SA) attribute class (RFC 2409 Appendix A).
    pub struct Phase1Attr(u16) {
        ENCRYPTION_ALGORITHM = 1 => "Encryption Algorithm",
        HASH_ALGORITHM = 2 => "Hash Algorithm",
        AUTHENTICATION_METHOD = 3 => "Authentication Method",
        GROUP_DESCRIPTION = 4 => "Group Description",
        GROUP_TYPE = 5 => "Group Type",
        GROUP_PRIME = 6 => "Group Prime/Irreducible Polynomial",
        GROUP_GENERATOR_ONE = 7 => "Group Generator One",
        GROUP_GENERATOR_TWO = 8 => "Group Generator Two",
        GROUP_CURVE_A = 9 => "Group Curve A",
        GROUP_CURVE_B = 10 => "Group Curve B",
        LIFE_TYPE = 11 => "Life Type",
        LIFE_DURATION = 12 => "Life Duration",
        PRF = 13 => "PRF",
        KEY_LENGTH = 14 => "Key Length",
        FIELD_SIZE = 15 => "Field Size",
        GROUP_ORDER = 16 => "Group Order",
    }
}

registry! {
    /// Phase-1 Encryption Algorithm values (RFC 2409 Appendix A, RFC 3602 §5 for AES).
    pub struct EncryptionAlgorithm(u16) {
        DES_CBC = 1 => "DES-CBC",
        IDEA_CBC = 2 => "IDEA-CBC",
        BLOWFISH_CBC = 3 => "Blowfish-CBC",
        RC5_R16_B64_CBC = 4 => "RC5-R16-B64-CBC",
        TRIPLE_DES_CBC = 5 => "3DES-CBC",
        CAST_CBC = 6 => "CAST-CBC",
        AES_CBC = 7 => "AES-CBC",
    }
}

registry! {
    /// Phase-1 Hash Algorithm values (RFC 2409 Appendix A, RFC 4868 §2.4 for SHA-2).
    pub struct HashAlgorithm(u16) {
        MD5 = 1 => "MD5",
        SHA = 2 => "SHA",
        TIGER = 3 => "Tiger",
        SHA2_256 = 4 => "SHA2-256",
        SHA2_384 = 5 => "SHA2-384",
        SHA2_512 = 6 => "SHA2-512",
    }
}

registry! {
    /// Phase-1 Authentication Method values (RFC 2409 Appendix A).
    pub struct AuthMethod(u16) {
        PRE_SHARED_KEY = 1 => "pre-shared key",
        DSS_SIGNATURES = 2 => "DSS signatures",
        RSA_SIGNATURES = 3 => "RSA signatures",
        RSA_ENCRYPTION = 4 => "Encryption with RSA",
        RSA_REVISED_ENCRYPTION = 5 => "Revised encryption with RSA",
    }
}

registry! {
    /// Group Description values, phase 1 and phase 2 (RFC 2409 §6 / Appendix A, RFC 3526).
    pub struct GroupDescription(u16) {
        MODP_768 = 1 => "modp768",
        MODP_1024 = 2 => "modp1024",
        EC2N_155 = 3 => "ec2n155",
        EC2N_185 = 4 => "ec2n185",
        MODP_1536 = 5 => "modp1536",
        MODP_2048 = 14 => "modp2048",
        MODP_3072 = 15 => "modp3072",
        MODP_4096 = 16 => "modp4096",
        MODP_6144 = 17 => "modp6144",
        MODP_8192 = 18 => "modp8192",
    }
}

registry! {
    /// Life Type values, phase 1 (RFC 2409 Appendix A) and SA Life Type, phase 2 (RFC 2407
    /// §4.5): the two registries have the same values.
    pub struct LifeType(u16) {
        SECONDS = 1 => "seconds",
        KILOBYTES = 2 => "kilobytes",
    }
}

registry! {
    /// Phase-2 (IPsec SA) attribute class (RFC 2407 §4.5, RFC 4304 for ESN).
    pub struct Phase2Attr(u16) {
        SA_LIFE_TYPE = 1 => "SA Life Type",
        SA_LIFE_DURATION = 2 => "SA Life Duration",
        GROUP_DESCRIPTION = 3 => "Group Description",
        ENCAPSULATION_MODE = 4 => "Encapsulation Mode",
        AUTHENTICATION_ALGORITHM = 5 => "Authentication Algorithm",
        KEY_LENGTH = 6 => "Key Length",
        KEY_ROUNDS = 7 => "Key Rounds",
        COMPRESS_DICTIONARY_SIZE = 8 => "Compress Dictionary Size",
        COMPRESS_PRIVATE_ALGORITHM = 9 => "Compress Private Algorithm",
        EXTENDED_SEQUENCE_NUMBER = 11 => "Extended (64-bit) Sequence Number",
    }
}

registry! {
    /// Encapsulation Mode values (RFC 2407 §4.5, RFC 3947 §6 for UDP encapsulation and the
    /// private-range values of draft-ietf-ipsec-nat-t-ike-02/03).
    pub struct EncapsulationMode(u16) {
        TUNNEL = 1 => "Tunnel",
        TRANSPORT = 2 => "Transport",
        UDP_TUNNEL = 3 => "UDP-Encapsulated-Tunnel",
        UDP_TRANSPORT = 4 => "UDP-Encapsulated-Transport",
        UDP_TUNNEL_DRAFT = 61443 => "UDP-Encapsulated-Tunnel (draft)",
        UDP_TRANSPORT_DRAFT = 61444 => "UDP-Encapsulated-Transport (draft)",
    }
}

registry! {
    /// Phase-2 Authentication Algorithm values (RFC 2407 §4.5, RFC 4868 §2.4 for SHA-2).
    pub struct AuthAlgorithm(u16) {
        HMAC_MD5 = 1 => "HMAC-MD5",
        HMAC_SHA = 2 => "HMAC-SHA",
        DES_MAC = 3 => "DES-MAC",
        KPDK = 4 => "KPDK",
        HMAC_SHA2_256 = 5 => "HMAC-SHA2-256",
        HMAC_SHA2_384 = 6 => "HMAC-SHA2-384",
        HMAC_SHA2_512 = 7 => "HMAC-SHA2-512",
    }
}

registry! {
    /// Identification type of the IPsec DOI (RFC 2407 §4.6.2.1).
    pub struct IdType(u8) {
        IPV4_ADDR = 1 => "ID_IPV4_ADDR",
        FQDN = 2 => "ID_FQDN",
        USER_FQDN = 3 => "ID_USER_FQDN",
        IPV4_ADDR_SUBNET = 4 => "ID_IPV4_ADDR_SUBNET",
        IPV6_ADDR = 5 => "ID_IPV6_ADDR",
        IPV6_ADDR_SUBNET = 6 => "ID_IPV6_ADDR_SUBNET",
        IPV4_ADDR_RANGE = 7 => "ID_IPV4_ADDR_RANGE",
        IPV6_ADDR_RANGE = 8 => "ID_IPV6_ADDR_RANGE",
        DER_ASN1_DN = 9 => "ID_DER_ASN1_DN",
        DER_ASN1_GN = 10 => "ID_DER_ASN1_GN",
        KEY_ID = 11 => "ID_KEY_ID",
    }
}

registry! {
    /// Certificate encoding of CERT and CR payloads (RFC 2408 §3.9).
    pub struct CertEncoding(u8) {
        NONE = 0 => "NONE",
        PKCS7 = 1 => "PKCS #7 wrapped X.509 certificate",
        PGP = 2 => "PGP Certificate",
        DNS_SIGNED_KEY = 3 => "DNS Signed Key",
        X509_SIGNATURE = 4 => "X.509 Certificate - Signature",
        X509_KEY_EXCHANGE = 5 => "X.509 Certificate - Key Exchange",
        KERBEROS = 6 => "Kerberos Tokens",
        CRL = 7 => "Certificate Revocation List (CRL)",
        ARL = 8 => "Authority Revocation List (ARL)",
        SPKI = 9 => "SPKI Certificate",
        X509_ATTRIBUTE = 10 => "X.509 Certificate - Attribute",
    }
}
