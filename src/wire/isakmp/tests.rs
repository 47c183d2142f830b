//! Byte vectors, one table of payloads driving round-trip and truncation-at-every-length
//! tests, and hostile-input tests (docs/design.md convention 8).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::IpProtocol;

/// Hex with `//` comments to the end of each line and any whitespace.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const CKY_I: [u8; 8] = [0x5a, 0x10, 0x2c, 0x71, 0x0e, 0x33, 0x9b, 0x04];
const CKY_R: [u8; 8] = [0xc4, 0x81, 0x77, 0x20, 0x19, 0xd5, 0x6a, 0xee];

/// Main mode message 1 as strongSwan-style initiators send it: one ISAKMP proposal with two
/// transforms (AES-128/SHA1/modp2048/PSK with an 8-hour lifetime sent as a 4-byte TLV, and
/// 3DES/SHA1/modp1024), then the RFC 3947 NAT-T and RFC 3706 DPD vendor IDs. Built by hand
/// from RFC 2408 §3.1–§3.6 and checked field by field in `main_mode_message_1`.
fn main_mode_1_bytes() -> Vec<u8> {
    hex("
        5a102c710e339b04 0000000000000000   // CKY-I, CKY-R = 0
        01 10 02 00                          // next SA, version 1.0, Main Mode, no flags
        00000000 000000a0                    // message ID 0, length 160
        0d 00 005c                           // SA: next VID, length 92
          00000001 00000001                  // DOI IPsec, SIT_IDENTITY_ONLY
          00 00 0050                         // P: last, length 80
            01 01 00 02                      // #1, PROTO_ISAKMP, SPI size 0, 2 transforms
            03 00 0028                       // T: next T, length 40
              01 01 0000                     // #1, KEY_IKE
              8001 0007  800e 0080           // AES-CBC, key length 128
              8002 0002  8004 000e           // SHA, group 14
              8003 0001  800b 0001           // PSK, life type seconds
              000c 0004 00007080             // life duration 28800 as a 4-byte TLV
            00 00 0020                       // T: last, length 32
              02 01 0000                     // #2, KEY_IKE
              8001 0005  8002 0002           // 3DES-CBC, SHA
              8004 0002  8003 0001           // group 2, PSK
              800b 0001  800c 7080           // seconds, 28800 as TV
        0d 00 0014 4a131c81070358455c5728f20e95452f   // VID RFC 3947
        00 00 0014 afcad71368a1f1c96b8696fc77570100   // VID DPD
    ")
}

#[test]
fn main_mode_message_1() {
    let b = main_mode_1_bytes();
    assert_eq!(b.len(), 0xa0);
    let view = peek_header(&b).unwrap();
    assert_eq!(view.initiator_cookie(), CKY_I);
    assert_eq!(view.responder_cookie(), [0; 8]);
    assert_eq!(view.exchange_type(), ExchangeType::MAIN_MODE);
    assert_eq!(view.flags(), Flags::NONE);
    assert_eq!(view.length(), 160);

    let m = Message::decode(&b).unwrap();
    assert_eq!(m.header.version, VERSION_1_0);
    assert_eq!(m.header.next_payload, PayloadType::SA);
    assert_eq!(m.header.message_id, 0);
    let p = m.payloads().unwrap();
    assert_eq!(p.len(), 3);
    let Payload::Sa(sa) = &p[0] else {
        panic!("{:?}", p[0])
    };
    assert_eq!(sa.doi, Doi::IPSEC);
    assert_eq!(sa.situation, situation::IDENTITY_ONLY);
    assert_eq!(sa.proposals.len(), 1);
    let prop = &sa.proposals[0];
    assert_eq!((prop.number, prop.protocol_id), (1, ProtocolId::ISAKMP));
    assert!(prop.spi.is_empty());
    assert_eq!(prop.transforms.len(), 2);
    let t = &prop.transforms[0];
    assert_eq!(t.isakmp_id(), IsakmpTransformId::KEY_IKE);
    let get = |t: &Transform, a: Phase1Attr| t.attribute(a).and_then(Attribute::as_u16);
    assert_eq!(
        get(t, Phase1Attr::ENCRYPTION_ALGORITHM).map(EncryptionAlgorithm),
        Some(EncryptionAlgorithm::AES_CBC)
    );
    assert_eq!(get(t, Phase1Attr::KEY_LENGTH), Some(128));
    assert_eq!(
        get(t, Phase1Attr::HASH_ALGORITHM).map(HashAlgorithm),
        Some(HashAlgorithm::SHA)
    );
    assert_eq!(
        get(t, Phase1Attr::GROUP_DESCRIPTION).map(GroupDescription),
        Some(GroupDescription::MODP_2048)
    );
    assert_eq!(
        get(t, Phase1Attr::AUTHENTICATION_METHOD).map(AuthMethod),
        Some(AuthMethod::PRE_SHARED_KEY)
    );
    assert_eq!(
        get(t, Phase1Attr::LIFE_TYPE).map(LifeType),
        Some(LifeType::SECONDS)
    );
    let life = t.attribute(Phase1Attr::LIFE_DURATION).unwrap();
    assert!(!life.is_tv());
    assert_eq!(life.as_u32(), Some(28800));
    let t2 = &prop.transforms[1];
    assert_eq!(
        get(t2, Phase1Attr::ENCRYPTION_ALGORITHM).map(EncryptionAlgorithm),
        Some(EncryptionAlgorithm::TRIPLE_DES_CBC)
    );
    assert!(t2.attribute(Phase1Attr::LIFE_DURATION).unwrap().is_tv());
    assert_eq!(
        t2.attribute(Phase1Attr::LIFE_DURATION).unwrap().as_u32(),
        Some(28800)
    );
    let vids: Vec<_> = p[1..]
        .iter()
        .map(|p| match p {
            Payload::VendorId(v) => KnownVendorId::recognise(v),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        vids,
        [Some(KnownVendorId::NatTRfc3947), Some(KnownVendorId::Dpd)]
    );

    // The TLV life duration is kept as TLV, so the message re-encodes byte for byte.
    assert_eq!(m.encode(), b);

    // The raw split gives the SA body as received: SAi_b of HASH_I (RFC 2409 §5).
    let raw = split_payloads(view.next_payload(), view.body()).unwrap();
    assert_eq!(raw[0].offset, 0);
    assert_eq!(raw[0].body, &b[32..32 + 88]);
    assert_eq!(raw[2].bytes, &b[140..160]);
}

/// Every payload variant, with the corner cases of each codec.
fn payload_table() -> Vec<(&'static str, Payload)> {
    use Payload as P;
    let esp = Proposal {
        number: 1,
        protocol_id: ProtocolId::IPSEC_ESP,
        spi: vec![0xc0, 0x01, 0xd0, 0x0d],
        transforms: vec![Transform {
            number: 1,
            transform_id: EspTransformId::AES.0,
            attributes: vec![
                Attribute::tv(Phase2Attr::SA_LIFE_TYPE, LifeType::SECONDS.0),
                Attribute::number(Phase2Attr::SA_LIFE_DURATION, 3600),
                Attribute::tv(Phase2Attr::SA_LIFE_TYPE, LifeType::KILOBYTES.0),
                Attribute::number(Phase2Attr::SA_LIFE_DURATION, 4_608_000),
                Attribute::tv(
                    Phase2Attr::ENCAPSULATION_MODE,
                    EncapsulationMode::UDP_TUNNEL.0,
                ),
                Attribute::tv(
                    Phase2Attr::AUTHENTICATION_ALGORITHM,
                    AuthAlgorithm::HMAC_SHA.0,
                ),
                Attribute::tv(Phase2Attr::KEY_LENGTH, 128),
                Attribute::tv(Phase2Attr::GROUP_DESCRIPTION, GroupDescription::MODP_2048.0),
                // An unknown TLV class with an empty value.
                Attribute::tlv(0x7f00u16, vec![]),
            ],
        }],
    };
    let ah = Proposal {
        number: 1,
        protocol_id: ProtocolId::IPSEC_AH,
        spi: vec![0xc0, 0x01, 0xd0, 0x0e],
        transforms: vec![
            Transform {
                number: 1,
                transform_id: AhTransformId::SHA2_256.0,
                attributes: vec![Attribute::tv(
                    Phase2Attr::AUTHENTICATION_ALGORITHM,
                    AuthAlgorithm::HMAC_SHA2_256.0,
                )],
            },
            Transform {
                number: 2,
                transform_id: 250, // unknown transform ID, no attributes
                attributes: vec![],
            },
        ],
    };
    let mut esp2 = esp.clone();
    esp2.number = 2;
    esp2.transforms[0].transform_id = EspTransformId::TRIPLE_DES.0;
    vec![
        (
            "SA phase 2: ESP+AH (one offer) or ESP",
            P::Sa(SaPayload {
                doi: Doi::IPSEC,
                situation: situation::IDENTITY_ONLY,
                proposals: vec![esp, ah, esp2],
            }),
        ),
        ("KE", P::KeyExchange((0..=255).collect())),
        ("empty nonce", P::Nonce(vec![])),
        ("nonce", P::Nonce(vec![0xab; 16])),
        (
            "ID ipv4 addr udp/500",
            P::Identification(Identification::with_ports(
                IdValue::Ipv4Addr(Ipv4Addr::new(192, 0, 2, 1)),
                IpProtocol::UDP,
                500,
            )),
        ),
        (
            "ID ipv4 subnet",
            P::Identification(Identification::ipv4_subnet(
                Ipv4Addr::new(198, 51, 100, 0),
                24,
            )),
        ),
        (
            "ID ipv4 range",
            P::Identification(Identification::new(IdValue::Ipv4Range {
                start: Ipv4Addr::new(198, 51, 100, 10),
                end: Ipv4Addr::new(198, 51, 100, 20),
            })),
        ),
        (
            "ID ipv6 subnet",
            P::Identification(Identification::new(IdValue::Ipv6Subnet {
                addr: "2001:db8::".parse().unwrap(),
                mask: "ffff:ffff::".parse().unwrap(),
            })),
        ),
        (
            "ID fqdn",
            P::Identification(Identification::new(IdValue::Fqdn(b"hub.example.net"))),
        ),
        (
            "ID unknown type",
            P::Identification(Identification {
                id_type: IdType(200),
                protocol_id: IpProtocol(0),
                port: 0,
                data: vec![1, 2, 3],
            }),
        ),
        (
            "CERT",
            P::Certificate {
                encoding: CertEncoding::X509_SIGNATURE,
                data: vec![0x30, 0x82, 0, 0],
            },
        ),
        (
            "CR",
            P::CertificateRequest {
                cert_type: CertEncoding::X509_SIGNATURE,
                authority: vec![],
            },
        ),
        ("HASH", P::Hash(vec![0x11; 20])),
        ("SIG", P::Signature(vec![0x22; 3])),
        (
            "N no-proposal-chosen, no SPI",
            P::Notification(Notification {
                doi: Doi::IPSEC,
                protocol_id: ProtocolId::ISAKMP,
                spi: vec![],
                message_type: NotifyType::NO_PROPOSAL_CHOSEN,
                data: vec![],
            }),
        ),
        (
            "N responder-lifetime, ESP SPI",
            P::Notification(Notification {
                doi: Doi::IPSEC,
                protocol_id: ProtocolId::IPSEC_ESP,
                spi: vec![0xc0, 0x01, 0xd0, 0x0d],
                message_type: NotifyType::RESPONDER_LIFETIME,
                data: hex("800b0001 000c0004 00000e10"),
            }),
        ),
        (
            "N R-U-THERE",
            P::Notification(Notification::dpd(false, CKY_I, CKY_R, 0x1234_5678)),
        ),
        (
            "N unknown type",
            P::Notification(Notification {
                doi: Doi(77),
                protocol_id: ProtocolId(99),
                spi: vec![9; 3],
                message_type: NotifyType(40000),
                data: vec![1],
            }),
        ),
        (
            "D ipsec",
            P::Delete(Delete::ipsec(ProtocolId::IPSEC_ESP, &[0x1111, 0x2222])),
        ),
        ("D isakmp", P::Delete(Delete::isakmp(CKY_I, CKY_R))),
        ("VID", P::VendorId(vendor::DPD.to_vec())),
        (
            "NAT-D",
            P::NatD {
                draft: false,
                hash: vec![0x33; 20],
            },
        ),
        (
            "NAT-D draft",
            P::NatD {
                draft: true,
                hash: vec![0x44; 16],
            },
        ),
        (
            "NAT-OA v4",
            P::NatOa(NatOa {
                draft: false,
                address: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            }),
        ),
        (
            "NAT-OA v6 draft",
            P::NatOa(NatOa {
                draft: true,
                address: IpAddr::V6(Ipv6Addr::LOCALHOST),
            }),
        ),
        (
            "unknown (mode-config attribute)",
            P::Unknown {
                payload_type: PayloadType::ATTRIBUTE,
                reserved: 0,
                body: vec![1, 0, 0, 0, 0x80, 1, 0, 0],
            },
        ),
        (
            "unknown critical, private range",
            P::Unknown {
                payload_type: PayloadType(200),
                reserved: 0x80,
                body: vec![],
            },
        ),
    ]
}

fn all_payloads() -> Vec<Payload> {
    payload_table().into_iter().map(|(_, p)| p).collect()
}

fn table_message() -> Vec<u8> {
    Message::new(
        Header::new(
            CKY_I,
            CKY_R,
            ExchangeType::QUICK_MODE,
            Flags::NONE,
            0xdead_beef,
        ),
        all_payloads(),
    )
    .encode()
}

#[test]
fn every_payload_round_trips() {
    for (name, p) in payload_table() {
        let (first, bytes) = encode_payloads(std::slice::from_ref(&p));
        assert_eq!(first, p.payload_type(), "{name}");
        let back = decode_payloads(first, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, std::slice::from_ref(&p), "{name}");
        assert_eq!(
            encode_payloads(&back).1,
            bytes,
            "{name} re-encoded differently"
        );
    }
    let all = all_payloads();
    let (first, bytes) = encode_payloads(&all);
    assert_eq!(decode_payloads(first, &bytes).unwrap(), all);
    let m = Message::decode(&table_message()).unwrap();
    assert_eq!(m.payloads().unwrap(), all);
    assert_eq!(m.encode(), table_message());
}

fn assert_err<T: std::fmt::Debug>(what: &str, r: std::thread::Result<Result<T, DecodeError>>) {
    match r {
        Ok(Err(_)) => {}
        Ok(Ok(v)) => panic!("{what} was accepted: {v:?}"),
        Err(_) => panic!("{what} panicked"),
    }
}

#[test]
fn every_truncation_is_an_error() {
    for (name, p) in payload_table() {
        let (first, bytes) = encode_payloads(&[p]);
        for n in 0..bytes.len() {
            let r = std::panic::catch_unwind(|| decode_payloads(first, &bytes[..n]));
            assert_err(&format!("{name}: prefix of {n} bytes"), r);
        }
    }
    let (first, chain) = encode_payloads(&all_payloads());
    for n in 0..chain.len() {
        let r = std::panic::catch_unwind(|| decode_payloads(first, &chain[..n]));
        assert_err(&format!("chain prefix of {n} bytes"), r);
    }
    for msg in [table_message(), main_mode_1_bytes()] {
        for n in 0..msg.len() {
            let r = std::panic::catch_unwind(|| Message::decode(&msg[..n]));
            assert_err(&format!("message prefix of {n} bytes"), r);
        }
    }
}

/// Decodes, and if that succeeds re-encodes and decodes again: the value must survive.
fn decode_stable(bytes: &[u8]) {
    if let Ok(m) = Message::decode(bytes) {
        let again = Message::decode(&m.encode()).expect("re-encoded message must decode");
        assert_eq!(again, m);
    }
    if let Ok(p) = decode_payloads_padded(PayloadType(bytes.first().copied().unwrap_or(0)), bytes) {
        let (first, enc) = encode_payloads(&p);
        assert_eq!(decode_payloads(first, &enc).unwrap(), p);
    }
}

#[test]
fn bit_flips_never_panic() {
    for msg in [table_message(), main_mode_1_bytes()] {
        for bit in 0..msg.len() * 8 {
            let mut b = msg.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            decode_stable(&b);
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    // xorshift64: deterministic, no RNG dependency in the core's tests.
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let base = table_message();
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 8 {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let cut = (next() as usize) % (b.len() + 1);
        decode_stable(&b[..cut.max(b.len() / 2)]);
        decode_stable(&b);
    }
}

#[test]
fn unknown_payloads_and_the_critical_bit() {
    // An unknown payload type marked critical, between two known ones.
    let bytes = hex("
        c8 00 0008 deadbeef      // VID: next 200, length 8
        0b 80 0005 aa            // type 200: next N, critical, length 5
        00 00 000c 00000001 01 00 6002   // N: last, DOI 1, ISAKMP, no SPI, INITIAL-CONTACT
    ");
    let p = decode_payloads(PayloadType::VENDOR_ID, &bytes).unwrap();
    assert_eq!(
        p[1],
        Payload::Unknown {
            payload_type: PayloadType(200),
            reserved: 0x80,
            body: vec![0xaa],
        }
    );
    assert!(p[1].is_critical());
    assert!(!p[0].is_critical());
    assert_eq!(unsupported_critical(&p), Some(PayloadType(200)));
    let Payload::Notification(n) = &p[2] else {
        panic!()
    };
    assert_eq!(n.message_type, NotifyType::INITIAL_CONTACT);
    assert_eq!(encode_payloads(&p), (PayloadType::VENDOR_ID, bytes.clone()));

    // A known payload with a non-zero RESERVED byte is tolerated and re-encoded as zero.
    let mut sloppy = bytes.clone();
    sloppy[1] = 0x80;
    let q = decode_payloads(PayloadType::VENDOR_ID, &sloppy).unwrap();
    assert_eq!(q, p);
    assert_eq!(encode_payloads(&q).1, bytes);

    // Proposals and transforms cannot stand at the top level of a chain.
    assert_eq!(
        decode_payloads(PayloadType::PROPOSAL, &hex("00 00 0004")),
        Err(DecodeError::UnexpectedPayload(PayloadType::PROPOSAL))
    );
}

#[test]
fn unknown_registry_values_round_trip_and_print() {
    assert_eq!(format!("{:?}", PayloadType::NAT_D_DRAFT), "NAT-D (draft)");
    assert_eq!(format!("{:?}", PayloadType(99)), "PayloadType(99)");
    assert_eq!(format!("{}", NotifyType::R_U_THERE_ACK), "R-U-THERE-ACK");
    assert_eq!(format!("{}", NotifyType(12345)), "12345");
    assert_eq!(NotifyType::AUTHENTICATION_FAILED.0, 24);
    assert!(NotifyType::INVALID_ID_INFORMATION.is_error());
    assert!(!NotifyType::INITIAL_CONTACT.is_error());
    assert_eq!(ExchangeType::QUICK_MODE.name(), Some("Quick Mode"));
    assert_eq!(
        EncapsulationMode(61444),
        EncapsulationMode::UDP_TRANSPORT_DRAFT
    );
    assert_eq!(format!("{:?}", Flags(0x03)), "Flags(E|C)");
    assert_eq!(format!("{:?}", Flags(0x81)), "Flags(E|0x80)");
}

#[test]
fn tv_or_tlv_on_encode() {
    let enc = |a: &Attribute| {
        let mut v = Vec::new();
        a.encode(&mut v);
        v
    };
    let small = Attribute::number(Phase1Attr::LIFE_DURATION, 0xffff);
    assert!(small.is_tv());
    assert_eq!(enc(&small), hex("800c ffff"));
    let day = Attribute::number(Phase1Attr::LIFE_DURATION, 86400);
    assert_eq!(enc(&day), hex("000c 0004 00015180"));
    assert_eq!(day.as_u32(), Some(86400));
    let huge = Attribute::number(Phase2Attr::SA_LIFE_DURATION, 1 << 40);
    assert_eq!(enc(&huge), hex("0002 0008 0000010000000000"));
    assert_eq!(huge.as_u64(), Some(1 << 40));
    assert_eq!(huge.as_u32(), None);
    // A short TLV counts as a number too; one longer than 8 bytes does not.
    assert_eq!(Attribute::tlv(1u16, vec![7]).as_u16(), Some(7));
    assert_eq!(Attribute::tlv(1u16, vec![0; 9]).as_u64(), None);
    // The AF bit never leaks into the type.
    assert_eq!(
        Attribute::read_bytes(&hex("8004 000e")).unwrap().attr_type,
        4
    );
}

#[test]
fn encrypted_messages() {
    let header = Header::new(CKY_I, CKY_R, ExchangeType::INFORMATIONAL, Flags::NONE, 7);
    let inner = vec![
        Payload::Hash(vec![0x55; 20]),
        Payload::Notification(Notification::dpd(true, CKY_I, CKY_R, 42)),
    ];
    let (first, plain) = encode_payloads(&inner);
    assert_eq!(first, PayloadType::HASH);
    // Stand-in for the cipher: pad to 16 with zeros and "encrypt" by inverting.
    let mut padded = plain.clone();
    padded.resize(plain.len().div_ceil(16) * 16, 0);
    let cipher: Vec<u8> = padded.iter().map(|b| !b).collect();
    let wire = Message::encrypted(header, first, cipher.clone()).encode();

    let view = peek_header(&wire).unwrap();
    assert!(view.flags().encrypted());
    assert_eq!(view.message_id(), 7);
    let m = Message::decode(&wire).unwrap();
    assert_eq!(m.header.next_payload, PayloadType::HASH);
    assert_eq!(m.body, Body::Encrypted(cipher.clone()));
    assert_eq!(m.encode(), wire);

    let Body::Encrypted(c) = &m.body else {
        panic!()
    };
    let dec: Vec<u8> = c.iter().map(|b| !b).collect();
    let got = decode_payloads_padded(m.header.next_payload, &dec).unwrap();
    assert_eq!(got, inner);
    let Payload::Notification(n) = &got[1] else {
        panic!()
    };
    assert_eq!(n.dpd_sequence(), Some(42));
    assert_eq!(n.spi, [CKY_I, CKY_R].concat());

    // Only the padded variant accepts the padding.
    assert!(matches!(
        decode_payloads(m.header.next_payload, &dec),
        Err(DecodeError::TrailingBytes { .. })
    ));
    // RFC 2409 §5.3 form: zeros, then the count of the zeros.
    let mut counted = plain.clone();
    counted.extend_from_slice(&[0, 0, 0, 3]);
    assert_eq!(decode_payloads_padded(first, &counted).unwrap(), inner);
    // Anything else after the chain is refused.
    for junk in [&[0u8, 1, 0][..], &[7], &[0, 0, 0, 2]] {
        let mut b = plain.clone();
        b.extend_from_slice(junk);
        assert!(decode_payloads_padded(first, &b).is_err(), "{junk:?}");
    }
}

#[test]
fn header_checks() {
    let good = main_mode_1_bytes();
    // IKEv2 on port 500: the view still routes it, the decoder refuses it.
    let mut v2 = good.clone();
    v2[17] = 0x20;
    assert_eq!(peek_header(&v2).unwrap().major_version(), 2);
    let e = Message::decode(&v2).unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedVersion(0x20));
    assert_eq!(e.notify_type(), NotifyType::INVALID_MAJOR_VERSION);
    assert_eq!(
        e.to_string(),
        "unsupported ISAKMP version 2.0 (expected 1.0)"
    );
    // Bytes after the length the header announces.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        Message::decode(&long),
        Err(DecodeError::TrailingBytes {
            what: "datagram after the ISAKMP length",
            count: 1
        })
    );
    // A length below the header's own.
    let mut short = good.clone();
    short[24..28].copy_from_slice(&27u32.to_be_bytes());
    assert!(matches!(
        Message::decode(&short),
        Err(DecodeError::BadLength { min: 28, .. })
    ));
    assert!(peek_header(&good[..27]).is_err());
}

#[test]
fn proposal_syntax_errors() {
    let b = main_mode_1_bytes();
    let sa_body = &b[32..120];
    // Announce 3 transforms where there are 2.
    let mut three = sa_body.to_vec();
    three[8 + 7] = 3;
    let e = Payload::decode_body(PayloadType::SA, 0, &three).unwrap_err();
    assert_eq!(e.notify_type(), NotifyType::BAD_PROPOSAL_SYNTAX);
    // Announce 1 transform where there are 2.
    let mut one = sa_body.to_vec();
    one[8 + 7] = 1;
    let e = Payload::decode_body(PayloadType::SA, 0, &one).unwrap_err();
    assert_eq!(e.notify_type(), NotifyType::BAD_PROPOSAL_SYNTAX);
    // A proposal length below its fixed part.
    let mut tiny = sa_body.to_vec();
    tiny[8 + 2..8 + 4].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        Payload::decode_body(PayloadType::SA, 0, &tiny),
        Err(DecodeError::BadLength {
            what: "proposal",
            length: 7,
            min: 8
        })
    );
    // Labelled situations are refused, not misparsed.
    let mut labelled = sa_body.to_vec();
    labelled[7] = 0x03;
    assert!(matches!(
        Payload::decode_body(PayloadType::SA, 0, &labelled),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn identification_values() {
    let id = Identification::ipv4_subnet(Ipv4Addr::new(203, 0, 113, 0), 24);
    assert_eq!(id.data, hex("cb007100 ffffff00"));
    let v = id.value().unwrap();
    assert_eq!(v.prefix_len(), Some(24));
    assert_eq!(
        Identification::ipv4_subnet(Ipv4Addr::UNSPECIFIED, 0)
            .value()
            .unwrap()
            .prefix_len(),
        Some(0)
    );
    let odd = Identification::new(IdValue::Ipv4Subnet {
        addr: Ipv4Addr::UNSPECIFIED,
        mask: Ipv4Addr::new(255, 0, 255, 0),
    });
    assert_eq!(odd.value().unwrap().prefix_len(), None);
    let bad = Identification {
        id_type: IdType::IPV4_ADDR_RANGE,
        protocol_id: IpProtocol(0),
        port: 0,
        data: vec![0; 7],
    };
    assert!(bad.value().is_err());
    let fq = Identification::new(IdValue::UserFqdn(b"ops@example.net"));
    assert_eq!(fq.value().unwrap(), IdValue::UserFqdn(b"ops@example.net"));
}

#[test]
fn delete_payload_checks() {
    // 12 bytes must not announce 65535 zero-sized SPIs.
    let e = Payload::decode_body(PayloadType::DELETE, 0, &hex("00000001 03 00 ffff"));
    assert_eq!(e, Err(DecodeError::Malformed("delete: SPIs of size 0")));
    // SPI bytes that do not fill the count.
    assert!(
        Payload::decode_body(PayloadType::DELETE, 0, &hex("00000001 03 04 0002 00001111")).is_err()
    );
    let d = Delete::ipsec(ProtocolId::IPSEC_AH, &[0xabcd]);
    assert_eq!(d.spis_u32(), Some(vec![0xabcd]));
}

#[test]
fn vendor_ids() {
    assert_eq!(
        KnownVendorId::recognise(&vendor::NAT_T_DRAFT_02_N),
        Some(KnownVendorId::NatTDraft02)
    );
    assert_eq!(
        KnownVendorId::recognise(&vendor::NAT_T_DRAFT_03),
        Some(KnownVendorId::NatTDraft03)
    );
    assert!(KnownVendorId::NatTDraft02.is_nat_t_draft());
    assert!(!KnownVendorId::Dpd.is_nat_t());
    // A prefix or extension of a known ID is not that ID.
    assert_eq!(KnownVendorId::recognise(&vendor::DPD[..15]), None);
    assert_eq!(
        KnownVendorId::recognise(&[vendor::DPD.as_slice(), &[0]].concat()),
        None
    );
}

#[test]
fn error_messages_read_well() {
    let e = decode_payloads(PayloadType::NONCE, &hex("00 00 0003")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "generic payload header: length 3 is below the minimum of 4"
    );
    let e = decode_payloads(PayloadType::NONCE, &hex("00 00 0010 00")).unwrap_err();
    assert_eq!(e.to_string(), "truncated: needed 12 bytes, 1 left");
    assert_eq!(e.notify_type(), NotifyType::PAYLOAD_MALFORMED);
}

#[test]
fn non_esp_marker() {
    let m = main_mode_1_bytes();
    let on_4500 = [&[0u8; 4][..], &m].concat();
    // A real main-mode message behind the marker is told apart from ESP on port 4500.
    assert_eq!(
        crate::wire::udp_encap::classify(&on_4500),
        crate::wire::udp_encap::UdpEncapPayload::Ike(&m[..])
    );
}
