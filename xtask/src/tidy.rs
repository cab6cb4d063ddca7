//! The tidy test: the house as ARCHITECTURE.md describes it, checked by `cargo test` so that it cannot drift
//! (after rust-analyzer's `tidy.rs`). Each check reads the repository's files; none runs a build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::workspace_root;

/// Folders that are not the project's own text: build output, the virtualenv, version control.
const SKIPPED_DIRS: &[&str] = &["target", ".git", ".venv", "node_modules"];

/// The library crates: code that others call, which reports through return values and never prints.
const LIBRARY_SOURCES: &[&str] = &["guestsim/src", "mockstack/src", "harness/src"];

/// Modules of the `isoharness` binary inside `harness/src`: the only harness code that prints.
const BINARY_MODULES: &[&str] = &["harness/src/main.rs", "harness/src/cli.rs", "harness/src/commands"];

/// The workspace crates each crate may depend on (normal and dev dependencies), as ARCHITECTURE.md's
/// invariants say.
const ALLOWED_CRATE_DEPENDENCIES: &[(&str, &[&str])] = &[
    ("guestsim", &[]),
    ("mockstack", &["guestsim"]),
    ("harness", &["guestsim", "mockstack"]),
    ("bench", &["guestsim", "mockstack", "harness"]),
    ("parser-oracles", &["guestsim", "mockstack", "harness"]),
    ("xtask", &[]),
];

/// The only files of the harness library that may name `mockstack`: starting the embedded cloud, waiting on its
/// virtual clock, and serving `isoharness mock`.
const HARNESS_FILES_USING_MOCKSTACK: &[&str] =
    &["harness/src/target.rs", "harness/src/driver.rs", "harness/src/commands/mock.rs"];

/// Type names defined more than once in the workspace's `src/` folders because they are one idea seen from two
/// sides (a client's view and mockstack's record of the same OpenStack resource, or the renderer's and the
/// validator's model of the same libvirt element, which ARCHITECTURE.md keeps apart on purpose).
const SAME_IDEA: &[(&str, &str)] = &[
    ("Image", "a Glance image: the client's view (harness/src/cloud) and mockstack's record"),
    ("Server", "a Nova server: the client's view and mockstack's record"),
    ("Flavor", "a Nova flavor: the client's view and mockstack's record"),
    ("Fault", "a server's fault: the client's view and mockstack's record"),
    ("InstanceAction", "a server's instance action: the client's view and mockstack's record"),
    ("DiskSource", "a libvirt <disk>'s <source>: guestsim's renderer and the validator's model"),
    ("Tpm", "a libvirt <tpm> device: guestsim's renderer and the validator's model"),
];

fn project_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !SKIPPED_DIRS.contains(&name.to_string_lossy().as_ref()) {
                    walk(&path, root, out);
                }
            } else {
                out.push(path.strip_prefix(root).expect("walked below the root").to_path_buf());
            }
        }
    }
    let root = workspace_root();
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_default()
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().is_some_and(|e| extensions.iter().any(|x| e == *x))
}

fn under(path: &Path, prefix: &str) -> bool {
    path.starts_with(prefix)
}

fn fail_with(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn every_rust_file_starts_with_a_doc_comment() {
    let problems: Vec<String> = project_files()
        .into_iter()
        .filter(|p| has_extension(p, &["rs"]))
        .filter(|p| !read(p).trim_start().starts_with("//!"))
        .map(|p| format!("{}: does not start with a `//!` line saying what it holds", p.display()))
        .collect();
    fail_with(problems, "Rust files without a module doc");
}

/// The text of a file where citations live: comments of code, all of a document.
fn citing_text(path: &Path) -> Option<String> {
    let text = read(path);
    if has_extension(path, &["md", "snap"]) {
        return Some(text);
    }
    let comment = if has_extension(path, &["rs"]) {
        "//"
    } else if has_extension(path, &["toml", "py", "sh", "txt", "yaml", "cfg", "ini", "conf"])
        || path.file_name().is_some_and(|n| n == "run")
    {
        "#"
    } else {
        return None;
    };
    Some(text.lines().filter_map(|line| line.find(comment).map(|at| &line[at..])).collect::<Vec<_>>().join("\n"))
}

/// The names of the working notes that sit beside the repository (the Markdown files of `<parent>/shared/`, where
/// the team keeps them) and must never be cited: the repository's users cannot read them, so what the code relies on
/// is restated in `docs/`. Empty where the notes are not there (a CI checkout); the `../` rule still holds there.
fn private_notes() -> Vec<String> {
    let Some(notes) = workspace_root().parent().map(|parent| parent.join("shared")) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(notes) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".md").map(str::to_string))
        .filter(|stem| !workspace_root().join(format!("{stem}.md")).exists())
        .collect()
}

/// Whether `token`, a relative path taken from `dir` (relative to the workspace root), leads out of the workspace.
fn leaves_the_repository(dir: &Path, token: &str) -> bool {
    let mut depth = dir.components().count();
    for part in token.split('/') {
        match part {
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            "." | "" => {}
            _ => depth += 1,
        }
    }
    false
}

#[test]
fn cited_files_exist() {
    let files = project_files();
    let existing: BTreeSet<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let exists_somewhere = |cited: &str| existing.iter().any(|f| f == cited || f.ends_with(&format!("/{cited}")));
    let top_level: BTreeSet<String> = std::fs::read_dir(workspace_root())
        .expect("the workspace root is readable")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !SKIPPED_DIRS.contains(&name.as_str()))
        .collect();
    let path_token = Regex::new(r"(?:\.\./)*[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*").expect("a valid regex");
    let markdown_link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").expect("a valid regex");
    let private_notes = private_notes();
    let mut problems = Vec::new();
    for path in &files {
        let Some(text) = citing_text(path) else { continue };
        let dir = path.parent().unwrap_or(Path::new(""));
        for (number, line) in text.lines().enumerate() {
            let at = |what: String| format!("{}: {what} (in: {})", path.display(), line.trim());
            for note in &private_notes {
                if line.contains(note.as_str()) {
                    problems.push(at(format!("cites {note}, a note kept outside the repository")));
                }
            }
            if has_extension(path, &["md"]) {
                for link in markdown_link.captures_iter(line) {
                    let target = &link[1];
                    if target.contains("://") || target.starts_with("mailto:") {
                        continue;
                    }
                    if !workspace_root().join(dir).join(target).exists() {
                        problems.push(at(format!("links to {target}, which does not exist")));
                    }
                }
            }
            for found in path_token.find_iter(line) {
                // `/mockstack/clock` and `http://host/x.md` are routes and addresses, not files.
                if line[..found.start()].ends_with(['/', ':']) {
                    continue;
                }
                let token = found.as_str().trim_end_matches('.');
                // Cited from its file's folder or, as people write them, from the repository's root.
                let outside = token.starts_with("../")
                    && !workspace_root().join(dir).join(token).exists()
                    && (leaves_the_repository(dir, token) || leaves_the_repository(Path::new(""), token));
                if outside {
                    problems.push(at(format!("cites {token}, which is outside the repository")));
                    continue;
                }
                let first = token.split('/').next().unwrap_or_default();
                let ours = token.contains('/') && top_level.contains(first);
                let document = token.ends_with(".md") && !token.contains("://");
                if !(ours || document) {
                    continue;
                }
                // `nova-patches/iso-install/0*.patch` is a pattern: it must match something.
                let pattern = line[found.end()..].starts_with('*');
                let matches_something = pattern && existing.iter().any(|f| f.starts_with(token));
                let resolved = matches_something
                    || workspace_root().join(token).exists()
                    || workspace_root().join(dir).join(token).exists()
                    || (document && !token.contains('/') && exists_somewhere(token));
                if !resolved {
                    problems.push(at(format!("cites {token} (line {}), which does not exist", number + 1)));
                }
            }
        }
    }
    fail_with(problems, "citations of files that do not exist");
}

/// The code map's sections: the folders each `### ` heading names in backticks, and the file and folder names
/// its paragraphs name in backticks.
fn code_map() -> Vec<(Vec<String>, BTreeSet<String>)> {
    let text = read(Path::new("ARCHITECTURE.md"));
    let named = Regex::new(r"`([A-Za-z0-9_./-]+)`").expect("a valid regex");
    let mut sections: Vec<(Vec<String>, BTreeSet<String>)> = Vec::new();
    let mut in_map = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            in_map = line == "## Code map";
            continue;
        }
        if !in_map {
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            let dirs = named.captures_iter(heading).map(|c| c[1].trim_end_matches('/').to_owned()).collect();
            sections.push((dirs, BTreeSet::new()));
            continue;
        }
        if let Some((_, names)) = sections.last_mut() {
            names.extend(named.captures_iter(line).map(|c| c[1].to_owned()));
        }
    }
    sections
}

#[test]
fn the_code_map_names_every_source_file_and_only_existing_ones() {
    let map = code_map();
    assert!(!map.is_empty(), "ARCHITECTURE.md has no `## Code map` with one `### ` heading per folder");
    let files = project_files();
    let mut problems = Vec::new();
    for (dirs, names) in &map {
        let section_files: Vec<String> = files
            .iter()
            .filter(|p| dirs.iter().any(|d| under(p, d)))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        for name in names.iter().filter(|n| n.ends_with(".rs") || n.ends_with('/')) {
            let wanted = name.trim_end_matches('/');
            let found = workspace_root().join(wanted).exists()
                || section_files
                    .iter()
                    .any(|p| p.ends_with(&format!("/{wanted}")) || p.contains(&format!("/{wanted}/")));
            if !found {
                problems.push(format!("the code map of {} names {name}, which does not exist there", dirs.join(", ")));
            }
        }
        for file in section_files.iter().filter(|p| p.ends_with(".rs") && p.contains("/src/")) {
            let file_name = file.rsplit('/').next().expect("a file name");
            if ["mod.rs", "lib.rs", "main.rs", "tests.rs"].contains(&file_name) {
                continue;
            }
            let mentioned = names.iter().any(|n| n == file_name || n.ends_with(&format!("/{file_name}")));
            if !mentioned {
                problems.push(format!("{file} is not in ARCHITECTURE.md's code map"));
            }
        }
    }
    fail_with(problems, "the code map and the files disagree");
}

fn workspace_dependencies(manifest: &toml::Table) -> BTreeSet<String> {
    let members: BTreeSet<&str> = ALLOWED_CRATE_DEPENDENCIES.iter().map(|(name, _)| *name).collect();
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|table| manifest.get(*table).and_then(|t| t.as_table()))
        .flat_map(|t| t.keys())
        .filter(|name| members.contains(name.as_str()))
        .cloned()
        .collect()
}

#[test]
fn crates_depend_only_as_the_architecture_says() {
    let root: toml::Table = read(Path::new("Cargo.toml")).parse().expect("the root Cargo.toml parses");
    let members: BTreeSet<String> = root["workspace"]["members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let described: BTreeSet<String> = ALLOWED_CRATE_DEPENDENCIES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(members, described, "every workspace member has its dependency rule here, and only they");
    let mut problems = Vec::new();
    for (name, allowed) in ALLOWED_CRATE_DEPENDENCIES {
        let manifest: toml::Table =
            read(&Path::new(name).join("Cargo.toml")).parse().unwrap_or_else(|e| panic!("{name}/Cargo.toml: {e}"));
        for dependency in workspace_dependencies(&manifest) {
            if !allowed.contains(&dependency.as_str()) {
                problems.push(format!("{name} depends on {dependency}"));
            }
        }
    }
    let mentions_mockstack = Regex::new(r"\bmockstack::|use mockstack\b").expect("a valid regex");
    for path in project_files().iter().filter(|p| under(p, "harness/src") && has_extension(p, &["rs"])) {
        let allowed = HARNESS_FILES_USING_MOCKSTACK.iter().any(|a| path == Path::new(a));
        let text = read(path);
        let uses = text.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| mentions_mockstack.is_match(l));
        if !allowed && uses {
            problems.push(format!(
                "{} uses mockstack: the harness uses it only to start an embedded cloud and to serve `isoharness mock`",
                path.display()
            ));
        }
    }
    fail_with(problems, "crate dependencies that ARCHITECTURE.md does not allow");
}

#[test]
fn library_crates_do_not_print() {
    let printing = Regex::new(r"\b(e?println|e?print|dbg)!").expect("a valid regex");
    let mut problems = Vec::new();
    for path in project_files().iter().filter(|p| has_extension(p, &["rs"])) {
        let library = LIBRARY_SOURCES.iter().any(|l| under(path, l));
        let binary = BINARY_MODULES.iter().any(|b| under(path, b));
        if !library || binary || path.ends_with("tests.rs") {
            continue;
        }
        let text = read(path);
        // Unit tests at the end of a file may print what they compare.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (number, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && printing.is_match(line) {
                problems.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    fail_with(problems, "library code that prints (return the text, let the binary print it)");
}

#[test]
fn each_type_name_means_one_idea() {
    let definition = Regex::new(r"^\s*(?:pub(?:\([a-z:]+\))? )?(?:struct|enum|trait|type|union) ([A-Z][A-Za-z0-9]*)\b")
        .expect("a valid regex");
    let mut defined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in project_files().iter().filter(|p| has_extension(p, &["rs"])) {
        let in_src = path.components().any(|c| c.as_os_str() == "src");
        if !in_src {
            continue;
        }
        let text = read(path);
        let mut impl_depth: Option<usize> = None;
        for line in text.lines() {
            let indent = line.len() - line.trim_start().len();
            // Associated types (`type Err = …;` inside an impl) name the trait's idea, not a new one.
            if line.trim_start().starts_with("impl") && line.trim_end().ends_with('{') {
                impl_depth = Some(indent);
            } else if impl_depth == Some(indent) && line.trim() == "}" {
                impl_depth = None;
            }
            if impl_depth.is_some() {
                continue;
            }
            if let Some(c) = definition.captures(line) {
                defined.entry(c[1].to_owned()).or_default().push(path.display().to_string());
            }
        }
    }
    let same_idea: BTreeMap<&str, &str> = SAME_IDEA.iter().copied().collect();
    let mut problems = Vec::new();
    for (name, places) in &defined {
        if places.len() > 1 && !same_idea.contains_key(name.as_str()) {
            problems.push(format!("{name}: {}", places.join(", ")));
        }
    }
    for name in same_idea.keys() {
        if defined.get(*name).is_none_or(|places| places.len() < 2) {
            problems.push(format!("{name} is listed as one idea defined twice, but it is defined once or never"));
        }
    }
    fail_with(problems, "type names defined more than once for different ideas (rename one, or list a true pair)");
}

#[test]
fn snapshots_name_the_test_that_writes_them() {
    let mut problems = Vec::new();
    for path in project_files().iter().filter(|p| has_extension(p, &["snap"])) {
        let text = read(path);
        let source = text.lines().find_map(|l| l.strip_prefix("source: ")).map(str::trim);
        match source {
            Some(source) if workspace_root().join(source).is_file() => {}
            Some(source) => problems.push(format!("{}: its source {source} does not exist", path.display())),
            None => problems.push(format!("{}: no `source:` header", path.display())),
        }
    }
    fail_with(problems, "insta snapshots whose test is gone");
}
