#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

extension TimestampProbe {
  /// Up to ``sampleSize`` regular files of the source whose mtime has a sub-second part, at least
  /// ``minimumAge`` old, with one link (a hard link set compares as one), not excluded.
  ///
  /// Breadth-first from the root, at most ``entryLimit`` entries looked at; every directory is opened
  /// beneath the source root, never through a symlink (``SourceRoot``). An unreadable directory is
  /// skipped: the sample is evidence, not a listing.
  func sample() -> [RelativePath] {
    guard let root = SourceRoot(path: Array(command.config.source.utf8)) else { return [] }
    let excludes = ExcludeMatcher(command.config.excludes)
    let newest = Self.realtimeNanos() - Int64(clamping: minimumAge.components.seconds) * 1_000_000_000
    var directories: [[UInt8]] = [[]]
    var next = 0
    var visited = 0
    var files: [RelativePath] = []
    while next < directories.count, files.count < sampleSize, visited < entryLimit {
      let dir = directories[next]
      next += 1
      guard case .directory(let fd) = root.openDirectory(dir), let stream = fdopendir(fd) else { continue }
      defer { closedir(stream) }
      while files.count < sampleSize, visited < entryLimit, let entry = readdir(stream) {
        let name = Self.name(of: entry)
        if name == [0x2E] || name == [0x2E, 0x2E] { continue }
        visited += 1
        let path = joinRelative(dir, name)
        var st = stat()
        let found = (name.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer {
          fstatat(dirfd(stream), $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) == 0
        }
        guard found else { continue }
        let type = st.st_mode & S_IFMT
        if excludes.isExcluded(path, isDirectory: type == S_IFDIR) { continue }
        if type == S_IFDIR {
          directories.append(path)
        } else if type == S_IFREG, Self.qualifies(st, newest: newest), let relative = RelativePath(path) {
          files.append(relative)
        }
      }
    }
    return files
  }

  /// Whether a regular file's `stat` makes it a sample: one link, a sub-second mtime, not newer than `newest`.
  static func qualifies(_ st: stat, newest: Int64) -> Bool {
    let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    return st.st_nlink == 1 && st.st_mtim.tv_nsec != 0 && mtime <= newest
  }

  /// The wall clock in nanoseconds since the epoch (mtimes are wall-clock times).
  static func realtimeNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
  }

  private static func name(of entry: UnsafeMutablePointer<dirent>) -> [UInt8] {
    withUnsafePointer(to: &entry.pointee.d_name) { ptr in
      ptr.withMemoryRebound(to: UInt8.self, capacity: 256) { p in
        Array(
          UnsafeBufferPointer(
            start: p, count: strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))))
      }
    }
  }
}
