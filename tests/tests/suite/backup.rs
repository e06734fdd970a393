//! Backup and restore: a backup taken from a server under load is
//! consistent, checks out, refuses damage, and restores into a runtime
//! that has every event acknowledged before the backup began and whose
//! timers fire.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use journey_tests::{Journeyd, enquiry, steps_of};

/// 1 December 2026, 08:00 UTC.
const START_MS: u64 = 1_796_112_000_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[test]
fn a_backup_taken_under_load_restores_every_acknowledged_event_and_its_timers_fire() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start_simulated(data.path(), START_MS);
    journeyd.setup_enquiry_as_shipped();
    let backup = data.path().join("night.backup");
    let backup_arg = backup.to_str().expect("a UTF-8 path");

    // Events acknowledged so far: (event id, instance id).
    let acked: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let (before_backup, backed_up) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("evt-{n}");
                let (status, receipt) = journeyd.send_event(&enquiry(
                    &id,
                    if n % 2 == 0 { "c-ada" } else { "c-grace" },
                    &format!("q-{n}"),
                    "Where is my parcel? Tracking has not moved",
                ));
                assert_eq!(status, 202, "{receipt}");
                let instance = receipt["instances"][0].as_u64().expect("an instance");
                acked.lock().expect("lock").push((id, instance));
            }
        });
        while acked.lock().expect("lock").len() < 40 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let before_backup = acked.lock().expect("lock").clone();
        let backed_up = journeyd.run_cli(["backup", "--to", backup_arg]);
        // A few more after it, which the backup need not hold.
        let after = acked.lock().expect("lock").len();
        while acked.lock().expect("lock").len() < after + 10 {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        (before_backup, backed_up)
    });
    let (ok, output) = backed_up;
    assert!(ok, "{output}");
    assert!(output.contains("backup written to"), "{output}");

    let (ok, output) = journeyd.run_cli(["backup", "verify", backup_arg]);
    assert!(ok && output.contains("a good backup"), "{output}");
    let mut damaged = std::fs::read(&backup).expect("the backup");
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let damaged_path = data.path().join("damaged.backup");
    std::fs::write(&damaged_path, damaged).expect("write");
    let (ok, output) =
        journeyd.run_cli(["backup", "verify", damaged_path.to_str().expect("UTF-8")]);
    assert!(!ok && output.contains("damaged"), "{output}");
    journeyd.terminate(Duration::from_secs(30));

    let restored_dir = tempfile::tempdir().expect("temp dir");
    let restored_data = restored_dir.path().join("data");
    let restored_arg = restored_data.to_str().expect("a UTF-8 path");
    let (ok, output) = journeyd.run_cli(["restore", backup_arg, "--data", restored_arg]);
    assert!(ok && output.contains("restored"), "{output}");
    // Restoring over a store is refused.
    let (ok, output) = journeyd.run_cli(["restore", backup_arg, "--data", restored_arg]);
    assert!(!ok && output.contains("not empty"), "{output}");

    // The tokens are in the backup; the token file is the operator's.
    std::fs::copy(
        data.path().join("admin.token"),
        restored_data.join("admin.token"),
    )
    .expect("copy the admin token");
    let restored = Journeyd::start_simulated(&restored_data, START_MS);
    restored.advance_clock_by(0);
    for (event, instance) in &before_backup {
        let (status, view) = restored.request("GET", &format!("/v1/instances/i-{instance}"), None);
        assert_eq!(
            status, 200,
            "event {event} acknowledged before the backup: {view}"
        );
        assert_eq!(view["trigger_event_id"], event.as_str(), "{view}");
    }
    // Their SLA timers fire on the restored runtime.
    restored.advance_clock_by(2 * DAY_MS);
    for (_, instance) in &before_backup {
        let view = restored.get(&format!("/v1/instances/i-{instance}"));
        assert!(
            steps_of(&view).iter().any(|step| step == "escalate"),
            "the SLA timer of i-{instance} fired after the restore: {view:#}"
        );
    }
}
