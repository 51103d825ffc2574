//! Names: which are valid, when two are the same, and their passwords.
//!
//! A name is shown as its owner typed it (its *display form*), but compared
//! by its *key*: the UTS #39 confusable skeleton of its NFKC case-folded
//! form, so `Alice`, `alice`, `ＡＬＩＣＥ` and `аlice` (Cyrillic а) are one
//! name. The `unicode-normalization` and `unicode-security` crates do the
//! Unicode work; `unicode-properties` tells control and format characters
//! apart.
//!
//! Passwords are kept only as argon2id hashes (a slow, salted hash: a
//! stolen Redis does not give them away), made and checked on a thread of
//! their own (`hashing`) while the request's thread waits. Concurrency
//! rule: [`HASHING`] lets one hash run at a time, so a burst of logins
//! queues up behind it instead of taking both cores from the fan-out
//! thread; no other lock is held meanwhile.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::sync::Mutex;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Longest name, in Unicode code points (after trimming).
pub const MAX_NAME_CHARS: usize = 32;
/// Shortest and longest password, in code points.
pub const MIN_PASSWORD_CHARS: usize = 4;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Wrong passwords allowed for one name per [`FAILURE_WINDOW_SECS`]; past
/// them, logins with that name get `429` until the window ends.
pub const MAX_PASSWORD_FAILURES: u64 = 5;
pub const FAILURE_WINDOW_SECS: u64 = 60;

/// One password hash at a time (see the module doc).
static HASHING: Mutex<()> = Mutex::new(());

/// Trims a proposed name and checks it: 1 to [`MAX_NAME_CHARS`] code
/// points, no control (Cc) or format (Cf: zero-width, direction overrides)
/// character, not starting with a combining mark. The error is the reason
/// shown to the user.
pub fn validate(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let chars = name.chars().count();
    let category = |c: char| c.general_category();
    if chars == 0 {
        Err("Please choose a name.".into())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "That name is too long: at most {MAX_NAME_CHARS} characters."
        ))
    } else if name
        .chars()
        .any(|c| category(c) == GeneralCategory::Control)
    {
        Err("A name cannot contain control characters.".into())
    } else if name.chars().any(|c| category(c) == GeneralCategory::Format) {
        Err(
            "A name cannot contain invisible characters (zero-width spaces, direction marks)."
                .into(),
        )
    } else if name
        .chars()
        .next()
        .is_some_and(|c| c.general_category_group() == GeneralCategoryGroup::Mark)
    {
        Err("A name cannot start with a combining mark.".into())
    } else {
        Ok(name.to_string())
    }
}

/// The key two names are compared by (see the module doc).
pub fn key(name: &str) -> String {
    // NFKC, then a full lowercase as the case fold, then NFKC again (folding
    // can denormalize), then the confusable skeleton.
    let folded: String = name
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    unicode_security::confusable_detection::skeleton(&folded).collect()
}

/// Checks a password's length; the error is the reason shown.
pub fn validate_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(format!(
            "A password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters."
        ))
    }
}

/// The argon2id hash of `password`, with a fresh random salt, as a PHC
/// string (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> String {
    hashing(|| {
        Argon2::default()
            .hash_password(password.as_bytes())
            .expect("argon2 with default parameters hashes any password")
            .to_string()
    })
}

/// Whether `password` matches a hash made by [`hash_password`].
pub fn password_matches(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    hashing(|| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Runs `hash` on a thread of its own, at the lowest priority, one hash at
/// a time. Not on the request's thread: argon2 goes some 15 KiB deep into
/// the stack, and glibc gives an ended thread's stack, pages resident and
/// all, to a later connection thread, perhaps a WebSocket's that keeps them
/// for hours (see `connection::run`). A thread of the default size never
/// lends its stack to a connection's (eight times smaller). Should no
/// thread start, the hash runs here.
fn hashing<T: Send>(hash: impl Fn() -> T + Sync) -> T {
    let _one_at_a_time = crate::lock(&HASHING);
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("hashing".into())
            .spawn_scoped(scope, || {
                lower_priority();
                hash()
            });
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => {
                lower_priority();
                hash()
            }
        }
    })
}

/// Lets the chat's threads run first while this one works (a password
/// hash, a file download): on Linux a thread has its own nice value, and
/// such a thread serves one request (it ends with it), so nothing needs
/// restoring. Elsewhere the call would change the whole process: it is not
/// made.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call; on Linux `who = 0` is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_a_key() {
        let alice = key("alice");
        for same in ["Alice", "ALICE", "ＡＬＩＣＥ", "\u{430}lice"] {
            assert_eq!(key(same), alice, "{same}");
        }
        assert_ne!(key("alicia"), alice);
        assert_eq!(key("Teacher"), key("teacher"));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate("  Zoë  ").as_deref(), Ok("Zoë"));
        assert_eq!(validate(&"é".repeat(32)).map(|n| n.chars().count()), Ok(32));
        for bad in [
            &"é".repeat(33)[..],
            " \t ",
            "a\u{7}b",
            "a\u{85}b",   // C1 control
            "a\u{200b}b", // zero-width space
            "a\u{202e}b", // right-to-left override
            "\u{301}abc", // a combining mark first
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("correct horse", &hash));
        assert!(!password_matches("wrong horse", &hash));
        assert!(!password_matches("x", "not a hash"));
        assert_ne!(hash, hash_password("correct horse"), "salted");
        assert!(validate_password("abc").is_err());
        assert!(validate_password("abcd").is_ok());
        assert!(validate_password(&"x".repeat(129)).is_err());
    }
}
