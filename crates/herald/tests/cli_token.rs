//! `herald token`: a development token that the server's verifier accepts, with the claims
//! asked for; bad arguments are refused with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

use std::process::Command;

const SECRET: &str = "a-secret-for-the-cli-test";

fn herald_token(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("token")
        .args(args)
        .env("HERALD_TOKEN_HS256_SECRET", SECRET)
        .output()
        .expect("herald runs")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn minted_tokens_verify_with_the_granted_patterns_and_lifetime() {
    let out = herald_token(&["--user", "ada", "--channels", "chat:*,user:ada", "--publish", "chat:*", "--ttl", "2h"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let keys = herald_auth::KeyConfig { hs256_secret: Some(SECRET.into()), ..Default::default() };
    let verifier = herald_auth::Verifier::new(&keys).unwrap().unwrap();
    let identity = verifier.verify(&token, now()).expect("the server's verifier accepts it");
    assert_eq!(identity.user, "ada");
    assert!(
        identity.may_subscribe("chat:lobby")
            && identity.may_subscribe("user:ada")
            && !identity.may_subscribe("user:bob")
    );
    assert!(identity.may_publish("chat:x") && !identity.may_publish("user:ada"));
    let lifetime = identity.expires_at - now();
    assert!((7190..=7200).contains(&lifetime), "two hours, got {lifetime} s");
    assert_eq!(verifier.verify(&token, now() + 7201), Err(herald_auth::AuthError::Expired));
    let other = herald_auth::KeyConfig { hs256_secret: Some("some-other-secret-value".into()), ..Default::default() };
    assert!(herald_auth::Verifier::new(&other).unwrap().unwrap().verify(&token, now()).is_err());
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for (args, expected) in [
        (&["--user", "ada", "--ttl", "soon"][..], "expected a number"),
        (&["--user", "ada", "--ttl", "0s"][..], "longer than zero"),
        (&["--user", "ada", "--info", "{not json"][..], "--info must be JSON"),
    ] {
        let out = herald_token(args);
        assert!(!out.status.success(), "{args:?} is refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["token", "--user", "ada", "--secret", "short"])
        .env_remove("HERALD_TOKEN_HS256_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 16 bytes"));
}
