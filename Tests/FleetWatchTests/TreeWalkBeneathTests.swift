import FleetCore
import FleetTestSupport
import Foundation
import Logging
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// A source with a normal nested directory and, beside it, ways out: `a` a symlink to a directory
/// outside the source (absolute), `up` a relative one, `f` a file. The outside directory has
/// `b/x/y` and a file, so a walk that follows `a` finds names and directories to watch.
struct EscapeTree {
  let base: String
  var source: String { base + "/src" }
  var outside: String { base + "/outside" }

  init() throws {
    base = try makeTempDir()
    for dir in ["src/n1/n2/n3", "outside/b/x/y", "outside/inner"] {
      try FileManager.default.createDirectory(atPath: base + "/" + dir, withIntermediateDirectories: true)
    }
    try EscapeTree.touch(base + "/outside/b/secret-name")
    try EscapeTree.touch(base + "/src/f")
    try FileManager.default.createSymbolicLink(
      atPath: base + "/src/a", withDestinationPath: base + "/outside")
    try FileManager.default.createSymbolicLink(atPath: base + "/src/up", withDestinationPath: "../outside")
  }

  func remove() { try? FileManager.default.removeItem(atPath: base) }

  /// Creates the empty file `path`.
  static func touch(_ path: String) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data()) else {
      throw FleetError(.io, "cannot create \(path)")
    }
  }

  /// `st_dev`/`st_ino` of the directory `fd` is open on.
  static func identity(fd: Int32) -> [UInt64] {
    var st = stat()
    return fstat(fd, &st) == 0 ? [UInt64(st.st_dev), UInt64(st.st_ino)] : []
  }

  /// `st_dev`/`st_ino` of `path`.
  static func identity(path: String) -> [UInt64] {
    var st = stat()
    return lstat(path, &st) == 0 ? [UInt64(st.st_dev), UInt64(st.st_ino)] : []
  }

  /// Events waiting on the non-blocking inotify descriptor `fd` (inotify queues them as the
  /// change is made, so what is not there now never comes).
  static func pendingEvents(_ fd: Int32) -> [InotifyEvent] {
    var buf = [UInt8](repeating: 0, count: 65536)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return [] }
    return buf.withUnsafeBytes { InotifyEvent.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
  }
}

@Suite("Opening a directory beneath the source root")
struct SourceRootOpenTests {
  @Test(arguments: [SourceRoot.Method.openat2, .componentwise])
  func opensNestedDirectoriesAndRefusesEveryWayOut(method: SourceRoot.Method) throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let root = try #require(SourceRoot(path: b(tree.source)))
    for (path, expected) in [("n1/n2/n3", "src/n1/n2/n3"), ("n1", "src/n1"), ("", "src")] {
      guard case .directory(let fd) = root.openDirectory(b(path), method: method) else {
        Issue.record("\(path) was not opened")
        continue
      }
      #expect(EscapeTree.identity(fd: fd) == EscapeTree.identity(path: tree.base + "/" + expected))
      close(fd)
    }
    let refused: [(String, Set<Int32>)] = [
      ("a/inner", [ELOOP, ENOTDIR]), ("a/b/x", [ELOOP, ENOTDIR]), ("a", [ELOOP, ENOTDIR]),
      ("up/inner", [ELOOP, ENOTDIR]), ("../outside", [EXDEV]), ("n1/../../outside", [EXDEV]),
      ("f", [ENOTDIR]), ("missing/n", [ENOENT]),
    ]
    for (path, errors) in refused {
      let opened = root.openDirectory(b(path), method: method)
      if case .directory(let fd) = opened { close(fd) }
      guard case .notBeneath(let e) = opened else {
        Issue.record("\(path) was not refused: \(opened)")
        continue
      }
      #expect(errors.contains(e), "\(path): errno \(e)")
    }
  }

  @Test func aSourceRootThatIsASymlinkIsFollowed() throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let link = tree.base + "/src-link"
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: tree.source)
    let root = try #require(SourceRoot(path: b(link)))
    guard case .directory(let fd) = root.openDirectory(b("n1/n2")) else {
      Issue.record("n1/n2 beneath a symlinked root was not opened")
      return
    }
    #expect(EscapeTree.identity(fd: fd) == EscapeTree.identity(path: tree.source + "/n1/n2"))
    close(fd)
  }
}

@Suite("The tree walk never leaves the source", .dependsOnInotifyLimits)
struct TreeWalkBeneathTests {
  /// A walk that starts at `a/b` while `a` is a symlink to a directory outside the source (the
  /// state a middle component swapped during a walk leaves) lists and watches nothing; the same
  /// walk of a real nested directory watches it all.
  @Test func aWalkThroughASymlinkedMiddleComponentWatchesNothing() throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(ifd >= 0)
    defer { close(ifd) }
    let escaped = watchTree(
      fd: ifd, root: b(tree.source), startRelative: b("a/b"), startWD: 1, excludes: ExcludeMatcher([]),
      threads: 2, beat: {})
    #expect(escaped.dirs.isEmpty, "watched outside the source: \(escaped.dirs.map(\.name))")
    #expect(escaped.failures.isEmpty)
    try EscapeTree.touch(tree.outside + "/b/x/new")
    #expect(EscapeTree.pendingEvents(ifd).isEmpty, "an inotify watch was put outside the source")

    let nested = watchTree(
      fd: ifd, root: b(tree.source), startRelative: b("n1"), startWD: 1, excludes: ExcludeMatcher([]),
      threads: 2, beat: {})
    #expect(Set(nested.dirs.map(\.name)) == [b("n2"), b("n3")])
    try EscapeTree.touch(tree.source + "/n1/n2/n3/new")
    #expect(EscapeTree.pendingEvents(ifd).contains { $0.name == b("new") })
  }

  /// A directory found new at `a/b` while `a` is a symlink out of the source: the event loop's scan
  /// queues no name from outside and puts no watch there; a real new directory is scanned whole.
  @Test func scanningANewDirectoryThroughASymlinkQueuesNothing() throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let config = WatchConfig(
      source: tree.source, target: RsyncTarget(user: nil, host: "h", port: nil, module: "m"),
      stateDir: tree.base)
    let core = EngineCore(config: config, logger: Logger(label: "walk-test"), journal: nil, replayed: [])
    let loop = EventLoop(core: core, stopFD: -1)
    loop.fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(loop.fd >= 0)
    var changes: [SyncPath] = []
    loop.scanNewDirectory(rel("a/b"), parent: 1, name: b("b"), into: &changes)
    #expect(changes.isEmpty, "queued names from outside the source: \(changes)")
    #expect(loop.table.count == 0)
    try EscapeTree.touch(tree.outside + "/b/new")
    #expect(EscapeTree.pendingEvents(loop.fd).isEmpty, "an inotify watch was put outside the source")

    loop.scanNewDirectory(rel("n1"), parent: 1, name: b("n1"), into: &changes)
    #expect(Set(changes) == [entry("n1/n2"), entry("n1/n2/n3")])
    #expect(loop.table.count == 3)
  }

  /// The watch goes on the directory that was opened, not on whatever the path leads to by then:
  /// `n1` is opened, moved away and replaced by another directory before the watch is added.
  @Test func theWatchIsOnTheDirectoryOpenedNotOnThePath() throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(ifd >= 0)
    defer { close(ifd) }
    let root = try #require(SourceRoot(path: b(tree.source)))
    guard case .directory(let dir) = root.openDirectory(b("n1")) else {
      Issue.record("n1 was not opened")
      return
    }
    defer { close(dir) }
    try #require(rename(tree.source + "/n1", tree.source + "/n1-old") == 0)
    try FileManager.default.createDirectory(atPath: tree.source + "/n1", withIntermediateDirectories: false)
    let added = addWatch(fd: ifd, openedDirectory: dir, path: { root.cPath(of: b("n1")) })
    guard case .added = added else {
      Issue.record("no watch: \(added)")
      return
    }
    try EscapeTree.touch(tree.source + "/n1/in-new")
    try EscapeTree.touch(tree.source + "/n1-old/in-opened")
    // Foundation writes through a temporary `.dat…` name first.
    let names = Set(EscapeTree.pendingEvents(ifd).map(\.name).filter { $0.first != UInt8(ascii: ".") })
    #expect(names == [b("in-opened")])
  }

  /// Without `/proc`, the watch is added by path (its last component not followed).
  @Test func withoutProcTheWatchIsAddedByPath() throws {
    let tree = try EscapeTree()
    defer { tree.remove() }
    let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    try #require(ifd >= 0)
    defer { close(ifd) }
    let root = try #require(SourceRoot(path: b(tree.source)))
    guard case .directory(let dir) = root.openDirectory(b("n1")) else {
      Issue.record("n1 was not opened")
      return
    }
    defer { close(dir) }
    let added = addWatch(
      fd: ifd, openedDirectory: dir, procFD: b(tree.base + "/no-proc/"), path: { root.cPath(of: b("n1")) })
    guard case .added = added else {
      Issue.record("no watch by path: \(added)")
      return
    }
    try EscapeTree.touch(tree.source + "/n1/new")
    #expect(EscapeTree.pendingEvents(ifd).contains { $0.name == b("new") })
  }
}
