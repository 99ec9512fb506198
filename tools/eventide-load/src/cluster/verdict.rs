//! The verdict of `cluster`: every subscriber's rooms checked, the convergence after
//! each fault, and the report.

use serde_json::{json, Value};

use super::super::report::Report;
use super::super::sequence::{check, convergence, slowest_arrival, Holder};
use super::{secs, Ctx, Measured, Role};

/// Builds the report of a finished run.
pub(super) fn report(ctx: &Ctx, m: Measured) -> Report {
    let a = &ctx.args;
    let Measured {
        subscribe_secs,
        start_us,
        written_us,
        settled_us,
        last,
        faults,
        rest,
        lag,
        rest_errors,
        first_rest_error,
        window,
        hub_cpu,
        tool_cpu,
        machine,
    } = m;
    let (n_subs, each) = (a.subscribers, a.rooms_each.min(a.providers));
    let s = ctx.shared.borrow();
    let mut totals = [0u64; 6]; // expected, received, lost, duplicated, reordered, unexpected
    let mut findings = Vec::new();
    let mut holders = Vec::new();
    let mut base = vec![u64::MAX; a.providers];
    for (i, tracks) in s.tracks.iter().enumerate() {
        for (t, r) in tracks.iter().zip(ctx.rooms_of(i)) {
            let Some(t) = t else { continue };
            base[r] = base[r].min(t.base);
            holders.push(Holder {
                track: t,
                room: r,
                down: &s.down[i],
            });
            let c = check(&t.arrivals, t.base, last[r]);
            let counts = [
                c.expected,
                c.received,
                c.lost.len() as u64,
                c.duplicated.len() as u64,
                c.reordered.len() as u64,
                c.unexpected.len() as u64,
            ];
            totals.iter_mut().zip(counts).for_each(|(x, y)| *x += y);
            if !c.clean() && findings.len() < 20 {
                let change_of = |v: &u64| s.version_of.iter().position(|x| x == v);
                let lost: Vec<Value> = c.lost.iter().take(20).map(|v| json!({"version": v, "change": change_of(v), "acked_s": change_of(v).map(|n| secs(s.acked_us[n], start_us))})).collect();
                findings.push(json!({"subscriber": ctx.global(i), "node": ctx.global(i) % ctx.nodes.len(), "room": format!("provider-{}", a.first_provider + r as u64), "base": t.base, "last": last[r], "lost": lost, "duplicated": &c.duplicated[..c.duplicated.len().min(20)], "reordered": &c.reordered[..c.reordered.len().min(20)], "unexpected": &c.unexpected[..c.unexpected.len().min(20)], "down": s.down[i].iter().map(|&(x, y)| [secs(x, start_us), secs(y, start_us)]).collect::<Vec<_>>()}));
            }
        }
    }
    let never_joined = s.tracks.iter().flatten().filter(|t| t.is_none()).count();
    let mut fault_rows = Vec::new();
    let (mut worst_all, mut worst_connected, mut never_converged, mut worst_near) =
        (0u64, 0u64, 0u64, 0u64);
    // Which change made each version, to find when it was due.
    let mut change_of: Vec<Vec<Option<usize>>> = vec![Vec::new(); a.providers];
    for (n, &v) in s.version_of.iter().enumerate().filter(|(_, &v)| v != 0) {
        let per_room = &mut change_of[n % a.providers];
        if per_room.len() <= v as usize {
            per_room.resize(v as usize + 1, None);
        }
        per_room[v as usize] = Some(n);
    }
    let due = |room: usize, v: u64| {
        let n = change_of[room].get(v as usize).copied().flatten()?;
        Some(start_us + (n as f64 / a.rate * 1e6) as u64)
    };
    for f in &faults {
        // The changes made from the fault's start until one anti-entropy interval
        // (and a margin) after its end: the ones a fault can hold up.
        let (slowest, counted) = slowest_arrival(&holders, due, f.start_us, f.end_us + 3_000_000);
        let targets: Vec<u64> = (0..a.providers)
            .map(|r| {
                let acked = (r..a.changes)
                    .step_by(a.providers)
                    .filter(|&n| s.acked_us[n] != 0 && s.acked_us[n] <= f.end_us);
                let by_version = acked.clone().map(|n| s.version_of[n]).max().unwrap_or(0);
                by_version.max(base[r].min(last[r]) + acked.count() as u64)
            })
            .collect();
        let c = convergence(f.end_us, &targets, &holders);
        worst_all = worst_all.max(c.all_us);
        worst_connected = worst_connected.max(c.connected_us);
        never_converged += c.never;
        fault_rows.push(json!({"at_s": secs(f.start_us, start_us), "end_s": secs(f.end_us, start_us), "redis_reply": f.reply, "versions_due": targets.iter().zip(&base).map(|(t, b)| t.saturating_sub(*b)).sum::<u64>(), "converged_all_ms": c.all_us / 1000, "converged_open_sockets_ms": c.connected_us / 1000, "holders_reconnected_meanwhile": c.reconnected, "holders_never_converged": c.never, "slowest_change_near_fault_ms": slowest / 1000, "changes_near_fault_arrivals": counted}));
        worst_near = worst_near.max(slowest);
    }

    let passed = totals[2] + totals[3] + totals[4] + totals[5] == 0
        && never_joined == 0
        && never_converged == 0
        && settled_us.is_some()
        && (a.role != Role::Write || rest_errors == 0);
    let mut r = Report::new("cluster");
    r.add("hubs", a.hubs.clone())
        .add("role", format!("{:?}", a.role).to_lowercase())
        .add("subscribers", n_subs as u64)
        .add("first_subscriber", a.first_subscriber as u64)
        .add("providers", a.providers as u64)
        .add("rooms_each", each as u64)
        .add_f("subscribe_secs", subscribe_secs, 2)
        .add("changes_planned", a.changes as u64)
        .add(
            "changes_acked",
            s.acked_us.iter().filter(|&&t| t != 0).count() as u64,
        )
        .add("rest_errors", rest_errors)
        .add("first_rest_error", first_rest_error.unwrap_or_default())
        .add_f("rate_per_sec", a.rate, 2)
        .add(
            "writes_through",
            a.write_node
                .map_or_else(|| "alternate".to_owned(), |n| format!("node {n}")),
        )
        .add_f("write_secs", (written_us - start_us) as f64 / 1e6, 3)
        .add("drop_every_secs", a.drop_every_secs)
        .add("drop_jitter", a.drop_jitter)
        .add("drop_for_secs", a.drop_for_secs)
        .add("fault", format!("{:?}", a.fault))
        .add("faults", fault_rows)
        .add("room_versions", last.clone())
        .add("expected", totals[0])
        .add("received", totals[1])
        .add("lost", totals[2])
        .add("duplicated", totals[3])
        .add("reordered", totals[4])
        .add("unexpected", totals[5])
        .add("never_joined", never_joined as u64)
        .add("reconnects", s.reconnects)
        .add(
            "why_down",
            serde_json::to_value(&s.why_down).unwrap_or_default(),
        )
        .add("connect_failures", s.connect_failures)
        .add("join_errors", s.join_errors)
        .add("not_recovered", s.not_recovered)
        .add("first_error", s.first_error.clone().unwrap_or_default())
        .add_latency("rest_write", &rest)
        .add("write_lag_p99_us", lag.percentile(99.0))
        .add("write_lag_max_us", lag.max())
        .add_latency("delivery_live", &s.live)
        .add_latency("delivery_replayed", &s.replay)
        .add_latency("rejoin", &s.rejoin)
        .add(
            "converged_after_last_write_ms",
            settled_us.map_or(Value::Null, |t| {
                Value::from(t.saturating_sub(written_us) / 1000)
            }),
        )
        .add("fault_convergence_max_ms", worst_all / 1000)
        .add(
            "fault_convergence_open_sockets_max_ms",
            worst_connected / 1000,
        )
        .add("slowest_change_near_fault_ms", worst_near / 1000)
        .add("findings", findings)
        .add_f("hub_cpu_pct", hub_cpu as f64 / window / 1e4, 1)
        .add_f("tool_cpu_pct", tool_cpu as f64 / window / 1e4, 1);
    if let Some(m) = machine {
        r.add_f(
            "other_processes_cpu_pct",
            m.saturating_sub(hub_cpu + tool_cpu) as f64 / window / 1e4,
            1,
        );
    }
    r.add("pass", passed);
    r
}
