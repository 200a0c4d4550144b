//! Token verification on arbitrary input: never a panic, and never an identity from a token
//! that was not signed with the configured secret.
#![no_main]

use std::sync::OnceLock;

use herald_auth::{KeyConfig, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let keys = KeyConfig { hs256_secret: Some("fuzzing-secret-nobody-knows-0123".into()), ..KeyConfig::default() };
        Verifier::new(&keys).ok().flatten().expect("a verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Random bytes cannot carry a valid HMAC of a secret the fuzzer does not know.
    assert!(verifier().verify(text, 1_800_000_000).is_err(), "an unsigned token verified: {text}");
});
