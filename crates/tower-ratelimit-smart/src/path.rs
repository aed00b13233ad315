//! The path that per-prefix rules are matched against, normalised the way
//! proxies and servers do before routing, so that spellings of one path
//! that reach the same handler are also limited by the same rule.

use std::borrow::Cow;

/// `path` with empty segments collapsed (`//a` is `/a`), `.` and `..`
/// resolved (never above the root) and percent-encoded unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) decoded; other escapes are kept,
/// with upper-case hex digits, since decoding them (`%2F`) would change
/// which segments the path has. A `%` that starts no escape stands for
/// itself and is written `%25`, so that decoding cannot make a new escape
/// of it (`%%34%31` is `%2541`, not `%41`, which would be `A`). The decoding comes first, as in RFC 3986
/// section 6.2.2, so `%2e%2e` is a `..` segment.
///
/// A trailing slash is kept: `/a/` stays `/a/`, and `/a/.` becomes `/a/`.
///
/// Borrows when the path is already normal, which is the common case and
/// costs one pass over it. A path that does not start with `/` (`*`) is
/// returned as is.
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path) { Cow::Borrowed(path) } else { Cow::Owned(rebuild(path)) }
}

/// Whether `prefix` covers `path` by whole segments: `/api` covers `/api`
/// and `/api/items` but not `/apiary`. Both must be normalised, and the
/// prefix must not end in `/` (the empty prefix covers every path).
pub(crate) fn covers(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return true };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." || !escapes_normal(segment) {
            return false;
        }
    }
    true
}

/// Every `%` in `segment` starts an escape, none of an unreserved
/// character or in lower case.
fn escapes_normal(segment: &str) -> bool {
    segment.split('%').skip(1).all(|piece| match escape(piece) {
        Some(byte) => !unreserved(byte) && !piece.as_bytes()[..2].iter().any(u8::is_ascii_lowercase),
        None => false,
    })
}

fn rebuild(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else { return path.to_owned() };
    let mut out = String::with_capacity(path.len());
    // Where each kept segment starts in `out`, so `..` can drop the last.
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = rest.split('/').peekable();
    while let Some(raw) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        push_decoded(&mut out, raw);
        match &out[start + 1..] {
            "" | "." => {
                out.truncate(start);
                trailing_slash = last;
            }
            ".." => {
                out.truncate(starts.pop().unwrap_or(start));
                trailing_slash = last;
            }
            _ => {
                starts.push(start);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// Appends `segment` with unreserved escapes decoded and the others in
/// upper case; a `%` that starts no valid escape is written `%25`.
fn push_decoded(out: &mut String, segment: &str) {
    let mut pieces = segment.split('%');
    if let Some(first) = pieces.next() {
        out.push_str(first);
    }
    for piece in pieces {
        match escape(piece) {
            Some(byte) if unreserved(byte) => out.push(char::from(byte)),
            Some(_) => {
                out.push('%');
                out.push_str(&piece[..2].to_ascii_uppercase());
            }
            None => {
                out.push_str("%25");
                out.push_str(piece);
                continue;
            }
        }
        out.push_str(&piece[2..]);
    }
}

/// The byte a `%XX` escape stands for, given the text after the `%`.
fn escape(after_percent: &str) -> Option<u8> {
    let hex = after_percent.get(..2)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for path in ["/", "/a", "/a/", "/auth/login", "/a/b.c/.d/..e", "/files/a%20b", "/x%2Fy", "/%25zz", "*", ""] {
            assert!(matches!(normalize(path), Cow::Borrowed(_)), "{path}");
        }
    }

    #[test]
    fn other_spellings_are_rewritten() {
        for (path, normal) in [
            ("//", "/"),
            ("//a//b", "/a/b"),
            ("/a//", "/a/"),
            ("/./a/.", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/%61%7E%2d%2E%5F", "/a~-._"),
            ("/a/%2e%2E/b", "/b"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb/./c", "/a%2Fb/c"),
            ("/%c3%a9", "/%C3%A9"),
            ("/é/./x", "/é/x"),
            ("/%/./%z", "/%25/%25z"),
            ("/a%6", "/a%256"),
            ("/a%6/.", "/a%256/"),
            ("/%zz", "/%25zz"),
            ("/%%34%31", "/%2541"),
        ] {
            assert_eq!(normalize(path), normal, "{path}");
            assert!(matches!(normalize(normal), Cow::Borrowed(_)), "{normal} is normal");
        }
    }

    #[test]
    fn prefixes_cover_whole_segments() {
        assert!(covers("/api", "/api") && covers("/api", "/api/") && covers("/api", "/api/items"));
        assert!(!covers("/api", "/apiary") && !covers("/api", "/ap") && !covers("/api", "/"));
        assert!(covers("", "/") && covers("", "/anything"));
    }

    use proptest::prelude::*;

    /// A segment of a normal path: unreserved characters and escapes of
    /// reserved ones, never `.` or `..` alone.
    fn segment() -> impl Strategy<Value = String> {
        "([a-zA-Z0-9_~-]|%2F|%3A|%C3%A9){1,6}(\\.[a-z]{1,3})?"
    }

    /// `normal` spelled another way: each character of a segment may be
    /// percent-encoded (either case), and empty, `.` and `x/..` segments
    /// may come before each segment.
    fn respelled(segments: &[String], noise: &[(u8, u8)]) -> String {
        let mut out = String::new();
        for (i, segment) in segments.iter().enumerate() {
            let (before, encode) = noise[i % noise.len()];
            match before % 4 {
                1 => out.push('/'),
                2 => out.push_str("/."),
                3 => out.push_str("/junk/%2e%2E"),
                _ => {}
            }
            out.push('/');
            let mut chars = segment.char_indices().peekable();
            while let Some((at, c)) = chars.next() {
                if c == '%' {
                    out.push_str(&segment[at..at + 3]);
                    chars.next();
                    chars.next();
                } else if encode & (1 << (at % 8)) != 0 && c.is_ascii() {
                    let hex = format!("%{:02x}", c as u8);
                    out.push_str(&if encode & 1 == 0 { hex.to_uppercase() } else { hex });
                } else {
                    out.push(c);
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Any path normalises to a normal path: rooted, no empty, `.` or
        /// `..` segment, no escape of an unreserved character, and
        /// normalising it again changes nothing.
        #[test]
        fn any_path_normalises_to_a_fixed_point(
            // Arbitrary text, and text dense in what normalising acts on.
            path in prop_oneof!["/[ -~\u{80}-\u{10FFFF}]{0,40}", "/[%./a-fA-F0-9]{0,30}"],
        ) {
            let once = normalize(&path).into_owned();
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"), "{once}");
            for segment in once[1..].split('/') {
                prop_assert!(segment != "." && segment != "..", "{once}");
            }
            let twice = normalize(&once);
            prop_assert!(matches!(twice, Cow::Borrowed(_)), "{path} -> {once} -> {twice}");
        }

        /// Other spellings of a path normalise to the path itself.
        #[test]
        fn spellings_of_a_path_normalise_alike(
            segments in prop::collection::vec(segment(), 1..6),
            noise in prop::collection::vec((any::<u8>(), any::<u8>()), 1..6),
        ) {
            let normal = format!("/{}", segments.join("/"));
            prop_assert_eq!(normalize(&normal), normal.as_str());
            let other = respelled(&segments, &noise);
            prop_assert_eq!(normalize(&other), normal.as_str(), "{}", other);
        }
    }
}
