//! The README's curl walkthrough, run as written against the real binary.
use std::time::Duration;

use crate::helpers::process::{BIN, Server};

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- walkthrough").expect("walkthrough marker");
    let block = &readme[start..];
    let body_start = block.find("```sh\n").expect("sh block") + 6;
    let script = &block[body_start..body_start + block[body_start..].find("```").unwrap()];

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/billing.db", dir.path().display());
    let env = [
        ("BILLING_DATABASE__URL", db.as_str()),
        ("BILLING_SERVER__PORT", "0"),
        ("BILLING_SHUTDOWN__GRACE_PERIOD", "0s"),
    ];
    let server = Server::start(&env);
    let addr = server.wait_for_address();

    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("BASE", format!("http://{addr}"))
        .env("BILLING_DATABASE__URL", &db)
        .env("PATH", path)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the walkthrough failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(r#""number": "INV-000001""#), "{stdout}");
    assert!(stdout.contains(r#""total": 3248"#), "{stdout}");
    assert!(
        stdout.contains(r#"[{"currency":"usd","amount":1248,"formatted":"12.48"}]"#),
        "{stdout}"
    );
    for expected in [
        r#"{"billing_reason":"subscription_create","total":6000}"#,
        r#"{"credits":[3000],"charges":[7500]}"#,
        r#"{"total":22500,"applied_balance":3000,"amount_due":19500}"#,
        r#"{"number":"INV-CN-000001","pre_payment_amount":248,"refund_amount":0}"#,
        r#"[{"billing_reason":"subscription_create","period_start":"2025-01-31T00:00:00Z","total":3000},{"billing_reason":"subscription_cycle","period_start":"2025-02-28T00:00:00Z","total":3000}]"#,
        r#"["duplicate","duplicate","accepted"]"#,
        r#"[{"aggregation":"sum","value":250,"events":3}]"#,
        r#"[{"description":"Tokens (packages of 1000): 2100 used","quantity":3,"amount":450}]"#,
    ] {
        assert!(stdout.contains(expected), "{expected} missing from:\n{stdout}");
    }
    std::thread::sleep(Duration::from_millis(10));
}
