//! Embeds build metadata and the SQL migrations (rendered for each backend) into the binary.
//!
//! Nothing here reads the wall clock: the build date is only embedded when SOURCE_DATE_EPOCH is
//! given, so two builds of one commit are bit-for-bit identical.
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

#[path = "src/store/migrate/source.rs"]
mod source;

fn main() {
    println!("cargo:rerun-if-env-changed=BUILD_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=src/store/migrate/source.rs");

    let commit = env::var("BUILD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| command_output("git", &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = command_output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let build_date = env::var("SOURCE_DATE_EPOCH").unwrap_or_default();

    println!("cargo:rustc-env=BUILDINFO_GIT_COMMIT={}", commit.trim());
    println!("cargo:rustc-env=BUILDINFO_RUSTC_VERSION={}", rustc_version.trim());
    println!(
        "cargo:rustc-env=BUILDINFO_TARGET={}",
        env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=BUILDINFO_PROFILE={}",
        env::var("PROFILE").unwrap_or_default()
    );
    println!("cargo:rustc-env=BUILDINFO_SOURCE_DATE_EPOCH={}", build_date.trim());

    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for backend in source::DIALECTS {
        code.push_str(&embed_migrations(backend));
    }
    fs::write(Path::new(&out_dir).join("migrations.rs"), code).expect("write migrations.rs");
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Emits `pub const <BACKEND>: &[EmbeddedMigration]` from `migrations/<version>_<name>.{up,down}.sql`,
/// each rendered for the backend (see `src/store/migrate/source.rs`) into `OUT_DIR`. The build
/// fails if a migration lacks its down file (every migration must be reversible) or has a
/// malformed dialect block.
fn embed_migrations(backend: &str) -> String {
    // The package being built (read when the script runs: a copy of the tree elsewhere is another package).
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("migrations");
    let out_dir = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("migrations")
        .join(backend);
    fs::create_dir_all(&out_dir).expect("create the rendered migrations folder");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();

    let render = |path: &Path| -> String {
        let source = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let sql = source::render(&source, backend).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rendered = out_dir.join(path.file_name().expect("a file name"));
        fs::write(&rendered, sql).expect("write a rendered migration");
        rendered.display().to_string()
    };
    let mut out = format!("pub const {}: &[EmbeddedMigration] = &[\n", backend.to_uppercase());
    for up in files.iter().filter(|p| p.to_string_lossy().ends_with(".up.sql")) {
        let name = up
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".up.sql")
            .to_owned();
        let (version, description) = name
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name} must be named <version>_<description>"));
        let version: i64 = version.parse().unwrap_or_else(|_| panic!("bad version in {name}"));
        let down = up.with_file_name(format!("{name}.down.sql"));
        assert!(down.exists(), "migration {name} has no down file: {}", down.display());
        let up_sql = render(up);
        // sqlx's marker: a migration that must not run in a transaction (CREATE INDEX CONCURRENTLY).
        let no_tx = fs::read_to_string(&up_sql).unwrap().starts_with("-- no-transaction");
        writeln!(
            out,
            "    EmbeddedMigration {{ version: {version}, name: {name:?}, description: {:?}, no_tx: {no_tx}, up: include_str!({up_sql:?}), down: include_str!({:?}) }},",
            description.replace('_', " "),
            render(&down),
        )
        .unwrap();
    }
    out.push_str("];\n");
    out
}
