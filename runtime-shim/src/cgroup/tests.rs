use super::fs::{CreatedDir, Hierarchy, load_record, parse_mountinfo, save_record};
use super::*;

const BUS: &str = "unix:path=/bus";

fn path(text: &str) -> CgroupPath {
    CgroupPath::parse(text).expect(text)
}

#[test]
fn cgroup_paths_are_absolute_and_plain() {
    assert_eq!(path("/").components().count(), 0);
    assert_eq!(
        path("/a/b.c").components().collect::<Vec<_>>(),
        ["a", "b.c"]
    );
    for (bad, reason) in [
        ("a/b", "not absolute"),
        ("", "not absolute"),
        ("/a//b", "empty"),
        ("/a/../b", "'..'"),
        ("/a/./b", "'.'"),
        ("/a/", "empty"),
        ("/a\0b", "NUL"),
    ] {
        let err = CgroupPath::parse(bad).unwrap_err().to_string();
        assert!(
            err.contains(&format!("'{bad}'")) && err.contains(reason),
            "{err}"
        );
    }
}

#[test]
fn monitor_cgroup_values_and_managers() {
    use CgroupManager::{Cgroupfs, Systemd};
    assert_eq!(MonitorCgroup::parse(""), Ok(MonitorCgroup::Default));
    assert_eq!(MonitorCgroup::parse("pod"), Ok(MonitorCgroup::Pod));
    assert_eq!(
        MonitorCgroup::parse("/m"),
        Ok(MonitorCgroup::Path(path("/m")))
    );
    let slice = MonitorCgroup::parse("system.slice").unwrap();
    assert_eq!(slice, MonitorCgroup::Slice("system.slice".into()));
    for bad in ["relative/x", "x.scope", ".slice", "/a/../b"] {
        assert!(MonitorCgroup::parse(bad).is_err(), "{bad}");
    }
    // CRI-O: cgroupfs takes its systemd default as "", and no other slice.
    assert!(slice.works_with(Cgroupfs) && slice.works_with(Systemd));
    assert!(!MonitorCgroup::Slice("other.slice".into()).works_with(Cgroupfs));
    assert!(!MonitorCgroup::Path(path("/m")).works_with(Systemd));
}

#[test]
fn placement_follows_manager_value_and_pod_parent() {
    use CgroupManager::{Cgroupfs, Systemd};
    let resolve = |manager, value: &str, parent: Option<&str>| {
        let parent = parent.map(|p| CgroupParent::parse(manager, p).unwrap());
        let value = MonitorCgroup::parse(value).unwrap();
        Placement::resolve(manager, &value, parent.as_ref(), "p1", BUS.into())
    };
    let scope = |slice: &str| Placement::Scope {
        bus: BUS.into(),
        unit: "crio-conmon-p1.scope".into(),
        slice: slice.into(),
    };
    assert_eq!(
        resolve(Cgroupfs, "", Some("/k/pod1")).unwrap(),
        Placement::Inherit
    );
    assert_eq!(
        resolve(Cgroupfs, "system.slice", None).unwrap(),
        Placement::Inherit
    );
    assert_eq!(
        resolve(Cgroupfs, "pod", Some("/k/pod1")).unwrap(),
        Placement::Cgroupfs(path("/k/pod1/crio-conmon-p1"))
    );
    assert_eq!(
        resolve(Cgroupfs, "/monitors", None).unwrap(),
        Placement::Cgroupfs(path("/monitors"))
    );
    assert_eq!(resolve(Systemd, "", None).unwrap(), scope("system.slice"));
    assert_eq!(resolve(Systemd, "m.slice", None).unwrap(), scope("m.slice"));
    assert_eq!(
        resolve(Systemd, "pod", Some("k-pod1.slice")).unwrap(),
        scope("k-pod1.slice")
    );

    let err = resolve(Cgroupfs, "pod", None).unwrap_err().to_string();
    assert!(
        err.contains("pod 'p1'") && err.contains("--cgroup-parent"),
        "{err}"
    );
    let err = resolve(Systemd, "/monitors", None).unwrap_err().to_string();
    assert!(
        err.contains("'/monitors'") && err.contains("\"systemd\""),
        "{err}"
    );
    let err = CgroupParent::parse(Systemd, "/k/pod1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("'/k/pod1'") && err.contains("slice"), "{err}");
}

#[test]
fn containers_go_under_the_pod_parent_as_cri_o_names_them() {
    let fs = CgroupParent::parse(CgroupManager::Cgroupfs, "/k/pod1").unwrap();
    assert_eq!(fs.container_cgroups_path("c1"), "/k/pod1/crio-c1");
    let root = CgroupParent::parse(CgroupManager::Cgroupfs, "/").unwrap();
    assert_eq!(root.container_cgroups_path("c1"), "/crio-c1");
    let slice = CgroupParent::parse(CgroupManager::Systemd, "k-pod1.slice").unwrap();
    assert_eq!(slice.container_cgroups_path("c1"), "k-pod1.slice:crio:c1");

    let path_of = |manager, monitor: &str, parent: Option<&CgroupParent>| {
        container_cgroups_path(
            manager,
            &MonitorCgroup::parse(monitor).unwrap(),
            parent,
            "c1",
        )
    };
    let with_parent = path_of(CgroupManager::Cgroupfs, "/m", Some(&fs));
    assert_eq!(with_parent.as_deref(), Some("/k/pod1/crio-c1"));
    // A monitor in a cgroup of its own: containers beside it, not inside.
    let beside = path_of(CgroupManager::Cgroupfs, "/m", None);
    assert_eq!(beside.as_deref(), Some("/crio/crio-c1"));
    assert_eq!(path_of(CgroupManager::Cgroupfs, "", None), None);
    assert_eq!(path_of(CgroupManager::Systemd, "", None), None);
}

/// A cgroup v1 hybrid host's mountinfo: v1 controllers, a co-mounted pair, `name=systemd`,
/// the unified hierarchy, a second mount of memory, one outside /sys/fs/cgroup, and noise.
const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/root rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 22 0:32 /sub /mnt/mem\\040x rw - cgroup cgroup rw,memory
51 31 0:32 / /sys/fs/cgroup/memory-again rw - cgroup cgroup rw,memory
52 31 0:40 /kube /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids,release_agent=/x
";

#[test]
fn hierarchies_come_from_mountinfo_once_each() {
    let found = parse_mountinfo(MOUNTINFO);
    let summary: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|h| {
            (
                h.controllers.as_str(),
                h.mount_point.to_str().unwrap(),
                h.root.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/"),
            ("memory", "/sys/fs/cgroup/memory", "/"),
            ("name=systemd", "/sys/fs/cgroup/systemd", "/"),
            ("unified", "/sys/fs/cgroup/unified", "/"),
            ("pids", "/sys/fs/cgroup/pids", "/kube"),
        ]
    );
    let outside = parse_mountinfo("50 22 0:32 / /mnt/a\\040b rw - cgroup cgroup rw,memory\n");
    assert!(outside.is_empty(), "{outside:?}");
    let escaped =
        parse_mountinfo("50 22 0:32 / /sys/fs/cgroup/a\\040b rw - cgroup cgroup rw,pids\n");
    assert_eq!(
        escaped[0].mount_point,
        std::path::Path::new("/sys/fs/cgroup/a b")
    );
}

#[test]
fn a_cgroup_outside_a_mounted_subtree_is_refused() {
    let pids = Hierarchy {
        controllers: "pids".into(),
        mount_point: "/sys/fs/cgroup/pids".into(),
        root: "/kube".into(),
    };
    let err = pids.relative(&path("/other/x")).unwrap_err().to_string();
    assert!(
        err.contains("/other/x") && err.contains("pids") && err.contains("/kube"),
        "{err}"
    );
    assert_eq!(pids.relative(&path("/kube/a/b")).unwrap(), ["a", "b"]);
}

#[test]
fn records_round_trip_and_refuse_paths_outside_sys_fs_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monitor.cgroups");
    assert_eq!(load_record(&file).unwrap(), []);
    let created = vec![CreatedDir {
        controllers: "cpu,cpuacct".into(),
        mount_point: "/sys/fs/cgroup/cpu,cpuacct".into(),
        path: path("/a/b"),
    }];
    save_record(&file, &created).unwrap();
    assert_eq!(load_record(&file).unwrap(), created);
    std::fs::write(&file, "memory\t/sys/fs/cgroup/../../etc\t/a\n").unwrap();
    let err = load_record(&file).unwrap_err().to_string();
    assert!(
        err.contains("monitor.cgroups") && err.contains("/sys/fs/cgroup"),
        "{err}"
    );
    std::fs::write(&file, "memory\t/sys/fs/cgroup/memory\n").unwrap();
    assert!(
        load_record(&file)
            .unwrap_err()
            .to_string()
            .contains("malformed")
    );
}
