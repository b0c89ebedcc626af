//! High availability under faults, with real processes on loopback: a primary, two replicas
//! (replicating through a fault proxy where a scenario needs it), three Sentinels, and two
//! coordinators following them. Faults are real: kill -9, SIGSTOP/SIGCONT, a paused link.
//!
//! Each scenario runs its control first: the same fault without the protection must lose
//! (or double, or stop) what the protected run keeps, and the checker must see it, or the
//! protected run proves nothing. `ALLOT_CHAOS_TRIALS` (default 2; `cargo xtask chaos` sets 20)
//! repeats each protected run.

use std::time::{Duration, Instant};

use allot_core::store::ack::{ACK_LANES, AckSettings};
use allot_core::store::connection::RedisTarget;
use allot_fixtures::coordinator::Output;
use allot_fixtures::{CoordinatorProcess, HaStack, signal};

use crate::common::{Api, TestCoordinator};
use crate::history::{History, Operation, Outcome, Report, acknowledged, attempt, attempt_as, load, missing_at};

const SITE: &str = "ha";
const RESOURCES: [&str; 4] = ["vans", "pickers", "bikes", "drivers"];
/// Plenty: these trials test durability, not refusals.
const CAPACITY: u64 = 100_000;
const CONCURRENCY: usize = 8;
/// How long the acknowledgement WAIT may take in these trials.
const ACK_TIMEOUT_MS: u64 = 300;
/// How long a trial keeps retrying unknown outcomes and post-fault attempts.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Protected trials per scenario unless `ALLOT_CHAOS_TRIALS` says otherwise.
const TRIALS_DEFAULT: usize = 2;
/// The most trials `ALLOT_CHAOS_TRIALS` may ask for.
const TRIALS_MAX: usize = 200;

fn trials() -> usize {
    std::env::var("ALLOT_CHAOS_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(TRIALS_DEFAULT).clamp(1, TRIALS_MAX)
}

/// What one trial measured, besides the checker's report.
#[derive(Debug)]
struct Trial {
    report: Report,
    /// From the fault to the first acknowledged reservation after it.
    fault_to_first_ack: Duration,
}

impl Trial {
    /// One line per run: `run` is "control" or "trial i/n".
    fn print(&self, scenario: &str, run: &str) {
        let r = &self.report;
        let first = if self.fault_to_first_ack == Duration::MAX {
            "none".to_owned()
        } else {
            format!("{} ms", self.fault_to_first_ack.as_millis())
        };
        eprintln!(
            "ha {scenario} ({run}): attempts {}, acknowledged {}, lost {}, doubled {}, oversold {}, \
             inconsistent {}, fault to first acknowledgement {first}",
            r.attempts, r.acknowledged, r.lost, r.doubled, r.oversold, r.inconsistent,
        );
    }

    fn assert_exact(&self) {
        let r = &self.report;
        assert!(r.acknowledged > 0, "{r:?}");
        assert_eq!((r.lost, r.doubled, r.oversold, r.inconsistent, r.wrong_items), (0, 0, 0, 0, 0), "{r:?}");
    }
}

/// The stack, fenced as shipped (`min-replicas-to-write 1`) or not (the controls).
async fn stack(through_proxy: bool, fenced: bool) -> HaStack {
    let stack = HaStack::start(through_proxy).await;
    if !fenced {
        let mut connection = stack.primary.connection().expect("primary");
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg(0).query(&mut connection).expect("config");
    }
    stack
}

fn sentinel_target(stack: &HaStack) -> RedisTarget {
    RedisTarget::Sentinel { sentinels: stack.sentinel_addresses(), master: "allot".into() }
}

fn acks(replicas: u32) -> AckSettings {
    AckSettings { replicas, timeout_ms: ACK_TIMEOUT_MS, ..AckSettings::default() }
}

/// Two in-process coordinators on `target`, and the site's counters set.
async fn coordinators(target: &RedisTarget, acks: AckSettings) -> (Vec<TestCoordinator>, Vec<Api>) {
    let coordinators =
        vec![TestCoordinator::start_ha(target, acks).await, TestCoordinator::start_ha(target, acks).await];
    let apis: Vec<Api> = coordinators.iter().map(|c| Api::new(&c.base)).collect();
    set_capacity(&apis[0]).await;
    (coordinators, apis)
}

async fn set_capacity(api: &Api) {
    let counters: Vec<(&str, &str, u64)> = RESOURCES.iter().map(|r| (*r, crate::history::SLOT, CAPACITY)).collect();
    assert_eq!(api.set_capacity(SITE, &counters).await.status, 200);
}

/// Keeps reserving through `apis` until one is acknowledged.
async fn until_acknowledged(history: &mut History, apis: &[Api], prefix: &str, started: Instant) {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    for round in 0.. {
        let after = load(apis, SITE, &RESOURCES, &format!("{prefix}{round}"), 16, CONCURRENCY, started).await;
        let done = acknowledged(&after) > 0;
        history.extend(after);
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "no reservation acknowledged after the fault");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retries every unknown outcome with its own key until each resolves.
async fn resolve_unknowns(history: &mut History, apis: &[Api], started: Instant) {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let unknown = history.unknown_keys();
        if unknown.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{} outcomes still unknown after the fault", unknown.len());
        for (n, (key, resource)) in unknown.iter().enumerate() {
            let api = &apis[n % apis.len()];
            history.extend([attempt(api, SITE, key, resource, started).await]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn first_ack_after(history: &History, fault: Duration) -> Duration {
    history
        .operations
        .iter()
        .filter(|o| o.invoked >= fault && matches!(o.outcome, Outcome::Acknowledged(_)))
        .map(|o| o.completed)
        .min()
        .map_or(Duration::MAX, |at| at - fault)
}

/// Scenarios 1 and 2: replication paused through the proxy while reservations run, then kill
/// -9 of the primary and a Sentinel failover; reservations go on, and every unknown outcome is
/// retried with its key. `protected`: acknowledgements wait for one replica and the primary
/// fences itself (as shipped); the control has neither.
async fn pause_then_kill_primary(protected: bool) -> Trial {
    let mut stack = stack(true, protected).await;
    let target = sentinel_target(&stack);
    let (_coordinators, apis) = coordinators(&target, acks(u32::from(protected))).await;
    let started = Instant::now();
    let mut history = History::default();

    // Healthy replication first.
    history.extend(load(&apis, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.wait_replicas_online(stack.primary.port, 2).await;
    // Replication stalls: nothing new reaches the replicas.
    stack.proxy.as_ref().expect("the stack replicates through the proxy").pause_replication();
    history.extend(load(&apis, SITE, &RESOURCES, "paused", 60, CONCURRENCY, started).await);

    let old = stack.primary_address_port();
    stack.primary.kill();
    let killed_at = started.elapsed();
    let new = stack.wait_failover(old).await;
    until_acknowledged(&mut history, &apis, "after", started).await;
    resolve_unknowns(&mut history, &apis, started).await;
    let primary = stack.node(new).expect("the new primary is one of the replicas");
    let report = history.check(&apis[0], SITE, &primary.url()).await;
    if protected {
        // `allot events` finds the new primary through the Sentinels and prints its stream.
        let printed = events_through_sentinels(&stack);
        assert_eq!(printed, crate::common::events_at(&primary.url(), SITE).len(), "allot events after the failover");
    }
    Trial { report, fault_to_first_ack: first_ack_after(&history, killed_at) }
}

/// How many events `allot events --redis-sentinels` prints for the site.
fn events_through_sentinels(stack: &HaStack) -> usize {
    let output = std::process::Command::new(crate::common::allot_binary())
        .args(["events", SITE, "--redis-sentinels", &stack.sentinel_addresses().join(",")])
        .env_remove("ALLOT_REDIS_URL")
        .output()
        .expect("allot events");
    assert!(output.status.success(), "allot events: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_nothing_acknowledged_and_the_control_does() {
    let control = pause_then_kill_primary(false).await;
    control.print("primary killed, replication paused", "control");
    assert!(control.report.lost > 0, "the control lost nothing, so this scenario tests nothing: {:?}", control.report);
    let n = trials();
    for trial in 1..=n {
        let protected = pause_then_kill_primary(true).await;
        protected.print("primary killed, replication paused", &format!("trial {trial}/{n}"));
        protected.assert_exact();
        assert!(protected.fault_to_first_ack < RECOVERY_TIMEOUT, "{:?}", protected.fault_to_first_ack);
    }
}

/// What the zombie scenario saw.
#[derive(Debug)]
struct ZombieTrial {
    trial: Trial,
    /// Attempts the zombie's own coordinator made after the zombie resumed.
    zombie_attempts: usize,
    /// How many of them were acknowledged.
    zombie_acknowledged: usize,
}

/// Scenario 3: the primary is frozen (SIGSTOP) until the Sentinels have promoted a replica,
/// then resumed (SIGCONT). One coordinator follows the Sentinels; the other was given the old
/// primary's address directly, as a coordinator cut off from the Sentinels would keep using it,
/// and keeps writing to the zombie. `protected`: acknowledgements wait for one replica and the
/// zombie fences itself; the control has neither, so the zombie acknowledges writes that the
/// Sentinels then discard when they turn it into a replica.
async fn zombie_primary(protected: bool) -> ZombieTrial {
    let stack = stack(false, protected).await;
    let settings = acks(u32::from(protected));
    let following = TestCoordinator::start_ha(&sentinel_target(&stack), settings).await;
    let stale = TestCoordinator::start_ha(&RedisTarget::Standalone { url: stack.primary.url() }, settings).await;
    let apis = vec![Api::new(&following.base), Api::new(&stale.base)];
    set_capacity(&apis[0]).await;
    let started = Instant::now();
    let mut history = History::default();
    history.extend(load(&apis, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.wait_replicas_online(stack.primary.port, 2).await;

    let pid = stack.primary.pid().expect("the primary runs");
    signal(pid, "STOP");
    let stopped_at = started.elapsed();
    let new = stack.wait_failover(stack.primary.port).await;
    until_acknowledged(&mut history, &apis[..1], "failed-over", started).await;
    signal(pid, "CONT");
    // The zombie believes it is still the primary until the Sentinels reconfigure it (they
    // wait failover-timeout, 5 s, first): its stale coordinator writes to it meanwhile.
    let zombie = load(&apis[1..], SITE, &RESOURCES, "zombie", 60, CONCURRENCY, started).await;
    // The refusals above must come from fencing and WAIT, not from a zombie already turned
    // into a replica (READONLY): it must still call itself the primary now.
    let role: Vec<redis::Value> =
        redis::cmd("ROLE").query(&mut stack.primary.connection().expect("the zombie answers")).expect("ROLE");
    assert!(
        matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"),
        "the zombie was reconfigured before its attempts ended: {role:?}"
    );
    let zombie_attempts = zombie.len();
    let zombie_acknowledged = acknowledged(&zombie);
    history.extend(zombie);
    resolve_unknowns(&mut history, &apis[..1], started).await;
    let primary = stack.node(new).expect("the new primary is one of the replicas");
    let report = history.check(&apis[0], SITE, &primary.url()).await;
    ZombieTrial {
        trial: Trial { report, fault_to_first_ack: first_ack_after(&history, stopped_at) },
        zombie_attempts,
        zombie_acknowledged,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_primary_acknowledges_nothing_and_the_control_does() {
    let control = zombie_primary(false).await;
    control.trial.print("zombie primary", "control");
    eprintln!("  control zombie: {} of {} acknowledged", control.zombie_acknowledged, control.zombie_attempts);
    assert!(control.zombie_acknowledged > 0, "the control's zombie acknowledged nothing: {control:?}");
    assert!(control.trial.report.lost > 0, "the control lost nothing: {control:?}");
    let n = trials();
    for trial in 1..=n {
        let protected = zombie_primary(true).await;
        protected.trial.print("zombie primary", &format!("trial {trial}/{n}"));
        eprintln!(
            "  protected zombie: {} of {} acknowledged",
            protected.zombie_acknowledged, protected.zombie_attempts
        );
        assert_eq!(protected.zombie_acknowledged, 0, "{protected:?}");
        protected.trial.assert_exact();
    }
}

/// What the paused-link scenario saw.
#[derive(Debug)]
struct PausedTrial {
    trial: Trial,
    /// Attempts made while replication was paused.
    paused_attempts: usize,
    /// How many of them were acknowledged.
    paused_acknowledged: usize,
    /// Acknowledged while paused, yet absent from a replica at the end of the pause.
    unreplicated: usize,
    /// Unknown outcomes while paused that carried no reservation id.
    without_id: usize,
}

/// Scenario 4: the replication link is paused for longer than the acknowledgement timeout
/// (and than `min-replicas-max-lag`) while reservations run; then it resumes and every unknown
/// outcome is retried with its key. `protected`: acknowledgements wait for one replica; the
/// control's are not, so it acknowledges writes that no replica has.
async fn replication_paused(protected: bool) -> PausedTrial {
    let stack = stack(true, protected).await;
    let (_coordinators, apis) = coordinators(&sentinel_target(&stack), acks(u32::from(protected))).await;
    let started = Instant::now();
    let mut history = History::default();
    history.extend(load(&apis, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.wait_replicas_online(stack.primary.port, 2).await;

    let proxy = stack.proxy.as_ref().expect("the stack replicates through the proxy");
    proxy.pause_replication();
    let paused_at = started.elapsed();
    // Long enough that WAIT times out and the primary's replicas lag past max-lag (1 s).
    let mut paused: Vec<Operation> = Vec::new();
    let pause_until = Instant::now() + Duration::from_millis(ACK_TIMEOUT_MS * 2 + 1_500);
    for round in 0.. {
        paused.extend(load(&apis, SITE, &RESOURCES, &format!("paused{round}"), 16, CONCURRENCY, started).await);
        if Instant::now() >= pause_until {
            break;
        }
    }
    let unreplicated = missing_at(&paused, SITE, &stack.replicas[0].url());
    proxy.resume();
    let paused_attempts = paused.len();
    let paused_acknowledged = acknowledged(&paused);
    let without_id = paused.iter().filter(|o| o.outcome == Outcome::Unknown(None)).count();
    history.extend(paused);
    stack.wait_replicas_online(stack.primary.port, 2).await;
    resolve_unknowns(&mut history, &apis, started).await;
    until_acknowledged(&mut history, &apis, "after", started).await;
    let report = history.check(&apis[0], SITE, &stack.primary.url()).await;
    PausedTrial {
        trial: Trial { report, fault_to_first_ack: first_ack_after(&history, paused_at) },
        paused_attempts,
        paused_acknowledged,
        unreplicated,
        without_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replication_link_gets_503s_with_ids_and_retries_resolve_once() {
    let control = replication_paused(false).await;
    control.trial.print("replication paused", "control");
    eprintln!(
        "  control while paused: {} of {} acknowledged, {} unreplicated",
        control.paused_acknowledged, control.paused_attempts, control.unreplicated
    );
    assert!(control.unreplicated > 0, "the control acknowledged nothing unreplicated: {control:?}");
    let n = trials();
    for trial in 1..=n {
        let protected = replication_paused(true).await;
        protected.trial.print("replication paused", &format!("trial {trial}/{n}"));
        eprintln!(
            "  while paused: {} of {} acknowledged, {} unreplicated, {} without an id",
            protected.paused_acknowledged, protected.paused_attempts, protected.unreplicated, protected.without_id
        );
        assert_eq!((protected.paused_acknowledged, protected.unreplicated), (0, 0), "{protected:?}");
        assert_eq!(protected.without_id, 0, "every 503 names the reservation id: {protected:?}");
        protected.trial.assert_exact();
    }
}

/// What the lost-replica scenario saw.
#[derive(Debug)]
struct ReplicaLostTrial {
    trial: Trial,
    /// Attempts after the kills, and how many were acknowledged.
    after_attempts: usize,
    after_acknowledged: usize,
}

/// Scenario 5: one Sentinel and one replica are killed (-9) under load. `ack_replicas` 1 (as
/// shipped) keeps serving with the replica left; the control asks for 2 and stops, which shows
/// that the kill did take a replica away.
async fn sentinel_and_replica_killed(ack_replicas: u32) -> ReplicaLostTrial {
    let mut stack = stack(false, true).await;
    let (_coordinators, apis) = coordinators(&sentinel_target(&stack), acks(ack_replicas)).await;
    let started = Instant::now();
    let mut history = History::default();
    history.extend(load(&apis, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.sentinels[0].kill();
    stack.replicas[0].kill();
    let killed_at = started.elapsed();
    assert_eq!(stack.sentinels[0].primary_port(), None, "the killed Sentinel still answers");
    // The primary sees the replica's socket close at once; let it notice before measuring.
    stack.wait_replicas_online_exactly(stack.primary.port, 1).await;
    let after = load(&apis, SITE, &RESOURCES, "after", 60, CONCURRENCY, started).await;
    let (after_attempts, after_acknowledged) = (after.len(), acknowledged(&after));
    history.extend(after);
    if ack_replicas == 1 {
        resolve_unknowns(&mut history, &apis, started).await;
    }
    let report = history.check(&apis[0], SITE, &stack.primary.url()).await;
    ReplicaLostTrial {
        trial: Trial { report, fault_to_first_ack: first_ack_after(&history, killed_at) },
        after_attempts,
        after_acknowledged,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_sentinel_and_a_replica_keeps_the_service_and_the_control_stops() {
    let control = sentinel_and_replica_killed(2).await;
    control.trial.print("sentinel and replica killed", "control, acks 2");
    assert_eq!(control.after_acknowledged, 0, "the control kept acknowledging with one replica: {control:?}");
    let n = trials();
    for trial in 1..=n {
        let protected = sentinel_and_replica_killed(1).await;
        protected.trial.print("sentinel and replica killed", &format!("trial {trial}/{n}"));
        assert_eq!(protected.after_acknowledged, protected.after_attempts, "{protected:?}");
        protected.trial.assert_exact();
    }
}

/// Scenario 5, the coordinator: replication is paused so that reservations wait in WAIT, each
/// already written; then the coordinator they went to (the real binary) gets kill -9, and
/// replication resumes. The clients retry on the other coordinator: with their own
/// Idempotency-Key (`protected`) each finds its one reservation; the control retries under a
/// new key, as a client without idempotency would, and books the same customer twice.
async fn coordinator_killed(protected: bool) -> Trial {
    let stack = stack(true, true).await;
    let sentinels = stack.sentinel_addresses().join(",");
    let args: Vec<String> = ["--redis-sentinels", &sentinels, "--ack-replicas", "1", "--ack-timeout-ms", "5000"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut doomed = CoordinatorProcess::start(&crate::common::allot_binary(), None, &args, &[], Output::Discard);
    doomed.ready().await;
    let (_coordinators, survivors) = coordinators(&sentinel_target(&stack), acks(1)).await;
    let doomed_api = Api::new(&doomed.base);
    let started = Instant::now();
    let mut history = History::default();
    history.extend(load(&survivors, SITE, &RESOURCES, "before", 40, CONCURRENCY, started).await);
    stack.wait_replicas_online(stack.primary.port, 2).await;

    let proxy = stack.proxy.as_ref().expect("the stack replicates through the proxy");
    proxy.pause_replication();
    let site_id = crate::common::site_id(SITE);
    let pattern = allot_core::store::keys::reservations_pattern(&site_id);
    let mut connection = stack.primary.connection().expect("primary");
    let count = |connection: &mut redis::Connection| -> usize {
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(connection).expect("KEYS");
        keys.len()
    };
    let before = count(&mut connection);
    // As many attempts as there are acknowledgement lanes: each is written at once and then
    // waits in its lane's WAIT (more would queue unwritten behind busy lanes).
    let in_flight =
        load(std::slice::from_ref(&doomed_api), SITE, &RESOURCES, "in-flight", ACK_LANES, ACK_LANES, started);
    let kill = async {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        while count(&mut connection) < before + ACK_LANES {
            assert!(Instant::now() < deadline, "the in-flight attempts were not written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        doomed.kill();
        started.elapsed()
    };
    let (lost_answers, killed_at) = tokio::join!(in_flight, kill);
    assert!(lost_answers.iter().all(|o| o.outcome == Outcome::Unknown(None)), "{lost_answers:?}");
    history.extend(lost_answers.iter().cloned());
    proxy.resume();
    stack.wait_replicas_online(stack.primary.port, 2).await;
    for (n, operation) in lost_answers.iter().enumerate() {
        let api = &survivors[n % survivors.len()];
        let key = if protected { operation.key.clone() } else { format!("{}-retry", operation.key) };
        history.extend([attempt_as(api, SITE, &key, &operation.key, &operation.resource, started).await]);
    }
    until_acknowledged(&mut history, &survivors, "after", started).await;
    let report = history.check(&survivors[0], SITE, &stack.primary.url()).await;
    Trial { report, fault_to_first_ack: first_ack_after(&history, killed_at) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_s_attempts_resolve_once_by_key_and_the_control_doubles() {
    let control = coordinator_killed(false).await;
    control.print("coordinator killed", "control, new keys");
    assert_eq!(control.report.doubled, ACK_LANES, "the control doubled nothing: {:?}", control.report);
    let n = trials();
    for trial in 1..=n {
        let protected = coordinator_killed(true).await;
        protected.print("coordinator killed", &format!("trial {trial}/{n}"));
        protected.assert_exact();
    }
}
