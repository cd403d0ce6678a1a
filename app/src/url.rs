//! Percent-encoding for values put into a URL's path or query: unreserved characters
//! (`A-Z a-z 0-9 - _ . ~`) and `/` stay, every other byte becomes `%XX`.

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_all_but_unreserved_and_slash() {
        assert_eq!(super::encode("/a b&c=d?é~"), "/a%20b%26c%3Dd%3F%C3%A9~");
    }
}
