//! Small helpers for what the tool prints.

/// Left-aligned columns separated by two spaces; each row ends with a newline.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `user:password@` removed from anything that looks like a URL, so no credential is ever printed.
pub fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &text[..s], &text[at + 1..]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_userinfo() {
        assert_eq!(super::redact("https://u:p@h/x"), "https://***@h/x");
        assert_eq!(super::redact("https://h/x"), "https://h/x");
    }
}
