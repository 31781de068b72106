//! Path resolution (`_resolve_path`, parity §8.0) and the single-component glob used by
//! `success.require_glob`.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::pyfmt::str_list_repr;

/// Maximum number of symlinks followed while resolving one path (like the OS limit).
const MAX_SYMLINKS: usize = 40;

/// Python `Path.resolve()` (non-strict): make absolute, follow symlinks of the existing
/// prefix, process `..` after resolving what precedes it; missing components are appended.
pub(crate) fn realpath(p: &Path, cwd: Option<&Path>) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        match cwd {
            Some(c) => c.join(p),
            None => p.to_path_buf(),
        }
    };
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, &abs, false);
    let mut out = PathBuf::from("/");
    let mut links = 0usize;
    while let Some(c) = pending.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&c);
        let is_link = std::fs::symlink_metadata(&next)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link && links < MAX_SYMLINKS {
            if let Ok(target) = std::fs::read_link(&next) {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_components(&mut pending, &target, true);
                continue;
            }
        }
        out = next;
    }
    out
}

fn push_components(pending: &mut VecDeque<OsString>, p: &Path, front: bool) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir => Some(OsString::from(".")),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for c in comps.into_iter().rev() {
            pending.push_front(c);
        }
    } else {
        pending.extend(comps);
    }
}

/// The env-snapshot flag test used by the reference (`str(v).lower() in (1, true, yes, y, on)`).
fn env_flag(env: &BTreeMap<String, String>, key: &str, default: bool) -> bool {
    match env.get(key) {
        Some(v) => matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "y" | "on"),
        None => default,
    }
}

/// What `_resolve_path` needs: the job artifacts dir, the workspace root and the env snapshot.
pub(crate) struct PathPolicy<'a> {
    pub artifacts_dir: &'a Path,
    pub workspace_root: Option<&'a Path>,
    pub env: &'a BTreeMap<String, String>,
}

impl PathPolicy<'_> {
    fn cwd(&self) -> Option<PathBuf> {
        std::env::current_dir().ok()
    }

    /// `_resolve_path(ctx, job_id, raw)`. Errors carry the reference's exact message.
    ///
    /// The reference's symlink-segment check (§8.0 step 5) is a no-op on an already resolved
    /// path and is therefore not reproduced.
    pub(crate) fn resolve(&self, raw: &str) -> Result<PathBuf, String> {
        let cwd = self.cwd();
        let artifacts_root = realpath(self.artifacts_dir, cwd.as_deref());
        let p = Path::new(raw);
        let cand = if p.is_absolute() {
            realpath(p, cwd.as_deref())
        } else {
            realpath(&artifacts_root.join(p), cwd.as_deref())
        };
        if !env_flag(self.env, "AETHERFLOW_STRICT_SANDBOX", true) {
            return Ok(cand);
        }
        if env_flag(self.env, "AETHERFLOW_MODE_ENTERPRISE", false) {
            if cand.starts_with(&artifacts_root) {
                return Ok(cand);
            }
            return Err(format!(
                "Path escapes job artifacts dir in enterprise mode: {raw}"
            ));
        }
        let mut allowed: Vec<PathBuf> = Vec::new();
        let candidates = self
            .workspace_root
            .map(|w| realpath(w, cwd.as_deref()))
            .into_iter()
            .chain(std::iter::once(artifacts_root));
        for r in candidates {
            if r.exists() && !allowed.contains(&r) {
                allowed.push(r);
            }
        }
        if allowed.iter().any(|r| cand.starts_with(r)) {
            return Ok(cand);
        }
        let roots: Vec<String> = allowed
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect();
        Err(format!(
            "Path not under allowed roots: {raw}. Allowed roots: {}",
            str_list_repr(&roots)
        ))
    }
}

/// `Path(parent).glob(name)` for a single path component: true when anything matches.
pub(crate) fn glob_has_match(base: &Path) -> bool {
    let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
        return base.exists();
    };
    let name = name.to_string_lossy();
    if !name.contains(['*', '?', '[']) {
        return base.exists();
    }
    let pattern: Vec<char> = name.chars().collect();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return false;
    };
    entries.flatten().any(|e| {
        let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
        fnmatch(&pattern, &n)
    })
}

/// Python `fnmatch.fnmatchcase` semantics: `*`, `?`, `[seq]`, `[!seq]`; an unterminated `[`
/// is a literal.
pub(crate) fn fnmatch(pat: &[char], name: &[char]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_class(pat, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c => {
                    if c == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `pat[start] == '['`. Returns (matched, index after
/// the class), or None when the class is unterminated (then `[` is a literal).
fn match_class(pat: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < pat.len() && pat[i] == '!';
    if negate {
        i += 1;
    }
    let first = i;
    let mut matched = false;
    loop {
        if i >= pat.len() {
            return None;
        }
        if pat[i] == ']' && i > first {
            break;
        }
        if i + 2 < pat.len() && pat[i + 1] == '-' && pat[i + 2] != ']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let n: Vec<char> = n.chars().collect();
        fnmatch(&p, &n)
    }

    #[test]
    fn fnmatch_basics() {
        assert!(m("*.csv", "a.csv"));
        assert!(m("*.csv", ".hidden.csv"));
        assert!(!m("*.csv", "a.tsv"));
        assert!(m("a?c", "abc"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("[a-c]*", "cat"));
        assert!(m("[x", "[x"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxc"));
        assert!(m("[]]", "]"));
    }

    #[test]
    fn realpath_handles_dotdot_and_missing() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = realpath(d.path(), None);
        let r = realpath(&root.join("x/../y/./z"), None);
        assert_eq!(r, root.join("y/z"));
        std::fs::create_dir(root.join("real")).expect("mkdir");
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).expect("symlink");
        assert_eq!(realpath(&root.join("link/f"), None), root.join("real/f"));
    }
}
