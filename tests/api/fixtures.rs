//! Fixtures: processes and hooks a test owns. A redis-server on its own port (stopped,
//! paused, restarted or made a replica by the test), a Redis Cluster of 3 masters and 3
//! replicas, `redis-cli`, and a fill hook that holds the first fill of a kind.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use larder::cache::Kind;

use crate::harness::{TestApp, unique};

/// A redis-server a test owns, on its own port, so it can stop, pause or restart it.
pub struct OwnRedis {
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub async fn start(port: u16) -> Self {
        Self::start_with(port, &[]).await
    }

    /// As `start`, keeping its snapshot (`SAVE`) in `dir` and loading it at start.
    pub async fn start_in(port: u16, dir: &std::path::Path) -> Self {
        Self::start_in_with(port, dir, &[]).await
    }

    /// As `start_in`, with more `redis-server` arguments.
    pub async fn start_in_with(port: u16, dir: &std::path::Path, extra: &[&str]) -> Self {
        let dir = dir.display().to_string();
        let mut args = vec!["--dir", &dir, "--dbfilename", "dump.rdb"];
        args.extend_from_slice(extra);
        Self::start_with(port, &args).await
    }

    /// A redis-server replicating `master` (on loopback).
    pub async fn start_replica(port: u16, master: u16) -> Self {
        let master = master.to_string();
        Self::start_with(port, &["--replicaof", "127.0.0.1", &master]).await
    }

    /// A redis-server writing an AOF (`appendfsync always`) under `dir`.
    pub async fn start_aof(port: u16, dir: &std::path::Path) -> Self {
        let dir = dir.display().to_string();
        let args = [
            "--dir",
            &dir,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        Self::start_with(port, &args).await
    }

    pub async fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (it is whenever LARDER_TEST_REDIS_URL is set)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            port,
            child: Some(child),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a Redis that hangs without closing sockets.
    pub fn pause(&self, stopped: bool) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let signal = if stopped { "-STOP" } else { "-CONT" };
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Installs a fill hook that stops the first fill of `kind` until `release` is notified.
pub fn pause_first_fill(
    app: &TestApp,
    kind: Kind,
) -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
    let reached = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let armed = Arc::new(AtomicBool::new(true));
    let (r2, rel2) = (reached.clone(), release.clone());
    app.catalog.hooks().set_before_fill(Some(Arc::new(move |k| {
        let (reached, release, armed) = (r2.clone(), rel2.clone(), armed.clone());
        Box::pin(async move {
            if k == kind && armed.swap(false, Ordering::SeqCst) {
                reached.notify_one();
                release.notified().await;
            }
        })
    })));
    (reached, release)
}

/// A Redis Cluster a test owns: 3 masters and 3 replicas (`--cluster-node-timeout
/// 1500`) on free loopback ports 20000-21999 (each node's bus listens on port + 10000),
/// made by `redis-cli --cluster create`. Killed with the test.
pub struct OwnCluster {
    pub nodes: Vec<OwnRedis>,
    dir: std::path::PathBuf,
}

impl OwnCluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("larder-cluster-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        // Ports 20000-21999 and their bus ports 30000-31999 lie below the kernel's
        // ephemeral range (32768 up, where `OwnRedis::free_port` and clients draw), and
        // a process-wide reservation keeps clusters of tests running at once apart (one
        // cluster's node port could otherwise be another's bus port before it is bound).
        static RESERVED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let ports: Vec<u16> = {
            let mut reserved = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
            let mut ports = Vec::new();
            while ports.len() < 6 {
                let p = rand::random_range(20_000u16..22_000);
                let bus = p + 10_000;
                if !reserved.contains(&p) && !reserved.contains(&bus) && free(p) && free(bus) {
                    reserved.extend([p, bus]);
                    ports.push(p);
                }
            }
            ports
        };
        let mut nodes = Vec::new();
        for &p in &ports {
            let conf = dir.join(format!("nodes-{p}.conf")).display().to_string();
            let (d, rdb) = (dir.display().to_string(), format!("dump-{p}.rdb"));
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                "1500",
                "--dir",
                &d,
                "--dbfilename",
                &rdb,
                // A replica syncs at once (the default waits 5 s for more replicas), so
                // it can take over from the start.
                "--repl-diskless-sync-delay",
                "0",
            ];
            nodes.push(OwnRedis::start_with(p, &args).await);
        }
        let mut create = std::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "cluster create on {ports:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes, dir };
        cluster.wait_ok(std::time::Duration::from_secs(20)).await;
        // Every replica in sync: one that never synced is not allowed to take over.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ports
            .iter()
            .filter(|&&p| cli(p, &["role"]).starts_with("slave"))
            .all(|&p| cli(p, &["info", "replication"]).contains("master_link_status:up"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "replicas did not sync"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        cluster
    }

    /// Waits until every live node reports `cluster_state:ok` and agrees on 3 masters.
    pub async fn wait_ok(&self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let live: Vec<u16> = self.live_ports();
            let ok = live
                .iter()
                .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
                && self.masters().len() == 3;
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster did not settle"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| cli(p, &["role"]).starts_with("master"))
            .collect()
    }

    /// How many keys each live master holds, by port.
    pub fn keys_per_master(&self) -> Vec<(u16, u64)> {
        self.masters()
            .into_iter()
            .map(|p| (p, cli(p, &["dbsize"]).trim().parse().unwrap_or(0)))
            .collect()
    }

    /// SIGKILL the node on `port`.
    pub async fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.stop().await;
        }
    }

    /// fred's cluster URL: one seed node, the others as `node=`.
    pub fn url(&self) -> String {
        let mut ports = self.nodes.iter().map(|n| n.port);
        let first = ports.next().unwrap();
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", rest.join("&"))
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p <port> <args>`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A TCP proxy a test owns, in front of one upstream (an instance's only way to its
/// Redis): `cut(true)` stops moving bytes either way without closing anything, as a
/// network partition looks from both ends; `cut(false)` lets what waited through.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, c.clone()));
                tokio::spawn(pipe(sr, cw, c.clone()));
            }
        });
        Self { port, cut, task }
    }

    pub fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while the proxy is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
