//! Duration parsing as Argo's fields do it (argo-reference §1.2). Hand-written because the
//! rules are Go's `time.ParseDuration` plus Argo's per-field quirks, which no crate copies.

use std::time::Duration;

/// Why a duration does not parse. The messages say what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go's duration syntax.
    #[error(
        "{0:?} is not a duration: write a number with a unit (ns, us, ms, s, m, h), e.g. 30s, 5m, 1h30m"
    )]
    Syntax(String),
    /// Below zero.
    #[error("{0} is negative: a {1} must be 0 or more")]
    Negative(String, &'static str),
    /// Longer than 292 years.
    #[error("{0:?} is too long")]
    TooLong(String),
    /// A pause given as a number that is not a whole number of seconds.
    #[error("{0} is not a whole number of seconds: write an integer or a duration such as 90s")]
    NotWholeSeconds(String),
    /// Not the Gateway API's duration format.
    #[error(
        "{0:?} is not a Gateway API duration: write up to four parts of at most 5 digits, each with a unit h, m, s or ms, e.g. 10s, 500ms, 1h30m"
    )]
    GatewaySyntax(String),
    /// A pause given as something other than a number or a string.
    #[error("{0} is not a duration: write seconds (30) or a duration (30s, 5m, 1h)")]
    NotAPause(String),
}

/// Go's `time.ParseDuration`: `300ms`, `1.5h`, `2h45m`, `-1s` (rejected here: negative),
/// units `ns us µs ms s m h`; a bare number is invalid except `0`.
///
/// # Errors
/// [`DurationError`], saying what is accepted.
pub fn parse_go(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Syntax(s.to_owned());
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') {
        return Err(DurationError::Negative(format!("{s:?}"), "duration"));
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += num * unit_ns;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(DurationError::TooLong(s.to_owned()));
    }
    // Go truncates to whole nanoseconds.
    Ok(Duration::from_nanos(total as u64))
}

/// The longest duration, in whole seconds: Go's (and Argo's) durations are `i64`
/// nanoseconds, about 292 years.
pub const MAX_SECONDS: u64 = (i64::MAX as u64) / 1_000_000_000;

/// A number of whole seconds as a duration, refused above [`MAX_SECONDS`] as Go durations
/// above 2562047h are (beyond it, deadlines and timers overflow).
///
/// # Errors
/// [`DurationError::TooLong`], naming what was written.
pub fn whole_seconds(n: u64) -> Result<Duration, DurationError> {
    if n > MAX_SECONDS {
        return Err(DurationError::TooLong(n.to_string()));
    }
    Ok(Duration::from_secs(n))
}

/// A canary `pause.duration` written as a YAML integer: seconds.
///
/// # Errors
/// [`DurationError::Negative`] below zero, [`DurationError::TooLong`] above
/// [`MAX_SECONDS`].
pub fn pause_seconds(n: i64) -> Result<Duration, DurationError> {
    let n = u64::try_from(n).map_err(|_| DurationError::Negative(n.to_string(), "pause"))?;
    whole_seconds(n)
}

/// A canary `pause.duration` written as a string: seconds (`"30"`) or a Go duration,
/// truncated to whole seconds, so `500ms` is 0 (no pause).
///
/// # Errors
/// [`DurationError`] for negative or unparsable values (`1d`, `1.5`, `abc`).
pub fn parse_pause(s: &str) -> Result<Duration, DurationError> {
    if let Ok(i) = s.trim().parse::<i64>() {
        if i < 0 {
            return Err(DurationError::Negative(format!("{s:?}"), "pause"));
        }
        return whole_seconds(i as u64);
    }
    let d = parse_go(s)?;
    Ok(Duration::from_secs(d.as_secs()))
}

/// The Gateway API's `Duration` (HTTPRoute `timeouts`): one to four parts, each of one to
/// five digits and a unit `h`, `m`, `s` or `ms` (`10s`, `500ms`, `1h30m`, `0s`).
///
/// # Errors
/// [`DurationError::GatewaySyntax`].
pub fn parse_gateway(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::GatewaySyntax(s.to_owned());
    let mut rest = s.as_bytes();
    let (mut total, mut parts) = (Duration::ZERO, 0);
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(bad)?;
        rest = &rest[digits..];
        let (unit, len) = match rest {
            [b'm', b's', ..] => (Duration::from_millis(1), 2),
            [b'h', ..] => (Duration::from_secs(3600), 1),
            [b'm', ..] => (Duration::from_secs(60), 1),
            [b's', ..] => (Duration::from_secs(1), 1),
            _ => return Err(bad()),
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

/// Renders a duration the way Go would write it, for messages and the API.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "0s".to_owned();
    }
    if secs == 0 {
        if nanos.is_multiple_of(1_000_000) {
            return format!("{}ms", nanos / 1_000_000);
        }
        return format!("{:.3}ms", f64::from(nanos) / 1e6);
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || nanos > 0 {
        if nanos > 0 {
            let frac = format!("{:.3}", f64::from(nanos) / 1e9);
            out.push_str(&format!("{s}{}s", frac.trim_start_matches('0')));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_go("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_go("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go("2us").unwrap(), Duration::from_micros(2));
        assert!(parse_go("30").is_err(), "a bare number needs a unit");
        assert!(parse_go("1d").is_err());
        assert!(parse_go("-1s").is_err());
        assert!(parse_go("").is_err());
        assert!(parse_go("s").is_err());
    }

    #[test]
    fn gateway_durations() {
        assert_eq!(parse_gateway("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_gateway("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_gateway("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_gateway("1h30m10s5ms").unwrap(),
            Duration::from_millis(5_410_005)
        );
        assert_eq!(parse_gateway("0s").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "10",
            "1.5s",
            "1d",
            "123456s",
            "1h1m1s1ms1s",
            " 1s",
            "-1s",
            "s",
        ] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pause_durations() {
        assert_eq!(pause_seconds(10).unwrap(), Duration::from_secs(10));
        assert_eq!(parse_pause("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_pause("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_pause("500ms").unwrap(), Duration::ZERO);
        assert_eq!(parse_pause("1500ms").unwrap(), Duration::from_secs(1));
        assert!(parse_pause("1d").is_err());
        assert!(parse_pause("1.5").is_err());
        assert!(parse_pause("-3").is_err());
        assert!(pause_seconds(-3).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.500s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
