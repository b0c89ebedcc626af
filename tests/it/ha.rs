//! High availability under faults, with real processes on loopback: a primary, two replicas
//! replicating through a fault proxy, three Sentinels, two coordinators following them.
//!
//! Each scenario runs its control first: the same fault without the protection must lose
//! acknowledged reservations (the checker must see it), or the protected run proves nothing.

use std::time::{Duration, Instant};

use allot_core::store::ack::AckSettings;
use allot_core::store::connection::RedisTarget;
use allot_fixtures::HaStack;

use crate::common::{Api, TestCoordinator};
use crate::history::{History, Outcome, Report, load};

const SITE: &str = "ha";
const RESOURCES: [&str; 4] = ["vans", "pickers", "bikes", "drivers"];
/// Plenty: these trials test durability, not refusals.
const CAPACITY: u64 = 100_000;
const CONCURRENCY: usize = 8;
/// How long the acknowledgement WAIT may take in these trials.
const ACK_TIMEOUT_MS: u64 = 300;
/// How long the trial keeps retrying unknown outcomes and post-failover attempts.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What one trial measured, besides the checker's report.
#[derive(Debug)]
struct Trial {
    report: Report,
    /// From the kill to the first acknowledged reservation after it.
    kill_to_first_ack: Duration,
}

/// Replication paused through the proxy while reservations run, then kill -9 of the primary
/// and a Sentinel failover; then reservations go on, and every unknown outcome is retried
/// with its key. `protected`: acknowledgements wait for one replica and the primary fences
/// itself (the shipped configuration); the control has neither.
async fn pause_then_kill_primary(protected: bool) -> Trial {
    let mut stack = HaStack::start(true).await;
    if !protected {
        let mut connection = stack.primary.connection().expect("primary");
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg(0).query(&mut connection).expect("config");
    }
    let target = RedisTarget::Sentinel { sentinels: stack.sentinel_addresses(), master: "allot".into() };
    let acks = AckSettings { replicas: u32::from(protected), timeout_ms: ACK_TIMEOUT_MS, ..AckSettings::default() };
    let coordinators = [TestCoordinator::start_ha(&target, acks).await, TestCoordinator::start_ha(&target, acks).await];
    let apis: Vec<Api> = coordinators.iter().map(|c| Api::new(&c.base)).collect();
    let counters: Vec<(&str, &str, u64)> = RESOURCES.iter().map(|r| (*r, crate::history::SLOT, CAPACITY)).collect();
    assert_eq!(apis[0].set_capacity(SITE, &counters).await.status, 200);
    let started = Instant::now();
    let mut history = History::default();

    // Healthy replication first.
    history.extend(load(&apis, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.wait_replicas_online(stack.primary.port, 2).await;
    // Replication stalls: nothing new reaches the replicas.
    let proxy = stack.proxy.as_ref().expect("the stack replicates through the proxy");
    proxy.pause_replication();
    let paused = load(&apis, SITE, &RESOURCES, "paused", 60, CONCURRENCY, started).await;
    let acked_paused = paused.iter().filter(|o| matches!(o.outcome, Outcome::Acknowledged(_))).count();
    eprintln!("replication paused: {acked_paused} of {} attempts acknowledged", paused.len());
    history.extend(paused);

    let old = stack.primary_address_port();
    stack.primary.kill();
    let killed_at = started.elapsed();
    let new = stack.wait_failover(old).await;

    // After the failover: keep reserving until some are acknowledged, then retry every unknown
    // outcome with its own key until each resolves.
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    let mut round = 0;
    loop {
        let after = load(&apis, SITE, &RESOURCES, &format!("after{round}"), 16, CONCURRENCY, started).await;
        let acknowledged = after.iter().any(|o| matches!(o.outcome, Outcome::Acknowledged(_)));
        history.extend(after);
        if acknowledged {
            break;
        }
        assert!(Instant::now() < deadline, "no reservation acknowledged after the failover");
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let unknown = history.unknown_keys();
        if unknown.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} outcomes still unknown after the failover", unknown.len());
        for (n, (key, resource)) in unknown.iter().enumerate() {
            let api = &apis[n % apis.len()];
            history.extend([crate::history::attempt(api, SITE, key, resource, started).await]);
        }
    }
    let kill_to_first_ack = history
        .operations
        .iter()
        .filter(|o| o.invoked >= killed_at && matches!(o.outcome, Outcome::Acknowledged(_)))
        .map(|o| o.completed)
        .min()
        .map_or(Duration::MAX, |at| at - killed_at);
    let primary = stack.node(new).expect("the new primary is one of the replicas");
    let report = history.check(&apis[0], SITE, &primary.url()).await;
    eprintln!(
        "ha trial ({}): {report:?}, kill to first acknowledgement {} ms",
        if protected { "protected" } else { "control" },
        kill_to_first_ack.as_millis()
    );
    Trial { report, kill_to_first_ack }
}

/// Scenario 1 and 2: the control (no WAIT, no fencing) loses acknowledged reservations when
/// the primary dies with replication stalled; with acknowledgements on, the same fault loses
/// none, doubles none and oversells nothing, and writes resume after the failover without
/// restarting the coordinators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_nothing_acknowledged_and_the_control_does() {
    let control = pause_then_kill_primary(false).await;
    assert!(control.report.lost > 0, "the control lost nothing, so this scenario tests nothing: {:?}", control.report);
    let protected = pause_then_kill_primary(true).await;
    let report = &protected.report;
    assert!(report.acknowledged > 0, "{report:?}");
    assert_eq!(
        (report.lost, report.doubled, report.oversold, report.inconsistent, report.wrong_items),
        (0, 0, 0, 0, 0),
        "{report:?}"
    );
    assert!(protected.kill_to_first_ack < RECOVERY_TIMEOUT, "{:?}", protected.kill_to_first_ack);
}
