//! Query strings as the Python services write them into the links they return.

/// Python's `urllib.parse.quote_plus`: Glance's and Nova's `next` links are built with it.
pub(crate) fn quote_plus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quote_plus;

    #[test]
    fn quotes_like_python() {
        assert_eq!(quote_plus("a b/c~_.-*"), "a+b%2Fc~_.-%2A");
        assert_eq!(quote_plus("é"), "%C3%A9");
    }
}
