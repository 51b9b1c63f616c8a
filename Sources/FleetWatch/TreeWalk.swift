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
/// cannot be opened. `cPath` is the NUL-terminated absolute path.
func forEachEntry(
  _ cPath: [UInt8], directoriesOnly: Bool = false, followLast: Bool = false,
  _ body: (_ name: [UInt8], _ isDirectory: Bool) -> Void
) -> Bool {
  // O_NOFOLLOW: a directory swapped for a symlink between its event and this walk is not listed
  // (the walk never leaves the source through its last component). `followLast` is for the source
  // root, which may be configured as a symlink.
  let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (followLast ? 0 : O_NOFOLLOW)
  let fd = cPath.withUnsafeBufferPointer { buf in
    buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { open($0, flags) }
  }
  guard fd >= 0 else { return false }
  guard let dir = fdopendir(fd) else {
    close(fd)
    return false
  }
  defer { closedir(dir) }
  while let ent = readdir(dir) {
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
      var full = Array(cPath.dropLast())
      full.append(UInt8(ascii: "/"))
      full.append(contentsOf: name)
      full.append(0)
      var st = stat()
      let rc = full.withUnsafeBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { lstat($0, &st) }
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

/// Adds watches for every directory below `startRelative` (whose wd is `startWD`), watch first,
/// then read, with `threads` walkers sharing one work stack.
///
/// Directories matched by `excludes` are neither watched nor entered. `beat` is called now and then.
func watchTree(
  fd: Int32, root: [UInt8], startRelative: [UInt8], startWD: Int32, excludes: ExcludeMatcher,
  threads: Int, beat: @escaping @Sendable () -> Void
) -> WalkResult {
  struct Work: Sendable {
    var stack: [(rel: [UInt8], wd: Int32)]
    var active = 0
    var limitReached = false
  }
  let work = Mutex(Work(stack: [(startRelative, startWD)]))
  let results = Mutex(WalkResult())

  @Sendable func walker() {
    var local = WalkResult()
    var processed = 0
    while true {
      let item: (rel: [UInt8], wd: Int32)? = work.withLock { w in
        if let top = w.stack.popLast() {
          w.active += 1
          return top
        }
        return nil
      }
      guard let (rel, wd) = item else {
        let busy = work.withLock { $0.active > 0 }
        if !busy { break }
        usleep(100)
        continue
      }
      let stopAdding = work.withLock { $0.limitReached }
      let children = watchChildren(
        fd: fd, root: root, of: rel, wd: wd, excludes: excludes, stopAdding: stopAdding, into: &local)
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

/// Watches the subdirectories of `rel` (watched as `wd`) that are not excluded, recording them (and any
/// failure, or the watch limit) in `result`; returns them, to be walked in turn. Adds nothing once
/// `stopAdding` or the limit was reached.
private func watchChildren(
  fd: Int32, root: [UInt8], of rel: [UInt8], wd: Int32, excludes: ExcludeMatcher, stopAdding: Bool,
  into result: inout WalkResult
) -> [(rel: [UInt8], wd: Int32)] {
  var children: [(rel: [UInt8], wd: Int32)] = []
  let ok = forEachEntry(absoluteCPath(root: root, rel), directoriesOnly: true, followLast: rel.isEmpty) {
    name, isDir in
    guard isDir else { return }
    let childRel = joinRelative(rel, name)
    if excludes.isExcluded(childRel, isDirectory: true) || stopAdding || result.limitReached { return }
    let cPath = absoluteCPath(root: root, childRel)
    let added = cPath.withUnsafeBufferPointer { b in
      b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { addWatch(fd: fd, cPath: $0) }
    }
    switch added {
    case .added(let childWD):
      result.dirs.append(WalkedDir(wd: childWD, parent: wd, name: name))
      children.append((childRel, childWD))
    case .vanished: break
    case .limitReached: result.limitReached = true
    case .failed(let e):
      result.failures.append("cannot watch \(String(decoding: childRel, as: UTF8.self)): errno \(e)")
    }
  }
  if !ok && errno != ENOENT && errno != ENOTDIR {
    result.failures.append("cannot read directory \(String(decoding: rel, as: UTF8.self)): errno \(errno)")
  }
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
