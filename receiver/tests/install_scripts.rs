//! `scripts/install.sh` and `scripts/uninstall.sh` into a scratch root:
//! the files land where the units and the README expect them, a second
//! install keeps edited settings, and uninstall removes everything but the
//! data, which only `--purge` removes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fleet::workspace_root;

/// Stand-ins for the two release binaries.
fn fake_binaries(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["dcmon-receiver", "dcmon-exporter"] {
        let path = bin.join(program);
        std::fs::write(&path, format!("#!/bin/sh\necho {program}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn script(name: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("sh")
        .arg(workspace_root().join("scripts").join(name))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Every file below `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_upgrade_and_uninstall_in_a_scratch_root() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_binaries(tmp.path());
    let root = tmp.path().join("root");
    let root_arg = root.display().to_string();
    let bin_arg = bin.display().to_string();
    let install = ["--root", &root_arg, "--bin-dir", &bin_arg];

    let (ok, out) = script("install.sh", &install);
    assert!(ok, "{out}");
    assert!(out.contains("/var/lib/dcmon/admin-token"), "{out}");
    let installed = files(&root);
    for expected in [
        "usr/bin/dcmon-receiver",
        "usr/bin/dcmon-exporter",
        "etc/systemd/system/dcmon-receiver.service",
        "etc/systemd/system/dcmon-exporter.service",
        "etc/systemd/system/dcmon-vmalert.service",
        "etc/default/dcmon-receiver",
        "etc/default/dcmon-exporter",
        "usr/share/dcmon/rules/dcmon-alerts.yml",
        "usr/share/dcmon/rules/dcmon-records.yml",
        "usr/share/dcmon/rules/examples/alertmanager.yml",
        "usr/share/dcmon/grafana/provisioning/datasources/dcmon.yaml",
        "usr/share/dcmon/grafana/provisioning/dashboards/dcmon.yaml",
        "usr/share/dcmon/grafana/dashboards/host.json",
    ] {
        assert!(
            installed.iter().any(|f| f == expected),
            "{expected} missing: {installed:#?}"
        );
    }
    assert_eq!(mode(&root.join("usr/bin/dcmon-receiver")), 0o755);
    assert_eq!(
        mode(&root.join("etc/systemd/system/dcmon-exporter.service")),
        0o644
    );
    assert_eq!(
        std::fs::read(root.join("etc/systemd/system/dcmon-receiver.service")).unwrap(),
        std::fs::read(workspace_root().join("systemd/dcmon-receiver.service")).unwrap()
    );
    // The provider's path is where the dashboards were put.
    let provider = std::fs::read_to_string(
        root.join("usr/share/dcmon/grafana/provisioning/dashboards/dcmon.yaml"),
    )
    .unwrap();
    assert!(provider.contains("path: /usr/share/dcmon/grafana/dashboards\n"));

    // Again, over an edited setting: same files, the edit kept.
    let settings = root.join("etc/default/dcmon-receiver");
    std::fs::write(
        &settings,
        "DCMON_RECEIVER_ARGS=\"--storage.retention=14d\"\n",
    )
    .unwrap();
    let (ok, out) = script("install.sh", &install);
    assert!(ok, "{out}");
    assert_eq!(files(&root), installed);
    assert!(std::fs::read_to_string(&settings).unwrap().contains("14d"));

    // Data written by the services stays without --purge.
    std::fs::create_dir_all(root.join("var/lib/dcmon")).unwrap();
    std::fs::write(root.join("var/lib/dcmon/dcmon.db"), "data").unwrap();
    std::fs::create_dir_all(root.join("var/lib/dcmon-exporter")).unwrap();
    std::fs::write(root.join("var/lib/dcmon-exporter/client.key"), "key").unwrap();
    for _ in 0..2 {
        let (ok, out) = script("uninstall.sh", &["--root", &root_arg]);
        assert!(ok, "{out}");
        assert_eq!(
            files(&root),
            [
                "var/lib/dcmon-exporter/client.key",
                "var/lib/dcmon/dcmon.db"
            ]
        );
    }
    let (ok, out) = script("uninstall.sh", &["--root", &root_arg, "--purge"]);
    assert!(ok, "{out}");
    assert_eq!(files(&root), Vec::<String>::new());
}

#[test]
fn install_of_one_program_and_missing_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_binaries(tmp.path());
    let root = tmp.path().join("root");
    let (root_arg, bin_arg) = (root.display().to_string(), bin.display().to_string());
    let (ok, out) = script(
        "install.sh",
        &["--root", &root_arg, "--bin-dir", &bin_arg, "--exporter"],
    );
    assert!(ok, "{out}");
    let installed = files(&root);
    assert!(installed.iter().any(|f| f == "usr/bin/dcmon-exporter"));
    assert!(
        !installed
            .iter()
            .any(|f| f.contains("receiver") || f.starts_with("usr/share")),
        "{installed:#?}"
    );

    std::fs::remove_file(bin.join("dcmon-receiver")).unwrap();
    let other = tmp.path().join("other");
    let other_arg = other.display().to_string();
    let (ok, out) = script("install.sh", &["--root", &other_arg, "--bin-dir", &bin_arg]);
    assert!(!ok, "install without the receiver binary must fail");
    assert!(out.contains("dcmon-receiver is missing"), "{out}");
    assert!(files(&other).is_empty(), "nothing installed on failure");
}
