//! Who owns a GPU compute process, from procfs: the user, the Slurm job
//! and the container, so that on shared bare-metal nodes the memory of a
//! stuck GPU can be traced to a job.
//!
//! The Slurm job id comes from the process's cgroup path (`…/job_<id>/…`,
//! where slurmd places every step under cgroup v1 and v2; the process
//! cannot change it), else from `SLURM_JOB_ID` in its environment (readable
//! by root only). The container id is the 64-hex-digit id in the cgroup
//! path that Docker, containerd, CRI-O, Podman and Kubernetes all put
//! there. Whatever cannot be read is an empty label, never an error: a
//! process may exit between NVML's list and these reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// What procfs says about one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owner {
    /// User name from the passwd file, else the numeric real uid; empty
    /// when the process is gone.
    pub user: String,
    /// Slurm job id; empty outside Slurm.
    pub slurm_job_id: String,
    /// Full container id; empty outside containers.
    pub container_id: String,
}

static SLURM_JOB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/job_([0-9]+)(?:/|$)").expect("a valid pattern"));
static CONTAINER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[/\-])([0-9a-f]{64})(?:\.scope)?(?:/|$)").expect("a valid pattern")
});

/// User names by uid, from a passwd file's text.
pub fn users(passwd: &str) -> HashMap<u32, String> {
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

/// The Slurm job id and container id in a `/proc/<pid>/cgroup` text.
pub fn from_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let mut job = None;
    let mut container = None;
    for line in text.lines() {
        // `hierarchy-id:controllers:path`; the path may hold colons.
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if job.is_none() {
            job = SLURM_JOB.captures(path).map(|c| c[1].to_owned());
        }
        if container.is_none() {
            // The innermost id: a pod's path holds only the container's.
            container = CONTAINER
                .captures_iter(path)
                .last()
                .map(|c| c[1].to_owned());
        }
    }
    (job, container)
}

/// `SLURM_JOB_ID` in a `/proc/<pid>/environ` (NUL-separated).
pub fn from_environ(bytes: &[u8]) -> Option<String> {
    bytes
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"SLURM_JOB_ID="))
        .and_then(|id| std::str::from_utf8(id).ok())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// The owner of `pid` under the procfs root, naming users from `users`.
pub fn owner(procfs: &Path, users: &HashMap<u32, String>, pid: u32) -> Owner {
    let dir = procfs.join(pid.to_string());
    let uid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        });
    let user = uid
        .map(|uid| users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()))
        .unwrap_or_default();
    let (job, container) = std::fs::read_to_string(dir.join("cgroup"))
        .map(|text| from_cgroup(&text))
        .unwrap_or_default();
    let job = job.or_else(|| {
        std::fs::read(dir.join("environ"))
            .ok()
            .and_then(|bytes| from_environ(&bytes))
    });
    Owner {
        user,
        slurm_job_id: job.unwrap_or_default(),
        container_id: container.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";

    #[test]
    fn slurm_jobs_from_cgroup_v1_and_v2() {
        let v1 = "7:devices:/slurm/uid_1000/job_4242/step_0/task_0\n";
        assert_eq!(from_cgroup(v1).0.as_deref(), Some("4242"));
        let v2 = "0::/system.slice/slurmstepd.scope/job_77/step_batch/user/task_0\n";
        assert_eq!(from_cgroup(v2).0.as_deref(), Some("77"));
        assert_eq!(from_cgroup("0::/user.slice/job_x/\n").0, None);
    }

    #[test]
    fn containers_from_docker_containerd_and_kubernetes() {
        for path in [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("12:memory:/docker/{ID}"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"
            ),
            format!("0::/kubepods/besteffort/pod0a1b/{ID}"),
        ] {
            assert_eq!(from_cgroup(&path).1.as_deref(), Some(ID), "{path}");
        }
        assert_eq!(from_cgroup("0::/user.slice/user-1000.slice\n").1, None);
    }

    #[test]
    fn slurm_job_from_the_environment() {
        assert_eq!(
            from_environ(b"PATH=/usr/bin\0SLURM_JOB_ID=981\0HOME=/root\0").as_deref(),
            Some("981")
        );
        assert_eq!(from_environ(b"SLURM_JOB_ID=\0"), None);
        assert_eq!(from_environ(b"SLURM_JOB_ID=1;rm\0"), None);
    }
}
