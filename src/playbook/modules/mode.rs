//! File modes for the file modules: octal (`0644`, `"0755"`, PyYAML's integer reading of
//! an unquoted octal) or symbolic (`u+x,g-w`), computed as ansible-core computes them.
//! Must not: touch a file (the file modules apply the mode).

use serde_json::{Map, Value};

use super::ModuleError;

/// A mode parameter: `"0644"`/`"644"` (octal text) or an integer (PyYAML reads an
/// unquoted `0644` as the integer 420, which is the mode itself).
/// A `mode:` argument: octal, or symbolic (`u+x,g-w`, `a=r`, `u=rwX`) applied to the
/// file's current mode as Ansible does (`AnsibleModule._symbolic_mode_to_octal`).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum FileMode {
    Octal(u32),
    Symbolic(String),
}

pub(super) fn mode(m: &Map<String, Value>) -> Result<Option<FileMode>, ModuleError> {
    match m.get("mode") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= 0o7777)
            .map(|n| Some(FileMode::Octal(n as u32)))
            .ok_or_else(|| ModuleError::Args(format!("mode {n} is not a file mode"))),
        Some(Value::String(s)) => {
            let digits = s.trim().trim_start_matches("0o");
            if let Ok(n) = u32::from_str_radix(digits, 8) {
                return match n {
                    0..=0o7777 => Ok(Some(FileMode::Octal(n))),
                    _ => Err(ModuleError::Args(format!(
                        "mode \"{s}\" is not a file mode"
                    ))),
                };
            }
            // Checked now (the same message as Ansible's) so a bad mode fails before
            // anything is written.
            symbolic(0o644, false, 0o022, s).map_err(ModuleError::Args)?;
            Ok(Some(FileMode::Symbolic(s.clone())))
        }
        Some(other) => Err(ModuleError::Args(format!(
            "mode must be octal text, found {other}"
        ))),
    }
}

/// Ansible's symbolic chmod (module_utils/basic.py, `_symbolic_mode_to_octal` and
/// `_get_octal_mode_from_symbolic_perms`): clauses `[ugoa]*[+-=][rwxXstugo]*` joined by
/// `,`, applied in order to `current`; no `who` means `a` with the umask's bits left
/// alone; `X` is `x` for a directory or a mode that already has an `x`.
pub(super) fn symbolic(current: u32, is_dir: bool, umask: u32, spec: &str) -> Result<u32, String> {
    const S_ISUID: u32 = 0o4000;
    const S_ISGID: u32 = 0o2000;
    const S_ISVTX: u32 = 0o1000;
    let bad = || format!("bad symbolic permission for mode: {spec}");
    let mut mode = current & 0o7777;
    for clause in spec.split(',') {
        let at = clause.find(['+', '-', '=']).ok_or_else(bad)?;
        let who = &clause[..at];
        let use_umask = who.is_empty();
        let who = if who.is_empty() || who == "a" {
            "ugo"
        } else {
            who
        };
        if !who.chars().all(|c| matches!(c, 'u' | 'g' | 'o')) {
            return Err(bad());
        }
        // The operators and the permissions after each.
        let mut rest = &clause[at..];
        while let Some(op) = rest.chars().next() {
            let tail = &rest[1..];
            let end = tail.find(['+', '-', '=']).unwrap_or(tail.len());
            let perms = &tail[..end];
            rest = &tail[end..];
            if !perms.chars().all(|c| "rwxXstugo".contains(c)) {
                return Err(bad());
            }
            for user in who.chars() {
                let rev_umask = if use_umask { !umask & 0o7777 } else { 0o7777 };
                let has_x = mode & 0o111 != 0;
                let shift = match user {
                    'u' => 6,
                    'g' => 3,
                    _ => 0,
                };
                let (u, g, o) = ((mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
                let mut apply = 0;
                for p in perms.chars() {
                    apply |= match p {
                        'r' => rev_umask & (4 << shift),
                        'w' => rev_umask & (2 << shift),
                        'x' => rev_umask & (1 << shift),
                        'X' if is_dir || has_x => 1 << shift,
                        'X' => 0,
                        's' if user == 'u' => S_ISUID,
                        's' if user == 'g' => S_ISGID,
                        't' if user == 'o' => S_ISVTX,
                        's' | 't' => 0,
                        'u' => u << shift,
                        'g' => g << shift,
                        _ => o << shift, // 'o'
                    };
                }
                mode = match op {
                    '=' => {
                        let mask = (7 << shift)
                            | match user {
                                'u' => S_ISUID,
                                'g' => S_ISGID,
                                _ => S_ISVTX,
                            };
                        (mode & !mask) | apply
                    }
                    '+' => mode | apply,
                    _ => mode & !apply,
                };
            }
        }
    }
    Ok(mode)
}

/// The process's umask (read without changing it: /proc/self/status), 022 when unknown.
pub(super) fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod symbolic_tests {
    use super::symbolic;

    /// Values from ansible-core 2.16's `_symbolic_mode_to_octal` on the same inputs.
    #[test]
    fn symbolic_modes_as_ansible() {
        assert_eq!(symbolic(0o644, false, 0o022, "u+x,g-w").unwrap(), 0o744);
        assert_eq!(symbolic(0o777, false, 0o022, "a=r").unwrap(), 0o444);
        assert_eq!(symbolic(0o600, false, 0o022, "+x").unwrap(), 0o711);
        assert_eq!(symbolic(0o600, false, 0o022, "=rw").unwrap(), 0o644);
        assert_eq!(symbolic(0o644, false, 0o022, "u=rwX,go=rX").unwrap(), 0o644);
        assert_eq!(symbolic(0o640, true, 0o022, "o+X").unwrap(), 0o641);
        assert_eq!(symbolic(0o640, false, 0o022, "g=u").unwrap(), 0o660);
        assert_eq!(symbolic(0o644, false, 0o022, "u+s,o+t").unwrap(), 0o5644);
        assert_eq!(symbolic(0o755, false, 0o022, "go-rwx").unwrap(), 0o700);
        assert!(symbolic(0o644, false, 0o022, "u*x").is_err());
        assert!(symbolic(0o644, false, 0o022, "q+x").is_err());
        assert!(symbolic(0o644, false, 0o022, "u+z").is_err());
    }
}
