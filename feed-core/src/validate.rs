//! Rules for what users may send. Each failure names the field at fault, so
//! the API can answer with a message a client can act on.

/// Shortest handle accepted.
pub const HANDLE_MIN: usize = 3;
/// Longest handle accepted: fits in a URL, a mention and a narrow column.
pub const HANDLE_MAX: usize = 30;
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest post, in characters (not bytes: emoji count as one).
pub const CONTENT_MAX: usize = 500;
/// Shortest password: anything shorter is guessable offline in minutes.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in characters: pass phrases fit (NIST SP 800-63B asks
/// for at least 64), and it bounds the work one login can cost the server.
pub const PASSWORD_MAX: usize = 64;
/// The most bytes a password within [`PASSWORD_MAX`] can take (4 per
/// character in UTF-8): a cheap first check before counting characters.
pub const PASSWORD_MAX_BYTES: usize = 4 * PASSWORD_MAX;
/// Page size when the client names none.
pub const PAGE_DEFAULT: u32 = 20;
/// Largest page: one request's database and Redis work stays bounded.
pub const PAGE_MAX: u32 = 100;

/// A rejected input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The JSON field or query parameter at fault.
    pub field: &'static str,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// Normalizes a handle to lower case and checks it: 3 to 30 of `a-z`, `0-9`
/// and `_`. Handles are unique regardless of case.
pub fn handle(raw: &str) -> Result<String, Invalid> {
    let handle = raw.to_ascii_lowercase();
    let len = handle.chars().count();
    if !(HANDLE_MIN..=HANDLE_MAX).contains(&len) {
        return Err(invalid(
            "handle",
            format!("must be {HANDLE_MIN} to {HANDLE_MAX} characters long, got {len}"),
        ));
    }
    if let Some(bad) = handle
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(invalid(
            "handle",
            format!("may contain only letters a-z, digits and '_', found {bad:?}"),
        ));
    }
    Ok(handle)
}

/// Checks a display name: trimmed, 1 to 64 characters, no control
/// characters.
pub fn display_name(raw: &str) -> Result<String, Invalid> {
    let name = raw.trim();
    let len = name.chars().count();
    if len == 0 {
        return Err(invalid("display_name", "must not be blank"));
    }
    if len > DISPLAY_NAME_MAX {
        return Err(invalid(
            "display_name",
            format!("must be at most {DISPLAY_NAME_MAX} characters, got {len}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Checks a password's length; its content is the user's business.
pub fn password(raw: &str) -> Result<(), Invalid> {
    if raw.chars().count() < PASSWORD_MIN {
        return Err(invalid(
            "password",
            format!("must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if raw.len() > PASSWORD_MAX_BYTES || raw.chars().count() > PASSWORD_MAX {
        return Err(invalid(
            "password",
            format!("must be at most {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// Checks a post's content: not blank, at most 500 characters, and no NUL
/// (which PostgreSQL cannot store in text). Newlines and tabs are kept.
pub fn content(raw: &str) -> Result<String, Invalid> {
    if raw.trim().is_empty() {
        return Err(invalid("content", "must not be blank"));
    }
    let len = raw.chars().count();
    if len > CONTENT_MAX {
        return Err(invalid(
            "content",
            format!("must be at most {CONTENT_MAX} characters, got {len}"),
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "content",
            "must not contain control characters other than newlines and tabs",
        ));
    }
    Ok(raw.to_owned())
}

/// Resolves a requested page size: the default when absent, else 1 to 100.
pub fn page_size(requested: Option<u32>) -> Result<u32, Invalid> {
    match requested {
        None => Ok(PAGE_DEFAULT),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(n) => Err(invalid(
            "limit",
            format!("must be between 1 and {PAGE_MAX}, got {n}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handles_are_normalized_and_checked() {
        assert_eq!(handle("Alice_01").unwrap(), "alice_01");
        assert_eq!(handle("ab").unwrap_err().field, "handle");
        assert!(handle("al ice").unwrap_err().message.contains("' '"));
        assert!(handle("ålice").is_err());
        assert!(handle(&"a".repeat(31)).is_err());
    }

    #[test]
    fn content_counts_characters_not_bytes() {
        assert!(content(&"é".repeat(CONTENT_MAX)).is_ok());
        assert!(content(&"é".repeat(CONTENT_MAX + 1)).is_err());
        assert!(content("   \n").is_err());
        assert!(content("nul\0byte").is_err());
        assert_eq!(content("two\nlines").unwrap(), "two\nlines");
    }

    #[test]
    fn page_size_has_a_default_and_bounds() {
        assert_eq!(page_size(None).unwrap(), PAGE_DEFAULT);
        assert_eq!(page_size(Some(PAGE_MAX)).unwrap(), PAGE_MAX);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(PAGE_MAX + 1)).is_err());
    }

    proptest! {
        #[test]
        fn accepted_handles_are_lowercase_ascii(raw in ".{0,40}") {
            if let Ok(h) = handle(&raw) {
                prop_assert!(h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                prop_assert!((HANDLE_MIN..=HANDLE_MAX).contains(&h.len()));
            }
        }

        #[test]
        fn accepted_content_never_holds_nul(raw in "\\PC{0,20}\\x00?\\PC{0,20}") {
            if let Ok(c) = content(&raw) {
                prop_assert!(!c.contains('\0'));
            }
        }
    }
}
