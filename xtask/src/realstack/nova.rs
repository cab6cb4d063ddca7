//! Which Nova the local real cloud runs: the pinned release or a developer's source tree, with `git
//! format-patch` patches applied to the installed copy, and `--nova-option`s written into nova.conf.
//!
//! Every `up` first makes the virtualenv's Nova what it is asked for. What is installed is recorded in
//! `nova-source.txt` under the cloud's directory (origin, and each patch with its sha256); when the request
//! differs from the record, pristine Nova is reinstalled (from pip's cache) before any patch is applied, so an
//! `up` without patches after a patched one gives stock Nova back. Patches are checked one after the other
//! on a copy of the files they touch before the installed tree is changed: a patch that does not apply fails
//! `up` naming itself and its rejected hunks, and leaves Nova pristine.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::{Dirs, say, source_dir};

/// The options the project's own Nova series (`git format-patch` files against the pinned release) needs in
/// nova.conf: without them the patched code paths stay off.
pub const ISO_INSTALL_OPTIONS: &[&str] = &["libvirt.iso_install_root_disk=True", "libvirt.virtio_win_image=virtio-win"];

/// What `up` is asked to make of Nova.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NovaRequest {
    /// Patch files, applied in this order (directories already expanded: [`expand_patch_args`]).
    pub patches: Vec<PathBuf>,
    /// A Nova source tree installed in place of the pinned release.
    pub source: Option<PathBuf>,
    /// Written into nova.conf, in this order (a later value of the same key wins).
    pub options: Vec<NovaOption>,
}

impl NovaRequest {
    /// The pinned release, unpatched, with no extra options: what `up` without `--nova-*` flags asks for.
    pub fn stock() -> NovaRequest {
        NovaRequest::default()
    }

    /// The pinned release with the patches of `series` (a directory of `*.patch` files, or one file) and the
    /// options [`ISO_INSTALL_OPTIONS`] the project's own series needs.
    pub fn patched(series: &Path) -> anyhow::Result<NovaRequest> {
        Ok(NovaRequest {
            patches: expand_patch_args(&[series.to_path_buf()])?,
            source: None,
            options: ISO_INSTALL_OPTIONS.iter().map(|o| NovaOption::parse(o)).collect::<anyhow::Result<_>>()?,
        })
    }

    /// Checks what can be checked before anything is stopped or changed: the patch files exist, the source
    /// tree is Nova's.
    pub fn validate(&self) -> anyhow::Result<()> {
        for patch in &self.patches {
            if !patch.is_file() {
                bail!("--nova-patch {}: no such file", patch.display());
            }
        }
        if let Some(source) = &self.source {
            check_nova_tree(source)?;
        }
        Ok(())
    }
}

/// `SECTION.KEY=VALUE` of `--nova-option`: one line of nova.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaOption {
    pub section: String,
    pub key: String,
    pub value: String,
}

impl NovaOption {
    pub fn parse(text: &str) -> anyhow::Result<NovaOption> {
        let malformed = |why: &str| {
            anyhow::anyhow!(
                "--nova-option `{text}`: {why}; expected SECTION.KEY=VALUE, e.g. libvirt.iso_install_root_disk=True"
            )
        };
        let (name, value) = text.split_once('=').ok_or_else(|| malformed("no `=`"))?;
        let (section, key) = name.split_once('.').ok_or_else(|| malformed("no `.` between section and key"))?;
        let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !word(section) {
            return Err(malformed("the section is empty or holds characters other than letters, digits, `_`, `-`"));
        }
        if !word(key) {
            return Err(malformed("the key is empty or holds characters other than letters, digits, `_`, `-`"));
        }
        if value.contains(['\n', '\r']) {
            return Err(malformed("the value holds a line break"));
        }
        Ok(NovaOption { section: section.to_string(), key: key.to_string(), value: value.trim().to_string() })
    }
}

impl fmt::Display for NovaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}={}", self.section, self.key, self.value)
    }
}

/// Writes `options` into the INI text `conf`: a key already in its section is replaced, a new key goes at the
/// end of its section, a new section at the end of the file.
pub fn apply_options(conf: &str, options: &[NovaOption]) -> String {
    let mut lines: Vec<String> = conf.lines().map(str::to_string).collect();
    for option in options {
        let line = format!("{} = {}", option.key, option.value);
        let header = format!("[{}]", option.section);
        let Some(start) = lines.iter().position(|l| l.trim() == header) else {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push("# Set by `cargo xtask realstack up --nova-option`.".to_string());
            lines.extend([header, line]);
            continue;
        };
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |i| start + 1 + i);
        let existing = lines[start + 1..end].iter().position(|l| {
            let l = l.trim_start();
            !l.starts_with('#') && !l.starts_with(';') && l.split_once('=').is_some_and(|(k, _)| k.trim() == option.key)
        });
        match existing {
            Some(i) => lines[start + 1 + i] = line,
            None => {
                // After the section's last non-blank line, so that its blank separator stays.
                let mut at = end;
                while at > start + 1 && lines[at - 1].trim().is_empty() {
                    at -= 1;
                }
                lines.insert(at, line);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The arguments of `--nova-patch`, directories replaced by their `*.patch` files in name order; every path
/// absolute.
pub fn expand_patch_args(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let path = fs::canonicalize(arg).with_context(|| format!("--nova-patch {}: no such file", arg.display()))?;
        if path.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "patch"))
                .collect();
            if found.is_empty() {
                bail!("--nova-patch {}: the directory holds no *.patch file", arg.display());
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// Fails unless `dir` is a Nova source tree: a `setup.cfg` naming the package `nova`, and the libvirt driver.
pub fn check_nova_tree(dir: &Path) -> anyhow::Result<()> {
    let setup = fs::read_to_string(dir.join("setup.cfg")).unwrap_or_default();
    let names_nova =
        setup.lines().any(|l| l.split_once('=').is_some_and(|(k, v)| k.trim() == "name" && v.trim() == "nova"));
    if !names_nova || !dir.join("nova/virt/libvirt/driver.py").is_file() {
        bail!(
            "--nova-source {}: not a Nova source tree (it needs a setup.cfg with `name = nova` and \
             nova/virt/libvirt/driver.py)",
            dir.display()
        );
    }
    Ok(())
}

/// Where the installed Nova came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NovaOrigin {
    /// `nova==VERSION` from PyPI, as requirements.txt pins it.
    Release(String),
    /// `pip install DIR` of a source tree, at its git HEAD (None outside git); `clean` when git saw no change
    /// to it. Only a clean tree at a known HEAD is taken to be the same install again.
    Source { dir: PathBuf, head: Option<String>, clean: bool },
}

impl fmt::Display for NovaOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NovaOrigin::Release(version) => write!(f, "release {version}"),
            NovaOrigin::Source { dir, head, clean } => {
                write!(f, "source {}", dir.display())?;
                match head {
                    Some(head) => write!(
                        f,
                        " (git {}{})",
                        &head[..head.len().min(12)],
                        if *clean { "" } else { ", with uncommitted changes" }
                    ),
                    None => write!(f, " (not a git checkout)"),
                }
            }
        }
    }
}

/// One applied patch: its content's sha256 and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPatch {
    pub sha256: String,
    pub path: PathBuf,
}

/// What the virtualenv's Nova is: `nova-source.txt` under the cloud's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaRecord {
    pub origin: NovaOrigin,
    pub patches: Vec<AppliedPatch>,
}

const RECORD_HEADER: &str = "# The Nova in this cloud's virtualenv, written by `cargo xtask realstack up`, which compares it \
                             with what it is asked for.";

impl NovaRecord {
    pub fn render(&self) -> String {
        let mut out = format!("{RECORD_HEADER}\n");
        match &self.origin {
            NovaOrigin::Release(version) => out.push_str(&format!("origin release {version}\n")),
            NovaOrigin::Source { dir, head, clean } => out.push_str(&format!(
                "origin source {} {} {}\n",
                head.as_deref().unwrap_or("-"),
                if *clean { "clean" } else { "changed" },
                dir.display()
            )),
        }
        for patch in &self.patches {
            out.push_str(&format!("patch {} {}\n", patch.sha256, patch.path.display()));
        }
        out
    }

    /// The record `render` wrote; None for anything else.
    pub fn parse(text: &str) -> Option<NovaRecord> {
        let mut origin = None;
        let mut patches = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (kind, rest) = line.split_once(' ')?;
            match kind {
                "origin" if origin.is_none() => {
                    origin = Some(match rest.split_once(' ')? {
                        ("release", version) if !version.is_empty() => NovaOrigin::Release(version.to_string()),
                        ("source", rest) => {
                            let mut parts = rest.splitn(3, ' ');
                            let head = parts.next()?;
                            let clean = match parts.next()? {
                                "clean" => true,
                                "changed" => false,
                                _ => return None,
                            };
                            let dir = PathBuf::from(parts.next().filter(|d| !d.is_empty())?);
                            NovaOrigin::Source { dir, head: (head != "-").then(|| head.to_string()), clean }
                        }
                        _ => return None,
                    })
                }
                "patch" => {
                    let (sha256, path) = rest.split_once(' ')?;
                    if sha256.len() != 64 || path.is_empty() {
                        return None;
                    }
                    patches.push(AppliedPatch { sha256: sha256.to_string(), path: PathBuf::from(path) });
                }
                _ => return None,
            }
        }
        Some(NovaRecord { origin: origin?, patches })
    }
}

/// What `up` does to go from the installed Nova to the wanted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NovaPlan {
    /// It is already what is asked (the patch files may have moved: only the record is rewritten).
    Keep,
    /// Pristine Nova of the wanted origin is installed: apply the patches.
    Apply,
    /// Reinstall pristine Nova of the wanted origin, then apply the patches.
    Reinstall,
}

/// Compares the record with the wanted install. A missing or unreadable record, another origin, a source tree
/// with uncommitted changes or outside git, or other patches (by content, in order) all mean a reinstall.
pub fn plan(installed: Option<&NovaRecord>, wanted: &NovaRecord) -> NovaPlan {
    let Some(installed) = installed else { return NovaPlan::Reinstall };
    let reusable = match &wanted.origin {
        NovaOrigin::Release(_) => true,
        NovaOrigin::Source { head, clean, .. } => head.is_some() && *clean,
    };
    if !reusable || installed.origin != wanted.origin {
        return NovaPlan::Reinstall;
    }
    let hashes = |r: &NovaRecord| r.patches.iter().map(|p| p.sha256.clone()).collect::<Vec<_>>();
    if hashes(installed) == hashes(wanted) {
        NovaPlan::Keep
    } else if installed.patches.is_empty() {
        NovaPlan::Apply
    } else {
        NovaPlan::Reinstall
    }
}

fn record_path(layout: &Dirs) -> PathBuf {
    layout.root.join("nova-source.txt")
}

/// The record of the virtualenv's Nova, if there is a readable one.
pub fn installed(layout: &Dirs) -> Option<NovaRecord> {
    NovaRecord::parse(&fs::read_to_string(record_path(layout)).ok()?)
}

fn write_record(layout: &Dirs, record: &NovaRecord) -> anyhow::Result<()> {
    fs::write(record_path(layout), record.render())
        .with_context(|| format!("cannot write {}", record_path(layout).display()))
}

/// Forgets what is installed: done before the virtualenv's Nova changes, so that an interrupted change is
/// never taken for a finished one.
pub fn forget(layout: &Dirs) -> anyhow::Result<()> {
    match fs::remove_file(record_path(layout)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", record_path(layout).display()))
        }
        _ => Ok(()),
    }
}

/// Records a freshly built virtualenv's Nova: the pinned release, unpatched.
pub fn record_fresh_release(layout: &Dirs) -> anyhow::Result<()> {
    write_record(layout, &NovaRecord { origin: NovaOrigin::Release(pinned_release()?), patches: Vec::new() })
}

/// What `up` would do to the virtualenv's Nova for `request`.
pub fn plan_for(layout: &Dirs, request: &NovaRequest) -> anyhow::Result<NovaPlan> {
    Ok(plan(installed(layout).as_ref(), &wanted_record(request)?))
}

/// `run/nova-options`: the options of the running cloud, one `SECTION.KEY=VALUE` a line.
pub fn render_option_lines(options: &[NovaOption]) -> String {
    options.iter().map(|o| format!("{o}\n")).collect()
}

/// The version of Nova requirements.txt pins.
pub fn pinned_release() -> anyhow::Result<String> {
    let path = source_dir().join("requirements.txt");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("nova==").map(|v| v.trim().to_string()))
        .with_context(|| format!("{} pins no nova==VERSION", path.display()))
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("cannot run sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(hash) if out.status.success() && hash.len() == 64 => Ok(hash.to_string()),
        _ => bail!("sha256sum {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim()),
    }
}

/// The record the request asks for.
fn wanted_record(request: &NovaRequest) -> anyhow::Result<NovaRecord> {
    let origin = match &request.source {
        None => NovaOrigin::Release(pinned_release()?),
        Some(dir) => {
            let dir =
                fs::canonicalize(dir).with_context(|| format!("--nova-source {}: no such directory", dir.display()))?;
            let git = |args: &[&str]| {
                Command::new("git")
                    .arg("-C")
                    .arg(&dir)
                    .args(args)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            };
            let head = git(&["rev-parse", "HEAD"]);
            let clean = head.is_some() && git(&["status", "--porcelain"]).is_some_and(|s| s.is_empty());
            NovaOrigin::Source { dir, head, clean }
        }
    };
    let patches = request
        .patches
        .iter()
        .map(|path| Ok(AppliedPatch { sha256: sha256(path)?, path: path.clone() }))
        .collect::<anyhow::Result<_>>()?;
    Ok(NovaRecord { origin, patches })
}

/// The unit tests of the project's Nova series, as Nova's test runner selects them: the whole of
/// `test_blockinfo` (the series' `test_iso_install_*` tests among Nova's own), the driver tests of the series and
/// the system-metadata tests its layout record joins.
pub const SERIES_UNIT_TESTS: &str = concat!(
    "nova.tests.unit.virt.libvirt.test_blockinfo",
    "|nova.tests.unit.virt.libvirt.test_driver.LibvirtDriverIsoInstallTestCase",
    "|nova.tests.unit.test_utils.GetImageFromSystemMetadataTestCase",
);

/// Runs Nova's own unit tests of the project's series with Nova's test runner (stestr, as `tox -e py3` does)
/// against the Nova installed in the cloud's virtualenv: the patched copy, once `up` has applied the series. The
/// test packages (`nova-test-requirements.txt`) are installed into the virtualenv first, once.
pub fn nova_unit_tests(layout: &Dirs) -> anyhow::Result<()> {
    let started = Instant::now();
    let requirements = source_dir().join("nova-test-requirements.txt");
    let wanted =
        fs::read_to_string(&requirements).with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = layout.venv().join("nova-test-stamp.txt");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        say(started, "installing Nova's test packages into the virtualenv (pip)");
        crate::run(
            Command::new(layout.venv().join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&requirements)
                .arg("-c")
                .arg(source_dir().join("constraints.txt")),
        )?;
        fs::write(&stamp, &wanted)?;
    }
    let site = site_packages(layout)?;
    // stestr keeps its repository of runs in the current directory: one of our own, fresh for every run.
    let work = layout.root.join("nova-unit-tests");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let mut stestr = Command::new(layout.venv().join("bin/python"));
    stestr
        .args(["-m", "stestr", "--test-path"])
        .arg(site.join("nova/tests/unit"))
        .arg("--top-dir")
        .arg(&site)
        .args(["run", "--concurrency", "2", SERIES_UNIT_TESTS])
        .current_dir(&work)
        // What Nova's tox environment sets: without eventlet's patching, discovery fails on nova.tests.unit.cmd.
        .env("OS_NOVA_DISABLE_EVENTLET_PATCHING", "False")
        .env("NOVA_RAISE_ON_GREENLET_LEAK", "True")
        .env("OS_STDOUT_CAPTURE", "1")
        .env("OS_STDERR_CAPTURE", "1")
        .env("OS_TEST_TIMEOUT", "160")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    crate::run(&mut stestr).context("Nova's unit tests of the series failed")?;
    say(started, format!("Nova's unit tests of the series passed ({:.0} s)", started.elapsed().as_secs_f64()));
    Ok(())
}

/// The virtualenv's site-packages directory.
pub fn site_packages(layout: &Dirs) -> anyhow::Result<PathBuf> {
    let lib = layout.venv().join("lib");
    fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("nova").is_dir())
        .with_context(|| format!("no nova package under {}", lib.display()))
}

/// Makes the virtualenv's Nova what `request` asks for; see the module's doc.
pub fn ensure(layout: &Dirs, request: &NovaRequest, started: Instant) -> anyhow::Result<()> {
    let wanted = wanted_record(request)?;
    let current = installed(layout);
    let plan = plan(current.as_ref(), &wanted);
    match plan {
        NovaPlan::Keep => {
            if current.as_ref() != Some(&wanted) {
                write_record(layout, &wanted)?;
            }
            return Ok(());
        }
        NovaPlan::Reinstall => reinstall(layout, &wanted.origin, started)?,
        NovaPlan::Apply => {}
    }
    if wanted.patches.is_empty() {
        return Ok(());
    }
    let site = site_packages(layout)?;
    let applying = Instant::now();
    let series = read_series(&request.patches)?;
    let notes = check_series(&site, &series, &layout.run().join("nova-patch-check"), &wanted.origin)?;
    for note in notes {
        say(started, note);
    }
    forget(layout)?;
    if let Err(e) = apply_series(&site, &series) {
        say(started, format!("nova: {e:#}; reinstalling pristine Nova"));
        reinstall(layout, &wanted.origin, started)?;
        return Err(e);
    }
    write_record(layout, &wanted)?;
    say(
        started,
        format!("nova: checked and applied {} patch(es) in {:.2} s", series.len(), applying.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// Installs pristine Nova of `origin` (the old package directory removed first, so that no file a patch
/// added survives) and records it.
fn reinstall(layout: &Dirs, origin: &NovaOrigin, started: Instant) -> anyhow::Result<()> {
    let began = Instant::now();
    say(started, format!("nova: installing pristine {origin}"));
    forget(layout)?;
    if let Ok(site) = site_packages(layout) {
        let package = site.join("nova");
        fs::remove_dir_all(&package).with_context(|| format!("cannot remove {}", package.display()))?;
    }
    let mut pip = Command::new(layout.venv().join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check", "--force-reinstall", "--no-deps"]);
    match origin {
        NovaOrigin::Release(version) => {
            pip.arg(format!("nova=={version}")).arg("-c").arg(source_dir().join("constraints.txt"));
        }
        NovaOrigin::Source { dir, .. } => {
            pip.arg(dir);
        }
    }
    crate::run(&mut pip).context("cannot install pristine Nova")?;
    write_record(layout, &NovaRecord { origin: origin.clone(), patches: Vec::new() })?;
    say(started, format!("nova: pristine {origin} installed in {:.1} s", began.elapsed().as_secs_f64()));
    Ok(())
}

/// One patch file, read and parsed.
#[derive(Debug, Clone)]
pub struct SeriesPatch {
    pub path: PathBuf,
    pub files: Vec<FileDiff>,
}

fn read_series(paths: &[PathBuf]) -> anyhow::Result<Vec<SeriesPatch>> {
    paths
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let files = parse_diff(&text);
            if files.is_empty() {
                bail!("nova patch {}: no file diff in it (a `git format-patch` or `git diff` file?)", path.display());
            }
            Ok(SeriesPatch { path: path.clone(), files })
        })
        .collect()
}

/// One file's diff in a patch: its path (the `b/` side, `a/` for a deletion, prefix stripped) and the old
/// start line and header of each hunk, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    pub hunks: Vec<(u32, String)>,
}

/// The file diffs of a `git diff` / `git format-patch` text. Hunk bodies are counted out by their headers'
/// line counts, so that a removed line that reads `--- x` is not taken for a file header.
pub fn parse_diff(text: &str) -> Vec<FileDiff> {
    let strip = |p: &str| -> Option<String> {
        let p = p.split('\t').next().unwrap_or(p).trim_end();
        if p == "/dev/null" {
            return None;
        }
        Some(p.split_once('/').map_or(p, |(_, rest)| rest).to_string())
    };
    let count = |range: &str| -> Option<(u32, u32)> {
        let (start, len) = range.split_once(',').unwrap_or((range, "1"));
        Some((start.parse().ok()?, len.parse().ok()?))
    };
    let mut files: Vec<FileDiff> = Vec::new();
    let mut old_path: Option<String> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("diff --git ") {
            old_path = None;
        } else if let Some(p) = line.strip_prefix("--- ") {
            old_path = strip(p);
        } else if let Some(p) = line.strip_prefix("+++ ") {
            let path = strip(p).or_else(|| old_path.clone()).unwrap_or_default();
            files.push(FileDiff { path, hunks: Vec::new() });
        } else if line.starts_with("@@ -")
            && let Some(file) = files.last_mut()
        {
            let mut ranges = line[4..].split(' ');
            let old = ranges.next().and_then(count);
            let new = ranges.next().and_then(|r| r.strip_prefix('+')).and_then(count);
            let (Some((old_start, mut old_left)), Some((_, mut new_left))) = (old, new) else { continue };
            file.hunks.push((old_start, line.to_string()));
            while old_left > 0 || new_left > 0 {
                let Some(body) = lines.next() else { break };
                match body.chars().next() {
                    Some('-') => old_left = old_left.saturating_sub(1),
                    Some('+') => new_left = new_left.saturating_sub(1),
                    Some('\\') => {}
                    _ => {
                        old_left = old_left.saturating_sub(1);
                        new_left = new_left.saturating_sub(1);
                    }
                }
            }
        }
    }
    files
}

/// A hunk `git apply --check` rejected: `error: patch failed: FILE:LINE`, LINE being the hunk's old start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedHunk {
    pub file: String,
    pub line: u32,
}

/// The rejected hunks in `git apply`'s error output.
pub fn rejected_hunks(stderr: &str) -> Vec<RejectedHunk> {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("error: patch failed: "))
        .filter_map(|rest| {
            let (file, line) = rest.rsplit_once(':')?;
            Some(RejectedHunk { file: file.to_string(), line: line.trim().parse().ok()? })
        })
        .collect()
}

/// Paths of a patch that are not applied to site-packages: release notes, and anything whose top directory or
/// file the installed package does not have (doc/, api-ref/, setup.cfg, ...).
fn left_out(site: &Path, path: &str) -> bool {
    let top = path.split('/').next().unwrap_or(path);
    path.starts_with("releasenotes/") || !site.join(top).exists()
}

fn excludes(site: &Path, patch: &SeriesPatch) -> Vec<String> {
    let set: BTreeSet<String> =
        patch.files.iter().filter(|f| left_out(site, &f.path)).map(|f| f.path.clone()).collect();
    set.into_iter().collect()
}

/// Runs `git apply` (`--check` with `check`) of `patch` in `dir`, leaving out `excluded` paths. `dir` is made the
/// top of git's search, so that a directory inside some repository (the virtualenv under this one) is patched
/// as a plain tree: inside a work tree, git apply would silently skip every path outside the repository's
/// matching subdirectory. Err holds git's error output.
pub fn git_apply(dir: &Path, patch: &Path, excluded: &[String], check: bool) -> anyhow::Result<Result<(), String>> {
    let ceiling = dir.parent().unwrap_or(dir);
    let mut git = Command::new("git");
    git.arg("apply").arg("--whitespace=nowarn");
    if check {
        git.arg("--check");
    }
    git.args(excluded.iter().map(|p| format!("--exclude={p}")))
        .arg(patch)
        .current_dir(dir)
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    let out = git.output().context("cannot run git apply")?;
    Ok(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) })
}

/// The error of a patch that does not apply: the patch file, each rejected hunk (number, file, line, header)
/// and git's own lines.
pub fn rejection(patch: &SeriesPatch, before: &[SeriesPatch], origin: &NovaOrigin, git_errors: &str) -> String {
    let mut message = format!("nova patch {} does not apply to Nova {origin}", patch.path.display());
    if let Some(last) = before.last() {
        message.push_str(&format!(
            " on top of the {} patch(es) before it (the last: {})",
            before.len(),
            last.path.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    message.push(':');
    for hunk in rejected_hunks(git_errors) {
        let found = patch.files.iter().filter(|f| f.path == hunk.file).find_map(|f| {
            f.hunks.iter().position(|(start, _)| *start == hunk.line).map(|i| (i + 1, f.hunks[i].1.clone()))
        });
        match found {
            Some((number, header)) => message
                .push_str(&format!("\n  rejected: hunk #{number} of {} at line {} ({header})", hunk.file, hunk.line)),
            None => message.push_str(&format!("\n  rejected: the hunk of {} at line {}", hunk.file, hunk.line)),
        }
    }
    message.push_str("\ngit apply --check said:");
    for line in git_errors.lines() {
        message.push_str(&format!("\n  {line}"));
    }
    message.push_str(&format!("\nNothing was applied: Nova is pristine {origin}."));
    message
}

/// Checks the series in order on a copy (under `staging`) of the files it touches, each patch on top of the
/// ones before it, without changing `site`. Returns notes on the paths left out.
pub fn check_series(
    site: &Path,
    series: &[SeriesPatch],
    staging: &Path,
    origin: &NovaOrigin,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    if staging.exists() {
        fs::remove_dir_all(staging).with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    fs::create_dir_all(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let result = (|| -> anyhow::Result<()> {
        for patch in series {
            for file in patch.files.iter().filter(|f| !left_out(site, &f.path)) {
                let (from, to) = (site.join(&file.path), staging.join(&file.path));
                if from.is_file() && !to.exists() {
                    fs::create_dir_all(to.parent().expect("a file below the staging directory"))?;
                    fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
                }
            }
        }
        for (index, patch) in series.iter().enumerate() {
            let excluded = excludes(site, patch);
            if !excluded.is_empty() {
                notes.push(format!(
                    "nova patch {}: leaving out {} (not in the installed package)",
                    patch.path.file_name().unwrap_or_default().to_string_lossy(),
                    excluded.join(", ")
                ));
            }
            if excluded.len() == patch.files.len() {
                continue;
            }
            if let Err(errors) = git_apply(staging, &patch.path, &excluded, true)? {
                bail!("{}", rejection(patch, &series[..index], origin, &errors));
            }
            if let Err(errors) = git_apply(staging, &patch.path, &excluded, false)? {
                bail!("nova patch {}: git apply failed after its check passed:\n{errors}", patch.path.display());
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(staging);
    result.map(|()| notes)
}

/// Applies the checked series to `site`, then removes the compiled copies of the modules it changed.
pub fn apply_series(site: &Path, series: &[SeriesPatch]) -> anyhow::Result<()> {
    for patch in series {
        let excluded = excludes(site, patch);
        if excluded.len() == patch.files.len() {
            continue;
        }
        if let Err(errors) = git_apply(site, &patch.path, &excluded, false)? {
            bail!("nova patch {}: git apply failed in {}:\n{errors}", patch.path.display(), site.display());
        }
        for file in patch.files.iter().filter(|f| f.path.ends_with(".py") && !left_out(site, &f.path)) {
            let module = site.join(&file.path);
            let (Some(dir), Some(stem)) = (module.parent(), module.file_stem()) else { continue };
            let prefix = format!("{}.", stem.to_string_lossy());
            let Ok(entries) = fs::read_dir(dir.join("__pycache__")) else { continue };
            for entry in entries.filter_map(Result::ok) {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(())
}

/// The lines `status` prints about Nova.
pub fn status_lines(layout: &Dirs) -> Vec<String> {
    let mut lines = Vec::new();
    match installed(layout) {
        None => lines.push(format!("{:<16} unknown (no record: the next up reinstalls it)", "nova")),
        Some(record) => {
            let patches = if record.patches.is_empty() {
                "no patches".to_string()
            } else {
                format!("{} patch(es)", record.patches.len())
            };
            lines.push(format!("{:<16} {}, {patches}", "nova", record.origin));
            for patch in &record.patches {
                lines.push(format!(
                    "{:<16} {} (sha256 {})",
                    "nova patch",
                    patch.path.file_name().unwrap_or_default().to_string_lossy(),
                    &patch.sha256[..12]
                ));
            }
        }
    }
    let options = fs::read_to_string(layout.run().join("nova-options")).unwrap_or_default();
    for option in options.lines() {
        lines.push(format!("{:<16} {option}", "nova option"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("xtask-nova-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn option(section: &str, key: &str, value: &str) -> NovaOption {
        NovaOption { section: section.into(), key: key.into(), value: value.into() }
    }

    #[test]
    fn nova_options_parse_or_say_what_is_wrong() {
        assert_eq!(
            NovaOption::parse("libvirt.iso_install_root_disk=True").unwrap(),
            option("libvirt", "iso_install_root_disk", "True")
        );
        assert_eq!(NovaOption::parse("DEFAULT.debug=").unwrap(), option("DEFAULT", "debug", ""));
        assert_eq!(NovaOption::parse("a.b=x=y").unwrap(), option("a", "b", "x=y"), "the first `=` splits");
        for (bad, why) in [
            ("libvirt.iso_install_root_disk", "no `=`"),
            ("iso_install_root_disk=True", "no `.`"),
            (".key=1", "the section is empty"),
            ("libvirt.=1", "the key is empty"),
            ("lib virt.key=1", "the section is empty or holds"),
            ("libvirt.key=a\nb", "line break"),
        ] {
            let err = NovaOption::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("SECTION.KEY=VALUE"), "{bad:?}: {err}");
        }
        for text in ISO_INSTALL_OPTIONS {
            assert_eq!(NovaOption::parse(text).unwrap().to_string(), *text);
        }
    }

    #[test]
    fn options_replace_a_key_join_their_section_or_add_one() {
        let conf = "[DEFAULT]\nhost = realstack\n\n[libvirt]\nvirt_type = kvm\n# cpu_mode = host\ncpu_mode = none\n\n[realstack]\nx = 1\n";
        let out = apply_options(
            conf,
            &[
                option("libvirt", "cpu_mode", "host-passthrough"),
                option("libvirt", "iso_install_root_disk", "True"),
                option("workarounds", "disable_rootwrap", "True"),
                option("libvirt", "iso_install_root_disk", "False"),
            ],
        );
        assert_eq!(
            out,
            "[DEFAULT]\nhost = realstack\n\n[libvirt]\nvirt_type = kvm\n# cpu_mode = host\ncpu_mode = host-passthrough\n\
             iso_install_root_disk = False\n\n[realstack]\nx = 1\n\n# Set by `cargo xtask realstack up --nova-option`.\n\
             [workarounds]\ndisable_rootwrap = True\n"
        );
        assert_eq!(apply_options(conf, &[]), conf);
    }

    #[test]
    fn nova_conf_takes_the_options_into_its_sections() {
        let template = fs::read_to_string(source_dir().join("templates/nova.conf")).unwrap();
        let options: Vec<NovaOption> = ISO_INSTALL_OPTIONS.iter().map(|o| NovaOption::parse(o).unwrap()).collect();
        let out = apply_options(&template, &options);
        let libvirt = out.split("[libvirt]").nth(1).unwrap().split("\n[").next().unwrap();
        assert!(libvirt.contains("\niso_install_root_disk = True\n"), "{libvirt}");
        assert!(libvirt.contains("\nvirtio_win_image = virtio-win\n"), "{libvirt}");
        assert_eq!(out.matches("[libvirt]").count(), 1);
    }

    #[test]
    fn patch_directories_expand_to_their_patch_files_in_name_order() {
        let scratch = Scratch::new("expand");
        let series = scratch.0.join("series");
        fs::create_dir_all(series.join("sub.patch")).unwrap();
        for name in ["0002-b.patch", "0001-a.patch", "0010-c.patch", "README.txt"] {
            fs::write(series.join(name), "x").unwrap();
        }
        let single = scratch.0.join("extra.patch");
        fs::write(&single, "x").unwrap();
        let got = expand_patch_args(&[single.clone(), series.clone()]).unwrap();
        let names: Vec<String> = got.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["extra.patch", "0001-a.patch", "0002-b.patch", "0010-c.patch"]);
        assert!(got.iter().all(|p| p.is_absolute()));

        let empty = scratch.0.join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert!(expand_patch_args(&[empty]).unwrap_err().to_string().contains("holds no *.patch file"));
        let missing = expand_patch_args(&[scratch.0.join("nope.patch")]).unwrap_err().to_string();
        assert!(missing.contains("nope.patch: no such file"), "{missing}");
    }

    fn patch(sha: char, path: &str) -> AppliedPatch {
        AppliedPatch { sha256: sha.to_string().repeat(64), path: PathBuf::from(path) }
    }

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let records = [
            NovaRecord { origin: NovaOrigin::Release("34.0.0".into()), patches: vec![] },
            NovaRecord {
                origin: NovaOrigin::Release("34.0.0".into()),
                patches: vec![patch('a', "/p/0001-x.patch"), patch('b', "/p/with space/0002-y.patch")],
            },
            NovaRecord {
                origin: NovaOrigin::Source { dir: "/src/my nova".into(), head: Some("f".repeat(40)), clean: true },
                patches: vec![patch('c', "/p/z.patch")],
            },
            NovaRecord {
                origin: NovaOrigin::Source { dir: "/src/nova".into(), head: None, clean: false },
                patches: vec![],
            },
        ];
        for record in &records {
            assert_eq!(NovaRecord::parse(&record.render()).as_ref(), Some(record), "{}", record.render());
        }
        for garbage in ["", "origin\n", "origin release\n", "origin release 34.0.0\npatch abc /x\n", "hello world\n"] {
            assert_eq!(NovaRecord::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_plan_reinstalls_unless_the_record_says_the_same_install() {
        let release = |patches: Vec<AppliedPatch>| NovaRecord { origin: NovaOrigin::Release("34.0.0".into()), patches };
        let source = |clean: bool, patches| NovaRecord {
            origin: NovaOrigin::Source { dir: "/src/nova".into(), head: Some("abc".into()), clean },
            patches,
        };
        let stock = release(vec![]);
        let patched = release(vec![patch('a', "/p/1.patch"), patch('b', "/p/2.patch")]);
        assert_eq!(plan(None, &stock), NovaPlan::Reinstall, "no record: nothing is known");
        assert_eq!(plan(Some(&stock), &stock), NovaPlan::Keep);
        assert_eq!(plan(Some(&stock), &patched), NovaPlan::Apply, "pristine already");
        assert_eq!(plan(Some(&patched), &patched), NovaPlan::Keep);
        let moved = release(vec![patch('a', "/q/1.patch"), patch('b', "/q/2.patch")]);
        assert_eq!(plan(Some(&patched), &moved), NovaPlan::Keep, "the same contents from elsewhere");
        assert_eq!(plan(Some(&patched), &stock), NovaPlan::Reinstall, "patched, stock asked for");
        let reordered = release(vec![patch('b', "/p/2.patch"), patch('a', "/p/1.patch")]);
        assert_eq!(plan(Some(&patched), &reordered), NovaPlan::Reinstall);
        let other_release = NovaRecord { origin: NovaOrigin::Release("34.0.1".into()), patches: vec![] };
        assert_eq!(plan(Some(&stock), &other_release), NovaPlan::Reinstall);
        assert_eq!(plan(Some(&stock), &source(true, vec![])), NovaPlan::Reinstall);
        assert_eq!(plan(Some(&source(true, vec![])), &source(true, vec![])), NovaPlan::Keep);
        assert_eq!(plan(Some(&source(false, vec![])), &source(false, vec![])), NovaPlan::Reinstall, "changed tree");
        assert_eq!(plan(Some(&source(true, vec![])), &stock), NovaPlan::Reinstall);
    }

    #[test]
    fn git_apply_errors_give_the_rejected_hunks() {
        let stderr = "error: patch failed: nova/virt/libvirt/blockinfo.py:120\n\
                      error: nova/virt/libvirt/blockinfo.py: patch does not apply\n\
                      error: patch failed: nova/conf/libvirt.py:7\n\
                      error: nova/conf/libvirt.py: patch does not apply\n";
        assert_eq!(
            rejected_hunks(stderr),
            [
                RejectedHunk { file: "nova/virt/libvirt/blockinfo.py".into(), line: 120 },
                RejectedHunk { file: "nova/conf/libvirt.py".into(), line: 7 },
            ]
        );
        assert!(rejected_hunks("error: corrupt patch at line 12\n").is_empty());
    }

    const SERIES_PATCH: &str = "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/1] x\n\n---\n \
        a.py | 2 +-\n\ndiff --git a/nova/a.py b/nova/a.py\nindex 1..2 100644\n--- a/nova/a.py\n+++ b/nova/a.py\n\
        @@ -1,3 +1,3 @@\n one\n---- not a header\n+--- still not\n three\n@@ -10 +10,2 @@ def f():\n ten\n+eleven\n\
        diff --git a/releasenotes/notes/x.yaml b/releasenotes/notes/x.yaml\nnew file mode 100644\n--- /dev/null\n\
        +++ b/releasenotes/notes/x.yaml\n@@ -0,0 +1,2 @@\n+---\n+features: []\n\
        diff --git a/nova/gone.py b/nova/gone.py\ndeleted file mode 100644\n--- a/nova/gone.py\n+++ /dev/null\n\
        @@ -1 +0,0 @@\n-x\n-- \n2.43.0\n";

    #[test]
    fn diffs_parse_into_files_and_hunks() {
        let files = parse_diff(SERIES_PATCH);
        let summary: Vec<(&str, Vec<u32>)> =
            files.iter().map(|f| (f.path.as_str(), f.hunks.iter().map(|h| h.0).collect())).collect();
        assert_eq!(
            summary,
            [("nova/a.py", vec![1, 10]), ("releasenotes/notes/x.yaml", vec![0]), ("nova/gone.py", vec![1])]
        );
        assert_eq!(files[0].hunks[1].1, "@@ -10 +10,2 @@ def f():");
    }

    /// A site-packages-like tree with `nova/virt/libvirt/blockinfo.py`, inside a git repository of its own, as
    /// the virtualenv is inside this one.
    fn site_in_a_repository(scratch: &Scratch) -> PathBuf {
        let repo = scratch.0.join("repo");
        fs::create_dir_all(&repo).unwrap();
        let init = Command::new("git").args(["init", "-q"]).current_dir(&repo).status().unwrap();
        assert!(init.success());
        let site = repo.join("venv/lib/site-packages");
        fs::create_dir_all(site.join("nova/virt/libvirt/__pycache__")).unwrap();
        let lines: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        fs::write(site.join("nova/virt/libvirt/blockinfo.py"), lines).unwrap();
        fs::write(site.join("nova/virt/libvirt/__pycache__/blockinfo.cpython-313.pyc"), "stale").unwrap();
        fs::write(site.join("nova/virt/libvirt/__pycache__/driver.cpython-313.pyc"), "kept").unwrap();
        site
    }

    fn write_patch(dir: &Path, name: &str, text: &str) -> SeriesPatch {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        read_series(&[path]).unwrap().remove(0)
    }

    const GOOD: &str = "diff --git a/nova/virt/libvirt/blockinfo.py b/nova/virt/libvirt/blockinfo.py\n\
        --- a/nova/virt/libvirt/blockinfo.py\n+++ b/nova/virt/libvirt/blockinfo.py\n\
        @@ -2,3 +2,4 @@\n line 2\n+# isoharness was here\n line 3\n line 4\n\
        diff --git a/releasenotes/notes/iso.yaml b/releasenotes/notes/iso.yaml\nnew file mode 100644\n\
        --- /dev/null\n+++ b/releasenotes/notes/iso.yaml\n@@ -0,0 +1,2 @@\n+---\n+features: []\n\
        diff --git a/doc/source/iso.rst b/doc/source/iso.rst\nnew file mode 100644\n\
        --- /dev/null\n+++ b/doc/source/iso.rst\n@@ -0,0 +1 @@\n+ISO\n";

    /// On top of GOOD: its first hunk applies, its second one's context is not in the file.
    const BAD: &str = "diff --git a/nova/virt/libvirt/blockinfo.py b/nova/virt/libvirt/blockinfo.py\n\
        --- a/nova/virt/libvirt/blockinfo.py\n+++ b/nova/virt/libvirt/blockinfo.py\n\
        @@ -3,3 +3,3 @@\n # isoharness was here\n-line 3\n+line three\n line 4\n\
        @@ -20,3 +20,4 @@ def get_disk_bus\n line 20\n+added\n line 2l\n line 22\n";

    #[test]
    fn a_series_is_checked_in_order_and_a_bad_patch_names_its_rejected_hunk() {
        let scratch = Scratch::new("apply");
        let site = site_in_a_repository(&scratch);
        let good = write_patch(&scratch.0, "0001-good.patch", GOOD);
        let bad = write_patch(&scratch.0, "0002-bad.patch", BAD);
        let origin = NovaOrigin::Release("34.0.0".into());
        let original = fs::read_to_string(site.join("nova/virt/libvirt/blockinfo.py")).unwrap();
        let staging = scratch.0.join("staging");

        // BAD's first hunk needs GOOD's line: alone it fails there, after GOOD at its second hunk.
        let series = [good.clone(), bad.clone()];
        let err = check_series(&site, &series, &staging, &origin).unwrap_err().to_string();
        assert!(err.contains("nova patch ") && err.contains("0002-bad.patch does not apply"), "{err}");
        assert!(err.contains("on top of the 1 patch(es) before it (the last: 0001-good.patch)"), "{err}");
        assert!(err.ends_with("Nothing was applied: Nova is pristine release 34.0.0."), "{err}");
        assert!(
            err.contains(
                "rejected: hunk #2 of nova/virt/libvirt/blockinfo.py at line 20 (@@ -20,3 +20,4 @@ def get_disk_bus)"
            ),
            "{err}"
        );
        assert!(err.contains("error: patch failed: nova/virt/libvirt/blockinfo.py:20"), "{err}");
        assert!(!staging.exists(), "the staging copy is removed");
        assert_eq!(fs::read_to_string(site.join("nova/virt/libvirt/blockinfo.py")).unwrap(), original, "untouched");

        let alone = check_series(&site, std::slice::from_ref(&bad), &staging, &origin).unwrap_err().to_string();
        assert!(alone.contains("rejected: hunk #1 of nova/virt/libvirt/blockinfo.py at line 3"), "{alone}");

        let notes = check_series(&site, std::slice::from_ref(&good), &staging, &origin).unwrap();
        assert_eq!(
            notes,
            ["nova patch 0001-good.patch: leaving out doc/source/iso.rst, releasenotes/notes/iso.yaml (not in the \
              installed package)"]
        );
        apply_series(&site, std::slice::from_ref(&good)).unwrap();
        let patched = fs::read_to_string(site.join("nova/virt/libvirt/blockinfo.py")).unwrap();
        assert_eq!(patched, original.replace("line 2\n", "line 2\n# isoharness was here\n"));
        assert!(!site.join("releasenotes").exists() && !site.join("doc").exists());
        let cache = site.join("nova/virt/libvirt/__pycache__");
        assert!(!cache.join("blockinfo.cpython-313.pyc").exists(), "the patched module's stale bytecode is gone");
        assert!(cache.join("driver.cpython-313.pyc").exists());
    }
}
