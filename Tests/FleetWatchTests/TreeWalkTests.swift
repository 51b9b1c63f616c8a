import CLandlock
import FleetTestSupport
import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The descriptors this process has open on `base` or below it (other tests run beside this one).
private func descriptors(under base: String) -> [String] {
  let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
  return fds.compactMap { fd in
    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd),
      target == base || target.hasPrefix(base + "/")
    else { return nil }
    return target
  }
}

/// Every directory below `root`, relative to it, as `find root -mindepth 1 -type d` lists them.
private func directories(under root: String) -> Set<String> {
  var found: Set<String> = []
  let walker = FileManager.default.enumerator(atPath: root)
  while let rel = walker?.nextObject() as? String {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), isDir.boolValue {
      found.insert(rel)
    }
  }
  return found
}

/// The paths of the directories a walk watched, rebuilt from their parents as the event loop does.
private func watchedPaths(_ result: WalkResult, rootWD: Int32) -> Set<String> {
  var table = DirTable()
  table.set(rootWD, parent: DirTable.rootParent, name: [])
  for d in result.dirs { table.set(d.wd, parent: d.parent, name: d.name) }
  return Set(result.dirs.compactMap { table.path(of: $0.wd).map { String(decoding: $0, as: UTF8.self) } })
}

@Suite("The tree walk watches every directory", .dependsOnInotifyLimits)
struct TreeWalkTests {
  /// A tree of every shape (empty leaves, leaves full of files, a deep chain, a wide directory whose
  /// subdirectories are not leaves, so more than a walk keeps open) is watched whole, with the same
  /// paths as on disk; no descriptor is left open, and the caller's working directory is unchanged.
  @Test func everyDirectoryOfEveryShapeIsWatched() throws {
    let base = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: base) }
    let fm = FileManager.default
    for i in 0..<300 {
      try fm.createDirectory(atPath: "\(base)/wide/w\(i)/inner", withIntermediateDirectories: true)
    }
    try fm.createDirectory(
      atPath: "\(base)/deep/" + (1...40).map { "d\($0)" }.joined(separator: "/"),
      withIntermediateDirectories: true)
    try fm.createDirectory(atPath: "\(base)/files/sub", withIntermediateDirectories: true)
    for i in 0..<50 { _ = fm.createFile(atPath: "\(base)/files/f\(i)", contents: Data()) }
    try fm.createDirectory(atPath: "\(base)/empty", withIntermediateDirectories: true)
    let expected = directories(under: base)

    let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(ifd >= 0)
    defer { close(ifd) }
    let cwd = FileManager.default.currentDirectoryPath
    let result = watchTree(
      fd: ifd, root: b(base), startRelative: [], startWD: 0, excludes: ExcludeMatcher([]), threads: 2,
      beat: {})
    #expect(result.failures.isEmpty)
    #expect(!result.limitReached)
    let watched = watchedPaths(result, rootWD: 0)
    #expect(expected.subtracting(watched).sorted().prefix(5) == [], "not watched")
    #expect(watched.subtracting(expected).sorted().prefix(5) == [], "watched but not there")
    #expect(result.dirs.count == expected.count, "a directory was watched twice")
    #expect(descriptors(under: base) == [], "the walk left descriptors open")
    #expect(FileManager.default.currentDirectoryPath == cwd)

    // The watches are live on the leaves the walk never read.
    _ = fm.createFile(atPath: "\(base)/wide/w299/inner/new", contents: Data())
    _ = fm.createFile(
      atPath: "\(base)/deep/" + (1...40).map { "d\($0)" }.joined(separator: "/") + "/new",
      contents: Data())
    let created = EscapeTree.pendingEvents(ifd).filter { $0.name == b("new") }
    #expect(created.count >= 2)
  }

  /// Excluded directories are neither watched nor entered, leaves or not.
  @Test func excludedDirectoriesAreNotWatched() throws {
    let base = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: base) }
    for dir in ["keep/a", "cache/x/y", "keep/cache"] {
      try FileManager.default.createDirectory(atPath: "\(base)/\(dir)", withIntermediateDirectories: true)
    }
    let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(ifd >= 0)
    defer { close(ifd) }
    let result = watchTree(
      fd: ifd, root: b(base), startRelative: [], startWD: 0, excludes: ExcludeMatcher(["cache/"]), threads: 1,
      beat: {})
    #expect(watchedPaths(result, rootWD: 0) == ["keep", "keep/a"])
  }

  /// The link-count test is trusted only on filesystems that keep it, and only for a count of 2.
  @Test func leafTestTrustsOnlyFilesystemsThatCountSubdirectories() throws {
    #expect(LeafTest.countsSubdirectories(0xEF53))  // ext2/3/4
    #expect(LeafTest.countsSubdirectories(0x5846_5342))  // XFS
    #expect(LeafTest.countsSubdirectories(0x0102_1994))  // tmpfs
    #expect(!LeafTest.countsSubdirectories(0x9123_683E))  // btrfs: always 1
    #expect(!LeafTest.countsSubdirectories(0x794C_7630))  // overlayfs
    #expect(!LeafTest.countsSubdirectories(0x6969))  // NFS
    #expect(!LeafTest.countsSubdirectories(0))  // unknown

    let base = try makeTempDir()
    defer { try? FileManager.default.removeItem(atPath: base) }
    try FileManager.default.createDirectory(atPath: base + "/parent/child", withIntermediateDirectories: true)
    let rootFD = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try #require(rootFD >= 0)
    defer { close(rootFD) }
    let test = LeafTest(root: rootFD)
    var parent = stat()
    var child = stat()
    try #require(stat(base + "/parent", &parent) == 0 && stat(base + "/parent/child", &child) == 0)
    #expect(!test.isLeaf(parent))
    if LeafTest.countsSubdirectories(Int64(fleet_filesystem_type(rootFD))) {
      #expect(test.isLeaf(child))
      var elsewhere = child
      elsewhere.st_dev &+= 1
      #expect(!test.isLeaf(elsewhere), "a directory of another filesystem mounted inside was judged")
    } else {
      #expect(!test.isLeaf(child))
    }
  }
}
