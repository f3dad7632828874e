//! A play on the hosts it selects: the current host's facts, inventory variables and
//! magic variables, failed hosts left out of later plays, and the facts that outlive the
//! playbook (Zuul's fact cache).

use serde_json::{Map, Value};

use super::{Failure, Frame, Handler, Interp, machine};
use crate::playbook::model::Play;
use crate::playbook::{LogSink, Vars};

impl Interp<'_, '_> {
    /// Runs a play on each host it selects (one host after the other). Returns the first
    /// failure, and whether the playbook stops: every host of the play failed (Ansible's
    /// "NO MORE HOSTS LEFT"), or the run was cancelled.
    pub(super) async fn play(&mut self, play: &Play) -> (Option<Failure>, bool) {
        self.log.line("");
        self.log.line(&format!(
            "PLAY [{}]",
            play.name.as_deref().unwrap_or(&play.hosts.join(","))
        ));
        let hosts: Vec<String> = self
            .ctx
            .inventory
            .select(&play.hosts)
            .into_iter()
            .filter(|h| !self.failed_hosts.contains(h))
            .collect();
        if hosts.is_empty() {
            self.log.line("skipping: no hosts matched");
            return (None, false);
        }
        let mut first = None;
        let mut failed = 0;
        for h in &hosts {
            self.enter_host(h, &hosts);
            let r = self.play_on_host(play).await;
            match r {
                Ok(()) => {}
                Err(f) if f.cancelled => return (Some(f), true),
                Err(f) if f.end_play => {
                    if !f.end_host {
                        break;
                    }
                }
                Err(f) => {
                    failed += 1;
                    self.failed_hosts.push(h.clone());
                    first.get_or_insert(f);
                }
            }
        }
        self.leave_host();
        let stop = failed == hosts.len();
        (first, stop)
    }

    /// Makes `name` the current host: its facts, inventory variables and magic variables.
    fn enter_host(&mut self, name: &str, play_hosts: &[String]) {
        if self.host_name != name {
            let previous = std::mem::take(&mut self.host);
            if !self.host_name.is_empty() {
                self.host_states.insert(self.host_name.clone(), previous);
            }
            self.host = self.host_states.remove(name).unwrap_or_default();
            self.host_name = name.to_string();
        }
        *self.log.host.write().unwrap_or_else(|p| p.into_inner()) = name.to_string();
        let inv = self.ctx.inventory;
        let mut layer = Vec::new();
        let mut plain = Vars::default();
        for (k, v) in inv.inventory_vars(name) {
            plain.set(k, v);
        }
        let mut verbatim = Vars::default();
        if let Some(h) = inv.host(name) {
            for (k, v) in &h.facts {
                verbatim.set_verbatim(k.clone(), v.clone());
            }
        }
        layer.extend(plain.map);
        layer.extend(verbatim.map);
        self.inventory_layer = layer;
        self.magic =
            machine::magic_vars(&self.machine, inv, name, play_hosts, &self.ctx.vars, |h| {
                if h == name {
                    Some(&self.host)
                } else {
                    self.host_states.get(h)
                }
            });
    }

    /// Facts that outlive the playbook, for the current host (Zuul's fact cache).
    pub(super) fn cache_facts(&mut self, facts: &Map<String, Value>) {
        if facts.is_empty() {
            return;
        }
        let cached = self.facts.entry(self.host_name.clone()).or_default();
        for (k, v) in facts {
            cached.insert(k.clone(), v.clone());
        }
    }

    /// Puts the current host's state back with the others.
    fn leave_host(&mut self) {
        if !self.host_name.is_empty() {
            let state = std::mem::take(&mut self.host);
            self.host_states
                .insert(std::mem::take(&mut self.host_name), state);
        }
    }

    async fn play_on_host(&mut self, play: &Play) -> Result<(), Failure> {
        let mut frame = Frame {
            play: play.vars.clone(),
            environment: play.environment.iter().cloned().collect(),
            ..Frame::default()
        };
        self.exported = None;
        for (pos, file) in &play.vars_files {
            let vars = self.vars(&frame);
            let loaded = self
                .templar
                .render(&Value::String(file.clone()), &vars)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    let f = f
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| f.to_string());
                    self.files
                        .vars(&pos.dir().join(f))
                        .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(m) => frame.play.extend(m),
                Err(msg) => return Err(self.failure(pos, "vars_files", msg, Value::Null)),
            }
        }
        self.handlers = play
            .handlers
            .iter()
            .map(|t| Handler {
                task: t.clone(),
                frame: frame.clone(),
                file: None,
                notified: false,
            })
            .collect();
        // Notified handlers run after each section, as in Ansible.
        self.run_tasks(&play.pre_tasks, &frame).await?;
        self.flush_handlers().await?;
        self.ran_roles.clear();
        for r in &play.roles {
            self.play_role(r, &mut frame).await?;
        }
        self.run_tasks(&play.tasks, &frame).await?;
        self.flush_handlers().await?;
        self.run_tasks(&play.post_tasks, &frame).await?;
        self.flush_handlers().await
    }
}
