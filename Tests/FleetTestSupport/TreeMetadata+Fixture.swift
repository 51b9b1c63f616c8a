import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A tree that holds every kind of metadata a backup must keep, for round trips (needs root).
///
/// `populate(root)` fills an existing empty directory with: files and directories of several
/// numeric owners and groups (no such users need exist), a setgid directory, a setuid file, a
/// sticky directory, POSIX ACLs (access and default), user extended attributes, a set of three
/// hard links across two directories, a sparse file, a symlink with its own owner and a dangling
/// one, a FIFO, an empty directory, and mtimes with nanoseconds (set last, deepest first).
public enum MetadataFixture {
  /// The sparse file's path, relative to the root: 8 MiB of hole, then a few bytes.
  public static let sparseFile = "data/sparse.img"
  /// The hard-link set, relative to the root.
  public static let hardLinks = ["data/linked", "shared/linked-too", "shared/deep/linked-three"]

  /// Fills `root` and gives the root itself owner `1239:2349` and mode `0750`.
  public static func populate(_ root: String) throws {
    let p = { (relative: String) in root + "/" + relative }
    for (dir, mode, owner) in [
      ("data", 0o755, (1234, 2345)), ("shared", 0o2775, (1235, 2346)), ("shared/deep", 0o2770, (1235, 2346)),
      ("acl", 0o770, (1236, 2347)), ("empty", 0o700, (1238, 2348)), ("tmp", 0o1777, (0, 0)),
    ] {
      try check(mkdir(p(dir), 0o700), dir, "mkdir")
      try check(chown(p(dir), uid_t(owner.0), gid_t(owner.1)), dir, "chown")
      try check(chmod(p(dir), mode_t(mode)), dir, "chmod")
    }
    try write(p("data/report.txt"), "quarterly numbers\n", owner: (1234, 2345), mode: 0o640)
    try write(p("data/tool"), "#!/bin/sh\necho tool\n", owner: (0, 2345), mode: 0o4755)
    try write(p("shared/notes.md"), "# notes\n", owner: (1240, 2346), mode: 0o664)
    try write(p("acl/plan.txt"), "plan\n", owner: (1236, 2347), mode: 0o660)
    try write(p(hardLinks[0]), "one file, three names\n", owner: (1241, 2350), mode: 0o644)
    for name in hardLinks.dropFirst() { try check(link(p(hardLinks[0]), p(name)), name, "link") }
    try writeSparse(p(sparseFile), owner: (1242, 2351))
    try check(symlink("report.txt", p("data/report.link")), "data/report.link", "symlink")
    try check(lchown(p("data/report.link"), 1243, 2352), "data/report.link", "lchown")
    try check(symlink("../nowhere", p("shared/dangling")), "shared/dangling", "symlink")
    try check(mkfifo(p("data/pipe"), 0o620), "data/pipe", "mkfifo")
    try check(chown(p("data/pipe"), 1244, 2353), "data/pipe", "chown")
    try setXattr(p("data/report.txt"), "user.origin", "finance")
    try setXattr(p("shared"), "user.project", "apollo")
    try setXattr(p(sparseFile), "user.checksum.kind", "none")
    try setACL(
      p("acl"), TreeSnapshot.accessACLName,
      "user::rwx,user:1234:rwx,group::r-x,group:2345:r--,mask::rwx,other::---")
    try setACL(
      p("acl"), TreeSnapshot.defaultACLName, "user::rwx,user:1234:r-x,group::r-x,mask::r-x,other::---")
    try setACL(
      p("acl/plan.txt"), TreeSnapshot.accessACLName, "user::rw-,user:1240:r--,group::rw-,mask::rw-,other::---"
    )
    try check(chown(root, 1239, 2349), ".", "chown")
    try check(chmod(root, 0o750), ".", "chmod")
    try setTimes(root)
  }

  static func check(_ result: Int32, _ path: String, _ call: String) throws {
    guard result == 0 else { throw TreeSnapshotError(path: path, call: call) }
  }

  static func write(_ path: String, _ text: String, owner: (Int, Int), mode: Int) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
      throw TreeSnapshotError(path: path, call: "create")
    }
    try check(chown(path, uid_t(owner.0), gid_t(owner.1)), path, "chown")
    try check(chmod(path, mode_t(mode)), path, "chmod")
  }

  static func writeSparse(_ path: String, owner: (Int, Int)) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else { throw TreeSnapshotError(path: path, call: "open") }
    defer { close(fd) }
    let tail = Array("end of the image\n".utf8)
    guard pwrite(fd, tail, tail.count, 8 << 20) == tail.count else {
      throw TreeSnapshotError(path: path, call: "pwrite")
    }
    try check(fchown(fd, uid_t(owner.0), gid_t(owner.1)), path, "fchown")
  }

  static func setXattr(_ path: String, _ name: String, _ value: String) throws {
    let bytes = Array(value.utf8)
    try check(Xattr.set(path, name, bytes, bytes.count, 0), path, "lsetxattr \(name)")
  }

  static func setACL(_ path: String, _ name: String, _ text: String) throws {
    guard let bytes = ACLText.encode(text) else { throw TreeSnapshotError(path: path, call: "ACL \(text)") }
    try check(Xattr.set(path, name, bytes, bytes.count, 0), path, "lsetxattr \(name)")
  }

  /// Distinct mtimes with nanoseconds on every entry (symlinks themselves too), deepest first so a
  /// directory's time is not changed by setting its children's.
  static func setTimes(_ root: String) throws {
    let paths = try FileManager.default.subpathsOfDirectory(atPath: root).sorted { $0.count > $1.count }
    for (index, relative) in (paths + [""]).enumerated() {
      let path = relative.isEmpty ? root : root + "/" + relative
      let when = timespec(tv_sec: 1_600_000_000 + index * 86_413, tv_nsec: 123_456_789 + index)
      let times = [when, when]
      try check(utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), path, "utimensat")
    }
  }
}
