//! Arbitrary bytes into the ISAKMP decoders: as a whole datagram (header, plaintext chain or
//! encrypted body), and as a decrypted payload chain (strict and padded) whose first payload
//! type is the first input byte. Whatever decodes must re-encode into bytes that decode to the
//! same value.
#![no_main]

use ikehub::wire::isakmp::{
    Message, PayloadType, decode_payloads, decode_payloads_padded, encode_payloads, peek_header,
    split_payloads,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = peek_header(data) {
        let _ = (
            view.initiator_cookie(),
            view.flags(),
            view.exchange_type(),
            view.length(),
        );
    }
    if let Ok(m) = Message::decode(data) {
        let bytes = m.encode();
        let again = Message::decode(&bytes).expect("re-encoded message decodes");
        assert_eq!(again, m);
        assert_eq!(again.encode(), bytes);
    }
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    let first = PayloadType(first);
    if let Ok(p) = decode_payloads(first, chain) {
        let raw = split_payloads(first, chain).expect("a decodable chain splits");
        assert_eq!(raw.len(), p.len());
        let (f, bytes) = encode_payloads(&p);
        assert_eq!(
            decode_payloads(f, &bytes).expect("re-encoded chain decodes"),
            p
        );
    }
    if let Ok(p) = decode_payloads_padded(first, chain) {
        let (f, bytes) = encode_payloads(&p);
        assert_eq!(
            decode_payloads(f, &bytes).expect("re-encoded chain decodes"),
            p
        );
    }
});
