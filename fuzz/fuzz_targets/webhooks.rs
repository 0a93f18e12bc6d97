//! Signed webhooks as anyone on the internet can send them: the chat webhook's signature, age and
//! body (ingest), and the `Stripe-Signature` header (console). Half the inputs are signed with the
//! right secret, so the verifier's accepting path is reached too.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use dropline_ingest::webhook::{notification, sign, verify, Signed};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-webhook-secret";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    id: &'a str,
    timestamp: &'a str,
    signature: &'a str,
    sign_it: bool,
    kind: Option<&'a str>,
    body: &'a [u8],
    stripe_header: &'a str,
    now_s: u32,
}

fuzz_target!(|input: Input<'_>| {
    let signature = if input.sign_it {
        sign(SECRET, input.id, input.timestamp, input.body)
    } else {
        input.signature.to_owned()
    };
    let signed = Signed { id: input.id, timestamp: input.timestamp, signature: &signature };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(input.now_s));
    if let Err(refusal) = verify(SECRET, signed, input.body, now) {
        assert!(refusal.status.is_client_error(), "{refusal:?}");
    }
    // The body parser runs only behind a valid signature in the service; here on every body.
    let _ = notification(input.kind, input.body);

    let now_s = i64::from(input.now_s);
    let _ = dropline_console::stripe::verify(input.stripe_header, input.body, SECRET, now_s);
    let good = dropline_console::stripe::sign(SECRET, now_s, input.body);
    assert!(dropline_console::stripe::verify(&good, input.body, SECRET, now_s).is_ok());
});
