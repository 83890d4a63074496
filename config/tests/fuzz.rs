//! Fuzzing the configuration pipeline (read -> decode -> validate -> load) with proptest.
//!
//! Seeds: every YAML file under `shared/examples/` and `shared/conformance/`, and the
//! ```` ```yaml ```` blocks of `docs/configuration.md`. Each case takes one seed and
//! mutates it: lines deleted, duplicated, swapped or re-indented; a scalar replaced by a
//! hostile value (integers past `u64`/`i64`, `1e309`, `NaN`, `.inf`, empty strings,
//! 10,000-character strings, brackets nested 10,000 deep, anchor-and-alias bombs, tabs,
//! NUL, unicode); keys written twice; expressions put into `successCondition` and
//! `failureCondition`; and, for the byte-level property, the file cut at any byte (in the
//! middle of a UTF-8 character too) or corrupted, and read from a file with [`load`] as
//! `weir` reads it.
//!
//! Properties: the pipeline never panics, no input takes more than [`BOUND`] (the slowest
//! is printed), and every issue of an error names the file, has a line >= 1, a message,
//! and no word of the parser's internals.
//!
//! `PROPTEST_CASES` sets the cases per property (default [`DEFAULT_CASES`]);
//! `PROPTEST_RNG_SEED` replays a run (each run prints its seed, with the inputs run and
//! the slowest). A stack overflow aborts the process before proptest can shrink or
//! report: `FUZZ_LAST_INPUT=DIR` saves each input there before it runs (and the slowest
//! so far as `NAME.slowest`).

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

mod files;

use files::{repo, yaml_blocks, yaml_files};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use tokio::time::Instant;
use weir_config::{ConfigError, Issue, load, load_str};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 2_000;

/// No input may take longer than this (the slowest is reported; it should be well under
/// 2 s).
const BOUND: Duration = Duration::from_secs(10);

/// The stack the pipeline runs on in the fuzz: a tokio worker's (where the watcher
/// reloads) and a spawned thread's default, a quarter of the main thread's.
const STACK: usize = 2 << 20;

/// Words of the parser's internals that no message may show.
const INTERNALS: &[&str] = &[
    "DuplicateKeyPolicy",
    "RecordedAnchorEvents",
    "serde_saphyr",
    "serde-saphyr",
    "saphyr",
    "granit",
    "Budget",
    "budget breached",
    "panicked",
];

/// A line on stderr that shows in a passing run too (the test harness keeps what
/// `eprintln!` prints for failures).
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---------------------------------------------------------------------------------------
// Seeds

struct Seed {
    name: String,
    text: String,
}

/// The seeds, or `None` (with the reason printed) when `shared/` is not there outside CI.
fn seeds() -> Option<&'static [Seed]> {
    static SEEDS: OnceLock<Option<Vec<Seed>>> = OnceLock::new();
    SEEDS
        .get_or_init(|| {
            let shared = repo().join("../shared");
            let dirs = [shared.join("examples"), shared.join("conformance")];
            if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
                let why = format!(
                    "the seed folder {} is missing (shared/ lies beside the repository)",
                    missing.display()
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{why}");
                }
                say(&format!("fuzz: skipped: {why}"));
                return None;
            }
            let mut seeds = Vec::new();
            for dir in &dirs {
                for f in yaml_files(dir) {
                    let text = std::fs::read_to_string(&f)
                        .unwrap_or_else(|e| panic!("cannot read seed {}: {e}", f.display()));
                    let name = f.strip_prefix(&shared).unwrap_or(&f).display().to_string();
                    seeds.push(Seed { name, text });
                }
            }
            if let Ok(md) = std::fs::read_to_string(repo().join("docs/configuration.md")) {
                for (i, text) in yaml_blocks(&md).into_iter().map(|b| b.text).enumerate() {
                    seeds.push(Seed {
                        name: format!("docs/configuration.md block {}", i + 1),
                        text,
                    });
                }
            }
            assert!(!seeds.is_empty(), "no seeds under {}", shared.display());
            Some(seeds)
        })
        .as_deref()
}

/// The seeds that hold a `successCondition` or `failureCondition`.
fn condition_seeds() -> Option<Vec<&'static Seed>> {
    let seeds: Vec<&Seed> = seeds()?
        .iter()
        .filter(|s| s.text.lines().any(|l| condition_key(l).is_some()))
        .collect();
    assert!(!seeds.is_empty(), "no seed has a successCondition");
    Some(seeds)
}

fn condition_key(line: &str) -> Option<usize> {
    ["successCondition:", "failureCondition:"]
        .iter()
        .find_map(|k| line.find(k).map(|at| at + k.len()))
}

// ---------------------------------------------------------------------------------------
// Hostile values

/// Scalars written as they are (plain YAML).
const PLAIN: &[&str] = &[
    "18446744073709551616",
    "-18446744073709551617",
    "18446744073709551615",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "4294967296",
    "4294967295",
    "2147483648",
    "65536",
    "-1",
    "-0",
    "0",
    "-0.0",
    "1e309",
    "-1e309",
    "1e-400",
    "1.7976931348623157e308",
    "5e-324",
    "NaN",
    ".nan",
    ".NaN",
    ".inf",
    "-.inf",
    "+.inf",
    "99999999999999999999999999999999999999",
    "0x7FFFFFFFFFFFFFFFFF",
    "0o7777777777777777777777777",
    "0b1111111111111111111111111111111111111111111111111111111111111111111",
    "1_000_000",
    "+1",
    "\"\"",
    "''",
    "",
    "~",
    "null",
    "true",
    "yes",
    "off",
    "[]",
    "{}",
    "[[]]",
    "{a: }",
    "[1, [2, {3: 4}]]",
    "!!binary AAAA",
    "!!binary ====",
    "!!str",
    "!!int x",
    "!!float x",
    "!!bool x",
    "!!null x",
    "!!map x",
    "!custom x",
    "!<tag:yaml.org,2002:int> 99999999999999999999",
    "&a",
    "*a",
    "*undefined",
    "&a [*a]",
    "&a {b: *a}",
    "&a x",
    "<<: *a",
    "{<<: *nothing}",
    "? a",
    "- x",
    "|",
    ">",
    "|-",
    "|9",
    "'\\0'",
    "\"\\0\"",
    "\"\\u0000\"",
    "\"\\x00\"",
    "\"\\ud800\"",
    "\"\\U0010FFFF\"",
    "\"\\U00110000\"",
    "\"\\q\"",
    "\0",
    "a\0b",
    "\t",
    "\t1",
    " \t ",
    "\u{feff}",
    "\u{feff}x",
    "\u{202e}rtl",
    "😀",
    "Ünïcödé",
    "\u{85}",
    "\u{2028}",
    "\u{fffd}",
    "\u{10ffff}",
    "e\u{301}",
    "\u{7f}",
    "\u{1b}[31m",
    "99999999999999h",
    "9223372036854775807s",
    "-5m",
    "1e400s",
    "0s",
    "1.5.5s",
    "150%",
    "-1%",
    "NaN%",
    "%",
    "1%%",
    "{{args.x}}",
    "\"{{args.missing}}\"",
    "\"{{\"",
    "{{",
    "}}",
    "#",
    "# comment",
    "@",
    "`",
    "'unterminated",
    "\"unterminated",
    "a: b: c",
    ": ",
    "-",
    "---",
    "...",
    "%YAML 1.2",
    "/dev/null",
    "../../../../../../etc/passwd",
    "http://[::1",
    "127.0.0.1:99999",
    "[::1]:0",
    "0.0.0.0:-1",
];

/// A scalar with its YAML quoting.
fn quoted(text: &str, style: u8) -> String {
    match style {
        0 => text.to_owned(),
        1 => serde_json::to_string(text).expect("a string serializes"),
        _ => format!("'{}'", text.replace('\'', "''")),
    }
}

/// The "billion laughs": `levels` anchors, each `width` aliases of the one before, in one
/// flow sequence (merge keys for `merge`).
fn bomb(levels: usize, width: usize, merge: bool) -> String {
    let mut s = String::from("[");
    if merge {
        let _ = write!(s, "&a0 {{k: lol}}");
        for l in 1..levels {
            let aliases = vec![format!("*a{}", l - 1); width].join(", ");
            let _ = write!(s, ", &a{l} {{<<: [{aliases}], k{l}: lol}}");
        }
    } else {
        let _ = write!(s, "&a0 [{}]", vec!["lol"; width].join(", "));
        for l in 1..levels {
            let aliases = vec![format!("*a{}", l - 1); width].join(", ");
            let _ = write!(s, ", &a{l} [{aliases}]");
        }
    }
    s.push(']');
    s
}

/// A bomb's levels and width: mostly small (at most a thousand nodes), now and then up
/// to 10^12 nodes, which the parser must refuse (each such takes a second or more in a
/// debug build, so they are kept few enough for the suite's time).
fn bomb_size() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        19 => (1usize..=3, 2usize..=10),
        1 => (1usize..=12, 2usize..=10),
    ]
}

/// A value in YAML source form: plain, quoted, or built to hurt.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (select(PLAIN), 0u8..3).prop_map(|(t, q)| quoted(t, q)),
        // Long strings and numbers.
        1 => (1usize..=10_000, select(&["a", "9", "é", "😀", " ", "\\", "'", "\"", "\t", "{{"][..]), 0u8..3)
            .prop_map(|(n, c, q)| quoted(&c.repeat(n), q)),
        // Brackets nested up to 10,000 deep, closed or not.
        1 => (1usize..=10_000, select(&["[", "{", "[{a: ", "{a: ", "- "][..]), any::<bool>())
            .prop_map(|(n, open, closed)| nested(open, n, closed)),
        // Anchors and aliases.
        1 => (bomb_size(), any::<bool>()).prop_map(|((l, w), m)| bomb(l, w, m)),
        // Numbers of every size.
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u128>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
        // Arbitrary text: printable as it is, anything quoted.
        2 => "\\PC{0,40}".prop_map(|s| no_host_port(&s)),
        1 => (any::<String>(), 1u8..3).prop_map(|(s, q)| quoted(&no_host_port(&s), q)),
    ]
}

/// `open` `n` times and, when `closed`, the matching closers.
fn nested(open: &str, n: usize, closed: bool) -> String {
    let mut s = open.repeat(n);
    s.push('1');
    if closed {
        let close: String = open
            .chars()
            .rev()
            .filter_map(|c| match c {
                '[' => Some(']'),
                '{' => Some('}'),
                _ => None,
            })
            .collect();
        s.push_str(&close.repeat(n));
    }
    s
}

/// Random text that could read as `host:port` would make the load stage ask DNS: this
/// suite sends nothing over the network, so such text gets a letter after the port.
fn no_host_port(s: &str) -> String {
    match s.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => format!("{s}x"),
        _ => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Expressions

const EXPRESSIONS: &[&str] = &[
    "len(0..9223372036854775806) > 0",
    "len(0..9223372036854775807) > 0",
    "len(-9223372036854775808..9223372036854775807) > 0",
    "sum(0..9223372036854775806) > 0",
    "count(0..9223372036854775806, # > 0) > 0",
    "map(0..9223372036854775806, # * 2)[0] > 0",
    "filter(0..9223372036854775806, # > 1e18) != nil",
    "1 in 0..9223372036854775807",
    "9223372036854775807 + 1 > 0",
    "-9223372036854775808 / -1 > 0",
    "-9223372036854775808 % -1 == 0",
    "9223372036854775807 * 9223372036854775807 > 0",
    "18446744073709551616 > 0",
    "1 / 0 == 1",
    "1 % 0 == 1",
    "2 ** 9223372036854775807 > 0",
    "1e309 > 0",
    "NaN == NaN",
    "result ** 1e309 > 0",
    "repeat(\"a\", 9223372036854775807) != \"\"",
    "repeat(\"a\", -1) != \"\"",
    "string(0..99999999) != \"\"",
    "upper(repeat(\"x\", 1 << 62)) != \"\"",
    "\"a\" matches \"(\"",
    "\"a\" matches \"((((a*)*)*)*)*b\"",
    "now() - duration(\"99999999999999h\") < now()",
    "date(\"99999-99-99\") < now()",
    "result[9223372036854775807] > 0",
    "result[-9223372036854775808] > 0",
    "result[0:9223372036854775807] != nil",
    "let x = 1; let x = 2; x > 0",
    "{a: 1, a: 2}.a > 0",
    "{(1): 2}",
    "[1, 2, 3][1:0:-1]",
    "result ?? 1 > 0",
    "result?.a?.b?.c > 0",
    "$env",
    "#",
    "##",
    "(",
    ")",
    "asdf(",
    "1 ..",
    "0..-1",
    "..",
    "",
    " ",
    "\u{0}",
    "\"\\u0000\"",
    "'",
    "`",
    "//",
    "/*",
    "result[0] >= 0.95 // comment",
    "result[0] >= 0.95 /* unterminated",
    "{{args.missing}}",
    "{{",
    "😀 > 0",
];

const TOKENS: &[&str] = &[
    "result",
    "result[0]",
    "len",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "0..9223372036854775806",
    "9223372036854775807",
    "-9223372036854775808",
    "1e309",
    "NaN",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "^",
    "0",
    "1",
    "and",
    "or",
    "not",
    "!",
    "in",
    "#",
    "map",
    "filter",
    "all",
    ",",
    ":",
    "?",
    "??",
    "?.",
    ".",
    "..",
    "|",
    "\"a\"",
    "'b'",
    "matches",
    "\"(\"",
    "let",
    "=",
    ";",
    "x",
    "upper",
    "now()",
    "duration",
    "nil",
    "true",
    "==",
    ">",
    "<=",
];

fn expression() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(EXPRESSIONS).prop_map(str::to_owned),
        // Nested up to 10,000 deep (the depth check must refuse these without recursing).
        1 => (1usize..=10_000, select(&["(", "[", "{a: ", "-", "!", "not "][..]))
            .prop_map(|(n, open)| {
                let mut s = open.repeat(n);
                s.push('1');
                let close = match open {
                    "(" => ")",
                    "[" => "]",
                    "{a: " => "}",
                    _ => "",
                };
                s.push_str(&close.repeat(n));
                s.push_str(" > 0");
                s
            }),
        // Long chains of operators.
        1 => (1usize..=10_000, select(&[" + 1", " and true", " ?? 1", " | upper()", ".a", "[0]"][..]))
            .prop_map(|(n, op)| format!("result{} > 0", op.repeat(n))),
        2 => vec(select(TOKENS), 0..30).prop_map(|t| t.join(" ")),
        1 => "\\PC{0,60}",
    ]
}

// ---------------------------------------------------------------------------------------
// Mutations

/// One edit of a seed's text.
#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Add (positive) or remove spaces at the start of a line.
    Indent(Index, i8),
    /// The leading spaces of a line become a tab.
    TabIndent(Index),
    /// `key: value` written again before the first `key:` line from here on.
    DuplicateKey(Index, String),
    /// The value of a line replaced.
    Replace(Index, String),
    /// A line put in as it is.
    InsertLine(Index, String),
    Whole(Whole),
}

/// Edits of the whole text.
#[derive(Clone, Debug)]
enum Whole {
    Crlf,
    ByteOrderMark,
    TrailingNul,
    /// Documents: this many `---` separators.
    Separators(usize),
    /// A mapping nested by indentation this deep, as a document of its own.
    DeepBlock(usize),
    /// A bomb as a document of its own, at the top.
    BombDocument(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => any::<Index>().prop_map(Edit::DeleteLine),
        3 => any::<Index>().prop_map(Edit::DuplicateLine),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        2 => (any::<Index>(), (-6i8..=6).prop_filter("moves", |d| *d != 0))
            .prop_map(|(i, d)| Edit::Indent(i, d)),
        1 => any::<Index>().prop_map(Edit::TabIndent),
        2 => (any::<Index>(), hostile()).prop_map(|(i, v)| Edit::DuplicateKey(i, v)),
        8 => (any::<Index>(), hostile()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => (any::<Index>(), (expression(), 1u8..3).prop_map(|(e, q)| quoted(&e, q)))
            .prop_map(|(i, v)| Edit::Replace(i, v)),
        2 => (any::<Index>(), select(&[
                "---", "...", "%YAML 1.2", "%TAG ! tag:x,2000:", "? complex", ": value",
                "<<: *a", "<<: {}", "&a", "*a", "!!binary", "\t", "\0", "\u{feff}", "#",
                "- ", "-", "{", "[", "'", "\"", "key: value", "  nested: [1, 2]",
                "kind: Rollout", "apiVersion: weir.dev/v1alpha1", "metadata: {name: x}",
            ][..]).prop_map(str::to_owned))
            .prop_map(|(i, l)| Edit::InsertLine(i, l)),
        1 => prop_oneof![
            Just(Whole::Crlf),
            Just(Whole::ByteOrderMark),
            Just(Whole::TrailingNul),
            (1usize..=10_000).prop_map(Whole::Separators),
            (1usize..=1_000).prop_map(Whole::DeepBlock),
            bomb_size().prop_map(|(l, w)| Whole::BombDocument(l, w)),
        ].prop_map(Edit::Whole),
    ]
}

fn leading_spaces(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The byte offset where `line`'s value starts, if it has a `key:` or `- `.
fn value_start(line: &str) -> Option<usize> {
    let indent = leading_spaces(line);
    let rest = &line[indent..];
    let item = if rest.starts_with("- ") { 2 } else { 0 };
    let body = &rest[item..];
    if let Some(at) = body.find(": ") {
        return Some(indent + item + at + 2);
    }
    if body.ends_with(':') {
        return Some(line.len());
    }
    (item > 0).then_some(indent + item)
}

/// The key of a `key:` line: its indentation (as for a key of the same mapping) and name.
fn key_of(line: &str) -> Option<(usize, &str)> {
    let indent = leading_spaces(line);
    let rest = &line[indent..];
    let (indent, rest) = match rest.strip_prefix("- ") {
        Some(r) => (indent + 2, r),
        None => (indent, rest),
    };
    let end = rest
        .find(": ")
        .or_else(|| rest.ends_with(':').then(|| rest.len() - 1))?;
    let key = &rest[..end];
    (!key.is_empty() && !key.starts_with('#') && !key.contains(['{', '[', '"', '\'']))
        .then_some((indent, key))
}

/// The first line from `i` on (wrapping) for which `f` holds.
fn find_line(lines: &[String], i: usize, f: impl Fn(&str) -> bool) -> Option<usize> {
    (0..lines.len())
        .map(|k| (i + k) % lines.len())
        .find(|&k| f(&lines[k]))
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let mut whole = Vec::new();
    for e in edits {
        let n = lines.len();
        match e {
            Edit::DeleteLine(i) => {
                if n > 1 {
                    lines.remove(i.index(n));
                } else {
                    lines[0].clear();
                }
            }
            Edit::DuplicateLine(i) => {
                let i = i.index(n);
                lines.insert(i, lines[i].clone());
            }
            Edit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
            Edit::Indent(i, d) => {
                let l = &mut lines[i.index(n)];
                if *d > 0 {
                    l.insert_str(0, &" ".repeat(usize::from(d.unsigned_abs())));
                } else {
                    let k = leading_spaces(l).min(usize::from(d.unsigned_abs()));
                    l.drain(..k);
                }
            }
            Edit::TabIndent(i) => {
                let l = &mut lines[i.index(n)];
                let k = leading_spaces(l);
                l.replace_range(..k, "\t");
            }
            Edit::DuplicateKey(i, v) => {
                if let Some(at) = find_line(&lines, i.index(n), |l| key_of(l).is_some()) {
                    let (indent, key) = key_of(&lines[at]).expect("found");
                    let dup = format!("{}{key}: {v}", " ".repeat(indent));
                    lines.insert(at, dup);
                }
            }
            Edit::Replace(i, v) => {
                let i = i.index(n);
                let at = find_line(&lines, i, |l| value_start(l).is_some()).unwrap_or(i);
                let l = &mut lines[at];
                match value_start(l) {
                    Some(s) if s == l.len() => {
                        l.push(' ');
                        l.push_str(v);
                    }
                    Some(s) => l.replace_range(s.., v),
                    None => {
                        let k = leading_spaces(l);
                        l.replace_range(k.., v);
                    }
                }
            }
            Edit::InsertLine(i, line) => lines.insert(i.index(n + 1), line.clone()),
            Edit::Whole(w) => whole.push(w),
        }
    }
    let mut text = lines.join("\n");
    for w in whole {
        match w {
            Whole::Crlf => text = text.replace('\n', "\r\n"),
            Whole::ByteOrderMark => text.insert(0, '\u{feff}'),
            Whole::TrailingNul => text.push('\0'),
            Whole::Separators(k) => text.push_str(&"---\n".repeat(*k)),
            Whole::DeepBlock(k) => {
                text.push_str("\n---\n");
                for d in 0..*k {
                    let _ = writeln!(text, "{}a{d}:", " ".repeat(d));
                }
                let _ = writeln!(text, "{}leaf: 1", " ".repeat(*k));
            }
            Whole::BombDocument(l, w) => {
                text.insert_str(0, &format!("bomb: {}\n---\n", bomb(*l, *w, false)));
            }
        }
    }
    text
}

/// Conditions replaced by hostile expressions, in a seed that has them.
fn condition_edit() -> impl Strategy<Value = (Index, String)> {
    (
        any::<Index>(),
        prop_oneof![
            4 => (expression(), 1u8..3).prop_map(|(e, q)| quoted(&e, q)),
            1 => expression(),
            1 => hostile(),
        ],
    )
}

fn apply_conditions(text: &str, edits: &[(Index, String)]) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let conditions: Vec<usize> = (0..lines.len())
        .filter(|&i| condition_key(&lines[i]).is_some())
        .collect();
    for (i, v) in edits {
        let at = conditions[i.index(conditions.len())];
        let l = &mut lines[at];
        let start = condition_key(l).expect("a condition line");
        l.replace_range(start.., &format!(" {v}"));
    }
    lines.join("\n")
}

/// Byte-level edits, applied to the text's UTF-8 bytes.
#[derive(Clone, Debug)]
enum Cut {
    /// Cut the file at a byte.
    Truncate(Index),
    /// Cut it inside a multi-byte character (one is added at the end if there is none).
    TruncateInChar(Index),
    /// Overwrite a byte.
    Corrupt(Index, u8),
    /// Put bytes in.
    Insert(Index, Vec<u8>),
    /// The whole file as UTF-16 with a byte-order mark.
    Utf16,
}

/// Byte sequences that are not UTF-8, or are but hurt.
const BAD_BYTES: &[&[u8]] = &[
    &[0xff],
    &[0xfe, 0xff],
    &[0xc3],
    &[0xe2, 0x82],
    &[0xf0, 0x9f, 0x98],
    &[0xed, 0xa0, 0x80],
    &[0xef, 0xbb, 0xbf],
    &[0xc0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0x00],
    &[0x80],
    &[0x1b],
];

fn cut() -> impl Strategy<Value = Cut> {
    prop_oneof![
        4 => any::<Index>().prop_map(Cut::Truncate),
        4 => any::<Index>().prop_map(Cut::TruncateInChar),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Cut::Corrupt(i, b)),
        2 => (any::<Index>(), prop_oneof![
            select(BAD_BYTES).prop_map(<[u8]>::to_vec),
            vec(any::<u8>(), 1..8),
        ]).prop_map(|(i, b)| Cut::Insert(i, b)),
        1 => Just(Cut::Utf16),
    ]
}

fn apply_cuts(text: &str, cuts: &[Cut]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for c in cuts {
        match c {
            Cut::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            Cut::TruncateInChar(i) => {
                let inside: Vec<usize> = (0..bytes.len())
                    .filter(|&k| bytes[k] & 0xc0 == 0x80)
                    .collect();
                if inside.is_empty() {
                    // "é" is 2 bytes, "😀" 4: each of these cuts is inside one of them.
                    bytes.extend_from_slice("é😀".as_bytes());
                    bytes.truncate(bytes.len() - [1, 2, 3, 5][i.index(4)]);
                } else {
                    bytes.truncate(inside[i.index(inside.len())]);
                }
            }
            Cut::Corrupt(i, b) => {
                if !bytes.is_empty() {
                    let k = i.index(bytes.len());
                    bytes[k] = *b;
                }
            }
            Cut::Insert(i, b) => {
                let k = i.index(bytes.len() + 1);
                bytes.splice(k..k, b.iter().copied());
            }
            Cut::Utf16 => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                bytes = vec![0xff, 0xfe];
                bytes.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
            }
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// Running one input and checking the properties

/// What one property saw: inputs run and the slowest.
struct Stats {
    name: &'static str,
    inner: Mutex<StatsInner>,
    /// An input did not finish within [`BOUND`]. Its thread cannot be stopped, so no
    /// further input runs (they pass): shrinking ends at once, and the failure is
    /// reported with the whole input, rather than piling up threads that do not finish.
    hung: AtomicBool,
}

#[derive(Default)]
struct StatsInner {
    runs: u64,
    total: Duration,
    slowest: Duration,
    slowest_input: String,
}

impl Stats {
    fn new(name: &'static str) -> Self {
        Stats {
            name,
            inner: Mutex::default(),
            hung: AtomicBool::new(false),
        }
    }

    fn record(&self, took: Duration, describe: impl FnOnce() -> String) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.runs += 1;
        s.total += took;
        if took > s.slowest {
            s.slowest = took;
            s.slowest_input = describe();
        }
    }

    fn report(&self, cases: u32, seed: u64, wall: Duration) {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        say(&format!(
            "fuzz {}: {cases} cases, {} inputs run (with any shrinking) in {wall:.1?} (loading: {:.1?}); slowest input {:.1?}: {}; PROPTEST_RNG_SEED={seed}",
            self.name, s.runs, s.total, s.slowest, s.slowest_input
        ));
    }
}

/// An input to the pipeline.
enum Input {
    /// Given to [`load_str`].
    Text(String),
    /// Written to a file and given to [`load`].
    Bytes(Vec<u8>),
}

/// Text for a failure message: all of it when short, its ends otherwise.
fn excerpt(bytes: &[u8]) -> String {
    const KEEP: usize = 3_000;
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= 2 * KEEP {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(KEEP).collect();
    let tail: String = s
        .chars()
        .rev()
        .take(KEEP)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head:?} ... ({} bytes in all) ... {tail:?}", bytes.len())
}

/// What a run gave, sent back from its thread.
enum Outcome {
    Ok,
    Invalid(Vec<Issue>),
    Io(String),
    Panic(String),
}

/// Runs the pipeline on `input` on a thread of its own, and checks every property.
fn check(stats: &Stats, label: &str, input: Input) -> Result<(), TestCaseError> {
    if stats.hung.load(Ordering::Relaxed) {
        return Ok(());
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (file, shown, size) = match &input {
        Input::Text(t) => (
            PathBuf::from("/fuzz/weir.yaml"),
            excerpt(t.as_bytes()),
            t.len(),
        ),
        Input::Bytes(b) => (dir.path().join("weir.yaml"), excerpt(b), b.len()),
    };
    if let Input::Bytes(b) = &input {
        std::fs::write(&file, b).expect("the input is written");
    }
    // A stack overflow aborts the process before proptest can report or shrink: with
    // FUZZ_LAST_INPUT=DIR each input is saved first, so the one that killed it is there.
    let saved = match &input {
        Input::Text(t) => t.as_bytes().to_vec(),
        Input::Bytes(b) => b.clone(),
    };
    if let Some(d) = std::env::var_os("FUZZ_LAST_INPUT") {
        let _ = std::fs::write(Path::new(&d).join(stats.name.replace(' ', "_")), &saved);
    }
    let (tx, rx) = mpsc::channel();
    let path = file.clone();
    std::thread::Builder::new()
        .name("fuzz-load".into())
        .stack_size(STACK)
        .spawn(move || {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| match &input {
                Input::Text(t) => load_str(&path, t),
                Input::Bytes(_) => load(&path),
            }));
            let took = start.elapsed();
            let outcome = match result {
                Ok(Ok(_model)) => Outcome::Ok,
                Ok(Err(ConfigError::Invalid(issues))) => Outcome::Invalid(issues),
                Ok(Err(e)) => Outcome::Io(e.to_string()),
                Err(panic) => Outcome::Panic(
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned()),
                ),
            };
            let _ = tx.send((took, outcome));
        })
        .expect("a thread");
    let Ok((took, outcome)) = rx.recv_timeout(BOUND) else {
        stats.hung.store(true, Ordering::Relaxed);
        return Err(TestCaseError::fail(format!(
            "{label}: no answer within {BOUND:?} (a hang?)\ninput: {shown}"
        )));
    };
    stats.record(took, || {
        if let Some(d) = std::env::var_os("FUZZ_LAST_INPUT") {
            let name = format!("{}.slowest", stats.name.replace(' ', "_"));
            let _ = std::fs::write(Path::new(&d).join(name), &saved);
        }
        let mut d = format!("{label}, {size} bytes: ");
        d.extend(shown.chars().take(160));
        d
    });
    let fail = |why: String| {
        Err(TestCaseError::fail(format!(
            "{label}: {why}\ninput: {shown}"
        )))
    };
    if took > BOUND {
        return fail(format!("took {took:.1?}, more than {BOUND:?}"));
    }
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Panic(msg) => fail(format!("panicked: {msg}")),
        Outcome::Io(e) => fail(format!("an I/O error reading an existing file: {e}")),
        Outcome::Invalid(issues) => {
            if issues.is_empty() {
                return fail("an error without issues".to_owned());
            }
            for i in &issues {
                if *i.file != *file {
                    return fail(format!("an issue names another file: {i} ({i:?})"));
                }
                if i.pos.line < 1 {
                    return fail(format!("an issue without a line: {i} ({i:?})"));
                }
                if i.message.trim().is_empty() {
                    return fail(format!("an issue without a message: {i} ({i:?})"));
                }
                if let Some(w) = INTERNALS.iter().find(|w| i.message.contains(*w)) {
                    return fail(format!("a message names the parser's {w:?}: {i}"));
                }
            }
            Ok(())
        }
    }
}

fn cases() -> u32 {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        Config::default().cases
    } else {
        DEFAULT_CASES
    }
}

/// A runner for `cases` cases with a seed that is printed (so a failure can be replayed
/// with `PROPTEST_RNG_SEED`), and no failure file written into the tree.
fn runner() -> (TestRunner, u32, u64) {
    let mut config = Config::default();
    let seed = match config.rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        }
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.cases = cases();
    config.failure_persistence = None;
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 60_000;
    }
    let cases = config.cases;
    (TestRunner::new(config), cases, seed)
}

fn run_property<S: Strategy>(
    stats: &Stats,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let (mut runner, cases, seed) = runner();
    let start = Instant::now();
    let result = runner.run(&strategy, test);
    stats.report(cases, seed, start.elapsed());
    if let Err(e) = result {
        panic!("{e}\n(replay with PROPTEST_RNG_SEED={seed})");
    }
}

// ---------------------------------------------------------------------------------------
// The properties

/// Lines deleted, duplicated, swapped and re-indented, scalars replaced by hostile
/// values, keys written twice: given to `load_str`.
#[test]
fn mutated_text_is_refused_cleanly() {
    let Some(seeds) = seeds() else { return };
    let stats = Stats::new("mutated text (load_str)");
    run_property(
        &stats,
        (any::<Index>(), vec(edit(), 1..5)),
        |(seed, edits)| {
            let seed = &seeds[seed.index(seeds.len())];
            let text = apply(&seed.text, &edits);
            check(&stats, &seed.name, Input::Text(text))
        },
    );
}

/// Conditions replaced by hostile expressions (huge ranges, deep nesting, operator
/// chains, garbage), with other edits besides.
#[test]
fn hostile_conditions_are_refused_cleanly() {
    let Some(seeds) = condition_seeds() else {
        return;
    };
    let stats = Stats::new("hostile conditions (load_str)");
    run_property(
        &stats,
        (
            any::<Index>(),
            vec(condition_edit(), 1..3),
            vec(edit(), 0..2),
        ),
        |(seed, conditions, edits)| {
            let seed = seeds[seed.index(seeds.len())];
            let text = apply(&apply_conditions(&seed.text, &conditions), &edits);
            check(&stats, &seed.name, Input::Text(text))
        },
    );
}

/// Files cut at any byte (inside a UTF-8 character too), corrupted or re-encoded: written
/// to a file and given to `load`, as `weir` reads them.
#[test]
fn cut_files_are_refused_cleanly() {
    let Some(seeds) = seeds() else { return };
    let stats = Stats::new("cut files (load)");
    run_property(
        &stats,
        (any::<Index>(), vec(edit(), 0..3), vec(cut(), 1..3)),
        |(seed, edits, cuts)| {
            let seed = &seeds[seed.index(seeds.len())];
            let bytes = apply_cuts(&apply(&seed.text, &edits), &cuts);
            check(&stats, &seed.name, Input::Bytes(bytes))
        },
    );
}
