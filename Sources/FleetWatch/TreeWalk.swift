import CLandlock
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// One directory found by a walk: its watch and where it sits.
struct WalkedDir {
  var wd: Int32
  var parent: Int32
  var name: [UInt8]
}

/// The outcome of watching a whole tree.
struct WalkResult {
  var dirs: [WalkedDir] = []
  var limitReached = false
  var failures: [String] = []
}

/// Reads directory entries with `readdir` (getdents), using `d_type` so files are never `stat`ed.
///
/// Calls `body(name, isDirectory)` for every entry except `.` and `..` (only for directories
/// when `directoriesOnly`, so a walk allocates nothing per file); returns false if the directory
/// cannot be read. `dir` is an open directory descriptor (see ``SourceRoot/openDirectory(_:method:)``),
/// which this closes. An entry of unknown type is looked at with `fstatat` in that directory,
/// never following a symlink.
func forEachEntry(
  _ dir: Int32, directoriesOnly: Bool = false, _ body: (_ name: [UInt8], _ isDirectory: Bool) -> Void
) -> Bool {
  guard let stream = fdopendir(dir) else {
    let e = errno
    close(dir)
    errno = e
    return false
  }
  defer { closedir(stream) }
  while let ent = readdir(stream) {
    let type = ent.pointee.d_type
    if directoriesOnly && type != UInt8(DT_DIR) && type != UInt8(DT_UNKNOWN) { continue }
    let name: [UInt8] = withUnsafePointer(to: &ent.pointee.d_name) { ptr in
      ptr.withMemoryRebound(to: UInt8.self, capacity: 256) { p in
        let len = strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))
        return Array(UnsafeBufferPointer(start: p, count: len))
      }
    }
    if name == [0x2E] || name == [0x2E, 0x2E] { continue }
    var isDir = type == UInt8(DT_DIR)
    if type == UInt8(DT_UNKNOWN) {
      var st = stat()
      let rc = (name.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { b in
        fstatat(dirfd(stream), b.baseAddress!, &st, AT_SYMLINK_NOFOLLOW)
      }
      isDir = rc == 0 && (st.st_mode & S_IFMT) == S_IFDIR
      if directoriesOnly && !isDir { continue }
    }
    body(name, isDir)
  }
  return true
}

/// Joins a relative directory path and a name ("" is the source root).
func joinRelative(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] {
  if dir.isEmpty { return name }
  var out = dir
  out.reserveCapacity(dir.count + 1 + name.count)
  out.append(UInt8(ascii: "/"))
  out.append(contentsOf: name)
  return out
}

/// The NUL-terminated absolute path of `relative` under `root` (bytes of the source path).
func absoluteCPath(root: [UInt8], _ relative: [UInt8]) -> [UInt8] {
  var out = root
  out.reserveCapacity(root.count + relative.count + 2)
  if !relative.isEmpty {
    out.append(UInt8(ascii: "/"))
    out.append(contentsOf: relative)
  }
  out.append(0)
  return out
}

/// A directory waiting in a walk: where it is, its watch (added by the walker that listed its
/// parent), and a descriptor when one was kept open for it.
private struct PendingDir: Sendable {
  var rel: [UInt8]
  var parent: Int32
  var name: [UInt8]
  var wd: Int32
  var fd: Int32?
}

/// How many descriptors of directories waiting in a walk may stay open; the others are opened
/// again beneath the root when their turn comes.
private let heldDescriptorBudget = 256

/// How many subdirectories of one directory keep their descriptor while it is listed.
private let heldPerDirectory = 64

/// Adds watches for every directory below `startRelative` (whose wd is `startWD`), each watched
/// before it is read, with `threads` walkers sharing one work stack.
///
/// A walker lists a directory and opens, watches and `fstat`s each subdirectory from it
/// (`openat` of one component, `O_NOFOLLOW`), so neither the listing nor a watch leaves the source
/// when a component is swapped for a symlink during the walk; a directory whose link count says it
/// has no subdirectory (``LeafTest``) is never read. Directories matched by `excludes` are neither
/// watched nor entered. `beat` is called now and then.
func watchTree(
  fd: Int32, root: [UInt8], startRelative: [UInt8], startWD: Int32, excludes: ExcludeMatcher,
  threads: Int, beat: @escaping @Sendable () -> Void
) -> WalkResult {
  guard let source = SourceRoot(path: root) else {
    var result = WalkResult()
    let e = errno
    if e != ENOENT && e != ENOTDIR {
      result.failures.append("cannot open the source \(String(decoding: root, as: UTF8.self)): errno \(e)")
    }
    return result
  }
  struct Work: Sendable {
    var stack: [PendingDir]
    var active = 0
    var held = 0
    var limitReached = false
  }
  let walk = TreeWalk(
    source: source, inotify: fd, excludes: excludes, leaves: LeafTest(root: source.fd))
  let start = PendingDir(rel: startRelative, parent: DirTable.rootParent, name: [], wd: startWD)
  let work = Mutex(Work(stack: [start]))
  let results = Mutex(WalkResult())

  @Sendable func walker() {
    var local = WalkResult()
    let ownWorkingDirectory = fleet_private_working_directory() == 0
    var processed = 0
    while true {
      let item: PendingDir? = work.withLock { w in
        guard let top = w.stack.popLast() else { return nil }
        w.active += 1
        if top.fd != nil { w.held -= 1 }
        return top
      }
      guard let item else {
        if !work.withLock({ $0.active > 0 }) { break }
        usleep(100)
        continue
      }
      let stopAdding = work.withLock { $0.limitReached }
      var children = walk.walk(
        item, stopAdding: stopAdding, ownWorkingDirectory: ownWorkingDirectory, into: &local)
      let limit = local.limitReached
      work.withLock { w in
        for i in children.indices {
          guard let held = children[i].fd else { continue }
          if w.held < heldDescriptorBudget {
            w.held += 1
          } else {
            close(held)
            children[i].fd = nil
          }
        }
        w.stack.append(contentsOf: children)
        w.active -= 1
        if limit { w.limitReached = true }
      }
      processed += 1
      if processed % 2048 == 0 { beat() }
    }
    results.withLock { r in
      r.dirs.append(contentsOf: local.dirs)
      r.limitReached = r.limitReached || local.limitReached
      r.failures.append(contentsOf: local.failures.prefix(20))
    }
  }

  onThreads(max(1, threads), walker)
  return results.withLock { $0 }
}

/// What every walker of one tree shares.
private struct TreeWalk: Sendable {
  let source: SourceRoot
  let inotify: Int32
  let excludes: ExcludeMatcher
  let leaves: LeafTest

  /// Lists `item` (opened beneath the root unless its descriptor was kept) and watches each of its
  /// subdirectories that is not excluded; returns those that may have subdirectories in turn.
  /// Records watches, failures and the watch limit in `result`; watches nothing more once
  /// `stopAdding` or the limit was reached.
  func walk(_ item: PendingDir, stopAdding: Bool, ownWorkingDirectory: Bool, into result: inout WalkResult)
    -> [PendingDir]
  {
    var shown: String { String(decoding: item.rel, as: UTF8.self) }
    let dir: Int32
    if let held = item.fd {
      dir = held
    } else {
      switch source.openDirectory(item.rel) {
      case .directory(let d): dir = d
      case .notBeneath: return []
      case .failed(let e):
        result.failures.append("cannot read directory \(shown): errno \(e)")
        return []
      }
    }
    var children: [PendingDir] = []
    let ok = forEachEntry(dir, directoriesOnly: true) { name, isDir in
      guard isDir, !stopAdding, !result.limitReached else { return }
      let childRel = joinRelative(item.rel, name)
      if excludes.isExcluded(childRel, isDirectory: true) { return }
      if let child = watchChild(
        name, rel: childRel, of: dir, parentWD: item.wd, ownWorkingDirectory: ownWorkingDirectory,
        into: &result)
      {
        var child = child
        if let held = child.fd, children.count >= heldPerDirectory {
          close(held)
          child.fd = nil
        }
        children.append(child)
      }
    }
    if !ok { result.failures.append("cannot read directory \(shown): errno \(errno)") }
    return children
  }

  /// Opens the subdirectory `name` of `parent` (never through a symlink), watches it, and returns
  /// it to be read unless it has no subdirectory; `nil` when it is gone, a symlink, or not watched.
  private func watchChild(
    _ name: [UInt8], rel: [UInt8], of parent: Int32, parentWD: Int32, ownWorkingDirectory: Bool,
    into result: inout WalkResult
  ) -> PendingDir? {
    var shown: String { String(decoding: rel, as: UTF8.self) }
    let cName = name.map { CChar(bitPattern: $0) } + [0]
    let dir = fleet_open_subdirectory_path(parent, cName)
    guard dir >= 0 else {
      let e = errno
      if e != ENOENT && e != ENOTDIR && e != ELOOP {
        result.failures.append("cannot read directory \(shown): errno \(e)")
      }
      return nil
    }
    let added = addWatch(
      fd: inotify, openedDirectory: dir, ownWorkingDirectory: ownWorkingDirectory,
      path: { source.cPath(of: rel) })
    guard case .added(let wd) = added else {
      close(dir)
      if case .limitReached = added { result.limitReached = true }
      if case .failed(let e) = added { result.failures.append("cannot watch \(shown): errno \(e)") }
      return nil
    }
    result.dirs.append(WalkedDir(wd: wd, parent: parentWD, name: name))
    // After the watch: a subdirectory made from now on is an event, one made before is counted.
    var st = stat()
    let leaf = fstat(dir, &st) == 0 && leaves.isLeaf(st)
    let readable = leaf ? -1 : openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    close(dir)
    if leaf { return nil }
    return PendingDir(rel: rel, parent: parentWD, name: name, wd: wd, fd: readable >= 0 ? readable : nil)
  }
}

/// Tells a directory with no subdirectory from its link count (2: itself and `.`), on filesystems
/// known to keep it as 2 + subdirectories: ext2/3/4, XFS and tmpfs. Elsewhere (btrfs, overlayfs,
/// NFS, FUSE, ...) and on another filesystem mounted inside the source, every directory is read.
/// ext4 sets the count of a directory with more than 65,000 subdirectories to 1: read as well.
struct LeafTest: Sendable {
  /// The device whose directories may be judged, or `nil` for none.
  let device: UInt64?

  init(root fd: Int32) {
    var st = stat()
    guard fstat(fd, &st) == 0, Self.countsSubdirectories(Int64(fleet_filesystem_type(fd))) else {
      device = nil
      return
    }
    device = UInt64(st.st_dev)
  }

  /// Whether a filesystem of type `type` (`statfs.f_type`) keeps the subdirectory link count.
  static func countsSubdirectories(_ type: Int64) -> Bool {
    let ext = 0xEF53
    let xfs = 0x5846_5342
    let tmpfs = 0x0102_1994
    return type == ext || type == xfs || type == tmpfs
  }

  /// True when `st`, a directory's, says it has no subdirectory.
  func isLeaf(_ st: stat) -> Bool {
    device == UInt64(st.st_dev) && st.st_nlink == 2
  }
}

/// Runs `body` on `threads` new threads and returns when every one has finished. The calling
/// thread only waits: a walker changes its own working directory.
private func onThreads(_ threads: Int, _ body: @escaping @Sendable () -> Void) {
  var helpers: [pthread_t] = []
  for _ in 0..<threads {
    var tid = pthread_t()
    let box = Unmanaged.passRetained(WalkerBox(body))
    let rc = pthread_create(
      &tid, nil,
      { arg in
        let box = Unmanaged<WalkerBox>.fromOpaque(arg!).takeRetainedValue()
        box.body()
        return nil
      }, box.toOpaque())
    if rc == 0 { helpers.append(tid) } else { box.release() }
  }
  if helpers.isEmpty { body() }
  for t in helpers { pthread_join(t, nil) }
}

/// Carries a walker closure into a pthread.
private final class WalkerBox: Sendable {
  let body: @Sendable () -> Void
  init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
