//! A private Redis Cluster: `redis-server --cluster-enabled yes` processes on free
//! ports, joined with `redis-cli --cluster create`, each killed when the cluster is
//! dropped. A test may kill one master (SIGKILL) and watch its replica take over.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A Redis Cluster of its own processes; every one is killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// A free port for a cluster node, its bus port (+10000) free as well; both below
/// the ephemeral range, for the reason [`free_port`](super::free_port) gives.
fn free_cluster_port() -> u16 {
    super::free_port_in(20_000..22_700, &[0, 10_000])
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits until the
    /// cluster says `cluster_state:ok` everywhere (and every replica is in sync).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_cluster_port();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("this test needs redis-server on PATH (apt-get install redis-server)");
            nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server on {} never answered",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_until_ok();
        cluster
    }

    /// The seed nodes, as `EVENTIDE_REDIS_CLUSTER_URLS` takes them.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Runs `redis-cli -p port args…` and returns what it printed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The slot of `name`, as the cluster computes it (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, name: &str) -> u16 {
        let port = self.live_ports()[0];
        self.cli(port, &["CLUSTER", "KEYSLOT", name])
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The port of the master that serves `slot` now, as a live node sees it.
    pub fn master_of(&self, slot: u16) -> Option<u16> {
        let port = self.live_ports()[0];
        let nodes = self.cli(port, &["CLUSTER", "NODES"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                match (ends.next().flatten(), ends.next()) {
                    (Some(from), Some(Some(to))) => (from..=to).contains(&slot),
                    (Some(only), None) => only == slot,
                    _ => false,
                }
            });
            let address = fields[1].split('@').next()?;
            owns.then(|| address.rsplit(':').next()?.parse().ok())?
        })
    }

    /// The ports of every master that serves slots now.
    pub fn masters(&self) -> Vec<u16> {
        let port = self.live_ports()[0];
        let nodes = self.cli(port, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serving = fields.get(2)?.contains("master")
                    && !fields[2].contains("fail")
                    && fields.len() > 8;
                let address = fields[1].split('@').next()?;
                serving.then(|| address.rsplit(':').next()?.parse().ok())?
            })
            .collect()
    }

    /// The port of a replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> Option<u16> {
        let nodes = self.cli(self.live_ports()[0], &["CLUSTER", "NODES"]);
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let port_of = |fields: &Vec<&str>| -> Option<u16> {
            fields
                .get(1)?
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        };
        let master = lines.iter().find(|f| port_of(f) == Some(port))?[0];
        lines
            .iter()
            .find(|f| {
                f.get(2).is_some_and(|flags| flags.contains("slave")) && f.get(3) == Some(&master)
            })
            .and_then(port_of)
    }

    /// The sharded channels `port` serves subscribers of (`PUBSUB SHARDCHANNELS`).
    pub fn shard_channels(&self, port: u16) -> Vec<String> {
        self.cli(port, &["PUBSUB", "SHARDCHANNELS"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Kills the server on `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every live node says `cluster_state:ok` and every live replica is
    /// in sync with its master.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.live_ports().into_iter().all(|port| {
                let info = self.cli(port, &["CLUSTER", "INFO"]);
                let replication = self.cli(port, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && (!replication.contains("role:slave")
                        || replication.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
