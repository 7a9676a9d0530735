//! What this binary is: embedded at build time by `build.rs`.
use serde::Serialize;

pub const SERVICE_NAME: &str = "billing-api";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("BUILDINFO_GIT_COMMIT");
pub const RUSTC_VERSION: &str = env!("BUILDINFO_RUSTC_VERSION");
pub const TARGET: &str = env!("BUILDINFO_TARGET");
pub const PROFILE: &str = env!("BUILDINFO_PROFILE");
/// Empty unless the build was given SOURCE_DATE_EPOCH (reproducible builds never read the clock).
pub const SOURCE_DATE_EPOCH: &str = env!("BUILDINFO_SOURCE_DATE_EPOCH");

#[derive(Debug, Serialize)]
pub struct BuildInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
    pub target: &'static str,
    pub profile: &'static str,
    pub rustc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<&'static str>,
}

pub const BUILD_INFO: BuildInfo = BuildInfo {
    name: SERVICE_NAME,
    version: VERSION,
    commit: GIT_COMMIT,
    target: TARGET,
    profile: PROFILE,
    rustc: RUSTC_VERSION,
    source_date_epoch: if SOURCE_DATE_EPOCH.is_empty() {
        None
    } else {
        Some(SOURCE_DATE_EPOCH)
    },
};

/// The multi-line text printed by `--version`.
pub fn long_version() -> String {
    let mut s =
        format!("{VERSION}\ncommit:  {GIT_COMMIT}\ntarget:  {TARGET}\nprofile: {PROFILE}\nrustc:   {RUSTC_VERSION}");
    if !SOURCE_DATE_EPOCH.is_empty() {
        s.push_str(&format!("\nsource date epoch: {SOURCE_DATE_EPOCH}"));
    }
    s
}
