import CFanotify

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Turns the directory handles fanotify reports into directories of the source.
///
/// A filesystem mark reports every change on the filesystem; only directories beneath the source
/// matter. A handle is opened (`open_by_handle_at`, needs CAP_DAC_READ_SEARCH) and its path read
/// back from `/proc/self/fd`: the directory's path now, which is what a transfer sends. Answers are
/// cached; a directory moved or deleted anywhere clears the cache (its descendants' paths changed).
struct FanotifyPaths {
  /// Where a directory handle leads.
  enum Place: Equatable {
    /// A directory of the source: its path relative to the source (empty for the root).
    case inside([UInt8])
    /// Outside the source: its events are not ours.
    case outside
  }

  /// The source root, resolved (no symlink, no trailing slash).
  let root: [UInt8]
  /// The source root's own handle.
  let rootHandle: [UInt8]
  /// A descriptor on the source's filesystem, for `open_by_handle_at`.
  let mountFD: Int32
  private var cache: [[UInt8]: Place] = [:]
  /// A bound on the cache (a busy filesystem reports many directories outside the source).
  static let cacheLimit = 65_536

  /// Paths for the source at `path`; nil with errno when it cannot be resolved or opened.
  init?(source path: String) {
    guard let real = realpath(path, nil) else { return nil }
    defer { free(real) }
    var bytes = Array(String(cString: real).utf8)
    while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
    var handle = [UInt8](repeating: 0, count: 256)
    let length = handle.withUnsafeMutableBufferPointer {
      fleet_handle_of(real, $0.baseAddress, Int32($0.count))
    }
    guard length > 0 else { return nil }
    let fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    root = bytes
    rootHandle = Array(handle[0..<Int(length)])
    mountFD = fd
    // Handles must lead back to directories (some filesystems only encode them).
    let opened = rootHandle.withUnsafeBufferPointer { fleet_open_handle(fd, $0.baseAddress, Int32($0.count)) }
    guard opened >= 0 else {
      let e = errno
      _ = Glibc.close(fd)
      errno = e
      return nil
    }
    _ = Glibc.close(opened)
  }

  /// Closes the descriptor.
  func close() { _ = Glibc.close(mountFD) }

  /// Where the directory `handle` names is now; nil when it is gone (deleted, or unreadable).
  mutating func place(of handle: [UInt8]) -> Place? {
    if handle == rootHandle { return .inside([]) }
    if let known = cache[handle] { return known }
    guard let path = currentPath(handle) else { return nil }
    let place = Self.place(of: path, root: root)
    if cache.count >= Self.cacheLimit { cache = [:] }
    cache[handle] = place
    return place
  }

  /// Forgets every answer: a directory was moved or deleted.
  mutating func forget() {
    if !cache.isEmpty { cache = [:] }
  }

  /// Where the absolute `path` is relative to `root`.
  static func place(of path: [UInt8], root: [UInt8]) -> Place {
    if path == root { return .inside([]) }
    let prefix = root == [UInt8(ascii: "/")] ? root : root + [UInt8(ascii: "/")]
    guard path.count > prefix.count, path.starts(with: prefix) else { return .outside }
    return .inside(Array(path[prefix.count...]))
  }

  /// The path of the directory `handle` names, or nil when it is gone.
  private func currentPath(_ handle: [UInt8]) -> [UInt8]? {
    let fd = handle.withUnsafeBufferPointer { fleet_open_handle(mountFD, $0.baseAddress, Int32($0.count)) }
    guard fd >= 0 else { return nil }
    defer { _ = Glibc.close(fd) }
    var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = buffer.withUnsafeMutableBufferPointer { b in
      b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) {
        readlink("/proc/self/fd/\(fd)", $0, b.count)
      }
    }
    guard n > 0, n < buffer.count else { return nil }
    let path = Array(buffer[0..<n])
    // A directory deleted since reads back as "PATH (deleted)"; it is gone.
    if path.count > 10, path.suffix(10).elementsEqual(" (deleted)".utf8) { return nil }
    return path
  }
}
