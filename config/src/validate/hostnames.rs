//! Gateway API host names: what a listener's `hostname` and a route's `hostnames` may be,
//! how they intersect (a route takes, on a listener, only the names both allow), and which
//! of several listeners sharing an address is the most specific for a name.

use crate::model::HostMatch;

/// Checks a Gateway API host name: lower-case DNS labels, optionally after a leading
/// `*.`; not an IP address.
pub(super) fn check(h: &str) -> Result<(), String> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{h:?} is an IP address: a hostname is a DNS name (an exact one, or a wildcard such as *.example.com)"
        ));
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.len() > 253 || name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!(
            "{h:?} is not a hostname: write lower-case DNS labels (a-z, 0-9, '-') separated by dots, optionally after a leading *. (a wildcard)"
        ));
    }
    Ok(())
}

/// How specific a listener hostname is: an exact name beats every wildcard, a longer
/// wildcard a shorter one, and any hostname none at all.
pub(super) fn specificity(h: Option<&str>) -> (u8, usize) {
    match h {
        None => (0, 0),
        Some(h) if h.starts_with("*.") => (1, h.len()),
        Some(h) => (2, h.len()),
    }
}

/// Whether every name `inner` takes, `outer` takes too (`outer` `None`: all names).
pub(super) fn covers(outer: Option<&str>, inner: &str) -> bool {
    let Some(outer) = outer else { return true };
    match (outer.strip_prefix('*'), inner.strip_prefix('*')) {
        (None, None) => outer == inner,
        (None, Some(_)) => false,
        // `*.a.com` covers `x.a.com`, `x.y.a.com`, `*.a.com`, `*.x.a.com`.
        (Some(suffix), Some(inner_suffix)) => inner_suffix.ends_with(suffix),
        (Some(suffix), None) => inner.ends_with(suffix),
    }
}

/// The names a route with `route` hostnames takes on a listener with `listener`'s:
/// `Some(vec![])` for every name, `None` when they have none in common.
pub(super) fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let Some(l) = listener else {
        return Some(route.to_vec());
    };
    if route.is_empty() {
        return Some(vec![l.to_owned()]);
    }
    let mut out: Vec<String> = Vec::new();
    for h in route {
        let common = if covers(Some(l), h) {
            Some(h.as_str())
        } else if covers(Some(h), l) {
            Some(l)
        } else {
            None
        };
        if let Some(c) = common
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_owned());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A Gateway API host name as the model matches it.
pub(super) fn host_match(h: &str) -> HostMatch {
    match h.strip_prefix('*') {
        Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
        None => HostMatch::Exact(h.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hs: &[&str]) -> Vec<String> {
        hs.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn hostnames_intersect_as_the_gateway_api_says() {
        // The cases of the conformance suite's httproute-hostname-intersection.
        let l1 = Some("very.specific.com");
        let l2 = Some("*.wildcard.io");
        assert_eq!(
            intersect(
                l1,
                &v(&[
                    "non.matching.com",
                    "*.nonmatchingwildcard.io",
                    "very.specific.com"
                ])
            ),
            Some(v(&["very.specific.com"]))
        );
        assert_eq!(
            intersect(
                l2,
                &v(&[
                    "non.matching.com",
                    "wildcard.io",
                    "foo.wildcard.io",
                    "foo.bar.wildcard.io"
                ])
            ),
            Some(v(&["foo.wildcard.io", "foo.bar.wildcard.io"]))
        );
        assert_eq!(
            intersect(l1, &v(&["*.specific.com"])),
            Some(v(&["very.specific.com"]))
        );
        assert_eq!(
            intersect(l2, &v(&["*.wildcard.io"])),
            Some(v(&["*.wildcard.io"]))
        );
        assert_eq!(intersect(l2, &v(&["*.io"])), Some(v(&["*.wildcard.io"])));
        assert_eq!(
            intersect(l2, &v(&["*.a.wildcard.io"])),
            Some(v(&["*.a.wildcard.io"]))
        );
        assert_eq!(
            intersect(l1, &v(&["specific.but.wrong.com", "wildcard.io"])),
            None
        );
        assert_eq!(intersect(None, &v(&["a.com"])), Some(v(&["a.com"])));
        assert_eq!(intersect(l1, &[]), Some(v(&["very.specific.com"])));
        assert_eq!(intersect(None, &[]), Some(vec![]));
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check("example.com").is_ok());
        assert!(check("*.example.com").is_ok());
        assert!(check("Example.com").is_err());
        assert!(check("*").is_err());
        assert!(check("a..b").is_err());
        assert!(check("10.0.0.1").is_err());
        assert!(check("a.*.com").is_err());
    }

    #[test]
    fn listener_specificity() {
        assert!(specificity(Some("foo.bar.com")) > specificity(Some("*.bar.com")));
        assert!(specificity(Some("*.foo.bar.com")) > specificity(Some("*.bar.com")));
        assert!(specificity(Some("*.bar.com")) > specificity(None));
    }
}
