//! Anonymous display names: parse, don't validate.
//!
//! A [`DisplayName`] is NFKC-normalised, trimmed, 1 to 32 characters, free of invisible and
//! direction-changing characters, and carries no contact details (so nobody is pressured into, or
//! accidentally, revealing who they are). Its [`DisplayName::skeleton`] is the case-insensitive
//! confusable form used to keep names unique within a meeting.

use regex::Regex;
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

/// Longest display name, in characters, after normalisation.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a name was refused; each variant's message tells the member what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a display name cannot be empty")]
    Empty,
    #[error("a display name can be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("a display name cannot contain invisible, control or text-direction characters")]
    InvisibleCharacters,
    #[error("a display name cannot contain an email address; choose a name that does not identify you")]
    Email,
    #[error("a display name cannot contain a phone number; choose a name that does not identify you")]
    Phone,
    #[error("a display name cannot contain a web address")]
    Url,
    #[error("a display name cannot contain an @handle; choose a name that does not identify you")]
    Handle,
}

/// A valid display name and its uniqueness key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisplayName {
    text: String,
    skeleton: String,
}

fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                  // soft hyphen
            | '\u{034F}'                // combining grapheme joiner
            | '\u{061C}'                // arabic letter mark
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // hangul fillers (render blank)
            | '\u{180E}'                // mongolian vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'                // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tags
            | '\u{FE00}'..='\u{FE0F}'   // variation selectors
        )
}

struct Patterns {
    email: Regex,
    url: Regex,
    handle: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        // The patterns are constants checked by the unit tests below, so they compile.
        email: Regex::new(r"(?i)[^\s@]+@[^\s@]+\.[a-z]{2,}").expect("constant regex"),
        url: Regex::new(r"(?i)(\b[a-z][a-z0-9+.-]*://|\bwww\.|\b[a-z0-9-]+\.(com|org|net|io|me|co|uk|de|fr|us|ca|au|info|biz|app|dev|ly|gg|tv|xyz|link|site|online)\b)").expect("constant regex"),
        handle: Regex::new(r"(^|[\s(\[])@[\p{L}\p{N}_.]{2,}").expect("constant regex"),
    })
}

/// Seven or more digits, possibly separated by spaces, dots, dashes or brackets, reads as a phone number.
fn looks_like_phone(s: &str) -> bool {
    let mut digits = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 7 {
                return true;
            }
        } else if !matches!(c, ' ' | '.' | '-' | '(' | ')' | '+' | '/') {
            digits = 0;
        }
    }
    false
}

impl DisplayName {
    /// Normalises and checks a name a person typed.
    pub fn parse(raw: &str) -> Result<DisplayName, NameError> {
        // Refuse invisible characters before normalisation, which could otherwise hide some.
        if raw.chars().any(is_forbidden_char) {
            return Err(NameError::InvisibleCharacters);
        }
        let nfkc: String = raw.nfkc().collect();
        if nfkc.chars().any(is_forbidden_char) {
            return Err(NameError::InvisibleCharacters);
        }
        // Trim and collapse runs of whitespace, so "Sam  " and "Sam" are one name.
        let text = nfkc.split_whitespace().collect::<Vec<_>>().join(" ");
        let count = text.chars().count();
        if count == 0 {
            return Err(NameError::Empty);
        }
        if count > MAX_NAME_CHARS {
            return Err(NameError::TooLong);
        }
        let p = patterns();
        if p.email.is_match(&text) {
            return Err(NameError::Email);
        }
        if p.url.is_match(&text) {
            return Err(NameError::Url);
        }
        if p.handle.is_match(&text) {
            return Err(NameError::Handle);
        }
        if looks_like_phone(&text) {
            return Err(NameError::Phone);
        }
        let skeleton = skeleton_of(&text);
        Ok(DisplayName { text, skeleton })
    }

    /// The name as shown.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key two names collide on: case-folded confusable skeleton (UTS #39).
    pub fn skeleton(&self) -> &str {
        &self.skeleton
    }

    /// A variant of this name with a number, still within the length limit: `Sam 2`.
    pub fn numbered(&self, n: u32) -> DisplayName {
        let suffix = format!(" {n}");
        let keep = MAX_NAME_CHARS - suffix.chars().count();
        let base: String = self.text.chars().take(keep).collect();
        let text = format!("{}{suffix}", base.trim_end());
        let skeleton = skeleton_of(&text);
        DisplayName { text, skeleton }
    }
}

fn skeleton_of(text: &str) -> String {
    // Lower-case before and after the skeleton mapping: the confusables table maps some
    // lower-case letters to upper-case prototypes and the other way round.
    let lower = text.to_lowercase();
    let first: String = unicode_security::confusable_detection::skeleton(&lower).collect();
    let lower = first.to_lowercase();
    unicode_security::confusable_detection::skeleton(&lower).collect::<String>().to_lowercase()
}

const ADJECTIVES: &[&str] = &[
    "Calm", "Quiet", "Gentle", "Bright", "Steady", "Kind", "Brave", "Warm", "Patient", "Hopeful", "Clear", "Golden",
    "Silver", "Morning", "Evening", "Open", "Still", "Honest", "Bold", "Soft",
];
const NOUNS: &[&str] = &[
    "Heron", "Otter", "Maple", "River", "Willow", "Finch", "Harbor", "Meadow", "Cedar", "Lantern", "Sparrow", "Pine",
    "Brook", "Fox", "Owl", "Aspen", "Robin", "Fern", "Stone", "Wren",
];

/// A pseudonym from random bits the caller supplies (the core has no randomness of its own).
pub fn pseudonym(random: u64) -> DisplayName {
    let a = ADJECTIVES[(random % ADJECTIVES.len() as u64) as usize];
    let n = NOUNS[((random >> 16) % NOUNS.len() as u64) as usize];
    let text = format!("{a} {n}");
    let skeleton = skeleton_of(&text);
    DisplayName { text, skeleton }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_trims() {
        let n = DisplayName::parse("  Ｓａｍ   R.  ").unwrap();
        assert_eq!(n.as_str(), "Sam R.");
    }

    #[test]
    fn length_limits_count_characters_after_normalisation() {
        assert_eq!(DisplayName::parse("   "), Err(NameError::Empty));
        assert_eq!(DisplayName::parse(""), Err(NameError::Empty));
        assert!(DisplayName::parse(&"é".repeat(32)).is_ok());
        assert_eq!(DisplayName::parse(&"é".repeat(33)), Err(NameError::TooLong));
        // "ﬀ" is one character that NFKC turns into two.
        assert_eq!(DisplayName::parse(&"ﬀ".repeat(17)), Err(NameError::TooLong));
    }

    #[test]
    fn refuses_invisible_and_direction_characters() {
        for s in
            ["Sa\u{200B}m", "Sam\u{202E}", "\u{2067}Sam", "Sa\u{0007}m", "Sam\u{FEFF}", "S\u{200D}am", "Sam\u{E0041}"]
        {
            assert_eq!(DisplayName::parse(s), Err(NameError::InvisibleCharacters), "{s:?}");
        }
    }

    #[test]
    fn refuses_contact_details() {
        assert_eq!(DisplayName::parse("sam@example.org"), Err(NameError::Email));
        assert_eq!(DisplayName::parse("Sam 555-123-4567"), Err(NameError::Phone));
        assert_eq!(DisplayName::parse("+44 20 7946 0958"), Err(NameError::Phone));
        assert_eq!(DisplayName::parse("see example.com"), Err(NameError::Url));
        assert_eq!(DisplayName::parse("https://x.y"), Err(NameError::Url));
        assert_eq!(DisplayName::parse("www.sam"), Err(NameError::Url));
        assert_eq!(DisplayName::parse("@sammy"), Err(NameError::Handle));
        assert_eq!(DisplayName::parse("Sam (@sam_r)"), Err(NameError::Handle));
        // Ordinary names with numbers, dots and an at-sign in passing stay valid.
        assert!(DisplayName::parse("Sam R.").is_ok());
        assert!(DisplayName::parse("Sam 2").is_ok());
        assert!(DisplayName::parse("Year 2024").is_ok());
        assert!(DisplayName::parse("J. @ home").is_ok());
    }

    #[test]
    fn skeleton_collides_case_and_confusables() {
        let a = DisplayName::parse("Sam").unwrap();
        let b = DisplayName::parse("SAM").unwrap();
        let c = DisplayName::parse("\u{0405}am").unwrap(); // Cyrillic capital DZE
        let d = DisplayName::parse("\u{0455}am").unwrap(); // Cyrillic small DZE
        assert_eq!(a.skeleton(), b.skeleton());
        assert_eq!(a.skeleton(), c.skeleton());
        assert_eq!(a.skeleton(), d.skeleton());
        assert_ne!(a.skeleton(), DisplayName::parse("Pam").unwrap().skeleton());
    }

    #[test]
    fn numbered_stays_within_limit() {
        let long = DisplayName::parse(&"a".repeat(32)).unwrap();
        let n = long.numbered(12);
        assert_eq!(n.as_str().chars().count(), 32);
        assert!(n.as_str().ends_with(" 12"));
        assert!(DisplayName::parse(n.as_str()).is_ok());
    }

    #[test]
    fn pseudonyms_are_valid_names() {
        for r in 0..500u64 {
            let p = pseudonym(r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert_eq!(DisplayName::parse(p.as_str()).as_ref(), Ok(&p));
        }
    }
}
