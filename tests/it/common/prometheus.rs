//! The Prometheus text exposition format, parsed strictly, and a server's `/metrics` through it:
//! every test that reads `/metrics` checks that it is valid exposition text too.

use std::collections::{BTreeMap, BTreeSet};

use super::{Server, raw};

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels: no `:`).
fn valid_name(n: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut cs = n.chars();
    cs.next().is_some_and(|c| ok(c, true)) && cs.all(|c| ok(c, false))
}

/// Parses the text exposition format (version 0.0.4) strictly: `# HELP name text` (escapes
/// `\\` and `\n` only), `# TYPE name counter|gauge|...` once per name and before its samples,
/// samples `name{label="value",...} value [timestamp]` with valid names and escapes, each
/// family's lines together, no duplicate series. Returns `name{labels sorted}` -> value.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "no final newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut family: Option<String> = None;
    let mut samples = BTreeMap::new();
    let mut enter = |name: &str, line: &str| {
        if family.as_deref() != Some(name) {
            if let Some(f) = family.take() {
                done.insert(f);
            }
            assert!(!done.contains(name), "family {name} is split: {line}");
            family = Some(name.to_owned());
        }
    };
    for line in text.lines() {
        assert!(!line.is_empty(), "an empty line in:\n{text}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name, true), "{line}");
            let mut cs = doc.chars();
            while let Some(c) = cs.next() {
                if c == '\\' {
                    assert!(matches!(cs.next(), Some('\\' | 'n')), "bad escape: {line}");
                }
            }
            assert!(helps.insert(name.to_owned()), "a second HELP: {line}");
            enter(name, line);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(valid_name(name, true), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), ty.to_owned()).is_none(),
                "a second TYPE: {line}"
            );
            enter(name, line);
        } else {
            assert!(
                !line.starts_with('#'),
                "a comment that is no HELP or TYPE: {line}"
            );
            let end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
            let name = &line[..end];
            assert!(valid_name(name, true), "bad metric name: {line}");
            let ty = types
                .get(name)
                .unwrap_or_else(|| panic!("a sample before its TYPE line: {line}"));
            enter(name, line);
            let mut rest = &line[end..];
            let mut labels: Vec<(String, String)> = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                rest = r;
                loop {
                    if let Some(r) = rest.strip_prefix('}') {
                        rest = r;
                        break;
                    }
                    let eq = rest.find('=').unwrap_or_else(|| panic!("{line}"));
                    let lname = &rest[..eq];
                    assert!(valid_name(lname, false), "bad label name {lname:?}: {line}");
                    rest = rest[eq + 1..]
                        .strip_prefix('"')
                        .unwrap_or_else(|| panic!("unquoted label value: {line}"));
                    let mut value = String::new();
                    let mut chars = rest.char_indices();
                    loop {
                        match chars.next() {
                            Some((i, '"')) => {
                                rest = &rest[i + 1..];
                                break;
                            }
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                other => panic!("bad escape {other:?}: {line}"),
                            },
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value: {line}"),
                        }
                    }
                    assert!(
                        labels.iter().all(|(l, _)| l != lname),
                        "label {lname} twice: {line}"
                    );
                    labels.push((lname.to_owned(), value));
                    match rest.strip_prefix(',') {
                        Some(r) => rest = r,
                        None => assert!(rest.starts_with('}'), "{line}"),
                    }
                }
            }
            let rest = rest
                .strip_prefix(' ')
                .unwrap_or_else(|| panic!("no space before the value: {line}"));
            let mut parts = rest.split(' ');
            let v = parts.next().unwrap();
            let value = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                _ => {
                    assert!(
                        !v.is_empty()
                            && v.chars()
                                .all(|c| c.is_ascii_digit()
                                    || matches!(c, '.' | 'e' | 'E' | '+' | '-')),
                        "bad value {v:?}: {line}"
                    );
                    v.parse::<f64>()
                        .unwrap_or_else(|_| panic!("bad value: {line}"))
                }
            };
            if let Some(ts) = parts.next() {
                ts.parse::<i64>()
                    .unwrap_or_else(|_| panic!("bad timestamp: {line}"));
            }
            assert!(parts.next().is_none(), "trailing text: {line}");
            if ty == "counter" {
                assert!(
                    value >= 0.0 && value.is_finite(),
                    "a counter at {value}: {line}"
                );
            }
            labels.sort();
            let key = if labels.is_empty() {
                name.to_owned()
            } else {
                let ls: Vec<String> = labels.iter().map(|(l, v)| format!("{l}={v:?}")).collect();
                format!("{name}{{{}}}", ls.join(","))
            };
            assert!(
                samples.insert(key, value).is_none(),
                "a series twice: {line}"
            );
        }
    }
    samples
}

/// The server's `/metrics`: answered 200 as `text/plain`, parsed by `parse_prometheus`.
pub fn metrics(s: &Server) -> BTreeMap<String, f64> {
    let (code, h, body) = raw::block(async {
        let resp = raw::http()
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        (code, headers, resp.text().await.unwrap())
    });
    assert_eq!(code, 200, "{body}");
    let ct = h.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");
    parse_prometheus(&body)
}

/// `name{labels}` as `parse_prometheus` keys it (labels sorted).
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut ls: Vec<(&str, &str)> = labels.to_vec();
    ls.sort();
    let ls: Vec<String> = ls.iter().map(|(l, v)| format!("{l}={v:?}")).collect();
    format!("{name}{{{}}}", ls.join(","))
}
