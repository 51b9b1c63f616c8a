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

/// A directory waiting in a walk: where it is, and its watch (`nil` until the walker that reads it
/// adds it).
private struct PendingDir: Sendable {
  var rel: [UInt8]
  var parent: Int32
  var name: [UInt8]
  var wd: Int32?
}

/// Adds watches for every directory below `startRelative` (whose wd is `startWD`), watch first,
/// then read, with `threads` walkers sharing one work stack.
///
/// Every directory is opened beneath the source root without following a symlink
/// (``SourceRoot``), and watched through that descriptor, so neither the listing nor the watch
/// leaves the source when a component is swapped for a symlink during the walk. Directories matched
/// by `excludes` are neither watched nor entered. `beat` is called now and then.
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
    var limitReached = false
  }
  let start = PendingDir(rel: startRelative, parent: DirTable.rootParent, name: [], wd: startWD)
  let work = Mutex(Work(stack: [start]))
  let results = Mutex(WalkResult())

  @Sendable func walker() {
    var local = WalkResult()
    var processed = 0
    while true {
      let item: PendingDir? = work.withLock { w in
        if let top = w.stack.popLast() {
          w.active += 1
          return top
        }
        return nil
      }
      guard let item else {
        let busy = work.withLock { $0.active > 0 }
        if !busy { break }
        usleep(100)
        continue
      }
      let stopAdding = work.withLock { $0.limitReached }
      let children = walkDirectory(
        item, in: source, fd: fd, excludes: excludes, stopAdding: stopAdding, into: &local)
      let limit = local.limitReached
      work.withLock { w in
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

  onThreads(threads, walker)
  return results.withLock { $0 }
}

/// Opens `item` beneath the source root, watches it through that descriptor (unless it is watched
/// already), then lists it: returns its subdirectories that are not excluded, to be walked in turn.
/// Records the watch (or a failure, or the watch limit) in `result`; adds nothing once `stopAdding`
/// or the limit was reached.
private func walkDirectory(
  _ item: PendingDir, in source: SourceRoot, fd: Int32, excludes: ExcludeMatcher, stopAdding: Bool,
  into result: inout WalkResult
) -> [PendingDir] {
  var shown: String { String(decoding: item.rel, as: UTF8.self) }
  let dir: Int32
  switch source.openDirectory(item.rel) {
  case .directory(let d): dir = d
  case .notBeneath: return []
  case .failed(let e):
    result.failures.append("cannot read directory \(shown): errno \(e)")
    return []
  }
  var wd = item.wd ?? -1
  if item.wd == nil {
    let added: AddWatchResult =
      stopAdding || result.limitReached
      ? .limitReached : addWatch(fd: fd, openedDirectory: dir, path: { source.cPath(of: item.rel) })
    guard case .added(let w) = added else {
      close(dir)
      if case .limitReached = added { result.limitReached = true }
      if case .failed(let e) = added { result.failures.append("cannot watch \(shown): errno \(e)") }
      return []
    }
    wd = w
    result.dirs.append(WalkedDir(wd: w, parent: item.parent, name: item.name))
  }
  var children: [PendingDir] = []
  let ok = forEachEntry(dir, directoriesOnly: true) { name, isDir in
    guard isDir, !stopAdding, !result.limitReached else { return }
    let childRel = joinRelative(item.rel, name)
    if excludes.isExcluded(childRel, isDirectory: true) { return }
    children.append(PendingDir(rel: childRel, parent: wd, name: name, wd: nil))
  }
  if !ok { result.failures.append("cannot read directory \(shown): errno \(errno)") }
  return children
}

/// Runs `body` on `threads` threads, this one included, and returns when every one has finished.
private func onThreads(_ threads: Int, _ body: @escaping @Sendable () -> Void) {
  var helpers: [pthread_t] = []
  for _ in 0..<max(0, threads - 1) {
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
  body()
  for t in helpers { pthread_join(t, nil) }
}

/// Carries a walker closure into a pthread.
private final class WalkerBox: Sendable {
  let body: @Sendable () -> Void
  init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
