//! String formats kube-apiserver checks (`date-time`, `date`, `byte`, `uuid`, `ipv4`,
//! `ipv6`), each as go-openapi's `strfmt` accepts it.

use std::sync::OnceLock;

use regex::Regex;

/// Checks a string format; `None` for formats that are not validated.
pub(super) fn check(format: &str, s: &str) -> Option<bool> {
    Some(match format {
        "date-time" | "datetime" => is_date_time(s),
        "date" => is_date(s),
        "byte" => is_base64(s),
        "uuid" => is_uuid(s),
        "ipv4" => s.contains('.') && parse_ip(s),
        "ipv6" => s.contains(':') && parse_ip(s),
        _ => return None,
    })
}

fn digits_value(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` with a real calendar day (Go `time.Parse("2006-01-02")`).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (
        digits_value(&b[0..4]),
        digits_value(&b[5..7]),
        digits_value(&b[8..10]),
    ) else {
        return false;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// RFC 3339 date-time as accepted by go-openapi's `IsDateTime`: a date, `t` (case-insensitive),
/// then `^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$` with hour <= 23,
/// minute <= 59 and second <= 59.
fn is_date_time(s: &str) -> bool {
    static TIME: OnceLock<Regex> = OnceLock::new();
    let time_re = TIME.get_or_init(|| {
        Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
            .expect("a valid constant pattern")
    });
    let lower = s.to_ascii_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) || !time_re.is_match(time) {
        return false;
    }
    let b = time.as_bytes();
    let two = |i: usize| digits_value(&b[i..i + 2]).unwrap_or(99);
    two(0) <= 23 && two(3) <= 59 && two(6) <= 59
}

/// Standard base64 with padding (Go `base64.StdEncoding`, which skips `\r` and `\n`).
fn is_base64(s: &str) -> bool {
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'\r' && c != b'\n').collect();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return false;
    }
    b[..b.len() - pad]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$`
fn is_uuid(s: &str) -> bool {
    let mut rest = s.as_bytes();
    for (i, n) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 && rest.first() == Some(&b'-') {
            rest = &rest[1..];
        }
        if rest.len() < n || !rest[..n].iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        rest = &rest[n..];
    }
    rest.is_empty()
}

/// Go's `net.ParseIP(s) != nil`.
fn parse_ip(s: &str) -> bool {
    if s.contains(':') {
        parse_ipv6(s)
    } else {
        parse_ipv4(s)
    }
}

fn parse_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
                && p.parse::<u32>().is_ok_and(|v| v <= 255)
        })
}

fn parse_ipv6(s: &str) -> bool {
    let mut rest = s;
    let mut groups = 0usize;
    let mut ellipsis: Option<usize> = None;
    if let Some(r) = rest.strip_prefix("::") {
        ellipsis = Some(0);
        rest = r;
        if rest.is_empty() {
            return true;
        }
    }
    while groups < 8 {
        let n = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return false;
        }
        if rest.as_bytes().get(n) == Some(&b'.') {
            if (ellipsis.is_none() && groups != 6) || groups + 2 > 8 {
                return false;
            }
            if !parse_ipv4(rest) {
                return false;
            }
            groups += 2;
            rest = "";
            break;
        }
        let digits = rest[..n].trim_start_matches('0');
        if digits.len() > 4 {
            return false;
        }
        groups += 1;
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
        if !rest.starts_with(':') || rest.len() == 1 {
            return false;
        }
        rest = &rest[1..];
        if let Some(r) = rest.strip_prefix(':') {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(groups);
            rest = r;
            if rest.is_empty() {
                break;
            }
        }
    }
    if !rest.is_empty() {
        return false;
    }
    match ellipsis {
        Some(_) => groups < 8,
        None => groups == 8,
    }
}
