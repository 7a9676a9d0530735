//! Credentials: API keys and JWTs, every way they can be wrong, and scopes.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use billing_api::store::Backend;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::jwt::{Issuer, JwksServer, claims, now};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const SECRET: &str = "a-test-hmac-secret-of-at-least-32-bytes";

fn jwt_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("BILLING_AUTH__JWT_ISSUER", "https://idp.test".to_owned()),
        ("BILLING_AUTH__JWT_AUDIENCE", "billing".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    env
}

async fn spawn_jwt(backend: Backend, env: Vec<(&'static str, String)>) -> Option<TestApp> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(backend, &env).await
}

async fn status_with(app: &TestApp, token: &str) -> (u16, Option<String>) {
    let response = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    if status >= 400 {
        let body: Value = response.json().await.unwrap();
        assert!(body["code"].is_string(), "problem+json: {body}");
    }
    (status, challenge)
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

backend_tests!(
    api_keys_are_checked_revoked_at_once_and_scoped,
    hmac_jwts_are_fully_validated
);

async fn api_keys_are_checked_revoked_at_once_and_scoped(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let response = app.get("/v1/customers").await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"billing-api\"");

    let key = app.key("acme", &["customers:read"]).await;
    assert_eq!(status_with(&app, &key).await.0, 200);
    for bad in ["Basic abc", "Bearer", "Bearer bsk_nothex_zz"] {
        let r = app
            .client
            .get(app.url("/v1/customers"))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    // Change the secret's last digit (to another digit: the same one would be the real key).
    let other = if key.ends_with('0') { '1' } else { '0' };
    let (status, challenge) = status_with(&app, &format!("{}{other}", &key[..key.len() - 1])).await;
    assert_eq!(status, 401, "a wrong secret for a real key id");
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"billing-api\", error=\"invalid_token\"")
    );
    let unknown = format!("bsk_{}_{}", "0".repeat(16), "1".repeat(64));
    assert_eq!(status_with(&app, &unknown).await.0, 401);

    // Scope: reading customers does not allow writing them, nor reading invoices.
    let api = app.api_with_key(&key);
    let refused = api.post("/v1/customers", json!({"name": "x"})).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["code"], "insufficient_scope");
    assert!(
        refused.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"customers:write\"")
    );
    assert_eq!(api.get("/v1/invoices").await.status, 403);

    // Last use is recorded (in the background).
    let id = format!("key_{}", &key[4..20]);
    let mut used = None;
    for _ in 0..50 {
        let mut conn = app.store.pool().acquire().await.unwrap();
        used = billing_api::store::tenants::find_key(&mut conn, &id)
            .await
            .unwrap()
            .unwrap()
            .last_used;
        if used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used.is_some(), "last_used recorded");

    // Revocation takes effect on the very next request.
    let mut conn = app.store.pool().acquire().await.unwrap();
    assert!(
        billing_api::store::tenants::revoke_key(&mut conn, &id, now())
            .await
            .unwrap()
    );
    drop(conn);
    assert_eq!(status_with(&app, &key).await.0, 401);
}

async fn hmac_jwts_are_fully_validated(backend: Backend) {
    let env = jwt_env(&[
        ("BILLING_AUTH__JWT_ALGORITHMS", "HS256".into()),
        ("BILLING_AUTH__JWT_HMAC_SECRET", SECRET.into()),
    ]);
    let Some(app) = spawn_jwt(backend, env).await else {
        return;
    };
    let good = claims("acme");
    let token = hs256(&good, SECRET.as_bytes());
    assert_eq!(status_with(&app, &token).await.0, 200);

    // The tenant comes from the token: what it creates belongs to that tenant.
    let jwt_api = app.api_with_key(&token);
    let id = jwt_api.post("/v1/customers", json!({"name": "via jwt"})).await.id();
    let key_api = app.tenant("acme").await;
    assert_eq!(key_api.get(&format!("/v1/customers/{id}")).await.status, 200);
    assert_eq!(
        app.tenant("globex")
            .await
            .get(&format!("/v1/customers/{id}"))
            .await
            .status,
        404
    );

    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        (
            "expired beyond the leeway",
            hs256(&with(json!({"exp": now() - 120})), SECRET.as_bytes()),
        ),
        (
            "not yet valid",
            hs256(&with(json!({"nbf": now() + 600})), SECRET.as_bytes()),
        ),
        (
            "wrong issuer",
            hs256(&with(json!({"iss": "https://evil.test"})), SECRET.as_bytes()),
        ),
        (
            "wrong audience",
            hs256(&with(json!({"aud": "other"})), SECRET.as_bytes()),
        ),
        (
            "signed with another secret",
            hs256(&good, b"another-secret-that-is-32-bytes-long!"),
        ),
        ("no tenant", hs256(&with(json!({"tenant_id": null})), SECRET.as_bytes())),
        ("no exp", hs256(&with(json!({"exp": null})), SECRET.as_bytes())),
        // Validly signed but too big to look at (a credential is at most 8 KiB).
        (
            "a 9 KB claim (12 KB encoded)",
            hs256(&with(json!({"pad": "x".repeat(9 * 1024)})), SECRET.as_bytes()),
        ),
        (
            "a NUL in the tenant",
            hs256(&with(json!({"tenant_id": "ac\u{0}me"})), SECRET.as_bytes()),
        ),
        (
            "an escape in the subject",
            hs256(&with(json!({"sub": "u\u{1b}[2J"})), SECRET.as_bytes()),
        ),
    ];
    for (what, token) in cases {
        assert_eq!(status_with(&app, &token).await.0, 401, "{what}");
    }
    // A 100 KB claim was accepted and created objects; its head is over the limit now.
    let huge = hs256(&with(json!({"pad": "x".repeat(100 * 1024)})), SECRET.as_bytes());
    let response = app
        .client
        .post(app.url("/v1/customers"))
        .bearer_auth(&huge)
        .json(&json!({"name": "big"}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(response, 431, "request_header_fields_too_large").await;
    // Within the leeway is fine.
    assert_eq!(
        status_with(&app, &hs256(&with(json!({"exp": now() - 5})), SECRET.as_bytes()))
            .await
            .0,
        200
    );

    // A tampered payload: same signature, different tenant.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(json!({"tenant_id": "globex"}))).unwrap());
    assert_eq!(status_with(&app, &parts.join(".")).await.0, 401, "tampered");

    // alg: none is never accepted.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
    assert_eq!(
        status_with(&app, &format!("{header}.{payload}.")).await.0,
        401,
        "alg none"
    );

    // A scope the token lacks.
    let api = app.api_with_key(&token);
    assert_eq!(api.get("/v1/invoices").await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_key_is_not_an_hmac_secret() {
    let issuer = Issuer::new("k1");
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("idp.pem");
    std::fs::write(&pem, issuer.public_pem()).unwrap();
    let env = jwt_env(&[
        ("BILLING_AUTH__JWT_ALGORITHMS", "EdDSA".into()),
        ("BILLING_AUTH__JWT_PUBLIC_KEY_FILE", pem.display().to_string()),
    ]);
    let Some(app) = spawn_jwt(Backend::Sqlite, env).await else {
        return;
    };
    assert_eq!(status_with(&app, &issuer.token(claims("acme"))).await.0, 200);
    // The classic confusion attack: HS256 "signed" with the public key as the HMAC secret.
    let forged = hs256(&claims("acme"), issuer.public_pem().as_bytes());
    assert_eq!(status_with(&app, &forged).await.0, 401);
    // A token signed by someone else's key.
    assert_eq!(status_with(&app, &Issuer::new("k1").token(claims("acme"))).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refreshes_the_jwks_at_a_limited_rate() {
    let first = Issuer::new("k1");
    let jwks = JwksServer::start(vec![first.jwk()]).await;
    let env = jwt_env(&[
        ("BILLING_AUTH__JWT_ALGORITHMS", "EdDSA".into()),
        ("BILLING_AUTH__JWT_JWKS_URL", jwks.url.clone()),
        ("BILLING_AUTH__JWKS_REFRESH_INTERVAL", "1s".into()),
    ]);
    let Some(app) = spawn_jwt(Backend::Sqlite, env).await else {
        return;
    };
    assert_eq!(status_with(&app, &first.token(claims("acme"))).await.0, 200);
    assert_eq!(status_with(&app, &first.token(claims("acme"))).await.0, 200);
    assert_eq!(jwks.fetch_count(), 1, "keys are cached");

    // The provider rotates in a new key; a token with its kid arrives before we know it.
    let second = Issuer::new("k2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    jwks.keys.lock().await.push(second.jwk());
    assert_eq!(
        status_with(&app, &second.token(claims("acme"))).await.0,
        200,
        "an unknown kid triggers a refresh"
    );
    assert_eq!(jwks.fetch_count(), 2);

    // A flood of tokens with a kid nobody knows does not flood the provider.
    for _ in 0..5 {
        assert_eq!(status_with(&app, &Issuer::new("k9").token(claims("acme"))).await.0, 401);
    }
    assert!(
        jwks.fetch_count() <= 3,
        "refreshes are rate-limited: {}",
        jwks.fetch_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_key_set_is_not_read() {
    // The provider's answer is not ours: 300 KiB of keys (the real one among them) is refused.
    let issuer = Issuer::new("k1");
    let mut keys: Vec<Value> = (0..2000)
        .map(|i| Issuer::new(&format!("pad-{i:04}-{}", "x".repeat(100))).jwk())
        .collect();
    keys.push(issuer.jwk());
    let jwks = JwksServer::start(keys).await;
    let env = jwt_env(&[
        ("BILLING_AUTH__JWT_ALGORITHMS", "EdDSA".into()),
        ("BILLING_AUTH__JWT_JWKS_URL", jwks.url.clone()),
        ("BILLING_AUTH__JWKS_REFRESH_INTERVAL", "1s".into()),
    ]);
    let Some(app) = spawn_jwt(Backend::Sqlite, env).await else {
        return;
    };
    assert_eq!(status_with(&app, &issuer.token(claims("acme"))).await.0, 401);
    assert!(jwks.fetch_count() >= 1, "the set was asked for");
    // The same provider with a set of normal size is used.
    jwks.keys.lock().await.retain(|k| k["kid"] == "k1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status_with(&app, &issuer.token(claims("acme"))).await.0, 200);
}

#[test]
fn jwt_configuration_mistakes_are_reported_together() {
    use billing_api::config::{Config, Sources};
    let env = [
        ("BILLING_AUTH__JWT_ALGORITHMS", "HS256,RS256,XX1"),
        ("BILLING_AUTH__JWT_HMAC_SECRET", "short"),
        ("BILLING_AUTH__JWT_JWKS_URL", "https://idp.test/jwks"),
    ];
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let err = Config::load(&Sources { file: None, env }).unwrap_err().to_string();
    for needle in [
        "set exactly one of",
        "\"XX1\" is not a JWT algorithm",
        "an HMAC secret only verifies",
        "auth.jwt_issuer: required",
        "auth.jwt_audience: required",
        "at least 32 bytes",
    ] {
        assert!(err.contains(needle), "{needle:?} in\n{err}");
    }
    assert!(!err.contains("short"), "the secret is not echoed: {err}");
}
