import CLandlock
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The source root, opened once for a walk: every directory the walk reads or watches is opened
/// beneath it, never through a symlink.
///
/// A path walk protects only its last component with `O_NOFOLLOW`: a middle directory swapped for a
/// symlink (`a` → `/etc` while `a/b` is walked) would lead the walk out of the source. Opening
/// with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from this
/// descriptor refuses every symlink on the way and every way out (`..`, an absolute link). The root
/// itself is opened following symlinks: the source may be configured as one.
final class SourceRoot: Sendable {
  /// A descriptor of the root directory.
  let fd: Int32
  /// The root's path, as configured (bytes).
  let path: [UInt8]

  /// Opens the root at `path` (bytes of the source path); `nil` with `errno` set when it is not a
  /// directory that can be opened.
  init?(path: [UInt8]) {
    let cPath = absoluteCPath(root: path, []).map { CChar(bitPattern: $0) }
    let fd = open(cPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    self.fd = fd
    self.path = path
  }

  deinit { close(fd) }

  /// How a directory beneath the root was opened, or why not.
  enum Opened: Equatable {
    /// A descriptor (`O_RDONLY | O_DIRECTORY | O_CLOEXEC`) the caller closes.
    case directory(Int32)
    /// Not walked: gone, not a directory, a symlink on the way (`ELOOP`, `ENOTDIR`) or a way out of
    /// the root (`EXDEV`); like a directory swapped for a symlink before its walk.
    case notBeneath(errno: Int32)
    /// Any other error (`EACCES`, `EMFILE`, ...), worth a warning.
    case failed(errno: Int32)
  }

  /// How directories are resolved: `openat2` in one call, or one `openat` per component where the
  /// kernel (< 5.6) or a seccomp filter refuses `openat2` (ENOSYS, EPERM).
  enum Method: Sendable {
    case openat2, componentwise
  }

  /// Set once `openat2` was refused with ENOSYS or EPERM: every later open goes component by component.
  private static let openat2Refused = Atomic<Bool>(false)

  /// Opens the directory `relative` (a path below the root, `""` for the root itself).
  ///
  /// `method` forces one way of resolving (for tests); by default `openat2`, until it is refused.
  func openDirectory(_ relative: [UInt8], method: Method? = nil) -> Opened {
    let useOpenat2 = method.map { $0 == .openat2 } ?? !Self.openat2Refused.load(ordering: .relaxed)
    if useOpenat2 {
      // RESOLVE_BENEATH refuses a `..` that leads out (EXDEV).
      var cPath = relative.isEmpty ? [UInt8(ascii: ".")] : relative
      cPath.append(0)
      let dir = cPath.withUnsafeBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { fleet_open_dir_beneath(fd, $0) }
      }
      if dir >= 0 { return .directory(dir) }
      let e = errno
      if e == ENOSYS || e == EPERM {
        Self.openat2Refused.store(true, ordering: .relaxed)
      } else if e != EAGAIN {
        return Self.classify(e)
      }
      // EAGAIN: a rename or mount raced the lookup; the component walk below has no such retry.
    }
    return openComponentwise(relative)
  }

  /// One `openat(O_NOFOLLOW | O_DIRECTORY)` per component, each from the directory opened before; a
  /// path with a `..` component is refused (EXDEV), as it could lead out.
  private func openComponentwise(_ relative: [UInt8]) -> Opened {
    var current = fd
    defer { if current != fd { close(current) } }
    for component in relative.split(separator: UInt8(ascii: "/")) where component != [0x2E] {
      if component == [0x2E, 0x2E] { return .notBeneath(errno: EXDEV) }
      let cName = Array(component).map { CChar(bitPattern: $0) } + [0]
      let next = openat(current, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      guard next >= 0 else { return Self.classify(errno) }
      if current != fd { close(current) }
      current = next
    }
    if current == fd {
      // The root itself: a descriptor of its own, as the caller closes it.
      let dir = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      return dir >= 0 ? .directory(dir) : Self.classify(errno)
    }
    let dir = current
    current = fd
    return .directory(dir)
  }

  /// The NUL-terminated absolute path of `relative`, for what has no `*at` form.
  func cPath(of relative: [UInt8]) -> [UInt8] {
    absoluteCPath(root: path, relative)
  }

  private static func classify(_ e: Int32) -> Opened {
    switch e {
    case ENOENT, ENOTDIR, ELOOP, EXDEV: return .notBeneath(errno: e)
    default: return .failed(errno: e)
    }
  }
}

/// Where a process's descriptors appear as links to what they are open on.
private let procSelfFD: [UInt8] = Array("/proc/self/fd/".utf8)

/// Adds a watch on the directory `dir` was opened on (through `/proc/self/fd/N`), not on a path
/// resolved again: what is watched is what the walk read.
///
/// `IN_DONT_FOLLOW` is left out here, as the magic link must be followed to the directory itself.
/// Where `procFD` (`/proc/self/fd/`) does not exist (no `/proc`), the watch is added by `path()` (the NUL-terminated
/// absolute path) with the usual mask, whose last component is never followed.
func addWatch(
  fd: Int32, openedDirectory dir: Int32, procFD: [UInt8] = procSelfFD,
  path: () -> [UInt8]
) -> AddWatchResult {
  var link = procFD
  link.reserveCapacity(procFD.count + 12)
  var digits = UInt32(dir)
  let first = link.count
  repeat {
    link.insert(UInt8(ascii: "0") + UInt8(digits % 10), at: first)
    digits /= 10
  } while digits > 0
  link.append(0)
  let wd = link.withUnsafeBufferPointer { b in
    b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
      inotify_add_watch(fd, $0, watchMask & ~UInt32(IN_DONT_FOLLOW))
    }
  }
  if wd >= 0 { return .added(wd) }
  switch errno {
  case ENOSPC: return .limitReached
  case ENOENT:
    return path().withUnsafeBufferPointer { b in
      b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { addWatch(fd: fd, cPath: $0) }
    }
  case let e: return .failed(e)
  }
}

/// Adds a watch on the directory `dir` is open on from a walker thread whose working directory is
/// its own (``fleet_private_working_directory``): `fchdir` there and watch `.`, so no path is
/// resolved at all. Where that fails, through `/proc/self/fd/N` as above.
func addWatch(fd: Int32, openedDirectory dir: Int32, ownWorkingDirectory: Bool, path: () -> [UInt8])
  -> AddWatchResult
{
  if ownWorkingDirectory && fchdir(dir) == 0 {
    let wd = inotify_add_watch(fd, ".", watchMask)
    if wd >= 0 { return .added(wd) }
    if errno == ENOSPC { return .limitReached }
  }
  return addWatch(fd: fd, openedDirectory: dir, path: path)
}
