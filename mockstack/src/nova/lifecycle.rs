//! The server state machine: Nova's vm_state / task_state / power_state vocabulary, the API status derived from them, which states each action accepts, and the timed steps the compute side takes.

use std::time::Duration;

/// Nova's `vm_states`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum VmState {
    Building,
    Active,
    Stopped,
    Error,
}

/// Nova's `task_states` that mockstack goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum TaskState {
    Scheduling,
    BlockDeviceMapping,
    Spawning,
    #[strum(serialize = "powering-off")]
    PoweringOff,
    #[strum(serialize = "powering-on")]
    PoweringOn,
    Rebooting,
    RebootPending,
    RebootStarted,
    RebootingHard,
    RebootPendingHard,
    RebootStartedHard,
    ImageSnapshotPending,
    ImageSnapshot,
    ImagePendingUpload,
    ImageUploading,
    Deleting,
}

impl TaskState {
    /// `task_states.ALLOW_REBOOT`: the task states a hard reboot may interrupt.
    fn allows_hard_reboot(task: Option<TaskState>) -> bool {
        matches!(
            task,
            None | Some(
                TaskState::Rebooting | TaskState::RebootPending | TaskState::RebootStarted | TaskState::RebootingHard
            )
        )
    }
}

/// Nova's `power_state` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Shutdown = 4,
}

/// The API `status` for a vm_state and task_state (`common.status_from_state`).
pub fn status(vm: VmState, task: Option<TaskState>) -> &'static str {
    match (vm, task) {
        (VmState::Active, Some(TaskState::Rebooting | TaskState::RebootPending | TaskState::RebootStarted)) => "REBOOT",
        (
            VmState::Active,
            Some(TaskState::RebootingHard | TaskState::RebootPendingHard | TaskState::RebootStartedHard),
        ) => "HARD_REBOOT",
        (VmState::Active, _) => "ACTIVE",
        (VmState::Building, _) => "BUILD",
        (VmState::Stopped, _) => "SHUTOFF",
        (VmState::Error, _) => "ERROR",
    }
}

/// The vm_states and task_states a `status` filter value selects (`task_and_vm_state_from_status`).
pub fn known_status(status: &str) -> bool {
    matches!(
        status.to_ascii_uppercase().as_str(),
        "ACTIVE"
            | "BUILD"
            | "SHUTOFF"
            | "ERROR"
            | "REBOOT"
            | "HARD_REBOOT"
            | "PASSWORD"
            | "REBUILD"
            | "MIGRATING"
            | "RESIZE"
            | "VERIFY_RESIZE"
            | "REVERT_RESIZE"
            | "PAUSED"
            | "SUSPENDED"
            | "RESCUE"
            | "DELETED"
            | "SOFT_DELETED"
            | "SHELVED"
            | "SHELVED_OFFLOADED"
            | "UNKNOWN"
    )
}

/// Why an action does not fit the instance now (`InstanceInvalidState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidState {
    /// `vm_state`, `task_state` or `launched_at`.
    pub attr: &'static str,
    /// Python `str()` of the offending value (`None` for an unset task state).
    pub state: String,
}

fn vm_state_error(vm: VmState) -> InvalidState {
    InvalidState { attr: "vm_state", state: vm.to_string() }
}

fn task_state_error(task: Option<TaskState>) -> InvalidState {
    InvalidState { attr: "task_state", state: task.map_or("None".into(), |t| t.to_string()) }
}

/// The states an API call is checked against, as `@check_instance_state` checks them.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub vm: VmState,
    pub task: Option<TaskState>,
    pub launched: bool,
}

impl Snapshot {
    fn require(self, vm_ok: &[VmState], task_must_be_none: bool, must_have_launched: bool) -> Result<(), InvalidState> {
        if !vm_ok.contains(&self.vm) {
            return Err(vm_state_error(self.vm));
        }
        if task_must_be_none && self.task.is_some() {
            return Err(task_state_error(self.task));
        }
        if must_have_launched && !self.launched {
            return Err(InvalidState { attr: "launched_at", state: "None".into() });
        }
        Ok(())
    }

    pub fn can_stop(self) -> Result<(), InvalidState> {
        self.require(&[VmState::Active, VmState::Error], true, true)
    }

    pub fn can_start(self) -> Result<(), InvalidState> {
        self.require(&[VmState::Stopped], true, true)
    }

    pub fn can_soft_reboot(self) -> Result<(), InvalidState> {
        self.require(&[VmState::Active], true, true)
    }

    pub fn can_hard_reboot(self) -> Result<(), InvalidState> {
        if ![VmState::Active, VmState::Stopped, VmState::Error].contains(&self.vm) {
            return Err(vm_state_error(self.vm));
        }
        if !TaskState::allows_hard_reboot(self.task) {
            return Err(task_state_error(self.task));
        }
        if !self.launched {
            return Err(InvalidState { attr: "launched_at", state: "None".into() });
        }
        Ok(())
    }

    pub fn can_snapshot(self) -> Result<(), InvalidState> {
        self.require(&[VmState::Active, VmState::Stopped], true, true)
    }

    /// Consoles are refused only while deleting (`reject_instance_state`).
    pub fn can_open_console(self) -> Result<(), InvalidState> {
        if self.task == Some(TaskState::Deleting) {
            return Err(task_state_error(self.task));
        }
        Ok(())
    }
}

/// A step the compute side takes at a moment of virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The scheduler picked the host (or found none).
    Scheduled,
    /// Block devices are ready; the driver starts spawning.
    StartSpawn,
    /// The domain is running: ACTIVE.
    Launched,
    /// The guest powered itself off (an installer finishing); libvirt reports it.
    GuestShutdown {
        run: u64,
    },
    /// Nova's power-state sync calls the stop API for a guest that shut down by itself.
    SyncStop {
        run: u64,
    },
    /// A stop finished (os-stop or the power sync).
    Stopped,
    /// A start finished.
    Started,
    RebootPending {
        hard: bool,
    },
    RebootStarted {
        hard: bool,
    },
    Rebooted,
    SnapshotTaken,
    SnapshotPendingUpload,
    SnapshotUploading,
    SnapshotUploaded,
    /// The compute host finished deleting: the server is gone.
    Deleted,
}

/// A step due at `at` (virtual time since the clock started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub at: Duration,
    pub step: Step,
}

/// How long each compute step takes, in virtual time; about what a devstack takes.
pub mod timing {
    use std::time::Duration;

    pub const SCHEDULE: Duration = Duration::from_secs(1);
    pub const BLOCK_DEVICES: Duration = Duration::from_secs(1);
    pub const SPAWN: Duration = Duration::from_secs(3);
    pub const STOP: Duration = Duration::from_secs(2);
    pub const START: Duration = Duration::from_secs(2);
    /// libvirt delays "stopped" lifecycle events by 15 s before Nova acts on them.
    pub const LIFECYCLE_DELAY: Duration = Duration::from_secs(15);
    pub const REBOOT_STEP: Duration = Duration::from_secs(1);
    pub const SNAPSHOT_STEP: Duration = Duration::from_secs(1);
    pub const DELETE: Duration = Duration::from_secs(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_novas_state_map() {
        assert_eq!(status(VmState::Building, Some(TaskState::Spawning)), "BUILD");
        assert_eq!(status(VmState::Active, Some(TaskState::RebootPendingHard)), "HARD_REBOOT");
        assert_eq!(status(VmState::Active, Some(TaskState::ImageUploading)), "ACTIVE");
        assert_eq!(status(VmState::Stopped, Some(TaskState::PoweringOn)), "SHUTOFF");
        assert_eq!(status(VmState::Active, Some(TaskState::Deleting)), "ACTIVE");
    }

    #[test]
    fn states_read_as_nova_names_them() {
        assert_eq!(VmState::Building.to_string(), "building");
        assert_eq!(TaskState::BlockDeviceMapping.to_string(), "block_device_mapping");
        assert_eq!(TaskState::PoweringOff.to_string(), "powering-off");
        assert_eq!(TaskState::PoweringOn.to_string(), "powering-on");
        assert_eq!(TaskState::RebootStartedHard.to_string(), "reboot_started_hard");
        assert_eq!(TaskState::ImagePendingUpload.to_string(), "image_pending_upload");
    }

    #[test]
    fn checks_report_the_offending_attribute() {
        let active = Snapshot { vm: VmState::Active, task: None, launched: true };
        assert_eq!(active.can_start().unwrap_err(), InvalidState { attr: "vm_state", state: "active".into() });
        let busy = Snapshot { task: Some(TaskState::ImageSnapshot), ..active };
        assert_eq!(busy.can_stop().unwrap_err().state, "image_snapshot");
        assert!(Snapshot { task: Some(TaskState::Rebooting), ..active }.can_hard_reboot().is_ok());
        let building = Snapshot { vm: VmState::Building, task: Some(TaskState::Spawning), launched: false };
        assert_eq!(building.can_snapshot().unwrap_err().attr, "vm_state");
        let error_unlaunched = Snapshot { vm: VmState::Error, task: None, launched: false };
        assert_eq!(error_unlaunched.can_stop().unwrap_err().attr, "launched_at");
    }
}
