//! The job's inventory as Zuul's executor builds it (`zuul/executor/server.py`,
//! `getHostList` and `make_inventory_dict`): every node of the frozen nodeset with its
//! host variables (the job's `host-vars`, then `nodepool`, `ansible_*`), the nodeset's
//! groups with the job's `group-vars`, and Ansible's host patterns evaluated over it.
//!
//! Owns: which hosts a play's `hosts:` selects (as ansible-core 2.16's
//! `InventoryManager.get_hosts` does, implicit `localhost` included), the magic variables
//! `groups`, `group_names`, `inventory_hostname`, and each host's inventory variables in
//! Ansible's order (group vars by group name, then host vars). Pure data: no I/O.

use serde_json::{Map, Value, json};

/// One node of the job.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub name: String,
    /// Host variables (Zuul's `host_vars` of the node: job `host-vars`, `nodepool`,
    /// `ansible_connection`, …).
    pub vars: Map<String, Value>,
    /// Facts cached from earlier playbooks of the build (`set_fact: cacheable: true`,
    /// native roles): Ansible's fact cache, above inventory variables.
    pub facts: Map<String, Value>,
}

/// A group of the nodeset (`groups:`), with the job's `group-vars` for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub vars: Map<String, Value>,
}

/// The hosts a playbook runs against. Job variables are not here: they are the runner's
/// variables (`all.vars` in Zuul's inventory).
#[derive(Clone, Debug, PartialEq)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub groups: Vec<Group>,
}

/// Names Ansible creates implicitly when a pattern names them and no host does.
const LOCALHOST: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl Default for Inventory {
    fn default() -> Self {
        Inventory::localhost()
    }
}

impl Inventory {
    /// One host, `localhost`, on this machine: gantry's default nodeset.
    pub fn localhost() -> Inventory {
        Inventory {
            hosts: vec![Host {
                name: "localhost".into(),
                vars: local_host_vars("localhost", None),
                facts: Map::new(),
            }],
            groups: Vec::new(),
        }
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn host_mut(&mut self, name: &str) -> Option<&mut Host> {
        self.hosts.iter_mut().find(|h| h.name == name)
    }

    /// Hosts in no group of the nodeset.
    fn ungrouped(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !self.groups.iter().any(|g| g.hosts.contains(&h.name)))
            .map(|h| h.name.clone())
            .collect()
    }

    /// Every group with its hosts: `all`, `ungrouped` and the nodeset's groups.
    fn group_map(&self) -> Vec<(String, Vec<String>)> {
        let mut out = vec![
            (
                "all".to_string(),
                self.hosts.iter().map(|h| h.name.clone()).collect(),
            ),
            ("ungrouped".to_string(), self.ungrouped()),
        ];
        for g in &self.groups {
            out.push((g.name.clone(), g.hosts.clone()));
        }
        out
    }

    /// The `groups` magic variable.
    pub fn groups_var(&self) -> Value {
        Value::Object(
            self.group_map()
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect(),
        )
    }

    /// `group_names` of a host: its groups, sorted, without `all` (and with `ungrouped`
    /// when it is in no other group), as Ansible sets it.
    pub fn group_names(&self, host: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.hosts.iter().any(|h| h == host))
            .map(|g| g.name.clone())
            .collect();
        if names.is_empty() && self.host(host).is_some() {
            names.push("ungrouped".into());
        }
        names.sort();
        names.dedup();
        names
    }

    /// A host's inventory variables, lowest first: the vars of its groups (sorted by
    /// name, as Ansible sorts groups of one depth), then its host vars.
    pub fn inventory_vars(&self, host: &str) -> Map<String, Value> {
        let mut out = Map::new();
        let mut groups: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| g.hosts.iter().any(|h| h == host))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        for g in groups {
            for (k, v) in &g.vars {
                out.insert(k.clone(), v.clone());
            }
        }
        if let Some(h) = self.host(host) {
            for (k, v) in &h.vars {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// The hosts a play's `hosts:` selects, in Ansible's order. A pattern naming
    /// `localhost` when no node has that name selects the implicit localhost.
    pub fn select(&self, patterns: &[String]) -> Vec<String> {
        let mut selected: Vec<String> = Vec::new();
        for pattern in patterns {
            for term in split_pattern(pattern) {
                let (op, term) = match term.chars().next() {
                    Some('!') => ('!', &term[1..]),
                    Some('&') => ('&', &term[1..]),
                    _ => ('|', term.as_str()),
                };
                let hits = self.term(term);
                match op {
                    '!' => selected.retain(|h| !hits.contains(h)),
                    '&' => selected.retain(|h| hits.contains(h)),
                    _ => {
                        for h in hits {
                            if !selected.contains(&h) {
                                selected.push(h);
                            }
                        }
                    }
                }
            }
        }
        selected
    }

    /// One term of a pattern: a group, host, glob or `~regex`, with an optional subscript
    /// (`[0]`, `[-1]`, `[1:]`, `[0:2]` inclusive, as ansible-core's `_apply_subscript`).
    fn term(&self, term: &str) -> Vec<String> {
        let (base, sub) = match term.find('[') {
            Some(i) if term.ends_with(']') && i > 0 => {
                (&term[..i], Some(&term[i + 1..term.len() - 1]))
            }
            _ => (term, None),
        };
        let hosts = self.enumerate(base);
        match sub.and_then(subscript) {
            None => hosts,
            Some((start, end)) => apply_subscript(&hosts, start, end),
        }
    }

    /// ansible-core's `_enumerate_matches`: groups first; host names when no group
    /// matched or the pattern is a glob or regex; the implicit localhost last.
    fn enumerate(&self, pattern: &str) -> Vec<String> {
        let Some(matcher) = Matcher::new(pattern) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let push = |h: &String, out: &mut Vec<String>| {
            if !out.contains(h) {
                out.push(h.clone());
            }
        };
        let groups = self.group_map();
        let mut any_group = false;
        for (name, hosts) in &groups {
            if matcher.matches(name) {
                any_group = true;
                for h in hosts {
                    push(h, &mut out);
                }
            }
        }
        let special = pattern.starts_with('~') || pattern.contains(['.', '?', '*', '[']);
        if !any_group || special {
            for h in &self.hosts {
                if matcher.matches(&h.name) {
                    push(&h.name, &mut out);
                }
            }
        }
        if out.is_empty() && LOCALHOST.contains(&pattern) {
            out.push(pattern.to_string());
        }
        out
    }
}

/// Host variables of a node on this machine: Zuul's `nodepool` mapping with the values a
/// local node has, and the connection settings.
pub fn local_host_vars(name: &str, label: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ansible_connection".into(), json!("local"));
    m.insert("ansible_host".into(), json!("127.0.0.1"));
    m.insert("ansible_port".into(), json!(22));
    m.insert(
        "nodepool".into(),
        json!({
            "label": label,
            "az": null,
            "cloud": "local",
            "provider": "local",
            "region": null,
            "host_id": name,
            "interface_ip": "127.0.0.1",
            "public_ipv4": "127.0.0.1",
            "private_ipv4": "127.0.0.1",
            "public_ipv6": null,
        }),
    );
    m
}

/// `fnmatch` (Python's) or `~regex` (matched at the start, as `re.match`).
struct Matcher(regex::Regex);

impl Matcher {
    fn new(pattern: &str) -> Option<Matcher> {
        let re = match pattern.strip_prefix('~') {
            Some(r) => format!("^(?:{r})"),
            None => format!("^{}$", fnmatch(pattern)),
        };
        regex::Regex::new(&re).ok().map(Matcher)
    }

    fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

/// Python's `fnmatch.translate` for `*`, `?` and `[...]`.
fn fnmatch(p: &str) -> String {
    let mut out = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' && !class.is_empty() {
                        closed = true;
                        break;
                    }
                    class.push(d);
                }
                if closed {
                    let class = match class.strip_prefix('!') {
                        Some(rest) => format!("^{rest}"),
                        None => class,
                    };
                    out.push('[');
                    out.push_str(&class.replace('\\', "\\\\"));
                    out.push(']');
                } else {
                    out.push_str("\\[");
                    out.push_str(&regex::escape(&class));
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out
}

/// `0` → (0, None); `1:` → (1, Some(-1)); `:2` → (0, Some(2)); `a-b` as `a:b`.
fn subscript(s: &str) -> Option<(i64, Option<i64>)> {
    let s = s.trim();
    let sep = s.find([':', '-']).filter(|&i| i > 0 || s.starts_with(':'));
    match sep {
        None => s.parse().ok().map(|i| (i, None)),
        Some(i) => {
            let (a, b) = (s[..i].trim(), s[i + 1..].trim());
            let start = if a.is_empty() { 0 } else { a.parse().ok()? };
            let end = if b.is_empty() { -1 } else { b.parse().ok()? };
            Some((start, Some(end)))
        }
    }
}

/// ansible-core's `_apply_subscript`: `[i]` one host, `[a:b]` inclusive of `b`, `b == 0`
/// meaning `[a]`; out of range selects nothing.
fn apply_subscript(hosts: &[String], start: i64, end: Option<i64>) -> Vec<String> {
    let n = hosts.len() as i64;
    let index = |i: i64| if i < 0 { n + i } else { i };
    match end {
        Some(e) if e != 0 => {
            let e = if e == -1 { n - 1 } else { e };
            let (a, b) = (index(start).clamp(0, n), (index(e) + 1).clamp(0, n));
            if a >= b {
                Vec::new()
            } else {
                hosts[a as usize..b as usize].to_vec()
            }
        }
        _ => {
            let i = index(start);
            if (0..n).contains(&i) {
                vec![hosts[i as usize].clone()]
            } else {
                Vec::new()
            }
        }
    }
}

/// `a:b,c[0:1]` → `a`, `b`, `c[0:1]` (a `:` inside brackets is a slice).
pub(crate) fn split_pattern(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                depth -= 1;
                cur.push(c)
            }
            ':' | ',' if depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let host = |n: &str| Host {
            name: n.into(),
            vars: local_host_vars(n, Some("ubuntu-noble")),
            facts: Map::new(),
        };
        Inventory {
            hosts: vec![host("controller"), host("compute1"), host("compute2")],
            groups: vec![
                Group {
                    name: "computes".into(),
                    hosts: vec!["compute1".into(), "compute2".into()],
                    vars: Map::from_iter([("g".to_string(), json!("computes"))]),
                },
                Group {
                    name: "alpha".into(),
                    hosts: vec!["compute1".into()],
                    vars: Map::from_iter([("g".to_string(), json!("alpha"))]),
                },
            ],
        }
    }

    fn sel(i: &Inventory, p: &str) -> Vec<String> {
        i.select(&[p.to_string()])
    }

    #[test]
    fn patterns_select_as_ansible_does() {
        let i = inv();
        assert_eq!(sel(&i, "all"), ["controller", "compute1", "compute2"]);
        assert_eq!(sel(&i, "computes"), ["compute1", "compute2"]);
        assert_eq!(sel(&i, "all[0]"), ["controller"]);
        assert_eq!(sel(&i, "all[-1]"), ["compute2"]);
        assert_eq!(sel(&i, "all[0:1]"), ["controller", "compute1"]);
        assert_eq!(sel(&i, "all[1:]"), ["compute1", "compute2"]);
        assert_eq!(sel(&i, "all:!computes"), ["controller"]);
        assert_eq!(sel(&i, "computes:&alpha"), ["compute1"]);
        assert_eq!(sel(&i, "compute*"), ["compute1", "compute2"]);
        assert_eq!(sel(&i, "~comp.*2"), ["compute2"]);
        assert_eq!(sel(&i, "ungrouped"), ["controller"]);
        assert_eq!(sel(&i, "controller,compute2"), ["controller", "compute2"]);
        // Not in the inventory: the implicit localhost, which `all` never selects.
        assert_eq!(sel(&i, "localhost"), ["localhost"]);
        assert!(sel(&i, "nope").is_empty());
        let empty = Inventory {
            hosts: vec![],
            groups: vec![],
        };
        assert!(sel(&empty, "all").is_empty());
        assert_eq!(sel(&empty, "localhost"), ["localhost"]);
        assert_eq!(sel(&Inventory::localhost(), "all"), ["localhost"]);
    }

    #[test]
    fn group_vars_by_name_then_host_vars() {
        let mut i = inv();
        assert_eq!(i.inventory_vars("compute1")["g"], "computes");
        i.host_mut("compute1")
            .unwrap()
            .vars
            .insert("g".into(), json!("host"));
        assert_eq!(i.inventory_vars("compute1")["g"], "host");
        assert_eq!(i.group_names("compute1"), ["alpha", "computes"]);
        assert_eq!(i.group_names("controller"), ["ungrouped"]);
        assert_eq!(
            i.groups_var()["ungrouped"],
            json!(["controller"]),
            "{}",
            i.groups_var()
        );
    }
}
