//! The shape of the server crate, checked on its source so that CI (`cargo test`, run by `.ci/run`)
//! stops a change that breaks it: in `src/web`, a route module imports only `kit` and its own flow,
//! `kit` imports no route module, no files import each other in a loop, and no file is over 500
//! lines; `src/app` speaks no HTTP (issue 17, item 8).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The files that assemble the route modules (the router, the OpenAPI document): they may name
/// every module, and none names them.
const ASSEMBLY: [&str; 2] = ["mod.rs", "openapi.rs"];

const MAX_LINES: usize = 500;

#[test]
fn route_modules_import_only_the_kit_and_their_own_flow() {
    let files = web_files();
    let violations: Vec<String> = files.iter().flat_map(|f| f.violations(&files)).collect();
    assert!(violations.is_empty(), "web imports that break the layering:\n{}", violations.join("\n"));
}

#[test]
fn web_files_import_each_other_in_no_loop() {
    let files = web_files();
    let graph = import_graph(&files);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import loop in src/web: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_web_file_is_over_500_lines() {
    let long: Vec<String> =
        web_files().iter().filter(|f| f.lines > MAX_LINES).map(|f| format!("{} has {} lines (at most {MAX_LINES})", f.name(), f.lines)).collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn app_does_not_speak_http() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app");
    let mut offenders = BTreeSet::new();
    for path in rust_files(&dir) {
        let name = path.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        // How many `super`s lead from this file to the crate's root.
        let depth = if path.file_name().is_some_and(|n| n == "mod.rs") { 1 } else { 2 };
        assert!(!mentions_web(&code, depth), "src/app/{name} uses the web layer: app is called by web, never the other way");
        if has_word(&code, "axum") {
            offenders.insert(name);
        }
    }
    assert!(offenders.is_empty(), "src/app files using axum: {offenders:?}; return an `AppError` of the right kind and let web choose the status");
}

/// The checker finds what it is meant to: an arrow between two flows, in a `use` group or a path.
#[test]
fn the_checker_sees_arrows_between_flows() {
    let files = vec![
        WebFile::new(vec![], true, "", 1),
        WebFile::new(vec!["kit".into()], true, "pub struct Web;", 1),
        WebFile::new(vec!["sign_in".into()], false, "", 1),
        WebFile::new(vec!["two_factor".into()], true, "", 1),
        WebFile::new(vec!["two_factor".into(), "email_code".into()], false, "", 1),
    ];
    let in_file = |path: Vec<&str>, is_mod: bool, code: &str| {
        let f = WebFile::new(path.into_iter().map(String::from).collect(), is_mod, code, 1);
        f.violations(&files)
    };
    assert!(in_file(vec!["sign_in"], false, "use crate::web::kit::{Web, render};").is_empty());
    assert!(in_file(vec!["two_factor", "email_code"], false, "use super::{CodeStepPage, enrolled};\nuse super::super::kit::Web;").is_empty());
    assert_eq!(in_file(vec!["sign_in"], false, "use super::two_factor::CodeStepPage;").len(), 1);
    assert_eq!(in_file(vec!["sign_in"], false, "use super::{kit::Web, two_factor::X};").len(), 1);
    assert_eq!(in_file(vec!["sign_in"], false, "fn f() { crate::web::two_factor::enrolled(); }").len(), 1);
    assert_eq!(in_file(vec!["sign_in"], false, "use super::Web;").len(), 1, "an item of web/mod.rs is the assembly's");
    assert_eq!(in_file(vec!["kit"], true, "use super::sign_in::X;").len(), 1);
    assert_eq!(in_file(vec!["two_factor", "email_code"], false, "use super::super::sign_in::X;").len(), 1);
    assert!(in_file(vec!["sign_in"], false, "// use super::two_factor::X;\nlet s = \"super::two_factor\";").is_empty(), "comments and strings are not code");
    assert!(in_file(vec!["sign_in"], false, "pub(super) fn f() {}").is_empty(), "a visibility is not an import");
    assert!(mentions_web("use super::super::web::kit::Web;", 2) && mentions_web("use crate::web::Web;", 2) && !mentions_web("use super::auth::X;", 2));
    let graph = import_graph(&[
        WebFile::new(vec!["kit".into(), "a".into()], false, "use super::b::X;", 1),
        WebFile::new(vec!["kit".into(), "b".into()], false, "use super::a::Y;", 1),
    ]);
    assert!(find_cycle(&graph).is_some());
}

// ---------------------------------------------------------------- reading the source

struct WebFile {
    /// The module path under `web` (`["two_factor", "email_code"]`; `[]` for web/mod.rs).
    module: Vec<String>,
    is_mod_rs: bool,
    /// The source without comments and with string contents blanked.
    code: String,
    lines: usize,
}

impl WebFile {
    fn new(module: Vec<String>, is_mod_rs: bool, source: &str, lines: usize) -> Self {
        WebFile { module, is_mod_rs, code: code_of(source), lines }
    }

    fn name(&self) -> String {
        let mut name = self.module.join("/");
        if self.is_mod_rs {
            name = if name.is_empty() { "mod.rs".into() } else { format!("{name}/mod.rs") };
        } else {
            name.push_str(".rs");
        }
        format!("src/web/{name}")
    }

    /// The flow a file belongs to: the first module under `web`; "" for the assembly files.
    fn flow(&self) -> &str {
        match self.module.first() {
            None => "",
            Some(m) if self.module.len() == 1 && !self.is_mod_rs && ASSEMBLY.contains(&format!("{m}.rs").as_str()) => "",
            Some(m) => m,
        }
    }

    /// The modules of `web` this file's code names, each as the module path that holds it.
    fn references<'a>(&self, files: &'a [WebFile]) -> Vec<&'a WebFile> {
        let mut found = Vec::new();
        for path in paths_in(&self.code) {
            let absolute: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") if path.get(1).map(String::as_str) == Some("web") => path[2..].to_vec(),
                Some("super") => {
                    let ups = path.iter().take_while(|p| *p == "super").count();
                    if ups > self.module.len() {
                        continue; // above web: not ours to check
                    }
                    let mut base = self.module[..self.module.len() - ups].to_vec();
                    base.extend(path[ups..].iter().cloned());
                    base
                }
                _ => continue,
            };
            if let Some(file) = holder(files, &absolute) {
                found.push(file);
            }
        }
        found
    }

    fn violations(&self, files: &[WebFile]) -> Vec<String> {
        let own = self.flow();
        if own.is_empty() {
            return Vec::new();
        }
        self.references(files)
            .into_iter()
            .filter(|target| {
                let theirs = target.flow();
                !(theirs == "kit" || theirs == own)
            })
            .map(|target| {
                let what = if target.flow().is_empty() { "the assembly (mod.rs, openapi.rs) that imports it".to_owned() } else { format!("the route module `{}`", target.flow()) };
                if own == "kit" {
                    format!("{} (kit) names {what}: kit imports no route module", self.name())
                } else {
                    format!("{} names {what} ({}): a route module imports only `kit` and its own flow", self.name(), target.name())
                }
            })
            .collect()
    }
}

/// The file of the deepest module on `path` (an item's path ends in its module).
fn holder<'a>(files: &'a [WebFile], path: &[String]) -> Option<&'a WebFile> {
    (0..=path.len()).rev().find_map(|n| files.iter().find(|f| f.module == path[..n]))
}

fn web_files() -> Vec<WebFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    rust_files(&dir)
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path).unwrap();
            let relative = path.strip_prefix(&dir).unwrap();
            let mut module: Vec<String> = relative.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
            let is_mod_rs = module.last().map(String::as_str) == Some("mod");
            if is_mod_rs {
                module.pop();
            }
            WebFile::new(module, is_mod_rs, &source, source.lines().count())
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The arrows between files. A `mod.rs` declaring, re-exporting or assembling the modules below it
/// is not an arrow (it owns them); everything else naming another file is.
fn import_graph(files: &[WebFile]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let entry = graph.entry(f.name()).or_default();
        for target in f.references(files) {
            let owned = f.is_mod_rs && target.module.starts_with(&f.module);
            if target.name() != f.name() && !owned {
                entry.insert(target.name());
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

// ---------------------------------------------------------------- a small Rust lexer

/// The source with comments removed and the contents of string and char literals blanked, so that
/// what remains is code.
fn code_of(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < chars.len() && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes) {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every path the code names that starts at `crate` or `super`, with `use` groups unfolded:
/// `use super::{kit::A, B}` names `super::kit::A` and `super::B`.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let before = |n: usize| if i >= n { tokens[i - n].as_str() } else { "" };
        // `pub(super)` and `pub(in crate::x)` are visibilities, not paths to another module.
        let visibility = (before(1) == "(" && before(2) == "pub") || before(1) == "in";
        let starts = (tokens[i] == "crate" || tokens[i] == "super") && before(1) != "::" && !visibility;
        if starts {
            let (found, end) = path_at(&tokens, i, Vec::new());
            paths.extend(found);
            i = end;
        } else {
            i += 1;
        }
    }
    paths
}

/// The path (or the paths of a group) starting at `tokens[i]`, after `prefix`; and where it ends.
fn path_at(tokens: &[String], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                let mut paths = Vec::new();
                i += 1;
                while i < tokens.len() && tokens[i] != "}" {
                    if tokens[i] == "," {
                        i += 1;
                        continue;
                    }
                    let (found, end) = path_at(tokens, i, prefix.clone());
                    paths.extend(found);
                    i = end.max(i + 1);
                    while i < tokens.len() && tokens[i] != "," && tokens[i] != "}" {
                        i += 1; // `as` renames, `self`
                    }
                }
                return (paths, i + 1);
            }
            Some(t) if is_ident(t) => {
                if t != "self" {
                    prefix.push(t.to_owned());
                }
                if tokens.get(i + 1).map(String::as_str) == Some("::") {
                    i += 2;
                } else {
                    return (vec![prefix], i + 1);
                }
            }
            _ => return (if prefix.is_empty() { vec![] } else { vec![prefix] }, i),
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_owned());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

fn has_word(code: &str, word: &str) -> bool {
    tokens(code).iter().any(|t| t == word)
}

/// `crate::web`, or `super::…::web` from a file `depth` modules below the crate's root.
fn mentions_web(code: &str, depth: usize) -> bool {
    paths_in(code).iter().any(|p| {
        let ups = p.iter().take_while(|s| *s == "super").count();
        let from_root = if p.first().map(String::as_str) == Some("crate") { 1 } else if ups == depth { ups } else { return false };
        p.get(from_root).map(String::as_str) == Some("web")
    })
}
