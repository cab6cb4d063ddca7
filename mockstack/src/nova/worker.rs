//! The compute manager of the mock: applies the timed steps of every server (scheduling, spawning, power changes, snapshots, deletion) in virtual-time order.

use std::time::Duration;

use super::compute::{self, BuildFailure, BuildSpec};
use super::instance_actions::InstanceAction;
use super::lifecycle::{Pending, PowerState, Step, TaskState, VmState, timing};
use super::servers::{COMPUTE_HOST, Fault, Server, stamp};
use crate::faults::{BuildStep, FaultAction};
use crate::state::AppState;

/// Nova's `sync_power_states` period: how long a skipped power sync waits for the next try.
const POWER_SYNC_INTERVAL: Duration = Duration::from_secs(600);

/// Applies every step due by now, earliest first (steps may schedule further ones).
pub fn run_due(state: &AppState) {
    loop {
        let now = state.clock().elapsed();
        let next = {
            let table = state.nova().servers();
            table
                .live
                .iter()
                .flat_map(|(id, s)| s.pending.iter().map(move |p| (p.at, id.clone(), p.step.clone())))
                .filter(|(at, _, _)| *at <= now)
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        };
        let Some((at, id, step)) = next else { break };
        {
            let mut table = state.nova().servers();
            if let Some(server) = table.live.get_mut(&id)
                && let Some(i) = server.pending.iter().position(|p| p.at == at && p.step == step)
            {
                server.pending.remove(i);
            }
        }
        apply(state, &id, at, step);
    }
}

/// Whether any step is due by now.
pub fn any_due(state: &AppState) -> bool {
    let now = state.clock().elapsed();
    state.nova().servers().live.values().any(|s| s.pending.iter().any(|p| p.at <= now))
}

/// Runs `change` on a live server; `None` if it is gone.
fn with_server<T>(state: &AppState, id: &str, change: impl FnOnce(&mut Server) -> T) -> Option<T> {
    state.nova().servers().live.get_mut(id).map(change)
}

fn last_action<'a>(server: &'a mut Server, name: &str) -> Option<&'a mut InstanceAction> {
    server.actions.iter_mut().rev().find(|a| a.action == name)
}

fn apply(state: &AppState, id: &str, at: Duration, step: Step) {
    let ts = stamp(state, at);
    match step {
        Step::Scheduled => {
            with_server(state, id, |s| {
                s.host = Some(COMPUTE_HOST.into());
                s.task_state = Some(TaskState::BlockDeviceMapping);
                s.updated_at = ts;
                if let Some(a) = last_action(s, "create") {
                    a.begin_event("compute__do_build_and_run_instance", ts);
                }
                s.pending.push(Pending { at: at + timing::BLOCK_DEVICES, step: Step::StartSpawn });
            });
        }
        Step::StartSpawn => {
            if injected_build_fault(state, id, ts, BuildStep::BlockDeviceMapping) {
                return;
            }
            let Some(spec) = with_server(state, id, |s| {
                s.task_state = Some(TaskState::Spawning);
                s.updated_at = ts;
                BuildSpec {
                    instance_uuid: s.id.clone(),
                    db_id: s.db_id,
                    display_name: s.name.clone(),
                    created_at: s.created_at,
                    flavor: s.flavor.clone(),
                    image: s.image.clone(),
                    bdms: s.bdms.clone(),
                    config_drive: s.config_drive,
                    user_id: s.user_id.clone(),
                    user_name: s.system_metadata.get("owner_user_name").cloned().unwrap_or_default(),
                    project_id: s.project_id.clone(),
                    project_name: s.system_metadata.get("owner_project_name").cloned().unwrap_or_default(),
                }
            }) else {
                return;
            };
            let built = compute::build(state, &spec);
            with_server(state, id, |s| match built {
                Ok(domain) => {
                    s.root_device_name = Some(domain.root_device_name.clone());
                    s.compute = Some(domain);
                    s.pending.push(Pending { at: at + timing::SPAWN, step: Step::Launched });
                }
                Err(failure) => {
                    let (message, details) = failure.fault(&s.id);
                    if matches!(failure, BuildFailure::Rescheduled(_)) {
                        s.host = None;
                    }
                    s.vm_state = VmState::Error;
                    s.task_state = None;
                    s.power_state = PowerState::NoState;
                    s.updated_at = ts;
                    if let Some(a) = last_action(s, "create") {
                        a.finish_event("compute__do_build_and_run_instance", ts, Some(&details));
                    }
                    s.fault = Some(Fault { code: 500, message, details, created: ts });
                }
            });
        }
        Step::Launched => {
            if !injected_build_fault(state, id, ts, BuildStep::Spawning) {
                power_on(state, id, at, "create", "compute__do_build_and_run_instance")
            }
        }
        Step::GuestShutdown { run } => {
            let Some((domain, guest)) = with_server(state, id, |s| {
                (s.run == run && s.power_state == PowerState::Running).then(|| (s.compute.clone(), s.guest.clone()))
            })
            .flatten() else {
                return;
            };
            let written = match (&domain, &guest) {
                (Some(domain), Some(guest)) => compute::guest_powered_off(state, domain, guest),
                _ => Ok(()),
            };
            with_server(state, id, |s| {
                s.end_run(at);
                s.power_state = PowerState::Shutdown;
                s.updated_at = ts;
                match written {
                    Ok(()) => {
                        s.pending.push(Pending { at: at + timing::LIFECYCLE_DELAY, step: Step::SyncStop { run } })
                    }
                    Err(e) => fail(s, ts, e),
                }
            });
        }
        Step::SyncStop { run } => {
            with_server(state, id, |s| {
                if s.run != run || s.vm_state != VmState::Active || s.power_state != PowerState::Shutdown {
                    return;
                }
                if s.task_state.is_some() {
                    s.pending.push(Pending { at: at + POWER_SYNC_INTERVAL, step: Step::SyncStop { run } });
                    return;
                }
                // "Instance shutdown by itself. Calling the stop API." (with an admin context).
                s.task_state = Some(TaskState::PoweringOff);
                s.updated_at = ts;
                let mut action = InstanceAction::start("stop", "", None, ts);
                action.begin_event("compute_stop_instance", ts);
                s.actions.push(action);
                s.pending.push(Pending { at: at + timing::STOP, step: Step::Stopped });
            });
        }
        Step::Stopped => {
            with_server(state, id, |s| {
                s.end_run(at);
                s.vm_state = VmState::Stopped;
                s.task_state = None;
                s.power_state = PowerState::Shutdown;
                s.updated_at = ts;
                if let Some(a) = last_action(s, "stop") {
                    a.finish_event("compute_stop_instance", ts, None);
                }
            });
        }
        Step::Started => power_on(state, id, at, "start", "compute_start_instance"),
        Step::RebootPending { hard } => {
            with_server(state, id, |s| {
                s.task_state = Some(if hard { TaskState::RebootPendingHard } else { TaskState::RebootPending });
                s.updated_at = ts;
            });
        }
        Step::RebootStarted { hard } => {
            with_server(state, id, |s| {
                s.task_state = Some(if hard { TaskState::RebootStartedHard } else { TaskState::RebootStarted });
                s.end_run(at);
                s.updated_at = ts;
            });
        }
        Step::Rebooted => power_on(state, id, at, "reboot", "compute_reboot_instance"),
        Step::SnapshotTaken => set_task(state, id, ts, TaskState::ImageSnapshot),
        Step::SnapshotPendingUpload => set_task(state, id, ts, TaskState::ImagePendingUpload),
        Step::SnapshotUploading => {
            set_task(state, id, ts, TaskState::ImageUploading);
            let Some((image_id, properties)) =
                with_server(state, id, |s| (s.snapshot_image.clone(), driver_metadata(s)))
            else {
                return;
            };
            if let Some(image_id) = image_id
                && let Err(e) = compute::begin_snapshot_upload(state, &image_id, "qcow2", &properties)
            {
                fail_snapshot(state, id, ts, &image_id, &e);
            }
        }
        Step::SnapshotUploaded => {
            if !snapshot_held(state, id) {
                finish_snapshot(state, id, ts)
            }
        }
        Step::Deleted => {
            let mut table = state.nova().servers();
            let Some(mut server) = table.live.remove(id) else { return };
            table.console_tokens.forget_server(id);
            drop(table);
            if let Some(domain) = &server.compute
                && let Err(e) = compute::destroy(state, domain)
            {
                // The host could not clean up: the instance stays, in ERROR, as Nova leaves it.
                fail(&mut server, ts, e);
                state.nova().servers().live.insert(id.to_string(), server);
                return;
            }
            if let Some(image_id) = server.snapshot_image.take() {
                // `delete_image_on_error`: the interrupted snapshot's image goes too.
                compute::delete_image(state, &image_id);
            }
            if let Some(a) = last_action(&mut server, "delete") {
                a.finish_event("compute_terminate_instance", ts, None);
            }
            server.compute = None;
            state.nova().servers().deleted.insert(id.to_string(), server);
        }
    }
}

fn set_task(state: &AppState, id: &str, ts: jiff::Timestamp, task: TaskState) {
    with_server(state, id, |s| {
        s.task_state = Some(task);
        s.updated_at = ts;
    });
}

/// Applies an `instance_error` fault rule for `step` if one fires for the instance: it goes to ERROR with the rule's
/// fault, as a build the host gave up on. Whether it did.
fn injected_build_fault(state: &AppState, id: &str, ts: jiff::Timestamp, step: BuildStep) -> bool {
    let Some(server) = state.nova().server(id) else { return false };
    let project_name = server.system_metadata.get("owner_project_name").cloned().unwrap_or_default();
    let Some(firing) = state.faults().decide_build(step, &server.project_id, &project_name, &server.name) else {
        return false;
    };
    let FaultAction::InstanceError { message, .. } = firing.action else { return false };
    let message = message.unwrap_or_else(|| format!("Build of instance {id} aborted: injected by {}", firing.label));
    with_server(state, id, |s| {
        s.power_state = PowerState::NoState;
        s.updated_at = ts;
        if let Some(a) = last_action(s, "create") {
            a.finish_event("compute__do_build_and_run_instance", ts, Some(&message));
        }
        fail(s, ts, message);
    });
    true
}

/// The compute host hit an error it cannot recover from: the instance goes to ERROR with a fault.
fn fail(s: &mut Server, ts: jiff::Timestamp, error: String) {
    s.vm_state = VmState::Error;
    s.task_state = None;
    s.fault = Some(Fault { code: 500, message: error.clone(), details: error, created: ts });
}

/// The domain is started (spawn, start, reboot): the guest boots from its devices as they are now.
fn power_on(state: &AppState, id: &str, at: Duration, action: &str, event: &str) {
    let ts = stamp(state, at);
    let domain = with_server(state, id, |s| s.compute.clone()).flatten();
    let guest = match &domain {
        Some(domain) => compute::power_on(state, domain, ts),
        None => Err(format!("Instance {id} could not be found.")),
    };
    with_server(state, id, |s| {
        s.end_run(at);
        s.updated_at = ts;
        match guest {
            Ok(guest) => {
                s.vm_state = VmState::Active;
                s.task_state = None;
                s.power_state = PowerState::Running;
                s.launched_at.get_or_insert(ts);
                if let Some(a) = last_action(s, action) {
                    a.finish_event(event, ts, None);
                }
                s.begin_run(at, guest);
            }
            Err(e) => {
                s.power_state = PowerState::NoState;
                if let Some(a) = last_action(s, action) {
                    a.finish_event(event, ts, Some(&e));
                }
                fail(s, ts, e);
            }
        }
    });
}

/// What the libvirt driver adds to a snapshot's properties (`_create_snapshot_metadata`).
fn driver_metadata(s: &Server) -> std::collections::BTreeMap<String, String> {
    let mut properties = std::collections::BTreeMap::new();
    properties.insert("image_location".to_string(), "snapshot".to_string());
    properties.insert("image_state".to_string(), "available".to_string());
    properties.insert("owner_id".to_string(), s.project_id.clone());
    if let Some(os_type) = s.system_metadata.get("image_os_type") {
        properties.insert("os_type".to_string(), os_type.clone());
    }
    properties
}

/// `delete_image_on_error`: a failed snapshot's image is removed and the task state cleared.
fn fail_snapshot(state: &AppState, id: &str, ts: jiff::Timestamp, image_id: &str, error: &str) {
    compute::delete_image(state, image_id);
    with_server(state, id, |s| {
        s.task_state = None;
        s.snapshot_image = None;
        s.pending.retain(|p| {
            !matches!(
                p.step,
                Step::SnapshotTaken | Step::SnapshotPendingUpload | Step::SnapshotUploading | Step::SnapshotUploaded
            )
        });
        s.updated_at = ts;
        if let Some(a) = last_action(s, "createImage") {
            a.finish_event("compute_snapshot_instance", ts, Some(error));
        }
    });
}

/// The driver copies the first disk and uploads it; Glance makes the image active.
/// Whether a `snapshot_stuck` fault rule holds the instance's snapshot back forever (its upload never finishes).
fn snapshot_held(state: &AppState, id: &str) -> bool {
    let Some(server) = state.nova().server(id) else { return false };
    let mut names = vec![server.name.clone()];
    if let Some(name) = server.snapshot_image.as_deref().and_then(|i| state.glance().image(i)).and_then(|i| i.name) {
        names.push(name);
    }
    let project_name = server.system_metadata.get("owner_project_name").cloned().unwrap_or_default();
    state.faults().decide_snapshot(&server.project_id, &project_name, names).is_some()
}

fn finish_snapshot(state: &AppState, id: &str, ts: jiff::Timestamp) {
    let Some((domain, image_id)) = with_server(state, id, |s| (s.compute.clone(), s.snapshot_image.clone())) else {
        return;
    };
    let Some(image_id) = image_id else { return };
    let result = match &domain {
        Some(domain) => compute::snapshot_root(state, domain, &image_id).and_then(|path| {
            let uploaded = compute::upload_snapshot(state, &image_id, &path);
            let _ = std::fs::remove_file(&path);
            uploaded
        }),
        None => Err(format!("Instance {id} could not be found.")),
    };
    if let Err(e) = result {
        fail_snapshot(state, id, ts, &image_id, &e);
        return;
    }
    with_server(state, id, |s| {
        s.task_state = None;
        s.snapshot_image = None;
        s.updated_at = ts;
        if let Some(a) = last_action(s, "createImage") {
            a.finish_event("compute_snapshot_instance", ts, None);
        }
    });
}
