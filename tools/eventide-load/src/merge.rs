//! `merge`: one result for a `cluster` run split over several processes (see
//! [`split`](super::split)). It reads every subscriber process's ready and arrivals
//! files and the writer's calls file and reports: sockets per node and the connect
//! rate over the whole connect phase (first connect of any process to the last
//! `joinedRoom` of any), each hub's resident memory per socket, and for every change
//! the time from its REST call to the **last** of all its subscribers receiving it,
//! as exact percentiles over the changes, with loss and repeats counted per change
//! and by each process's own check of every subscriber's stream.

use std::path::PathBuf;

use serde_json::Value;

use super::report::Report;
use super::split::{read_json, Arrivals, Calls, Reach, Ready};
use super::stats::exact_percentile;

/// Arguments of `merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Subscribers the run was meant to have, over all processes.
    #[arg(long)]
    subscribers: usize,
    /// A subscriber process's `--ready-file`, once per process.
    #[arg(long = "ready", required = true)]
    ready: Vec<PathBuf>,
    /// A subscriber process's `--changes-file`, once per process.
    #[arg(long = "arrivals", required = true)]
    arrivals: Vec<PathBuf>,
    /// The writer process's `--changes-file`.
    #[arg(long)]
    calls: PathBuf,
    /// `NODE:BEFORE:AFTER`: a hub node's VmRSS in KiB before its first socket and after
    /// every socket joined; once per node.
    #[arg(long = "hub-rss")]
    hub_rss: Vec<String>,
}

/// Subscribers of each room when the run's subscribers are the index ranges
/// `(first, count)` and subscriber i joins `(i + j) % providers` for `j < rooms_each`.
/// Overlapping ranges are an error: two processes would have counted the same sockets.
pub fn audience(
    ranges: &[(usize, usize)],
    providers: usize,
    rooms_each: usize,
) -> Result<Vec<u64>, String> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        if w[0].0 + w[0].1 > w[1].0 {
            return Err(format!(
                "subscriber ranges overlap: {}..{} and {}..{}",
                w[0].0,
                w[0].0 + w[0].1,
                w[1].0,
                w[1].0 + w[1].1
            ));
        }
    }
    let providers = providers.max(1);
    let mut out = vec![0; providers];
    for &(first, count) in ranges {
        for i in first..first + count {
            for j in 0..rooms_each.clamp(1, providers) {
                out[(i + j) % providers] += 1;
            }
        }
    }
    Ok(out)
}

/// One change over every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The REST call was answered with success.
    pub acked: bool,
    /// Subscribers of its room, and how many of them received it, and repeats.
    pub audience: u64,
    pub receivers: u64,
    pub repeats: u64,
    /// From the REST call's start (or from when it was due) to the first and the last
    /// receiving subscriber, when any received it.
    pub to_first_us: Option<u64>,
    pub to_last_us: Option<u64>,
    pub due_to_last_us: Option<u64>,
}

/// Joins the writer's calls with every process's arrivals, change by change.
pub fn outcomes(calls: &Calls, reaches: &[Vec<Reach>], audience: &[u64]) -> Vec<Outcome> {
    calls
        .calls
        .iter()
        .enumerate()
        .map(|(n, call)| {
            let mut all = Reach::default();
            for r in reaches.iter().filter_map(|r| r.get(n)) {
                all.subscribers += r.subscribers;
                all.repeats += r.repeats;
                if r.subscribers > 0 {
                    all.first_us = if all.first_us == 0 {
                        r.first_us
                    } else {
                        all.first_us.min(r.first_us)
                    };
                    all.last_us = all.last_us.max(r.last_us);
                }
            }
            let got = all.subscribers > 0 && call.sent_us > 0;
            Outcome {
                acked: call.acked_us != 0,
                audience: audience.get(call.room).copied().unwrap_or(0),
                receivers: all.subscribers,
                repeats: all.repeats,
                to_first_us: got.then(|| all.first_us.saturating_sub(call.sent_us)),
                to_last_us: got.then(|| all.last_us.saturating_sub(call.sent_us)),
                due_to_last_us: got.then(|| all.last_us.saturating_sub(call.due_us)),
            }
        })
        .collect()
}

/// The changes taken together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub acked: u64,
    /// Acknowledged changes that reached every subscriber of their room.
    pub complete: u64,
    /// Deliveries owed by acknowledged changes that never came, and repeats.
    pub lost: u64,
    pub duplicated: u64,
    /// Per acknowledged change that reached anyone, sorted ascending.
    pub to_first: Vec<u64>,
    pub to_last: Vec<u64>,
    pub due_to_last: Vec<u64>,
}

/// Sums the outcomes; latencies only of acknowledged changes.
pub fn summarize(outcomes: &[Outcome]) -> Summary {
    let mut s = Summary::default();
    for o in outcomes {
        s.duplicated += o.repeats;
        if !o.acked {
            continue;
        }
        s.acked += 1;
        s.lost += o.audience.saturating_sub(o.receivers);
        if o.receivers >= o.audience {
            s.complete += 1;
        }
        s.to_first.extend(o.to_first_us);
        s.to_last.extend(o.to_last_us);
        s.due_to_last.extend(o.due_to_last_us);
    }
    s.to_first.sort_unstable();
    s.to_last.sort_unstable();
    s.due_to_last.sort_unstable();
    s
}

/// Seconds from the first connect of any process to the last join of any, and the
/// sockets per second over them.
pub fn connect_rate(ready: &[Ready]) -> (f64, f64) {
    let start = ready
        .iter()
        .map(|r| r.connect_started_us)
        .min()
        .unwrap_or(0);
    let end = ready.iter().map(|r| r.joined_us).max().unwrap_or(0);
    let sockets: u64 = ready.iter().flat_map(|r| &r.sockets_per_node).sum();
    let secs = end.saturating_sub(start) as f64 / 1e6;
    (
        secs,
        if secs > 0.0 {
            sockets as f64 / secs
        } else {
            0.0
        },
    )
}

/// Parses `NODE:BEFORE_KIB:AFTER_KIB`.
pub fn parse_hub_rss(s: &str) -> Result<(usize, u64, u64), String> {
    let bad = || format!("--hub-rss {s:?}: expected NODE:BEFORE_KIB:AFTER_KIB");
    let mut parts = s
        .split(':')
        .map(|p| p.trim().parse::<u64>().map_err(|_| bad()));
    let (Some(node), Some(before), Some(after), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok((node? as usize, before?, after?))
}

fn add_percentiles(r: &mut Report, prefix: &str, sorted: &[u64]) {
    r.add(&format!("{prefix}_count"), sorted.len() as u64);
    for (p, name) in [(50.0, "p50"), (99.0, "p99"), (100.0, "max")] {
        let v = exact_percentile(sorted, p).map_or(Value::Null, Value::from);
        r.add(&format!("{prefix}_{name}_us"), v);
    }
}

/// Runs `merge`.
pub fn run(args: MergeArgs) -> Result<Report, String> {
    let ready: Vec<Ready> = args
        .ready
        .iter()
        .map(|p| read_json(p))
        .collect::<Result<_, _>>()?;
    let arrivals: Vec<Arrivals> = args
        .arrivals
        .iter()
        .map(|p| read_json(p))
        .collect::<Result<_, _>>()?;
    let calls: Calls = read_json(&args.calls)?;
    let first = ready.first().ok_or("no ready file")?;
    if ready
        .iter()
        .any(|r| (r.providers, r.rooms_each) != (first.providers, first.rooms_each))
        || first.providers != calls.providers
    {
        return Err("the processes disagree on --providers or --rooms-each".into());
    }
    let ranges: Vec<(usize, usize)> = ready
        .iter()
        .map(|r| (r.first_subscriber, r.subscribers))
        .collect();
    let audience = audience(&ranges, first.providers, first.rooms_each)?;
    let nodes = ready
        .iter()
        .map(|r| r.sockets_per_node.len())
        .max()
        .unwrap_or(0);
    let mut per_node = vec![0u64; nodes];
    for r in &ready {
        for (k, n) in r.sockets_per_node.iter().enumerate() {
            per_node[k] += n;
        }
    }
    let joined: u64 = per_node.iter().sum();
    let (connect_secs, connect_rate) = connect_rate(&ready);
    let reaches: Vec<Vec<Reach>> = arrivals.iter().map(|a| a.reach.clone()).collect();
    let s = summarize(&outcomes(&calls, &reaches, &audience));
    let sum = |f: fn(&Arrivals) -> u64| arrivals.iter().map(f).sum::<u64>();
    let checked = [
        sum(|a| a.lost),
        sum(|a| a.duplicated),
        sum(|a| a.reordered),
        sum(|a| a.unexpected),
        sum(|a| a.never_joined),
    ];

    let mut r = Report::new("merge");
    r.add("subscribers_planned", args.subscribers as u64)
        .add("subscriber_processes", ready.len() as u64)
        .add("sockets_joined", joined)
        .add("sockets_per_node", per_node.clone())
        .add_f("connect_secs", connect_secs, 2)
        .add_f("connects_per_sec", connect_rate, 1);
    let mut rss_rows = Vec::new();
    for spec in &args.hub_rss {
        let (node, before, after) = parse_hub_rss(spec)?;
        let sockets = per_node.get(node).copied().unwrap_or(0);
        let per_socket = after.saturating_sub(before) as f64 / sockets.max(1) as f64;
        rss_rows.push(serde_json::json!({"node": node, "sockets": sockets, "rss_before_kib": before, "rss_after_kib": after, "kib_per_socket": (per_socket * 100.0).round() / 100.0}));
    }
    r.add("hubs_rss", rss_rows)
        .add("changes_planned", calls.calls.len() as u64)
        .add("changes_acked", s.acked)
        .add("changes_reaching_all", s.complete)
        .add("room_audience", audience.clone())
        .add_f("rate_per_sec", calls.rate_per_sec, 2);
    add_percentiles(&mut r, "change_to_last", &s.to_last);
    add_percentiles(&mut r, "due_to_last", &s.due_to_last);
    add_percentiles(&mut r, "change_to_first", &s.to_first);
    r.add("lost", s.lost)
        .add("duplicated", s.duplicated)
        .add("checked_lost", checked[0])
        .add("checked_duplicated", checked[1])
        .add("checked_reordered", checked[2])
        .add("checked_unexpected", checked[3])
        .add("never_joined", checked[4])
        .add("reconnects", sum(|a| a.reconnects));
    let passed = joined == args.subscribers as u64
        && s.acked == calls.calls.len() as u64
        && s.complete == s.acked
        && s.lost + s.duplicated == 0
        && checked.iter().all(|&c| c == 0)
        && arrivals.len() == ready.len()
        && arrivals.iter().all(|a| a.pass);
    r.add("pass", passed);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::super::split::{write_json, Call};
    use super::*;

    #[test]
    fn audiences_follow_the_room_rule_over_disjoint_slices() {
        assert_eq!(audience(&[(0, 3), (3, 4)], 1, 1).unwrap(), [7]);
        // Subscribers 0..10 over 4 rooms: 0,4,8 → 0; 1,5,9 → 1; 2,6 → 2; 3,7 → 3.
        assert_eq!(audience(&[(5, 5), (0, 5)], 4, 1).unwrap(), [3, 3, 2, 2]);
        // Two rooms each: subscriber i also joins i + 1.
        assert_eq!(audience(&[(0, 4)], 4, 2).unwrap(), [2, 2, 2, 2]);
        // More rooms each than rooms: each subscriber in every room once.
        assert_eq!(audience(&[(0, 3)], 2, 5).unwrap(), [3, 3]);
        assert!(audience(&[(0, 5), (4, 5)], 1, 1).is_err());
    }

    fn call(room: usize, due: u64, sent: u64, acked: u64) -> Call {
        Call {
            room,
            due_us: due,
            sent_us: sent,
            acked_us: acked,
        }
    }

    fn reach(subscribers: u64, repeats: u64, first: u64, last: u64) -> Reach {
        Reach {
            subscribers,
            repeats,
            first_us: first,
            last_us: last,
        }
    }

    #[test]
    fn each_change_is_timed_to_its_last_subscriber_over_all_processes() {
        let calls = Calls {
            rate_per_sec: 1.0,
            providers: 2,
            calls: vec![
                call(0, 1_000, 1_100, 1_200),
                call(1, 2_000, 2_000, 2_050),
                call(0, 3_000, 3_500, 0),
            ],
        };
        let a = vec![reach(2, 0, 1_300, 1_900), reach(1, 1, 2_400, 2_400)];
        // The second process never saw change 1 and has no entry for change 2.
        let b = vec![reach(1, 0, 1_250, 5_100), Reach::default()];
        let o = outcomes(&calls, &[a, b], &[3, 2]);
        assert_eq!(
            o[0],
            Outcome {
                acked: true,
                audience: 3,
                receivers: 3,
                repeats: 0,
                to_first_us: Some(150),
                to_last_us: Some(4_000),
                due_to_last_us: Some(4_100),
            }
        );
        assert_eq!((o[1].receivers, o[1].repeats), (1, 1));
        assert_eq!(o[1].to_last_us, Some(400));
        assert_eq!((o[2].acked, o[2].to_last_us), (false, None));

        let s = summarize(&o);
        assert_eq!((s.acked, s.complete, s.lost, s.duplicated), (2, 1, 1, 1));
        assert_eq!(s.to_last, [400, 4_000]);
        assert_eq!(s.due_to_last, [400, 4_100]);
        assert_eq!(exact_percentile(&s.to_last, 50.0), Some(400));
        assert_eq!(exact_percentile(&s.to_last, 99.0), Some(4_000));
    }

    #[test]
    fn connect_rate_spans_every_process() {
        let r = |start, end, per_node: Vec<u64>| Ready {
            connect_started_us: start,
            joined_us: end,
            sockets_per_node: per_node,
            ..Ready::default()
        };
        let (secs, rate) = connect_rate(&[
            r(1_000_000, 3_000_000, vec![100, 100]),
            r(1_500_000, 5_000_000, vec![200, 0]),
        ]);
        assert_eq!(secs, 4.0);
        assert_eq!(rate, 100.0);
        assert_eq!(connect_rate(&[]), (0.0, 0.0));
    }

    #[test]
    fn hub_rss_specs_parse() {
        assert_eq!(parse_hub_rss("2:1000:5000"), Ok((2, 1000, 5000)));
        for bad in ["2:1000", "2:1000:5000:1", "x:1:2", ""] {
            assert!(parse_hub_rss(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_reads_the_files_of_a_split_run() {
        let dir = std::env::temp_dir().join(format!("eventide-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut argv = vec![
            "merge".to_owned(),
            "--subscribers".into(),
            "4".into(),
            "--hub-rss".into(),
            "0:1000:1100".into(),
        ];
        for (p, first) in [(0, 0), (1, 2)] {
            let ready = Ready {
                first_subscriber: first,
                subscribers: 2,
                providers: 1,
                rooms_each: 1,
                sockets_per_node: vec![2],
                connect_started_us: 1_000_000,
                joined_us: 2_000_000,
            };
            let arrivals = Arrivals {
                first_subscriber: first,
                subscribers: 2,
                reach: vec![reach(2, 0, 10_100, 10_200 + p)],
                pass: true,
                ..Arrivals::default()
            };
            let (rp, ap) = (dir.join(format!("ready-{p}")), dir.join(format!("arr-{p}")));
            write_json(&rp, &ready).unwrap();
            write_json(&ap, &arrivals).unwrap();
            argv.extend(["--ready".into(), rp.display().to_string()]);
            argv.extend(["--arrivals".into(), ap.display().to_string()]);
        }
        let calls = Calls {
            rate_per_sec: 1.0,
            providers: 1,
            calls: vec![call(0, 10_000, 10_000, 10_050)],
        };
        write_json(&dir.join("calls"), &calls).unwrap();
        argv.extend(["--calls".into(), dir.join("calls").display().to_string()]);

        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            args: MergeArgs,
        }
        let args = <Wrap as clap::Parser>::parse_from(argv).args;
        let r = run(args).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.get("sockets_joined"), Some(&Value::from(4)));
        assert_eq!(r.get("connects_per_sec"), Some(&Value::from(4.0)));
        assert_eq!(r.get("change_to_last_p50_us"), Some(&Value::from(201)));
        assert_eq!(r.get("pass"), Some(&Value::from(true)));
        assert_eq!(r.get("hubs_rss").unwrap()[0]["kib_per_socket"], 25.0);
    }
}
