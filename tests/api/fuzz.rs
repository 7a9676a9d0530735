//! Fuzzing of the four front doors that read untrusted bytes, with proptest over raw and
//! near-valid inputs, bounded (`FUZZ_CASES`, 1000 by default) so that it runs on every
//! `cargo test`: the JSON body reader, the list query and cursor reader, the credential front end
//! (over HTTP, as an attacker reaches it) and the configuration loader. Each must never panic
//! and must answer as its contract says.
use billing_api::api::input::JsonBody;
use billing_api::api::list::Query;
use billing_api::config::{Config, Sources};
use billing_api::domain::ids::{self, Kind};
use billing_api::store::Backend;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as Cases, TestRunner};

use crate::helpers::jwt::claims;
use crate::helpers::spawn_app_with;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// Bytes that look like JSON often enough to get past the first byte.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[{}\\[\\]\":,0-9a-z .eE+\\-\\\\nul]{0,128}".prop_map(String::into_bytes),
        // A well-formed object, perhaps with a key repeated, perhaps nested.
        ("[a-c]{1,2}", any::<i64>(), "[a-c]{1,2}", any::<bool>()).prop_map(|(k1, v, k2, nested)| {
            let inner = format!("{{\"{k1}\": {v}, \"{k2}\": [1.0, 2.5, null]}}");
            let body = if nested { format!("{{\"x\": {inner}}}") } else { inner };
            body.into_bytes()
        }),
    ]
}

#[test]
fn the_json_body_reader_takes_exactly_json_without_repeated_keys() {
    let mut runner = TestRunner::new(Cases::with_cases(cases()));
    runner
        .run(&jsonish(), |bytes| {
            let ours = JsonBody::parse(&bytes);
            let reference = serde_json::from_slice::<serde_json::Value>(&bytes);
            match (&ours, &reference) {
                // Whatever serde_json refuses, we refuse, as 400 malformed_json.
                (Ok(_), Err(_)) => prop_assert!(
                    false,
                    "accepted what is not JSON: {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
                // JSON that serde_json reads (last key wins) is refused only for a repeated key.
                (Err(p), Ok(_)) => {
                    prop_assert_eq!((p.status.as_u16(), p.code), (400, "malformed_json"));
                    prop_assert!(p.detail.contains("appears twice"), "{}", p.detail);
                }
                (Err(p), Err(_)) => prop_assert_eq!((p.status.as_u16(), p.code), (400, "malformed_json")),
                // JSON that we accept reads the same as serde_json reads it (up to integral
                // floats, which are integers for us as for JSON Schema).
                (Ok(body), Ok(value)) => prop_assert_eq!(normalise(&body.0), normalise(value)),
            }
            Ok(())
        })
        .unwrap();
}

/// Integral numbers as integers, everything else as is.
fn normalise(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), normalise(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_list_query_reader_accepts_only_well_formed_pages() {
    let kinds = [Kind::Customer, Kind::Invoice, Kind::Event];
    let near = "((limit|starting_after|ending_before|customer|status|x)=(cus_[0-9a-f]{0,33}|in_[0-9a-f]{32}|[0-9]{1,4}|-1|%00|%zz|)&?){0,4}";
    let strategy = (
        prop_oneof![near.prop_map(Some), any::<String>().prop_map(Some), Just(None)],
        0..kinds.len(),
    );
    let mut runner = TestRunner::new(Cases::with_cases(cases()));
    runner
        .run(&strategy, |(raw, kind)| {
            let kind = kinds[kind];
            match Query::new(raw.clone(), &["customer"]).page(kind) {
                Ok(page) => {
                    prop_assert!((1..=100).contains(&page.limit), "{raw:?}");
                    for cursor in [&page.cursor.starting_after, &page.cursor.ending_before]
                        .into_iter()
                        .flatten()
                    {
                        prop_assert!(ids::is_valid(kind, cursor), "{raw:?} gave cursor {cursor:?}");
                    }
                }
                Err(p) => prop_assert_eq!(p.status.as_u16(), 422, "{:?}: {}", raw, p.detail),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_configuration_loader_reports_and_never_panics() {
    let keys = [
        "BILLING_SERVER__PORT",
        "BILLING_SERVER__HEADER_LIMIT",
        "BILLING_DATABASE__URL",
        "BILLING_DATABASE__MAX_CONNECTIONS",
        "BILLING_WEBHOOKS__RETRY_SCHEDULE",
        "BILLING_WEBHOOKS__ENCRYPTION_KEY",
        "BILLING_RATE_LIMIT__READ_BURST",
        "BILLING_RATE_LIMIT__REDIS_URL",
        "BILLING_AUTH__JWT_ALGORITHMS",
        "BILLING_SHUTDOWN__GRACE_PERIOD",
        "BILLING_NOPE__X",
    ];
    let value = prop_oneof![
        any::<String>(),
        "[0-9]{0,12}(ms|s|m|h)?",
        "(sqlite|postgres|redis)://[a-z:/@.0-9]{0,20}"
    ];
    let toml = prop_oneof![
        any::<String>(),
        "\\[(server|database|webhooks|x)\\]\n[a-z_]{1,12} = (\"[a-z0-9:/.]{0,12}\"|[0-9]{1,6}|true|\\[1, \"a\"\\])\n{0,3}",
    ];
    let strategy = (
        proptest::collection::vec((0..keys.len(), value), 0..4),
        proptest::option::of(toml),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Cases::with_cases(cases().min(500)));
    runner
        .run(&strategy, |(env, toml)| {
            let file = toml.map(|text| {
                let path = dir.path().join("config.toml");
                std::fs::write(&path, text).unwrap();
                path
            });
            let env = env.into_iter().map(|(k, v)| (keys[k].to_owned(), v)).collect();
            match Config::load(&Sources { file, env }) {
                Ok(loaded) => prop_assert!(loaded.config.server.header_limit >= 1024),
                Err(e) => prop_assert!(!e.problems.is_empty(), "an error names its problems"),
            }
            Ok(())
        })
        .unwrap();
}

const SECRET: &str = "a-test-hmac-secret-of-at-least-32-bytes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_front_end_refuses_garbage_and_mutated_tokens() {
    let env = [
        ("BILLING_AUTH__JWT_ISSUER", "https://idp.test"),
        ("BILLING_AUTH__JWT_AUDIENCE", "billing"),
        ("BILLING_AUTH__JWT_ALGORITHMS", "HS256"),
        ("BILLING_AUTH__JWT_HMAC_SECRET", SECRET),
    ];
    let Some(app) = spawn_app_with(Backend::Sqlite, &env).await else {
        return;
    };
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("acme"),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let api_key = app.key("acme", &["*"]).await;

    // Raw header values, and valid credentials with bytes changed, cut or added.
    let mutated = |credential: String| {
        (any::<prop::sample::Index>(), any::<u8>(), 0..3u8).prop_map(move |(at, byte, how)| {
            let mut bytes = credential.clone().into_bytes();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
            (bytes, true)
        })
    };
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, false)),
        "(Bearer |bearer |Basic |)(bsk_|ey|)[A-Za-z0-9._\\-]{0,200}".prop_map(|s| (s.into_bytes(), false)),
        mutated(format!("Bearer {good}")),
        mutated(format!("Bearer {api_key}")),
    ];
    // Drawn up front (the requests are async; proptest's runner is not), from a fixed seed.
    let mut runner = TestRunner::deterministic();
    let inputs: Vec<(Vec<u8>, bool)> = (0..cases())
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let valid = [
        format!("Bearer {good}").into_bytes(),
        format!("Bearer {api_key}").into_bytes(),
    ];
    let (mut refused, mut accepted) = (0, 0);
    for (bytes, _) in inputs {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&bytes) else {
            continue; // not sendable as a header at all
        };
        let response = app
            .client
            .get(app.url("/v1/customers"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            // Only the real credentials, or a spelling of them that decodes to the same bytes
            // (base64's unused trailing bits): never another tenant, never a forgery.
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["object"], "list");
            let same = valid.iter().any(|v| canonical(v) == canonical(&bytes));
            assert!(same, "accepted {:?}", String::from_utf8_lossy(&bytes));
            accepted += 1;
        } else {
            assert!(
                status == 401 || status == 431,
                "{status} for {:?}",
                String::from_utf8_lossy(&bytes)
            );
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            assert_eq!(content_type, "application/problem+json");
            refused += 1;
        }
    }
    assert!(
        refused > 100,
        "the inputs reached the front end ({refused} refused, {accepted} accepted)"
    );
}

/// What a credential header means: the scheme in lower case, the credential trimmed, and a JWT's
/// segments decoded (base64 leaves the last character's spare bits free: spellings that decode
/// alike are the same token).
fn canonical(header: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, credential) = text.split_once(' ')?;
    let credential = credential.trim();
    let parts = if credential.starts_with("bsk_") {
        vec![credential.as_bytes().to_vec()]
    } else {
        credential
            .split('.')
            .map(|part| lenient.decode(part).ok())
            .collect::<Option<Vec<_>>>()?
    };
    Some((scheme.to_ascii_lowercase(), parts))
}
