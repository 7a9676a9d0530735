//! The OpenAPI document: served, printed, and complete.
use billing_api::store::Backend;
use serde_json::Value;

use crate::helpers::process::run;
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_served_and_printed_documents_agree_and_describe_every_operation() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let served: Value = app.get("/openapi.json").await.json().await.unwrap();
    let (status, printed, _) = run(&["openapi"], &[]);
    assert!(status.success());
    assert_eq!(served, serde_json::from_str::<Value>(&printed).unwrap());
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(served["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let mut operations = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "unique operationId at {method} {path}"
            );
            assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{method} {path}");
            for status in ["401", "404", "422", "500", "503"] {
                let content = &op["responses"][status]["content"]["application/problem+json"];
                assert!(
                    content.is_object(),
                    "{method} {path} documents {status} as problem+json"
                );
            }
            let has_key = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
            assert_eq!(has_key, method != "get", "{method} {path}: Idempotency-Key on writes");
        }
    }
    assert_eq!(operations, 67);
}
