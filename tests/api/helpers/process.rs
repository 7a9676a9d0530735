//! The real binary, started as an operator would, with its output captured.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_billing-api");

/// Runs a subcommand to completion.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let out = command(args, env).output().expect("run billing-api");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    // Tests run side by side: the admin listener takes a free port unless a test picks one.
    cmd.env("BILLING_ADMIN__PORT", "0");
    // Load from one tenant: rate limits on, out of reach (tests/api/rate_limit.rs tests them).
    for class in ["READ", "WRITE", "UNAUTHENTICATED"] {
        for what in ["PER_SECOND", "BURST"] {
            cmd.env(format!("BILLING_RATE_LIMIT__{class}_{what}"), "100000");
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running `billing-api serve`.
pub struct Server {
    child: Child,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let mut child = command(&["serve"], env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start billing-api");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        Server { child, output }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The address from the startup log line.
    pub fn wait_for_address(&self) -> String {
        let line = self
            .wait_for_line("billing-api started", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the server did not start:\n{}", self.text()));
        let json: serde_json::Value = serde_json::from_str(&line).expect("startup line is JSON");
        json["listen"].as_str().expect("listen address").to_owned()
    }

    /// The admin listener's address from the startup log line.
    pub fn admin_address(&self) -> String {
        let line = self
            .wait_for_line("billing-api started", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the server did not start:\n{}", self.text()));
        let json: serde_json::Value = serde_json::from_str(&line).expect("startup line is JSON");
        json["admin"].as_str().expect("admin address").to_owned()
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An owned environment as the borrowed pairs `run` and `Server::start` take.
pub fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// JSON log lines of a server's output.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}
