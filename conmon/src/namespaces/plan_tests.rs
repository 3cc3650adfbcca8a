use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn request(namespaces: &[Namespace]) -> CreateNamespaces {
    CreateNamespaces {
        namespaces: namespaces.to_vec(),
        base_path: PathBuf::from("/run"),
        pod_id: "pod".into(),
        ..CreateNamespaces::default()
    }
}

fn error(request: CreateNamespaces) -> String {
    Plan::new(request).unwrap_err().to_string()
}

#[test]
fn user_comes_first_and_duplicates_go() {
    let mut with_user = request(&[Namespace::Net, Namespace::User, Namespace::Net]);
    with_user.uid_mappings = vec!["0 1000 1".into(), " 1  2000\t10 ".into()];
    with_user.gid_mappings = vec!["0 1000 1".into()];
    let plan = Plan::new(with_user).unwrap();
    assert_eq!(plan.create, [Namespace::User, Namespace::Net]);
    assert_eq!(plan.uid_map, "0 1000 1\n1 2000 10\n");
    assert_eq!(plan.gid_map, "0 1000 1\n");
    assert_eq!(plan.path(Namespace::Net), PathBuf::from("/run/netns/pod"));
}

#[test]
fn mappings_must_be_three_numbers_and_come_with_a_user_namespace() {
    let mut user = request(&[Namespace::User]);
    assert_eq!(error(user.clone()), "user ID mappings are empty");
    user.uid_mappings = vec!["0 1000 1".into()];
    assert_eq!(error(user.clone()), "group ID mappings are empty");
    for bad in ["0 1000", "0 1000 1 4", "0 -1 1", "0 1000 0", "a b c"] {
        user.gid_mappings = vec![bad.into()];
        assert!(
            error(user.clone()).contains(&format!("'{bad}' is not")),
            "{bad}"
        );
    }
    let mut stray = request(&[Namespace::Net]);
    stray.gid_mappings = vec!["0 0 1".into()];
    assert!(error(stray).contains("no user namespace was requested"));
}

#[test]
fn pod_ids_are_plain_file_names() {
    for bad in ["", "a/b", "..", ".hidden", "a b", "x\0"] {
        let mut bad_id = request(&[]);
        bad_id.pod_id = bad.into();
        assert!(Plan::new(bad_id).is_err(), "{bad:?}");
    }
    let mut good = request(&[]);
    good.pod_id = "3f2a_b-c+d.e".into();
    assert!(Plan::new(good).is_ok());
}

#[test]
fn only_sysctls_of_created_namespaces_are_allowed() {
    let with = |namespaces: &[Namespace], key: &str| {
        let mut r = request(namespaces);
        r.sysctls = BTreeMap::from([(key.to_owned(), "1".to_owned())]);
        Plan::new(r).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(with(&[Namespace::Net], "net.ipv4.ip_forward").is_ok());
    assert!(with(&[Namespace::Ipc], "kernel.shmmax").is_ok());
    assert!(with(&[Namespace::Ipc], "fs.mqueue.msg_max").is_ok());
    assert!(with(&[Namespace::Uts], "kernel.hostname").is_ok());
    assert!(
        with(&[Namespace::Uts], "net.core.somaxconn")
            .unwrap_err()
            .contains("needs a new net")
    );
    assert!(
        with(&[Namespace::Net], "kernel.pid_max")
            .unwrap_err()
            .contains("not namespaced")
    );
    for malformed in ["net..x", "net/ipv4", "net.ipv4.", ""] {
        assert!(
            with(&[Namespace::Net], malformed)
                .unwrap_err()
                .contains("well-formed"),
            "{malformed}"
        );
    }
    let mut newline = request(&[Namespace::Net]);
    newline.sysctls = BTreeMap::from([("net.ipv4.ip_forward".to_owned(), "1\n0".to_owned())]);
    assert!(Plan::new(newline).is_err());
}

#[test]
fn sysctl_keys_become_proc_sys_files() {
    let mut r = request(&[Namespace::Net]);
    r.sysctls = BTreeMap::from([("net.ipv4.ip_forward".to_owned(), "1".to_owned())]);
    let files = Plan::new(r).unwrap().sysctl_files();
    assert_eq!(
        files[0].0.to_str().unwrap(),
        "/proc/sys/net/ipv4/ip_forward"
    );
    assert_eq!(files[0].1, b"1");
}
