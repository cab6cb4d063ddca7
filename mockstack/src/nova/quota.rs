//! Compute quotas: each project's limits on instances, cores and RAM (Nova's defaults unless configured), and how many instances of a flavor a create may still start.

use axum::http::StatusCode;

use super::flavors::Flavor;
use crate::error::ApiError;

/// Per-project quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub instances: u64,
    pub cores: u64,
    pub ram_mb: u64,
}

/// Nova's default quota: 10 instances, 20 cores, 50 GiB of RAM.
pub const DEFAULT_QUOTA: Quota = Quota { instances: 10, cores: 20, ram_mb: 51200 };

/// One quota resource of a project: what is used, the limit, and what one instance takes.
struct Usage {
    resource: &'static str,
    used: u64,
    limit: u64,
    each: u64,
}

/// How many instances of `flavor` a create asking for `min`..=`max` may start, given the flavors
/// of the project's live servers (`used`): as many as fit up to `max`, or Nova's 403 naming every
/// resource that `min` instances would exceed.
pub fn instances_allowed<'a>(
    used: impl IntoIterator<Item = &'a Flavor>,
    flavor: &Flavor,
    min: u64,
    max: u64,
    quota: Quota,
) -> Result<u64, ApiError> {
    let mine: Vec<&Flavor> = used.into_iter().collect();
    let usage = [
        Usage {
            resource: "cores",
            used: mine.iter().map(|f| f.vcpus as u64).sum(),
            limit: quota.cores,
            each: flavor.vcpus as u64,
        },
        Usage { resource: "instances", used: mine.len() as u64, limit: quota.instances, each: 1 },
        Usage { resource: "ram", used: mine.iter().map(|f| f.ram_mb).sum(), limit: quota.ram_mb, each: flavor.ram_mb },
    ];
    let allowed =
        usage.iter().map(|u| u.limit.saturating_sub(u.used).checked_div(u.each).unwrap_or(u64::MAX)).min().unwrap_or(0);
    if allowed >= max {
        return Ok(max);
    }
    if allowed >= min {
        return Ok(allowed);
    }
    let overs: Vec<&Usage> = usage.iter().filter(|u| u.used + u.each * min > u.limit).collect();
    let join = |f: fn(&Usage, u64) -> String| overs.iter().map(|u| f(u, min)).collect::<Vec<_>>().join(", ");
    let names = join(|u, _| u.resource.to_string());
    Err(ApiError::compute(
        StatusCode::FORBIDDEN,
        format!(
            "Quota exceeded for {names}: Requested {}, but already used {} of {} {names}",
            join(|u, min| (u.each * min).to_string()),
            join(|u, _| u.used.to_string()),
            join(|u, _| u.limit.to_string()),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(vcpus: u32, ram_mb: u64) -> Flavor {
        let mut f = super::super::flavors::devstack_flavors().remove(0);
        f.vcpus = vcpus;
        f.ram_mb = ram_mb;
        f
    }

    #[test]
    fn creates_start_what_fits_or_name_every_exceeded_resource() {
        let small = flavor(2, 2048);
        assert_eq!(instances_allowed([], &small, 1, 3, DEFAULT_QUOTA).unwrap(), 3);
        let used = vec![small.clone(); 8];
        assert_eq!(instances_allowed(&used, &small, 1, 5, DEFAULT_QUOTA).unwrap(), 2, "cores run out first");
        let err = instances_allowed(&used, &small, 3, 5, DEFAULT_QUOTA).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(
            err.message,
            "Quota exceeded for cores, instances: Requested 6, 3, but already used 16, 8 of 20, 10 cores, instances"
        );
        let big = flavor(32, 65536);
        let err = instances_allowed([], &big, 1, 1, DEFAULT_QUOTA).unwrap_err();
        assert_eq!(
            err.message,
            "Quota exceeded for cores, ram: Requested 32, 65536, but already used 0, 0 of 20, 51200 cores, ram"
        );
    }
}
