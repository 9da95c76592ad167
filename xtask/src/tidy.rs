//! `cargo xtask tidy`: architecture checks that must never regress.
//!
//! - **Layering**, read from every crate's `Cargo.toml` (normal, dev and build dependencies):
//!   sys < mountinfo < image < dump, restore < cli < e2e, xtask. A crate may depend only on
//!   crates of a lower layer, so dump and restore never depend on each other.
//! - **`unsafe` only in `crates/sys`**: the keyword may not appear in the code of any other Rust
//!   file of the workspace (comments, strings and identifiers such as `unsafe_code` do not count),
//!   and every crate other than sys declares `#![forbid(unsafe_code)]` at its roots.
//!
//! Also a `#[test]`, so `cargo test --workspace` runs it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The layer of each workspace crate, by package name: lower numbers lie below.
const LAYERS: &[(&str, u32)] = &[
    ("crcli-sys", 0),
    ("crcli-mountinfo", 1),
    ("crcli-image", 2),
    ("crcli-dump", 3),
    ("crcli-restore", 3),
    ("crcli", 4),
    ("crcli-e2e", 5),
    ("xtask", 5),
];

fn layer(package: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == package).map(|(_, l)| *l)
}

/// Run every check on the workspace at `root`; fail listing every violation.
pub fn run(root: &Path) -> Result<()> {
    let problems = check(root)?;
    if problems.is_empty() {
        println!("tidy: ok (layering, unsafe only in crates/sys)");
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

/// Every violation in the workspace at `root`, as readable lines.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = check_layers(root)?;
    problems.extend(check_unsafe(root)?);
    Ok(problems)
}

/// The crate directories: `crates/*` and `xtask`.
fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let crates = root.join("crates");
    if crates.is_dir() {
        for e in fs::read_dir(&crates).with_context(|| format!("listing {}", crates.display()))? {
            let p = e?.path();
            if p.join("Cargo.toml").is_file() {
                dirs.push(p);
            }
        }
    }
    if root.join("xtask/Cargo.toml").is_file() {
        dirs.push(root.join("xtask"));
    }
    dirs.sort();
    Ok(dirs)
}

/// A manifest, reduced to what tidy needs.
#[derive(Debug, Default, PartialEq)]
struct Manifest {
    name: Option<String>,
    /// (package name of the dependency, section it appears in)
    deps: Vec<(String, String)>,
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('\'')
}

/// Whether a `[section]` name is a dependency table (`dependencies`, `dev-dependencies`,
/// `build-dependencies`, `target.<cfg>.dependencies`, …). Returns the table name and, for
/// `[dependencies.foo]`, the dependency `foo`.
fn dep_section(section: &str) -> Option<(String, Option<String>)> {
    let parts: Vec<&str> = split_dotted(section);
    for (i, p) in parts.iter().enumerate() {
        let p = unquote(p);
        if p == "dependencies" || p == "dev-dependencies" || p == "build-dependencies" {
            let dep = parts.get(i + 1).map(|d| unquote(d).to_string());
            return Some((p.to_string(), dep));
        }
    }
    None
}

/// Split a dotted TOML key, keeping quoted parts (`target.'cfg(unix)'.dependencies`) whole.
fn split_dotted(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts
}

/// The value of `package = "…"` inside an inline table, if present.
fn inline_package(value: &str) -> Option<String> {
    let i = value.find("package")?;
    let rest = value[i + "package".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let q = rest.chars().next()?;
    let end = rest[1..].find(q)?;
    Some(rest[1..1 + end].to_string())
}

fn parse_manifest(text: &str) -> Manifest {
    let mut m = Manifest::default();
    let mut section = String::new();
    // For [dependencies.foo] tables: (kind, key, package override)
    let mut table_dep: Option<(String, String, Option<String>)> = None;
    let flush = |m: &mut Manifest, t: &mut Option<(String, String, Option<String>)>| {
        if let Some((kind, key, pkg)) = t.take() {
            m.deps.push((pkg.unwrap_or(key), kind));
        }
    };
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            flush(&mut m, &mut table_dep);
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if let Some((kind, Some(dep))) = dep_section(&section) {
                table_dep = Some((kind, dep, None));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            m.name = Some(unquote(value).to_string());
            continue;
        }
        if let Some(t) = table_dep.as_mut() {
            if key == "package" {
                t.2 = Some(unquote(value).to_string());
            }
            continue;
        }
        if let Some((kind, None)) = dep_section(&section) {
            let name = unquote(split_dotted(key)[0]).to_string();
            let name = inline_package(value).unwrap_or(name);
            m.deps.push((name, kind));
        }
    }
    flush(&mut m, &mut table_dep);
    m
}

fn check_layers(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in crate_dirs(root)? {
        let path = dir.join("Cargo.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let m = parse_manifest(&text);
        let Some(name) = m.name else {
            problems.push(format!("{}: no [package] name", path.display()));
            continue;
        };
        let Some(own) = layer(&name) else {
            problems.push(format!(
                "{}: crate {name} has no layer; add it to LAYERS in xtask/src/tidy.rs",
                path.display()
            ));
            continue;
        };
        for (dep, kind) in &m.deps {
            let Some(theirs) = layer(dep) else { continue };
            if theirs >= own {
                let why = if theirs == own {
                    "a crate of the same layer"
                } else {
                    "a higher layer"
                };
                problems.push(format!(
                    "{}: {name} depends on {dep} ({kind}), {why}; layers are \
                     sys < mountinfo < image < dump, restore < cli < e2e, xtask",
                    path.display()
                ));
            }
        }
    }
    Ok(problems)
}

/// Replace comments, string and character literals by spaces, keeping line breaks.
fn strip_non_code(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && (c == 'r' || ((c == 'b' || c == 'c') && next == Some('r'))) && {
            let mut j = i + if c == 'r' { 1 } else { 2 };
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            b.get(j) == Some(&'"')
        } {
            // raw string: r#"..."#
            let mut j = i + if c == 'r' { 1 } else { 2 };
            let mut hashes = 0;
            while b[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // opening quote
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &b[i..=e] {
                        blank(&mut out, ch);
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// 1-based line numbers where the keyword `unsafe` appears in code.
fn unsafe_lines(src: &str) -> Vec<usize> {
    let code = strip_non_code(src);
    let mut lines = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut from = 0;
        while let Some(i) = line[from..].find("unsafe") {
            let s = from + i;
            let e = s + "unsafe".len();
            let id = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
            let before = s == 0 || !id(bytes[s - 1]);
            let after = e >= bytes.len() || !id(bytes[e]);
            if before && after {
                lines.push(n + 1);
                break;
            }
            from = e;
        }
    }
    lines
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ft = e.file_type()?;
        if ft.is_dir() {
            let top_target = dir == root && (name == "target" || name.starts_with("target-"));
            if top_target || name == ".git" || name == "target" {
                continue;
            }
            rust_files(&p, root, out)?;
        } else if ft.is_file() && name.ends_with(".rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn check_unsafe(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    rust_files(root, root, &mut files)?;
    files.sort();
    let sys = root.join("crates/sys");
    for f in &files {
        if f.starts_with(&sys) {
            continue;
        }
        let src = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for line in unsafe_lines(&src) {
            problems.push(format!(
                "{}:{line}: `unsafe` outside crates/sys (all unsafe code lives in crcli-sys)",
                f.display()
            ));
        }
    }
    for dir in crate_dirs(root)? {
        if dir == sys {
            continue;
        }
        for entry in ["src/lib.rs", "src/main.rs"] {
            let f = dir.join(entry);
            let Ok(src) = fs::read_to_string(&f) else {
                continue;
            };
            let code = strip_non_code(&src);
            let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if !compact.contains("#![forbid(unsafe_code)]") {
                problems.push(format!("{}: missing #![forbid(unsafe_code)]", f.display()));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        let problems = check(&crate::project_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    /// A small workspace that obeys every rule.
    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let deps: &[(&str, &str, &[&str])] = &[
            ("sys", "crcli-sys", &[]),
            ("mountinfo", "crcli-mountinfo", &["crcli-sys"]),
            ("image", "crcli-image", &["crcli-mountinfo"]),
            ("dump", "crcli-dump", &["crcli-image", "crcli-sys"]),
            ("restore", "crcli-restore", &["crcli-image"]),
            ("cli", "crcli", &["crcli-dump", "crcli-restore"]),
        ];
        for (dir, name, ds) in deps {
            let c = d.path().join("crates").join(dir);
            fs::create_dir_all(c.join("src")).unwrap();
            let mut toml =
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[dependencies]\n");
            for dep in *ds {
                toml.push_str(&format!("{dep}.workspace = true\n"));
            }
            toml.push_str("anyhow = { version = \"1\" }\n");
            fs::write(c.join("Cargo.toml"), toml).unwrap();
            let body = if *dir == "sys" {
                "//! sys\n/// f\npub fn f() -> u8 {\n    // SAFETY: nothing\n    unsafe { g() }\n}\nunsafe fn g() -> u8 { 1 }\n"
            } else {
                "//! x\n#![forbid(unsafe_code)]\n// an unsafe word in a comment\n/* nested /* unsafe */ */\nconst S: &str = \"unsafe\";\nconst R: &str = r#\"unsafe \"# ;\nfn f<'a>(x: &'a str) -> char { let _ = x; 'u' }\nfn unsafe_looking_name() {}\n"
            };
            let entry = if *dir == "cli" {
                "src/main.rs"
            } else {
                "src/lib.rs"
            };
            fs::write(c.join(entry), body).unwrap();
        }
        d
    }

    #[test]
    fn clean_fixture_passes() {
        let d = fixture();
        let problems = check(d.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        run(d.path()).unwrap();
    }

    fn append(path: &Path, text: &str) {
        let mut s = fs::read_to_string(path).unwrap();
        s.push_str(text);
        fs::write(path, s).unwrap();
    }

    #[test]
    fn upward_dependency_fails() {
        let d = fixture();
        append(
            &d.path().join("crates/mountinfo/Cargo.toml"),
            "\n[dev-dependencies]\ncrcli-dump = { path = \"../dump\" }\n",
        );
        let problems = check(d.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("crcli-mountinfo depends on crcli-dump"),
            "{problems:?}"
        );
        assert!(problems[0].contains("higher layer"));
        assert!(run(d.path()).is_err());
    }

    #[test]
    fn sys_depending_on_anything_above_fails_even_renamed() {
        let d = fixture();
        append(
            &d.path().join("crates/sys/Cargo.toml"),
            "\n[build-dependencies.model]\npackage = \"crcli-mountinfo\"\npath = \"../mountinfo\"\n",
        );
        let problems = check(d.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("crcli-sys depends on crcli-mountinfo (build-dependencies)"));
    }

    #[test]
    fn dump_and_restore_must_not_depend_on_each_other() {
        let d = fixture();
        append(
            &d.path().join("crates/dump/Cargo.toml"),
            "\n[target.'cfg(target_os = \"linux\")'.dependencies]\nrestore = { package = \"crcli-restore\", path = \"../restore\" }\n",
        );
        let problems = check(d.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("crcli-dump depends on crcli-restore"));
        assert!(problems[0].contains("same layer"));
    }

    #[test]
    fn unknown_crate_fails() {
        let d = fixture();
        let c = d.path().join("crates/newthing");
        fs::create_dir_all(&c).unwrap();
        fs::write(
            c.join("Cargo.toml"),
            "[package]\nname = \"crcli-newthing\"\n",
        )
        .unwrap();
        let problems = check(d.path()).unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("crcli-newthing has no layer")),
            "{problems:?}"
        );
    }

    #[test]
    fn unsafe_outside_sys_fails() {
        let d = fixture();
        let f = d.path().join("crates/image/src/codec.rs");
        fs::write(
            &f,
            "//! codec\nfn f(p: *const u8) -> u8 {\n    unsafe { *p }\n}\n",
        )
        .unwrap();
        let t = d.path().join("crates/restore/tests/it.rs");
        fs::create_dir_all(t.parent().unwrap()).unwrap();
        fs::write(&t, "unsafe impl Send for X {}\n").unwrap();
        let problems = check(d.path()).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("codec.rs:3: `unsafe` outside crates/sys")));
        assert!(problems.iter().any(|p| p.contains("it.rs:1:")));
    }

    #[test]
    fn missing_forbid_fails() {
        let d = fixture();
        fs::write(
            d.path().join("crates/dump/src/lib.rs"),
            "//! dump\n// #![forbid(unsafe_code)]\n",
        )
        .unwrap();
        let problems = check(d.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("dump/src/lib.rs: missing #![forbid(unsafe_code)]"));
    }

    #[test]
    fn stripping_keeps_code_only() {
        assert_eq!(
            unsafe_lines("let s = \"unsafe\"; // unsafe\n"),
            Vec::<usize>::new()
        );
        assert_eq!(
            unsafe_lines("#![forbid(unsafe_code)]\n"),
            Vec::<usize>::new()
        );
        assert_eq!(unsafe_lines("let c = '\"'; unsafe {}\n"), vec![1]);
        assert_eq!(
            unsafe_lines("let s = br##\"a \"# unsafe\"##;\nunsafe fn f() {}"),
            vec![2]
        );
        assert_eq!(unsafe_lines("fn f<'a>(x: &'a u8) { unsafe {} }"), vec![1]);
        assert_eq!(
            unsafe_lines("let e = '\\''; let u = unsafe { 1 };"),
            vec![1]
        );
    }
}
