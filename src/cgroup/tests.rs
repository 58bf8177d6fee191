use super::chain::Binding;
use super::dir::*;
use super::discover::*;
use super::display::*;
use super::*;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

// ---- Fixed texts through the same line reader ----

/// A file system of fixed texts, read `chunk` bytes at a time.
struct Fake {
    files: Vec<(&'static str, Vec<u8>)>,
    chunk: usize,
}

struct FakeFile {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl Chunks for FakeFile {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Files for Fake {
    type File = FakeFile;
    fn open(&self, path: &CStr) -> Result<FakeFile, FileError> {
        let path = path.to_str().unwrap();
        match self.files.iter().find(|(p, _)| *p == path) {
            Some((_, data)) => Ok(FakeFile {
                data: data.clone(),
                pos: 0,
                chunk: self.chunk,
            }),
            None => Err(FileError::Open(Errno(libc::ENOENT))),
        }
    }
}

type Found = Result<(String, Version, Origin), Unknown>;

/// Discovery over fixed files, the same whatever the read size (1 byte to whole files).
fn discover_in(files: &[(&'static str, &str)]) -> Found {
    let answers = [1, 3, 61, LINE_CAP - 1, LINE_CAP, 1 << 20].map(|chunk| {
        let fake = Fake {
            files: files
                .iter()
                .map(|(p, t)| (*p, t.as_bytes().to_vec()))
                .collect(),
            chunk,
        };
        discover(&fake).map(|c| {
            let dir = String::from_utf8(c.dir().to_vec()).unwrap();
            (dir, c.version(), c.origin())
        })
    });
    for other in &answers[1..] {
        assert_eq!(other, &answers[0]);
    }
    answers[0].clone()
}

fn found(dir: &str, version: Version) -> Found {
    Ok((dir.to_string(), version, Origin::Discovered))
}

const CGROUP: &str = "/proc/self/cgroup";
const MOUNTINFO: &str = "/proc/self/mountinfo";

const HOST_MOUNTS: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
";

#[test]
fn systemd_v2() {
    let mountinfo = format!(
        "{HOST_MOUNTS}25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - \
         cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    );
    let scope = "/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope";
    let dir = format!("/sys/fs/cgroup{scope}");
    let controllers: &'static str = Box::leak(format!("{dir}/cgroup.controllers").into_boxed_str());
    let cgroup = format!("0::{scope}\n");
    assert_eq!(
        discover_in(&[
            (CGROUP, &cgroup),
            (MOUNTINFO, &mountinfo),
            (controllers, "cpu memory pids\n"),
        ]),
        found(&dir, Version::V2)
    );
    // The same cgroup without the memory controller and no v1 hierarchy: v2, pressure only.
    assert_eq!(
        discover_in(&[
            (CGROUP, &cgroup),
            (MOUNTINFO, &mountinfo),
            (controllers, "cpu pids\n"),
        ]),
        Ok((dir, Version::V2, Origin::DiscoveredWithoutMemoryController))
    );
}

#[test]
fn docker_v1_with_the_container_cgroup_bind_mounted() {
    let cgroup = "\
12:pids:/docker/0123abcd
10:memory:/docker/0123abcd
9:cpu,cpuacct:/docker/0123abcd
1:name=systemd:/docker/0123abcd
";
    // The overlay root line runs to several KiB in real containers: skipped, harmless.
    let overlay = format!(
        "600 500 0:60 / / rw,relatime - overlay overlay rw,lowerdir={}\n",
        "/var/lib/docker/overlay2/l/ABCDEFGHIJ:".repeat(100)
    );
    assert!(overlay.len() > LINE_CAP);
    let mountinfo = format!(
        "{overlay}\
650 600 0:61 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
655 650 0:30 /docker/0123abcd /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory
656 650 0:31 /docker/0123abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
"
    );
    assert_eq!(
        discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &mountinfo)]),
        found("/sys/fs/cgroup/memory", Version::V1)
    );
    // A private cgroup namespace: the path is `/`, and so is the mount's root.
    let private = "10:memory:/\n";
    let mountinfo = "655 650 0:30 / /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory";
    assert_eq!(
        discover_in(&[(CGROUP, private), (MOUNTINFO, mountinfo)]),
        found("/sys/fs/cgroup/memory", Version::V1)
    );
}

#[test]
fn k8s_v2_nested() {
    let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice";
    let cgroup = format!("0::{pod}/cri-containerd-9f8e.scope\n");
    // Mounted whole (no cgroup namespace)...
    let dir = format!("/sys/fs/cgroup{pod}/cri-containerd-9f8e.scope");
    let controllers: &'static str = Box::leak(format!("{dir}/cgroup.controllers").into_boxed_str());
    let all = "cpuset cpu io memory hugetlb pids rdma misc\n";
    let whole = "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
    assert_eq!(
        discover_in(&[(CGROUP, &cgroup), (MOUNTINFO, whole), (controllers, all)]),
        found(&dir, Version::V2)
    );
    // ...or from the pod's cgroup down, at a mount point with an escaped space.
    let nested = format!(
        "{HOST_MOUNTS}31 22 0:26 {pod} /sys/fs/cgroup\\040pod rw master:9 - cgroup2 none rw\n"
    );
    let controllers = "/sys/fs/cgroup pod/cri-containerd-9f8e.scope/cgroup.controllers";
    assert_eq!(
        discover_in(&[(CGROUP, &cgroup), (MOUNTINFO, &nested), (controllers, all)]),
        found("/sys/fs/cgroup pod/cri-containerd-9f8e.scope", Version::V2)
    );
}

/// As on the development machine: systemd's `unified` v2 mount holds no memory controller.
#[test]
fn hybrid_uses_v1_memory() {
    let cgroup = "\
9:name=systemd:/
4:memory:/process_api/ffc74ee6
1:cpu:/
0::/
";
    let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    let v1 = found("/sys/fs/cgroup/memory/process_api/ffc74ee6", Version::V1);
    let controllers = "/sys/fs/cgroup/unified/cgroup.controllers";
    assert_eq!(
        discover_in(&[
            (CGROUP, cgroup),
            (MOUNTINFO, mountinfo),
            (controllers, "hugetlb\n")
        ]),
        v1
    );
    // No cgroup.controllers to read: v1 all the same.
    assert_eq!(discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]), v1);
    // Had the unified hierarchy the memory controller, v2 would be preferred.
    assert_eq!(
        discover_in(&[
            (CGROUP, cgroup),
            (MOUNTINFO, mountinfo),
            (controllers, "memory hugetlb\n")
        ]),
        found("/sys/fs/cgroup/unified", Version::V2)
    );
}

#[test]
fn garbage_empty_and_missing_files_give_unknown() {
    let v1_mount = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let garbage = "garbage\n\n::::\n4:memory:relative\nx:memory:/a\n:memory:/a\n\u{0}\u{7f}\n";
    assert_eq!(
        discover_in(&[(CGROUP, garbage), (MOUNTINFO, v1_mount)]),
        Err(Unknown::NotInCgroup)
    );
    assert_eq!(
        discover_in(&[(CGROUP, ""), (MOUNTINFO, v1_mount)]),
        Err(Unknown::NotInCgroup)
    );
    let cgroup = "4:memory:/a\n";
    for mountinfo in [
        "",
        "\n\n",
        "1 2 3\n - cgroup2\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup\n",
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,cpu\n",
        "35 31 0:32 relative /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        "\u{ff}\u{0}garbage - cgroup2 cgroup2 rw\n",
    ] {
        assert_eq!(
            discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
            Err(Unknown::NoMount { long_lines: false }),
            "{mountinfo:?}"
        );
    }
    // The mount line itself too long to read: unknown, and the reason says so.
    let long = format!(
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,{}\n",
        "x".repeat(LINE_CAP)
    );
    assert_eq!(
        discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &long)]),
        Err(Unknown::NoMount { long_lines: true })
    );
    assert_eq!(
        discover_in(&[(MOUNTINFO, v1_mount)]),
        Err(Unknown::ProcCgroup(FileError::Open(Errno(libc::ENOENT))))
    );
    assert_eq!(
        discover_in(&[(CGROUP, cgroup)]),
        Err(Unknown::Mountinfo(FileError::Open(Errno(libc::ENOENT))))
    );
    // A cgroup path longer than a path buffer.
    let deep = format!("4:memory:/{}\n", "d".repeat(PATH_CAP));
    assert_eq!(
        discover_in(&[(CGROUP, &deep), (MOUNTINFO, v1_mount)]),
        Err(Unknown::TooLong)
    );
    // A directory longer than MAX_DIR_LEN once joined to its mount point.
    let deep = format!("4:memory:/{}\n", "d".repeat(MAX_DIR_LEN - 10));
    assert_eq!(
        discover_in(&[(CGROUP, &deep), (MOUNTINFO, v1_mount)]),
        Err(Unknown::TooLong)
    );
}

#[test]
fn a_cgroup_outside_the_mount_root_is_unknown() {
    let cgroup = "10:memory:/other\n";
    let mountinfo = "655 650 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
    assert_eq!(
        discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
        Err(Unknown::OutsideMount)
    );
    // `/docker/abc` does not hold `/docker/abcdef`; a later mount of the whole hierarchy does.
    let cgroup = "10:memory:/docker/abcdef\n";
    assert_eq!(
        discover_in(&[(CGROUP, cgroup), (MOUNTINFO, mountinfo)]),
        Err(Unknown::OutsideMount)
    );
    let both = format!("{mountinfo}700 1 0:30 / /mnt/mem rw - cgroup cg rw,memory\n");
    assert_eq!(
        discover_in(&[(CGROUP, cgroup), (MOUNTINFO, &both)]),
        found("/mnt/mem/docker/abcdef", Version::V1)
    );
    // Outside the cgroup namespace.
    let mountinfo = "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        discover_in(&[(CGROUP, "0::/../sibling\n"), (MOUNTINFO, mountinfo)]),
        Err(Unknown::OutsideMount)
    );
}

#[test]
fn parses_cgroup_lines() {
    let line = |s: &'static str| parse_cgroup_line(s.as_bytes());
    let v2 = |path: &'static str| {
        Some(CgroupLine {
            v2: true,
            memory: false,
            path: path.as_bytes(),
        })
    };
    assert_eq!(line("0::/"), v2("/"));
    assert_eq!(line("0::/a b/c:d"), v2("/a b/c:d"));
    let memory = line("3:cpu,memory,blkio:/a:b").unwrap();
    assert!(memory.memory && !memory.v2 && memory.path == b"/a:b");
    assert!(line("4:memory:/process_api/x").unwrap().memory);
    let systemd = line("1:name=systemd:/").unwrap();
    assert!(!systemd.memory && !systemd.v2);
    assert!(!line("5:memory_x,nomemory:/").unwrap().memory);
    // A v1 hierarchy without controllers is not v2: only ID 0 is.
    assert!(!line("7::/").unwrap().v2);
    for bad in [
        "",
        "0::",
        "0::relative",
        "x::/",
        "-1::/",
        "4:memory",
        ":memory:/",
        "0:/",
    ] {
        assert_eq!(line(bad), None, "{bad}");
    }
}

#[test]
fn parses_mount_lines() {
    let line = |s: &'static str| parse_mount_line(s.as_bytes());
    assert_eq!(
        line("25 24 0:23 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw"),
        Some(MountLine {
            kind: MountKind::V2,
            root: b"/",
            point: b"/sys/fs/cgroup",
        })
    );
    assert_eq!(
        line("35 31 0:32 /a\\040b /m rw - cgroup cgroup rw,cpu,memory"),
        Some(MountLine {
            kind: MountKind::V1Memory,
            root: b"/a\\040b",
            point: b"/m",
        })
    );
    for other in [
        "35 31 0:32 / /m rw - cgroup cgroup rw,cpu",
        "35 31 0:32 / /m rw - cgroup cgroup rw,memory_recursiveprot",
        "35 31 0:32 / /m rw - tmpfs tmpfs rw,memory",
        "35 31 0:32 / /m rw - cgroup cgroup",
        "35 31 0:32 / /m rw shared:1",
        "35 31 0:32 / /m rw",
        "35 31 0:32 / relative rw - cgroup2 cgroup2 rw",
        "",
    ] {
        assert_eq!(line(other), None, "{other}");
    }
}

#[test]
fn joins_mount_point_root_and_path() {
    let join = |point: &str, root: &str, path: &str| {
        join_mount(point.as_bytes(), root.as_bytes(), path.as_bytes())
            .map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
    };
    let ok = |s: &str| Ok(s.to_string());
    assert_eq!(
        join("/sys/fs/cgroup", "/", "/a/b"),
        ok("/sys/fs/cgroup/a/b")
    );
    assert_eq!(join("/sys/fs/cgroup", "/", "/"), ok("/sys/fs/cgroup"));
    assert_eq!(join("/sys/fs/cgroup/", "/", "/a/"), ok("/sys/fs/cgroup/a"));
    assert_eq!(join("/cg", "/docker/abc", "/docker/abc"), ok("/cg"));
    assert_eq!(join("/cg", "/docker/abc/", "/docker/abc/x"), ok("/cg/x"));
    assert_eq!(join("/", "/", "/a"), ok("/a"));
    assert_eq!(join("/", "/", "/"), ok("/"));
    for (root, path) in [
        ("/docker/abc", "/docker/abcdef"),
        ("/docker/abc", "/docker"),
        ("/docker/abc", "/"),
        ("/", "/../x"),
        ("/", "/a/../../x"),
        ("/", "relative"),
    ] {
        assert_eq!(
            join("/cg", root, path),
            Err(Unknown::OutsideMount),
            "{root} {path}"
        );
    }
    let long = format!("/{}", "x".repeat(PATH_CAP));
    assert_eq!(join("/cg", "/", &long), Err(Unknown::TooLong));
}

#[test]
fn unescapes_mountinfo_paths() {
    let un = |s: &str| String::from_utf8(unescape(s.as_bytes()).unwrap().as_bytes().to_vec());
    assert_eq!(un("/a\\040b\\011c\\012d\\134e").unwrap(), "/a b\tc\nd\\e");
    assert_eq!(un("/no\\9escape\\").unwrap(), "/no\\9escape\\");
    assert_eq!(un("/short\\04").unwrap(), "/short\\04");
    assert_eq!(un("/high\\400").unwrap(), "/high\\400");
    // `\000` would put a NUL in a path: refused.
    assert_eq!(unescape(b"/nul\\000").err(), Some(Unknown::TooLong));
}

#[test]
fn reads_lines_through_a_bounded_buffer() {
    let lines = |text: &str, cap: usize, chunk: usize| {
        let mut file = FakeFile {
            data: text.as_bytes().to_vec(),
            pos: 0,
            chunk,
        };
        let mut buf = vec![0u8; cap];
        let mut seen = Vec::new();
        let long = for_each_line(&mut file, &mut buf, |l| {
            seen.push(String::from_utf8(l.to_vec()).unwrap());
            false
        })
        .unwrap();
        (seen, long)
    };
    for chunk in [1, 2, 5, 100] {
        assert_eq!(
            lines("a\nbb\n\nccc", 8, chunk),
            (
                vec!["a".into(), "bb".into(), "".into(), "ccc".into()],
                false
            )
        );
        assert_eq!(lines("", 8, chunk), (vec![], false));
        // A line of 8 bytes or more does not fit with its newline: skipped, flagged.
        assert_eq!(
            lines("a\n0123456789abcdef\nb\n01234567\nc", 8, chunk),
            (vec!["a".into(), "b".into(), "c".into()], true)
        );
        assert_eq!(
            lines("0123456\n", 8, chunk),
            (vec!["0123456".into()], false)
        );
        // Too long and unterminated at the end.
        assert_eq!(lines("a\n0123456789", 8, chunk), (vec!["a".into()], true));
    }
    // Stops when told to.
    let mut file = FakeFile {
        data: b"a\nb\nc\n".to_vec(),
        pos: 0,
        chunk: 1,
    };
    let mut n = 0;
    for_each_line(&mut file, &mut [0u8; 8], |_| {
        n += 1;
        n == 2
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn parses_values() {
    let limit = |s: &str| parse_value(s.as_bytes(), true);
    let usage = |s: &str| parse_value(s.as_bytes(), false);
    assert_eq!(limit("max\n"), Ok(Value::NoLimit));
    assert_eq!(limit("max"), Ok(Value::NoLimit));
    assert_eq!(limit("536870912\n"), Ok(Value::Bytes(512 << 20)));
    assert_eq!(limit("0\n"), Ok(Value::Bytes(0)));
    // v1's unset limit with 4 KiB and 64 KiB pages.
    assert_eq!(limit("9223372036854771712\n"), Ok(Value::NoLimit));
    assert_eq!(limit("9223372036854710272\n"), Ok(Value::NoLimit));
    assert_eq!(limit("4611686018427387904\n"), Ok(Value::NoLimit));
    assert_eq!(
        limit("4611686018427387903\n"),
        Ok(Value::Bytes((1 << 62) - 1))
    );
    assert_eq!(
        usage("9223372036854771712\n"),
        Ok(Value::Bytes(9223372036854771712))
    );
    assert_eq!(usage("12345\n"), Ok(Value::Bytes(12345)));
    assert_eq!(usage("max\n"), Err(Unknown::Malformed));
    for bad in [
        "",
        "\n",
        " 1\n",
        "1 \n",
        "-1\n",
        "1\n\n",
        "12abc\n",
        "MAX\n",
        "1.5\n",
        "99999999999999999999999\n",
        "garbage",
    ] {
        assert_eq!(limit(bad), Err(Unknown::Malformed), "{bad:?}");
        assert_eq!(usage(bad), Err(Unknown::Malformed), "{bad:?}");
    }
    assert!(lists_memory(b"cpuset cpu io memory pids\n"));
    assert!(lists_memory(b"memory"));
    assert!(!lists_memory(b"cpu memoryx hugetlb\n"));
    assert!(!lists_memory(b""));
}

// ---- Fake cgroup directories on disk, rewritten between reads ----

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pagewise-cg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_os_str().as_bytes()
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let _ = std::fs::remove_dir(self.path(name));
        let _ = std::fs::remove_file(self.path(name));
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Replaces `name` by a new file renamed over it (a new inode, as an atomic update does).
    fn replace(&self, name: &str, text: &str) {
        let tmp = self.path(&format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).unwrap();
    }

    fn fifo(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
        let c = std::ffi::CString::new(self.path(name).as_os_str().as_bytes()).unwrap();
        // SAFETY: c is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn dir(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
        std::fs::create_dir(self.path(name)).unwrap();
    }

    fn given(&self) -> CgroupDir {
        from_given(&Os, self.bytes()).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on another thread and fails if it does not finish within 10 s (a FIFO read that
/// blocked would otherwise hang the whole test run).
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a cgroup read hung")
}

const PSI: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

#[test]
fn fake_v2_directory_rewritten_between_reads() {
    let d = TempDir::new("v2");
    d.write("cgroup.controllers", "cpu memory pids\n");
    d.write("memory.max", "max\n");
    d.write("memory.high", "max\n");
    d.write("memory.current", "1234\n");
    d.write("memory.pressure", PSI);
    let cg = d.given();
    assert_eq!(cg.version(), Version::V2);
    assert_eq!(cg.origin(), Origin::Given("cgroup.controllers"));
    assert_eq!(cg.dir(), d.bytes());
    assert_eq!(cg.limit(), None);
    assert!(cg.limit_detail().is_unset());
    assert_eq!(
        cg.limit_detail().to_string(),
        "limit: none (memory.max: no limit, memory.high: no limit)"
    );
    assert_eq!(cg.usage(), Some(1234));

    d.write("memory.high", "1073741824\n");
    assert_eq!(cg.limit(), Some(1 << 30));
    assert_eq!(cg.limit_detail().source().unwrap().knob, Knob::High);
    d.write("memory.max", "536870912\n");
    assert_eq!(cg.limit(), Some(512 << 20));
    assert_eq!(
        cg.limit_detail().to_string(),
        "limit: 512 MiB from memory.max (memory.max: 512 MiB, memory.high: 1 GiB)"
    );
    // Equal: the hard limit is named.
    d.write("memory.high", "536870912\n");
    assert_eq!(cg.limit_detail().source().unwrap().knob, Knob::Max);
    d.write("memory.high", "1073741824\n");
    // Garbage in one file: the other still gives a limit.
    d.write("memory.max", "garbage\n");
    assert_eq!(cg.limit(), Some(1 << 30));
    assert_eq!(cg.read(Knob::Max), Err(Unknown::Malformed));
    d.write("memory.max", &"9".repeat(100));
    assert_eq!(cg.read(Knob::Max), Err(Unknown::Malformed));
    d.remove("memory.high");
    assert_eq!(cg.limit(), None);
    assert!(!cg.limit_detail().is_unset());
    assert_eq!(
        cg.limit_detail().to_string(),
        "limit: unknown (memory.max: holds no number of bytes, memory.high: cannot be opened \
         (ENOENT, no such file))"
    );
    // Replaced by a rename: the new file is read.
    d.replace("memory.max", "2097152\n");
    assert_eq!(cg.limit(), Some(2 << 20));
    d.replace("memory.max", "3145728\n");
    assert_eq!(cg.limit(), Some(3 << 20));
    // A FIFO without a writer in place of memory.max: no hang, unknown.
    d.fifo("memory.max");
    let (max, limit) = within_deadline(move || (cg.read(Knob::Max), cg.limit()));
    assert_eq!(
        max,
        Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO)))
    );
    assert_eq!(limit, None);
    d.dir("memory.max");
    assert_eq!(
        cg.read(Knob::Max),
        Err(Unknown::File(FileError::NotRegular(libc::S_IFDIR)))
    );
    d.write("memory.max", "4194304");
    assert_eq!(cg.limit(), Some(4 << 20));

    // Usage.
    d.write("memory.current", "-5\n");
    assert_eq!(cg.usage(), None);
    assert_eq!(cg.usage_detail().value, Err(Unknown::Malformed));
    d.remove("memory.current");
    assert_eq!(cg.usage(), None);
    d.write("memory.current", "99\n");
    assert_eq!(cg.usage(), Some(99));

    // The pressure file: lent from the cgroup, checked at each call.
    let p = cg.pressure_file().unwrap();
    assert_eq!(
        p.to_bytes(),
        d.path("memory.pressure").as_os_str().as_bytes()
    );
    d.remove("memory.pressure");
    assert_eq!(
        cg.pressure_file_detail(),
        Err(Unknown::File(FileError::Open(Errno(libc::ENOENT))))
    );
    d.fifo("memory.pressure");
    let p = within_deadline(move || cg.pressure_file_detail().map(|_| ()));
    assert_eq!(p, Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO))));
    d.write("memory.pressure", PSI);
    assert!(cg.pressure_file().is_some());
}

#[test]
fn fake_v1_directory_rewritten_between_reads() {
    let d = TempDir::new("v1");
    d.write("memory.limit_in_bytes", "9223372036854771712\n");
    d.write("memory.usage_in_bytes", "4096\n");
    let cg = d.given();
    assert_eq!(cg.version(), Version::V1);
    assert_eq!(cg.origin(), Origin::Given("memory.limit_in_bytes"));
    assert_eq!(cg.limit(), None);
    assert!(cg.limit_detail().is_unset());
    assert_eq!(cg.usage(), Some(4096));
    assert_eq!(cg.pressure_file_detail(), Err(Unknown::NotV2));
    d.write("memory.limit_in_bytes", "268435456\n");
    assert_eq!(cg.limit(), Some(256 << 20));
    assert_eq!(
        cg.limit_detail().to_string(),
        "limit: 256 MiB from memory.limit_in_bytes (memory.limit_in_bytes: 256 MiB)"
    );
    d.write("memory.limit_in_bytes", "9223372036854710272\n");
    assert_eq!(cg.limit(), None);
    d.write("memory.limit_in_bytes", "garbage");
    assert_eq!(cg.limit(), None);
    assert_eq!(
        cg.limit_detail().readings[0].unwrap().value,
        Err(Unknown::Malformed)
    );
    d.remove("memory.limit_in_bytes");
    assert_eq!(cg.limit(), None);
    d.fifo("memory.limit_in_bytes");
    let limit = within_deadline(move || cg.limit_detail());
    assert_eq!(
        limit.readings[0].unwrap().value,
        Err(Unknown::File(FileError::NotRegular(libc::S_IFIFO)))
    );
    d.replace("memory.limit_in_bytes", "1048576\n");
    assert_eq!(cg.limit(), Some(1 << 20));
    d.write("memory.usage_in_bytes", "\n");
    assert_eq!(cg.usage(), None);
}

#[test]
fn the_version_of_a_given_directory_comes_from_its_files() {
    let d = TempDir::new("infer");
    assert_eq!(
        from_given(&Os, d.bytes()).err(),
        Some(Unknown::NoMemoryFiles)
    );
    let missing = d.path("no-such-dir");
    assert_eq!(
        from_given(&Os, missing.as_os_str().as_bytes()).err(),
        Some(Unknown::NoMemoryFiles)
    );
    d.write("memory.usage_in_bytes", "1\n");
    assert_eq!(d.given().version(), Version::V1);
    d.write("memory.current", "1\n");
    assert_eq!(d.given().origin(), Origin::Given("memory.current"));
    assert_eq!(d.given().version(), Version::V2);
    d.write("memory.limit_in_bytes", "1\n");
    assert_eq!(d.given().version(), Version::V1);
    // A FIFO is there, even if it cannot be read: v2.
    d.fifo("memory.max");
    assert_eq!(d.given().origin(), Origin::Given("memory.max"));
    // A trailing slash is dropped.
    let mut slash = d.bytes().to_vec();
    slash.extend_from_slice(b"//");
    assert_eq!(from_given(&Os, &slash).unwrap().dir(), d.bytes());
    let long = vec![b'/'; PATH_CAP];
    assert_eq!(from_given(&Os, &long).err(), Some(Unknown::TooLong));
}

// ---- Resolution once per process ----

fn leaked_slot() -> &'static Slot {
    Box::leak(Box::new(Slot::new()))
}

fn a_cgroup(dir: &str) -> Result<CgroupDir, Unknown> {
    CgroupDir::new(dir.as_bytes(), Version::V2, Origin::Given("memory.max"))
}

#[test]
fn a_slot_resolves_once_and_answers_for_its_key_only() {
    let slot = leaked_slot();
    let first = slot.resolve(b"/a", || a_cgroup("/a")).cgroup().unwrap();
    let again = slot.resolve(b"/a", || panic!("resolved twice"));
    assert!(core::ptr::eq(again.cgroup().unwrap(), first));
    assert!(matches!(
        slot.resolve(b"/b", || panic!("resolved twice")),
        Resolution::Unknown(Unknown::OtherPath)
    ));
    // Unknown is final too.
    let slot = leaked_slot();
    let r = slot.resolve(b"", || Err(Unknown::NotInCgroup));
    assert!(matches!(r, Resolution::Unknown(Unknown::NotInCgroup)) && r.is_final());
    assert!(matches!(
        slot.resolve(b"", || panic!("resolved twice")),
        Resolution::Unknown(Unknown::NotInCgroup)
    ));
}

#[test]
fn a_thread_that_finds_the_resolution_under_way_does_not_wait() {
    let slot = leaked_slot();
    slot.state.store(RESOLVING, Ordering::Relaxed);
    let r = slot.resolve(b"", || panic!("must not resolve"));
    assert!(matches!(r, Resolution::Pending) && !r.is_final() && r.cgroup().is_none());
    // A fork child: the resolving thread is gone, the next call resolves.
    slot.after_fork();
    assert!(slot.resolve(b"", || a_cgroup("/x")).cgroup().is_some());
    slot.after_fork();
    assert!(slot
        .resolve(b"", || panic!("resolved twice"))
        .cgroup()
        .is_some());

    // Racing threads: one resolves, the others get the answer or Pending, never a wait.
    let slot = leaked_slot();
    let calls: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let r = slot.resolve(b"/r", || {
                    calls.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                    a_cgroup("/r")
                });
                r.cgroup().map(|c| c as *const CgroupDir as usize)
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let found = slot
        .resolve(b"/r", || panic!("resolved twice"))
        .cgroup()
        .unwrap();
    for a in answers.into_iter().flatten() {
        assert_eq!(a, found as *const CgroupDir as usize);
    }
}

#[test]
fn resolves_settings() {
    assert!(matches!(resolution(CgroupSetting::None), Resolution::Off));
    let long: &'static CStr = Box::leak(
        std::ffi::CString::new(vec![b'/'; MAX_DIR_LEN + 1])
            .unwrap()
            .into_boxed_c_str(),
    );
    assert!(matches!(
        resolution(CgroupSetting::Path(long)),
        Resolution::Unknown(Unknown::TooLong)
    ));
    // The only test that resolves a given directory in this binary (GIVEN is process-wide).
    let d = TempDir::new("given");
    d.write("memory.max", "max\n");
    d.write("memory.high", "max\n");
    d.write("memory.current", "1\n");
    let path: &'static CStr = Box::leak(
        std::ffi::CString::new(d.bytes())
            .unwrap()
            .into_boxed_c_str(),
    );
    let cg = resolution(CgroupSetting::Path(path)).cgroup().unwrap();
    assert_eq!(cg.version(), Version::V2);
    assert!(core::ptr::eq(
        resolution(CgroupSetting::Path(path)).cgroup().unwrap(),
        cg
    ));
    // Rewritten while "the program runs": the static cgroup reads the files afresh.
    d.write("memory.high", "8388608\n");
    assert_eq!(cg.limit(), Some(8 << 20));
    let other: &'static CStr = c"/sys/fs/cgroup";
    assert!(matches!(
        resolution(CgroupSetting::Path(other)),
        Resolution::Unknown(Unknown::OtherPath)
    ));
    let shown = resolution(CgroupSetting::Path(path)).to_string();
    assert!(
        shown.starts_with("cgroup v2 /") && shown.ends_with("(given; it has memory.max)"),
        "{shown}"
    );
}

/// The machine's real cgroup, checked against `/proc/self/cgroup` as read by std. Reads
/// only: never creates, moves or writes a cgroup.
#[test]
fn finds_this_process_cgroup() {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let memory_path = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        (id != "0" && controllers.split(',').any(|c| c == "memory")).then(|| path.to_string())
    });
    let v2_path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(String::from));
    let r = resolution(CgroupSetting::Auto);
    let Some(cg) = r.cgroup() else {
        assert!(
            memory_path.is_none() && v2_path.is_none(),
            "{r}, but /proc/self/cgroup is:\n{text}"
        );
        return;
    };
    eprintln!("this process: {cg}");
    let dir = std::str::from_utf8(cg.dir()).unwrap().to_string();
    let expected = match cg.version() {
        Version::V1 => memory_path.clone().expect("v1, so a memory line"),
        Version::V2 => v2_path.clone().expect("v2, so a 0:: line"),
    };
    assert!(
        dir.ends_with(expected.trim_end_matches('/')),
        "{dir} does not end with {expected}"
    );
    assert!(std::path::Path::new(&dir).is_dir(), "{dir}");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).ok();
    let number = |name: &str| -> Option<u64> {
        let t = read(name)?;
        let n = t.trim().parse().ok()?;
        (n < NO_LIMIT_FROM).then_some(n)
    };
    let expected_limit = match cg.version() {
        Version::V1 => number("memory.limit_in_bytes"),
        Version::V2 => match (number("memory.max"), number("memory.high")) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    };
    if cg.version() == Version::V1 {
        assert!(read("memory.limit_in_bytes").is_some());
        assert_eq!(cg.pressure_file_detail(), Err(Unknown::NotV2));
    }
    let limit = cg.limit_detail();
    let usage = cg.usage_detail();
    eprintln!(
        "this process: {limit}; usage {usage}; pressure {:?}",
        cg.pressure_file_detail()
    );
    assert_eq!(limit.bytes(), expected_limit);
    if cg.origin() != Origin::DiscoveredWithoutMemoryController {
        let usage = usage.bytes().expect("usage readable");
        assert!(usage > 0 && usage < 1 << 50, "{usage}");
    }
    assert!(core::ptr::eq(
        resolution(CgroupSetting::Auto).cgroup().unwrap(),
        cg
    ));
    let start = std::time::Instant::now();
    let again = discover(&Os).unwrap();
    eprintln!("this process: discovery again took {:?}", start.elapsed());
    assert_eq!(again.dir(), cg.dir());
}

#[test]
fn shows_sizes_and_reasons() {
    assert_eq!(Size(100).to_string(), "100 bytes");
    assert_eq!(Size(1024).to_string(), "1 KiB");
    assert_eq!(Size(1536).to_string(), "1.5 KiB (1536 bytes)");
    assert_eq!(Size(512 << 20).to_string(), "512 MiB");
    assert_eq!(
        Size(u64::MAX).to_string(),
        "16.0 EiB (18446744073709551615 bytes)"
    );
    assert_eq!(
        Resolution::Unknown(Unknown::NoMount { long_lines: true }).to_string(),
        "cgroup unknown: /proc/self/mountinfo mounts neither the process's cgroup v2 \
         hierarchy nor its v1 memory hierarchy (lines longer than 2048 bytes were skipped)"
    );
    assert_eq!(
        Unknown::ProcCgroup(FileError::NotRegular(libc::S_IFIFO)).to_string(),
        "/proc/self/cgroup is a FIFO, not a regular file"
    );
    assert_eq!(
        Reading {
            knob: Knob::High,
            value: Err(Unknown::File(FileError::Read(Errno(libc::EOPNOTSUPP))))
        }
        .to_string(),
        "memory.high: cannot be read (EOPNOTSUPP, PSI disabled here)"
    );
    let cg = CgroupDir::new(b"/sys/fs/cgroup/a b", Version::V1, Origin::Discovered).unwrap();
    assert_eq!(
        cg.to_string(),
        "cgroup v1 (memory controller) /sys/fs/cgroup/a b (from /proc/self/cgroup and \
         /proc/self/mountinfo)"
    );
}

// ---- The chain walked up for limits (issue #19) ----

/// The directories of the chain of the cgroup discovered from fixed files, own first.
fn chain_dirs_of(files: &[(&'static str, &str)]) -> Vec<String> {
    let fake = Fake {
        files: files
            .iter()
            .map(|(p, t)| (*p, t.as_bytes().to_vec()))
            .collect(),
        chunk: 61,
    };
    let c = discover(&fake).unwrap();
    (0..c.levels())
        .map(|l| String::from_utf8(c.level_dir(l).unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn discovery_walks_up_to_the_mount_point_and_no_further() {
    let pod = "/kubepods.slice/kubepods-pod1a2b.slice";
    let cgroup = format!("0::{pod}/cri-containerd-9f8e.scope\n");
    let all = "cpuset cpu io memory hugetlb pids rdma misc\n";
    // Mounted whole: up to the root of the hierarchy.
    let whole = "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
    let controllers: &'static str = Box::leak(
        format!("/sys/fs/cgroup{pod}/cri-containerd-9f8e.scope/cgroup.controllers")
            .into_boxed_str(),
    );
    assert_eq!(
        chain_dirs_of(&[(CGROUP, &cgroup), (MOUNTINFO, whole), (controllers, all)]),
        [
            format!("/sys/fs/cgroup{pod}/cri-containerd-9f8e.scope"),
            format!("/sys/fs/cgroup{pod}"),
            "/sys/fs/cgroup/kubepods.slice".to_string(),
            "/sys/fs/cgroup".to_string(),
        ]
    );
    // Mounted from the pod down (a namespace): the pod's cgroup is the highest visible.
    let nested = format!("{HOST_MOUNTS}31 22 0:26 {pod} /sys/fs/cgroup rw - cgroup2 none rw\n");
    let controllers = "/sys/fs/cgroup/cri-containerd-9f8e.scope/cgroup.controllers";
    assert_eq!(
        chain_dirs_of(&[(CGROUP, &cgroup), (MOUNTINFO, &nested), (controllers, all)]),
        ["/sys/fs/cgroup/cri-containerd-9f8e.scope", "/sys/fs/cgroup"]
    );
    // The process in the root of the mount: its own directory only.
    let at_root = "0::/\n";
    assert_eq!(
        chain_dirs_of(&[
            (CGROUP, at_root),
            (MOUNTINFO, whole),
            ("/sys/fs/cgroup/cgroup.controllers", all)
        ]),
        ["/sys/fs/cgroup"]
    );
    // A v2 hierarchy mounted at `/` (some minimal containers).
    let slash = "30 22 0:26 / / rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        chain_dirs_of(&[
            (CGROUP, "0::/a/b\n"),
            (MOUNTINFO, slash),
            ("/a/b/cgroup.controllers", all)
        ]),
        ["/a/b", "/a", "/"]
    );
}

#[test]
fn a_top_that_is_not_an_ancestor_is_ignored() {
    let c = a_cgroup("/sys/fs/cgroup/ab/c").unwrap();
    assert_eq!(c.with_top(b"/sys/fs/cgroup/a").levels(), 1);
    assert_eq!(c.with_top(b"/other").levels(), 1);
    assert_eq!(c.with_top(b"/sys/fs/cgroup/ab/").levels(), 2);
    assert_eq!(c.with_top(b"/sys/fs/cgroup/ab/c").levels(), 1);
    // At most MAX_LEVELS directories, however deep.
    let deep = "/x".repeat(40);
    let c = a_cgroup(&deep).unwrap().with_top(b"/");
    assert_eq!(c.levels(), super::chain::MAX_LEVELS);
}

/// A fake v2 tree on disk: `root` (the parent) holding `child`, both with the v2 files.
struct Tree {
    parent: TempDir,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let parent = TempDir::new(name);
        parent.dir("child");
        for d in ["", "child/"] {
            parent.write(&format!("{d}cgroup.controllers"), "cpu memory pids\n");
            parent.write(&format!("{d}memory.max"), "max\n");
            parent.write(&format!("{d}memory.high"), "max\n");
        }
        parent.write("memory.current", "300\n");
        parent.write("child/memory.current", "100\n");
        Tree { parent }
    }

    fn child(&self) -> CgroupDir {
        from_given(&Os, self.parent.path("child").as_os_str().as_bytes()).unwrap()
    }
}

#[test]
fn a_given_v2_directory_walks_up_while_its_parents_are_cgroups() {
    let t = Tree::new("tree");
    let c = t.child();
    assert_eq!(
        c.levels(),
        2,
        "the child and the fake tree's top, not the temp dir"
    );
    assert_eq!(c.level_dir(1), Some(t.parent.bytes()));
    // No limit anywhere: the child's own usage.
    let chain = c.chain();
    assert_eq!(
        (chain.binding(), chain.bytes(), chain.usage_level()),
        (Binding::None, None, 0)
    );
    assert_eq!(c.usage_at(0).bytes(), Some(100));
    // A limit on the parent only binds, and usage is the parent's.
    t.parent.replace("memory.max", "1073741824\n");
    let chain = c.chain();
    assert_eq!(chain.binding(), Binding::Level(1));
    assert_eq!(chain.bytes(), Some(1 << 30));
    assert_eq!(c.usage_at(chain.usage_level()).bytes(), Some(300));
    // memory.high on the parent, lower still.
    t.parent.replace("memory.high", "805306368\n");
    assert_eq!(c.chain().bytes(), Some(768 << 20));
    assert_eq!(c.chain().lowest.unwrap().1.knob, Knob::High);
    // A lower limit on the child binds there.
    t.parent.replace("child/memory.max", "536870912\n");
    let chain = c.chain();
    assert_eq!(
        (chain.binding(), chain.bytes()),
        (Binding::Level(0), Some(512 << 20))
    );
    // A tie goes to the parent, whose usage includes the child's.
    t.parent.replace("child/memory.max", "805306368\n");
    assert_eq!(c.chain().binding(), Binding::Level(1));
    // Removed everywhere: no limit again.
    for f in ["memory.max", "memory.high", "child/memory.max"] {
        t.parent.replace(f, "max\n");
    }
    assert_eq!(c.chain().bytes(), None);
    // A parent file that cannot be read limits nothing; the child's own still counts.
    t.parent.fifo("memory.max");
    t.parent.replace("child/memory.high", "1048576\n");
    let chain = within_deadline(move || c.chain());
    assert_eq!(
        (chain.binding(), chain.bytes()),
        (Binding::Level(0), Some(1 << 20))
    );
    // Shown for verbose.
    let shown = ChainReport(&c).to_string();
    assert!(shown.starts_with("limit binds at "), "{shown}");
    assert!(shown.contains("chain walked up: "), "{shown}");
    assert!(shown.contains(", then "), "{shown}");
}

#[test]
fn a_given_directory_whose_parent_is_no_cgroup_is_read_alone() {
    let d = TempDir::new("alone");
    d.write("memory.max", "4096\n");
    let c = d.given();
    assert_eq!(c.levels(), 1);
    assert_eq!(c.chain().binding(), Binding::Level(0));
    // A v1 parent above a v2 directory is not the same hierarchy.
    let t = TempDir::new("mixed");
    t.write("memory.limit_in_bytes", "4096\n");
    t.dir("child");
    t.write("child/memory.max", "max\n");
    let c = from_given(&Os, t.path("child").as_os_str().as_bytes()).unwrap();
    assert_eq!(c.levels(), 1);
}

const V1_STAT: &str = "cache 12148736\nrss 1806336\nrss_huge 0\nmapped_file 102400\n\
                       hierarchical_memory_limit 268435456\n\
                       hierarchical_memsw_limit 9223372036854771712\ntotal_cache 12148736\n";

#[test]
fn v1_reads_the_hierarchical_limit_from_memory_stat() {
    let t = TempDir::new("v1tree");
    t.dir("child");
    for d in ["", "child/"] {
        t.write(
            &format!("{d}memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        t.write(&format!("{d}memory.usage_in_bytes"), "1000\n");
    }
    t.write("memory.usage_in_bytes", "5000\n");
    t.write("child/memory.stat", V1_STAT);
    let c = from_given(&Os, t.path("child").as_os_str().as_bytes()).unwrap();
    assert_eq!((c.version(), c.levels()), (Version::V1, 2));
    // Lower than every visible limit: set above the highest visible directory, whose usage is
    // the estimate.
    let chain = c.chain();
    assert_eq!(
        (chain.binding(), chain.bytes()),
        (Binding::Above, Some(256 << 20))
    );
    assert_eq!(chain.usage_level(), 1);
    assert_eq!(c.usage_at(1).bytes(), Some(5000));
    assert!(
        ChainReport(&c).to_string().contains("binds above"),
        "{}",
        ChainReport(&c)
    );
    // The parent's own limit, equal to it: the parent binds.
    t.replace("memory.limit_in_bytes", "268435456\n");
    assert_eq!(c.chain().binding(), Binding::Level(1));
    // Rewritten while running: raised, then removed.
    t.replace(
        "child/memory.stat",
        &V1_STAT.replace("268435456", "134217728"),
    );
    assert_eq!(
        (c.chain().binding(), c.chain().bytes()),
        (Binding::Above, Some(128 << 20))
    );
    t.replace("memory.limit_in_bytes", "9223372036854771712\n");
    t.replace(
        "child/memory.stat",
        &V1_STAT.replace("268435456", "9223372036854771712"),
    );
    assert_eq!(
        (c.chain().binding(), c.chain().bytes()),
        (Binding::None, None)
    );
    // A memory.stat without the key, garbage, missing: the visible limits only.
    t.replace("child/memory.limit_in_bytes", "4096\n");
    for text in ["cache 1\nrss 2\n", "hierarchical_memory_limit lots\n", ""] {
        t.replace("child/memory.stat", text);
        let chain = c.chain();
        assert_eq!(
            chain.hierarchical.unwrap().value,
            Err(Unknown::Malformed),
            "{text:?}"
        );
        assert_eq!(
            (chain.binding(), chain.bytes()),
            (Binding::Level(0), Some(4096))
        );
    }
    t.remove("child/memory.stat");
    assert_eq!(c.chain().bytes(), Some(4096));
    // A line longer than the buffer is skipped, the key after it still found.
    let long = format!("{} 1\nhierarchical_memory_limit 8192\n", "x".repeat(300));
    t.write("child/memory.stat", &long);
    assert_eq!(c.chain().hierarchical.unwrap().bytes(), Some(8192));
}

/// The machine's real cgroup (v1 on the development machine), read as it is: the chain goes up
/// to the mount point, `hierarchical_memory_limit` is the one `memory.stat` shows, and the limit
/// is the lowest on the chain. Reads only.
#[test]
fn the_real_chain_is_read_as_it_is() {
    let Some(cg) = resolution(CgroupSetting::Auto).cgroup() else {
        return;
    };
    let chain = cg.chain();
    eprintln!("this process: {}", ChainReport(cg));
    // What one walk costs (the soft limit makes one at most every 25 ms, 10 ms in the
    // background thread under a limit).
    let mut times: Vec<Duration> = (0..101)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(cg.chain());
            start.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "this process: {} directories walked, median {:?} per walk",
        chain.levels, times[50]
    );
    let top = std::str::from_utf8(cg.level_dir(chain.levels - 1).unwrap()).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.lines().any(|l| l.split(' ').nth(4) == Some(top)),
        "the chain's top {top} is no mount point"
    );
    let number = |dir: &[u8], name: &str| -> Option<u64> {
        let p = format!("{}/{name}", std::str::from_utf8(dir).unwrap());
        let n: u64 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
        (n < NO_LIMIT_FROM).then_some(n)
    };
    let mut lowest: Option<u64> = None;
    for level in 0..chain.levels {
        let d = cg.level_dir(level).unwrap();
        let names: &[&str] = match cg.version() {
            Version::V1 => &["memory.limit_in_bytes"],
            Version::V2 => &["memory.max", "memory.high"],
        };
        for n in names.iter().filter_map(|name| number(d, name)) {
            lowest = Some(lowest.map_or(n, |l| l.min(n)));
        }
    }
    if cg.version() == Version::V1 {
        let stat = std::fs::read_to_string(format!(
            "{}/memory.stat",
            std::str::from_utf8(cg.dir()).unwrap()
        ))
        .unwrap();
        let h: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
            .unwrap()
            .parse()
            .unwrap();
        let h = (h < NO_LIMIT_FROM).then_some(h);
        assert_eq!(chain.hierarchical.unwrap().bytes(), h);
        lowest = match (lowest, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    assert_eq!(chain.bytes(), lowest);
    let usage = cg.usage_at(chain.usage_level()).bytes();
    if cg.origin() != Origin::DiscoveredWithoutMemoryController {
        assert!(usage.is_some_and(|u| u > 0), "{usage:?}");
    }
}

/// Discovery runs at first use, possibly on a small thread stack of the program's: it still
/// fits in 16 KiB with the mount points kept for the chain (issue #19). Optimised builds only:
/// unoptimised frames are several times larger.
#[cfg(not(debug_assertions))]
#[test]
fn discovery_runs_on_a_16_kib_stack() {
    let on_small_stack = std::thread::Builder::new()
        .stack_size(16 << 10)
        .spawn(|| discover(&Os).map(|c| c.dir().to_vec()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        on_small_stack.ok(),
        discover(&Os).ok().map(|c| c.dir().to_vec())
    );
}
