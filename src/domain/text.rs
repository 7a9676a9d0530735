//! What counts as text in names, descriptions and metadata, and the same rules as regular
//! expression classes for the OpenAPI document (ECMA-262 and Python syntax, which agree here).

/// Regex class body for [`is_control`].
pub const CONTROL_CLASS: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F";
/// Regex class body for Unicode White_Space ([`char::is_whitespace`], what `str::trim` removes).
pub const SPACE_CLASS: &str = r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// The control characters no text may hold: the C0 controls but tab, line feed and carriage
/// return, and DEL. PostgreSQL cannot store NUL at all; none of them belongs in a name.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn controls_but_tab_and_line_ends() {
        assert!(super::is_control('\u{0}') && super::is_control('\u{7f}') && super::is_control('\u{1b}'));
        assert!(!super::is_control('\t') && !super::is_control('\n') && !super::is_control('\r'));
        assert!(!super::is_control('a') && !super::is_control('\u{85}'));
    }
}
