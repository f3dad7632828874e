//! gantry's native roles, reachable from real Ansible: a unix socket only this run knows,
//! guarded by a per-run token, on which the shipped `gantry_native` action plugin asks
//! gantry to run a role (ZUUL.md §9) in-process: buildset registries, builds, pushes and
//! promotes stay in this process, as fast as under the built-in interpreter.
//!
//! Protocol: one request per connection, a JSON line `{token, role, vars}` (vars already
//! templated by Ansible); the answer is one JSON object `{ok, msg, changed, facts}`.
//! Must not: trust the request beyond its token (size-bounded, token compared in constant
//! time), or print (lines go to the build's log sink, redacted).

use std::path::Path;
use std::sync::{Mutex, RwLock};

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::playbook::redact::{Redactor, secret_leaves};
use crate::playbook::{LogSink, NativeRoles, Returned, RoleCall, Templar, Vars};

/// A request larger than this is refused: the variables of a job are kilobytes.
const MAX_REQUEST: u64 = 16 * 1024 * 1024;

/// A log sink that masks the secrets learned so far (the run's, and native roles'
/// returned `secret_data`) before the build's log sees the line.
pub(super) struct Redacting<'a> {
    pub sink: &'a dyn LogSink,
    pub redactor: &'a RwLock<Redactor>,
}

impl LogSink for Redacting<'_> {
    fn line(&self, line: &str) {
        let clean = self
            .redactor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .apply(line);
        self.sink.line(&clean);
    }
}

/// What the socket server needs from the playbook run.
pub(super) struct Server<'a> {
    pub token: &'a str,
    pub native: &'a dyn NativeRoles,
    pub work_dir: &'a Path,
    pub log: &'a Redacting<'a>,
    /// Native roles' `zuul_return`-like data, merged in call order.
    pub returned: &'a Mutex<Returned>,
}

#[derive(serde::Deserialize)]
struct Request {
    token: String,
    role: String,
    #[serde(default)]
    vars: Map<String, Value>,
}

impl Server<'_> {
    /// Serves requests one at a time until the future is dropped (when ansible-playbook
    /// ends).
    pub async fn serve(&self, listener: UnixListener) {
        let templar = Templar::new();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                // The listener is broken: native roles fail in the plugin (cannot reach
                // gantry); never spin.
                return std::future::pending().await;
            };
            let mut buf = Vec::new();
            let read = (&mut conn).take(MAX_REQUEST).read_to_end(&mut buf).await;
            let reply = match read {
                Err(e) => json!({"ok": false, "msg": format!("reading the request: {e}")}),
                Ok(_) => self.answer(&buf, &templar).await,
            };
            let _ = conn.write_all(reply.to_string().as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    }

    async fn answer(&self, buf: &[u8], templar: &Templar) -> Value {
        let req: Request = match serde_json::from_slice(buf) {
            Ok(r) => r,
            Err(e) => return json!({"ok": false, "msg": format!("bad request: {e}")}),
        };
        if !bool::from(req.token.as_bytes().ct_eq(self.token.as_bytes())) {
            return json!({"ok": false, "msg": "bad token"});
        }
        if !self.native.has(&req.role) {
            return json!({"ok": false, "msg": format!("no native role {}", req.role)});
        }
        self.log
            .line(&crate::playbook::check::native_note(&req.role));
        let mut vars = Vars::default();
        for (k, v) in req.vars {
            // Ansible templated them already; never template twice.
            vars.set_verbatim(k, v);
        }
        let call = RoleCall {
            vars: &vars,
            work_dir: self.work_dir,
            log: self.log,
            templar,
        };
        match self.native.run(&req.role, call).await {
            Err(msg) => json!({"ok": false, "msg": msg.to_string()}),
            Ok(out) => {
                if !out.returned.secret_data.is_empty() {
                    let more = secret_leaves(&Value::Object(out.returned.secret_data.clone()));
                    self.log
                        .redactor
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(more);
                }
                self.returned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .merge(out.returned);
                json!({"ok": true, "changed": out.changed, "facts": out.facts})
            }
        }
    }
}
