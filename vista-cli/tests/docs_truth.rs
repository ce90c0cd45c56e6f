//! The user-facing docs tell the truth about today's code.
//!
//! README.md, docs/guide.md and docs/tools.md are read as text, and:
//!
//! - every `vista <command>` line or span, and every flag on it, must be accepted by the
//!   built `vista` binary (its `--help` output); in docs/tools.md every span that is a bare
//!   `--flag` must be a flag of some `vista` command;
//! - every `Type::item` path (`Segment::begin`, `Error::Conflict`, `PPtr::NULL`,
//!   `rio_cache::Error::InUpdate`...), every `seg.method(` / `tx.method(` call and every
//!   `vista::`/`rio_cache::` function or constant named must exist in the source of
//!   `vista/src` or `rio-cache/src` (a `pub fn` or `pub const` in an `impl` of the type, a
//!   method of a trait impl, or an enum variant);
//! - no doc may say that a shipped feature is missing (`no heap`, `one transaction at a
//!   time`, `begin` taking `&mut self`, ...): see [`BANNED`].
//!
//! The Rust examples of docs/guide.md are compiled and run as vista's doctests; this test
//! covers the prose, the tables and the shell lines, which no compiler sees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents checked, relative to the workspace root.
const DOCS: [&str; 3] = ["README.md", "docs/guide.md", "docs/tools.md"];

/// Phrases that describe an older vista (matched case-insensitively, with Markdown emphasis
/// removed and line breaks read as spaces).
const BANNED: &[(&str, &str)] = &[
    ("no heap", "vista has a persistent heap (vista::heap)"),
    ("no persistent heap", "vista has a persistent heap"),
    ("no allocator", "Transaction::alloc exists"),
    ("no root object", "Transaction::root exists"),
    ("not re-export `bytemuck`", "vista re-exports bytemuck"),
    ("not re-export bytemuck", "vista re-exports bytemuck"),
    (
        "one transaction at a time",
        "transactions of many threads run at once",
    ),
    ("borrows the segment mutably", "Segment::begin takes &self"),
    ("behind a `mutex`", "a Segment is shared without a Mutex"),
    ("mutex<segment>", "a Segment is shared without a Mutex"),
    ("only one is used", "every lane is used"),
    ("lane 0 only", "every lane is used"),
    ("only lane 0", "every lane is used"),
    (
        "reserved for concurrent transactions",
        "concurrent transactions exist",
    ),
    (
        "once the persistent heap exists",
        "the persistent heap exists",
    ),
];

/// Text a doc may quote although it contains a banned phrase, and why: each is allowed
/// only while the proof holds, so that the allowance expires with its reason.
struct Quote {
    doc: &'static str,
    text: &'static str,
    /// A file (relative to the workspace root) that must contain `text`.
    proof: &'static str,
}

const QUOTES: &[Quote] = &[
    // docs/tools.md shows real `vista check` output for a segment used through offsets
    // only; this is how the tool says so. Once the tool words it otherwise, the proof
    // fails and the transcript in tools.md must be updated.
    Quote {
        doc: "docs/tools.md",
        text: "no heap: user space does not start with a heap header",
        proof: "vista-cli/src/inspect.rs",
    },
];

/// `Type::item` paths the docs name on purpose although they are not items of the type in
/// vista's or rio-cache's source, with the reason. (Empty today; add with a reason.)
const ALLOWED_PATHS: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vista-cli sits in the workspace")
        .to_owned()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Markdown: code blocks and inline code spans.

/// One piece of a document: a line of a fenced code block (with its language) or an
/// inline code span of prose.
#[derive(Debug)]
struct Piece {
    line: usize,
    /// `Some(lang)` for a code block line, `None` for an inline span.
    block: Option<String>,
    text: String,
}

fn pieces(doc: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_string()),
            };
            continue;
        }
        if let Some(lang) = &fence {
            out.push(Piece {
                line: i + 1,
                block: Some(lang.clone()),
                text: line.to_string(),
            });
            continue;
        }
        // Odd-numbered parts between backticks are code spans.
        for (k, part) in line.split('`').enumerate() {
            if k % 2 == 1 && !part.is_empty() {
                out.push(Piece {
                    line: i + 1,
                    block: None,
                    text: part.replace("\\|", "|"),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The CLI as the binary describes itself.

#[derive(Debug, Default)]
struct Cli {
    /// Global flags (name -> takes a value).
    global: BTreeMap<String, bool>,
    /// Per command, its flags (name -> takes a value), globals included.
    commands: BTreeMap<String, BTreeMap<String, bool>>,
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vista"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run vista --help");
    assert!(out.status.success(), "vista {args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The `--flag`s of a help text's options section, and whether each takes a value.
fn flags(help: &str) -> BTreeMap<String, bool> {
    let mut v = BTreeMap::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_options = line == "Options:";
            continue;
        }
        if !in_options {
            continue;
        }
        for word in line.split_whitespace().take(3) {
            if let Some(name) = word.strip_prefix("--") {
                let name = name.trim_end_matches(',');
                let takes = line.contains(&format!("--{name} <"));
                v.insert(name.to_string(), takes);
            }
        }
    }
    v
}

fn cli() -> Cli {
    let top = help(&[]);
    let mut cli = Cli {
        global: flags(&top),
        ..Cli::default()
    };
    let mut in_commands = false;
    for line in top.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_commands = line == "Commands:";
            continue;
        }
        if in_commands {
            if let Some(name) = line.split_whitespace().next() {
                let mut f = if name == "help" {
                    BTreeMap::new()
                } else {
                    flags(&help(&[name]))
                };
                f.extend(cli.global.clone());
                cli.commands.insert(name.to_string(), f);
            }
        }
    }
    assert!(
        cli.commands.contains_key("info") && cli.global.contains_key("cache-dir"),
        "the help parser found no commands or flags: {cli:?}"
    );
    cli
}

/// Checks one command line (`vista [--global] COMMAND [ARGS] [--flags]`); returns what is
/// wrong with it.
fn check_command(cli: &Cli, line: &str) -> Vec<String> {
    let line = line.split(" #").next().unwrap_or(line);
    let words = line
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')'))
        .filter(|w| !w.is_empty())
        .skip(1); // `vista` itself
    let mut errors = Vec::new();
    let mut command: Option<&BTreeMap<String, bool>> = None;
    let mut expect_value = false;
    for w in words {
        if expect_value {
            expect_value = false;
            continue;
        }
        if let Some(flag) = w.strip_prefix("--") {
            if flag.is_empty() {
                break; // `--`: what follows is not vista's
            }
            let (name, inline_value) = match flag.split_once('=') {
                Some((n, _)) => (n, true),
                None => (flag, false),
            };
            let known = command.unwrap_or(&cli.global);
            match known.get(name) {
                Some(&takes) => expect_value = takes && !inline_value,
                None => errors.push(format!(
                    "flag --{name} is not accepted by `vista{}`",
                    command.map_or(String::new(), |_| " <that command>".into())
                )),
            }
            continue;
        }
        if w.starts_with('-') || command.is_some() {
            continue; // a short flag, or a positional argument
        }
        if w.chars()
            .all(|c| c.is_ascii_uppercase() || c == '.' || c == '_')
        {
            // A placeholder (`COMMAND`, `...`) in a synopsis.
            continue;
        }
        match cli.commands.get(w) {
            Some(f) => command = Some(f),
            None => {
                errors.push(format!("`vista {w}` is not a command"));
                break;
            }
        }
    }
    errors
}

/// Whether a code block line or span is a `vista` command line (the text after `$ `).
fn vista_command(p: &Piece) -> Option<&str> {
    let text = p.text.trim_start();
    let text = text.strip_prefix("$ ").unwrap_or(text);
    let first = text.split_whitespace().next()?;
    let is_vista = first == "vista" || first.ends_with("/vista");
    let shell = matches!(
        p.block.as_deref(),
        None | Some("" | "sh" | "text" | "console" | "bash")
    );
    (is_vista && shell && text.split_whitespace().nth(1).is_some()).then_some(text)
}

#[test]
fn every_vista_command_and_flag_in_the_docs_exists() {
    let cli = cli();
    let all_flags: BTreeSet<&String> = cli.commands.values().flat_map(BTreeMap::keys).collect();
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in DOCS {
        for p in pieces(&read(doc)) {
            if let Some(line) = vista_command(&p) {
                seen += 1;
                for e in check_command(&cli, line) {
                    errors.push(format!("{doc}:{}: {e}: {line}", p.line));
                }
            } else if doc == "docs/tools.md" && p.block.is_none() {
                // In the tool's own page, a bare `--flag` span is one of the tool's flags.
                if let Some(flag) = p.text.strip_prefix("--") {
                    let name = flag.split([' ', '=']).next().unwrap_or(flag);
                    if !all_flags.contains(&name.to_string()) {
                        errors.push(format!(
                            "{doc}:{}: `--{name}` is no flag of any vista command",
                            p.line
                        ));
                    }
                }
            }
        }
    }
    assert!(
        seen >= 10,
        "only {seen} vista command lines found: the extraction broke"
    );
    assert!(
        errors.is_empty(),
        "docs name CLI that does not exist:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The API as the source defines it.

/// Every type defined in a crate's source, with its items.
#[derive(Debug, Default)]
struct Api {
    /// Type name -> items (methods, associated consts, enum variants).
    types: BTreeMap<String, BTreeSet<String>>,
    /// `pub fn`, `pub const` and `pub static` names anywhere, and names re-exported with
    /// `pub use` (for `crate::function` paths).
    free: BTreeSet<String>,
    /// `pub mod` names.
    modules: BTreeSet<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Net `{` minus `}` on a line, ignoring comments, strings and char literals.
fn braces(line: &str) -> i32 {
    let mut depth = 0;
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => in_str = true,
            '\'' => {
                // A char literal ('{', '\n') or a lifetime ('a): skip a literal whole.
                let rest: String = chars.clone().take(3).collect();
                if rest.len() >= 2 && rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                } else if rest.starts_with('\\') {
                    chars.nth(2);
                }
            }
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// The type an `impl` header implements for: `impl<T> Clone for PPtr<T> {` -> `PPtr`, and
/// whether it is a trait impl.
fn impl_target(header: &str) -> Option<(String, bool)> {
    let mut rest = header.trim_start().strip_prefix("impl")?;
    if rest.starts_with('<') {
        let mut depth = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                rest = &rest[i + 1..];
                break;
            }
        }
    } else if !rest.starts_with(' ') {
        return None; // `implementation`, not `impl`
    }
    let (target, is_trait) = match rest.split_once(" for ") {
        Some((_, t)) => (t, true),
        None => (rest, false),
    };
    let target = target.trim_start().trim_start_matches('&');
    let name = ident(target.rsplit("::").next().unwrap_or(target).trim());
    // `crate::Foo` / `heap::Foo`: the last path segment before generics.
    let name = if target.contains("::") {
        let before_generics = target.split('<').next().unwrap_or(target);
        ident(
            before_generics
                .rsplit("::")
                .next()
                .unwrap_or(before_generics)
                .trim(),
        )
    } else {
        name
    };
    (!name.is_empty()).then(|| (name.to_string(), is_trait))
}

fn scan(api: &mut Api, src: &str) {
    enum Block {
        Impl { ty: String, trait_impl: bool },
        Enum(String),
        Trait(String),
    }
    let mut stack: Vec<(i32, Block)> = Vec::new();
    let mut depth = 0;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        // Items directly inside the innermost open block.
        if let Some((d, b)) = stack.last() {
            if depth == d + 1 {
                match b {
                    Block::Impl { ty, trait_impl } => {
                        let item = t
                            .strip_prefix("pub ")
                            .or_else(|| trait_impl.then_some(t))
                            .map(|s| {
                                s.trim_start_matches("const ")
                                    .trim_start_matches("unsafe ")
                                    .trim_start_matches("async ")
                            });
                        if let Some(s) = item {
                            let name = s
                                .strip_prefix("fn ")
                                .or_else(|| s.strip_prefix("const "))
                                .or_else(|| (t.starts_with("pub const ")).then_some(s))
                                .map(ident);
                            if let Some(n) = name.filter(|n| !n.is_empty()) {
                                api.types.entry(ty.clone()).or_default().insert(n.into());
                            }
                        }
                    }
                    Block::Enum(ty) => {
                        let n = ident(t);
                        if n.starts_with(|c: char| c.is_ascii_uppercase()) {
                            api.types.entry(ty.clone()).or_default().insert(n.into());
                        }
                    }
                    Block::Trait(ty) => {
                        if let Some(s) = t.strip_prefix("fn ") {
                            api.types
                                .entry(ty.clone())
                                .or_default()
                                .insert(ident(s).into());
                        }
                    }
                }
            }
        }
        let unvis = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "));
        if let Some(s) = unvis.filter(|_| t.starts_with("pub ")) {
            for kw in ["struct ", "enum ", "trait ", "type ", "union "] {
                if let Some(r) = s.strip_prefix(kw) {
                    api.types.entry(ident(r).into()).or_default();
                }
            }
            for kw in ["fn ", "const fn ", "const ", "static ", "mod "] {
                if let Some(r) = s.strip_prefix(kw) {
                    if kw == "mod " {
                        api.modules.insert(ident(r).into());
                    } else {
                        api.free.insert(ident(r).into());
                    }
                }
            }
            if let Some(r) = s.strip_prefix("use ") {
                for name in r.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !name.is_empty() {
                        api.free.insert(name.into());
                    }
                }
            }
        }
        let opens = braces(line);
        if opens > 0 {
            let block = if let Some((ty, trait_impl)) = impl_target(t) {
                Some(Block::Impl { ty, trait_impl })
            } else if let Some(r) = unvis.and_then(|s| s.strip_prefix("enum ")) {
                Some(Block::Enum(ident(r).into()))
            } else {
                unvis
                    .and_then(|s| s.strip_prefix("trait "))
                    .map(|r| Block::Trait(ident(r).into()))
            };
            if let Some(b) = block {
                stack.push((depth, b));
            }
        }
        depth += opens;
        while stack.last().is_some_and(|(d, _)| depth <= *d) {
            stack.pop();
        }
    }
}

fn api(crate_dir: &str) -> Api {
    let mut files = Vec::new();
    rust_files(&root().join(crate_dir).join("src"), &mut files);
    let mut api = Api::default();
    for f in files {
        scan(&mut api, &std::fs::read_to_string(&f).expect("read source"));
    }
    api
}

/// The items the docs name, with their line: `Type::item` paths (with the path before
/// the type), `seg.`/`tx.` method calls, and `crate::function` paths.
#[derive(Debug, PartialEq)]
enum Mention {
    /// `prefix` is the path segment before `ty` (`rio_cache` in `rio_cache::Error::X`).
    Path {
        prefix: String,
        ty: String,
        item: String,
    },
    /// `module::item` with a lower-case module (`rio_cache::pkey_support`).
    Free { module: String, item: String },
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn mentions(text: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    // `a::b::C::d` paths.
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident_char(bytes[i]) || (i > 0 && is_ident_char(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let mut segs: Vec<String> = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && is_ident_char(bytes[j]) {
                j += 1;
            }
            segs.push(bytes[start..j].iter().collect());
            if j + 2 < bytes.len()
                && bytes[j] == ':'
                && bytes[j + 1] == ':'
                && is_ident_char(bytes[j + 2])
            {
                j += 2;
            } else {
                break;
            }
        }
        let call = bytes.get(j) == Some(&'(') || bytes[j..].starts_with(&[':', ':', '<']);
        for k in 0..segs.len().saturating_sub(1) {
            let (a, b) = (&segs[k], &segs[k + 1]);
            let prefix = if k > 0 {
                segs[k - 1].clone()
            } else {
                String::new()
            };
            if a.starts_with(|c: char| c.is_ascii_uppercase()) {
                out.push(Mention::Path {
                    prefix,
                    ty: a.clone(),
                    item: b.clone(),
                });
            } else if matches!(a.as_str(), "vista" | "rio_cache" | "heap" | "inspect")
                && (b.starts_with(|c: char| c.is_ascii_uppercase())
                    || (k + 2 == segs.len() && call))
            {
                out.push(Mention::Free {
                    module: a.clone(),
                    item: b.clone(),
                });
            }
        }
        i = j.max(i + 1);
    }
    // `seg.method(` and `tx.method(`.
    for (var, ty) in [("seg.", "Segment"), ("tx.", "Transaction")] {
        let mut from = 0;
        while let Some(at) = text[from..].find(var) {
            let at = from + at;
            from = at + var.len();
            if text[..at].chars().next_back().is_some_and(is_ident_char) {
                continue;
            }
            let rest = &text[from..];
            let name = ident(rest);
            let after = &rest[name.len()..];
            if !name.is_empty() && (after.starts_with('(') || after.starts_with("::<")) {
                out.push(Mention::Path {
                    prefix: String::new(),
                    ty: ty.into(),
                    item: name.into(),
                });
            }
        }
    }
    out
}

#[test]
fn the_mention_parser_finds_paths_and_calls() {
    let m = mentions("`vista::rio_cache::Error::InUpdate`, `seg.begin()?`, `tx.get::<u64>(8)`, `rio_cache::pkey_support()`, `Arc::get_mut`, myseg.x(");
    let paths: Vec<String> = m
        .iter()
        .map(|m| match m {
            Mention::Path { prefix, ty, item } => format!("{prefix}/{ty}::{item}"),
            Mention::Free { module, item } => format!("{module}::{item}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            "rio_cache::Error",
            "rio_cache/Error::InUpdate",
            "rio_cache::pkey_support",
            "/Arc::get_mut",
            "/Segment::begin",
            "/Transaction::get",
        ]
    );
}

#[test]
fn every_api_item_in_the_docs_exists() {
    let vista = api("vista");
    let rio = api("rio-cache");
    // The parser must see the API, or an empty result would pass everything unnoticed.
    for (ty, item) in [
        ("Segment", "begin"),
        ("Segment", "root"),
        ("Transaction", "commit"),
        ("Transaction", "alloc"),
        ("Options", "lock_wait"),
        ("Options", "default"),
        ("Error", "Conflict"),
        ("PPtr", "NULL"),
    ] {
        assert!(
            vista.types.get(ty).is_some_and(|s| s.contains(item)),
            "the source parser missed {ty}::{item}: {:?}",
            vista.types.get(ty)
        );
    }
    assert!(rio
        .types
        .get("Error")
        .is_some_and(|s| s.contains("InUpdate")));
    assert!(rio
        .types
        .get("Protection")
        .is_some_and(|s| s.contains("Auto")));

    let items = |prefix: &str, ty: &str| -> Option<BTreeSet<String>> {
        // `Error` is defined by both crates: the path says which one.
        let from: Vec<&Api> = match (ty, prefix) {
            ("Error", "rio_cache") => vec![&rio],
            ("Error", _) => vec![&vista],
            _ => vec![&vista, &rio],
        };
        let sets: Vec<&BTreeSet<String>> = from.iter().filter_map(|a| a.types.get(ty)).collect();
        (!sets.is_empty()).then(|| sets.into_iter().flatten().cloned().collect())
    };
    let mut errors = Vec::new();
    let mut checked = 0;
    for doc in DOCS {
        for (n, line) in read(doc).lines().enumerate() {
            for m in mentions(line) {
                match m {
                    Mention::Path { prefix, ty, item } => {
                        // Types neither crate defines (std's `Arc`, crash-sim's `App`)
                        // are not this test's business.
                        let Some(known) = items(&prefix, &ty) else {
                            continue;
                        };
                        checked += 1;
                        let path = format!("{ty}::{item}");
                        if !known.contains(&item) && !ALLOWED_PATHS.iter().any(|(p, _)| *p == path)
                        {
                            errors.push(format!("{doc}:{}: `{path}` does not exist", n + 1));
                        }
                    }
                    Mention::Free { module, item } => {
                        let a = if module == "rio_cache" { &rio } else { &vista };
                        checked += 1;
                        let ok = a.free.contains(&item)
                            || a.modules.contains(&item)
                            || a.types.contains_key(&item);
                        if !ok {
                            errors.push(format!(
                                "{doc}:{}: `{module}::{item}` does not exist",
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked >= 50,
        "only {checked} API mentions found: the extraction broke"
    );
    assert!(
        errors.is_empty(),
        "docs name API that does not exist:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Claims that a shipped feature is missing.

/// The document as one lower-case line: Markdown emphasis removed, whitespace collapsed.
fn normalized(doc: &str) -> String {
    doc.replace("**", "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn stale_claims(name: &str, doc: &str) -> Vec<String> {
    let mut text = normalized(doc);
    let mut errors = Vec::new();
    for q in QUOTES.iter().filter(|q| q.doc == name) {
        let quoted = normalized(q.text);
        if read(q.proof).contains(q.text) {
            text = text.replace(&quoted, " ");
        } else if text.contains(&quoted) {
            errors.push(format!(
                "{name} quotes \"{}\", which {} no longer contains: update the quote",
                q.text, q.proof
            ));
        }
    }
    for (phrase, truth) in BANNED {
        if let Some(at) = text.find(phrase) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(60)
                .map_or(0, |(i, _)| i);
            let to = (at + phrase.len() + 60).min(text.len());
            let to = (to..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            errors.push(format!(
                "{name} says \"{phrase}\", but {truth}: ...{}...",
                &text[from..to]
            ));
        }
    }
    // `begin` with `&mut self` in one sentence.
    for sentence in text.split(". ") {
        if sentence.contains("begin") && sentence.contains("&mut self") {
            errors.push(format!(
                "{name} says begin takes &mut self, but it takes &self: {sentence}"
            ));
        }
    }
    errors
}

#[test]
fn no_doc_says_a_shipped_feature_is_missing() {
    let mut errors = Vec::new();
    for doc in DOCS {
        errors.extend(stale_claims(doc, &read(doc)));
    }
    assert!(errors.is_empty(), "stale claims:\n{}", errors.join("\n"));
}

#[test]
fn the_stale_claim_check_can_fail() {
    let old = "There is no persistent\nheap, allocator or root object yet. It does **not** re-export `bytemuck`. \
               `Segment::begin` takes `&mut self`, so a segment runs one transaction at a time.";
    let errors = stale_claims("old.md", old);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}
