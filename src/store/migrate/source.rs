//! One migration source for both backends. A migration is portable SQL except where the two
//! dialects really differ; those lines stand in a named block:
//!
//! ```sql
//! -- dialect sqlite
//! CREATE TRIGGER … BEGIN SELECT RAISE(ABORT, '…'); END;
//! -- dialect postgres
//! CREATE FUNCTION … LANGUAGE plpgsql …;
//! -- dialect end
//! ```
//!
//! Rendering for a backend keeps the shared lines and that backend's blocks, and drops the
//! marker lines, so the text each backend runs (and sqlx checksums) has no trace of the other.
//! `build.rs` renders every migration with this same file, so it uses nothing but `std`.

/// The backends a dialect block may name.
pub const DIALECTS: &[&str] = &["sqlite", "postgres"];

const MARKER: &str = "-- dialect ";

/// The SQL `backend` runs for `source`, or why the source is malformed.
pub fn render(source: &str, backend: &str) -> Result<String, String> {
    if !DIALECTS.contains(&backend) {
        return Err(format!("unknown backend {backend:?}"));
    }
    let mut out = String::with_capacity(source.len());
    let mut block: Option<&str> = None;
    for (index, line) in source.split_inclusive('\n').enumerate() {
        let n = index + 1;
        match line.trim_end().strip_prefix(MARKER) {
            Some("end") if block.is_none() => return Err(format!("line {n}: `-- dialect end` outside a block")),
            Some("end") => block = None,
            // A block may follow another directly: the next dialect's lines start there.
            Some(name) if DIALECTS.contains(&name) => block = Some(name),
            Some(other) => return Err(format!("line {n}: unknown dialect {other:?}")),
            None if block.is_none_or(|b| b == backend) => out.push_str(line),
            None => {}
        }
    }
    match block {
        Some(name) => Err(format!("the `{name}` block is not closed with `-- dialect end`")),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str =
        "CREATE TABLE t (id TEXT);\n-- dialect sqlite\nA;\n-- dialect postgres\nB;\nC;\n-- dialect end\nD;\n";

    #[test]
    fn each_backend_gets_the_shared_lines_and_its_own_block() {
        assert_eq!(render(SOURCE, "sqlite").unwrap(), "CREATE TABLE t (id TEXT);\nA;\nD;\n");
        assert_eq!(
            render(SOURCE, "postgres").unwrap(),
            "CREATE TABLE t (id TEXT);\nB;\nC;\nD;\n"
        );
        assert_eq!(render("X;\n", "postgres").unwrap(), "X;\n", "portable SQL is unchanged");
    }

    #[test]
    fn malformed_sources_are_refused() {
        assert!(
            render("-- dialect sqlite\nA;\n", "sqlite")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            render("A;\n-- dialect end\n", "sqlite")
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            render("-- dialect mysql\nA;\n-- dialect end\n", "sqlite")
                .unwrap_err()
                .contains("unknown dialect")
        );
        assert!(render("A;\n", "mysql").is_err());
    }
}
